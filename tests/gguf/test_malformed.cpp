// One test per malformed-input case A1-A30 (the known GGUF loader vulnerability classes, docs/ARCHITECTURE.md "Tests"): each hostile file
// must give a typed vkllm error naming the file and the field, never a crash or an overread.
#include <doctest/doctest.h>

#include <limits>
#include <optional>
#include <string>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/gguf/writer.hpp"
#include "tests/gguf/gguf_bytes.hpp"

using namespace vkllm::gguf;
using vkllm::gguf::test::Bytes;

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kF32 = 0, kQ4_0 = 2, kI8 = 24;
constexpr uint32_t kTypeU8 = 0, kTypeI8 = 1, kTypeU32 = 4, kTypeI32 = 5, kTypeF32 = 6,
                   kTypeString = 8, kTypeArray = 9;

// Parses `bytes` and requires error type E whose message names the file and `needle`.
template <class E>
void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle, const ReaderLimits& limits = {}) {
  try {
    Reader r = Reader::from_bytes(bytes, "hostile.gguf", limits);
    FAIL("parsed without error; expected one mentioning '" << needle << "'");
  } catch (const E& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find("hostile.gguf") != std::string::npos);
    CHECK(msg.find(needle) != std::string::npos);
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
  }
}
void expect_invalid(const std::vector<uint8_t>& bytes, const std::string& needle, const ReaderLimits& limits = {}) {
  expect_error<vkllm::InvalidModel>(bytes, needle, limits);
}

// One KV and one f32 tensor of `n` elements with its data: a valid file to start from.
Bytes valid_file(uint64_t n = 8) {
  Bytes b;
  b.header(1, 1).kv_string("general.architecture", "llama").tensor("w", {n}, kF32, 0).pad_to(32);
  b.zeros(n * 4).pad_to(32);
  return b;
}

}  // namespace

TEST_CASE("A0 the base files used below are valid") {
  CHECK_NOTHROW(Reader::from_bytes(valid_file().data));
}

TEST_CASE("A1 bad magic") {
  Bytes b;
  b.raw("FUGG", 4).u32(3).u64(0).u64(0);
  expect_invalid(b.data, "bad magic");
  Bytes gguf_lower;
  gguf_lower.raw("gguf", 4).u32(3).u64(0).u64(0);
  expect_invalid(gguf_lower.data, "not a GGUF file");
}

TEST_CASE("A2 versions 0, 1, future, and byte-swapped (big-endian)") {
  expect_invalid(Bytes().header(0, 0, 0).data, "version 0");
  expect_error<vkllm::Unsupported>(Bytes().header(0, 0, 1).data, "version 1");
  expect_error<vkllm::Unsupported>(Bytes().header(0, 0, 4).data, "version 4");
  expect_error<vkllm::Unsupported>(Bytes().header(0, 0, 0x03000000).data, "big-endian");
  expect_error<vkllm::Unsupported>(Bytes().header(0, 0, 0x02000000).data, "big-endian");
  CHECK(Reader::from_bytes(Bytes().header(0, 0, 2).data).version() == 2);
}

TEST_CASE("A3 tensor and KV counts: 2^64-1 and counts beyond the bytes left") {
  expect_invalid(Bytes().header(kU64Max, 0).data, "more than the");
  expect_invalid(Bytes().header(0, kU64Max).data, "more than the");
  expect_invalid(Bytes().header(kU64Max, kU64Max).data, "more than the");
  // The 44-byte "100M KV" PoC shape: a huge but not overflowing count in a tiny file.
  Bytes poc;
  poc.header(0, 100'000'000).zeros(20);
  expect_invalid(poc.data, "100000000 metadata entries");
  // Plausible counts that still exceed the entries present.
  Bytes two_kv;
  two_kv.header(0, 2).kv_u32("a.b", 1).u64(3).raw("a.c", 3);  // second entry stops after its key
  expect_invalid(two_kv.data, "truncated");
}

