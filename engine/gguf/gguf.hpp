// GGUF reader: header, metadata values, tensor infos and bounds-checked tensor data views.
// Knows nothing of model architectures, tokenizers or devices; only the file format.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/gguf/types.hpp"

namespace vkllm::gguf {

// Metadata value types, ids exactly as stored in GGUF.
enum class ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
inline constexpr uint32_t kValueTypeCount = 13;

// "u32", "string", "array", ...
std::string_view value_type_name(ValueType type) noexcept;

// One metadata value: a scalar, a string, or an array whose elements share one type (arrays
// of arrays are allowed, each inner array with its own element type). Immutable once built.
// Array elements are stored unpacked by type, so typed spans cost nothing.
class Value {
 public:
  // Scalars.
  static Value u8(uint8_t v);
  static Value i8(int8_t v);
  static Value u16(uint16_t v);
  static Value i16(int16_t v);
  static Value u32(uint32_t v);
  static Value i32(int32_t v);
  static Value f32(float v);
  static Value boolean(bool v);
  static Value string(std::string v);
  static Value u64(uint64_t v);
  static Value i64(int64_t v);
  static Value f64(double v);
  // Arrays with element type U8, I8, ..., F64 (bool arrays: one byte 0/1 per element).
  static Value u8_array(std::vector<uint8_t> v);
  static Value i8_array(std::vector<int8_t> v);
  static Value u16_array(std::vector<uint16_t> v);
  static Value i16_array(std::vector<int16_t> v);
  static Value u32_array(std::vector<uint32_t> v);
  static Value i32_array(std::vector<int32_t> v);
  static Value f32_array(std::vector<float> v);
  static Value bool_array(std::vector<uint8_t> v);
  static Value string_array(std::vector<std::string> v);
  static Value u64_array(std::vector<uint64_t> v);
  static Value i64_array(std::vector<int64_t> v);
  static Value f64_array(std::vector<double> v);
  // An array of arrays (each element must itself be an array).
  static Value array_array(std::vector<Value> v);

  ValueType type() const noexcept { return type_; }
  bool is_array() const noexcept { return type_ == ValueType::kArray; }
  // Element type of an array (kArray for arrays of arrays); meaningless for non-arrays.
  ValueType array_type() const noexcept { return elem_type_; }
  // Number of elements of an array; 0 for non-arrays.
  uint64_t array_size() const noexcept;

  // Scalar views. Each returns nullopt when the type differs (or the value does not fit).
  // Any integer type (not bool) whose value is representable.
  std::optional<uint64_t> to_u64() const noexcept;
  std::optional<int64_t> to_i64() const noexcept;
  // F32 or F64.
  std::optional<double> to_f64() const noexcept;
  std::optional<bool> to_bool() const noexcept;
  // Strings only (nullptr otherwise).
  const std::string* to_string() const noexcept;

  // Typed array views: nullptr unless this is an array whose element type is exactly T's
  // (uint8_t means U8; bools use bool_elements(), one 0/1 byte each). T is one of uint8_t,
  // int8_t, uint16_t, int16_t, uint32_t, int32_t, float, uint64_t, int64_t, double.
  // Pointers (not optional<span>) so `for (auto& x : *v.elements<float>())` never dangles.
  template <class T>
  const std::vector<T>* elements() const noexcept;
  const std::vector<uint8_t>* bool_elements() const noexcept;
  const std::vector<std::string>* string_elements() const noexcept;
  const std::vector<Value>* array_elements() const noexcept;
  // Element i of an integer array widened to int64 (nullopt if not integer or > INT64_MAX).
  std::optional<int64_t> int_element(uint64_t i) const noexcept;

  // Human-readable rendering for `vkllm info`: strings quoted and cut at `max_chars`,
  // arrays show their type, length and the first `max_items` elements.
  std::string format(size_t max_items = 8, size_t max_chars = 80) const;

  bool operator==(const Value& other) const;

 private:
  using Scalar = std::variant<std::monostate, uint64_t, int64_t, double, bool, std::string>;
  using Elements =
      std::variant<std::monostate, std::vector<uint8_t>, std::vector<int8_t>,
                   std::vector<uint16_t>, std::vector<int16_t>, std::vector<uint32_t>,
                   std::vector<int32_t>, std::vector<float>, std::vector<std::string>,
                   std::vector<uint64_t>, std::vector<int64_t>, std::vector<double>,
                   std::vector<Value>>;
  Value(ValueType type, ValueType elem_type);
  template <class S>
  static Value make_scalar(ValueType type, S v);
  template <class E>
  static Value make_array(ValueType elem_type, std::vector<E> v);

  ValueType type_ = ValueType::kU8;
  ValueType elem_type_ = ValueType::kU8;  // arrays only; bool arrays use vector<uint8_t>
  Scalar scalar_;
  Elements elements_;
};

// One metadata entry, in file order.
struct KeyValue {
  std::string key;
  Value value;
};

inline constexpr uint32_t kMaxDims = 4;

// One tensor info. Dimensions follow ggml: dims[0] is the fastest-varying (row length);
// dims beyond n_dims are 1.
struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  std::array<uint64_t, kMaxDims> dims{1, 1, 1, 1};
  TensorType type = TensorType::kF32;
  uint64_t offset = 0;       // relative to the data section, as stored in the file
  uint64_t file_offset = 0;  // absolute offset in the file (data_offset + offset)
  uint64_t n_elements = 0;   // product of dims
  uint64_t n_bytes = 0;      // bytes of the data (no padding)
};

