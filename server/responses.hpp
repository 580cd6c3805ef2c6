// OpenAI response bodies of the generation endpoints: the whole response (stream: false) and the
// SSE chunks (stream: true), with chat's and completions' logprob shapes. Pure JSON building.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "engine/serving/engine.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "server/openai.hpp"

namespace vkllm::server {

// What one step of a request adds to its response: text (answer and thinking) and the tokens
// shown with it, with their logprobs when asked.
struct Delta {
  std::string content;
  std::string reasoning;
  serving::TokenEvent tokens;  // tokens, logprobs, top_logprobs (finish unused)
  const char* finish = nullptr;  // "stop" / "length" on the last delta
  std::uint32_t index = 0;       // the choice (n > 1)
  std::vector<frontend::ToolCall> tool_calls;  // calls completed with this delta
};

class ResponseBuilder {
 public:
  ResponseBuilder(const ParsedRequest& r, const tok::Tokenizer& tokenizer, std::string id,
                  std::string model_name, std::size_t text_offset);

  const std::string& id() const { return id_; }
  // stream: false. `all`: every delta of each choice merged, in choice order.
  boost::json::object completion(std::span<const Delta> all, const Usage& usage) const;
  // stream: true: one chunk of choice d.index (a choice's first chat chunk carries the role).
  boost::json::object chunk(const Delta& d, bool first);
  // stream_options.include_usage: the last chunk before [DONE].
  boost::json::object usage_chunk(const Usage& usage) const;

 private:
  boost::json::object head(const char* object) const;
  static boost::json::object tool_call_json(const frontend::ToolCall& c);
  boost::json::object chat_token_entry(std::uint32_t token, float logprob) const;
  boost::json::value chat_logprobs(const serving::TokenEvent& gen) const;
  boost::json::value completion_logprobs(const serving::TokenEvent& gen, std::size_t& text_offset) const;
  std::string token_text(std::uint32_t token) const;

  const ParsedRequest& r_;
  const tok::Tokenizer& tokenizer_;
  std::string id_;
  std::string model_;
  std::int64_t created_;
  // Completions: where each choice's next token's piece starts in its text.
  std::vector<std::size_t> text_offsets_;
  std::vector<std::size_t> tool_calls_sent_;  // per choice: the next streamed call's index
};

}  // namespace vkllm::server