TEST_CASE("A4 truncation at every byte of a valid file") {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set("tokenizer.ggml.tokens", Value::string_array({"a", "bb", "ccc"}));
  w.set("tokenizer.ggml.scores", Value::f32_array({0.1f, 0.2f, 0.3f}));
  w.set("x.nested", Value::array_array({Value::i32_array({1, 2})}));
  const std::vector<float> v(64, 1.0f);
  w.add_tensor_f32("a", {32, 2}, v, TensorType::kQ8_0);
  w.add_tensor_f32("b", {64}, v, TensorType::kF16);
  const auto full = w.to_bytes();
  const Reader ok = Reader::from_bytes(full);
  const TensorInfo& last = ok.tensors().back();
  const uint64_t needed = last.file_offset + last.n_bytes;
  for (size_t len = 0; len < full.size(); ++len) {
    CAPTURE(len);
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    if (len < needed) {
      CHECK_THROWS_AS(Reader::from_bytes(std::move(cut)), vkllm::InvalidModel);
    } else {
      CHECK_NOTHROW(Reader::from_bytes(std::move(cut)));  // only trailing padding missing
    }
  }
}

TEST_CASE("A5 empty header (0 tensors, 0 KV) loads") {
  const Reader r = Reader::from_bytes(Bytes().header(0, 0).data);
  CHECK(r.version() == 3);
  CHECK(r.metadata().empty());
  CHECK(r.tensors().empty());
  CHECK(r.data_offset() <= r.file_size());
}

TEST_CASE("A6 key length 2^64-1, beyond the file, above 65535, non-ASCII key") {
  Bytes huge;
  huge.header(0, 1).u64(kU64Max).zeros(16);
  expect_invalid(huge.data, "metadata key");
  Bytes beyond;
  beyond.header(0, 1).u64(1000).raw("abc", 3).u32(4).u32(1);
  expect_invalid(beyond.data, "only");
  Bytes long_key;
  long_key.header(0, 1).str(std::string(65536, 'a')).u32(kTypeU32).u32(1);
  expect_invalid(long_key.data, "limit 65535");
  Bytes ok_key;
  ok_key.header(0, 1).str(std::string(65535, 'a')).u32(kTypeU32).u32(1);
  CHECK_NOTHROW(Reader::from_bytes(ok_key.data));
  Bytes non_ascii;
  non_ascii.header(0, 1).kv_u32("tokenizer.\xff", 1);
  expect_invalid(non_ascii.data, "non-ASCII");
  Bytes control;
  control.header(0, 1).kv_u32(std::string("a\nb"), 1);
  expect_invalid(control.data, "non-printable");
}

TEST_CASE("A7 empty key") {
  Bytes b;
  b.header(0, 1).kv_u32("", 1);
  expect_invalid(b.data, "empty metadata key");
}

TEST_CASE("A8 bad value type, bad array element type, nested arrays beyond the limit") {
  Bytes t13;
  t13.header(0, 1).str("a.b").u32(13).u32(0);
  expect_invalid(t13.data, "value type 13");
  Bytes negative;
  negative.header(0, 1).str("a.b").u32(0xffffffffu).u32(0);
  expect_invalid(negative.data, "value type 4294967295");
  Bytes elem13;
  elem13.header(0, 1).kv_array("a.b", 13, 1).u32(0);
  expect_invalid(elem13.data, "element type 13");
  // Arrays of arrays are valid GGUF and supported, up to a depth limit.
  Bytes nested;
  nested.header(0, 1).kv_array("a.b", kTypeArray, 1).u32(kTypeU8).u64(1).u8(7);
  CHECK(Reader::from_bytes(nested.data).find("a.b")->array_elements()->size() == 1);
  ReaderLimits flat;
  flat.max_array_depth = 1;
  expect_invalid(nested.data, "nested 2 deep", flat);
  // Depth 9 (default limit 8): each level is one array holding one array.
  Bytes deep;
  deep.header(0, 1).kv_array("a.deep", kTypeArray, 1);
  for (int i = 0; i < 7; ++i) deep.u32(kTypeArray).u64(1);
  deep.u32(kTypeU8).u64(1).u8(1);
  expect_invalid(deep.data, "nested 9 deep");
  // A bool byte other than 0/1.
  Bytes bad_bool;
  bad_bool.header(0, 1).str("a.b").u32(7).u8(2);
  expect_invalid(bad_bool.data, "bool");
}

