// The model pool without a device: stand-in models with a size, the memory budget and
// --max-loaded-models, least recently used first, leases holding a model until its requests end,
// loads that fail or do not fit, names and aliases, counters kept across unloads, stop().
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/synthetic.hpp"
#include "engine/template/template.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "server/model_pool.hpp"
#include "server/openai.hpp"

using namespace vkllm;
using namespace vkllm::server;
using namespace std::chrono_literals;

namespace {

const tok::Tokenizer& tokenizer() {
  static const gguf::Reader reader = [] {
    // The micro preset: a tokenizer (512 tokens) over a model too small to matter.
    return gguf::Reader::from_bytes(model::make_synthetic_model(*model::synthetic_preset("micro")).to_bytes(), "pool.gguf");
  }();
  static const tok::Tokenizer t = tok::Tokenizer::from_gguf(reader);
  return t;
}

// An engine that serves nothing but counts what the pool asks of it.
class IdleService final : public serving::Service {
 public:
  explicit IdleService(std::uint64_t generated) : generated_(generated) {}
  serving::RequestId submit(std::vector<std::uint32_t>, serving::RequestParams, serving::EventCallback) override {
    throw Unavailable("idle");
  }
  void cancel(serving::RequestId) override {}
  void shutdown() override { shut = true; }
  serving::EngineStats stats() const override {
    serving::EngineStats s;
    s.generation_tokens = generated_;
    return s;
  }
  std::uint32_t max_model_len() const override { return 256; }
  bool embeddings() const override { return false; }
  bool generates() const override { return true; }
  model::Pooling default_pooling() const override { return model::Pooling::mean; }
  bool failed() const override { return false; }
  std::string health_message() const override { return {}; }
  std::atomic<bool> shut{false};

 private:
  std::uint64_t generated_;
};

// What the loader saw and made.
struct World {
  std::mutex mu;
  std::vector<std::string> loads;        // names, in order
  std::vector<std::uint64_t> budgets;    // each load's budget
  std::vector<std::string> unloads;      // names, in order of destruction
  std::map<std::string, std::uint64_t> footprint{{"a", 60}, {"b", 60}, {"c", 30}};
  std::map<std::string, int> fail;       // throw this many times: 1 InvalidModel, 2 OutOfMemory
  std::atomic<int> loaded{0};
};

class StandIn final : public LoadedModel {
 public:
  StandIn(World& w, std::string name, std::uint64_t bytes)
      : w_(w), name_(std::move(name)), bytes_(bytes), service_(7),
        pre_(tokenizer(), frontend::ChatSetup{tmpl::Template::parse(tmpl::kChatmlTemplate), "", "", false}, 256) {
    ++w_.loaded;
  }
  ~StandIn() override {
    std::lock_guard lock(w_.mu);
    w_.unloads.push_back(name_);
    --w_.loaded;
  }
  serving::Service& engine() override { return service_; }
  const frontend::Preprocessor& preprocessor() const override { return pre_; }
  bool reasoning() const override { return false; }
  std::uint64_t device_bytes() const override { return bytes_; }

 private:
  World& w_;
  std::string name_;
  std::uint64_t bytes_;
  IdleService service_;
  frontend::Preprocessor pre_;
};

std::unique_ptr<ModelPool> make_pool(World& w, PoolConfig c, std::vector<ModelFile> files = {}) {
  if (files.empty()) files = {{"a", {"alpha"}, "a.gguf", 10}, {"b", {}, "b.gguf", 10}, {"c", {}, "c.gguf", 10}};
  return std::make_unique<ModelPool>(
      c, [files] { return files; },
      [&w](const ModelFile& f, std::uint64_t budget, const std::function<bool()>&) -> std::unique_ptr<LoadedModel> {
        std::uint64_t bytes = 0;
        {
          std::lock_guard lock(w.mu);
          w.loads.push_back(f.name);
          w.budgets.push_back(budget);
          bytes = w.footprint[f.name];
          if (w.fail[f.name] == 1) throw InvalidModel(f.path + ": not a GGUF file");
          if (budget && bytes > budget) throw OutOfMemory("the KV cache does not fit");
        }
        return std::make_unique<StandIn>(w, f.name, bytes);
      });
}

struct Got {
  ModelPool::Lease lease;
  std::exception_ptr error;
};

// Acquires and waits for the answer.
Got get(ModelPool& pool, const std::string& name) {
  std::promise<Got> p;
  pool.acquire(name, [&p](ModelPool::Lease l, std::exception_ptr e) { p.set_value({std::move(l), e}); });
  return p.get_future().get();
}

ApiError error_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const ApiException& x) {
    return x.error();
  }
}

ModelPool::State state_of(ModelPool& pool, const std::string& name) {
  for (const ModelPool::Listing& l : pool.list()) {
    if (l.name == name) return l.state;
  }
  FAIL("no such model listed: " << name);
  return ModelPool::State::unloaded;
}

}  // namespace

