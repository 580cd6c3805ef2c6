// The tokenizer API: text <-> ids (SentencePiece, byte-level BPE, WordPiece), specials, BOS/EOS,
// prompt-length checks, UTF-8-safe streaming decode. Knows nothing of models, templates, devices.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/pretokenizer.hpp"
#include "engine/tokenizer/vocab.hpp"

namespace vkllm::gguf {
class Reader;
}

namespace vkllm::tok {

struct EncodeOptions {
  // Add BOS / EOS (for WordPiece [CLS] / [SEP]) as the vocabulary's add_*_token flags ask.
  bool add_special = true;
  // Recognise CONTROL (and UNKNOWN) tokens' text, e.g. "<|eot_id|>", in the input. Off for
  // user-supplied text so that a user cannot forge control tokens. USER_DEFINED tokens are
  // always recognised (Hugging Face's non-special added tokens behave so).
  bool parse_special = false;
};

struct DecodeOptions {
  // Render CONTROL, UNKNOWN and UNUSED tokens as their text ("<|eot_id|>"); otherwise they
  // vanish.
  bool show_special = false;
  // SentencePiece (with a dummy prefix) and WordPiece: drop the one space that the first
  // word-start piece carries when nothing was output before it.
  bool strip_leading_space = true;
};

class Tokenizer {
 public:
  // Builds the indexes and compiles the pre-tokenizer. Throws InvalidModel for malformed
  // data, Unsupported for an unknown `pre` of a byte-level BPE vocabulary.
  explicit Tokenizer(VocabData data);
  // read_vocab_data + the constructor.
  static Tokenizer from_gguf(const gguf::Reader& reader);

  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;

  // Text -> ids. Never truncates. Thread-safe (const, no shared mutable state).
  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // encode(), then throws InvalidRequest naming both lengths when the result is longer than
  // `max_context` tokens.
  std::vector<TokenId> encode_prompt(std::string_view text, size_t max_context,
                                     const EncodeOptions& options = {}) const;

  // Ids -> bytes, concatenated. Byte tokens can make the result ill-formed UTF-8 when the
  // ids end inside a character; StreamDecoder never emits such text. Throws InvalidRequest
  // for an id outside the vocabulary.
  std::string decode(std::span<const TokenId> ids, const DecodeOptions& options = {}) const;
  // The bytes of one token ("" for a hidden special token). Throws InvalidRequest for an id
  // outside the vocabulary.
  std::string_view token_to_piece(TokenId id, bool show_special = false) const;
  // The leading-space rule of decoding: the first token that is text (not a hidden type,
  // non-empty) loses one leading space when it is a word-start piece of a vocabulary that
  // adds one (SentencePiece with dummy prefix, WordPiece). Special tokens before it, shown
  // or not, do not count as text.
  bool starts_text(TokenId id) const noexcept;
  bool strips_leading_space(TokenId id) const noexcept;

  const Vocab& vocab() const noexcept { return vocab_; }
  VocabKind kind() const noexcept { return vocab_.kind(); }
  size_t n_tokens() const noexcept { return vocab_.size(); }
  TokenId bos() const noexcept { return vocab_.data().bos; }
  TokenId eos() const noexcept { return vocab_.data().eos; }
  // End of generation: EOS, EOT, EOM and the end-of-turn markers (Vocab::is_eog).
  bool is_eog(TokenId id) const noexcept { return vocab_.is_eog(id); }

 private:
  // Calls on_text(fragment) for raw text and on_token(id) for special tokens, in text order.
  template <class OnText, class OnToken>
  void partition(std::string_view text, bool parse_special, OnText&& on_text,
                 OnToken&& on_token) const;
  void check_id(TokenId id) const;

  Vocab vocab_;
  std::optional<PreTokenizer> pre_;  // byte-level BPE only
  std::vector<std::string> pieces_;  // decoded bytes of every token (specials: their text)
  bool leading_space_ = false;       // SPM with dummy prefix, or WPM
};

// Throws InvalidRequest("prompt is N tokens, longer than the model context of M tokens")
// when n_tokens > max_context.
void check_prompt_fits(size_t n_tokens, size_t max_context);

// Incremental detokenizer for generated tokens: push() returns only complete UTF-8 text and
// holds back a trailing incomplete sequence until the bytes that finish it arrive; bytes
// that can never become valid are replaced by U+FFFD. Every returned chunk is valid UTF-8.
// One instance per stream; it refers to the Tokenizer, which must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});

  // The text that became complete with this token (possibly empty).
  std::string push(TokenId id);
  // End of stream: whatever is still held back, ill-formed bytes as U+FFFD.
  std::string finish();
  // Bytes currently held back.
  size_t pending_bytes() const noexcept { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  DecodeOptions options_;
  std::string pending_;
  bool started_ = false;  // a text token was seen (the leading-space rule is spent)
};

}  // namespace vkllm::tok
