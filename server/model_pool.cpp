#include "server/model_pool.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "server/openai.hpp"

namespace vkllm::server {

namespace {

std::exception_ptr api_error(int status, std::string message, std::string code) {
  return std::make_exception_ptr(ApiException({status, std::move(message), "server_error", "", std::move(code)}));
}

std::exception_ptr shutting_down() { return api_error(503, "the server is shutting down", "shutting_down"); }

// Counters go on across a model's unloads and loads; gauges are the engine's of now.
void add_counters(serving::EngineStats& to, const serving::EngineStats& s) {
  to.prompt_tokens += s.prompt_tokens;
  to.cached_prompt_tokens += s.cached_prompt_tokens;
  to.shared_prompt_tokens += s.shared_prompt_tokens;
  to.generation_tokens += s.generation_tokens;
  to.preemptions += s.preemptions;
  to.prefix_queries += s.prefix_queries;
  to.prefix_hits += s.prefix_hits;
  to.steps += s.steps;
  to.recordings += s.recordings;
  to.replays += s.replays;
  to.overlapped_steps += s.overlapped_steps;
  to.cancel_calls += s.cancel_calls;
  to.timeouts += s.timeouts;
  to.device_losses += s.device_losses;
  to.device_recoveries += s.device_recoveries;
}

}  // namespace

ModelPool::ModelPool(PoolConfig config, ModelScanner scanner, ModelLoader loader)
    : config_(config), scanner_(std::move(scanner)), loader_(std::move(loader)) {
  {
    std::lock_guard lock(mu_);
    rescan();
  }
  thread_ = std::thread([this] { run(); });
}

ModelPool::~ModelPool() {
  stop();
  thread_.join();
  // No lease is left (the server stopped first); each model stops its engine as it goes.
  for (Entry& e : entries_) e.model.reset();
}

void ModelPool::rescan() {
  for (Entry& e : entries_) e.present = false;
  for (ModelFile& f : scanner_()) {
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.file.name == f.name; });
    if (it == entries_.end()) {
      entries_.emplace_back(std::move(f));
    } else {
      it->present = true;
      if (it->state == State::unloaded) it->file = std::move(f);  // a file replaced meanwhile
    }
  }
}

ModelPool::Entry* ModelPool::find(std::string_view name) {
  auto match = [&]() -> Entry* {
    for (Entry& e : entries_) {
      if (!e.present && e.state == State::unloaded) continue;  // its file is gone
      if (name.empty()) return &e;                              // the default: the first
      if (e.file.name == name) return &e;
      for (const std::string& a : e.file.aliases) {
        if (a == name) return &e;
      }
    }
    return nullptr;
  };
  if (Entry* e = match()) return e;
  rescan();  // a file added since
  return match();
}

std::optional<std::string> ModelPool::resolve(std::string_view name) {
  std::lock_guard lock(mu_);
  if (Entry* e = find(name)) return e->file.name;
  return std::nullopt;
}

ModelPool::Lease ModelPool::lease(Entry& e) {
  ++e.leases;
  e.last_used = ++clock_;
  return Lease(&*e.served, [this, &e](const ServedModel*) { release(e); });
}

void ModelPool::release(Entry& e) {
  std::lock_guard lock(mu_);
  --e.leases;
  e.last_used = ++clock_;
  if (e.leases == 0) cv_.notify_all();
}

void ModelPool::acquire(std::string_view name, AcquireDone done) {
  Lease got;
  std::exception_ptr error;
  {
    std::lock_guard lock(mu_);
    Entry* e = stopping_ ? nullptr : find(name);
    if (stopping_) {
      error = shutting_down();
    } else if (!e) {
      std::string names;
      for (const Entry& x : entries_) {
        if (x.present || x.state != State::unloaded) names += fmt::format("{}'{}'", names.empty() ? "" : ", ", x.file.name);
      }
      error = std::make_exception_ptr(ApiException(
          {404, fmt::format("The model '{}' does not exist; this server serves {}", name, names),
           "invalid_request_error", "model", "model_not_found"}));
    } else if (e->state == State::loaded) {
      got = lease(*e);
    } else {
      // Loading, unloading or unloaded: served once the loader thread has it loaded.
      e->waiters.push_back(std::move(done));
      if (e->state == State::unloaded) {
        e->state = State::loading;
        jobs_.push_back({e, true});
        cv_.notify_all();
      }
      return;
    }
  }
  done(std::move(got), error);
}