TEST_CASE("a budget that fits one model: each request loads its model, unloading the other once its requests ended") {
  World w;
  auto pool = make_pool(w, PoolConfig{100, 0});
  Got a = get(*pool, "a");
  REQUIRE(a.lease);
  CHECK(a.lease->name == "a");
  CHECK(state_of(*pool, "a") == ModelPool::State::loaded);

  // B does not fit beside A, and A is in use: B waits until A's request ends.
  std::promise<Got> pb;
  pool->acquire("b", [&pb](ModelPool::Lease l, std::exception_ptr e) { pb.set_value({std::move(l), e}); });
  auto fb = pb.get_future();
  CHECK(fb.wait_for(200ms) == std::future_status::timeout);
  CHECK(state_of(*pool, "a") == ModelPool::State::unloading);
  // A request for A meanwhile waits too (A is going), and is served after B by loading A again.
  std::promise<Got> pa2;
  pool->acquire("alpha", [&pa2](ModelPool::Lease l, std::exception_ptr e) { pa2.set_value({std::move(l), e}); });
  a.lease.reset();  // A's last request ends
  Got b = fb.get();
  REQUIRE(b.lease);
  CHECK(b.lease->name == "b");
  {
    std::lock_guard lock(w.mu);
    CHECK(w.unloads == std::vector<std::string>{"a"});
  }
  b.lease.reset();
  Got a2 = pa2.get_future().get();
  REQUIRE(a2.lease);
  CHECK(a2.lease->name == "a");
  std::lock_guard lock(w.mu);
  // B's file (10) looked as if it fit beside A: its first try found too little room.
  CHECK(w.loads == std::vector<std::string>{"a", "b", "b", "a"});
  CHECK(w.unloads == std::vector<std::string>{"a", "b"});
  CHECK(w.loaded == 1);
}

TEST_CASE("--max-loaded-models: the least recently used goes; the budget passes what others leave") {
  World w;
  auto pool = make_pool(w, PoolConfig{1000, 2});
  get(*pool, "a");
  get(*pool, "b");
  get(*pool, "a");  // b is now the least recently used
  Got c = get(*pool, "c");
  REQUIRE(c.lease);
  std::lock_guard lock(w.mu);
  CHECK(w.unloads == std::vector<std::string>{"b"});
  CHECK(w.budgets == std::vector<std::uint64_t>{1000, 940, 940});
}

TEST_CASE("a load that does not fit frees the least recently used model and tries again") {
  World w;
  w.footprint["c"] = 90;  // its file says 10: the estimate lets it try beside A, and it fails
  auto pool = make_pool(w, PoolConfig{100, 0});
  get(*pool, "a");
  Got c = get(*pool, "c");
  REQUIRE(c.lease);
  std::lock_guard lock(w.mu);
  CHECK(w.loads == std::vector<std::string>{"a", "c", "c"});
  CHECK(w.budgets == std::vector<std::uint64_t>{100, 40, 100});
  CHECK(w.unloads == std::vector<std::string>{"a"});
}

TEST_CASE("failures: an unknown name is 404 naming what is served, a failed load 503 with its cause, and it is tried again") {
  World w;
  w.fail["b"] = 1;
  w.footprint["a"] = 200;  // never fits
  auto pool = make_pool(w, PoolConfig{100, 0});
  const ApiError unknown = error_of(get(*pool, "nope").error);
  CHECK(unknown.status == 404);
  CHECK(unknown.code == "model_not_found");
  CHECK(unknown.message.find("'a', 'b', 'c'") != std::string::npos);

  const ApiError bad = error_of(get(*pool, "b").error);
  CHECK(bad.status == 503);
  CHECK(bad.code == "model_load_failed");
  CHECK(bad.message.find("b.gguf: not a GGUF file") != std::string::npos);
  bool listed = false;
  for (const auto& l : pool->list()) {
    if (l.name == "b") listed = l.state == ModelPool::State::unloaded && l.error.find("not a GGUF") != std::string::npos;
  }
  CHECK(listed);
  const ApiError big = error_of(get(*pool, "a").error);
  CHECK(big.status == 503);
  CHECK(big.message.find("does not fit") != std::string::npos);

  {
    std::lock_guard lock(w.mu);
    w.fail["b"] = 0;
  }
  CHECK(get(*pool, "b").lease);  // the file was mended: the next request loads it
  CHECK(error_of(get(*pool, "").error).status == 503);  // "" is the default, a: still too big
}

TEST_CASE("unload: waits for the requests holding the model; counters go on after a reload; stop() answers waiters") {
  World w;
  auto pool = make_pool(w, PoolConfig{0, 1});
  Got a = get(*pool, "a");
  std::promise<std::exception_ptr> unloaded;
  pool->unload("a", [&unloaded](std::exception_ptr e) { unloaded.set_value(e); });
  auto fu = unloaded.get_future();
  CHECK(fu.wait_for(100ms) == std::future_status::timeout);
  a.lease.reset();
  CHECK(fu.get() == nullptr);
  CHECK(state_of(*pool, "a") == ModelPool::State::unloaded);
  get(*pool, "a");
  Exposition x;
  pool->render_metrics(x);
  // Each stand-in engine generated 7 tokens: the unloaded one's count is kept.
  CHECK(x.text().find("vllm:generation_tokens_total{model_name=\"a\"} 14") != std::string::npos);
  CHECK(x.text().find("vllm:generation_tokens_total{model_name=\"b\"} 0") != std::string::npos);
  CHECK(x.text().find("# TYPE vllm:generation_tokens_total counter") == x.text().rfind("# TYPE vllm:generation_tokens_total"));

  Got held = get(*pool, "a");
  std::promise<Got> pb;
  pool->acquire("b", [&pb](ModelPool::Lease l, std::exception_ptr e) { pb.set_value({std::move(l), e}); });
  pool->stop();
  const Got b = pb.get_future().get();
  CHECK_FALSE(b.lease);
  CHECK(error_of(b.error).code == "shutting_down");
  CHECK(error_of(get(*pool, "a").error).code == "shutting_down");
  CHECK(static_cast<IdleService&>(held.lease->engine).shut);
  held.lease.reset();
  pool.reset();
  CHECK(w.loaded == 0);
}
