// libFuzzer target: the GGUF reader on arbitrary bytes, then every accessor on what parses and
// the tokenizer's vocabulary reader on it. Either it parses or it throws vkllm::Error; any other
// exception, crash or sanitizer report is a finding (docs/ARCHITECTURE.md "Tests").
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/tokenizer/tokenizer.hpp"
#include "tests/support/gguf_fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto r = vkllm::gguf::Reader::from_bytes(std::vector<std::uint8_t>(data, data + size),
                                                   "fuzz.gguf");
    (void)vkllm::test::touch(r);
    if (r.contains("tokenizer.ggml.model")) {
      const auto t = vkllm::tok::Tokenizer::from_gguf(r);
      (void)t.encode("Hello, world! 123");
    }
  } catch (const vkllm::Error&) {
  }
  return 0;
}
