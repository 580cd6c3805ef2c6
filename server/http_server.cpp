// HTTP/1.1 sessions as coroutines: read (with timeout and limits) -> route -> respond, keep-alive.
#include "server/http_server.hpp"

#include <atomic>
#include <cmath>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/utf8.hpp"
#include "server/metrics.hpp"
#include "server/openai.hpp"

namespace vkllm::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;
using Clock = std::chrono::steady_clock;
using namespace net::experimental::awaitable_operators;

namespace {

constexpr auto kAsTuple = net::as_tuple(use_awaitable);

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Engine events for one request, handed from the engine thread to the connection's strand.
struct EventQueue : std::enable_shared_from_this<EventQueue> {
  explicit EventQueue(net::any_io_executor ex) : timer(ex) { timer.expires_at(Clock::time_point::max()); }
  std::mutex mu;
  std::deque<serving::TokenEvent> events;
  net::steady_timer timer;

  serving::EventCallback callback() {
    return [self = shared_from_this()](const serving::TokenEvent& ev) {
      {
        std::lock_guard lock(self->mu);
        self->events.push_back(ev);
      }
      net::post(self->timer.get_executor(), [self] { self->timer.cancel(); });
    };
  }
  std::deque<serving::TokenEvent> take() {
    std::lock_guard lock(mu);
    return std::exchange(events, {});
  }
};

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

std::string new_id(const char* prefix) {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}();
  return fmt::format("{}-{:08x}{:08x}", prefix, static_cast<std::uint32_t>(salt), ++counter);
}

