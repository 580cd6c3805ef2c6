// A request's generated tokens as text: detokenized incrementally, stop strings matched across
// token boundaries (never emitted), and a reasoning model's <think>...</think> split from the
// answer. One instance per request, on the front end's side of the engine (docs/ARCHITECTURE.md
// "The life of a request"); the server and `vkllm run` share it. Pure C++: no device, no JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/sample/stop.hpp"
#include "engine/tokenizer/tokenizer.hpp"

namespace vkllm::frontend {

struct TextDelta {
  std::string content;    // the answer
  std::string reasoning;  // the thinking (reasoning models only)
  bool empty() const { return content.empty() && reasoning.empty(); }
};

// Splits "<think>...</think>" off a stream of text. Starts in the answer, or in the thinking when
// the prompt already opened it (templates that end their generation prompt with "<think>").
// Holds back a possible partial tag until the next text decides it.
class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(bool starts_in_reasoning = false) : thinking_(starts_in_reasoning) {}
  TextDelta push(std::string_view text);
  TextDelta finish();

 private:
  bool thinking_;
  bool after_thinking_ = false;  // a </think> was seen: no second thinking
  bool seen_answer_ = false;     // only a <think> before any answer text opens the thinking
  std::string held_;
};

struct TextOutputOptions {
  std::vector<std::string> stop;  // stop strings (never emitted)
  bool reasoning = false;         // split <think>...</think> into TextDelta::reasoning
  bool starts_in_reasoning = false;
  // Control tokens as their text (a tool-call syntax's markers: <|python_tag|>, [TOOL_CALLS],
  // harmony's channels), for the tool-call parser to take out.
  bool show_special = false;
};

class TextOutput {
 public:
  TextOutput(const tok::Tokenizer& tokenizer, TextOutputOptions options);

  // A generated token that is text (not an end-of-generation token): the text now safe to show.
  // After a stop string matched, stopped() is true and further tokens give nothing.
  TextDelta push(std::uint32_t token);
  // The end, however the request ended (end of generation, stop token, length, cancel): the
  // text still held back (an unfinished UTF-8 sequence, a partial stop-string match, a partial
  // tag). Called once.
  TextDelta finish();
  bool stopped() const { return stopped_; }

 private:
  TextDelta split(std::string text);

  tok::StreamDecoder decoder_;
  sample::StopMatcher stops_;
  bool reasoning_;
  ReasoningSplitter splitter_;
  bool stopped_ = false;
};

}  // namespace vkllm::frontend
