// WordPiece (BERT): Hugging Face's BertNormalizer + BertPreTokenizer + greedy longest match,
// over GGUF's spelling of the vocabulary (word starts prefixed with U+2581, "##" removed).
// Knows nothing of special tokens or [CLS]/[SEP] (tokenizer.cpp adds those).
#include <string>
#include <vector>

#include "engine/tokenizer/models.hpp"
#include "engine/tokenizer/unicode.hpp"

namespace vkllm::tok {
namespace {

// BERT's limit: a longer word becomes [UNK] whole.
constexpr size_t kMaxWordChars = 100;
constexpr std::string_view kWordPrefix = "\xE2\x96\x81";  // U+2581

// Clean (drop NUL, U+FFFD and controls; whitespace -> ' '), pad CJK ideographs with spaces,
// then NFD, drop non-spacing marks and lowercase: BertNormalizer with lowercase and
// strip_accents, as uncased BERT vocabularies (bge) are trained.
std::string normalize(std::string_view text) {
  std::string cleaned;
  cleaned.reserve(text.size() + 8);
  for (size_t pos = 0; pos < text.size();) {
    const char32_t cp = utf8_next(text, pos);
    if (cp == 0 || cp == kReplacementChar || is_control(cp)) continue;
    if (is_whitespace(cp)) {
      cleaned.push_back(' ');
    } else if (is_cjk_ideograph(cp)) {
      cleaned.push_back(' ');
      utf8_append(cleaned, cp);
      cleaned.push_back(' ');
    } else {
      utf8_append(cleaned, cp);
    }
  }
  const std::string decomposed = nfd(cleaned);
  std::string out;
  out.reserve(decomposed.size());
  for (size_t pos = 0; pos < decomposed.size();) {
    const char32_t cp = utf8_next(decomposed, pos);
    if (is_nonspacing_mark(cp)) continue;
    utf8_append(out, to_lower(cp));
  }
  return out;
}

// Whitespace-separated words, each punctuation character a word of its own.
std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words(1);
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const char32_t cp = utf8_next(text, pos);
    if (is_whitespace(cp)) {
      if (!words.back().empty()) words.emplace_back();
    } else if (is_bert_punct(cp)) {
      if (!words.back().empty()) words.emplace_back();
      words.back().assign(text.substr(start, pos - start));
      words.emplace_back();
    } else {
      words.back().append(text.substr(start, pos - start));
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

size_t count_chars(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace

void encode_wpm(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) {
  const TokenId unk = vocab.data().unk;
  for (const std::string& w : split_words(normalize(text))) {
    const size_t mark = out.size();
    bool ok = count_chars(w) <= kMaxWordChars;
    const std::string word = std::string(kWordPrefix) + w;
    // Greedy longest match from each position; the first piece carries the word prefix.
    for (size_t i = 0; ok && i < word.size();) {
      size_t j = std::min(word.size(), i + vocab.max_token_bytes());
      TokenId id = kNoToken;
      for (; j > i; --j) {
        if (j < word.size() && (static_cast<uint8_t>(word[j]) & 0xC0) == 0x80) {
          continue;  // never cut inside a UTF-8 sequence
        }
        id = vocab.find(std::string_view(word).substr(i, j - i));
        if (id != kNoToken) break;
      }
      if (id == kNoToken) {
        ok = false;
        break;
      }
      out.push_back(id);
      i = j;
    }
    if (!ok) {
      out.resize(mark);
      if (unk != kNoToken) out.push_back(unk);
    }
  }
}

}  // namespace vkllm::tok