TEST_CASE("A9 duplicate key") {
  Bytes b;
  b.header(0, 2).kv_u32("a.b", 1).kv_string("a.b", "x");
  expect_invalid(b.data, "duplicate metadata key 'a.b'");
}

TEST_CASE("A10 string length and array count far beyond the file, array count above 1 Gi") {
  Bytes str;
  str.header(0, 1).str("a.s").u32(kTypeString).u64(uint64_t{1} << 40).raw("abc", 3);
  expect_invalid(str.data, "value of key 'a.s'");
  Bytes str_max;
  str_max.header(0, 1).str("a.s").u32(kTypeString).u64(kU64Max);
  expect_invalid(str_max.data, "value of key 'a.s'");
  Bytes arr;
  arr.header(0, 1).kv_array("a.arr", kTypeU32, uint64_t{1} << 28).zeros(64);
  expect_invalid(arr.data, "claims 268435456 u32 elements");
  Bytes arr_wrap;  // count * 8 wraps 64 bits
  arr_wrap.header(0, 1).kv_array("a.arr", kTypeString, uint64_t{1} << 61).zeros(64);
  expect_invalid(arr_wrap.data, "a.arr");
  Bytes big_count;
  big_count.header(0, 1).kv_array("a.arr", kTypeU8, (uint64_t{1} << 30) + 1).zeros(64);
  expect_invalid(big_count.data, "limit 1073741824");
  // A string array whose count fits the bytes left but whose strings do not.
  Bytes strings;
  strings.header(0, 1).kv_array("tokenizer.ggml.tokens", kTypeString, 2).str("a").u64(1000);
  expect_invalid(strings.data, "tokenizer.ggml.tokens");
}

TEST_CASE("A11 general.alignment: 0, 13, 4, 2^31, stored as i32") {
  auto with_alignment = [](uint32_t a) {
    Bytes b;
    b.header(1, 1).kv_u32("general.alignment", a).tensor("w", {8}, kF32, 0).zeros(4096);
    return b.data;
  };
  expect_invalid(with_alignment(0), "general.alignment");
  expect_invalid(with_alignment(13), "general.alignment");
  expect_invalid(with_alignment(4), "general.alignment");  // power of two, not a multiple of 8
  expect_invalid(with_alignment(0x80000000u), "general.alignment");
  expect_invalid(with_alignment(2u << 20), "general.alignment");  // above the 1 MiB cap
  Bytes as_i32;
  as_i32.header(0, 1).kv_i32("general.alignment", 32);
  expect_invalid(as_i32.data, "must be u32");
  const Reader r = Reader::from_bytes(with_alignment(64));
  CHECK(r.alignment() == 64);
  CHECK(r.data_offset() % 64 == 0);
}

TEST_CASE("A12 typed keys are checked at consumption, never reinterpreted") {
  Bytes b;
  b.header(0, 5)
      .kv_array("tokenizer.ggml.scores", kTypeU8, 3).u8(1).u8(2).u8(3)
      .kv_array("tokenizer.ggml.token_type", kTypeI8, 3).u8(1).u8(1).u8(1)
      .kv_array("tokenizer.ggml.tokens", kTypeU32, 1).u32(5)
      .kv_array("x.i32s", kTypeI32, 1).i32(-1)
      .kv_array("x.f32s", kTypeF32, 1).f32(1.0f);
  const Reader r = Reader::from_bytes(b.data, "typed.gguf");
  CHECK_THROWS_WITH_AS(r.get_f32_array("tokenizer.ggml.scores"), doctest::Contains("tokenizer.ggml.scores"),
                       vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.get_i32_array("tokenizer.ggml.token_type"),
                       doctest::Contains("array of i8 (expected array of i32)"), vkllm::InvalidModel);
  CHECK_THROWS_AS(r.get_string_array("tokenizer.ggml.tokens"), vkllm::InvalidModel);
  CHECK_THROWS_AS(r.find_f32_array("tokenizer.ggml.scores"), vkllm::InvalidModel);
  CHECK_THROWS_AS(r.get_f32_array("x.i32s"), vkllm::InvalidModel);  // no i32 -> f32 reinterpretation
  CHECK_THROWS_AS(r.get_i32_array("x.f32s"), vkllm::InvalidModel);
  CHECK_THROWS_AS(r.get_u32("x.i32s"), vkllm::InvalidModel);  // array is not a scalar
  CHECK_THROWS_AS(r.get_string("x.f32s"), vkllm::InvalidModel);
  CHECK(r.get_int_array("tokenizer.ggml.token_type") == std::vector<int64_t>{1, 1, 1});  // explicit widening
}

