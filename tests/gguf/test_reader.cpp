// Tests of the gguf reader and writer on valid files: round trips of every value type and
// tensor type, typed getters, mmap'd files, and the real files in ../shared (skipped if absent).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/gguf/writer.hpp"
#include "tests/support/shared_data.hpp"

using namespace vkllm::gguf;

namespace {

std::filesystem::path temp_path(const std::string& stem) {
  return std::filesystem::temp_directory_path() /
         (stem + "-" + std::to_string(::getpid()) + ".gguf");
}

Writer all_value_types_writer() {
  Writer w;
  w.set("general.architecture", Value::string("llama"));
  w.set("t.u8", Value::u8(200));
  w.set("t.i8", Value::i8(-100));
  w.set("t.u16", Value::u16(60000));
  w.set("t.i16", Value::i16(-30000));
  w.set("t.u32", Value::u32(4000000000u));
  w.set("t.i32", Value::i32(-2000000000));
  w.set("t.f32", Value::f32(0.125f));
  w.set("t.bool", Value::boolean(true));
  w.set("t.string", Value::string(std::string("h\xc3\xa9llo\0x", 8)));
  w.set("t.u64", Value::u64(~uint64_t{0}));
  w.set("t.i64", Value::i64(-(int64_t{1} << 60)));
  w.set("t.f64", Value::f64(1e300));
  w.set("t.arr.u8", Value::u8_array({1, 2, 255}));
  w.set("t.arr.i8", Value::i8_array({-1, 2}));
  w.set("t.arr.u16", Value::u16_array({65535}));
  w.set("t.arr.i16", Value::i16_array({-5, 5}));
  w.set("t.arr.u32", Value::u32_array({7, 4000000000u}));
  w.set("t.arr.i32", Value::i32_array({-7, 7, 0}));
  w.set("t.arr.f32", Value::f32_array({0.5f, -1.5f}));
  w.set("t.arr.bool", Value::bool_array({1, 0, 1}));
  w.set("t.arr.string", Value::string_array({"a", "", "ccc"}));
  w.set("t.arr.u64", Value::u64_array({1, ~uint64_t{0}}));
  w.set("t.arr.i64", Value::i64_array({-1}));
  w.set("t.arr.f64", Value::f64_array({2.5}));
  w.set("t.arr.empty", Value::f32_array({}));
  w.set("t.arr.nested",
        Value::array_array({Value::i32_array({1, 2}), Value::string_array({"x"}),
                            Value::array_array({Value::u8_array({9})})}));
  return w;
}

}  // namespace

