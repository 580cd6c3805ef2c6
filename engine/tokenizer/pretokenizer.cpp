// Byte-level BPE pre-tokenizers: regex table per `tokenizer.ggml.pre` and the PCRE2 splitter.
// Knows nothing of token ids, merges or GGUF.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/tokenizer/pretokenizer.hpp"

#include "engine/tokenizer/unicode.hpp"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <stdexcept>

namespace vkllm::tok {

// ---- patterns ----
// The split expressions are the ones the models' Hugging Face tokenizers use (and llama.cpp's
// llama-vocab.cpp lists per pre-tokenizer type); PCRE2 runs them as written, so Unicode
// classes and lookaheads need no hand-written emulation.
namespace {

// GPT-2's original split.
constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama 3 (tiktoken cl100k-style): case-insensitive contractions, digits in groups of 1-3.
constexpr std::string_view kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: as Llama 3 but single digits.
constexpr std::string_view kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// o200k (GPT-4o, Llama 4): cased word pieces with optional contraction suffix.
constexpr std::string_view kO200k =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Mistral Tekken (Pixtral, Nemo).
constexpr std::string_view kTekken =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek LLM: newline, Latin/Greek/Cyrillic/... letters, ASCII and full-width punctuation,
// trailing space, CJK/Hangul runs, digits.
constexpr std::string_view kDeepseekLetters =
    R"(\s?[)"
    R"(A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
    R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386})"
    R"(\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F})"
    R"(\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA})"
    R"(\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})"
    R"(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D})"
    R"(\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4})"
    R"(\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3})"
    R"(\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D})"
    R"(\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184})"
    R"(\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D})"
    R"(\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E})"
    R"(\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A})"
    R"(\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB})"
    R"(\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943})"
    R"(]+)";
// Code points are written as \x{...}: several of the original characters (KELVIN SIGN,
// OHM SIGN, GREEK ... OXIA) are canonical singletons that an editor's NFC would silently
// turn into other letters, breaking the ranges.
constexpr std::string_view kDeepseekPunct =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
constexpr std::string_view kCjkHangul =
    R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
constexpr std::string_view kCjkKana = R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)";
// DeepSeek V3.
constexpr std::string_view kDeepseek3Words =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// BLOOM family: anything but whitespace and a few punctuation marks.
constexpr std::string_view kBloom =
    R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)";

const std::vector<PreTokenizerSpec>& specs() {
  static const std::vector<PreTokenizerSpec> table = {
      // llama.cpp's fallback for BPE vocabularies without a known pre-tokenizer.
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}, false},
      {"llama3", {kLlama3}, true},
      {"qwen2", {kQwen2}, false},
      {"gpt-2", {kGpt2}, false},
      {"deepseek-llm",
       {R"([\r\n])", kDeepseekLetters, kDeepseekPunct, R"(\s+$)", kCjkHangul, R"(\p{N}+)"},
       false},
      {"deepseek-coder", {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjkHangul, R"(\p{N})"},
       false},
      {"deepseek-v3", {R"(\p{N}{1,3})", kCjkKana, kDeepseek3Words}, false},
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}, false},
      // StarCoder, Refact, Command-R, SmolLM, CodeShell, EXAONE, Minerva: digits alone.
      {"starcoder", {R"(\p{N})", kGpt2}, false},
      {"gpt-4o", {kO200k}, false},
      {"tekken", {kTekken}, false},
      {"bloom", {kBloom}, false},
      {"viking", {kBloom, R"(\p{N})"}, false},
  };
  return table;
}

struct Alias {
  std::string_view name;
  std::string_view canonical;
};
// Every `tokenizer.ggml.pre` value accepted, mapped as llama.cpp maps them.
constexpr std::array kAliases = {
    Alias{"default", "default"},        Alias{"llama3", "llama3"},
    Alias{"llama-v3", "llama3"},        Alias{"llama-bpe", "llama3"},
    Alias{"falcon3", "llama3"},         Alias{"dbrx", "llama3"},
    Alias{"smaug-bpe", "llama3"},       Alias{"chatglm-bpe", "llama3"},
    Alias{"qwen2", "qwen2"},            Alias{"deepseek-r1-qwen", "qwen2"},
    Alias{"stablelm2", "qwen2"},        Alias{"megrez", "qwen2"},
    Alias{"gpt-2", "gpt-2"},            Alias{"gpt2", "gpt-2"},
    Alias{"mpt", "gpt-2"},              Alias{"olmo", "gpt-2"},
    Alias{"jais", "gpt-2"},             Alias{"phi-2", "gpt-2"},
    Alias{"roberta-bpe", "gpt-2"},      Alias{"jina-es", "gpt-2"},
    Alias{"jina-de", "gpt-2"},          Alias{"jina-v1-en", "gpt-2"},
    Alias{"jina-v2-es", "gpt-2"},       Alias{"jina-v2-de", "gpt-2"},
    Alias{"jina-v2-code", "gpt-2"},     Alias{"gigachat", "gpt-2"},
    Alias{"deepseek-llm", "deepseek-llm"}, Alias{"deepseek-coder", "deepseek-coder"},
    Alias{"deepseek-v3", "deepseek-v3"}, Alias{"falcon", "falcon"},
    Alias{"starcoder", "starcoder"},    Alias{"refact", "starcoder"},
    Alias{"command-r", "starcoder"},    Alias{"smollm", "starcoder"},
    Alias{"codeshell", "starcoder"},    Alias{"exaone", "starcoder"},
    Alias{"minerva-7b", "starcoder"},   Alias{"gpt-4o", "gpt-4o"},
    Alias{"llama4", "gpt-4o"},          Alias{"tekken", "tekken"},
    Alias{"pixtral", "tekken"},         Alias{"bloom", "bloom"},
    Alias{"poro-chat", "bloom"},        Alias{"gpt3-finnish", "bloom"},
    Alias{"viking", "viking"},
};

}  // namespace

