// The generation event loop (docs/ARCHITECTURE.md "The life of a request").
#include "server/generation.hpp"
#include "server/net.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "engine/frontend/text_output.hpp"
#include "server/events.hpp"
#include "server/responses.hpp"

namespace vkllm::server {

using namespace net::experimental::awaitable_operators;

namespace {

std::string new_id(const char* prefix) {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}();
  return fmt::format("{}-{:08x}{:08x}", prefix, static_cast<std::uint32_t>(salt), ++counter);
}

// Where a request's deltas go: SSE chunks as they come, or one JSON response at the end.
class Sink {
 public:
  virtual ~Sink() = default;
  // Before any delta: the echo (or, for chat, the role) of each of `choices` choices.
  virtual awaitable<bool> begin(const std::string& echo, std::uint32_t choices) = 0;
  virtual awaitable<bool> send(const Delta& d) = 0;
  virtual awaitable<bool> end(const Usage& usage, serving::FinishReason finish, const std::string& error) = 0;
};

// The error a request ends with when the engine failed it: 408 request_timeout past its time
// limit (--request-timeout), 503 device_lost when the device was lost under it (the engine
// recovers: a retry may succeed), 500 for an error; none for every other end.
std::optional<ApiError> failure(serving::FinishReason finish, const std::string& message) {
  if (finish == serving::FinishReason::timeout) return ApiError{408, message, "timeout_error", "", "request_timeout"};
  if (finish == serving::FinishReason::device_lost) return ApiError{503, message, "server_error", "", "device_lost"};
  if (finish == serving::FinishReason::error) return ApiError{500, message, "server_error", "", ""};
  return std::nullopt;
}

class StreamSink : public Sink {
 public:
  StreamSink(const GenerationContext& ctx, beast::tcp_stream& stream, const HttpRequest& req, const ParsedRequest& pr,
             ResponseBuilder& rb)
      : ctx_(ctx), stream_(stream), req_(req), pr_(pr), rb_(rb) {}

  awaitable<bool> begin(const std::string& echo, std::uint32_t choices) override {
    first_.assign(choices, true);
    http::response<http::empty_body> head{http::status::ok, req_.version()};
    head.set(http::field::server, "vkllm");
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-cache");
    if (!ctx_.config.cors_origin.empty()) head.set(http::field::access_control_allow_origin, ctx_.config.cors_origin);
    head.chunked(true);
    head.keep_alive(false);
    http::response_serializer<http::empty_body> sr{head};
    auto [ec, n] = co_await http::async_write_header(stream_, sr, kAsTuple);
    if (ec) co_return false;
    if (pr_.endpoint == Endpoint::chat || !echo.empty()) {
      for (std::uint32_t i = 0; i < choices; ++i) {
        Delta d;
        d.content = echo;
        d.index = i;
        // Named, not a temporary inside co_await: GCC 12 destroyed such temporaries twice.
        const std::string chunk = json::serialize(rb_.chunk(d, first_[i]));
        first_[i] = false;
        if (!co_await write(chunk)) co_return false;
      }
    }
    co_return true;
  }
  awaitable<bool> send(const Delta& d) override {
    if (d.content.empty() && d.reasoning.empty() && d.tool_calls.empty() && !d.finish && !pr_.logprobs) co_return true;
    const std::string chunk = json::serialize(rb_.chunk(d, first_.at(d.index)));
    first_[d.index] = false;
    co_return co_await write(chunk);
  }
  awaitable<bool> end(const Usage& usage, serving::FinishReason finish, const std::string& error) override {
    if (const auto failed = failure(finish, error)) {
      const std::string body = error_body(*failed);
      if (!co_await write(body)) co_return false;
    }
    if (pr_.include_usage) {
      const std::string chunk = json::serialize(rb_.usage_chunk(usage));
      if (!co_await write(chunk)) co_return false;
    }
    const std::string done = "[DONE]";  // named: see begin()
    if (!co_await write(done)) co_return false;
    auto [ec, n] = co_await net::async_write(stream_, http::make_chunk_last(), kAsTuple);
    co_return !ec;
  }

