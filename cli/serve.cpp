// `vkllm serve`: load the model, plan memory, start the engine and the HTTP server, and shut down
// gracefully on SIGINT/SIGTERM (exit 0).
#include <chrono>
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

std::string special_text(const tok::Tokenizer& t, tok::TokenId id) {
  if (id < 0 || static_cast<std::size_t>(id) >= t.n_tokens()) return {};
  return std::string(t.token_to_piece(id, true));
}

}  // namespace

int run_serve(const ServeOptions& o) {
  if (!(o.gpu_memory_fraction > 0.f && o.gpu_memory_fraction <= 1.f)) {
    throw InvalidRequest("--gpu-memory-fraction must be in (0, 1]");
  }
  // Signals are taken by sigwait below: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Bind first: while the model loads every route answers 503 "the model is loading".
  server::ServerConfig sc;
  sc.host = o.host;
  sc.port = o.port;
  sc.api_key = o.api_key;
  sc.cors_origin = o.cors_origin;
  sc.threads = o.threads;
  sc.default_max_tokens = o.default_max_tokens;
  sc.model_name = !o.served_model_name.empty() ? o.served_model_name
                                               : std::filesystem::path(o.model).stem().string();
  server::Server srv(sc);
  srv.start();
  log::info("listening on http://{}:{} (model name '{}'{}); loading the model", o.host, srv.port(),
            sc.model_name, o.api_key.empty() ? "" : ", API key required");
  // Fault injection for the end-to-end tests: a slow load, to see the 503 answers.
  if (const char* delay = std::getenv("VKLLM_TEST_LOAD_DELAY_MS")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::strtoul(delay, nullptr, 10)));
  }

  platform::Instance instance = platform::Instance::create({});
  const std::size_t index = instance.choose_device(o.device >= 0 ? std::optional<std::size_t>(o.device) : std::nullopt);
  auto device = platform::Device::open(instance, index);
  gguf::Reader reader = gguf::Reader::open(o.model);
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_gguf(reader);

  model::ModelOptions mo;
  mo.max_batch_tokens = o.max_num_batched_tokens;
  mo.max_seqs = o.max_num_seqs;
  mo.block_size = o.block_size;
  mo.context_length = o.ctx_size;
  mo.gpu_memory_fraction = o.gpu_memory_fraction;
  mo.deterministic = o.deterministic;
  auto m = model::Model::load(*device, reader, mo);
  const model::ModelConfig& c = m->config();
  const std::uint64_t kv_tokens = std::uint64_t{m->num_blocks() - 1} * m->options().block_size;
  log::info("model {}: {} {} layers, d_model {}, {} heads ({} KV) x {}, vocab {}", o.model,
            model::to_string(c.arch), c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size);
  log::info("memory plan on {}: weights {} + workspace {} (steps of {} tokens, {} sequences) + KV "
            "cache {} ({} blocks of {} tokens, {}) = {} tokens in the KV pool; context {} per request",
            device->name(), format_bytes(m->weight_bytes()), format_bytes(m->workspace_bytes()),
            m->options().max_batch_tokens, m->options().max_seqs, format_bytes(m->kv_bytes()),
            m->num_blocks() - 1, m->options().block_size, m->kv_type() == ops::KvType::f16 ? "f16" : "f32",
            kv_tokens, m->options().context_length);
  if (o.deterministic) {
    log::info("deterministic mode: every kernel reduces in an order independent of the batch");
  }

  server::ChatSetup chat{tmpl::Template::parse(tmpl::kChatmlTemplate), special_text(tokenizer, tokenizer.bos()),
                         special_text(tokenizer, tokenizer.eos())};
  if (!o.chat_template_file.empty()) {
    chat.chat_template = tmpl::Template::parse(read_file(o.chat_template_file));
  } else if (auto s = reader.find_string("tokenizer.chat_template")) {
    chat.chat_template = tmpl::Template::parse(*s);
  } else {
    log::info("{} has no chat template: using ChatML", o.model);
  }

  serving::EngineConfig ec;
  ec.max_num_seqs = o.max_num_seqs;
  ec.max_num_batched_tokens = o.max_num_batched_tokens;
  ec.max_queue = o.max_queue;
  ec.prefix_caching = !o.no_prefix_caching;
  serving::Engine engine(*m, tokenizer, ec);

  srv.attach(engine, tokenizer, std::move(chat));
  // The server stops before the engine it points to goes away, on every path out of here.
  struct StopServerFirst {
    server::Server& srv;
    ~StopServerFirst() {
      srv.shutdown();
      srv.wait();
    }
  } stop_server_first{srv};
  log::info("ready: serving '{}' on http://{}:{}", sc.model_name, o.host, srv.port());

  int sig = 0;
  sigwait(&signals, &sig);
  log::info("{}: shutting down (in-flight requests get {} s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
            sc.shutdown_grace.count());
  srv.shutdown();
  srv.wait();
  log::info("stopped");
  return 0;
}

}  // namespace vkllm::cli
