// libFuzzer target: the tokenizers on arbitrary input. The vocabularies (SentencePiece, byte-level
// BPE, WordPiece) are real ones read from $VKLLM_FUZZ_VOCAB_DIR (scripts/fuzz.sh points it at
// ../shared/vocab). The first byte picks the vocabulary and what to do: encode the rest as text
// (with and without special-token parsing), decode it as token ids (some past the vocabulary,
// which must be refused with vkllm::Error), or feed those ids to the streaming decoder.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/tokenizer/tokenizer.hpp"

namespace {

std::vector<std::unique_ptr<vkllm::tok::Tokenizer>> g_tokenizers;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("VKLLM_FUZZ_VOCAB_DIR");
  if (!dir) {
    std::fprintf(stderr, "fuzz_tokenizer: set VKLLM_FUZZ_VOCAB_DIR to ../shared/vocab\n");
    std::exit(2);
  }
  // SentencePiece (llama, phi-3), byte-level BPE with two pre-tokenizers (gpt-2,
  // deepseek-coder), WordPiece (bert-bge).
  for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf",
                           "ggml-vocab-gpt-2.gguf", "ggml-vocab-deepseek-coder.gguf",
                           "ggml-vocab-bert-bge.gguf"}) {
    const std::filesystem::path p = std::filesystem::path(dir) / name;
    if (!std::filesystem::exists(p)) continue;
    const auto r = vkllm::gguf::Reader::open(p);
    g_tokenizers.push_back(
        std::make_unique<vkllm::tok::Tokenizer>(vkllm::tok::Tokenizer::from_gguf(r)));
  }
  if (g_tokenizers.empty()) {
    std::fprintf(stderr, "fuzz_tokenizer: no vocabulary found in %s\n", dir);
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& t = *g_tokenizers[data[0] % g_tokenizers.size()];
  const int mode = (data[0] / g_tokenizers.size()) % 4;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (mode <= 1) {
      vkllm::tok::EncodeOptions o;
      o.parse_special = mode == 1;
      const auto ids = t.encode(rest, o);
      (void)t.decode(ids);
      return 0;
    }
    // Ids from the bytes, 3 bytes each: most inside the vocabulary, some past it.
    std::vector<vkllm::tok::TokenId> ids;
    for (std::size_t i = 0; i + 3 <= rest.size(); i += 3) {
      const std::uint32_t v = std::uint8_t(rest[i]) | std::uint32_t(std::uint8_t(rest[i + 1])) << 8 |
                              std::uint32_t(std::uint8_t(rest[i + 2])) << 16;
      ids.push_back(static_cast<vkllm::tok::TokenId>(v % (t.n_tokens() + 8)));
    }
    if (mode == 2) {
      vkllm::tok::DecodeOptions o;
      o.show_special = rest.size() % 2 == 0;
      (void)t.decode(ids, o);
    } else {
      vkllm::tok::StreamDecoder d(t);
      for (const auto id : ids) (void)d.push(id);
      (void)d.finish();
    }
  } catch (const vkllm::Error&) {
  }
  return 0;
}
