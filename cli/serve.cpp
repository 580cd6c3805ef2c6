// `vkllm serve`: load the model, plan memory, start the engine and the HTTP server, and shut down
// gracefully on SIGINT/SIGTERM (exit 0).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <csignal>
#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <future>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/serving/engine.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "platform/device.hpp"
#include "platform/instance.hpp"
#include "server/http_server.hpp"
#include "server/model_pool.hpp"

namespace vkllm::cli {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InvalidRequest(fmt::format("cannot read {}", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

namespace {

// SIGINT/SIGTERM, taken by a thread of its own from before the model loads: a signal stops the
// load too (a big model loads for minutes). The signals are blocked in every thread first.
class SignalWatch {
 public:
  SignalWatch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this] {
      const timespec tick{0, 100'000'000};
      while (!quit_) {
        const int sig = sigtimedwait(&set_, nullptr, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
          std::lock_guard lock(mu_);
          signal_ = sig;
          cv_.notify_all();
          return;
        }
      }
    });
  }
  ~SignalWatch() {
    quit_ = true;
    thread_.join();
  }
  bool received() const {
    std::lock_guard lock(mu_);
    return signal_ != 0;
  }
  int wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return signal_ != 0; });
    return signal_;
  }
  // Sleeps up to `ms`, less when a signal comes.
  void sleep_for(std::chrono::milliseconds ms) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, ms, [this] { return signal_ != 0; });
  }

 private:
  sigset_t set_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int signal_ = 0;
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

// What a model file must be before the server binds: a readable regular file.
void check_model_file(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) throw InvalidModel(fmt::format("{}: no such file", path));
  if (std::filesystem::is_directory(st)) throw InvalidModel(fmt::format("{} is a directory, not a GGUF file", path));
  if (!std::ifstream(path, std::ios::binary)) throw InvalidModel(fmt::format("{}: cannot open for reading", path));
}

server::ServerConfig server_config(const ServeOptions& o) {
  server::ServerConfig sc;
  sc.host = o.host;
  sc.port = o.port;
  sc.api_key = o.api_key;
  sc.cors_origin = o.cors_origin;
  sc.metrics_need_key = o.metrics_need_key;
  sc.allowed_hosts = o.allowed_hosts;
  sc.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.request_timeout * 1000.0));
  sc.read_timeout = std::chrono::seconds(o.timeout);
  sc.threads = o.threads;
  sc.default_max_tokens = o.default_max_tokens;
  sc.body_limit = o.max_body_bytes;
  if (!o.pooling.empty()) sc.pooling = model::parse_pooling(o.pooling);
  const char* wake = std::getenv("VKLLM_TEST_SPURIOUS_WAKEUP");
  sc.test_spurious_wakeup = wake && std::string_view(wake) == "1";
  return sc;
}