TEST_CASE("writer -> reader round trip of every metadata value type") {
  Writer w = all_value_types_writer();
  const auto bytes = w.to_bytes();
  Reader r = Reader::from_bytes(bytes, "all-types");
  CHECK(r.version() == 3);
  CHECK(r.alignment() == 32);
  REQUIRE(r.metadata().size() == 27);
  for (const KeyValue& kv : r.metadata()) {
    CAPTURE(kv.key);
    CHECK(r.find(kv.key) == &kv.value);
  }
  CHECK(r.get_string("general.architecture") == "llama");
  CHECK(r.get_u32("t.u8") == 200);
  CHECK(r.get_i64("t.i8") == -100);
  CHECK(r.get_u32("t.u16") == 60000);
  CHECK(r.get_i64("t.i16") == -30000);
  CHECK(r.get_u32("t.u32") == 4000000000u);
  CHECK(r.get_i64("t.i32") == -2000000000);
  CHECK(r.get_f32("t.f32") == 0.125f);
  CHECK(r.get_bool("t.bool"));
  CHECK(r.get_string("t.string") == std::string("h\xc3\xa9llo\0x", 8));
  CHECK(r.get_u64("t.u64") == ~uint64_t{0});
  CHECK(r.get_i64("t.i64") == -(int64_t{1} << 60));
  CHECK(r.find("t.f64")->to_f64() == 1e300);
  CHECK(r.get_f32("t.f64") == static_cast<float>(1e300));  // inf: f64 narrows like a cast
  CHECK(r.get_int_array("t.arr.u8") == std::vector<int64_t>{1, 2, 255});
  CHECK(r.get_int_array("t.arr.i8") == std::vector<int64_t>{-1, 2});
  CHECK(r.get_int_array("t.arr.u32") == std::vector<int64_t>{7, 4000000000});
  CHECK(r.find("t.arr.u64")->elements<uint64_t>()->size() == 2);
  CHECK_THROWS_AS(r.get_int_array("t.arr.u64"), vkllm::InvalidModel);  // 2^64-1 does not fit
  const auto i32 = r.get_i32_array("t.arr.i32");
  CHECK(std::vector<int32_t>(i32.begin(), i32.end()) == std::vector<int32_t>{-7, 7, 0});
  const auto f32 = r.get_f32_array("t.arr.f32");
  CHECK(std::vector<float>(f32.begin(), f32.end()) == std::vector<float>{0.5f, -1.5f});
  const auto strs = r.get_string_array("t.arr.string");
  CHECK(std::vector<std::string>(strs.begin(), strs.end()) == std::vector<std::string>{"a", "", "ccc"});
  CHECK(r.find("t.arr.bool")->bool_elements()->size() == 3);
  CHECK(r.get_f32_array("t.arr.empty").empty());
  const Value* nested = r.find("t.arr.nested");
  REQUIRE(nested);
  CHECK(nested->array_type() == ValueType::kArray);
  REQUIRE(nested->array_elements()->size() == 3);
  CHECK((*nested->array_elements())[1].string_elements()->front() == "x");
  // Formatting for `vkllm info`.
  CHECK(r.find("t.u32")->format() == "4000000000");
  CHECK(r.find("t.bool")->format() == "true");
  CHECK(r.find("t.arr.string")->format() == "[string; 3] [\"a\", \"\", \"ccc\"]");
  CHECK(r.find("t.string")->format() == "\"h\xc3\xa9llo\\x00x\"");
  CHECK(r.find("t.arr.i8")->format(1) == "[i8; 2] [-1, ...]");
  // Re-writing what was read gives the same bytes.
  Writer copy;
  for (const KeyValue& kv : r.metadata()) copy.set(kv.key, kv.value);
  CHECK(copy.to_bytes() == bytes);
}

TEST_CASE("typed getters: integer widening, optional variants, missing keys") {
  Writer w;
  w.set("a.u8", Value::u8(7));
  w.set("a.i32.neg", Value::i32(-1));
  w.set("a.u64.big", Value::u64(uint64_t{1} << 40));
  w.set("a.str", Value::string("s"));
  w.set("a.layers", Value::u32_array({4, 8, 8}));
  w.set("a.one", Value::u32(6));
  Reader r = Reader::from_bytes(w.to_bytes());
  CHECK(r.get_u32("a.u8") == 7);
  CHECK(r.find_u32("a.u8") == 7u);
  CHECK(r.find_u32("a.absent") == std::nullopt);
  CHECK(r.find_string("a.absent") == std::nullopt);
  CHECK(r.find_f32_array("a.absent") == std::nullopt);
  CHECK(r.find_string("a.str") == "s");
  CHECK(r.get_u64("a.u64.big") == uint64_t{1} << 40);
  CHECK(r.get_i64("a.i32.neg") == -1);
  CHECK_THROWS_AS(r.get_u32("a.absent"), vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.get_u32("a.i32.neg"), doctest::Contains("a.i32.neg"), vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.get_u32("a.u64.big"), doctest::Contains("a.u64.big"), vkllm::InvalidModel);
  CHECK_THROWS_WITH_AS(r.find_u32("a.str"), doctest::Contains("a.str"), vkllm::InvalidModel);
  CHECK_THROWS_AS(r.get_f32("a.u8"), vkllm::InvalidModel);
  CHECK_THROWS_AS(r.get_bool("a.u8"), vkllm::InvalidModel);
  CHECK(r.get_u32_per_layer("a.layers", 3) == std::vector<uint32_t>{4, 8, 8});
  CHECK(r.get_u32_per_layer("a.one", 2) == std::vector<uint32_t>{6, 6});
  CHECK_THROWS_AS(r.get_u32_per_layer("a.layers", 100000), vkllm::InvalidRequest);
}

TEST_CASE("writer: erase_prefix drops exactly the keys under the prefix") {
  Writer w;
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("general.x", 2);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_u32("tokenizerx", 3);
  w.erase_prefix("tokenizer.");
  const Reader r = Reader::from_bytes(w.to_bytes());
  REQUIRE(r.metadata().size() == 2);
  CHECK(r.metadata()[0].key == "general.x");
  CHECK(r.metadata()[1].key == "tokenizerx");
}

