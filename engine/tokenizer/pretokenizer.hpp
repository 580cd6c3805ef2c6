// Byte-level BPE pre-tokenizers: the split regexes for each `tokenizer.ggml.pre` name, run by
// PCRE2 in UTF mode. Knows nothing of token ids, merges or GGUF: text in, word ranges out.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vkllm::tok {

// A byte range [begin, end) of the text being split.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

// One compiled pattern (PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, JIT when available).
// Immutable after construction, so one instance serves every thread.
class SplitRegex {
 public:
  // Throws std::invalid_argument naming the pattern and PCRE2's message on a bad pattern.
  explicit SplitRegex(std::string pattern);
  SplitRegex(SplitRegex&&) noexcept;
  SplitRegex& operator=(SplitRegex&&) noexcept;
  ~SplitRegex();

  // Splits text[range] into the matches of the pattern and the gaps between them, both kept
  // (Hugging Face's Split with behaviour "isolated"), appending non-empty ranges in order.
  // The range is matched as a whole subject: lookarounds and anchors never see past it.
  void split(std::string_view text, TextRange range, std::vector<TextRange>& out) const;

  const std::string& pattern() const noexcept { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

// How a byte-level BPE vocabulary pre-tokenizes, chosen by `tokenizer.ggml.pre`.
struct PreTokenizerSpec {
  std::string_view name;                    // canonical name, e.g. "llama3"
  std::vector<std::string_view> patterns;   // applied in turn, each to every piece so far
  bool ignore_merges = false;               // a word that is itself a token skips merging
};

// The spec for a `tokenizer.ggml.pre` value (aliases included: "llama-bpe" -> llama3, ...).
// nullptr when the name is unknown; the caller reports Unsupported.
const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre_name);

// The names find_pre_tokenizer accepts (for error messages).
std::string known_pre_tokenizers();

// A spec with its patterns compiled.
class PreTokenizer {
 public:
  explicit PreTokenizer(const PreTokenizerSpec& spec);

  // Splits `text` into words (byte ranges covering the text, in order).
  std::vector<TextRange> split(std::string_view text) const;
  const PreTokenizerSpec& spec() const noexcept { return *spec_; }

 private:
  const PreTokenizerSpec* spec_;
  std::vector<SplitRegex> regexes_;
};

}  // namespace vkllm::tok