std::uint64_t bytes_on_disk(const std::filesystem::path& p) {
  std::error_code ec;
  const std::uintmax_t n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

// The models served: the -m files in their order (the first is the default), then the .gguf
// files of --models-dir by name. Names are file names without .gguf; --served-model-name names
// a single -m model. A name taken twice keeps its first file.
server::ModelScanner model_scanner(const ServeOptions& o) {
  return [o] {
    std::vector<server::ModelFile> files;
    auto add = [&files](server::ModelFile f) {
      for (const server::ModelFile& g : files) {
        if (g.name == f.name) {
          log::debug("{}: the name '{}' is taken by {}; skipped", f.path, f.name, g.path);
          return;
        }
      }
      files.push_back(std::move(f));
    };
    for (const std::string& path : o.models) {
      server::ModelFile f{std::filesystem::path(path).stem().string(), {}, path, bytes_on_disk(path)};
      if (!o.served_model_names.empty()) {
        f.name = o.served_model_names.front();
        f.aliases.assign(o.served_model_names.begin() + 1, o.served_model_names.end());
      }
      add(std::move(f));
    }
    if (!o.models_dir.empty()) {
      std::vector<std::filesystem::path> found;
      std::error_code ec;
      for (const auto& d : std::filesystem::directory_iterator(o.models_dir, ec)) {
        std::error_code fec;
        if (d.path().extension() == ".gguf" && d.is_regular_file(fec)) found.push_back(d.path());
      }
      if (ec) log::warn("--models-dir {}: {}", o.models_dir, ec.message());
      std::sort(found.begin(), found.end());
      for (const auto& p : found) add({p.stem().string(), {}, p.string(), bytes_on_disk(p)});
    }
    return files;
  };
}

void log_plan(const std::string& path, const platform::Device& device, const model::Model& m, bool deterministic) {
  const model::ModelConfig& c = m.config();
  const std::uint64_t kv_tokens = std::uint64_t{m.num_blocks() - 1} * m.options().block_size;
  log::info("model {}: {} {} layers, d_model {}, {} heads ({} KV) x {}, vocab {}", path,
            model::to_string(c.arch), c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size);
  if (c.moe()) {
    log::info("experts: {} of {} a token, {} wide{}", c.n_experts_used, c.n_experts, c.expert_ffn_dim,
              c.shared_ffn_dim ? fmt::format(", and a shared expert {} wide", c.shared_ffn_dim) : std::string());
  }
  log::info("memory plan on {}: weights {} + workspace {} (steps of {} tokens, {} sequences) + KV "
            "cache {} ({} blocks of {} tokens, {}) = {} tokens in the KV pool; context {} per request",
            device.name(), format_bytes(m.weight_bytes()), format_bytes(m.workspace_bytes()),
            m.options().max_batch_tokens, m.options().max_seqs, format_bytes(m.kv_bytes()),
            m.num_blocks() - 1, m.options().block_size, m.kv_type() == ops::KvType::f16 ? "f16" : "f32",
            kv_tokens, m.options().context_length);
  if (m.swa_num_blocks() > 0) {
    log::info("sliding-window layers: their own KV pool of {} blocks ({} sequences' windows of {} "
              "tokens and a step's chunks; blocks before a window go back to it), counted above",
              m.swa_num_blocks() - 1, m.options().max_seqs, m.swa_window());
  } else if (m.window() > 0) {
    log::info("every layer has a sliding window of {} tokens: blocks before it go back to the pool", m.window());
  }
  if (m.options().embeddings) {
    log::info("embeddings: /v1/embeddings{}", c.encoder ? " (an encoder: embeddings only)" : "");
  }
  if (deterministic) log::info("deterministic mode: every kernel reduces in an order independent of the batch");
}

// One served GGUF model: its own logical device (a device loss reloads this model alone), its
// weights and KV cache, and its engine.
class GgufModel final : public server::LoadedModel {
 public:
  GgufModel(const ServeOptions& o, platform::Instance& instance, std::size_t device_index,
            const server::ModelFile& file, std::uint64_t budget, const std::function<bool()>& should_stop,
            std::function<void()> load_delay)
      : device_(platform::Device::open(instance, device_index)),
        reader_(gguf::Reader::open(file.path)),
        tokenizer_(tok::Tokenizer::from_gguf(reader_)) {
    model::ModelOptions mo;
    mo.max_batch_tokens = o.max_num_batched_tokens;
    mo.max_seqs = o.max_num_seqs;
    mo.block_size = o.block_size;
    mo.context_length = o.ctx_size;
    mo.gpu_memory_fraction = o.gpu_memory_fraction;
    mo.memory_budget = budget;
    mo.deterministic = o.deterministic;
    mo.embeddings = o.embeddings;
    mo.should_stop = should_stop;
    model_ = model::Model::load(*device_, reader_, mo);
    log_plan(file.path, *device_, *model_, o.deterministic);

    serving::EngineConfig ec;
    ec.max_num_seqs = o.max_num_seqs;
    ec.max_num_batched_tokens = o.max_num_batched_tokens;
    ec.max_queue = o.max_queue;
    ec.prefix_caching = !o.no_prefix_caching;
    ec.overlap = !o.no_overlap;
    if (o.late_masks != "auto") ec.late_masks = o.late_masks == "on";
    // After a device loss (docs/ARCHITECTURE.md "Device loss"), on the engine thread: the model
    // and device go, the device is opened again and the weights reloaded with the same plan.
    ec.reload = [this, &instance, device_index, load_delay]() -> model::Model& {
      const model::ModelOptions again = model_->options();  // the KV pool the engine was built for
      model_.reset();
      device_.reset();
      load_delay();
      device_ = platform::Device::open(instance, device_index);
      model_ = model::Model::load(*device_, reader_, again);
      return *model_;
    };
    engine_ = std::make_unique<serving::Engine>(*model_, tokenizer_, ec);

    std::optional<std::string> source;
    if (!o.chat_template_file.empty()) source = read_file(o.chat_template_file);
    bool has_template = false;
    frontend::ChatSetup chat = frontend::chat_setup(reader_, tokenizer_, source, &has_template);
    if (!source && !has_template) log::info("{} has no chat template: using ChatML", file.path);
    reasoning_ = chat.reasoning;
    pre_.emplace(tokenizer_, std::move(chat), engine_->max_model_len());
    bytes_ = model_->weight_bytes() + model_->workspace_bytes() + model_->kv_bytes();
  }

  serving::Service& engine() override { return *engine_; }
  const frontend::Preprocessor& preprocessor() const override { return *pre_; }
  bool reasoning() const override { return reasoning_; }
  std::uint64_t device_bytes() const override { return bytes_; }

 private:
  // Declared parents first: the device outlives the model, the model its engine.
  std::unique_ptr<platform::Device> device_;
  gguf::Reader reader_;
  tok::Tokenizer tokenizer_;
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<serving::Engine> engine_;
  std::optional<frontend::Preprocessor> pre_;
  bool reasoning_ = false;
  std::uint64_t bytes_ = 0;
};

}  // namespace

