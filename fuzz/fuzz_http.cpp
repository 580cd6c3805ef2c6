// libFuzzer target: the HTTP layer. Each input goes as raw bytes down a loopback socket to one
// running Server (Beast's parser, limits, Host and API-key checks, routing, the request parser,
// templates, tokenizing, SSE and JSON responses, keep-alive and pipelining); the client then
// half-closes and reads until the server closes. The engine is a stand-in without a device
// (StubService: a thread that answers each request with a few of its prompt's tokens, an
// error, a full queue or a lost device, as the prompt's first token decides) over the tokenizer of
// a small model of our own. Findings: a crash or sanitizer report in any server thread, a
// connection the server never closes, and a request still live in the engine after its
// connection closed (one that nobody would ever cancel).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/synthetic.hpp"
#include "engine/serving/engine.hpp"
#include "engine/template/template.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "server/http_server.hpp"

namespace {

using namespace vkllm;
using serving::FinishReason;
using serving::RequestId;

class StubService final : public serving::Service {
 public:
  StubService() : thread_([this] { run(); }) {}
  ~StubService() override { shutdown(); }

  RequestId submit(std::vector<std::uint32_t> prompt, serving::RequestParams params,
                   serving::EventCallback callback) override {
    if (prompt.empty()) throw InvalidRequest("the prompt is empty");
    if (prompt.size() >= kContext) throw InvalidRequest("the prompt does not fit the context");
    if (prompt[0] % 13 == 5) throw serving::QueueFull("the queue is full (stub)");
    if (prompt[0] % 13 == 6) throw DeviceLost("the device was lost (stub)");
    std::lock_guard lock(mu_);
    if (stopping_) throw Unavailable("shutting down");
    const RequestId id = next_++;
    live_[id] = Live{std::move(prompt), params.max_tokens, std::move(callback), 0,
                     params.embed ? std::max<std::uint32_t>(params.dimensions, 1) : 0};
    cv_.notify_all();
    return id;
  }
  void cancel(RequestId id) override {
    std::lock_guard lock(mu_);
    cancels_.push_back(id);
    cv_.notify_all();
  }
  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  serving::EngineStats stats() const override {
    std::lock_guard lock(mu_);
    serving::EngineStats s;
    s.running = live_.size();
    s.kv_blocks_total = 64;
    s.kv_blocks_free = 64;
    return s;
  }
  std::uint32_t max_model_len() const override { return kContext; }
  bool embeddings() const override { return true; }
  bool generates() const override { return true; }
  model::Pooling default_pooling() const override { return model::Pooling::mean; }
  bool failed() const override { return false; }
  std::string health_message() const override { return {}; }

  // Waits until no request is live (every one finished or cancelled); false after `ms`.
  bool idle_within(int ms) {
    std::unique_lock lock(mu_);
    return idle_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return live_.empty(); });
  }

 private:
  static constexpr std::uint32_t kContext = 256;
  struct Live {
    std::vector<std::uint32_t> prompt;
    std::uint32_t max_tokens;
    serving::EventCallback callback;
    std::uint32_t sent;
    std::uint32_t embed_dims;  // an embedding request: one event with this many values
  };

  // One token per live request per turn; the last event ends it (length, error or stop).
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopping_ || !live_.empty() || !cancels_.empty(); });
      std::vector<std::pair<serving::EventCallback, serving::TokenEvent>> out;
      for (RequestId id : std::exchange(cancels_, {})) {
        auto it = live_.find(id);
        if (it == live_.end()) continue;
        serving::TokenEvent ev;
        ev.finish = FinishReason::cancelled;
        out.emplace_back(std::move(it->second.callback), std::move(ev));
        live_.erase(it);
      }
      for (auto it = live_.begin(); it != live_.end();) {
        Live& r = it->second;
        serving::TokenEvent ev;
        ev.prompt_tokens = static_cast<std::uint32_t>(r.prompt.size());
        ev.tokens.push_back(r.prompt[r.sent % r.prompt.size()]);
        ev.completion_tokens = ++r.sent;
        const std::uint32_t kind = r.prompt[0] % 13;
        if (stopping_) {
          ev.finish = FinishReason::cancelled;
        } else if (kind == 7) {
          ev.finish = FinishReason::error;
          ev.error = "a step failed (stub)";
        } else if (kind == 8) {
          ev.finish = FinishReason::device_lost;
          ev.error = "the device was lost (stub)";
        } else if (r.embed_dims > 0) {
          ev.tokens.clear();
          ev.completion_tokens = 0;
          ev.embedding.assign(r.embed_dims, 1.f / std::sqrt(float(r.embed_dims)));
          ev.finish = FinishReason::stop;
        } else if (r.sent >= std::min<std::uint32_t>(r.max_tokens, 6)) {
          ev.finish = kind == 9 ? FinishReason::stop : FinishReason::length;
        }
        const bool last = ev.finish != FinishReason::none;
        out.emplace_back(r.callback, std::move(ev));
        it = last ? live_.erase(it) : std::next(it);
      }
      if (live_.empty()) idle_cv_.notify_all();
      const bool stop = stopping_ && live_.empty();
      lock.unlock();
      for (auto& [callback, ev] : out) callback(ev);
      lock.lock();
      if (stop) return;
    }
  }

  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::map<RequestId, Live> live_;
  std::vector<RequestId> cancels_;
  RequestId next_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