const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre_name) {
  for (const Alias& a : kAliases) {
    if (a.name != pre_name) continue;
    for (const PreTokenizerSpec& s : specs()) {
      if (s.name == a.canonical) return &s;
    }
  }
  return nullptr;
}

std::string known_pre_tokenizers() {
  std::string out;
  for (const Alias& a : kAliases) {
    if (!out.empty()) out += ", ";
    out += a.name;
  }
  return out;
}

// ---- SplitRegex ----

struct SplitRegex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

SplitRegex::SplitRegex(std::string pattern) : pattern_(std::move(pattern)), code_(new Code) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off,
                              nullptr);
  if (code_->code == nullptr) {
    std::array<PCRE2_UCHAR, 256> msg{};
    pcre2_get_error_message(err, msg.data(), msg.size());
    throw std::invalid_argument("split pattern /" + pattern_ + "/ at offset " +
                                std::to_string(err_off) + ": " +
                                reinterpret_cast<const char*>(msg.data()));
  }
  // JIT is an optimisation only: a build of PCRE2 without it falls back to the interpreter.
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

SplitRegex::SplitRegex(SplitRegex&&) noexcept = default;
SplitRegex& SplitRegex::operator=(SplitRegex&&) noexcept = default;
SplitRegex::~SplitRegex() = default;

void SplitRegex::split(std::string_view text, TextRange range, std::vector<TextRange>& out) const {
  struct MatchData {
    pcre2_match_data* md;
    ~MatchData() { pcre2_match_data_free(md); }
  } data{pcre2_match_data_create_from_pattern(code_->code, nullptr)};
  if (data.md == nullptr) throw std::bad_alloc();

  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + range.begin);
  const size_t length = range.end - range.begin;
  size_t pos = 0;   // search start, relative to the range
  size_t last = 0;  // end of the last emitted piece
  bool use_jit = code_->jit;
  while (pos < length) {
    int rc = pcre2_match(code_->code, subject, length, pos, use_jit ? 0 : PCRE2_NO_JIT,
                         data.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && use_jit) {
      // The default 32 KiB JIT stack is too small for this subject; the interpreter keeps
      // its backtracking frames on the heap instead.
      use_jit = false;
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      std::array<PCRE2_UCHAR, 256> msg{};
      pcre2_get_error_message(rc, msg.data(), msg.size());
      throw std::runtime_error("pre-tokenizer pattern /" + pattern_ + "/ failed: " +
                               reinterpret_cast<const char*>(msg.data()));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    const size_t m_begin = ov[0];
    const size_t m_end = ov[1];
    if (m_end == m_begin) {
      // An empty match splits nothing; step one UTF-8 character and search again.
      const size_t step = utf8_seq_len(static_cast<uint8_t>(text[range.begin + m_begin]));
      pos = std::min(length, m_begin + step);
      continue;
    }
    if (m_begin > last) out.push_back({range.begin + last, range.begin + m_begin});
    out.push_back({range.begin + m_begin, range.begin + m_end});
    last = pos = m_end;
  }
  if (last < length) out.push_back({range.begin + last, range.end});
}

// ---- PreTokenizer ----

PreTokenizer::PreTokenizer(const PreTokenizerSpec& spec) : spec_(&spec) {
  regexes_.reserve(spec.patterns.size());
  for (std::string_view p : spec.patterns) regexes_.emplace_back(std::string(p));
}

std::vector<TextRange> PreTokenizer::split(std::string_view text) const {
  std::vector<TextRange> pieces;
  if (text.empty()) return pieces;
  pieces.push_back({0, text.size()});
  std::vector<TextRange> next;
  for (const SplitRegex& re : regexes_) {
    next.clear();
    next.reserve(pieces.size() * 2);
    for (const TextRange& r : pieces) re.split(text, r, next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace vkllm::tok
