// HTTP/1.1 sessions as coroutines: read (with timeout and limits) -> route -> respond, keep-alive.
// The io threads only move bytes; request parsing, templates and tokenizing go to the worker
// pool (docs/ARCHITECTURE.md "Threads").
#include "server/http_server.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/utf8.hpp"
#include "server/access.hpp"
#include "server/embeddings.hpp"
#include "server/generation.hpp"
#include "server/metrics.hpp"
#include "server/net.hpp"
#include "server/openai.hpp"

namespace vkllm::server {

namespace {

std::int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ApiException bad(std::string message, std::string param = {}) {
  return ApiException({400, std::move(message), "invalid_request_error", std::move(param), ""});
}

json::object parse_object(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) throw bad("the body must be a JSON object");
  return std::move(v.get_object());
}

// What one request did, for the request log line and the metrics.
struct Outcome {
  HttpResponse res;
  bool streamed = false;  // already written
  bool written = false;   // nothing left to write (streamed, or the client left)
  int status = 200;
  std::uint32_t prompt_n = 0, gen_n = 0;
  std::string log_id;
};

}  // namespace

struct Server::Impl {
  ServerConfig config;
  // Host headers are checked on a loopback bind, or anywhere when --allowed-hosts was given.
  bool check_hosts = is_loopback_address(config.host) || !config.allowed_hosts.empty();
  // Null until attach() (every route answers 503); set once, before `ready`.
  ModelPool* pool_ = nullptr;
  std::atomic<bool> ready{false};
  HttpCounts http_counts;
  net::io_context ioc;
  net::thread_pool workers;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::thread stopper;  // runs the graceful shutdown; joined by wait()
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> http_requests{0};
  std::atomic<int> in_flight{0};  // generation requests being served
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;               // stop_gracefully() finished
  bool shutdown_requested = false; // under done_mu
  std::mutex join_mu;
  std::once_flag shutdown_once;

  explicit Impl(ServerConfig c)
      : config(std::move(c)), workers(std::max(1u, config.workers)) {}

  // Only after `ready` (handle() answers 503 before).
  ModelPool& pool() { return *pool_; }
  GenerationContext generation_context(const ServedModel& m) {
    return GenerationContext{m.engine, m.pre.tokenizer(), m.reasoning, m.pre.tool_format(), m.metrics,
                             m.name, config, stopping};
  }

  // The model a request names ("" : the default), loaded: a request for a model that is not
  // waits here while the pool loads it; requests for loaded models go on meanwhile. (No
  // temporaries beside the co_await, GCC 12 destroys them wrongly; `name` is the caller's.)
  awaitable<ModelPool::Lease> acquire(const std::string& name) {
    const auto ex = co_await net::this_coro::executor;
    auto start = [this, &name, ex](auto handler) {
      auto h = std::make_shared<decltype(handler)>(std::move(handler));
      pool().acquire(name, [h, ex](ModelPool::Lease lease, std::exception_ptr e) {
        net::post(ex, [h, lease = std::move(lease), e]() mutable { std::move(*h)(e, std::move(lease)); });
      });
    };
    ModelPool::Lease lease = co_await net::async_initiate<const net::use_awaitable_t<>,
                                                          void(std::exception_ptr, ModelPool::Lease)>(
        std::move(start), net::use_awaitable);
    co_return lease;
  }
  // acquire() for a request whose body `check` parses (throwing its 400) when the model is
  // unknown: a body that is wrong anyway says so first, naming the field, before the 404.
  template <typename Check>
  awaitable<ModelPool::Lease> acquire_for(const std::string& name, Check check) {
    std::exception_ptr unknown;
    try {
      co_return co_await acquire(name);
    } catch (const ApiException& e) {
      if (e.error().status != 404) throw;
      unknown = std::current_exception();
    }
    co_await on_workers([&check] {
      check();
      return 0;
    });
    std::rethrow_exception(unknown);
  }
  awaitable<void> unload(const std::string& name) {
    const auto ex = co_await net::this_coro::executor;
    auto start = [this, &name, ex](auto handler) {
      auto h = std::make_shared<decltype(handler)>(std::move(handler));
      pool().unload(name, [h, ex](std::exception_ptr e) { net::post(ex, [h, e]() mutable { std::move(*h)(e); }); });
    };
    co_await net::async_initiate<const net::use_awaitable_t<>, void(std::exception_ptr)>(std::move(start),
                                                                                       net::use_awaitable);
  }
  // The "model" of a JSON body, read on the workers without parsing the whole document.
  awaitable<BodyScan> scan(const HttpRequest& req) {
    co_return co_await on_workers([&req] { return scan_body(req.body()); });
  }

