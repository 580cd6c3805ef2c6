// The models one server serves (docs/ARCHITECTURE.md "Several models"): every model it knows,
// loaded on demand by a loader thread of its own, the least recently used unloaded when a new
// one would pass the device memory budget or --max-loaded-models, never while a request holds
// it. Requests hold a model through a lease; loading never blocks requests to loaded models.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/frontend/prompt.hpp"
#include "engine/serving/engine.hpp"
#include "server/metrics.hpp"

namespace vkllm::server {

// What a request needs of a loaded model.
struct ServedModel {
  std::string name;  // the id responses carry
  serving::Service& engine;
  const frontend::Preprocessor& pre;
  bool reasoning = false;  // the chat template is a reasoning model's
  Metrics& metrics;
};

// One model in device memory, made by the pool's loader; its destructor stops the engine and
// frees the memory.
class LoadedModel {
 public:
  virtual ~LoadedModel() = default;
  virtual serving::Service& engine() = 0;
  virtual const frontend::Preprocessor& preprocessor() const = 0;
  virtual bool reasoning() const = 0;
  // Device memory it holds (weights, workspace, KV cache), for the budget.
  virtual std::uint64_t device_bytes() const = 0;
};

// A model the server knows, loaded or not.
struct ModelFile {
  std::string name;                  // the id requests name
  std::vector<std::string> aliases;  // other names for it
  std::string path;
  std::uint64_t size = 0;  // bytes on disk: the estimate of its weights before it loads
};

struct PoolConfig {
  // Device memory all loaded models together may hold; 0: unbounded (one model at a time plans
  // with its own --gpu-memory-fraction).
  std::uint64_t memory_budget = 0;
  std::uint32_t max_loaded = 0;  // 0: as many as the budget holds
};

// Loads `file` within `budget` bytes of device memory (0: the model plans on its own); throws
// what loading throws (OutOfMemory when it does not fit, Cancelled when `should_stop` said so).
using ModelLoader = std::function<std::unique_ptr<LoadedModel>(
    const ModelFile& file, std::uint64_t budget, const std::function<bool()>& should_stop)>;
// The models served now (a directory is read again, so files added later are found); the first
// is the default of requests that name none.
using ModelScanner = std::function<std::vector<ModelFile>()>;

class ModelPool {
 public:
  // A request's hold on a loaded model: the model is not unloaded while one exists.
  using Lease = std::shared_ptr<const ServedModel>;
  // Called once, from any thread: a lease, or the error (an ApiException: 404 for an unknown
  // name, 503 when the load failed or the server stops).
  using AcquireDone = std::function<void(Lease, std::exception_ptr)>;
  using Done = std::function<void(std::exception_ptr)>;

  enum class State { unloaded, loading, loaded, unloading };
  struct Listing {
    std::string name;
    std::vector<std::string> aliases;
    State state = State::unloaded;
    std::uint32_t max_model_len = 0;  // when loaded
    std::uint64_t device_bytes = 0;   // when loaded
    std::string error;                // why its last load failed (empty: it did not)
  };

  ModelPool(PoolConfig config, ModelScanner scanner, ModelLoader loader);
  ~ModelPool();  // stop(), then every model unloaded
  ModelPool(const ModelPool&) = delete;
  ModelPool& operator=(const ModelPool&) = delete;

  // `name` empty: the default model. Loads it when it is not loaded.
  void acquire(std::string_view name, AcquireDone done);
  // Unloads once the requests holding it finish; done at once when it is not loaded.
  void unload(std::string_view name, Done done);
  std::vector<Listing> list();
  // The canonical name of `name` (an alias, or empty for the default); nullopt when unknown.
  std::optional<std::string> resolve(std::string_view name);

  // Appends every known model's metrics (an unloaded one's engine gauges read zero).
  void render_metrics(Exposition& out);
  // Why a loaded model is not serving (its device was lost); empty when all are.
  std::string failure();

  // Loads and waits end (their callers get 503), every loaded engine stops taking requests and
  // cancels the ones it has. Called by the server's shutdown.
  void stop();
  bool stopping() const;

 private:
  struct Entry {
    ModelFile file;
    State state = State::unloaded;
    std::unique_ptr<LoadedModel> model;
    std::optional<ServedModel> served;
    std::uint64_t device_bytes = 0;
    std::uint64_t known_bytes = 0;  // its footprint when last loaded: the estimate of the next load
    serving::EngineStats retired;   // the counters of its engines before the one loaded now
    int leases = 0;
    std::uint64_t last_used = 0;
    bool present = true;  // still in the scanner's list
    std::vector<AcquireDone> waiters;
    std::vector<Done> unload_waiters;
    std::string error;
    Metrics metrics;
    explicit Entry(ModelFile f) : file(std::move(f)), metrics(file.name) {}
  };
  struct Job {
    Entry* entry;
    bool load;  // else unload
  };

  Entry* find(std::string_view name);  // mu_ held; rescans once when unknown
  void rescan();                       // mu_ held
  Lease lease(Entry& e);               // mu_ held
  void release(Entry& e);
  void run();
  void load(std::unique_lock<std::mutex>& lock, Entry& e);
  // Waits for `e`'s leases to end and frees it; false when stopping came first.
  bool unload_now(std::unique_lock<std::mutex>& lock, Entry& e);
  // The least recently used loaded model other than `keep`, or null.
  Entry* victim(const Entry& keep);
  std::uint64_t used_bytes() const;
  std::uint32_t loaded_count() const;

  PoolConfig config_;
  ModelScanner scanner_;
  ModelLoader loader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // leases ended, jobs queued, stopping
  std::list<Entry> entries_;    // stable addresses: leases and jobs point at them
  std::deque<Job> jobs_;
  std::uint64_t clock_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace vkllm::server