TEST_CASE("writer -> reader round trip of tensors in every CPU type, with alignment") {
  for (uint32_t alignment : {32u, 8u, 64u, 4096u}) {
    CAPTURE(alignment);
    Writer w(alignment);
    w.set_string("general.architecture", "test");
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-2.0f, 2.0f);
    std::vector<float> values(512 * 3);
    for (float& v : values) v = uni(rng);
    for (TensorType type : cpu_supported_types()) {
      w.add_tensor_f32(std::string("t.") + std::string(type_name(type)), {512, 3}, values, type);
    }
    // Raw bytes path, 1-D, odd byte length (forces padding).
    w.add_tensor("raw.i8", {3}, TensorType::kI8, {1, 2, 3});
    const auto bytes = w.to_bytes();
    Reader r = Reader::from_bytes(bytes, "tensors");
    CHECK(r.alignment() == alignment);
    CHECK(r.data_offset() % alignment == 0);
    REQUIRE(r.tensors().size() == cpu_supported_types().size() + 1);
    for (TensorType type : cpu_supported_types()) {
      CAPTURE(type_name(type));
      const TensorInfo& t = r.tensor(std::string("t.") + std::string(type_name(type)));
      CHECK(t.type == type);
      CHECK(t.n_dims == 2);
      CHECK(t.dims == std::array<uint64_t, 4>{512, 3, 1, 1});
      CHECK(t.n_elements == 1536);
      CHECK(t.offset % alignment == 0);
      CHECK(t.file_offset == r.data_offset() + t.offset);
      const auto data = r.tensor_data(t);
      CHECK(data.size() == t.n_bytes);
      CHECK(dequantize(type, data) == dequantize(type, quantize(type, values)));
    }
    const auto raw = r.tensor_data(r.tensor("raw.i8"));
    CHECK(std::vector<uint8_t>(raw.begin(), raw.end()) == std::vector<uint8_t>{1, 2, 3});
    const uint64_t shape[] = {512, 3};
    CHECK(r.tensor("t.f32", shape).n_bytes == 512 * 3 * 4);
    const uint64_t wrong[] = {3, 512};
    CHECK_THROWS_WITH_AS(r.tensor("t.f32", wrong), doctest::Contains("t.f32"), vkllm::InvalidModel);
    CHECK_THROWS_WITH_AS(r.tensor("absent.weight"), doctest::Contains("absent.weight"), vkllm::InvalidModel);
    CHECK(r.find_tensor("absent.weight") == nullptr);
    // A forged info pointing outside the file is refused, not read.
    TensorInfo forged = r.tensor("raw.i8");
    forged.file_offset = r.file_size() - 1;
    CHECK_THROWS_AS(r.tensor_data(forged), vkllm::InvalidRequest);
  }
}

TEST_CASE("writer refuses bad tensors") {
  Writer w;
  CHECK_THROWS_AS(w.add_tensor("a", {32}, TensorType::kQ8_0, std::vector<uint8_t>(33)), vkllm::InvalidRequest);
  CHECK_THROWS_AS(w.add_tensor("a", {33}, TensorType::kQ8_0, std::vector<uint8_t>(34)), vkllm::InvalidRequest);
  CHECK_THROWS_AS(w.add_tensor("a", {0}, TensorType::kF32, {}), vkllm::InvalidRequest);
  CHECK_THROWS_AS(w.add_tensor("a", {1, 1, 1, 1, 1}, TensorType::kF32, std::vector<uint8_t>(4)), vkllm::InvalidRequest);
  w.add_tensor("a", {1}, TensorType::kF32, std::vector<uint8_t>(4));
  CHECK_THROWS_AS(w.add_tensor("a", {1}, TensorType::kF32, std::vector<uint8_t>(4)), vkllm::InvalidRequest);
  const std::vector<float> v(64);
  CHECK_THROWS_AS(w.add_tensor_f32("b", {256}, std::vector<float>(256), TensorType::kIQ3_S), vkllm::Unsupported);
  CHECK_THROWS_AS(Writer(12), vkllm::InvalidRequest);
}