// The stand-in engine as the pool's one model.
class StubModel final : public server::LoadedModel {
 public:
  StubModel(StubService& service, const tok::Tokenizer& tokenizer)
      : service_(service),
        pre_(tokenizer, server::ChatSetup{tmpl::Template::parse(tmpl::kChatmlTemplate), "", "", false},
             service.max_model_len()) {}
  serving::Service& engine() override { return service_; }
  const frontend::Preprocessor& preprocessor() const override { return pre_; }
  bool reasoning() const override { return false; }
  std::uint64_t device_bytes() const override { return 0; }

 private:
  StubService& service_;
  frontend::Preprocessor pre_;
};

struct World {
  gguf::Reader reader;
  tok::Tokenizer tokenizer;
  StubService service;
  server::ModelPool pool;
  server::Server server;
  std::uint16_t port;

  static gguf::Reader small_model() {
    // The micro preset: a tokenizer (512 tokens) over a model too small to matter.
    return gguf::Reader::from_bytes(model::make_synthetic_model(*model::synthetic_preset("micro")).to_bytes(), "fuzz.gguf");
  }
  static server::ServerConfig config() {
    server::ServerConfig c;
    c.host = "127.0.0.1";
    c.port = 0;
    c.api_key = "k";
    c.threads = 1;
    c.workers = 1;
    c.body_limit = 1 << 16;
    c.header_limit = 1 << 12;
    c.read_timeout = std::chrono::seconds(2);
    c.cors_origin = "*";
    return c;
  }

  World()
      : reader(small_model()),
        tokenizer(tok::Tokenizer::from_gguf(reader)),
        pool(server::PoolConfig{0, 1},
             [] { return std::vector<server::ModelFile>{{"m", {"alias"}, "fuzz.gguf", 0}}; },
             [this](const server::ModelFile&, std::uint64_t, const std::function<bool()>&) {
               return std::unique_ptr<server::LoadedModel>(std::make_unique<StubModel>(service, tokenizer));
             }),
        server(config()) {
    server.start();
    port = server.port();
    server.attach(pool);
  }
};

World* world = nullptr;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_http: %s (errno %d)\n", what, errno);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vkllm::log::set_level(vkllm::log::Level::error);
  world = new World();  // lives for the process: the server's threads run between inputs
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) finding("socket() failed");
  // A new loopback source address for each input: the server closes first, so each connection
  // leaves a TIME_WAIT entry for a minute, and a thousand inputs a second would run one source
  // address out of ephemeral ports.
  static std::uint32_t source = 0;
  source = source % 0xfffffd + 1;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl((127u << 24) | (source + 1));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) finding("bind() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(world->port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's timer signal interrupts blocking calls (EINTR): a connect goes on meanwhile.
  while (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EISCONN) break;
    if (errno == EINTR || errno == EALREADY) {
      ::usleep(100);
      continue;
    }
    finding("connect() failed");
  }
  timeval tv{10, 0};  // past the server's 2 s timeouts: a connection it never closes is a finding
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  for (std::size_t sent = 0; sent < size;) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server closed early (a limit, a bad request): fine
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) finding("the server kept the connection open for 10 s");
    break;  // closed (or reset)
  }
  ::close(fd);
  if (!world->service.idle_within(5000)) finding("a request outlived its connection by 5 s");
  return 0;
}
