// The request front end's text work without a device: generated text (stop strings across
// tokens, one finish path for every end, the reasoning split), prompt preparation (the byte
// bound before tokenizing, max_tokens against the context, template inputs), and the penalty
// lists the sampler gets.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/frontend/prompt.hpp"
#include "engine/frontend/text_output.hpp"
#include "engine/sample/penalties.hpp"
#include "common/utf8.hpp"
#include "engine/tokenizer/unicode.hpp"

using namespace vkllm;
using frontend::TextOutput;
using frontend::TextOutputOptions;

namespace {

// A byte-level vocabulary: token b < 256 is byte b; 256 is "<|end|>" (EOS, control).
tok::Tokenizer byte_tokenizer() {
  tok::VocabData d;
  d.kind = tok::VocabKind::kBpe;
  d.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) d.tokens.push_back(utf8_encode(tok::byte_to_unicode(std::uint8_t(b))));
  d.tokens.push_back("<|end|>");
  d.types.assign(d.tokens.size(), tok::TokenType::kNormal);
  d.types.back() = tok::TokenType::kControl;
  d.eos = 256;
  return tok::Tokenizer(d);
}

std::vector<std::uint32_t> bytes_of(std::string_view s) {
  std::vector<std::uint32_t> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

// Pushes `text` one byte-token at a time, then finishes; returns content and reasoning.
frontend::TextDelta run(TextOutput& out, std::string_view text) {
  frontend::TextDelta all;
  for (std::uint32_t id : bytes_of(text)) {
    if (out.stopped()) break;
    const frontend::TextDelta d = out.push(id);
    all.content += d.content;
    all.reasoning += d.reasoning;
  }
  const frontend::TextDelta d = out.finish();
  all.content += d.content;
  all.reasoning += d.reasoning;
  return all;
}

}  // namespace

TEST_CASE("text output: a stop string across tokens ends the text right before it") {
  const tok::Tokenizer t = byte_tokenizer();
  TextOutput out(t, TextOutputOptions{{"ZZ"}, false, false});
  CHECK(run(out, "named LilyZZ and more").content == "named Lily");
  CHECK(out.stopped());
}

TEST_CASE("text output: the end during a partial stop-string match keeps the held text") {
  // The model ends (EOS) right after "Lily." while ".ZZZ" is partly matched: the "." held back
  // belongs to the answer. The old engine flushed only at max_tokens and lost it.
  const tok::Tokenizer t = byte_tokenizer();
  TextOutput out(t, TextOutputOptions{{".ZZZ"}, false, false});
  std::string text;
  for (std::uint32_t id : bytes_of("named Lily.")) text += out.push(id).content;
  CHECK(text == "named Lily");  // "." held: it may start ".ZZZ"
  text += out.finish().content;
  CHECK(text == "named Lily.");
  CHECK_FALSE(out.stopped());
}

TEST_CASE("text output: an unfinished UTF-8 sequence at the end is replaced (U+FFFD), not lost") {
  const tok::Tokenizer t = byte_tokenizer();
  TextOutput out(t, TextOutputOptions{});
  std::string text = out.push(0xE4).content;
  text += out.push(0xBD).content;
  CHECK(text.empty());
  text += out.finish().content;
  CHECK(text.starts_with("\xEF\xBF\xBD"));  // replaced, not dropped
}

TEST_CASE("reasoning: <think>...</think> goes apart from the answer, however the text is cut") {
  const tok::Tokenizer t = byte_tokenizer();
  {
    TextOutput out(t, TextOutputOptions{{}, true, false});
    const auto d = run(out, "<think>\nLet me see.\n</think>\n\nThe answer.");
    CHECK(d.reasoning == "\nLet me see.\n");
    CHECK(d.content == "The answer.");
  }
  {  // The template opened the thinking: the output starts inside it.
    TextOutput out(t, TextOutputOptions{{}, true, true});
    const auto d = run(out, "hmm</think>Yes.");
    CHECK(d.reasoning == "hmm");
    CHECK(d.content == "Yes.");
  }
  {  // No thinking: all answer; a later <think> is answer text.
    TextOutput out(t, TextOutputOptions{{}, true, false});
    const auto d = run(out, "Plain <think> text");
    CHECK(d.reasoning.empty());
    CHECK(d.content == "Plain <think> text");
  }
  {  // Stop strings apply before the split; an unclosed thinking stays reasoning.
    TextOutput out(t, TextOutputOptions{{"STOP"}, true, false});
    const auto d = run(out, "<think>abc STOP def");
    CHECK(d.reasoning == "abc ");
    CHECK(d.content.empty());
  }
  {  // Off: the tags are text.
    TextOutput out(t, TextOutputOptions{});
    CHECK(run(out, "<think>x</think>y").content == "<think>x</think>y");
  }
}

