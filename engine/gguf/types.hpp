// ggml tensor type table (ids, block geometry, names) and checked tensor byte sizes.
// Knows nothing of files, readers or devices: pure facts about block formats.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace vkllm::gguf {

// ggml type ids exactly as stored in GGUF tensor infos. Ids 4, 5, 31-33 and 36-38 were
// used by formats ggml removed; they stay out of the enum and are rejected by the reader.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

// One row of the type table.
struct TypeTraits {
  TensorType type;
  std::string_view name;       // ggml's name, e.g. "q4_K"
  uint32_t block_size;         // elements per block
  uint32_t block_bytes;        // bytes per block
  bool cpu_supported;          // this module can dequantize (and quantize) it
};

// The traits of a type id, or nullopt for an id that is removed or unknown.
std::optional<TypeTraits> type_traits(uint32_t type_id) noexcept;
// Same, for a TensorType value (always known).
const TypeTraits& traits(TensorType type) noexcept;
// "q4_K", or "type#<id>" for an unknown id.
std::string type_name(uint32_t type_id);
inline std::string_view type_name(TensorType type) noexcept { return traits(type).name; }
// True for ids ggml used once and removed (4, 5, 31-33, 36-38).
bool is_removed_type(uint32_t type_id) noexcept;
// The types this module dequantizes and quantizes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4).
std::span<const TensorType> cpu_supported_types() noexcept;

// Bytes of a tensor of `n_elements` elements stored as rows of `row_elements` (the fastest
// dimension). nullopt when row_elements is not a multiple of the block size or the result
// does not fit in 64 bits. A zero-element tensor has zero bytes.
std::optional<uint64_t> tensor_bytes(TensorType type, uint64_t row_elements,
                                     uint64_t n_elements) noexcept;

// Checked 64-bit arithmetic used by every size and offset computation of the module.
std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) noexcept;
std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) noexcept;
// Rounds `value` up to a multiple of `alignment` (a nonzero power of two); nullopt on overflow.
std::optional<uint64_t> checked_align_up(uint64_t value, uint64_t alignment) noexcept;

}  // namespace vkllm::gguf
