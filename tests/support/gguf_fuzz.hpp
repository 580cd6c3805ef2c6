// The GGUF reader's fuzz helpers, shared by tests/gguf/test_fuzz.cpp (mutations in the test
// suite) and fuzz/fuzz_gguf.cpp (libFuzzer): a small valid file of every kind of value and a
// few tensor types, and a parse that touches everything a consumer could.
#pragma once

#include <cstdint>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/gguf/writer.hpp"

namespace vkllm::test {

using namespace vkllm::gguf;

inline std::vector<uint8_t> seed_file() {
  Writer w(32);
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set("tokenizer.ggml.tokens", Value::string_array({"<s>", "a", "bc"}));
  w.set("tokenizer.ggml.scores", Value::f32_array({0.0f, -1.0f, -2.0f}));
  w.set("tokenizer.ggml.token_type", Value::i32_array({3, 1, 1}));
  w.set("x.u64", Value::u64(12345678901234ull));
  w.set("x.nested", Value::array_array({Value::u8_array({1, 2}), Value::string_array({"q"})}));
  std::vector<float> v(256);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 17) - 8.0f;
  w.add_tensor_f32("a", {32, 2}, std::span<const float>(v).first(64), TensorType::kQ8_0);
  w.add_tensor_f32("b", {256}, v, TensorType::kQ4_K);
  w.add_tensor_f32("c", {4}, std::span<const float>(v).first(4), TensorType::kF32);
  return w.to_bytes();
}

// Touches everything a consumer of a parsed file could: results are discarded, the point is
// that ASan/UBSan see every access. Throws vkllm::Error where an accessor refuses.
inline std::size_t touch(const Reader& r) {
  std::size_t sink = 0;
  for (const KeyValue& kv : r.metadata()) sink += kv.value.format().size();
  for (const TensorInfo& t : r.tensors()) {
    const auto data = r.tensor_data(t);
    sink += data.size();
    if (traits(t.type).cpu_supported && t.n_elements <= 4096) sink += dequantize(t.type, data).size();
  }
  (void)r.find_string("general.architecture");
  (void)r.find_u32("llama.block_count");
  return sink;
}

// Parses and, on success, touches everything: 1 when it parsed, 0 when it was refused.
inline int parse_and_touch(std::vector<uint8_t> bytes) {
  try {
    const Reader r = Reader::from_bytes(std::move(bytes), "fuzz.gguf");
    (void)touch(r);
    return 1;
  } catch (const vkllm::Error&) {
    return 0;
  }
}

}  // namespace vkllm::test
