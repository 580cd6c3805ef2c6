// The OpenAI-compatible HTTP server (Boost.Asio + Beast, C++20 coroutines): routes, auth,
// limits, SSE streaming, disconnect -> cancel, metrics, graceful shutdown. One io_context with
// N io threads that only move bytes; parsing, template rendering and tokenizing run on a small
// worker pool; each connection runs on its own strand; engine events arrive through a
// per-request queue that wakes the connection's coroutine (docs/ARCHITECTURE.md "Threads").
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/frontend/prompt.hpp"
#include "engine/serving/engine.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "server/model_pool.hpp"

namespace vkllm::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: any free port (tests)
  std::string api_key;        // empty: no auth; else every route but /health (and /metrics)
  bool metrics_need_key = false;  // /metrics asks for the API key too
  // Host names served besides localhost and loopback addresses ("*": any). On a loopback bind
  // other names get 403 (DNS rebinding); given, the check also runs on other binds.
  std::vector<std::string> allowed_hosts;
  std::string cors_origin;    // empty: no CORS headers
  unsigned threads = 2;                    // io threads
  unsigned workers = 2;                    // parsing, templates, tokenizing
  std::uint64_t body_limit = 8u << 20;
  std::uint32_t header_limit = 16u << 10;
  // --timeout: a whole request's read (headers and body: a client sending a byte at a time is
  // cut off), each response write (a client that stops reading), keep-alive idle.
  std::chrono::seconds read_timeout{30};
  // Each connection's kernel send buffer (SO_SNDBUF; the kernel doubles it), so a client that
  // stops reading holds little and its writes stall into the timeout above. 0: the kernel's
  // autotuning (up to net.ipv4.tcp_wmem's 4 MiB a connection).
  std::uint32_t send_buffer = 256u << 10;
  std::chrono::seconds shutdown_grace{5};     // in-flight requests get this long to finish
  std::uint32_t default_max_tokens = 256;
  // A generation running longer ends with 408 request_timeout, its KV blocks freed (0: none).
  std::chrono::milliseconds request_timeout{0};
  // /v1/embeddings: the pooling of a request that names none (--pooling); empty: the model's.
  std::optional<model::Pooling> pooling;
  // Test hook (VKLLM_TEST_SPURIOUS_WAKEUP): every generation's first socket wait wakes with
  // nothing to read, as the reactor may report stale readiness.
  bool test_spurious_wakeup = false;
};

using ChatSetup = frontend::ChatSetup;

class Server {
 public:
  // Without models: after start() every route answers 503 "the model is loading" until
  // attach(). `vkllm serve` binds first, so probes see 503 rather than a refused connection.
  explicit Server(ServerConfig config);
  ~Server();

  // The models to serve; once. Thread-safe against requests being handled. The pool outlives
  // the server's threads (wait() returned); shutdown() stops it.
  void attach(ModelPool& models);

  // Binds and starts the io threads. Throws Error naming the address when it cannot bind.
  void start();
  std::uint16_t port() const;  // the bound port
  // Graceful: stop accepting, let in-flight requests finish within the grace period, cancel the
  // rest (their streams end cleanly), then stop the threads. Safe from a signal-handling thread.
  void shutdown();
  // Blocks until shutdown() completed (at once when start() never ran or failed).
  void wait();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vkllm::server