  HttpResponse make(const HttpRequest& req, http::status status, std::string body,
                    const char* content_type = "application/json") {
    return make_response(config, req, stopping, status, std::move(body), content_type);
  }
  HttpResponse error(const HttpRequest& req, const ApiError& e) { return error_response(config, req, stopping, e); }

  // Runs `f` on the worker pool and resumes on the caller's strand with its result (or its
  // exception): what the io threads must not do themselves.
  template <typename F>
  auto on_workers(F f) -> awaitable<decltype(f())> {
    co_return co_await net::co_spawn(
        workers, [f = std::move(f)]() -> awaitable<decltype(f())> { co_return f(); }, use_awaitable);
  }

  // ---- the session ----
  awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(config.body_limit);
      parser.header_limit(config.header_limit);
      stream.expires_after(config.read_timeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, kAsTuple);
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::eof ||
          ec == net::error::connection_reset || ec == net::error::operation_aborted) {
        break;
      }
      if (ec) {
        co_await refuse_malformed(stream, ec);
        break;
      }
      HttpRequest req = parser.release();
      stream.expires_never();
      const bool keep = co_await handle(stream, req);
      if (!keep || stopping) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  // Limits and malformed HTTP get an answer, then the connection closes.
  awaitable<void> refuse_malformed(beast::tcp_stream& stream, beast::error_code ec) {
    http::status st = http::status::bad_request;
    std::string msg = fmt::format("malformed HTTP request: {}", ec.message());
    if (ec == http::error::body_limit) {
      st = http::status::payload_too_large;
      msg = fmt::format("the request body exceeds {} bytes (--max-body-bytes)", config.body_limit);
    } else if (ec == http::error::header_limit) {
      st = http::status::request_header_fields_too_large;
      msg = fmt::format("the request headers exceed {} bytes", config.header_limit);
    }
    HttpRequest dummy;
    dummy.version(11);
    HttpResponse res = error(dummy, ApiError{static_cast<int>(st), msg, "invalid_request_error", "", ""});
    res.keep_alive(false);
    http_counts.add(static_cast<int>(st));
    stream.expires_after(config.read_timeout);
    co_await http::async_write(stream, res, kAsTuple);
    // Lingering close: the client may still be sending (an oversized body). Stop sending, read
    // and drop what it still sends, so it gets to read our answer instead of a reset.
    beast::error_code sec;
    stream.socket().shutdown(tcp::socket::shutdown_send, sec);
    std::vector<char> sink(64 << 10);
    std::uint64_t drained = 0;
    stream.expires_after(std::chrono::seconds(5));
    while (drained < (64u << 20)) {
      auto [rec, got] = co_await stream.async_read_some(net::buffer(sink), kAsTuple);
      if (rec) break;
      drained += got;
    }
  }

  // Returns whether the connection may be kept alive.
  awaitable<bool> handle(beast::tcp_stream& stream, HttpRequest& req) {
    const auto t0 = Clock::now();
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    Outcome out;
    out.log_id = fmt::format("http-{}", ++http_requests);  // until a completion names it
    try {
      co_await route(stream, req, path, t0, out);
    } catch (const ApiException& e) {
      out.res = error(req, e.error());
    } catch (const frontend::PromptError& e) {
      out.res = error(req, {400, e.what(), "invalid_request_error", e.param(), e.code()});
    } catch (const serving::QueueFull& e) {
      out.res = error(req, {429, e.what(), "rate_limit_exceeded", "", "queue_full"});
      out.res.set(http::field::retry_after, "1");
    } catch (const InvalidRequest& e) {
      out.res = error(req, {400, e.what(), "invalid_request_error", "", ""});
    } catch (const Unavailable& e) {
      out.res = error(req, {503, e.what(), "server_error", "", ""});
    } catch (const DeviceLost& e) {
      out.res = error(req, {503, e.what(), "server_error", "", "device_lost"});
    } catch (const std::exception& e) {
      log::error("internal error on {}: {}", path, e.what());
      out.res = error(req, {500, fmt::format("internal error: {}", e.what()), "server_error", "", ""});
    }
    if (!out.written) {
      out.status = out.res.result_int();
      auto [ec, n] = co_await http::async_write(stream, out.res, kAsTuple);
      if (ec) out.status = 499;
    }
    http_counts.add(out.status);
    if (path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize") {
      log::info("{} {} {} {} prompt={} generated={} {:.3f}s", out.log_id, std::string_view(req.method_string()), path,
                out.status, out.prompt_n, out.gen_n, seconds_between(t0, Clock::now()));
    }
    co_return !out.written && out.status != 499 && out.res.keep_alive();
  }

  awaitable<void> route(beast::tcp_stream& stream, HttpRequest& req, const std::string& path, Clock::time_point t0,
                        Outcome& out) {
    check_host(req);
    if (req.method() == http::verb::options && !config.cors_origin.empty()) {
      out.res = make(req, http::status::no_content, "");
      out.res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
      out.res.set(http::field::access_control_allow_headers, "Authorization, Content-Type");
    } else if (stopping) {
      // Also on kept-alive connections: no new work once the grace period began.
      throw ApiException({503, "the server is shutting down", "server_error", "", "shutting_down"});
    } else if (!ready.load(std::memory_order_acquire)) {
      // Bound before the model loads, so probes and clients learn why they wait.
      throw ApiException({503, "the model is loading", "server_error", "", "model_loading"});
    } else if (path == "/health") {
      require(req, http::verb::get);
      // 503 while a loaded model's device is recreated after a loss, and for good when it will
      // not be. Loading another model does not change it.
      const std::string failure = pool().failure();
      if (!failure.empty()) throw ApiException({503, failure, "server_error", "", "device_lost"});
      out.res = make(req, http::status::ok, R"({"status":"ok"})");
    } else if (path == "/metrics") {
      require(req, http::verb::get);
      if (config.metrics_need_key) authorize(req);
      Exposition x;
      pool().render_metrics(x);
      http_counts.render(x);
      out.res = make(req, http::status::ok, x.text(), "text/plain; version=0.0.4");
    } else if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
      authorize(req);
      co_await models(req, path, out);
    } else if (path == "/tokenize" || path == "/detokenize") {
      require(req, http::verb::post);
      authorize(req);
      const bool tok = path == "/tokenize";
      const BodyScan scanned = co_await scan(req);
      const ModelPool::Lease m = co_await acquire(scanned.model);
      std::string body = co_await on_workers(
          [this, tok, &req, &m] { return tok ? tokenize(m->pre, req.body()) : detokenize(m->pre, req.body()); });
      out.res = make(req, http::status::ok, std::move(body));
    } else if (path == "/v1/embeddings" || path == "/embeddings") {
      require(req, http::verb::post);
      authorize(req);
      co_await embeddings(stream, req, out);
    } else if (path == "/v1/chat/completions" || path == "/v1/completions") {
      require(req, http::verb::post);
      authorize(req);
      co_await completion(stream, req, path == "/v1/completions" ? Endpoint::completion : Endpoint::chat, t0, out);
    } else {
      throw ApiException({404, fmt::format("no route for {} {}", std::string_view(req.method_string()), path),
                          "invalid_request_error", "", "not_found"});
    }
  }

  // Parse, bound, render and tokenize on the workers; then the generation on this strand.
  awaitable<void> completion(beast::tcp_stream& stream, const HttpRequest& req, Endpoint ep, Clock::time_point t0,
                             Outcome& out) {
    struct Prepared {
      ParsedRequest pr;
      frontend::Prompt prompt;
      std::uint32_t max_tokens = 0;
    };
    const BodyScan body = co_await scan(req);
    const ModelPool::Lease m = co_await acquire_for(body.model, [&req, ep] { parse_request(req.body(), ep, {}); });
    if (!m->engine.generates()) {
      throw ApiException({400,
                          fmt::format("the model '{}' is an embedding model: it does not generate text; "
                                      "use /v1/embeddings",
                                      m->name),
                          "invalid_request_error", "model", "model_not_generative"});
    }
    Prepared p = co_await on_workers([this, &req, ep, &body, &m] {
      const frontend::Preprocessor& pre = m->pre;
      RequestLimits limits;
      limits.vocab_size = static_cast<std::uint32_t>(pre.tokenizer().n_tokens());
      Prepared p;
      // Bytes before anything else: a completion prompt that cannot fit is refused unparsed.
      if (ep == Endpoint::completion) pre.check_bytes(body.prompt_bytes, "prompt");
      p.pr = parse_request(req.body(), ep, limits);
      apply_tool_choice(p.pr, pre.tool_format());
      p.prompt = pre.prepare(p.pr.prompt);
      p.max_tokens = pre.max_tokens(p.prompt.tokens.size(), p.pr.max_tokens, config.default_max_tokens);
      return p;
    });
    out.prompt_n = static_cast<std::uint32_t>(p.prompt.tokens.size());
    in_flight++;
    struct Guard {
      std::atomic<int>& n;
      ~Guard() { n--; }
    } guard{in_flight};
    const GenerationContext ctx = generation_context(*m);  // named: GCC 12 and coroutine temporaries
    GenerationResult g = co_await generate(ctx, stream, req, p.pr, std::move(p.prompt), p.max_tokens, t0);
    out.gen_n = g.generated;
    out.log_id = g.id;
    out.status = g.status;
    out.written = g.streamed || g.client_gone;
    out.streamed = g.streamed;
    if (!out.written) out.res = std::move(g.response);
  }

  // Parse and tokenize every input on the workers; then one engine request per input.
  awaitable<void> embeddings(beast::tcp_stream& stream, const HttpRequest& req, Outcome& out) {
    const BodyScan scanned = co_await scan(req);
    const ModelPool::Lease m =
        co_await acquire_for(scanned.model, [&req] { parse_embedding_request(req.body(), {}); });
    serving::Service& engine = m->engine;
    if (!engine.embeddings()) {
      throw ApiException({501, "this server does not compute embeddings; start it with --embeddings",
                          "not_supported_error", "", "embeddings_disabled"});
    }
    struct Prepared {
      EmbeddingRequest er;
      std::vector<std::vector<std::uint32_t>> prompts;
      std::uint32_t tokens = 0;
    };
    Prepared p = co_await on_workers([&req, &m] {
      const frontend::Preprocessor& pre = m->pre;
      RequestLimits limits;
      limits.vocab_size = static_cast<std::uint32_t>(pre.tokenizer().n_tokens());
      Prepared p;
      p.er = parse_embedding_request(req.body(), limits);
      for (const frontend::PromptInput& in : p.er.inputs) {
        if (in.kind == frontend::PromptInput::Kind::text) pre.check_bytes(in.text.size(), "input");
        frontend::Prompt prompt = pre.prepare(in);
        p.tokens += static_cast<std::uint32_t>(prompt.tokens.size());
        p.prompts.push_back(std::move(prompt.tokens));
      }
      return p;
    });
    serving::RequestParams params;
    params.embed = p.er.pooling ? *p.er.pooling : config.pooling ? *config.pooling : engine.default_pooling();
    params.dimensions = p.er.dimensions;
    params.timeout = config.request_timeout;
    out.prompt_n = p.tokens;
    in_flight++;
    struct Guard {
      std::atomic<int>& n;
      ~Guard() { n--; }
    } guard{in_flight};
    EmbeddingResult r = co_await embed(engine, stream, std::move(p.prompts), params);
    if (r.client_gone) {
      out.written = true;
      out.status = 499;
      co_return;
    }
    m->metrics.embedding_inputs(r.embeddings.size(), p.tokens);
    out.res = make(req, http::status::ok, embeddings_json(r.embeddings, p.er.base64, m->name, p.tokens));
  }

  static json::object model_object(const ModelPool::Listing& l) {
    json::object m;
    m["id"] = l.name;
    m["object"] = "model";
    m["created"] = unix_time();
    m["owned_by"] = "vkllm";
    static constexpr const char* kStates[] = {"unloaded", "loading", "loaded", "unloading"};
    m["status"] = kStates[static_cast<int>(l.state)];
    if (l.max_model_len) m["max_model_len"] = l.max_model_len;
    if (l.device_bytes) m["device_memory_bytes"] = l.device_bytes;
    if (!l.aliases.empty()) m["aliases"] = json::array(l.aliases.begin(), l.aliases.end());
    if (!l.error.empty()) m["error"] = l.error;
    return m;
  }

  // GET /v1/models (every model, loaded or not), GET /v1/models/{id}, and for apps that manage
  // memory themselves POST /v1/models/{id}/load (answers once loaded) and /unload (once its
  // in-flight requests finished and its memory is free).
  awaitable<void> models(const HttpRequest& req, const std::string& path, Outcome& out) {
    if (path == "/v1/models") {
      require(req, http::verb::get);
      json::array data;
      for (const ModelPool::Listing& l : pool().list()) data.push_back(model_object(l));
      json::object o;
      o["object"] = "list";
      o["data"] = std::move(data);
      out.res = make(req, http::status::ok, json::serialize(o));
      co_return;
    }
    std::string id = path.substr(std::string_view("/v1/models/").size());
    auto ends_with = [&](std::string_view suffix) {
      return id.size() > suffix.size() && id.compare(id.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (req.method() == http::verb::post && (ends_with("/load") || ends_with("/unload"))) {
      const bool load = ends_with("/load");
      id.resize(id.size() - (load ? 5 : 7));
      if (load) {
        const ModelPool::Lease loaded = co_await acquire(id);  // loaded now; the lease ends here
      } else {
        co_await unload(id);
      }
    } else {
      require(req, http::verb::get);
    }
    const std::optional<std::string> name = pool().resolve(id);
    for (const ModelPool::Listing& l : pool().list()) {
      if (name && l.name == *name) {
        out.res = make(req, http::status::ok, json::serialize(model_object(l)));
        co_return;
      }
    }
    throw ApiException({404, fmt::format("The model '{}' does not exist", id), "invalid_request_error", "model",
                        "model_not_found"});
  }

  void require(const HttpRequest& req, http::verb verb) {
    if (req.method() != verb) {
      throw ApiException({405, fmt::format("{} is not allowed here; use {}", std::string_view(req.method_string()),
                                           std::string_view(http::to_string(verb))),
                          "invalid_request_error", "", "method_not_allowed"});
    }
  }
  void authorize(const HttpRequest& req) {
    if (config.api_key.empty()) return;
    const auto it = req.find(http::field::authorization);
    const std::string expected = "Bearer " + config.api_key;
    if (it == req.end() || !constant_time_equal(it->value(), expected)) {
      throw ApiException({401, it == req.end() ? "missing API key (Authorization: Bearer ...)" : "invalid API key",
                          "authentication_error", "", "invalid_api_key"});
    }
  }

  // DNS rebinding (server/access.hpp): on a loopback bind, only Host names of this machine.
  void check_host(const HttpRequest& req) {
    if (!check_hosts) return;
    const auto it = req.find(http::field::host);
    const std::string_view host = it == req.end() ? std::string_view() : std::string_view(it->value());
    switch (server::check_host(it != req.end(), host, config.allowed_hosts)) {
      case HostVerdict::allowed: return;
      case HostVerdict::missing:
        throw ApiException({400, "the request has no Host header", "invalid_request_error", "", "missing_host"});
      case HostVerdict::forbidden:
        throw ApiException({403,
                            fmt::format("Host '{}' is not served: the server answers only localhost names "
                                        "(--allowed-hosts widens it)",
                                        host.substr(0, 256)),
                            "invalid_request_error", "", "host_not_allowed"});
    }
  }

  // vLLM's shape ({"prompt"} or {"messages"}, add_special_tokens; tokens, count,
  // max_model_len) and llama-server's ({"content"}, add_special, with_pieces).
  std::string tokenize(const frontend::Preprocessor& pre, const std::string& body) {
    const json::object o = parse_object(body);
    auto flag = [&](const char* key, bool def) {
      const json::value* v = o.if_contains(key);
      if (!v || v->is_null()) return def;
      if (!v->is_bool()) throw bad(fmt::format("'{}' must be a boolean", key), key);
      return v->get_bool();
    };
    frontend::PromptInput in;
    if (o.contains("messages")) {
      // A chat request's prompt fields, checked as /v1/chat/completions checks them.
      in = parse_request(body, Endpoint::chat, {}).prompt;
    } else {
      const json::value* text = o.if_contains("prompt");
      if (!text) text = o.if_contains("content");
      if (!text || !text->is_string()) throw bad("'prompt' (or 'content') must be a string", "prompt");
      in.kind = frontend::PromptInput::Kind::text;
      in.text = std::string(text->get_string());
      // vLLM adds special tokens by default, llama-server does not.
      in.add_special = flag("add_special_tokens", o.contains("prompt")) || flag("add_special", false);
    }
    const frontend::Prompt p = pre.prepare(in);
    json::object out;
    if (flag("with_pieces", false)) {
      json::array pieces;
      for (std::uint32_t id : p.tokens) {
        json::object e;
        e["id"] = id;
        e["piece"] = std::string(pre.tokenizer().token_to_piece(static_cast<tok::TokenId>(id)));
        pieces.push_back(std::move(e));
      }
      out["tokens"] = std::move(pieces);
    } else {
      out["tokens"] = json::array(p.tokens.begin(), p.tokens.end());
    }
    out["count"] = p.tokens.size();
    out["max_model_len"] = pre.max_model_len();
    return json::serialize(out);
  }

  std::string detokenize(const frontend::Preprocessor& pre, const std::string& body) {
    const tok::Tokenizer& tokenizer = pre.tokenizer();
    const json::object o = parse_object(body);
    const json::value* tokens = o.if_contains("tokens");
    if (!tokens || !tokens->is_array()) throw bad("'tokens' must be an array of token ids", "tokens");
    std::vector<tok::TokenId> ids;
    for (const json::value& t : tokens->get_array()) {
      if (!t.is_int64() || t.get_int64() < 0 || t.get_int64() >= static_cast<std::int64_t>(tokenizer.n_tokens())) {
        throw bad("'tokens' holds an id outside the vocabulary", "tokens");
      }
      ids.push_back(static_cast<tok::TokenId>(t.get_int64()));
    }
    json::object out;
    out["content"] = utf8_sanitize(tokenizer.decode(ids));
    out["prompt"] = out["content"];
    return json::serialize(out);
  }

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(net::make_strand(ioc), kAsTuple);
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        log::warn("accept failed: {}", ec.message());
        continue;
      }
      // A bounded kernel send buffer: a client that stops reading stalls the writes after
      // about twice this, and the write timeout (--timeout) cuts it off (docs/ARCHITECTURE.md
      // "Slow clients hold nothing for long"). Errors (a peer already gone) are the session's.
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (config.send_buffer > 0) {
        socket.set_option(net::socket_base::send_buffer_size(static_cast<int>(config.send_buffer)), ignored);
      }
      auto ex = socket.get_executor();
      net::co_spawn(ex, session(std::move(socket)), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          log::error("session ended by an exception: {}", x.what());
        }
      });
    }
  }

  // The graceful shutdown, on `stopper`: in-flight requests get the grace period, then the
  // engine cancels the rest (their streams end with [DONE]); then the io threads stop.
  void stop_gracefully() {
    net::post(ioc, [this] {
      beast::error_code ec;
      acceptor.close(ec);
    });
    const auto deadline = Clock::now() + config.shutdown_grace;
    while (in_flight > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (ready) pool().stop();
    const auto hard = Clock::now() + std::chrono::seconds(5);
    while (in_flight > 0 && Clock::now() < hard) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ioc.stop();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    workers.stop();
    workers.join();
    std::lock_guard lock(done_mu);
    done = true;
    done_cv.notify_all();
  }
};

