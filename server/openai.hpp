// The OpenAI API's request and response shapes, mapped to the engine's plain types. Validation
// names the field at fault; unknown fields are ignored. No sockets here: parse JSON text, build
// JSON text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "engine/frontend/prompt.hpp"
#include "engine/serving/engine.hpp"

namespace vkllm::server {

// An error that becomes an OpenAI-shaped body with an HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the field at fault, or empty
  std::string code;   // e.g. "context_length_exceeded", or empty
};
std::string error_body(const ApiError& e);

class ApiException : public std::exception {
 public:
  explicit ApiException(ApiError e) : error_(std::move(e)) {}
  const ApiError& error() const { return error_; }
  const char* what() const noexcept override { return error_.message.c_str(); }
 private:
  ApiError error_;
};

enum class Endpoint { chat, completion };

// What a /v1/chat/completions or /v1/completions body asks for.
// tool_choice: auto (the model decides), none (no calls parsed), required (at least one call),
// named (a call of that function).
struct ToolChoice {
  enum class Mode { automatic, none, required, named } mode = Mode::automatic;
  std::string name;  // named
};

struct ParsedRequest {
  Endpoint endpoint = Endpoint::chat;
  std::string model;                           // empty: the served model
  frontend::PromptInput prompt;                // what to render and tokenize
  serving::RequestParams params;               // max_tokens resolved later (see max_tokens)
  std::optional<std::uint32_t> max_tokens;     // as asked; empty: the server's default
  std::vector<std::string> stop;               // stop strings
  bool stream = false;
  bool include_usage = false;
  bool echo = false;                           // completion: prepend the prompt
  std::optional<std::uint32_t> top_logprobs;   // chat: top_logprobs; completion: logprobs
  bool logprobs = false;
  std::string user;
  std::uint32_t n = 1;                         // choices, each sampled on its own
  boost::json::array tools;                    // chat: the tools, as sent (validated)
  ToolChoice tool_choice;
  bool parallel_tool_calls = true;
};

// tool_choice required or a named function: the output is constrained to calls in the model's
// syntax (`format`) whose arguments match the function's parameters (a grammar in
// pr.params.grammar). Throws ApiException (400) when it cannot be, naming why. auto: the same
// grammar, lazy (pr.params.grammar_triggers: it holds from where a call begins), in the formats
// with a marker (hermes, llama3, mistral) and where the parameters compile; else nothing.
void apply_tool_choice(ParsedRequest& pr, frontend::ToolFormat format);

// The parser of the model's tool calls applies to this request: tools were given and not
// refused (tool_choice none), or the syntax is harmony (whose channels carry the reasoning).
bool parses_tool_calls(const ParsedRequest& pr, frontend::ToolFormat format);
// Its calls are written bare (no markers) under a grammar (tool_choice required / named in a
// syntax whose markers are control tokens).
bool bare_tool_calls(const ParsedRequest& pr, frontend::ToolFormat format);

// The most choices (n) one request may ask.
inline constexpr std::int64_t kMaxChoices = 16;

// Limits the parser enforces beyond the types.
struct RequestLimits {
  std::uint32_t max_stop_strings = 4;
  std::uint32_t vocab_size = 0;
};

// What a body says before it is parsed, found without building the document (a 32 MiB prompt is
// measured in a few milliseconds, before any copy of it): the bytes of a completion's "prompt"
// text, and the "model" it names (a string; empty when not). Zero and empty when the body is not
// valid JSON (the parser then says why).
struct BodyScan {
  std::size_t prompt_bytes = 0;
  std::string model;
};
BodyScan scan_body(std::string_view body);

// Throws ApiException (400) naming the field.
ParsedRequest parse_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits);

// What a /v1/embeddings body asks for: its inputs (text, or token ids), each embedded on its own.
struct EmbeddingRequest {
  std::string model;
  std::vector<frontend::PromptInput> inputs;
  bool base64 = false;        // encoding_format "base64": little-endian f32 bytes
  std::uint32_t dimensions = 0;  // 0: the model's
  std::optional<model::Pooling> pooling;  // llama-server's "pooling"; empty: the server's
};

// The most inputs one embeddings request may hold (OpenAI's limit).
inline constexpr std::size_t kMaxEmbeddingInputs = 2048;

// Throws ApiException (400) naming the field.
EmbeddingRequest parse_embedding_request(std::string_view body, const RequestLimits& limits);

// The OpenAI list of embeddings ({"object": "list", "data": [...], "model", "usage"}).
std::string embeddings_json(const std::vector<std::vector<float>>& embeddings, bool base64,
                            const std::string& model, std::uint32_t prompt_tokens);

struct Usage {
  std::uint32_t prompt_tokens = 0;
  std::uint32_t completion_tokens = 0;
  std::uint32_t cached_tokens = 0;
};
boost::json::object usage_json(const Usage& u);

const char* finish_reason_name(serving::FinishReason f);  // "stop", "length" (cancelled: null)

}  // namespace vkllm::server
