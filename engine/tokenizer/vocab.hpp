// The vocabulary: token texts, scores, types, merge ranks, special ids and flags, validated and
// indexed for lookup. Knows nothing of how text is split or merged (that is the tokenizers').
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vkllm::gguf {
class Reader;
}

namespace vkllm::tok {

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// `tokenizer.ggml.model`: "llama" (SentencePiece BPE with scores), "gpt2" (byte-level BPE),
// "bert" (WordPiece).
enum class VocabKind { kSpm, kBpe, kWpm };

// Everything the tokenizers need, as plain data: what GGUF's tokenizer.ggml.* keys hold, with
// llama.cpp's defaults filled in for absent keys. Built by read_vocab_data() or by hand (tests).
struct VocabData {
  std::string source = "<memory>";  // file name, for error messages
  VocabKind kind = VocabKind::kSpm;
  std::string pre = "default";      // tokenizer.ggml.pre
  std::vector<std::string> tokens;
  std::vector<float> scores;        // empty: all 0
  std::vector<TokenType> types;     // empty: all normal
  std::vector<std::string> merges;  // "left right", rank = index (BPE only)
  TokenId bos = kNoToken;
  TokenId eos = kNoToken;
  TokenId unk = kNoToken;
  TokenId sep = kNoToken;
  TokenId pad = kNoToken;
  TokenId cls = kNoToken;
  TokenId mask = kNoToken;
  TokenId eot = kNoToken;
  TokenId eom = kNoToken;
  bool add_bos = false;
  bool add_eos = false;
  bool add_sep = false;           // WordPiece appends [SEP]
  bool add_space_prefix = false;  // SentencePiece dummy prefix
};

// Reads tokenizer.ggml.* from a GGUF file. Throws InvalidModel naming the file and key for a
// missing or malformed key, Unsupported for a tokenizer model this build does not implement.
VocabData read_vocab_data(const gguf::Reader& reader);

// Hashing for heterogeneous (string_view) lookup in the text -> id map.
struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// A validated, indexed vocabulary. Immutable after construction; safe to share across threads.
class Vocab {
 public:
  // Validates `data` (sizes agree, ids in range, merges well-formed) and builds the indexes.
  // Throws InvalidModel naming data.source and the field at fault.
  explicit Vocab(VocabData data);

  VocabKind kind() const noexcept { return data_.kind; }
  const VocabData& data() const noexcept { return data_; }
  size_t size() const noexcept { return data_.tokens.size(); }
  bool valid(TokenId id) const noexcept { return id >= 0 && size_t(id) < size(); }

  const std::string& text(TokenId id) const { return data_.tokens[size_t(id)]; }
  float score(TokenId id) const { return data_.scores.empty() ? 0.0f : data_.scores[size_t(id)]; }
  TokenType type(TokenId id) const {
    return data_.types.empty() ? TokenType::kNormal : data_.types[size_t(id)];
  }
  // The id whose text is exactly `text`, or kNoToken.
  TokenId find(std::string_view text) const noexcept;
  // Longest token text in bytes (bounds every lookup loop).
  size_t max_token_bytes() const noexcept { return max_token_bytes_; }

  // SentencePiece byte fallback: the <0xXX> token for a byte (or the token whose text is the
  // byte itself); kNoToken when the vocabulary has neither.
  TokenId byte_token(uint8_t byte) const noexcept { return byte_tokens_[byte]; }

  // BPE: rank of merging `left` and `right` and the id of the result; nullopt when the
  // pair is not a merge of this vocabulary.
  struct Merge {
    int32_t rank;
    TokenId result;
  };
  std::optional<Merge> merge(TokenId left, TokenId right) const noexcept;

  // Tokens matched in raw text before pre-tokenization (CONTROL, USER_DEFINED, UNKNOWN with
  // non-empty text), longest first within each first byte.
  std::span<const TokenId> specials_starting_with(uint8_t byte) const noexcept {
    return special_by_byte_[byte];
  }
  // End of generation: eos, eot, eom, and the end-of-turn markers of chat vocabularies that the
  // file does not name (llama.cpp finds them by their text too: Gemma's <end_of_turn>, Phi-3's
  // <|end|>, ChatML's <|im_end|>, ...), among control and user-defined tokens. Harmony
  // vocabularies (gpt-oss: <|return|>) keep <|end|>, which closes a channel, not the turn.
  bool is_eog(TokenId id) const noexcept;
  std::span<const TokenId> eog_ids() const noexcept { return eog_; }

 private:
  VocabData data_;
  std::unordered_map<std::string, TokenId, TextHash, std::equal_to<>> by_text_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<TokenId> byte_tokens_;
  std::vector<std::vector<TokenId>> special_by_byte_;
  std::vector<TokenId> eog_;  // sorted
  size_t max_token_bytes_ = 0;
};

}  // namespace vkllm::tok