Server::Server(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

void Server::attach(ModelPool& models) {
  Impl& s = *impl_;
  if (s.ready) throw std::logic_error("server: models are already attached");
  s.pool_ = &models;
  s.ready.store(true, std::memory_order_release);
}

Server::~Server() {
  shutdown();
  wait();
}

void Server::start() {
  Impl& s = *impl_;
  beast::error_code ec;
  const auto address = net::ip::make_address(s.config.host, ec);
  if (ec) throw InvalidRequest(fmt::format("--host {}: not an IP address", s.config.host));
  const tcp::endpoint ep(address, s.config.port);
  s.acceptor.open(ep.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw Error(fmt::format("cannot listen on {}:{}: {}", s.config.host, s.config.port, ec.message()));
  net::co_spawn(s.ioc, s.accept_loop(), net::detached);
  for (unsigned i = 0; i < std::max(1u, s.config.threads); ++i) {
    s.threads.emplace_back([&s] { s.ioc.run(); });
  }
}

std::uint16_t Server::port() const { return impl_->acceptor.local_endpoint().port(); }

void Server::shutdown() {
  Impl& s = *impl_;
  std::call_once(s.shutdown_once, [&s] {
    s.stopping = true;
    std::lock_guard lock(s.done_mu);
    s.shutdown_requested = true;
    // Joined by wait() (the destructor waits too), so it never outlives the state it uses.
    s.stopper = std::thread([&s] { s.stop_gracefully(); });
  });
}

void Server::wait() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.done_mu);
    s.done_cv.wait(lock, [&s] { return s.done || (!s.shutdown_requested && s.threads.empty()); });
  }
  std::lock_guard lock(s.join_mu);
  if (s.stopper.joinable()) s.stopper.join();
}

}  // namespace vkllm::server
