// One generation request from engine submission to its last byte: the single event loop that
// both the streamed (SSE) and the whole (JSON) response use. Engine events become text through
// the front end's TextOutput (detokenize, stop strings, reasoning split; one finish path for
// every way a request ends); a client that leaves is cancelled once (docs/ARCHITECTURE.md "The
// life of a request").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "engine/frontend/prompt.hpp"
#include "engine/serving/engine.hpp"
#include "server/http_server.hpp"
#include "server/metrics.hpp"
#include "server/openai.hpp"

namespace vkllm::server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

struct GenerationContext {
  serving::Service& engine;
  const tok::Tokenizer& tokenizer;
  bool reasoning;  // the chat template is a reasoning model's: split <think>...</think>
  frontend::ToolFormat tool_format;  // the tool-call syntax of the template's model
  Metrics& metrics;
  const std::string& model_name;  // the id responses carry
  const ServerConfig& config;
  const std::atomic<bool>& stopping;
};

struct GenerationResult {
  bool streamed = false;       // the response went out as it was made (SSE)
  int status = 200;            // what the request log and metrics record (499: client gone)
  std::uint32_t generated = 0;
  std::string id;              // chatcmpl-... / cmpl-...
  HttpResponse response;       // stream: false (unless the client left: then nothing to send)
  bool client_gone = false;
};

// `prompt`: the prepared prompt (tokens < context); `max_tokens`: resolved against the context.
// Throws what Engine::submit throws (before anything was written).
boost::asio::awaitable<GenerationResult> generate(const GenerationContext& ctx,
                                                  boost::beast::tcp_stream& stream,
                                                  const HttpRequest& req, const ParsedRequest& pr,
                                                  frontend::Prompt prompt, std::uint32_t max_tokens,
                                                  std::chrono::steady_clock::time_point t0);

// Fills a response's common headers (server, content type, CORS, keep-alive).
HttpResponse make_response(const ServerConfig& config, const HttpRequest& req, bool stopping,
                           boost::beast::http::status status, std::string body,
                           const char* content_type = "application/json");
HttpResponse error_response(const ServerConfig& config, const HttpRequest& req, bool stopping,
                            const ApiError& e);

}  // namespace vkllm::server
