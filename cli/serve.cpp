// `vkllm serve`: load the model, plan memory, start the engine and the HTTP server, and shut down
// gracefully on SIGINT/SIGTERM (exit 0).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <csignal>
#include <cstdlib>
#include <filesystem>
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
  sc.model_name = std::filesystem::path(o.model).stem().string();
  if (!o.served_model_names.empty()) {
    sc.model_name = o.served_model_names.front();
    sc.model_aliases.assign(o.served_model_names.begin() + 1, o.served_model_names.end());
  }
  const char* wake = std::getenv("VKLLM_TEST_SPURIOUS_WAKEUP");
  sc.test_spurious_wakeup = wake && std::string_view(wake) == "1";
  return sc;
}

server::ChatSetup chat_setup(const ServeOptions& o, const gguf::Reader& reader, const tok::Tokenizer& tokenizer) {
  std::optional<std::string> source;
  if (!o.chat_template_file.empty()) source = read_file(o.chat_template_file);
  bool has_template = false;
  server::ChatSetup chat = frontend::chat_setup(reader, tokenizer, source, &has_template);
  if (!source && !has_template) log::info("{} has no chat template: using ChatML", o.model);
  return chat;
}

void log_plan(const ServeOptions& o, const platform::Device& device, const model::Model& m) {
  const model::ModelConfig& c = m.config();
  const std::uint64_t kv_tokens = std::uint64_t{m.num_blocks() - 1} * m.options().block_size;
  log::info("model {}: {} {} layers, d_model {}, {} heads ({} KV) x {}, vocab {}", o.model,
            model::to_string(c.arch), c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size);
  log::info("memory plan on {}: weights {} + workspace {} (steps of {} tokens, {} sequences) + KV "
            "cache {} ({} blocks of {} tokens, {}) = {} tokens in the KV pool; context {} per request",
            device.name(), format_bytes(m.weight_bytes()), format_bytes(m.workspace_bytes()),
            m.options().max_batch_tokens, m.options().max_seqs, format_bytes(m.kv_bytes()),
            m.num_blocks() - 1, m.options().block_size, m.kv_type() == ops::KvType::f16 ? "f16" : "f32",
            kv_tokens, m.options().context_length);
  if (m.options().embeddings) {
    log::info("embeddings: /v1/embeddings, {} pooling unless a request asks another{}",
              o.pooling.empty() ? model::to_string(c.pooling) : o.pooling,
              c.encoder ? " (an encoder: embeddings only)" : "");
  }
  if (o.deterministic) log::info("deterministic mode: every kernel reduces in an order independent of the batch");
}

}  // namespace

int run_serve(const ServeOptions& o) {
  if (!(o.gpu_memory_fraction > 0.f && o.gpu_memory_fraction <= 1.f)) {
    throw InvalidRequest("--gpu-memory-fraction must be in (0, 1]");
  }
  check_model_file(o.model);
  SignalWatch signals;  // before any other thread starts, so every thread blocks the signals

  // Bind first: while the model loads every route answers 503 "the model is loading".
  const server::ServerConfig sc = server_config(o);
  server::Server srv(sc);
  srv.start();
  log::info("listening on http://{}:{} (model name '{}'{}); loading the model", o.host, srv.port(),
            sc.model_name, o.api_key.empty() ? "" : ", API key required");
  // Fault injection for the end-to-end tests: a slow load (and reload), to see the 503 answers.
  auto test_load_delay = [&signals] {
    if (const char* delay = std::getenv("VKLLM_TEST_LOAD_DELAY_MS")) {
      signals.sleep_for(std::chrono::milliseconds(std::strtoul(delay, nullptr, 10)));
    }
  };
  test_load_delay();
  // Declared parents first: the instance outlives the device, the device the model.
  platform::Instance instance = platform::Instance::create({});
  std::unique_ptr<platform::Device> device;
  std::optional<gguf::Reader> reader;
  std::optional<tok::Tokenizer> tokenizer;
  std::unique_ptr<model::Model> m;
  std::size_t index = 0;
  try {
    if (signals.received()) throw Cancelled("a signal came before the load");
    index = instance.choose_device(o.device >= 0 ? std::optional<std::size_t>(o.device) : std::nullopt);
    device = platform::Device::open(instance, index);
    reader.emplace(gguf::Reader::open(o.model));
    tokenizer.emplace(tok::Tokenizer::from_gguf(*reader));
    model::ModelOptions mo;
    mo.max_batch_tokens = o.max_num_batched_tokens;
    mo.max_seqs = o.max_num_seqs;
    mo.block_size = o.block_size;
    mo.context_length = o.ctx_size;
    mo.gpu_memory_fraction = o.gpu_memory_fraction;
    mo.deterministic = o.deterministic;
    mo.embeddings = o.embeddings;
    mo.should_stop = [&signals] { return signals.received(); };
    m = model::Model::load(*device, *reader, mo);
  } catch (const Cancelled& e) {
    log::info("stopped while loading the model ({})", e.what());
    srv.shutdown();
    srv.wait();
    return 0;
  }
  log_plan(o, *device, *m);

  serving::EngineConfig ec;
  ec.max_num_seqs = o.max_num_seqs;
  ec.max_num_batched_tokens = o.max_num_batched_tokens;
  ec.max_queue = o.max_queue;
  ec.prefix_caching = !o.no_prefix_caching;
  ec.overlap = !o.no_overlap;
  if (o.late_masks != "auto") ec.late_masks = o.late_masks == "on";
  // After a device loss (docs/ARCHITECTURE.md "Device loss"), on the engine thread: the model
  // and device go, the device is opened again and the weights reloaded with the same plan.
  ec.reload = [&]() -> model::Model& {
    const model::ModelOptions again = m->options();  // the KV pool the engine was built for
    m.reset();
    device.reset();
    test_load_delay();
    device = platform::Device::open(instance, index);
    m = model::Model::load(*device, *reader, again);
    return *m;
  };
  serving::Engine engine(*m, *tokenizer, ec);

  srv.attach(engine, *tokenizer, chat_setup(o, *reader, *tokenizer));
  // The server stops before the engine it points to goes away, on every path out of here.
  struct StopServerFirst {
    server::Server& srv;
    ~StopServerFirst() {
      srv.shutdown();
      srv.wait();
    }
  } stop_server_first{srv};
  log::info("ready: serving '{}' on http://{}:{}", sc.model_name, o.host, srv.port());

  const int sig = signals.wait();
  log::info("{}: shutting down (in-flight requests get {} s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
            sc.shutdown_grace.count());
  srv.shutdown();
  srv.wait();
  log::info("stopped");
  return 0;
}

}  // namespace vkllm::cli
