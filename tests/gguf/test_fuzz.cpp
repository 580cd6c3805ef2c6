// Mutation fuzz of the gguf reader: every byte of a valid file flipped, zeroed, saturated and
// truncated, plus seeded random multi-byte edits. Each parse succeeds or throws vkllm::Error.
#include <doctest/doctest.h>

#include <random>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/gguf/writer.hpp"

using namespace vkllm::gguf;

namespace {

std::vector<uint8_t> seed_file() {
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

// Parses and, on success, touches everything a consumer could: results are discarded, the
// point is that ASan/UBSan see every access.
int parse_and_touch(std::vector<uint8_t> bytes) {
  try {
    Reader r = Reader::from_bytes(std::move(bytes), "fuzz.gguf");
    size_t sink = 0;
    for (const KeyValue& kv : r.metadata()) sink += kv.value.format().size();
    for (const TensorInfo& t : r.tensors()) {
      const auto data = r.tensor_data(t);
      sink += data.size();
      if (traits(t.type).cpu_supported && t.n_elements <= 4096) sink += dequantize(t.type, data).size();
    }
    (void)r.find_string("general.architecture");
    (void)r.find_u32("llama.block_count");
    (void)sink;
    return 1;
  } catch (const vkllm::Error&) {
    return 0;
  }
}

}  // namespace

TEST_CASE("fuzz: single-byte mutations and truncations never crash") {
  const auto base = seed_file();
  REQUIRE(parse_and_touch(base) == 1);
  int ok = 0, rejected = 0;
  for (size_t pos = 0; pos < base.size(); ++pos) {
    for (int mode = 0; mode < 5; ++mode) {
      std::vector<uint8_t> m = base;
      switch (mode) {
        case 0: m[pos] ^= 0xff; break;
        case 1: m[pos] = 0x00; break;
        case 2: m[pos] = 0xff; break;
        case 3: m[pos] ^= 0x80; break;
        case 4: m.resize(pos); break;
      }
      (parse_and_touch(std::move(m)) ? ok : rejected)++;
    }
  }
  MESSAGE(base.size() << "-byte seed: " << ok << " variants parsed, " << rejected << " rejected");
  CHECK(rejected > 0);
  CHECK(ok > 0);
}

TEST_CASE("fuzz: seeded random multi-byte edits never crash") {
  const auto base = seed_file();
  std::mt19937_64 rng(20261122);
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> m = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[pos] = static_cast<uint8_t>(rng()); break;
        case 1: {  // plant an interesting 64-bit value (counts, lengths, dims, offsets)
          static const uint64_t kValues[] = {0, 1, 0x7fffffffffffffffull, 0xffffffffffffffffull,
                                             0x100000000ull, 1ull << 30, 1ull << 62, 31, 33, 4096};
          const uint64_t v = kValues[rng() % std::size(kValues)];
          for (size_t i = 0; i < 8 && pos + i < m.size(); ++i) m[pos + i] = static_cast<uint8_t>(v >> (8 * i));
          break;
        }
        case 2: m.resize(pos); break;
        case 3: m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<uint8_t>(rng())); break;
      }
      if (m.empty()) break;
    }
    (parse_and_touch(std::move(m)) ? ok : rejected)++;
  }
  MESSAGE("random edits: " << ok << " parsed, " << rejected << " rejected");
  CHECK(rejected > 0);
}