int run_serve(const ServeOptions& o) {
  if (!(o.gpu_memory_fraction > 0.f && o.gpu_memory_fraction <= 1.f)) {
    throw InvalidRequest("--gpu-memory-fraction must be in (0, 1]");
  }
  if (o.models.empty() && o.models_dir.empty()) throw InvalidRequest("serve needs a model: -m FILE or --models-dir DIR");
  const bool several = o.models.size() > 1 || !o.models_dir.empty();
  if (several && !o.served_model_names.empty()) {
    throw InvalidRequest("--served-model-name names a single -m model; with several each is named by its file");
  }
  if (several && !o.chat_template_file.empty()) {
    throw InvalidRequest("--chat-template overrides a single -m model's template, not several models'");
  }
  for (const std::string& path : o.models) check_model_file(path);
  if (!o.models_dir.empty() && !std::filesystem::is_directory(o.models_dir)) {
    throw InvalidRequest(fmt::format("--models-dir {}: not a directory", o.models_dir));
  }
  SignalWatch signals;  // before any other thread starts, so every thread blocks the signals

  // Bind first: while the first model loads every route answers 503 "the model is loading".
  const server::ServerConfig sc = server_config(o);
  server::Server srv(sc);
  srv.start();
  // "listening on URL (" is what scripts and the tests look for: the URL ends at the space.
  const std::string what =
      several ? std::string("several models")
              : fmt::format("model name '{}'", o.served_model_names.empty()
                                                   ? std::filesystem::path(o.models.front()).stem().string()
                                                   : o.served_model_names.front());
  log::info("listening on http://{}:{} ({}{}); loading the model", o.host, srv.port(), what,
            o.api_key.empty() ? "" : ", API key required");
  // Fault injection for the end-to-end tests: a slow load (and reload), to see the 503 answers.
  auto test_load_delay = [&signals] {
    if (const char* delay = std::getenv("VKLLM_TEST_LOAD_DELAY_MS")) {
      signals.sleep_for(std::chrono::milliseconds(std::strtoul(delay, nullptr, 10)));
    }
  };
  // The instance outlives the pool (declared first), the pool the server's threads.
  platform::Instance instance = platform::Instance::create({});
  std::size_t index = 0;
  server::PoolConfig pc;
  try {
    index = instance.choose_device(o.device >= 0 ? std::optional<std::size_t>(o.device) : std::nullopt);
  } catch (...) {
    srv.shutdown();
    srv.wait();
    throw;
  }
  if (several) {
    pc.max_loaded = o.max_loaded_models;
    pc.memory_budget = o.memory_budget ? o.memory_budget
                                       : static_cast<std::uint64_t>(static_cast<double>(
                                             instance.devices()[index].device_local_bytes) * o.gpu_memory_fraction);
    log::info("several models: {} of device memory for all{}", format_bytes(pc.memory_budget),
              o.max_loaded_models ? fmt::format(", at most {} loaded", o.max_loaded_models) : "");
  } else {
    pc.max_loaded = 1;
    pc.memory_budget = o.memory_budget;
  }
  std::mutex error_mu;
  std::exception_ptr first_error;  // the first load's own error: what `serve` exits with
  server::ModelPool pool(pc, model_scanner(o),
                         [&](const server::ModelFile& file, std::uint64_t budget, const std::function<bool()>& stop) {
                           auto should_stop = [&signals, stop] { return signals.received() || stop(); };
                           try {
                             test_load_delay();
                             if (should_stop()) throw Cancelled("a signal came before the load");
                             return std::unique_ptr<server::LoadedModel>(std::make_unique<GgufModel>(
                                 o, instance, index, file, budget, should_stop, test_load_delay));
                           } catch (...) {
                             std::lock_guard lock(error_mu);
                             first_error = std::current_exception();
                             throw;
                           }
                         });
  // The server stops before the pool it points to goes away, on every path out of here.
  struct StopServerFirst {
    server::Server& srv;
    ~StopServerFirst() {
      srv.shutdown();
      srv.wait();
    }
  } stop_server_first{srv};

  if (!several) {
    // One model: loaded before the server answers, and its failure is the command's.
    std::promise<std::exception_ptr> loaded;
    pool.acquire("", [&loaded](server::ModelPool::Lease, std::exception_ptr e) { loaded.set_value(e); });
    if (const std::exception_ptr e = loaded.get_future().get()) {
      std::lock_guard lock(error_mu);
      try {
        std::rethrow_exception(first_error ? first_error : e);
      } catch (const Cancelled& e) {
        log::info("stopped while loading the model ({})", e.what());
        return 0;
      }
    }
  } else {
    // The default model is loaded at once; the others when asked for.
    pool.acquire("", [](server::ModelPool::Lease, std::exception_ptr) {});
  }
  srv.attach(pool);
  std::string names;
  for (const server::ModelPool::Listing& l : pool.list()) names += fmt::format("{}'{}'", names.empty() ? "" : ", ", l.name);
  log::info("ready: serving {} on http://{}:{}", names, o.host, srv.port());

  const int sig = signals.wait();
  log::info("{}: shutting down (in-flight requests get {} s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
            sc.shutdown_grace.count());
  srv.shutdown();
  srv.wait();
  log::info("stopped");
  return 0;
}

}  // namespace vkllm::cli
