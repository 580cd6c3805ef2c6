// Tool calls in generated text (docs/ARCHITECTURE.md "Tool calls"): the call syntax of a model
// family, recognised from its chat template, parsed out of the streamed text into calls (name,
// arguments as JSON text) and the text around them. Incremental: text that may still become a
// marker is held back, a call is emitted once it is complete, so any cut of the stream gives the
// same calls and the same text. Pure C++.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vkllm::frontend {

enum class ToolFormat {
  none,     // the template renders no tools
  hermes,   // Hermes, Qwen2.5, Qwen3: <tool_call>{"name", "arguments"}</tool_call>; Qwen3-Coder's
            // <tool_call><function=NAME><parameter=P>value</parameter></function></tool_call>
  llama3,   // Llama 3.1-3.3: the reply is {"name", "parameters"} (after <|python_tag|> or not)
  mistral,  // [TOOL_CALLS][{"name", "arguments"}, ...] (Nemo) or [TOOL_CALLS]NAME[ARGS]{...} (Small 3.2)
  harmony,  // gpt-oss: <|channel|>commentary to=functions.NAME ... <|message|>{...}<|call|>;
            // analysis is reasoning, final is the answer
  generic,  // templates that render tools with no syntax of their own: {"tool_calls": [{"name",
            // "arguments"}]} or {"tool_call": {...}} as the whole reply
};

const char* to_string(ToolFormat f);

// The format a chat template's source implies (none when it never mentions tools).
ToolFormat detect_tool_format(std::string_view template_source);

// The markers a format's parser must see in the text: control tokens the detokenizer would
// otherwise drop (<|python_tag|>, [TOOL_CALLS], [ARGS], harmony's <|channel|> ...).
std::vector<std::string> tool_markers(ToolFormat f);

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // a JSON object, serialized
};

struct ToolDelta {
  std::string content;
  std::string reasoning;
  std::vector<ToolCall> calls;
  bool empty() const { return content.empty() && reasoning.empty() && calls.empty(); }
};

class ToolCallParser {
 public:
  // ids: id_prefix + the call's index. bare: the reply may also be the calls without a
  // marker (a JSON object or array of calls), as a grammar for tool_choice "required" writes
  // them where the markers are control tokens no grammar can write.
  ToolCallParser(ToolFormat format, std::string id_prefix, bool bare = false);

  ToolDelta push(std::string_view text);
  // The end of the text: what was held back; an unfinished call is text.
  ToolDelta finish();
  std::size_t num_calls() const { return next_index_; }

 private:
  enum class Mode { start, text, call, harmony_header, harmony_body };
  void step(ToolDelta& out, bool final);
  bool take_call(std::string_view body, ToolDelta& out);
  bool take_calls_json(std::string_view json, ToolDelta& out);
  void emit_text(std::string_view text, ToolDelta& out);
  ToolCall make_call(std::string name, std::string arguments);

  ToolFormat format_;
  std::string id_prefix_;
  bool bare_;
  Mode mode_ = Mode::start;
  std::string buf_;
  std::string marker_;         // the marker that opened the call being read
  std::string harmony_channel_;
  std::string harmony_recipient_;
  std::size_t next_index_ = 0;
  bool after_call_ = false;  // whitespace after a call is the calls' layout, not text
};

}  // namespace vkllm::frontend