std::int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Server::Impl {
  ServerConfig config;
  // Null while the model loads (every route answers 503); set once by attach(), before `ready`.
  serving::Engine* engine_ = nullptr;
  const tok::Tokenizer* tokenizer_ = nullptr;
  std::optional<ChatSetup> chat_;
  std::atomic<bool> ready{false};
  Metrics metrics;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> http_requests{0};
  std::atomic<int> in_flight{0};  // generation requests being served
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  std::once_flag shutdown_once;

  explicit Impl(ServerConfig c) : config(std::move(c)), metrics(config.model_name) {}

  // Only after `ready` (handle() answers 503 before).
  serving::Engine& engine() { return *engine_; }
  const tok::Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatSetup& chat() const { return *chat_; }

  // ---- responses ----
  Response make(const Request& req, http::status status, std::string body,
                const char* content_type = "application/json") {
    Response res{status, req.version()};
    res.set(http::field::server, "vkllm");
    res.set(http::field::content_type, content_type);
    if (!config.cors_origin.empty()) {
      res.set(http::field::access_control_allow_origin, config.cors_origin);
    }
    res.keep_alive(req.keep_alive() && !stopping);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }
  Response error(const Request& req, const ApiError& e) {
    Response res = make(req, static_cast<http::status>(e.status), error_body(e));
    if (e.status == 429 || e.status == 503) res.set(http::field::retry_after, "1");
    if (e.status == 401) res.set(http::field::www_authenticate, "Bearer");
    return res;
  }

  // ---- prompt building ----
  std::vector<std::uint32_t> prompt_tokens(const ParsedRequest& r) {
    std::vector<tok::TokenId> ids;
    if (r.endpoint == Endpoint::chat) {
      tmpl::ChatInputs in;
      in.messages = tmpl::parse_json(messages_to_json(r.messages));
      if (!r.tools.is_null()) in.tools = tmpl::parse_json(json::serialize(r.tools));
      in.add_generation_prompt = true;
      in.bos_token = chat().bos_token;
      in.eos_token = chat().eos_token;
      std::string text;
      try {
        text = chat().chat_template.render(tmpl::make_chat_context(in));
      } catch (const Error& e) {
        throw ApiException(ApiError{400, fmt::format("the chat template failed: {}", e.what()),
                                    "invalid_request_error", "messages", ""});
      }
      // Templates that write the BOS text themselves get no second BOS.
      const bool has_bos = !chat().bos_token.empty() && text.rfind(chat().bos_token, 0) == 0;
      ids = tokenizer().encode(text, {.add_special = !has_bos, .parse_special = true});
    } else if (r.prompt_tokens) {
      return *r.prompt_tokens;
    } else {
      ids = tokenizer().encode(r.prompt_text, {.add_special = true, .parse_special = false});
    }
    return std::vector<std::uint32_t>(ids.begin(), ids.end());
  }

  // ---- JSON bodies ----
  // `gen`: the generated tokens with their logprobs (events appended); `text_offset`: where the
  // first of them starts in the returned text (completions' logprobs.text_offset).
  json::object completion_body(const ParsedRequest& r, const std::string& id, const std::string& text,
                               const serving::TokenEvent& gen, std::size_t text_offset,
                               serving::FinishReason finish, const Usage& usage) {
    json::object o;
    o["id"] = id;
    o["created"] = unix_time();
    o["model"] = config.model_name;
    json::object choice;
    choice["index"] = 0;
    const char* fr = finish_reason_name(finish);
    choice["finish_reason"] = fr ? json::value(fr) : json::value(nullptr);
    if (r.endpoint == Endpoint::chat) {
      o["object"] = "chat.completion";
      json::object msg;
      msg["role"] = "assistant";
      msg["content"] = text;
      choice["message"] = std::move(msg);
      choice["logprobs"] = r.logprobs ? chat_logprobs(gen) : json::value(nullptr);
    } else {
      o["object"] = "text_completion";
      choice["text"] = text;
      choice["logprobs"] = r.logprobs ? completion_logprobs(r, gen, text_offset) : json::value(nullptr);
    }
    o["choices"] = json::array{std::move(choice)};
    o["usage"] = usage_json(usage);
    return o;
  }
  std::string token_text(std::uint32_t token) {
    return utf8_sanitize(std::string(tokenizer().token_to_piece(static_cast<tok::TokenId>(token))));
  }
  // JSON has no -inf (a logit of -inf, or a probability that underflowed): OpenAI reports such
  // tokens at -9999.
  static double wire_logprob(float lp) { return std::isfinite(lp) ? lp : -9999.0; }
  // Chat's entry for one token, the chosen one or an alternative: {token, logprob, bytes}, bytes
  // the piece's raw UTF-8 (a piece that splits a character has no valid text of its own).
  json::object chat_token_entry(std::uint32_t token, float logprob) {
    const std::string_view raw = tokenizer().token_to_piece(static_cast<tok::TokenId>(token));
    json::array bytes;
    for (char ch : raw) bytes.push_back(static_cast<unsigned char>(ch));
    json::object t;
    t["token"] = utf8_sanitize(std::string(raw));
    t["logprob"] = wire_logprob(logprob);
    t["bytes"] = std::move(bytes);
    return t;
  }
  json::value chat_logprobs(const serving::TokenEvent& gen) {
    json::array content;
    for (std::size_t i = 0; i < gen.tokens.size() && i < gen.logprobs.size(); ++i) {
      json::object t = chat_token_entry(gen.tokens[i], gen.logprobs[i]);
      json::array top;  // top_logprobs 0: an empty list, as OpenAI
      if (i < gen.top_logprobs.size()) {
        for (const serving::TopLogprob& e : gen.top_logprobs[i]) {
          top.push_back(chat_token_entry(e.token, e.logprob));
        }
      }
      t["top_logprobs"] = std::move(top);
      content.push_back(std::move(t));
    }
    json::object o;
    o["content"] = std::move(content);
    return o;
  }
  // Completions' legacy shape: parallel lists; top_logprobs one {text: logprob} object per token
  // (null when logprobs is 0); text_offset the running byte offset of each token's piece from
  // `text_offset` on. Pieces are counted as the tokenizer spells them (as vLLM does), so a
  // leading space the decoded text drops still counts.
  json::value completion_logprobs(const ParsedRequest& r, const serving::TokenEvent& gen,
                                  std::size_t& text_offset) {
    json::array toks, vals, offsets, tops;
    for (std::size_t i = 0; i < gen.tokens.size() && i < gen.logprobs.size(); ++i) {
      const std::string piece = token_text(gen.tokens[i]);
      offsets.push_back(text_offset);
      text_offset += piece.size();
      toks.push_back(json::value(piece));
      vals.push_back(wire_logprob(gen.logprobs[i]));
      json::object top;
      if (i < gen.top_logprobs.size()) {
        for (const serving::TopLogprob& e : gen.top_logprobs[i]) {
          // Two ids with the same text: the first (more likely) keeps the key.
          top.emplace(token_text(e.token), wire_logprob(e.logprob));
        }
      }
      tops.push_back(std::move(top));
    }
    json::object o;
    o["tokens"] = std::move(toks);
    o["token_logprobs"] = std::move(vals);
    o["top_logprobs"] = r.top_logprobs.value_or(0) > 0 ? json::value(std::move(tops)) : json::value(nullptr);
    o["text_offset"] = std::move(offsets);
    return o;
  }
  // `gen`: this chunk's tokens and logprobs; `text_offset`: the running completions offset.
  json::object chunk_body(const ParsedRequest& r, const std::string& id, std::int64_t created,
                          const std::string& text, bool first, const char* finish,
                          const serving::TokenEvent& gen, std::size_t& text_offset) {
    json::object o;
    o["id"] = id;
    o["created"] = created;
    o["model"] = config.model_name;
    json::object choice;
    choice["index"] = 0;
    choice["finish_reason"] = finish ? json::value(finish) : json::value(nullptr);
    if (r.endpoint == Endpoint::chat) {
      o["object"] = "chat.completion.chunk";
      json::object delta;
      if (first) delta["role"] = "assistant";
      if (!text.empty() || (!first && !finish)) delta["content"] = text;
      choice["delta"] = std::move(delta);
      choice["logprobs"] = r.logprobs && !gen.tokens.empty() ? chat_logprobs(gen) : json::value(nullptr);
    } else {
      o["object"] = "text_completion";
      choice["text"] = text;
      choice["logprobs"] = r.logprobs && !gen.tokens.empty() ? completion_logprobs(r, gen, text_offset)
                                                             : json::value(nullptr);
    }
    o["choices"] = json::array{std::move(choice)};
    return o;
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
        // Limits and malformed HTTP get an answer, then the connection closes.
        http::status st = http::status::bad_request;
        std::string msg = fmt::format("malformed HTTP request: {}", ec.message());
        if (ec == http::error::body_limit) {
          st = http::status::payload_too_large;
          msg = fmt::format("the request body exceeds {} bytes", config.body_limit);
        } else if (ec == http::error::header_limit) {
          st = http::status::request_header_fields_too_large;
          msg = fmt::format("the request headers exceed {} bytes", config.header_limit);
        }
        Request dummy;
        dummy.version(11);
        Response res = error(dummy, ApiError{static_cast<int>(st), msg, "invalid_request_error", "", ""});
        res.keep_alive(false);
        metrics.http_response(static_cast<int>(st));
        stream.expires_after(config.read_timeout);
        co_await http::async_write(stream, res, kAsTuple);
        // Lingering close: the client may still be sending (an oversized body). Stop sending,
        // read and drop what it still sends, so it gets to read our answer instead of a reset.
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
        break;
      }
      Request req = parser.release();
      stream.expires_never();
      const bool keep = co_await handle(stream, req);
      if (!keep || stopping) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  // Returns whether the connection may be kept alive.
  awaitable<bool> handle(beast::tcp_stream& stream, Request& req) {
    const auto t0 = Clock::now();
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    Response res;
    bool streamed = false;
    int status = 200;
    std::uint32_t prompt_n = 0, gen_n = 0;
    std::string log_id = fmt::format("http-{}", ++http_requests);  // until a completion names it
    try {
      if (req.method() == http::verb::options && !config.cors_origin.empty()) {
        res = make(req, http::status::no_content, "");
        res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
        res.set(http::field::access_control_allow_headers, "Authorization, Content-Type");
      } else if (!ready.load(std::memory_order_acquire)) {
        // Bound before the model loads, so probes and clients learn why they wait.
        throw ApiException({503, "the model is loading", "server_error", "", "model_loading"});
      } else if (path == "/health") {
        require(req, http::verb::get);
        if (engine().failed()) {
          throw ApiException({503, "the device was lost", "server_error", "", "device_lost"});
        }
        if (stopping) throw ApiException({503, "the server is shutting down", "server_error", "", ""});
        res = make(req, http::status::ok, R"({"status":"ok"})");
      } else if (path == "/metrics") {
        require(req, http::verb::get);
        res = make(req, http::status::ok, metrics.render(engine().stats()), "text/plain; version=0.0.4");
      } else if (path == "/v1/models") {
        require(req, http::verb::get);
        authorize(req);
        json::object m;
        m["id"] = config.model_name;
        m["object"] = "model";
        m["created"] = unix_time();
        m["owned_by"] = "vkllm";
        m["max_model_len"] = engine().max_model_len();
        json::object o;
        o["object"] = "list";
        o["data"] = json::array{std::move(m)};
        res = make(req, http::status::ok, json::serialize(o));
      } else if (path == "/tokenize" || path == "/detokenize") {
        require(req, http::verb::post);
        authorize(req);
        res = make(req, http::status::ok, path == "/tokenize" ? tokenize(req.body()) : detokenize(req.body()));
      } else if (path == "/v1/chat/completions" || path == "/v1/completions") {
        require(req, http::verb::post);
        authorize(req);
        const Endpoint ep = path == "/v1/completions" ? Endpoint::completion : Endpoint::chat;
        RequestLimits limits;
        limits.max_tokens_default = config.default_max_tokens;
        limits.vocab_size = static_cast<std::uint32_t>(tokenizer().n_tokens());
        ParsedRequest pr = parse_request(req.body(), ep, limits);
        std::vector<std::uint32_t> prompt = prompt_tokens(pr);
        prompt_n = static_cast<std::uint32_t>(prompt.size());
        if (prompt.size() >= engine().max_model_len()) {
          throw ApiException({400,
                              fmt::format("This model's maximum context length is {} tokens. However, "
                                          "your prompt has {} tokens; at most {} fit with room for one "
                                          "generated token.",
                                          engine().max_model_len(), prompt.size(), engine().max_model_len() - 1),
                              "invalid_request_error", ep == Endpoint::chat ? "messages" : "prompt",
                              "context_length_exceeded"});
        }
        in_flight++;
        struct Guard {
          std::atomic<int>& n;
          ~Guard() { n--; }
        } guard{in_flight};
        auto out = co_await generate(stream, req, pr, std::move(prompt), t0);
        gen_n = out.generated;
        log_id = out.id;
        status = out.status;
        if (out.streamed) {
          streamed = true;
        } else {
          res = std::move(out.response);
        }
      } else {
        throw ApiException({404, fmt::format("no route for {} {}", std::string_view(req.method_string()), path),
                            "invalid_request_error", "", "not_found"});
      }
    } catch (const ApiException& e) {
      res = error(req, e.error());
    } catch (const serving::QueueFull& e) {
      res = error(req, {429, e.what(), "rate_limit_exceeded", "", "queue_full"});
    } catch (const InvalidRequest& e) {
      res = error(req, {400, e.what(), "invalid_request_error", "", ""});
    } catch (const Unavailable& e) {
      res = error(req, {503, e.what(), "server_error", "", ""});
    } catch (const DeviceLost& e) {
      res = error(req, {503, e.what(), "server_error", "", "device_lost"});
    } catch (const std::exception& e) {
      log::error("internal error on {}: {}", path, e.what());
      res = error(req, {500, fmt::format("internal error: {}", e.what()), "server_error", "", ""});
    }
    if (!streamed) {
      status = res.result_int();
      auto [ec, n] = co_await http::async_write(stream, res, kAsTuple);
      if (ec) co_return false;
    }
    metrics.http_response(status);
    if (path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize") {
      log::info("{} {} {} {} prompt={} generated={} {:.3f}s", log_id, std::string_view(req.method_string()),
                path, status, prompt_n, gen_n, seconds_between(t0, Clock::now()));
    }
    co_return !streamed && res.keep_alive();
  }

  void require(const Request& req, http::verb verb) {
    if (req.method() != verb) {
      throw ApiException({405, fmt::format("{} is not allowed here; use {}", std::string_view(req.method_string()),
                                           std::string_view(http::to_string(verb))),
                          "invalid_request_error", "", "method_not_allowed"});
    }
  }
  void authorize(const Request& req) {
    if (config.api_key.empty()) return;
    const auto it = req.find(http::field::authorization);
    const std::string expected = "Bearer " + config.api_key;
    if (it == req.end() || it->value() != expected) {
      throw ApiException({401, it == req.end() ? "missing API key (Authorization: Bearer ...)" : "invalid API key",
                          "authentication_error", "", "invalid_api_key"});
    }
  }

  std::string tokenize(const std::string& body) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) throw ApiException({400, "the body must be a JSON object", "invalid_request_error", "", ""});
    const json::object& o = v.get_object();
    const json::value* content = o.if_contains("content");
    if (!content || !content->is_string()) {
      throw ApiException({400, "'content' must be a string", "invalid_request_error", "content", ""});
    }
    bool add_special = false;
    if (const json::value* a = o.if_contains("add_special"); a && a->is_bool()) add_special = a->get_bool();
    const auto ids = tokenizer().encode(std::string_view(content->get_string()), {.add_special = add_special, .parse_special = true});
    json::object out;
    out["tokens"] = json::array(ids.begin(), ids.end());
    return json::serialize(out);
  }
  std::string detokenize(const std::string& body) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) throw ApiException({400, "the body must be a JSON object", "invalid_request_error", "", ""});
    const json::value* tokens = v.get_object().if_contains("tokens");
    if (!tokens || !tokens->is_array()) {
      throw ApiException({400, "'tokens' must be an array of token ids", "invalid_request_error", "tokens", ""});
    }
    std::vector<tok::TokenId> ids;
    for (const json::value& t : tokens->get_array()) {
      if (!t.is_int64() || t.get_int64() < 0 || t.get_int64() >= static_cast<std::int64_t>(tokenizer().n_tokens())) {
        throw ApiException({400, "'tokens' holds an id outside the vocabulary", "invalid_request_error", "tokens", ""});
      }
      ids.push_back(static_cast<tok::TokenId>(t.get_int64()));
    }
    json::object out;
    out["content"] = utf8_sanitize(tokenizer().decode(ids));
    return json::serialize(out);
  }

  struct GenerateResult {
    bool streamed = false;
    int status = 200;
    std::uint32_t generated = 0;
    std::string id;  // the response's id (chatcmpl-..., cmpl-...), for the request log
    Response response;
  };

  // Waits for engine events; returns false when the client went away meanwhile.
  awaitable<bool> wait_events(beast::tcp_stream& stream, EventQueue& q, bool& watch_socket) {
    q.timer.expires_at(Clock::time_point::max());
    {
      std::lock_guard lock(q.mu);
      if (!q.events.empty()) co_return true;
    }
    if (!watch_socket) {
      co_await q.timer.async_wait(kAsTuple);
      co_return true;
    }
    auto r = co_await (q.timer.async_wait(kAsTuple) ||
                       stream.socket().async_wait(tcp::socket::wait_read, kAsTuple));
    if (r.index() == 0) co_return true;
    // Readable while we have not answered: the peer closed (EOF), or pipelined its next request.
    beast::error_code ec;
    const std::size_t avail = stream.socket().available(ec);
    if (ec || avail == 0) co_return false;
    watch_socket = false;  // pipelined bytes: stop watching, they are read after this response
    co_return true;
  }

  awaitable<GenerateResult> generate(beast::tcp_stream& stream, const Request& req, const ParsedRequest& pr,
                                     std::vector<std::uint32_t> prompt, Clock::time_point t0) {
    auto q = std::make_shared<EventQueue>(co_await net::this_coro::executor);
    const std::uint32_t prompt_len = static_cast<std::uint32_t>(prompt.size());
    std::string echo_text;
    if (pr.echo) {
      std::vector<tok::TokenId> ids(prompt.begin(), prompt.end());
      echo_text = tokenizer().decode(ids);
    }
    const serving::RequestId rid = engine().submit(std::move(prompt), pr.params, q->callback());
    const std::string id = new_id(pr.endpoint == Endpoint::chat ? "chatcmpl" : "cmpl");
    const std::int64_t created = unix_time();
    GenerateResult out;
    out.id = id;
    bool watch = true;
    double ttft = -1;
    std::string text = echo_text;
    serving::TokenEvent gen;  // every token so far with its logprobs (non-streamed)
    std::size_t text_offset = echo_text.size();
    serving::FinishReason finish = serving::FinishReason::none;
    std::string error;
    Usage usage;
    usage.prompt_tokens = prompt_len;

    if (!pr.stream) {
      while (finish == serving::FinishReason::none) {
        if (!co_await wait_events(stream, *q, watch)) {
          engine().cancel(rid);
          watch = false;
          continue;  // the final (cancelled) event still arrives
        }
        for (auto& ev : q->take()) {
          if (ttft < 0 && !ev.tokens.empty()) ttft = seconds_between(t0, Clock::now());
          text += ev.text;
          gen.tokens.insert(gen.tokens.end(), ev.tokens.begin(), ev.tokens.end());
          gen.logprobs.insert(gen.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
          gen.top_logprobs.insert(gen.top_logprobs.end(), ev.top_logprobs.begin(), ev.top_logprobs.end());
          usage.completion_tokens = ev.completion_tokens;
          usage.cached_tokens = ev.cached_tokens;
          if (ev.finish != serving::FinishReason::none) {
            finish = ev.finish;
            error = ev.error;
          }
        }
      }
      metrics.request_done(finish, ttft, seconds_between(t0, Clock::now()), prompt_len, usage.completion_tokens);
      out.generated = usage.completion_tokens;
      if (finish == serving::FinishReason::error) {
        out.response = this->error(req, {500, error, "server_error", "", ""});
      } else if (finish == serving::FinishReason::cancelled && stopping) {
        out.response = this->error(req, {503, "the server is shutting down", "server_error", "", ""});
      } else {
        out.response = make(req, http::status::ok,
                            json::serialize(completion_body(pr, id, text, gen, text_offset, finish, usage)));
      }
      out.status = out.response.result_int();
      co_return out;
    }

    // Streaming: headers now, then one SSE event per engine delivery.
    out.streamed = true;
    http::response<http::empty_body> head{http::status::ok, req.version()};
    head.set(http::field::server, "vkllm");
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-cache");
    if (!config.cors_origin.empty()) head.set(http::field::access_control_allow_origin, config.cors_origin);
    head.chunked(true);
    head.keep_alive(false);
    http::response_serializer<http::empty_body> sr{head};
    bool alive = true;
    {
      auto [ec, n] = co_await http::async_write_header(stream, sr, kAsTuple);
      alive = !ec;
    }
    auto send = [&](const std::string& payload) -> awaitable<bool> {
      const std::string data = "data: " + payload + "\n\n";
      stream.expires_after(config.read_timeout);
      auto [ec, n] = co_await net::async_write(stream, http::make_chunk(net::buffer(data)), kAsTuple);
      stream.expires_never();
      co_return !ec;
    };
    bool first = true;
    // Named, not a `{}` temporary: GCC 12 destroyed a TokenEvent temporary in these full
    // expressions holding co_await twice (free(): invalid pointer after the first chunk).
    const serving::TokenEvent no_tokens;
    if (alive && pr.endpoint == Endpoint::chat) {
      alive = co_await send(json::serialize(chunk_body(pr, id, created, "", true, nullptr, no_tokens, text_offset)));
      first = false;
    }
    if (alive && !echo_text.empty()) {
      alive = co_await send(json::serialize(chunk_body(pr, id, created, echo_text, first, nullptr, no_tokens, text_offset)));
    }
    while (finish == serving::FinishReason::none) {
      if (!alive) {
        engine().cancel(rid);
      }
      if (!co_await wait_events(stream, *q, watch) && alive) {
        alive = false;
        engine().cancel(rid);
        watch = false;
        continue;
      }
      for (auto& ev : q->take()) {
        if (ttft < 0 && !ev.tokens.empty()) ttft = seconds_between(t0, Clock::now());
        usage.completion_tokens = ev.completion_tokens;
        usage.cached_tokens = ev.cached_tokens;
        if (ev.finish != serving::FinishReason::none) {
          finish = ev.finish;
          error = ev.error;
        }
        const char* fr = finish_reason_name(ev.finish);
        if (ev.finish == serving::FinishReason::cancelled) fr = "stop";
        if (!alive) continue;
        if (ev.finish == serving::FinishReason::error) {
          // Named, not a temporary inside the co_await (GCC 12 may destroy such temporaries twice).
          const std::string body = error_body({500, error, "server_error", "", ""});
          alive = co_await send(body);
          continue;
        }
        if (ev.text.empty() && ev.finish == serving::FinishReason::none && !pr.logprobs) continue;
        const std::string chunk = json::serialize(chunk_body(pr, id, created, ev.text, first, fr, ev, text_offset));
        alive = co_await send(chunk);
        first = false;
      }
    }
    if (alive && pr.include_usage) {
      json::object u;
      u["id"] = id;
      u["object"] = pr.endpoint == Endpoint::chat ? "chat.completion.chunk" : "text_completion";
      u["created"] = created;
      u["model"] = config.model_name;
      u["choices"] = json::array{};
      u["usage"] = usage_json(usage);
      alive = co_await send(json::serialize(u));
    }
    if (alive) alive = co_await send("[DONE]");
    if (alive) co_await net::async_write(stream, http::make_chunk_last(), kAsTuple);
    metrics.request_done(finish, ttft, seconds_between(t0, Clock::now()), prompt_len, usage.completion_tokens);
    out.generated = usage.completion_tokens;
    out.status = alive ? 200 : 499;  // 499: the client closed the connection (nginx's code)
    co_return out;
  }

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(net::make_strand(ioc), kAsTuple);
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        log::warn("accept failed: {}", ec.message());
        continue;
      }
      socket.set_option(tcp::no_delay(true));
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
};

