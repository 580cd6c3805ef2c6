// libFuzzer target: constrained decoding's and tool calling's parsers on what a client or a model
// may send. The first byte chooses: GBNF (a request's `grammar`), a JSON schema
// (`response_format`), or model output through a tool-call parser. Up to the first NUL: the
// grammar, schema or text (model output also goes through a lazy grammar's trigger watch); after
// it: bytes fed to the grammar's matcher, a mask asked before each. A grammar past the limits must end in GrammarError, never a hang, a crash or unbounded
// memory (docs/ARCHITECTURE.md "Constrained decoding").
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/json.hpp>

#include "engine/frontend/tool_calls.hpp"
#include "engine/grammar/grammar.hpp"
#include "engine/grammar/json_schema.hpp"
#include "engine/grammar/matcher.hpp"

namespace g = vkllm::grammar;

namespace {

std::shared_ptr<const g::TokenTrie> vocab() {
  static const auto trie = [] {
    std::vector<std::string> v{"", ""};
    for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
    for (const char* w : {"{\"", "\":", "true", "null", "\\u00", "é", "ab", "\n  "}) v.push_back(w);
    return std::make_shared<const g::TokenTrie>(v, std::vector<std::uint32_t>{1},
                                                std::unordered_map<std::string, std::uint32_t>{{"[TOOL_CALLS]", 0}});
  }();
  return trie;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t nul = all.find('\0');
  const std::string_view text = all.substr(0, nul);
  const std::string_view feed = nul == std::string_view::npos ? std::string_view() : all.substr(nul + 1, 64);
  const int mode = data[0] % 3;
  if (mode == 2) {  // model output: every format, in pieces of varying size
    for (int f = 0; f <= static_cast<int>(vkllm::frontend::ToolFormat::generic); ++f) {
      vkllm::frontend::ToolCallParser p(static_cast<vkllm::frontend::ToolFormat>(f), "c", data[0] & 4);
      for (std::size_t i = 0; i < text.size(); i += 1 + (i % 7)) (void)p.push(text.substr(i, 1 + (i % 7)));
      (void)p.finish();
    }
    // A lazy grammar's start over the same output, a byte a token (\x01: the control token
    // [TOOL_CALLS]): what it hands the grammar is the output's end, past the trigger's start.
    static const std::vector<g::Trigger> triggers{
        {"<tool_call>", false, false}, {R"({"name")", true, false}, {"[TOOL_CALLS]", false, true}, {"ab", false, true}};
    g::LazyStart lazy(triggers, vocab());
    std::string out;
    for (char c : text) {
      const bool control = c == '\x01';
      if (!control) out += c;
      if (const auto start = lazy.push(control ? 0u : 2u + static_cast<std::uint8_t>(c))) {
        if (!out.ends_with(*start)) __builtin_trap();
        break;
      }
    }
    return 0;
  }
  try {
    std::string gbnf(text);
    if (mode == 1) {
      boost::json::error_code ec;
      const boost::json::value schema = boost::json::parse(text, ec);
      if (ec) return 0;
      gbnf = g::json_schema_gbnf(schema);
    }
    g::GrammarLimits limits;
    limits.max_elements = 1u << 16;
    limits.max_repeat = 1000;
    auto grammar = std::make_shared<const g::Grammar>(g::Grammar::parse(gbnf, "root", limits));
    g::Matcher m(grammar, vocab());
    for (std::size_t i = 0; i < feed.size(); ++i) {
      if (i < 8) (void)m.mask();
      if (!m.accept_bytes(feed.substr(i, 1))) break;
    }
    (void)m.can_end();
  } catch (const g::GrammarError&) {
  }
  return 0;
}