 private:
  awaitable<bool> write(const std::string& payload) {
    const std::string data = "data: " + payload + "\n\n";
    stream_.expires_after(ctx_.config.read_timeout);
    auto [ec, n] = co_await net::async_write(stream_, http::make_chunk(net::buffer(data)), kAsTuple);
    stream_.expires_never();
    co_return !ec;
  }

  const GenerationContext& ctx_;
  beast::tcp_stream& stream_;
  const HttpRequest& req_;
  const ParsedRequest& pr_;
  ResponseBuilder& rb_;
  std::vector<bool> first_;  // per choice: no chunk sent yet
};

class CollectSink : public Sink {
 public:
  CollectSink(const GenerationContext& ctx, const HttpRequest& req, ResponseBuilder& rb, GenerationResult& out)
      : ctx_(ctx), req_(req), rb_(rb), out_(out) {}

  awaitable<bool> begin(const std::string& echo, std::uint32_t choices) override {
    all_.assign(choices, Delta{});
    for (std::uint32_t i = 0; i < choices; ++i) {
      all_[i].content = echo;
      all_[i].index = i;
    }
    co_return true;
  }
  awaitable<bool> send(const Delta& d) override {
    Delta& all = all_.at(d.index);
    all.content += d.content;
    all.reasoning += d.reasoning;
    serving::TokenEvent& t = all.tokens;
    t.tokens.insert(t.tokens.end(), d.tokens.tokens.begin(), d.tokens.tokens.end());
    t.logprobs.insert(t.logprobs.end(), d.tokens.logprobs.begin(), d.tokens.logprobs.end());
    t.top_logprobs.insert(t.top_logprobs.end(), d.tokens.top_logprobs.begin(), d.tokens.top_logprobs.end());
    all.tool_calls.insert(all.tool_calls.end(), d.tool_calls.begin(), d.tool_calls.end());
    if (d.finish) all.finish = d.finish;
    co_return true;
  }
  awaitable<bool> end(const Usage& usage, serving::FinishReason finish, const std::string& error) override {
    const bool stopping = ctx_.stopping.load();
    if (const auto failed = failure(finish, error)) {
      out_.response = error_response(ctx_.config, req_, stopping, *failed);
    } else if (finish == serving::FinishReason::cancelled && stopping) {
      out_.response = error_response(ctx_.config, req_, stopping, {503, "the server is shutting down", "server_error", "", ""});
    } else {
      out_.response = make_response(ctx_.config, req_, stopping, http::status::ok,
                                    json::serialize(rb_.completion(all_, usage)));
    }
    co_return true;
  }

 private:
  const GenerationContext& ctx_;
  const HttpRequest& req_;
  ResponseBuilder& rb_;
  GenerationResult& out_;
  std::vector<Delta> all_;  // per choice
};

// Turns one engine event into a delta: text of every token that is text (an end-of-generation
// or stop token has none), up to a stop string; at the end, whatever the text output held back.
class Assembler {
 public:
  Assembler(const GenerationContext& ctx, const ParsedRequest& pr, const frontend::Prompt& prompt,
            std::uint32_t choice, const std::string& call_ids)
      : index(choice),
        text_(ctx.tokenizer, frontend::TextOutputOptions{pr.stop, ctx.reasoning && pr.endpoint == Endpoint::chat,
                                                         prompt.starts_in_reasoning, shows_markers(ctx, pr)}) {
    if (parses_tool_calls(pr, ctx.tool_format)) {
      tools_.emplace(ctx.tool_format, fmt::format("{}_{}_", call_ids, choice), bare_tool_calls(pr, ctx.tool_format));
    }
  }

  // The tool-call syntax's markers are control tokens: the text shows them for the parser.
  static bool shows_markers(const GenerationContext& ctx, const ParsedRequest& pr) {
    return parses_tool_calls(pr, ctx.tool_format) && !frontend::tool_markers(ctx.tool_format).empty();
  }