void ModelPool::unload(std::string_view name, Done done) {
  std::exception_ptr error;
  {
    std::lock_guard lock(mu_);
    Entry* e = find(name);
    if (!e) {
      error = std::make_exception_ptr(ApiException({404, fmt::format("The model '{}' does not exist", name),
                                                    "invalid_request_error", "model", "model_not_found"}));
    } else if (e->state == State::loaded || e->state == State::unloading) {
      e->unload_waiters.push_back(std::move(done));
      if (e->state == State::loaded) {
        e->state = State::unloading;
        jobs_.push_back({e, false});
        cv_.notify_all();
      }
      return;
    }
  }
  done(error);  // unknown, or not loaded (a load queued or running goes on)
}

std::vector<ModelPool::Listing> ModelPool::list() {
  std::lock_guard lock(mu_);
  rescan();
  std::vector<Listing> out;
  for (const Entry& e : entries_) {
    if (!e.present && e.state == State::unloaded) continue;
    Listing l{e.file.name, e.file.aliases, e.state, 0, 0, e.error};
    if (e.state == State::loaded || e.state == State::unloading) {
      l.max_model_len = e.served->engine.max_model_len();
      l.device_bytes = e.device_bytes;
    }
    out.push_back(std::move(l));
  }
  return out;
}

void ModelPool::render_metrics(Exposition& out) {
  std::lock_guard lock(mu_);
  for (const Entry& e : entries_) {
    serving::EngineStats stats = e.served ? e.served->engine.stats() : serving::EngineStats{};
    add_counters(stats, e.retired);
    e.metrics.render(out, stats);
  }
}

std::string ModelPool::failure() {
  std::lock_guard lock(mu_);
  for (const Entry& e : entries_) {
    if (e.served && e.served->engine.failed()) return e.served->engine.health_message();
  }
  return {};
}

void ModelPool::stop() {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  stopping_ = true;
  cv_.notify_all();
  // Their requests end now (cancelled); the engines stay until the destructor. Under the lock:
  // the loader may be unloading one (the engine threads never take this lock).
  for (Entry& e : entries_) {
    if (e.served) e.served->engine.shutdown();
  }
}

bool ModelPool::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

std::uint64_t ModelPool::used_bytes() const {
  std::uint64_t used = 0;
  for (const Entry& e : entries_) used += e.model ? e.device_bytes : 0;
  return used;
}

std::uint32_t ModelPool::loaded_count() const {
  std::uint32_t n = 0;
  for (const Entry& e : entries_) n += e.model ? 1 : 0;
  return n;
}

ModelPool::Entry* ModelPool::victim(const Entry& keep) {
  Entry* best = nullptr;
  for (Entry& e : entries_) {
    if (&e == &keep || !e.model || e.state != State::loaded) continue;
    if (!best || e.last_used < best->last_used) best = &e;
  }
  return best;
}

void ModelPool::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) break;
    const Job job = jobs_.front();
    jobs_.pop_front();
    if (job.load) {
      load(lock, *job.entry);
    } else if (job.entry->state == State::unloading) {
      unload_now(lock, *job.entry);
    }
  }
  // Stopping: whoever still waits hears so.
  std::vector<AcquireDone> waiters;
  std::vector<Done> unload_waiters;
  for (Entry& e : entries_) {
    for (AcquireDone& w : e.waiters) waiters.push_back(std::move(w));
    for (Done& w : e.unload_waiters) unload_waiters.push_back(std::move(w));
    e.waiters.clear();
    e.unload_waiters.clear();
  }
  lock.unlock();
  for (AcquireDone& w : waiters) w(nullptr, shutting_down());
  for (Done& w : unload_waiters) w(shutting_down());
}