Server::Server(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Server::Server(ServerConfig config, serving::Engine& engine, const tok::Tokenizer& tokenizer, ChatSetup chat)
    : Server(std::move(config)) {
  attach(engine, tokenizer, std::move(chat));
}

void Server::attach(serving::Engine& engine, const tok::Tokenizer& tokenizer, ChatSetup chat) {
  Impl& s = *impl_;
  if (s.ready) throw std::logic_error("server: a model is already attached");
  s.engine_ = &engine;
  s.tokenizer_ = &tokenizer;
  s.chat_.emplace(std::move(chat));
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
    std::thread([&s] {
      s.stopping = true;
      net::post(s.ioc, [&s] {
        beast::error_code ec;
        s.acceptor.close(ec);
      });
      // In-flight requests get the grace period, then the engine cancels the rest; their
      // streams end with [DONE] and the connections close.
      const auto deadline = Clock::now() + s.config.shutdown_grace;
      while (s.in_flight > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (s.ready) s.engine().shutdown();
      const auto hard = Clock::now() + std::chrono::seconds(5);
      while (s.in_flight > 0 && Clock::now() < hard) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      s.ioc.stop();
      for (auto& t : s.threads) {
        if (t.joinable()) t.join();
      }
      std::lock_guard lock(s.done_mu);
      s.done = true;
      s.done_cv.notify_all();
    }).detach();
  });
}

void Server::wait() {
  Impl& s = *impl_;
  std::unique_lock lock(s.done_mu);
  s.done_cv.wait(lock, [&s] { return s.done || s.threads.empty(); });
}

}  // namespace vkllm::server
