// ggml tensor type table and checked tensor byte sizes.
// Knows nothing of files, readers or devices: pure facts about block formats.
#include "engine/gguf/types.hpp"

#include <array>
#include <limits>

namespace vkllm::gguf {
namespace {

using T = TensorType;

// Block geometry from ggml's block structs (ggml-common.h): QK_K = 256 for the K and IQ
// families, 32 for the legacy quants.
constexpr std::array<TypeTraits, 31> kTable{{
    {T::kF32, "f32", 1, 4, true},
    {T::kF16, "f16", 1, 2, true},
    {T::kQ4_0, "q4_0", 32, 18, true},
    {T::kQ4_1, "q4_1", 32, 20, true},
    {T::kQ5_0, "q5_0", 32, 22, true},
    {T::kQ5_1, "q5_1", 32, 24, true},
    {T::kQ8_0, "q8_0", 32, 34, true},
    {T::kQ8_1, "q8_1", 32, 36, false},
    {T::kQ2_K, "q2_K", 256, 84, true},
    {T::kQ3_K, "q3_K", 256, 110, true},
    {T::kQ4_K, "q4_K", 256, 144, true},
    {T::kQ5_K, "q5_K", 256, 176, true},
    {T::kQ6_K, "q6_K", 256, 210, true},
    {T::kQ8_K, "q8_K", 256, 292, false},
    {T::kIQ2_XXS, "iq2_xxs", 256, 66, false},
    {T::kIQ2_XS, "iq2_xs", 256, 74, false},
    {T::kIQ3_XXS, "iq3_xxs", 256, 98, false},
    {T::kIQ1_S, "iq1_s", 256, 50, false},
    {T::kIQ4_NL, "iq4_nl", 32, 18, true},
    {T::kIQ3_S, "iq3_s", 256, 110, false},
    {T::kIQ2_S, "iq2_s", 256, 82, false},
    {T::kIQ4_XS, "iq4_xs", 256, 136, true},
    {T::kI8, "i8", 1, 1, false},
    {T::kI16, "i16", 1, 2, false},
    {T::kI32, "i32", 1, 4, false},
    {T::kI64, "i64", 1, 8, false},
    {T::kF64, "f64", 1, 8, false},
    {T::kIQ1_M, "iq1_m", 256, 56, false},
    {T::kBF16, "bf16", 1, 2, true},
    {T::kTQ1_0, "tq1_0", 256, 54, false},
    {T::kTQ2_0, "tq2_0", 256, 66, false},
}};
// MXFP4 (id 39) is kept apart so the table above stays dense-ish and sorted.
constexpr TypeTraits kMxfp4{T::kMXFP4, "mxfp4", 32, 17, true};

constexpr std::array<TensorType, 16> kCpuSupported{
    T::kF32,  T::kF16,  T::kBF16, T::kQ8_0, T::kQ4_0,   T::kQ4_1,   T::kQ5_0, T::kQ5_1,
    T::kQ2_K, T::kQ3_K, T::kQ4_K, T::kQ5_K, T::kQ6_K, T::kIQ4_NL, T::kIQ4_XS, T::kMXFP4};

}  // namespace

std::optional<TypeTraits> type_traits(uint32_t type_id) noexcept {
  if (type_id == static_cast<uint32_t>(T::kMXFP4)) return kMxfp4;
  for (const TypeTraits& t : kTable) {
    if (static_cast<uint32_t>(t.type) == type_id) return t;
  }
  return std::nullopt;
}

const TypeTraits& traits(TensorType type) noexcept {
  if (type == T::kMXFP4) return kMxfp4;
  for (const TypeTraits& t : kTable) {
    if (t.type == type) return t;
  }
  return kTable[0];  // unreachable for enum values; keeps the function total
}

std::string type_name(uint32_t type_id) {
  if (auto t = type_traits(type_id)) return std::string(t->name);
  return "type#" + std::to_string(type_id);
}

bool is_removed_type(uint32_t type_id) noexcept {
  return type_id == 4 || type_id == 5 || (type_id >= 31 && type_id <= 33) ||
         (type_id >= 36 && type_id <= 38);
}

std::span<const TensorType> cpu_supported_types() noexcept { return kCpuSupported; }

std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) noexcept {
  if (a > std::numeric_limits<uint64_t>::max() - b) return std::nullopt;
  return a + b;
}

std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

std::optional<uint64_t> checked_align_up(uint64_t value, uint64_t alignment) noexcept {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) return std::nullopt;
  auto bumped = checked_add(value, alignment - 1);
  if (!bumped) return std::nullopt;
  return *bumped & ~(alignment - 1);
}

std::optional<uint64_t> tensor_bytes(TensorType type, uint64_t row_elements,
                                     uint64_t n_elements) noexcept {
  const TypeTraits& t = traits(type);
  if (t.block_size == 0) return std::nullopt;
  if (row_elements % t.block_size != 0) return std::nullopt;
  if (n_elements % t.block_size != 0) return std::nullopt;
  return checked_mul(n_elements / t.block_size, t.block_bytes);
}

}  // namespace vkllm::gguf