bool ModelPool::unload_now(std::unique_lock<std::mutex>& lock, Entry& e) {
  e.state = State::unloading;
  // In-flight requests finish first (docs/ARCHITECTURE.md "Several models").
  cv_.wait(lock, [&] { return stopping_ || e.leases == 0; });
  if (stopping_) return false;
  add_counters(e.retired, e.served->engine.stats());
  std::unique_ptr<LoadedModel> gone = std::move(e.model);
  e.served.reset();
  const std::uint64_t bytes = e.device_bytes;
  e.device_bytes = 0;
  e.state = State::unloaded;
  std::vector<Done> told = std::move(e.unload_waiters);
  e.unload_waiters.clear();
  lock.unlock();
  gone.reset();  // the engine stops, the device memory is freed
  log::info("unloaded model '{}' ({} MiB of device memory freed)", e.file.name, bytes >> 20);
  for (Done& w : told) w(nullptr);
  lock.lock();
  // Requests that came for it meanwhile load it again, after the jobs queued before them.
  if (!e.waiters.empty() && e.state == State::unloaded) {
    e.state = State::loading;
    jobs_.push_back({&e, true});
  }
  return true;
}

void ModelPool::load(std::unique_lock<std::mutex>& lock, Entry& e) {
  if (e.model) {  // loaded meanwhile (its unload was queued after this load)
    e.state = State::loaded;
  } else {
    e.state = State::loading;
    std::exception_ptr error;
    for (;;) {
      // Make room: the least recently used go until the model fits in what is left, by its size
      // when it was last loaded, else by its file's (less than it takes: the KV cache and the
      // workspace come on top, and a load that finds too little room frees more below).
      while ((config_.max_loaded && loaded_count() >= config_.max_loaded) ||
             (config_.memory_budget && used_bytes() + std::max(e.file.size, e.known_bytes) > config_.memory_budget)) {
        Entry* v = victim(e);
        if (!v) break;
        log::info("unloading model '{}' to make room for '{}'", v->file.name, e.file.name);
        if (!unload_now(lock, *v)) return;
      }
      const std::uint64_t used = used_bytes();
      const std::uint64_t budget =
          config_.memory_budget ? (config_.memory_budget > used ? config_.memory_budget - used : 1) : 0;
      const ModelFile file = e.file;
      lock.unlock();
      std::unique_ptr<LoadedModel> m;
      error = nullptr;
      bool out_of_memory = false;
      log::info("loading model '{}' from {}{}", file.name, file.path,
                budget ? fmt::format(" ({} MiB of the device memory budget left)", budget >> 20) : "");
      try {
        m = loader_(file, budget, [this] { return stopping(); });
      } catch (const OutOfMemory& x) {
        out_of_memory = true;
        error = api_error(503, fmt::format("the model '{}' does not fit in device memory: {}", file.name, x.what()),
                          "model_load_failed");
      } catch (const Cancelled&) {
        error = shutting_down();
      } catch (const std::exception& x) {
        error = api_error(503, fmt::format("loading the model '{}' failed: {}", file.name, x.what()),
                          "model_load_failed");
      }
      lock.lock();
      if (m) {
        e.device_bytes = e.known_bytes = m->device_bytes();
        e.served.emplace(ServedModel{e.file.name, m->engine(), m->preprocessor(), m->reasoning(), e.metrics});
        e.model = std::move(m);
        e.error.clear();
        e.state = State::loaded;
        log::info("loaded model '{}': {} MiB of device memory", e.file.name, e.device_bytes >> 20);
        if (stopping_) e.served->engine.shutdown();  // stop() came during the load
        break;
      }
      // Another model's memory may be what it lacked: free the least recently used and retry.
      if (out_of_memory && !stopping_ && victim(e)) {
        Entry* v = victim(e);
        log::info("unloading model '{}' to make room for '{}'", v->file.name, e.file.name);
        if (!unload_now(lock, *v)) return;
        continue;
      }
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& x) {
        e.error = x.what();
      }
      log::error("{}", e.error);
      e.state = State::unloaded;
      std::vector<AcquireDone> told = std::move(e.waiters);
      e.waiters.clear();
      lock.unlock();
      for (AcquireDone& w : told) w(nullptr, error);
      lock.lock();
      return;
    }
  }
  std::vector<Lease> leases;
  for (std::size_t i = 0; i < e.waiters.size(); ++i) leases.push_back(lease(e));
  std::vector<AcquireDone> told = std::move(e.waiters);
  e.waiters.clear();
  lock.unlock();
  for (std::size_t i = 0; i < told.size(); ++i) told[i](std::move(leases[i]), nullptr);
  lock.lock();
}

}  // namespace vkllm::server