TEST_CASE("open() maps a file written by write_file") {
  const auto path = temp_path("vkllm-gguf-open");
  Writer w;
  w.set_u32("general.quantization_version", 2);
  const std::vector<float> v{1, 2, 3, 4};
  w.add_tensor_f32("w", {4}, v, TensorType::kF32);
  w.write_file(path);
  {
    Reader r = Reader::open(path);
    CHECK(r.name() == path.string());
    CHECK(r.get_u32("general.quantization_version") == 2);
    CHECK(dequantize(TensorType::kF32, r.tensor_data(r.tensor("w"))) == v);
    Reader moved = std::move(r);
    CHECK(moved.tensors().size() == 1);
  }
  std::filesystem::remove(path);
  CHECK_THROWS_AS(Reader::open(path), vkllm::InvalidRequest);
  CHECK_THROWS_AS(Reader::open(std::filesystem::temp_directory_path()), vkllm::InvalidRequest);
}

TEST_CASE("open() rejects hostile and empty files with typed errors") {
  const auto path = temp_path("vkllm-gguf-hostile");
  Writer w;
  const std::vector<float> v(64, 1.0f);
  w.add_tensor_f32("w", {64}, v, TensorType::kF32);
  auto bytes = w.to_bytes();
  bytes.erase(bytes.end() - 5, bytes.end());  // tensor data cut short
  for (const auto& content : {bytes, std::vector<uint8_t>{}, std::vector<uint8_t>{'G', 'G'}}) {
    {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
    }
    CHECK_THROWS_WITH_AS(Reader::open(path), doctest::Contains(path.string().c_str()), vkllm::InvalidModel);
  }
  std::filesystem::remove(path);
}

TEST_CASE("real file: stories260K.gguf") {
  VKLLM_REQUIRE_SHARED(shared);
  const auto path = shared / "models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(path)) {
    MESSAGE("SKIPPED: " << path.string() << " not found");
    return;
  }
  Reader r = Reader::open(path);
  CHECK((r.version() == 2 || r.version() == 3));
  CHECK(r.get_string("general.architecture") == "llama");
  const uint32_t n_layers = r.get_u32("llama.block_count");
  CHECK(n_layers > 0);
  const uint32_t n_embd = r.get_u32("llama.embedding_length");
  const auto tokens = r.get_string_array("tokenizer.ggml.tokens");
  CHECK(tokens.size() == 512);
  if (auto scores = r.find_f32_array("tokenizer.ggml.scores")) CHECK(scores->size() == tokens.size());
  if (auto types = r.find_i32_array("tokenizer.ggml.token_type")) CHECK(types->size() == tokens.size());
  const TensorInfo& emb = r.tensor("token_embd.weight");
  CHECK(emb.dims[0] == n_embd);
  CHECK(emb.dims[1] == tokens.size());
  uint64_t total = 0;
  for (const TensorInfo& t : r.tensors()) {
    CAPTURE(t.name);
    CHECK(t.file_offset + t.n_bytes <= r.file_size());
    if (traits(t.type).cpu_supported) {
      const auto x = dequantize(t.type, r.tensor_data(t));
      for (float f : x) {
        if (!std::isfinite(f)) FAIL("non-finite weight in " << t.name);
      }
    }
    total += t.n_elements;
  }
  MESSAGE("stories260K: " << r.tensors().size() << " tensors, " << total << " parameters, "
                          << r.metadata().size() << " keys");
}

TEST_CASE("real files: every vocab GGUF in ../shared/vocab parses") {
  VKLLM_REQUIRE_SHARED(shared);
  const auto dir = shared / "vocab";
  if (!std::filesystem::is_directory(dir)) {
    MESSAGE("SKIPPED: " << dir.string() << " not found");
    return;
  }
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".gguf") continue;
    CAPTURE(entry.path().string());
    Reader r = Reader::open(entry.path());
    const auto tokens = r.get_string_array("tokenizer.ggml.tokens");
    CHECK(!tokens.empty());
    CHECK(!r.get_string("tokenizer.ggml.model").empty());
    if (auto scores = r.find_f32_array("tokenizer.ggml.scores")) CHECK(scores->size() == tokens.size());
    if (auto types = r.find_i32_array("tokenizer.ggml.token_type")) CHECK(types->size() == tokens.size());
    if (auto merges = r.find_string_array("tokenizer.ggml.merges")) CHECK(!merges->empty());
    for (const KeyValue& kv : r.metadata()) CHECK(!kv.value.format().empty());
    ++n;
  }
  CHECK(n > 0);
  MESSAGE(n << " vocab files parsed");
}
