// Tool-call parsing: each family's real call syntax (written from the model cards and the chat
// templates that render it) through the streaming parser, whole and cut at every byte boundary
// (two pieces, and one byte at a time), gives the same calls and text; the format of every chat
// template in ../shared/templates is recognised.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include <boost/json.hpp>

#include "engine/frontend/tool_calls.hpp"
#include "tests/support/shared_data.hpp"

using namespace vkllm;
using frontend::ToolCallParser;
using frontend::ToolDelta;
using frontend::ToolFormat;

namespace {

struct Parsed {
  std::string content, reasoning;
  std::vector<frontend::ToolCall> calls;
};

void add(Parsed& p, const ToolDelta& d) {
  p.content += d.content;
  p.reasoning += d.reasoning;
  p.calls.insert(p.calls.end(), d.calls.begin(), d.calls.end());
}

Parsed parse_pieces(ToolFormat f, const std::vector<std::string_view>& pieces, bool bare = false) {
  ToolCallParser parser(f, "call_", bare);
  Parsed p;
  for (std::string_view piece : pieces) add(p, parser.push(piece));
  add(p, parser.finish());
  return p;
}

bool same(const Parsed& a, const Parsed& b) {
  if (a.content != b.content || a.reasoning != b.reasoning || a.calls.size() != b.calls.size()) return false;
  for (std::size_t i = 0; i < a.calls.size(); ++i) {
    if (a.calls[i].id != b.calls[i].id || a.calls[i].name != b.calls[i].name ||
        a.calls[i].arguments != b.calls[i].arguments) {
      return false;
    }
  }
  return true;
}

// The whole text at once, then every cut: the same result each time.
Parsed check_every_cut(ToolFormat f, std::string_view text, bool bare = false) {
  const Parsed whole = parse_pieces(f, {text}, bare);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    const Parsed two = parse_pieces(f, {text.substr(0, cut), text.substr(cut)}, bare);
    if (!same(two, whole)) FAIL("cut at byte ", cut, " of ", std::string(text), " differs");
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < text.size(); ++i) bytes.push_back(text.substr(i, 1));
  CHECK(same(parse_pieces(f, bytes, bare), whole));
  return whole;
}

void check_call(const frontend::ToolCall& c, std::string_view name, std::string_view args_json, std::size_t index) {
  CHECK(c.name == name);
  CHECK(boost::json::parse(c.arguments) == boost::json::parse(args_json));
  CHECK(c.id == "call_" + std::to_string(index));
}

}  // namespace

