// GGUF v3 writer: metadata of any value type and tensors in any known type, alignment padded.
// Knows nothing of model architectures; used by tests, tools and (later) quantization.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/gguf/types.hpp"

namespace vkllm::gguf {

// Builds a file in memory: header, metadata in insertion order, tensor infos, then each
// tensor's data padded to the alignment. Misuse (bad sizes, duplicate tensor names) throws
// vkllm::InvalidRequest. The result always parses with Reader when the metadata is valid.
class Writer {
 public:
  // `alignment`: a power of two, multiple of 8. A value other than 32 (the GGUF default)
  // is recorded as `general.alignment` unless that key is set explicitly.
  explicit Writer(uint32_t alignment = kDefaultAlignment);

  // Adds a key, or replaces the value of an existing one in place (order kept).
  // Setting `general.alignment` writes the value given, whatever the writer pads to (lets
  // tests build inconsistent files); normally leave it to the constructor.
  void set(std::string key, Value value);
  void set_string(std::string key, std::string v) { set(std::move(key), Value::string(std::move(v))); }
  void set_u32(std::string key, uint32_t v) { set(std::move(key), Value::u32(v)); }
  void set_i32(std::string key, int32_t v) { set(std::move(key), Value::i32(v)); }
  void set_f32(std::string key, float v) { set(std::move(key), Value::f32(v)); }
  void set_bool(std::string key, bool v) { set(std::move(key), Value::boolean(v)); }
  // Drops every key that starts with `prefix` (e.g. "tokenizer." to swap in another vocabulary).
  void erase_prefix(std::string_view prefix);

  // A tensor from raw bytes already in `type`'s block format. dims follow ggml (dims[0] is
  // the row length), 1 to 4 of them, each > 0; data.size() must equal the tensor's bytes.
  void add_tensor(std::string name, std::vector<uint64_t> dims, TensorType type,
                  std::vector<uint8_t> data);
  // A tensor from f32 values, converted to `type` with this module's quantizers (types
  // listed by cpu_supported_types()).
  void add_tensor_f32(std::string name, std::vector<uint64_t> dims, std::span<const float> values,
                      TensorType type);

  std::vector<uint8_t> to_bytes() const;
  // Writes to a temporary file beside `path`, then renames it into place.
  void write_file(const std::filesystem::path& path) const;

  uint32_t alignment() const noexcept { return alignment_; }

 private:
  std::vector<uint8_t> header_bytes() const;
  struct PendingTensor {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };

  uint32_t alignment_;
  std::vector<KeyValue> kvs_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace vkllm::gguf
