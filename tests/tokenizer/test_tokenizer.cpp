// Tokenizer unit tests: UTF-8 helpers, hand-made vocabularies (merge order, specials, errors),
// linear-time merging on 1 MB inputs, prompt-length errors and the streaming decoder.
#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "engine/tokenizer/unicode.hpp"
#include "tests/support/shared_data.hpp"

using namespace vkllm;
using namespace vkllm::tok;

namespace {

// Decodes ids one at a time through a StreamDecoder; every chunk must be valid UTF-8.
std::string stream_decode(const Tokenizer& t, const std::vector<TokenId>& ids) {
  StreamDecoder dec(t);
  std::string joined;
  for (TokenId id : ids) {
    const std::string chunk = dec.push(id);
    CHECK(utf8_is_valid(chunk));
    joined += chunk;
  }
  return joined + dec.finish();
}

// A byte-level BPE vocabulary: the 256 byte characters, then `extra` tokens with merges.
VocabData byte_vocab(std::string pre, const std::vector<std::pair<std::string, std::string>>& merges) {
  VocabData d;
  d.kind = VocabKind::kBpe;
  d.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) d.tokens.push_back(utf8_encode(byte_to_unicode(uint8_t(b))));
  for (const auto& [l, r] : merges) {
    d.tokens.push_back(l + r);
    d.merges.push_back(l + " " + r);
  }
  return d;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("utf8 helpers") {
  CHECK(utf8_complete_prefix("abc") == 3);
  CHECK(utf8_complete_prefix("a\xE4\xBD") == 1);         // first 2 bytes of 你
  CHECK(utf8_complete_prefix("a\xE4\xBD\xA0") == 4);     // complete
  CHECK(utf8_complete_prefix("\xF0\x9F\xA6") == 0);      // 3 of 4 bytes of 🦙
  CHECK(utf8_complete_prefix("a\xC0") == 2);             // never valid: not held back
  CHECK(utf8_complete_prefix("a\xE0\x80") == 3);         // overlong prefix: not held back
  CHECK(utf8_is_valid("h\xC3\xA9llo \xF0\x9F\xA6\x99"));
  CHECK_FALSE(utf8_is_valid("\xED\xA0\x80"));  // surrogate
  CHECK(utf8_sanitize("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
  for (int b = 0; b < 256; ++b) CHECK(unicode_to_byte(byte_to_unicode(uint8_t(b))) == b);
  CHECK(byte_to_unicode(' ') == 0x120);  // 'Ġ'
  CHECK(byte_to_unicode('\n') == 0x10A);  // 'Ċ'
}

TEST_CASE("pre-tokenizer splits keep every byte, in order") {
  const PreTokenizer pre(*find_pre_tokenizer("llama-bpe"));
  const std::string text = "Hello, y'all! 12345  \n\n 你好 🦙";
  std::string joined;
  std::vector<std::string> words;
  for (const TextRange& r : pre.split(text)) {
    words.push_back(text.substr(r.begin, r.end - r.begin));
    joined += words.back();
  }
  CHECK(joined == text);
  CHECK(words == std::vector<std::string>{"Hello", ",", " y", "'all", "!", " ", "123", "45", "  \n\n",
                                          " 你好", " 🦙"});
  CHECK(find_pre_tokenizer("no-such-pre") == nullptr);
  CHECK_THROWS_AS(SplitRegex("(["), std::invalid_argument);
}

TEST_CASE("every known pre-tokenizer compiles and covers its input") {
  const std::string text = "Hello, y'all! 3.14159\n\t 你好 안녕 こんにちは 🦙 Ωmega ΐ K";
  for (const std::string_view name : {"default", "llama3", "qwen2", "gpt-2", "deepseek-llm",
                                       "deepseek-coder", "deepseek-v3", "falcon", "starcoder",
                                       "gpt-4o", "tekken", "bloom", "viking"}) {
    CAPTURE(std::string(name));
    const PreTokenizer pre(*find_pre_tokenizer(name));
    std::string joined;
    for (const TextRange& r : pre.split(text)) joined += text.substr(r.begin, r.end - r.begin);
    CHECK(joined == text);
  }
}

TEST_CASE("byte-level BPE merges by rank, leftmost first on ties") {
  // "ab" has a better rank than "bc": "abc" -> ab + c.
  Tokenizer t(byte_vocab("gpt-2", {{"a", "b"}, {"b", "c"}, {"ab", "c"}}));
  const TokenId ab = 256, abc = 258;
  CHECK(t.encode("abc") == std::vector<TokenId>{abc});
  CHECK(t.encode("abab") == std::vector<TokenId>{ab, ab});
  // Leftmost on equal rank: "aaa" with merge a+a -> "aa" + "a".
  Tokenizer t2(byte_vocab("gpt-2", {{"a", "a"}}));
  CHECK(t2.encode("aaa") == std::vector<TokenId>{256, t2.vocab().find("a")});
  CHECK(t2.decode(t2.encode("aaa")) == "aaa");
}

TEST_CASE("1 MB of one repeated character tokenizes in linear time") {
  // "a" merged into power-of-two runs up to 1024: a queue-based merge does ~1M merges; a
  // quadratic rescan would need ~1e12 steps. The bound is generous for slow CI machines.
  std::vector<std::pair<std::string, std::string>> merges;
  for (std::string run = "a"; run.size() < 1024; run += run) merges.push_back({run, run});
  for (const std::string pre : {"gpt-2", "llama3", "qwen2"}) {
    CAPTURE(pre);
    Tokenizer t(byte_vocab(pre, merges));
    const std::string text(1 << 20, 'a');
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = t.encode(text);
    const double s = seconds_since(t0);
    MESSAGE(pre << ": 1 MiB of 'a' -> " << ids.size() << " tokens in " << s << " s");
    CHECK(ids.size() == (1u << 20) / 1024);
    CHECK(s < 10.0);
    // And 1 MB of spaces / newlines (the whitespace alternatives of the split regexes).
    const std::string spaces(1 << 20, ' ');
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(t.decode(t.encode(spaces)) == spaces);
    CHECK(seconds_since(t1) < 10.0);
  }
}

TEST_CASE("special tokens: control parsed on request, user-defined always") {
  VocabData d = byte_vocab("gpt-2", {{"a", "b"}});
  d.tokens.push_back("<|end|>");
  d.types.assign(d.tokens.size(), TokenType::kNormal);
  d.types.back() = TokenType::kControl;
  const TokenId end_id = static_cast<TokenId>(d.tokens.size() - 1);
  d.tokens.push_back("<tool>");
  d.types.push_back(TokenType::kUserDefined);
  const TokenId tool_id = end_id + 1;
  d.eos = end_id;
  d.add_eos = true;
  Tokenizer t(d);
  const auto on = t.encode("ab<|end|>ab<tool>", {.add_special = false, .parse_special = true});
  CHECK(on == std::vector<TokenId>{256, end_id, 256, tool_id});
  const auto off = t.encode("ab<|end|>ab<tool>", {.add_special = false, .parse_special = false});
  CHECK(std::count(off.begin(), off.end(), end_id) == 0);
  CHECK(off.back() == tool_id);
  CHECK(t.encode("ab").back() == end_id);  // add_eos
  CHECK(t.decode(on) == "abab<tool>");
  CHECK(t.decode(on, {.show_special = true}) == "ab<|end|>ab<tool>");
  CHECK(t.is_eog(end_id));
}

TEST_CASE("end of generation: the named ids, and end-of-turn markers found by their text") {
  // Gemma's files name <eos> only; generation ends at <end_of_turn> (llama.cpp finds it by its
  // text). Only control and user-defined tokens count: a normal token spelled so does not.
  VocabData d = byte_vocab("gpt-2", {});
  const auto add = [&](const char* text, TokenType type) {
    d.tokens.push_back(text);
    d.types.resize(d.tokens.size() - 1, TokenType::kNormal);
    d.types.push_back(type);
    return static_cast<TokenId>(d.tokens.size() - 1);
  };
  const TokenId eos = add("<eos>", TokenType::kControl);
  const TokenId turn = add("<end_of_turn>", TokenType::kControl);
  const TokenId start = add("<start_of_turn>", TokenType::kControl);
  const TokenId im_end = add("<|im_end|>", TokenType::kNormal);
  d.eos = eos;
  const Tokenizer gemma(d);
  CHECK(gemma.is_eog(eos));
  CHECK(gemma.is_eog(turn));
  CHECK_FALSE(gemma.is_eog(start));
  CHECK_FALSE(gemma.is_eog(im_end));
  CHECK_FALSE(gemma.is_eog(65));
  // Harmony (gpt-oss): <|end|> closes a channel, <|return|> the turn.
  const TokenId end = add("<|end|>", TokenType::kControl);
  const TokenId ret = add("<|return|>", TokenType::kControl);
  const Tokenizer harmony(d);
  CHECK_FALSE(harmony.is_eog(end));
  CHECK(harmony.is_eog(ret));
  CHECK(harmony.is_eog(turn));
}

TEST_CASE("malformed vocabularies are InvalidModel, unknown pre-tokenizers Unsupported") {
  VocabData bad_merge = byte_vocab("gpt-2", {});
  bad_merge.merges.push_back("nospace");
  CHECK_THROWS_AS(Tokenizer{bad_merge}, vkllm::InvalidModel);
  VocabData bad_bos = byte_vocab("gpt-2", {});
  bad_bos.bos = 100000;
  CHECK_THROWS_AS(Tokenizer{bad_bos}, vkllm::InvalidModel);
  VocabData bad_scores = byte_vocab("gpt-2", {});
  bad_scores.scores = {1.0f};
  CHECK_THROWS_AS(Tokenizer{bad_scores}, vkllm::InvalidModel);
  CHECK_THROWS_AS(Tokenizer{VocabData{}}, vkllm::InvalidModel);
  CHECK_THROWS_AS(Tokenizer{byte_vocab("made-up-pre", {})}, vkllm::Unsupported);
  Tokenizer t(byte_vocab("gpt-2", {}));
  const TokenId bad = 999999;
  CHECK_THROWS_AS(t.decode(std::span<const TokenId>(&bad, 1)), vkllm::InvalidRequest);
}

TEST_CASE("a prompt longer than the context is an InvalidRequest naming both lengths") {
  Tokenizer t(byte_vocab("gpt-2", {}));
  CHECK(t.encode_prompt("hello", 5).size() == 5);
  try {
    (void)t.encode_prompt("hello world", 4);
    FAIL("no error");
  } catch (const vkllm::InvalidRequest& e) {
    const std::string msg = e.what();
    CHECK(msg.find("11") != std::string::npos);
    CHECK(msg.find("4") != std::string::npos);
  }
  CHECK_THROWS_AS(check_prompt_fits(4097, 4096), vkllm::InvalidRequest);
  CHECK_NOTHROW(check_prompt_fits(4096, 4096));
}

TEST_CASE("streaming decoder never emits half a UTF-8 character") {
  // Byte-level BPE with no merges: every multi-byte character spans several tokens.
  Tokenizer t(byte_vocab("gpt-2", {}));
  const std::string text = "你好，世界 🦙🚀 こんにちは 😶‍🌫️ 한국어 ✅";
  const auto ids = t.encode(text);
  CHECK(ids.size() == text.size());
  StreamDecoder dec(t);
  std::string joined;
  size_t held = 0;
  for (TokenId id : ids) {
    const std::string chunk = dec.push(id);
    CHECK(utf8_is_valid(chunk));
    if (chunk.empty()) ++held;
    joined += chunk;
  }
  joined += dec.finish();
  CHECK(joined == text);
  CHECK(held > 0);
  // A stream cut inside a character ends with U+FFFD, never with a stray byte.
  StreamDecoder cut(t);
  CHECK(cut.push(t.encode("\xF0\x9F")[0]).empty());
  CHECK(cut.pending_bytes() == 1);
  CHECK(cut.finish() == "\xEF\xBF\xBD");
}

TEST_CASE("SentencePiece vocabulary: dummy prefix, byte fallback, streaming") {
  VKLLM_REQUIRE_SHARED(shared);
  const Tokenizer t =
      Tokenizer::from_gguf(vkllm::gguf::Reader::open(shared / "vocab" / "ggml-vocab-llama-spm.gguf"));
  CHECK(t.kind() == VocabKind::kSpm);
  // llama2.c's test.c values for Llama 2's tokenizer (encode with BOS).
  CHECK(t.encode("") == std::vector<TokenId>{1});
  CHECK(t.encode("I believe the meaning of life is") ==
        std::vector<TokenId>{1, 306, 4658, 278, 6593, 310, 2834, 338});
  CHECK(t.encode("Simply put, the theory of relativity states that ") ==
        std::vector<TokenId>{1, 3439, 17632, 1925, 29892, 278, 6368, 310, 14215, 537, 5922, 393,
                             29871});
  // Decoding strips the dummy prefix once; BOS is hidden unless asked for.
  const std::string text = " Hello  world 🦙 你好";
  const auto ids = t.encode(text);
  CHECK(t.decode(ids) == text);
  CHECK(t.decode(ids, {.show_special = true}) == "<s>" + text);
  // Token by token (the llama emoji is four <0xXX> byte tokens): only whole characters.
  CHECK(stream_decode(t, ids) == text);
  // Ill-formed UTF-8 input survives through byte fallback.
  const std::string raw = "a\xFF\xFE b";
  CHECK(t.decode(t.encode(raw)) == raw);
  // 1 MB of one character: the score-ordered merge loop is a priority queue too.
  const std::string big(1 << 20, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  const auto big_ids = t.encode(big);
  MESSAGE("spm: 1 MiB of 'a' -> " << big_ids.size() << " tokens in " << seconds_since(t0) << " s");
  CHECK(seconds_since(t0) < 10.0);
  CHECK(t.decode(big_ids) == big);
}

TEST_CASE("streaming decoder on real byte-level BPE: CJK and emoji token by token") {
  VKLLM_REQUIRE_SHARED(shared);
  const Tokenizer t =
      Tokenizer::from_gguf(vkllm::gguf::Reader::open(shared / "vocab" / "ggml-vocab-gpt-2.gguf"));
  const std::string text = "日本語のテキスト 🦙🚀😶‍🌫️ 中文字符 ｶﾀｶﾅ";
  const auto ids = t.encode(text);
  CHECK(stream_decode(t, ids) == text);
  CHECK(t.decode(t.encode("<|endoftext|>", {.parse_special = true})) == "");
  const std::string raw = "a\xFF\xFE b\xE4\xBD";  // ill-formed UTF-8 is still bytes
  CHECK(t.decode(t.encode(raw)) == raw);
  CHECK(t.encode("<|endoftext|>", {.parse_special = true}) == std::vector<TokenId>{50256});
}

TEST_CASE("WordPiece vocabulary: [CLS] ... [SEP], lowercase, accents, decode") {
  VKLLM_REQUIRE_SHARED(shared);
  const Tokenizer t =
      Tokenizer::from_gguf(vkllm::gguf::Reader::open(shared / "vocab" / "ggml-vocab-bert-bge.gguf"));
  const auto ids = t.encode("Hello World!");
  CHECK(ids.front() == 101);
  CHECK(ids.back() == 102);
  CHECK(t.decode(ids) == "hello world !");
  CHECK(t.encode("Äpfel", {.add_special = false}) == t.encode("apfel", {.add_special = false}));
}

TEST_CASE("stories260K's tokenizer: u32 -1 ids mean none; the documented prompt ids") {
  VKLLM_REQUIRE_SHARED(shared);
  // Its GGUF stores tokenizer.ggml.seperator_token_id = 0xFFFFFFFF (-1 as u32).
  const Tokenizer t = Tokenizer::from_gguf(
      vkllm::gguf::Reader::open(shared / "models" / "stories260K" / "stories260K.gguf"));
  // ../shared/models/stories260K/EXPECTED.md: "Once upon a time" -> 1 403 407 261 378.
  CHECK(t.encode("Once upon a time") == std::vector<TokenId>{1, 403, 407, 261, 378});
  CHECK(t.decode(t.encode("Once upon a time")) == "Once upon a time");
}