  // finish != none afterwards: the request is over for the client (the engine's own last event
  // may still come after a stop string; it is ignored).
  Delta apply(const serving::TokenEvent& ev) {
    Delta d;
    d.index = index;
    for (std::size_t i = 0; i < ev.tokens.size() && finish == serving::FinishReason::none; ++i) {
      const bool end_token = i + 1 == ev.tokens.size() && ev.finish == serving::FinishReason::stop;
      if (!end_token) append(d, text_.push(ev.tokens[i]));
      d.tokens.tokens.push_back(ev.tokens[i]);
      if (i < ev.logprobs.size()) d.tokens.logprobs.push_back(ev.logprobs[i]);
      if (i < ev.top_logprobs.size()) d.tokens.top_logprobs.push_back(ev.top_logprobs[i]);
      ++completion_tokens;
      if (text_.stopped()) {
        finish = serving::FinishReason::stop;
        stop_string = true;
      }
    }
    if (finish == serving::FinishReason::none && ev.finish != serving::FinishReason::none) {
      finish = ev.finish;
      error = ev.error;
    }
    cached_tokens = ev.cached_tokens;
    if (finish != serving::FinishReason::none) append(d, text_.finish());
    if (tools_) {  // the answer's text through the tool-call parser
      frontend::ToolDelta td = tools_->push(d.content);
      if (finish != serving::FinishReason::none) {
        frontend::ToolDelta rest = tools_->finish();
        td.content += rest.content;
        td.reasoning += rest.reasoning;
        td.calls.insert(td.calls.end(), rest.calls.begin(), rest.calls.end());
      }
      d.content = std::move(td.content);
      d.reasoning += td.reasoning;
      d.tool_calls = std::move(td.calls);
    }
    if (finish != serving::FinishReason::none) {
      d.finish = finish_reason_name(finish);
      if (finish == serving::FinishReason::stop && tools_ && tools_->num_calls() > 0) d.finish = "tool_calls";
      // A request ended for the server's shutdown ends its stream as stopped.
      if (finish == serving::FinishReason::cancelled) d.finish = "stop";
    }
    return d;
  }

  std::uint32_t index;  // the choice
  serving::FinishReason finish = serving::FinishReason::none;
  std::optional<serving::RequestId> rid;  // the engine request (none: nothing generated)
  bool echo_pending = false;  // echo with logprobs: sent with the choice's first event
  bool stop_string = false;  // ended by a stop string: the engine still has it (cancel it)
  bool cancelled = false;    // cancel() was called for rid
  std::string error;
  std::uint32_t completion_tokens = 0;
  std::uint32_t cached_tokens = 0;

 private:
  static void append(Delta& d, const frontend::TextDelta& t) {
    d.content += t.content;
    d.reasoning += t.reasoning;
  }
  frontend::TextOutput text_;
  std::optional<frontend::ToolCallParser> tools_;
};

// The echo of a prompt whose logprobs were asked: its text, its tokens, and their logprobs from
// the request's first event (the first token has none: NaN, null on the wire).
Delta echo_delta(const std::string& echo, const std::vector<std::uint32_t>& prompt, const serving::TokenEvent& ev) {
  Delta d;
  d.content = echo;
  d.tokens.tokens = prompt;
  d.tokens.logprobs.push_back(std::numeric_limits<float>::quiet_NaN());
  d.tokens.logprobs.insert(d.tokens.logprobs.end(), ev.prompt_logprobs.begin(), ev.prompt_logprobs.end());
  if (!ev.prompt_top_logprobs.empty()) {
    d.tokens.top_logprobs.emplace_back();
    d.tokens.top_logprobs.insert(d.tokens.top_logprobs.end(), ev.prompt_top_logprobs.begin(),
                                 ev.prompt_top_logprobs.end());
  }
  return d;
}

}  // namespace

