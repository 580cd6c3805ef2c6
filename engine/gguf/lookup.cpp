// Typed metadata getters of gguf::Reader: exact-type checks that name the key on mismatch.
// Knows nothing of which keys a model or tokenizer needs; callers name the keys.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"

namespace vkllm::gguf {
namespace {

std::string describe(const Value& v) {
  if (v.is_array()) return fmt::format("array of {}", value_type_name(v.array_type()));
  return std::string(value_type_name(v.type()));
}

[[noreturn]] void wrong_type(const std::string& file, std::string_view key, const Value& v,
                             std::string_view wanted) {
  throw InvalidModel(fmt::format("{}: key '{}' has type {} (expected {})", file, key, describe(v), wanted));
}

}  // namespace

const std::string& Reader::get_string(std::string_view key) const {
  const Value& v = require(key);
  if (const std::string* s = v.to_string()) return *s;
  wrong_type(name_, key, v, "string");
}

uint32_t Reader::get_u32(std::string_view key) const {
  const Value& v = require(key);
  if (v.type() == ValueType::kBool || v.is_array() || v.to_f64() || v.to_string()) wrong_type(name_, key, v, "an integer");
  const auto u = v.to_u64();
  if (!u || *u > std::numeric_limits<uint32_t>::max()) {
    throw InvalidModel(fmt::format("{}: key '{}' value {} does not fit in u32", name_, key, v.format()));
  }
  return static_cast<uint32_t>(*u);
}

uint64_t Reader::get_u64(std::string_view key) const {
  const Value& v = require(key);
  if (v.type() == ValueType::kBool || v.is_array() || v.to_f64() || v.to_string()) wrong_type(name_, key, v, "an integer");
  const auto u = v.to_u64();
  if (!u) throw InvalidModel(fmt::format("{}: key '{}' value {} is negative", name_, key, v.format()));
  return *u;
}

int64_t Reader::get_i64(std::string_view key) const {
  const Value& v = require(key);
  if (v.type() == ValueType::kBool || v.is_array() || v.to_f64() || v.to_string()) wrong_type(name_, key, v, "an integer");
  const auto i = v.to_i64();
  if (!i) throw InvalidModel(fmt::format("{}: key '{}' value {} does not fit in i64", name_, key, v.format()));
  return *i;
}

float Reader::get_f32(std::string_view key) const {
  const Value& v = require(key);
  const auto d = v.to_f64();
  if (!d) wrong_type(name_, key, v, "f32");
  return static_cast<float>(*d);
}

bool Reader::get_bool(std::string_view key) const {
  const Value& v = require(key);
  if (auto b = v.to_bool()) return *b;
  wrong_type(name_, key, v, "bool");
}

std::span<const std::string> Reader::get_string_array(std::string_view key) const {
  const Value& v = require(key);
  if (const auto* s = v.string_elements()) return *s;
  wrong_type(name_, key, v, "array of string");
}

std::span<const float> Reader::get_f32_array(std::string_view key) const {
  const Value& v = require(key);
  if (const auto* s = v.elements<float>()) return *s;
  wrong_type(name_, key, v, "array of f32");
}

std::span<const int32_t> Reader::get_i32_array(std::string_view key) const {
  const Value& v = require(key);
  if (const auto* s = v.elements<int32_t>()) return *s;
  wrong_type(name_, key, v, "array of i32");
}

std::vector<int64_t> Reader::get_int_array(std::string_view key) const {
  const Value& v = require(key);
  const ValueType t = v.array_type();
  if (!v.is_array() || t == ValueType::kF32 || t == ValueType::kF64 || t == ValueType::kBool ||
      t == ValueType::kString || t == ValueType::kArray) {
    wrong_type(name_, key, v, "array of integers");
  }
  std::vector<int64_t> out;
  out.reserve(v.array_size());
  for (uint64_t i = 0; i < v.array_size(); ++i) {
    const auto e = v.int_element(i);
    if (!e) throw InvalidModel(fmt::format("{}: key '{}' element {} does not fit in i64", name_, key, i));
    out.push_back(*e);
  }
  return out;
}

std::optional<std::string> Reader::find_string(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_string(key);
}
std::optional<uint32_t> Reader::find_u32(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_u32(key);
}
std::optional<uint64_t> Reader::find_u64(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_u64(key);
}
std::optional<int64_t> Reader::find_i64(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_i64(key);
}
std::optional<float> Reader::find_f32(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_f32(key);
}
std::optional<bool> Reader::find_bool(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_bool(key);
}
std::optional<std::span<const std::string>> Reader::find_string_array(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_string_array(key);
}
std::optional<std::span<const float>> Reader::find_f32_array(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_f32_array(key);
}
std::optional<std::span<const int32_t>> Reader::find_i32_array(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_i32_array(key);
}
std::optional<std::vector<int64_t>> Reader::find_int_array(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  return get_int_array(key);
}

}  // namespace vkllm::gguf

namespace vkllm::gguf {

std::vector<uint32_t> Reader::get_u32_per_layer(std::string_view key, uint32_t n_layers) const {
  // The caller bounds n_layers by its own layer limit first (hostile-file case A27); this cap only
  // keeps a forgotten check from turning into a giant allocation.
  if (n_layers > kMaxPerLayerCount) {
    throw InvalidRequest(fmt::format("{}: get_u32_per_layer('{}') for {} layers (limit {})", name_, key,
                                     n_layers, kMaxPerLayerCount));
  }
  const Value& v = require(key);
  if (!v.is_array()) return std::vector<uint32_t>(n_layers, get_u32(key));
  const std::vector<int64_t> all = get_int_array(key);
  if (all.size() != n_layers) {
    throw InvalidModel(fmt::format("{}: key '{}' has {} per-layer values but the model has {} layers",
                                   name_, key, all.size(), n_layers));
  }
  std::vector<uint32_t> out;
  out.reserve(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] < 0 || all[i] > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
      throw InvalidModel(fmt::format("{}: key '{}' layer {} value {} does not fit in u32", name_, key, i, all[i]));
    }
    out.push_back(static_cast<uint32_t>(all[i]));
  }
  return out;
}

const TensorInfo& Reader::tensor(std::string_view name, std::span<const uint64_t> expected_dims) const {
  const TensorInfo& t = tensor(name);
  bool same = expected_dims.size() == t.n_dims;
  for (size_t i = 0; same && i < expected_dims.size(); ++i) same = expected_dims[i] == t.dims[i];
  if (!same) {
    std::vector<uint64_t> actual(t.dims.begin(), t.dims.begin() + t.n_dims);
    throw InvalidModel(fmt::format("{}: tensor '{}' has shape [{}], expected [{}]", name_, name,
                                   fmt::join(actual, ", "), fmt::join(expected_dims, ", ")));
  }
  return t;
}

}  // namespace vkllm::gguf