TEST_CASE("penalties: frequency and presence count generated tokens only, repetition all") {
  sample::SamplingParams p;
  p.frequency_penalty = 1.0f;
  const std::vector<std::uint32_t> prompt = {5, 5, 7};
  const std::vector<std::uint32_t> generated = {7, 9, 9};
  const std::vector<sample::LogitBias> bias = {{11, -3.f}, {9, 2.f}};
  const auto entries = sample::build_penalties(p, prompt, generated, bias);
  auto find = [&](std::uint32_t token) -> const sample::PenaltyEntry* {
    for (const auto& e : entries) {
      if (e.token == token) return &e;
    }
    return nullptr;
  };
  REQUIRE(find(5));
  CHECK(find(5)->count == 0);  // only in the prompt: no frequency/presence penalty
  CHECK(find(5)->seen == 1);   // but the repetition penalty applies
  CHECK(find(7)->count == 1);
  CHECK(find(9)->count == 2);
  CHECK(find(9)->bias == 2.f);
  CHECK(find(11)->seen == 0);
  CHECK(find(11)->bias == -3.f);
  CHECK(entries.size() == 4);
  // The window is the last penalty_last_n tokens of prompt + generated.
  p.penalty_last_n = 2;
  const auto window = sample::build_penalties(p, prompt, generated, {});
  REQUIRE(window.size() == 1);
  CHECK(window[0].token == 9);
  CHECK(window[0].count == 2);
  // No penalty asked: only the bias entries.
  CHECK(sample::build_penalties(sample::SamplingParams{}, prompt, generated, bias).size() == 2);
}

TEST_CASE("prompt: bytes before tokens, max_tokens against the context, template inputs") {
  const tok::Tokenizer t = byte_tokenizer();
  frontend::ChatSetup chat{tmpl::Template::parse(tmpl::kChatmlTemplate), "", "<|end|>", false};
  const frontend::Preprocessor pre(t, chat, 64);
  CHECK(pre.max_piece_bytes() == 7);  // "<|end|>"
  CHECK_NOTHROW(pre.check_bytes(63 * 7, "prompt"));
  try {
    pre.check_bytes(64 * 7, "prompt");
    FAIL("a prompt of 448 bytes cannot be fewer than 64 tokens");
  } catch (const frontend::PromptError& e) {
    CHECK(e.code() == "context_length_exceeded");
    CHECK(std::string(e.what()).find("448 bytes") != std::string::npos);
  }
  frontend::PromptInput text;
  text.text = "hello";
  CHECK(pre.prepare(text).tokens.size() == 5);
  text.text = std::string(64, 'x');
  CHECK_THROWS_AS(pre.prepare(text), frontend::PromptError);
  // max_tokens: the asked number when it fits, an error naming both numbers when not.
  CHECK(pre.max_tokens(10, 54, 256) == 54);
  CHECK(pre.max_tokens(10, std::nullopt, 256) == 54);
  CHECK(pre.max_tokens(10, std::nullopt, 16) == 16);
  try {
    pre.max_tokens(10, 55, 256);
    FAIL("55 + 10 exceed 64");
  } catch (const frontend::PromptError& e) {
    const std::string m = e.what();
    CHECK(m.find("64") != std::string::npos);
    CHECK(m.find("55") != std::string::npos);
    CHECK(e.param() == "max_tokens");
  }
  // Chat: the generation prompt, or the final assistant message continued.
  const frontend::Preprocessor pre_chat(t, chat, 512);
  frontend::PromptInput c;
  c.kind = frontend::PromptInput::Kind::chat;
  c.messages_json = R"([{"role":"user","content":"hi"},{"role":"assistant","content":"Once"}])";
  c.continue_final_message = true;
  const frontend::Prompt cont = pre_chat.prepare(c);
  CHECK(cont.text.ends_with("assistant\nOnce"));
  c.continue_final_message = false;
  CHECK(pre_chat.prepare(c).text.ends_with("<|im_start|>assistant\n"));
  c.add_generation_prompt = false;
  CHECK(pre_chat.prepare(c).text.ends_with("<|im_end|>\n"));
  // Template kwargs reach the template.
  frontend::ChatSetup kw{tmpl::Template::parse("{{ greeting }} {{ messages[0].content }}"), "", "", false};
  const frontend::Preprocessor pre2(t, kw, 512);
  c.template_kwargs_json = R"({"greeting":"hey"})";
  CHECK(pre2.prepare(c).text == "hey hi");
  c.template_kwargs_json = "[1]";
  CHECK_THROWS_AS(pre2.prepare(c), frontend::PromptError);
}