// Limits the reader enforces beyond the format itself (defaults against the known hostile-file classes: docs/ARCHITECTURE.md "Tests").
struct ReaderLimits {
  uint64_t max_string_bytes = uint64_t{1} << 30;     // any string (key or value)
  uint64_t max_array_elements = uint64_t{1} << 30;   // any array
  uint64_t max_key_bytes = 65535;                    // spec
  uint64_t max_tensor_name_bytes = 63;               // ggml's GGML_MAX_NAME (64) minus NUL
  uint64_t max_alignment = uint64_t{1} << 20;        // 1 MiB cap (PR #24997 proposal)
  uint32_t max_array_depth = 8;                      // arrays of arrays nesting
};

inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxPerLayerCount = 65536;

class Mapping;  // the file's bytes: an mmap or an owned buffer (reader.cpp)

// A parsed GGUF file (versions 2 and 3, little-endian). Construction validates everything
// (hostile-file cases A1-A26, each tested in tests/gguf/test_malformed.cpp) and throws vkllm::InvalidModel (malformed) or
// vkllm::Unsupported (valid but unknown here, e.g. a future tensor type) naming the file and
// the key, tensor or offset at fault. Once constructed, every accessor is safe: tensor data
// views lie inside the file, sizes are overflow-free. Move-only; the data views stay valid
// as long as the Reader lives.
class Reader {
 public:
  // Maps the file read-only.
  static Reader open(const std::filesystem::path& path, const ReaderLimits& limits = {});
  // Parses bytes held in memory (tests, files made by Writer). `name` appears in errors.
  static Reader from_bytes(std::vector<uint8_t> bytes, std::string name = "<memory>",
                           const ReaderLimits& limits = {});

  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;
  ~Reader();

  const std::string& name() const noexcept { return name_; }  // path or given name
  uint32_t version() const noexcept { return version_; }
  uint64_t alignment() const noexcept { return alignment_; }
  uint64_t data_offset() const noexcept { return data_offset_; }  // start of the data section
  uint64_t file_size() const noexcept;

  // ---- metadata ----
  // All entries in file order (for `vkllm info`).
  const std::vector<KeyValue>& metadata() const noexcept { return kvs_; }
  const Value* find(std::string_view key) const noexcept;
  bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }

  // Typed getters: throw InvalidModel naming the key when it is missing or has another type.
  const std::string& get_string(std::string_view key) const;
  // Any integer type whose value fits in uint32 (negative or too big -> InvalidModel).
  uint32_t get_u32(std::string_view key) const;
  // Any integer type whose value fits.
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  // F32, or F64 (converted).
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // Exact element types (spec: tokens string[], scores f32[], token_type i32[]). An array of
  // another element type is rejected, never reinterpreted (hostile-file case A12).
  std::span<const std::string> get_string_array(std::string_view key) const;
  std::span<const float> get_f32_array(std::string_view key) const;
  std::span<const int32_t> get_i32_array(std::string_view key) const;
  // Any integer element type, each value widened (u64 above INT64_MAX -> InvalidModel).
  std::vector<int64_t> get_int_array(std::string_view key) const;

  // A per-layer hyperparameter stored either as one integer (same for every layer) or as an
  // integer array of exactly `n_layers` elements (llama.cpp's "key or array" convention).
  // Each value must fit in u32; a shorter or longer array throws InvalidModel naming the key.
  // n_layers above kMaxPerLayerCount throws InvalidRequest (bound it by the engine's limit first).
  std::vector<uint32_t> get_u32_per_layer(std::string_view key, uint32_t n_layers) const;

  // Optional variants: nullopt when the key is absent; still throw on a wrong type.
  // Note: `for (auto& t : *r.find_string_array(k))` iterates a destroyed temporary; bind the
  // optional to a variable first (or use get_* after contains()).
  std::optional<std::string> find_string(std::string_view key) const;
  std::optional<uint32_t> find_u32(std::string_view key) const;
  std::optional<uint64_t> find_u64(std::string_view key) const;
  std::optional<int64_t> find_i64(std::string_view key) const;
  std::optional<float> find_f32(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;
  std::optional<std::span<const std::string>> find_string_array(std::string_view key) const;
  std::optional<std::span<const float>> find_f32_array(std::string_view key) const;
  std::optional<std::span<const int32_t>> find_i32_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> find_int_array(std::string_view key) const;

  // ---- tensors ----
  // All tensor infos in file order.
  const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const noexcept;
  // Throws InvalidModel naming the tensor when absent.
  const TensorInfo& tensor(std::string_view name) const;
  // Same, and checks the shape (ggml order, dims[0] first; n_dims must match too): throws
  // InvalidModel naming the tensor, the expected and the actual shape.
  const TensorInfo& tensor(std::string_view name, std::span<const uint64_t> expected_dims) const;
  // The tensor's bytes (n_bytes long) inside the mapped file. `info` must come from this
  // Reader (checked: anything else throws InvalidRequest).
  std::span<const uint8_t> tensor_data(const TensorInfo& info) const;
  // The whole file.
  std::span<const uint8_t> bytes() const noexcept;

 private:
  Reader(std::unique_ptr<Mapping> mapping, std::string name, const ReaderLimits& limits);
  const Value& require(std::string_view key) const;

  std::unique_ptr<Mapping> mapping_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> kvs_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> kv_index_;      // key -> index in kvs_
  std::map<std::string, size_t, std::less<>> tensor_index_;  // name -> index in tensors_

  friend class Parser;
};

}  // namespace vkllm::gguf
