// The tokenizer: special-token partitioning, per-kind dispatch, BOS/EOS, pieces and decoding.
// Knows nothing of models, chat templates or requests beyond the prompt-length check.
#include "engine/tokenizer/tokenizer.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "engine/tokenizer/models.hpp"
#include "engine/tokenizer/unicode.hpp"

namespace vkllm::tok {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0;;) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) {
      out.append(s.substr(pos));
      return out;
    }
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
}

// "<0x41>" -> 0x41; -1 when the text is not a byte token's.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (char c : t.substr(3, 2)) {
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

// Types whose text is matched in raw input only with parse_special.
bool is_special_type(TokenType t) noexcept {
  return t == TokenType::kControl || t == TokenType::kUnknown;
}

// Types decoded to "" unless show_special: the specials, and UNUSED placeholders ([PAD123]),
// which llama.cpp also suppresses.
bool is_hidden_type(TokenType t) noexcept {
  return is_special_type(t) || t == TokenType::kUnused;
}

}  // namespace

Tokenizer::Tokenizer(VocabData data) : vocab_(std::move(data)) {
  const VocabData& d = vocab_.data();
  if (d.kind == VocabKind::kBpe) {
    const PreTokenizerSpec* spec = find_pre_tokenizer(d.pre);
    if (spec == nullptr) {
      throw Unsupported(fmt::format("{}: tokenizer.ggml.pre = \"{}\" is not a known pre-tokenizer"
                                    " (known: {})",
                                    d.source, d.pre, known_pre_tokenizers()));
    }
    pre_.emplace(*spec);
  }
  leading_space_ = d.kind == VocabKind::kWpm || (d.kind == VocabKind::kSpm && d.add_space_prefix);

  // Every token's bytes, computed once: decoding is then a lookup per id.
  pieces_.resize(vocab_.size());
  for (size_t i = 0; i < vocab_.size(); ++i) {
    const auto id = static_cast<TokenId>(i);
    const std::string& text = vocab_.text(id);
    const TokenType type = vocab_.type(id);
    std::string& piece = pieces_[i];
    if (type == TokenType::kControl || type == TokenType::kUnknown ||
        type == TokenType::kUserDefined || type == TokenType::kUnused) {
      piece = text;  // shown as written (CONTROL/UNKNOWN only on request)
    } else if (type == TokenType::kByte) {
      const int b = parse_byte_token(text);
      piece = b >= 0 ? std::string(1, static_cast<char>(b)) : text;
    } else if (d.kind == VocabKind::kBpe) {
      if (!unicode_text_to_bytes(text, piece)) piece = text;
    } else {
      piece = replace_all(text, kSpmSpace, " ");
    }
  }
}

Tokenizer Tokenizer::from_gguf(const gguf::Reader& reader) {
  return Tokenizer(read_vocab_data(reader));
}

template <class OnText, class OnToken>
void Tokenizer::partition(std::string_view text, bool parse_special, OnText&& on_text,
                          OnToken&& on_token) const {
  size_t raw_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    TokenId match = kNoToken;
    // Leftmost-longest: buckets are sorted longest first.
    for (TokenId id : vocab_.specials_starting_with(static_cast<uint8_t>(text[pos]))) {
      if (!parse_special && is_special_type(vocab_.type(id))) continue;
      const std::string& t = vocab_.text(id);
      if (text.compare(pos, t.size(), t) == 0) {
        match = id;
        break;
      }
    }
    if (match == kNoToken) {
      ++pos;
      continue;
    }
    if (pos > raw_start) on_text(text.substr(raw_start, pos - raw_start));
    on_token(match);
    pos += vocab_.text(match).size();
    raw_start = pos;
  }
  if (raw_start < text.size()) on_text(text.substr(raw_start));
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  const VocabData& d = vocab_.data();
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (options.add_special && d.add_bos && d.bos != kNoToken) out.push_back(d.bos);

  bool prev_special = true;  // SentencePiece adds its dummy prefix after a special token too
  const auto on_token = [&](TokenId id) {
    out.push_back(id);
    prev_special = true;
  };
  const auto on_text = [&](std::string_view raw) {
    switch (d.kind) {
      case VocabKind::kSpm: {
        std::string s;
        if (d.add_space_prefix && prev_special) s.push_back(' ');
        s.append(raw);
        encode_spm(vocab_, replace_all(s, " ", kSpmSpace), out);
        break;
      }
      case VocabKind::kBpe: encode_bpe(vocab_, *pre_, raw, out); break;
      case VocabKind::kWpm: encode_wpm(vocab_, raw, out); break;
    }
    prev_special = false;
  };
  partition(text, options.parse_special, on_text, on_token);

  if (options.add_special) {
    if (d.kind == VocabKind::kWpm && d.add_sep && d.sep != kNoToken) out.push_back(d.sep);
    if (d.add_eos && d.eos != kNoToken) out.push_back(d.eos);
  }
  return out;
}

void check_prompt_fits(size_t n_tokens, size_t max_context) {
  if (n_tokens > max_context) {
    throw InvalidRequest(fmt::format(
        "prompt is {} tokens, longer than the model context of {} tokens", n_tokens, max_context));
  }
}

std::vector<TokenId> Tokenizer::encode_prompt(std::string_view text, size_t max_context,
                                              const EncodeOptions& options) const {
  std::vector<TokenId> ids = encode(text, options);
  check_prompt_fits(ids.size(), max_context);
  return ids;
}

void Tokenizer::check_id(TokenId id) const {
  if (!vocab_.valid(id)) {
    throw InvalidRequest(
        fmt::format("token id {} is outside the vocabulary of {} tokens", id, vocab_.size()));
  }
}

std::string_view Tokenizer::token_to_piece(TokenId id, bool show_special) const {
  check_id(id);
  if (!show_special && is_hidden_type(vocab_.type(id))) return {};
  return pieces_[size_t(id)];
}

bool Tokenizer::starts_text(TokenId id) const noexcept {
  return vocab_.valid(id) && !is_hidden_type(vocab_.type(id)) && !pieces_[size_t(id)].empty();
}

bool Tokenizer::strips_leading_space(TokenId id) const noexcept {
  if (!leading_space_ || !vocab_.valid(id)) return false;
  const TokenType t = vocab_.type(id);
  return t == TokenType::kNormal && !pieces_[size_t(id)].empty() && pieces_[size_t(id)][0] == ' ';
}

std::string Tokenizer::decode(std::span<const TokenId> ids, const DecodeOptions& options) const {
  std::string out;
  bool started = false;
  for (TokenId id : ids) {
    std::string_view piece = token_to_piece(id, options.show_special);
    if (!started && starts_text(id)) {
      if (options.strip_leading_space && strips_leading_space(id)) piece.remove_prefix(1);
      started = true;
    }
    out.append(piece);
  }
  return out;
}

// ---- StreamDecoder ----

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(&tokenizer), options_(options) {}

std::string StreamDecoder::push(TokenId id) {
  std::string_view piece = tokenizer_->token_to_piece(id, options_.show_special);
  if (!started_ && tokenizer_->starts_text(id)) {
    if (options_.strip_leading_space && tokenizer_->strips_leading_space(id)) {
      piece.remove_prefix(1);
    }
    started_ = true;
  }
  pending_.append(piece);
  const size_t n = utf8_complete_prefix(pending_);
  if (n == 0) return {};
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace vkllm::tok