HttpResponse make_response(const ServerConfig& config, const HttpRequest& req, bool stopping, http::status status,
                           std::string body, const char* content_type) {
  HttpResponse res{status, req.version()};
  res.set(http::field::server, "vkllm");
  res.set(http::field::content_type, content_type);
  if (!config.cors_origin.empty()) res.set(http::field::access_control_allow_origin, config.cors_origin);
  res.keep_alive(req.keep_alive() && !stopping);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse error_response(const ServerConfig& config, const HttpRequest& req, bool stopping, const ApiError& e) {
  HttpResponse res = make_response(config, req, stopping, static_cast<http::status>(e.status), error_body(e));
  if (e.status == 429 || e.status == 503) res.set(http::field::retry_after, "1");
  if (e.status == 401) res.set(http::field::www_authenticate, "Bearer");
  return res;
}

namespace {

std::string echo_text(const GenerationContext& ctx, const ParsedRequest& pr, const frontend::Prompt& prompt) {
  if (!pr.echo) return {};
  if (!prompt.text.empty()) return prompt.text;
  return ctx.tokenizer.decode(std::vector<tok::TokenId>(prompt.tokens.begin(), prompt.tokens.end()));
}

// The event loop: engine events -> deltas -> the sink, until every choice has ended for the
// client or the client leaves (then false).
struct Pump {
  serving::Service& engine;
  Sink& sink;
  std::vector<Assembler>& choices;
  EventQueue& q;
  tcp::socket& socket;
  const std::string& echo;                   // echo with logprobs: sent with each choice's first event
  const std::vector<std::uint32_t>& prompt;  // its tokens
  bool score_only;                           // echo with logprobs and max_tokens 0
  bool inject_wakeup;
  Clock::time_point t0;
  double ttft = -1;
  bool watch = true;

  bool over() const {
    return std::all_of(choices.begin(), choices.end(),
                       [](const Assembler& a) { return a.finish != serving::FinishReason::none; });
  }

  awaitable<bool> run() {
    while (!over()) {
      if (!co_await wait_events(socket, q, watch, inject_wakeup)) co_return false;
      for (const EventQueue::Item& item : q.take()) {
        Assembler& as = choices.at(item.choice);
        const serving::TokenEvent& ev = item.event;
        if (as.finish != serving::FinishReason::none) continue;  // after a stop string
        if (ttft < 0 && !ev.tokens.empty()) ttft = seconds_between(t0, Clock::now());
        if (as.echo_pending && !ev.tokens.empty()) {  // the first token's event: the prompt's logprobs
          as.echo_pending = false;
          Delta e = echo_delta(echo, prompt, ev);
          e.index = as.index;
          if (score_only) {
            e.finish = "length";
            as.finish = serving::FinishReason::length;
          }
          if (!co_await sink.send(e)) co_return false;
          if (score_only) continue;
        }
        const Delta d = as.apply(ev);
        // A stop string ends the choice at once; the engine has not seen it: cancel it now, so
        // that the other choices do not wait for it.
        if (as.stop_string && as.rid && !std::exchange(as.cancelled, true)) engine.cancel(*as.rid);
        if (!co_await sink.send(d)) co_return false;
      }
    }
    co_return true;
  }
};

// Choice i's seed: choice 0 keeps the request's (n = 1 is unchanged), the others get distinct
// seeds derived from it (splitmix64), so a seeded request's choices are reproducible and differ.
std::uint64_t choice_seed(std::uint64_t seed, std::uint32_t choice) {
  if (choice == 0) return seed;
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * choice;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// How the response as a whole ended: a choice's failure (an error, a timeout, the device lost)
// fails it; otherwise a cancelled choice (the server's shutdown) stands for it; else choice 0's.
std::pair<serving::FinishReason, std::string> overall_finish(const std::vector<Assembler>& choices) {
  for (const Assembler& a : choices) {
    if (failure(a.finish, a.error)) return {a.finish, a.error};
  }
  for (const Assembler& a : choices) {
    if (a.finish == serving::FinishReason::cancelled) return {a.finish, a.error};
  }
  return {choices.front().finish, choices.front().error};
}

}  // namespace

awaitable<GenerationResult> generate(const GenerationContext& ctx, beast::tcp_stream& stream, const HttpRequest& req,
                                     const ParsedRequest& pr, frontend::Prompt prompt, std::uint32_t max_tokens,
                                     Clock::time_point t0) {
  GenerationResult out;
  out.streamed = pr.stream;
  const std::string echo = echo_text(ctx, pr, prompt);
  // echo with logprobs: the echo waits for the prompt's logprobs (the first event), and text
  // offsets count from the prompt's first piece.
  const bool echo_scored = pr.params.prompt_logprobs;
  std::vector<std::uint32_t> prompt_ids;
  if (echo_scored) prompt_ids = prompt.tokens;
  ResponseBuilder rb(pr, ctx.tokenizer, new_id(pr.endpoint == Endpoint::chat ? "chatcmpl" : "cmpl"),
                     ctx.model_name, echo_scored ? 0 : echo.size());
  out.id = rb.id();
  Usage usage;
  usage.prompt_tokens = static_cast<std::uint32_t>(prompt.tokens.size());
  std::vector<Assembler> choices;
  choices.reserve(pr.n);
  const std::string call_ids = new_id("call");
  for (std::uint32_t i = 0; i < pr.n; ++i) {
    choices.emplace_back(ctx, pr, prompt, i, call_ids);
    choices.back().echo_pending = echo_scored;
  }
  auto q = std::make_shared<EventQueue>(co_await net::this_coro::executor);
  // echo with max_tokens 0: the prompt alone, nothing generated; scored, it still takes the
  // prompt's steps (and one token, never shown).
  if (max_tokens == 0 && !echo_scored) {
    for (Assembler& a : choices) a.finish = serving::FinishReason::length;
  } else {
    // Choice 0 first; the others share its prompt blocks once it has computed them (the engine
    // holds them back until then). A refusal (queue full) cancels the choices already queued.
    try {
      for (Assembler& a : choices) {
        serving::RequestParams params = pr.params;
        params.max_tokens = std::max(max_tokens, 1u);
        params.timeout = ctx.config.request_timeout;
        params.sampling.seed = choice_seed(pr.params.sampling.seed, a.index);
        if (a.index > 0) params.shares_prompt_of = *choices.front().rid;
        a.rid = ctx.engine.submit(prompt.tokens, std::move(params), q->callback(a.index));
      }
    } catch (...) {
      for (Assembler& a : choices) {
        if (a.rid) ctx.engine.cancel(*a.rid);
      }
      throw;
    }
  }
  StreamSink stream_sink(ctx, stream, req, pr, rb);
  CollectSink collect_sink(ctx, req, rb, out);
  Sink& sink = pr.stream ? static_cast<Sink&>(stream_sink) : collect_sink;

  // Named, not a temporary inside co_await: GCC 12 destroyed such temporaries twice.
  const std::string shown_first = echo_scored ? std::string() : echo;
  bool alive = co_await sink.begin(shown_first, pr.n);
  for (std::uint32_t i = 0; alive && max_tokens == 0 && !echo_scored && i < pr.n; ++i) {
    Delta nothing;  // echo with max_tokens 0, unscored: the whole response is the echo
    nothing.finish = "length";
    nothing.index = i;
    alive = co_await sink.send(nothing);
  }
  Pump pump{ctx.engine, sink, choices, *q, stream.socket(), echo, prompt_ids, max_tokens == 0,
            ctx.config.test_spurious_wakeup, t0};
  if (alive) alive = co_await pump.run();
  // One cancel each, then leave: a client that left, or a stop string the engine has not seen.
  for (const Assembler& a : choices) {
    if (a.rid && !a.cancelled && (!alive || a.stop_string)) ctx.engine.cancel(*a.rid);
    usage.completion_tokens += a.completion_tokens;
  }
  usage.cached_tokens = choices.front().cached_tokens;
  const auto [finish, error] = overall_finish(choices);
  if (alive) alive = co_await sink.end(usage, finish, error);
  const serving::FinishReason recorded = alive ? finish : serving::FinishReason::cancelled;
  ctx.metrics.request_done(recorded, pump.ttft, seconds_between(t0, Clock::now()), usage.prompt_tokens,
                           usage.completion_tokens);
  out.generated = usage.completion_tokens;
  out.client_gone = !alive;
  // 499: the client closed the connection (nginx's code); a streamed response's status is sent.
  out.status = !alive ? 499 : pr.stream ? 200 : out.response.result_int();
  co_return out;
}

}  // namespace vkllm::server
