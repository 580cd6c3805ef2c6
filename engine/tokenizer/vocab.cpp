// The vocabulary: validation of VocabData and the lookup indexes (text, merges, bytes,
// specials). Knows nothing of GGUF (vocab_gguf.cpp) or of the tokenization algorithms.
#include "engine/tokenizer/vocab.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "common/error.hpp"

namespace vkllm::tok {
namespace {

uint64_t pair_key(TokenId a, TokenId b) noexcept {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

}  // namespace

Vocab::Vocab(VocabData data) : data_(std::move(data)) {
  const size_t n = data_.tokens.size();
  const std::string& src = data_.source;
  if (n == 0) throw InvalidModel(fmt::format("{}: tokenizer.ggml.tokens is empty", src));
  if (n > size_t(INT32_MAX)) {
    throw InvalidModel(fmt::format("{}: tokenizer.ggml.tokens has {} entries", src, n));
  }
  if (!data_.scores.empty() && data_.scores.size() != n) {
    throw InvalidModel(fmt::format("{}: tokenizer.ggml.scores has {} entries for {} tokens", src,
                                   data_.scores.size(), n));
  }
  if (!data_.types.empty() && data_.types.size() != n) {
    throw InvalidModel(fmt::format("{}: tokenizer.ggml.token_type has {} entries for {} tokens",
                                   src, data_.types.size(), n));
  }
  for (size_t i = 0; i < data_.types.size(); ++i) {
    const auto t = static_cast<int32_t>(data_.types[i]);
    if (t < 0 || t > static_cast<int32_t>(TokenType::kByte)) {
      throw InvalidModel(
          fmt::format("{}: tokenizer.ggml.token_type[{}] = {} is not a token type", src, i, t));
    }
  }
  const std::pair<const char*, TokenId*> ids[] = {
      {"bos_token_id", &data_.bos},      {"eos_token_id", &data_.eos},
      {"unknown_token_id", &data_.unk},  {"seperator_token_id", &data_.sep},
      {"padding_token_id", &data_.pad},  {"cls_token_id", &data_.cls},
      {"mask_token_id", &data_.mask},    {"eot_token_id", &data_.eot},
      {"eom_token_id", &data_.eom},
  };
  for (const auto& [key, id] : ids) {
    if (*id != kNoToken && !valid(*id)) {
      throw InvalidModel(fmt::format("{}: tokenizer.ggml.{} = {} is outside the {} tokens", src,
                                     key, *id, n));
    }
  }

  // Text index. A duplicate text keeps its last id, as llama.cpp does.
  by_text_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    by_text_.insert_or_assign(data_.tokens[i], static_cast<TokenId>(i));
    max_token_bytes_ = std::max(max_token_bytes_, data_.tokens[i].size());
  }

  // Byte fallback tokens (SentencePiece <0xXX>), else the token whose text is the byte.
  byte_tokens_.assign(256, kNoToken);
  for (int b = 0; b < 256; ++b) {
    TokenId id = find(fmt::format("<0x{:02X}>", b));
    if (id == kNoToken) id = find(std::string(1, static_cast<char>(b)));
    byte_tokens_[size_t(b)] = id;
  }

  // Merge ranks. A merge whose parts or result are not tokens cannot fire in an id-based
  // merge loop; it is dropped rather than rejected, since converters emit a few of them.
  if (data_.kind == VocabKind::kBpe) {
    merges_.reserve(data_.merges.size());
    std::string joined;
    for (size_t r = 0; r < data_.merges.size(); ++r) {
      const std::string& m = data_.merges[r];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= m.size()) {
        throw InvalidModel(fmt::format("{}: tokenizer.ggml.merges[{}] = \"{}\" is not \"a b\"",
                                       src, r, m));
      }
      const std::string_view left(m.data(), sp);
      const std::string_view right(m.data() + sp + 1, m.size() - sp - 1);
      joined.assign(left);
      joined.append(right);
      const TokenId a = find(left), b = find(right), c = find(joined);
      if (a == kNoToken || b == kNoToken || c == kNoToken) continue;
      merges_.try_emplace(pair_key(a, b), Merge{static_cast<int32_t>(r), c});
    }
  }

  // End of generation (is_eog): the named ids, and the end-of-turn markers by their text.
  for (TokenId id : {data_.eos, data_.eot, data_.eom}) {
    if (id != kNoToken) eog_.push_back(id);
  }
  static constexpr std::string_view kTurnEnds[] = {
      "<|eot_id|>", "<|im_end|>",  "<|end|>",    "<end_of_turn>",     "<|endoftext|>",
      "<|eom_id|>", "<EOT>",       "<|return|>", "<|end_of_text|>",   "<end_of_utterance>",
      "<｜end▁of▁sentence｜>"};  // the last: DeepSeek's
  const bool harmony = find("<|return|>") != kNoToken;
  for (std::string_view text : kTurnEnds) {
    if (harmony && text == "<|end|>") continue;
    const TokenId id = find(text);
    if (id == kNoToken) continue;
    const TokenType t = type(id);
    if (t == TokenType::kControl || t == TokenType::kUserDefined) eog_.push_back(id);
  }
  std::sort(eog_.begin(), eog_.end());
  eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());

  // Special tokens for raw-text matching, bucketed by first byte, longest first.
  special_by_byte_.assign(256, {});
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = type(static_cast<TokenId>(i));
    if (t != TokenType::kControl && t != TokenType::kUserDefined && t != TokenType::kUnknown) {
      continue;
    }
    if (data_.tokens[i].empty()) continue;
    special_by_byte_[static_cast<uint8_t>(data_.tokens[i][0])].push_back(static_cast<TokenId>(i));
  }
  for (auto& bucket : special_by_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [this](TokenId a, TokenId b) {
      return text(a).size() > text(b).size();
    });
  }
}

TokenId Vocab::find(std::string_view text) const noexcept {
  const auto it = by_text_.find(text);
  return it == by_text_.end() ? kNoToken : it->second;
}

std::optional<Vocab::Merge> Vocab::merge(TokenId left, TokenId right) const noexcept {
  const auto it = merges_.find(pair_key(left, right));
  if (it == merges_.end()) return std::nullopt;
  return it->second;
}

bool Vocab::is_eog(TokenId id) const noexcept {
  return id != kNoToken && std::binary_search(eog_.begin(), eog_.end(), id);
}

}  // namespace vkllm::tok
