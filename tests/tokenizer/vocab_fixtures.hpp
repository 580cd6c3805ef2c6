// Test helpers: llama.cpp test-vector files, and GGUF vocab fixtures built at test time from
// original tokenizer files (tiktoken ranks, Hugging Face vocab.json + merges.txt).
// Knows nothing of the tokenizer's internals: it produces GGUF bytes a Reader can open.
#pragma once

#include <boost/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/gguf/writer.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "engine/tokenizer/unicode.hpp"
#include "engine/tokenizer/vocab.hpp"

namespace vkllm::test {

inline std::string read_text_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One test vector: an input string and the ids Hugging Face's tokenizer gives it.
struct TokenVector {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's test-tokenizer-0 format: X.inp holds the inputs, each followed by the line
// "\n__ggml_vocab_test__\n"; X.out holds one line per input with space-separated ids.
inline std::vector<TokenVector> read_token_vectors(const std::filesystem::path& inp,
                                                   const std::filesystem::path& out) {
  constexpr std::string_view kSep = "\n__ggml_vocab_test__\n";
  const std::string in_text = read_text_file(inp);
  std::vector<TokenVector> vectors;
  for (size_t pos = 0; pos < in_text.size();) {
    const size_t hit = in_text.find(kSep, pos);
    if (hit == std::string::npos) break;  // the file ends with the separator
    vectors.push_back({in_text.substr(pos, hit - pos), {}});
    pos = hit + kSep.size();
  }
  std::istringstream lines(read_text_file(out));
  std::string line;
  for (TokenVector& v : vectors) {
    if (!std::getline(lines, line)) throw std::runtime_error(out.string() + ": too few lines");
    std::istringstream ids(line);
    for (int64_t id; ids >> id;) v.ids.push_back(static_cast<int32_t>(id));
  }
  return vectors;
}

inline std::string base64_decode(std::string_view s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = val(c);
    if (v < 0) continue;  // '=' padding
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// A special token appended after the ranked/regular tokens.
struct SpecialToken {
  int32_t id;
  std::string text;
};

// Writes tokenizer.ggml.* the way llama.cpp's converter does for a byte-level BPE model.
inline std::vector<uint8_t> write_bpe_gguf(std::string pre, std::vector<std::string> tokens,
                                           std::vector<std::string> merges,
                                           const std::vector<SpecialToken>& specials,
                                           int32_t bos, int32_t eos, bool add_bos) {
  std::vector<int32_t> types(tokens.size(), static_cast<int32_t>(tok::TokenType::kNormal));
  for (const SpecialToken& s : specials) {
    if (size_t(s.id) >= tokens.size()) {
      tokens.resize(size_t(s.id) + 1);
      types.resize(size_t(s.id) + 1, static_cast<int32_t>(tok::TokenType::kNormal));
    }
    tokens[size_t(s.id)] = s.text;
    types[size_t(s.id)] = static_cast<int32_t>(tok::TokenType::kControl);
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) {  // holes in the id space: llama.cpp's converter writes [PADn]
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      types[i] = static_cast<int32_t>(tok::TokenType::kUnused);
    }
  }
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", std::move(pre));
  w.set("tokenizer.ggml.tokens", gguf::Value::string_array(std::move(tokens)));
  w.set("tokenizer.ggml.token_type", gguf::Value::i32_array(std::move(types)));
  w.set("tokenizer.ggml.merges", gguf::Value::string_array(std::move(merges)));
  if (bos >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(bos));
  if (eos >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(eos));
  w.set_bool("tokenizer.ggml.add_bos_token", add_bos);
  return w.to_bytes();
}

// A tiktoken ranks file ("base64(bytes) rank" per line, rank = id) as a GGUF vocabulary.
// Token text is the bytes in GPT-2's byte alphabet. tiktoken has no merge list: as Hugging
// Face's TikTokenConverter does, every split of a token into two tokens becomes a merge,
// ordered by the rank of the token it forms (then by the ranks of its halves), which makes
// rank-ordered pair merging reproduce tiktoken's "lowest-rank pair first".
inline std::vector<uint8_t> tiktoken_to_gguf(const std::filesystem::path& ranks_file,
                                             std::string pre,
                                             const std::vector<SpecialToken>& specials,
                                             int32_t bos, int32_t eos) {
  std::unordered_map<std::string, int32_t> ranks;
  std::vector<std::string> raw;
  std::istringstream lines(read_text_file(ranks_file));
  std::string line;
  while (std::getline(lines, line)) {
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const int32_t rank = std::stoi(line.substr(sp + 1));
    std::string bytes = base64_decode(std::string_view(line).substr(0, sp));
    if (size_t(rank) >= raw.size()) raw.resize(size_t(rank) + 1);
    raw[size_t(rank)] = bytes;
    ranks.emplace(std::move(bytes), rank);
  }
  struct M {
    int32_t rank, left, right;
    int32_t l_id, r_id;
  };
  std::vector<M> ms;
  for (size_t id = 0; id < raw.size(); ++id) {
    const std::string& t = raw[id];
    for (size_t k = 1; k < t.size(); ++k) {
      const auto l = ranks.find(t.substr(0, k));
      const auto r = ranks.find(t.substr(k));
      if (l != ranks.end() && r != ranks.end()) {
        ms.push_back({int32_t(id), l->second, r->second, l->second, r->second});
      }
    }
  }
  std::stable_sort(ms.begin(), ms.end(), [](const M& a, const M& b) {
    return std::tie(a.rank, a.left, a.right) < std::tie(b.rank, b.left, b.right);
  });
  std::vector<std::string> tokens(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) tokens[i] = tok::bytes_to_unicode_text(raw[i]);
  std::vector<std::string> merges;
  merges.reserve(ms.size());
  for (const M& m : ms) merges.push_back(tokens[size_t(m.l_id)] + " " + tokens[size_t(m.r_id)]);
  return write_bpe_gguf(std::move(pre), std::move(tokens), std::move(merges), specials, bos, eos,
                        bos >= 0);
}

// Hugging Face vocab.json (text -> id, GPT-2 alphabet) + merges.txt ("#version" header, then
// "a b" per line in priority order) as a GGUF vocabulary.
inline std::vector<uint8_t> hf_bpe_to_gguf(const std::filesystem::path& vocab_json,
                                           const std::filesystem::path& merges_txt,
                                           std::string pre,
                                           const std::vector<SpecialToken>& specials,
                                           int32_t bos, int32_t eos) {
  const boost::json::value doc = boost::json::parse(read_text_file(vocab_json));
  std::vector<std::string> tokens;
  for (const auto& kv : doc.as_object()) {
    const auto id = static_cast<size_t>(kv.value().to_number<int64_t>());
    if (id >= tokens.size()) tokens.resize(id + 1);
    tokens[id] = std::string(kv.key());
  }
  std::vector<std::string> merges;
  std::istringstream lines(read_text_file(merges_txt));
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(line);
  }
  return write_bpe_gguf(std::move(pre), std::move(tokens), std::move(merges), specials, bos, eos,
                        bos >= 0);
}

// Llama 3's special tokens (ids 128000-128255), as listed by meta-llama/llama-models'
// models/llama3/tokenizer.py.
inline std::vector<SpecialToken> llama3_specials() {
  const char* named[] = {"<|begin_of_text|>", "<|end_of_text|>",
                         "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                         "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>",
                         "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
                         "<|image|>"};
  std::vector<SpecialToken> s;
  int32_t id = 128000;
  for (const char* n : named) s.push_back({id++, n});
  for (int i = 2; id < 128256; ++i) {
    s.push_back({id++, "<|reserved_special_token_" + std::to_string(i) + "|>"});
  }
  return s;
}

// Qwen2's special tokens (its added_tokens.json).
inline std::vector<SpecialToken> qwen2_specials() {
  return {{151643, "<|endoftext|>"}, {151644, "<|im_start|>"}, {151645, "<|im_end|>"}};
}

// Qwen2's tokenizer from its original files in `vocab_dir`/qwen2 (vocab.json, merges.txt), with
// the pre-tokenizer `pre` (DeepSeek-R1's Qwen distills share the vocabulary with their own).
inline tok::Tokenizer qwen2_tokenizer(const std::filesystem::path& vocab_dir, const std::string& pre = "qwen2") {
  auto bytes = hf_bpe_to_gguf(vocab_dir / "qwen2" / "vocab.json", vocab_dir / "qwen2" / "merges.txt", pre,
                              qwen2_specials(), -1, 151645);
  return tok::Tokenizer::from_gguf(gguf::Reader::from_bytes(std::move(bytes), "qwen2-fixture.gguf"));
}

}  // namespace vkllm::test