TEST_CASE("tool calls: Hermes / Qwen JSON and Qwen3-Coder XML") {
  const Parsed p = check_every_cut(ToolFormat::hermes,
                                   "I'll check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                                   "{\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n"
                                   "{\"name\": \"get_time\", \"arguments\": {\"tz\": \"Europe/Paris\"}}\n</tool_call>");
  REQUIRE(p.calls.size() == 2);
  check_call(p.calls[0], "get_weather", R"({"city": "Paris", "unit": "celsius"})", 0);
  check_call(p.calls[1], "get_time", R"({"tz": "Europe/Paris"})", 1);
  CHECK(p.content == "I'll check both.\n");  // the whitespace between and after calls is layout
  const Parsed x = check_every_cut(ToolFormat::hermes,
                                   "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                                   "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>");
  REQUIRE(x.calls.size() == 1);
  check_call(x.calls[0], "get_weather", R"({"city": "Paris", "days": 3})", 0);
  CHECK(x.content.empty());
  // Not a call: the text stays text, markers and all.
  const Parsed t = check_every_cut(ToolFormat::hermes, "a < b and <tool_call>not json</tool_call> <tool");
  CHECK(t.calls.empty());
  CHECK(t.content == "a < b and <tool_call>not json</tool_call> <tool");
}

TEST_CASE("tool calls: Llama 3.x JSON, with and without <|python_tag|>") {
  const Parsed p = check_every_cut(ToolFormat::llama3,
                                   "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"San Francisco, CA\"}}");
  REQUIRE(p.calls.size() == 1);
  check_call(p.calls[0], "get_weather", R"({"city": "San Francisco, CA"})", 0);
  CHECK(p.content.empty());
  const Parsed t = check_every_cut(ToolFormat::llama3, "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"}{\"}}");
  REQUIRE(t.calls.size() == 1);
  check_call(t.calls[0], "search", R"({"q": "}{"})", 0);
  const Parsed text = check_every_cut(ToolFormat::llama3, "The answer is {not a call}.");
  CHECK(text.calls.empty());
  CHECK(text.content == "The answer is {not a call}.");
}

TEST_CASE("tool calls: Mistral, Nemo's list and Small 3.2's NAME[ARGS]") {
  const Parsed n = check_every_cut(ToolFormat::mistral,
                                   "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
                                   "\"id\": \"a1b2c3d4e\"}, {\"name\": \"get_time\", \"arguments\": {}}]");
  REQUIRE(n.calls.size() == 2);
  check_call(n.calls[0], "get_weather", R"({"city": "Paris"})", 0);
  check_call(n.calls[1], "get_time", "{}", 1);
  const Parsed s = check_every_cut(ToolFormat::mistral,
                                   "Sure.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{\"tz\": \"CET\"}");
  REQUIRE(s.calls.size() == 2);
  check_call(s.calls[0], "get_weather", R"({"city": "Paris"})", 0);
  check_call(s.calls[1], "get_time", R"({"tz": "CET"})", 1);
  CHECK(s.content == "Sure.");
}

TEST_CASE("tool calls: gpt-oss harmony channels") {
  const Parsed p = check_every_cut(ToolFormat::harmony,
                                   "<|channel|>analysis<|message|>User wants the weather. Call the tool.<|end|>"
                                   "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
                                   "<|message|>{\"location\":\"San Francisco\"}<|call|>");
  REQUIRE(p.calls.size() == 1);
  check_call(p.calls[0], "get_weather", R"({"location": "San Francisco"})", 0);
  CHECK(p.reasoning == "User wants the weather. Call the tool.");
  CHECK(p.content.empty());
  const Parsed f = check_every_cut(ToolFormat::harmony,
                                   "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final"
                                   "<|message|>It is sunny.<|return|>");
  CHECK(f.calls.empty());
  CHECK(f.reasoning == "Simple.");
  CHECK(f.content == "It is sunny.");
}

TEST_CASE("tool calls: the generic JSON reply, and bare calls under tool_choice required") {
  const Parsed g = check_every_cut(ToolFormat::generic,
                                   "{\"tool_calls\": [{\"name\": \"a\", \"arguments\": {\"x\": 1}}, "
                                   "{\"name\": \"b\", \"arguments\": \"{\\\"y\\\": [2]}\"}]}");
  REQUIRE(g.calls.size() == 2);
  check_call(g.calls[0], "a", R"({"x": 1})", 0);
  check_call(g.calls[1], "b", R"({"y": [2]})", 1);
  const Parsed r = check_every_cut(ToolFormat::generic, "{\"response\": \"hello\"}");
  CHECK(r.calls.empty());
  CHECK(r.content == "{\"response\": \"hello\"}");
  const Parsed b = check_every_cut(ToolFormat::mistral, "[{\"name\": \"f\", \"arguments\": {\"k\": \"v\"}}]", true);
  REQUIRE(b.calls.size() == 1);
  check_call(b.calls[0], "f", R"({"k": "v"})", 0);
}

TEST_CASE("tool call formats of the real chat templates") {
  VKLLM_REQUIRE_SHARED(shared);
  const std::pair<const char*, ToolFormat> expected[] = {
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolFormat::hermes},
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ToolFormat::hermes},
      {"Qwen-Qwen3-0.6B.jinja", ToolFormat::hermes},
      {"Qwen-QwQ-32B.jinja", ToolFormat::hermes},
      {"Qwen3-Coder.jinja", ToolFormat::hermes},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ToolFormat::llama3},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", ToolFormat::llama3},
      {"Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolFormat::mistral},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolFormat::mistral},
      {"openai-gpt-oss-120b.jinja", ToolFormat::harmony},
      {"google-gemma-2-2b-it.jinja", ToolFormat::none},
      {"microsoft-Phi-3.5-mini-instruct.jinja", ToolFormat::none},
  };
  for (auto [file, want] : expected) {
    CAPTURE(file);
    std::ifstream f(shared / "templates" / file);
    REQUIRE(f.good());
    const std::string src((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(std::string(frontend::to_string(frontend::detect_tool_format(src))) == frontend::to_string(want));
  }
}