TEST_CASE("A13 tensor name of 64 bytes; duplicate tensor names") {
  Bytes long_name;
  long_name.header(1, 0).tensor(std::string(64, 'n'), {8}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(long_name.data, "name of tensor #0");
  Bytes ok_name;
  ok_name.header(1, 0).tensor(std::string(63, 'n'), {8}, kF32, 0).pad_to(32).zeros(32);
  CHECK_NOTHROW(Reader::from_bytes(ok_name.data));
  Bytes dup;
  dup.header(2, 0).tensor("w", {8}, kF32, 0).tensor("w", {8}, kF32, 32).pad_to(32).zeros(64);
  expect_invalid(dup.data, "duplicate tensor name 'w'");
  Bytes empty;
  empty.header(1, 0).tensor("", {8}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(empty.data, "empty name");
}

TEST_CASE("A14 n_dims 5 and 0xFFFFFFFF") {
  Bytes five;
  five.header(1, 0).tensor("w", {1, 1, 1, 1, 1}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(five.data, "n_dims is 5");
  Bytes huge;
  huge.header(1, 0).str("w").u32(0xffffffffu).zeros(64);
  expect_invalid(huge.data, "n_dims is 4294967295");
}

TEST_CASE("A15 negative dimension") {
  Bytes b;
  b.header(1, 0).tensor("w", {8, kU64Max}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(b.data, "negative (-1)");
}

TEST_CASE("A16 zero dimension is refused (decision: no zero-element tensors), no division by zero") {
  Bytes b;
  b.header(1, 0).tensor("w", {8, 0}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(b.data, "dimension 1 is zero");
  Bytes first;
  first.header(1, 0).tensor("w", {0, uint64_t{1} << 62}, kQ4_0, 0).pad_to(32).zeros(32);
  expect_invalid(first.data, "dimension 0 is zero");
}

TEST_CASE("A17 element-count overflow") {
  const uint64_t four_int32_max = 4ull * std::numeric_limits<int32_t>::max();
  Bytes b;
  b.header(1, 0).tensor("w", {four_int32_max, four_int32_max}, kI8, 0).pad_to(32).zeros(32);
  expect_invalid(b.data, "element count overflows");
  Bytes issue27203;
  issue27203.header(1, 0).tensor("w", {uint64_t{std::numeric_limits<int64_t>::max()}, 2, 1, 1}, kI8, 0)
      .pad_to(32).zeros(32);
  expect_invalid(issue27203.data, "element count overflows");
}

TEST_CASE("A18 byte-size overflow and sizes near 2^64") {
  Bytes f32_wrap;  // 2^62 f32 elements = 2^64 bytes: the stride wraps to 0 in unchecked code
  f32_wrap.header(1, 0).tensor("w", {uint64_t{1} << 62}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(f32_wrap.data, "byte size");
  Bytes near_max;  // 2^64 - 32 bytes: fits, but align-up would wrap; must fail on the file size
  near_max.header(1, 0).tensor("w", {(uint64_t{1} << 62) - 8}, kF32, 0).pad_to(32).zeros(32);
  expect_invalid(near_max.data, "past the end");
  Bytes quant;  // q8_0: 2^62 / 32 blocks * 34 bytes fits in 64 bits but not in the file
  quant.header(1, 0).tensor("w", {uint64_t{1} << 62}, 8, 0).pad_to(32).zeros(32);
  expect_invalid(quant.data, "past the end");
  Bytes quant_wrap;  // q6_K: 2^62 * 2 elements overflows only in bytes
  quant_wrap.header(1, 0).tensor("w", {uint64_t{1} << 61, 3}, 14, 0).pad_to(32).zeros(32);
  CHECK_THROWS_AS(Reader::from_bytes(quant_wrap.data), vkllm::InvalidModel);
}

TEST_CASE("A19 tensor type: removed ids, unknown ids, negative ids") {
  auto with_type = [](uint32_t type) {
    Bytes b;
    b.header(1, 0).tensor("blk.0.w", {256}, type, 0).pad_to(32).zeros(2048);
    return b.data;
  };
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u}) {
    CAPTURE(removed);
    expect_invalid(with_type(removed), "removed");
  }
  expect_error<vkllm::Unsupported>(with_type(40), "type id 40");
  expect_error<vkllm::Unsupported>(with_type(1000), "blk.0.w");
  expect_invalid(with_type(0xffffffffu), "negative");
  expect_invalid(with_type(0x80000000u), "negative");
  CHECK_NOTHROW(Reader::from_bytes(with_type(21)));  // iq3_s: known, parsed, not CPU-supported
}

TEST_CASE("A20 row length not a multiple of the block size") {
  Bytes b;
  b.header(1, 0).tensor("w", {33, 2}, kQ4_0, 0).pad_to(32).zeros(256);
  expect_invalid(b.data, "not a multiple of the q4_0 block size 32");
}

TEST_CASE("A21 tensor offsets: 2^64-1, unaligned, overlapping, gaps, out of order") {
  auto two = [](uint64_t off_a, uint64_t off_b) {
    Bytes b;
    b.header(2, 0).tensor("a", {8}, kF32, off_a).tensor("b", {8}, kF32, off_b).pad_to(32).zeros(128);
    return b.data;
  };
  CHECK_NOTHROW(Reader::from_bytes(two(0, 32)));
  expect_invalid(two(kU64Max - 31, 0), "tensor 'a'");
  expect_invalid(two(0, kU64Max), "tensor 'b'");
  expect_invalid(two(4, 36), "not a multiple of the alignment");
  expect_invalid(two(0, 0), "tensor 'b': offset 0");       // overlap
  expect_invalid(two(0, 64), "tensor 'b': offset 64");     // gap
  expect_invalid(two(32, 0), "tensor 'a': offset 32");     // out of order
}

TEST_CASE("A22 offset + size beyond the end of the file (Bleeding Llama)") {
  Bytes b;
  b.header(1, 0).tensor("w", {1000}, kF32, 0).pad_to(32).zeros(16);
  expect_invalid(b.data, "past the end of the data section");
}

TEST_CASE("A23 data one byte short") {
  Bytes b = valid_file(8);
  b.data.pop_back();  // 8 f32 = 32 bytes end the file exactly; drop the last data byte
  expect_invalid(b.data, "tensor 'w'");
}

TEST_CASE("A24 totals that overflow although each tensor fits 64 bits") {
  const uint64_t n = 0x7FFFFFFFFFFFFFC0ull;  // I8: n bytes each; 2n wraps nothing but exceeds files
  Bytes b;
  b.header(2, 0).tensor("a", {n}, kI8, 0).tensor("b", {n}, kI8, n).pad_to(32).zeros(64);
  expect_invalid(b.data, "tensor 'a'");
  // Each placement step is checked arithmetic; the sum can never wrap into a small size.
  CHECK(checked_add(n, n).has_value());
  CHECK_FALSE(checked_add(n * 2, n).has_value());
  CHECK_FALSE(checked_align_up(kU64Max - 10, 32).has_value());
}

TEST_CASE("A25 padding before the data section extends past the end of the file") {
  Bytes b;
  b.header(1, 0).tensor("w", {8}, kF32, 0);
  REQUIRE(b.size() % 32 > 0);  // the data section would start at the next multiple of 32
  b.zeros(2);
  expect_invalid(b.data, "data section starts at");
}

TEST_CASE("A26 a failed parse leaves nothing half-built") {
  std::optional<Reader> none;
  Bytes bad = valid_file();
  bad.data.pop_back();
  CHECK_THROWS_AS(none.emplace(Reader::from_bytes(bad.data)), vkllm::InvalidModel);
  CHECK_FALSE(none.has_value());
  // A live Reader survives a failed re-assignment unchanged.
  Reader r = Reader::from_bytes(valid_file().data);
  CHECK_THROWS_AS(r = Reader::from_bytes(bad.data), vkllm::InvalidModel);
  REQUIRE(r.tensors().size() == 1);
  CHECK(r.tensor_data(r.tensors()[0]).size() == 32);
}

TEST_CASE("A27 per-layer values: block_count too big for u32, arrays shorter than the layer count") {
  Writer w;
  w.set("llama.block_count", Value::u64(uint64_t{1} << 32));
  w.set("llama.attention.head_count", Value::i32_array({8, 8, 8}));
  w.set("llama.attention.head_count_kv", Value::i32_array({8, -1, 8, 8}));
  const Reader r = Reader::from_bytes(w.to_bytes(), "layers.gguf");
  CHECK_THROWS_WITH_AS(r.get_u32("llama.block_count"), doctest::Contains("llama.block_count"), vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.get_u32_per_layer("llama.attention.head_count", 4),
                       doctest::Contains("3 per-layer values but the model has 4 layers"), vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.get_u32_per_layer("llama.attention.head_count_kv", 4), doctest::Contains("layer 1"),
                       vkllm::InvalidModel);
  CHECK_THROWS_AS(r.get_u32_per_layer("llama.attention.head_count", kMaxPerLayerCount + 1), vkllm::InvalidRequest);
  // The engine's own max-layer limit is checked by the model loader (not this module).
}

TEST_CASE("A28 required tensors present with the expected shape; sizes in 64 bits") {
  Writer w;
  const std::vector<float> v(64 * 4);
  w.add_tensor_f32("token_embd.weight", {64, 4}, v, TensorType::kF32);
  const Reader r = Reader::from_bytes(w.to_bytes(), "shape.gguf");
  const uint64_t expected[] = {64, 4};
  CHECK(r.tensor("token_embd.weight", expected).n_bytes == 64 * 4 * 4);
  const uint64_t transposed[] = {4, 64};
  CHECK_THROWS_WITH_AS(r.tensor("token_embd.weight", transposed), doctest::Contains("expected [4, 64]"),
                       vkllm::InvalidModel);
  const uint64_t three_d[] = {64, 4, 1};
  CHECK_THROWS_AS(r.tensor("token_embd.weight", three_d), vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.tensor("output_norm.weight"), doctest::Contains("output_norm.weight"), vkllm::InvalidModel);
  static_assert(std::is_same_v<decltype(TensorInfo::n_bytes), uint64_t>);
  static_assert(std::is_same_v<decltype(TensorInfo::n_elements), uint64_t>);
}

TEST_CASE("A29 vocab arrays: token strings bounded, element types exact") {
  // Token lengths are bounded by ReaderLimits::max_string_bytes (1 GiB, int32-safe) and by
  // the file; here with a small limit to show the check.
  Bytes b;
  b.header(0, 1).kv_array("tokenizer.ggml.tokens", kTypeString, 2).str("ok").str(std::string(300, 'x'));
  ReaderLimits limits;
  limits.max_string_bytes = 256;
  expect_invalid(b.data, "limit 256", limits);
  CHECK(ReaderLimits{}.max_string_bytes < static_cast<uint64_t>(std::numeric_limits<int32_t>::max()));
  CHECK_NOTHROW(Reader::from_bytes(b.data));
  // Length equality of tokens/scores/token_type, byte-token syntax and merges are checked by
  // the tokenizer, which reads them through the exact-type getters (A12).
}

TEST_CASE("A30 array counts are bounded so every index fits int32") {
  CHECK(ReaderLimits{}.max_array_elements < static_cast<uint64_t>(std::numeric_limits<int32_t>::max()));
  Bytes b;
  b.header(0, 1).kv_array("tokenizer.ggml.tokens", kTypeString, 5);
  for (int i = 0; i < 5; ++i) b.str("t");
  ReaderLimits limits;
  limits.max_array_elements = 4;
  expect_invalid(b.data, "tokenizer.ggml.tokens", limits);
  CHECK(Reader::from_bytes(b.data).get_string_array("tokenizer.ggml.tokens").size() == 5);
  // Prompt-length limits on tokenizer output belong to the tokenizer and server.
}
