// Reads a vocabulary's tokenizer.ggml.* metadata out of a GGUF file into VocabData.
// Knows the GGUF key names and llama.cpp's defaults; nothing of tokenization itself.
#include <fmt/format.h>

#include <limits>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/tokenizer/vocab.hpp"

namespace vkllm::tok {
namespace {

constexpr std::string_view kPrefix = "tokenizer.ggml.";

std::string key(std::string_view name) { return std::string(kPrefix) + std::string(name); }

// An optional token id key. Negative values mean "none" (some converters write -1), and so
// does 0xFFFFFFFF: -1 stored as u32, as in llama2.c-converted files such as stories260K
// (tokenizer.ggml.seperator_token_id). Other values beyond int32 are malformed. Range against
// the vocabulary is checked by Vocab.
void read_id(const gguf::Reader& r, std::string_view name, TokenId& out) {
  const std::optional<int64_t> v = r.find_i64(key(name));
  if (!v) return;
  if (*v < 0 || *v == std::numeric_limits<uint32_t>::max()) {
    out = kNoToken;
    return;
  }
  if (*v > std::numeric_limits<int32_t>::max()) {
    throw InvalidModel(fmt::format("{}: {} = {} is not a token id", r.name(), key(name), *v));
  }
  out = static_cast<TokenId>(*v);
}

}  // namespace

VocabData read_vocab_data(const gguf::Reader& r) {
  VocabData d;
  d.source = r.name();
  const std::string model = r.get_string(key("model"));
  if (model == "llama") {
    d.kind = VocabKind::kSpm;
    // llama.cpp's defaults for SentencePiece vocabularies without the keys.
    d.bos = 1;
    d.eos = 2;
    d.unk = 0;
    d.add_bos = true;
    d.add_space_prefix = true;
  } else if (model == "gpt2") {
    d.kind = VocabKind::kBpe;
  } else if (model == "bert") {
    d.kind = VocabKind::kWpm;
    // BERT's conventional ids ([UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, [PAD] 0).
    d.unk = 100;
    d.cls = 101;
    d.sep = 102;
    d.mask = 103;
    d.pad = 0;
    d.add_bos = true;
    d.add_sep = true;
  } else {
    throw Unsupported(fmt::format("{}: {} = \"{}\" is not supported (llama, gpt2, bert are)",
                                  r.name(), key("model"), model));
  }
  d.pre = r.find_string(key("pre")).value_or("default");

  const auto tokens = r.get_string_array(key("tokens"));
  d.tokens.assign(tokens.begin(), tokens.end());
  if (const auto scores = r.find_f32_array(key("scores"))) {
    d.scores.assign(scores->begin(), scores->end());
  }
  if (const auto types = r.find_int_array(key("token_type"))) {
    d.types.reserve(types->size());
    for (size_t i = 0; i < types->size(); ++i) {
      const int64_t t = (*types)[i];
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        throw InvalidModel(fmt::format("{}: {}[{}] = {} is not a token type", r.name(),
                                       key("token_type"), i, t));
      }
      d.types.push_back(static_cast<TokenType>(t));
    }
  }
  if (d.kind == VocabKind::kBpe) {
    const auto merges = r.find_string_array(key("merges"));
    if (!merges) {
      throw InvalidModel(fmt::format("{}: {} is missing (required for a gpt2 vocabulary)",
                                     r.name(), key("merges")));
    }
    d.merges.assign(merges->begin(), merges->end());
  }

  read_id(r, "bos_token_id", d.bos);
  read_id(r, "eos_token_id", d.eos);
  read_id(r, "unknown_token_id", d.unk);
  read_id(r, "seperator_token_id", d.sep);  // sic: the key is spelled this way in GGUF
  read_id(r, "padding_token_id", d.pad);
  read_id(r, "cls_token_id", d.cls);
  read_id(r, "mask_token_id", d.mask);
  read_id(r, "eot_token_id", d.eot);
  read_id(r, "eom_token_id", d.eom);
  if (d.kind == VocabKind::kWpm && d.cls != kNoToken && d.bos == kNoToken) d.bos = d.cls;

  d.add_bos = r.find_bool(key("add_bos_token")).value_or(d.add_bos);
  d.add_eos = r.find_bool(key("add_eos_token")).value_or(d.add_eos);
  d.add_sep = r.find_bool(key("add_sep_token")).value_or(d.add_sep);
  d.add_space_prefix = r.find_bool(key("add_space_prefix")).value_or(d.add_space_prefix);
  return d;
}

}  // namespace vkllm::tok
