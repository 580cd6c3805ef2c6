// Byte builder for hand-made (often hostile) GGUF files in the gguf tests.
// Knows the GGUF encoding only; no reader logic, so tests do not share the reader's mistakes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace vkllm::gguf::test {

// Appends little-endian fields. Every method returns *this for chaining.
class Bytes {
 public:
  std::vector<uint8_t> data;

  Bytes& u8(uint8_t v) { return raw(&v, 1); }
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& i32(int32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& f32(float v) { return raw(&v, 4); }
  Bytes& zeros(size_t n) {
    data.insert(data.end(), n, 0);
    return *this;
  }
  Bytes& pad_to(size_t alignment) {
    while (data.size() % alignment) data.push_back(0);
    return *this;
  }
  // GGUF string: u64 length then bytes.
  Bytes& str(std::string_view s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  Bytes& raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    data.insert(data.end(), b, b + n);
    return *this;
  }

  // Header: "GGUF", version, tensor count, KV count.
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    raw("GGUF", 4);
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  // KV entries (type ids: u8 0, i8 1, u32 4, i32 5, f32 6, bool 7, string 8, array 9).
  Bytes& kv_u32(std::string_view key, uint32_t v) { return str(key).u32(4).u32(v); }
  Bytes& kv_i32(std::string_view key, int32_t v) { return str(key).u32(5).i32(v); }
  Bytes& kv_string(std::string_view key, std::string_view v) { return str(key).u32(8).str(v); }
  // Array header only: key, type 9, element type, count (elements follow by hand).
  Bytes& kv_array(std::string_view key, uint32_t elem_type, uint64_t count) {
    return str(key).u32(9).u32(elem_type).u64(count);
  }
  // Tensor info: name, n_dims, dims, type id, offset.
  Bytes& tensor(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }

  size_t size() const { return data.size(); }
};

}  // namespace vkllm::gguf::test
