// CPU references of the weight kernels (products with weights in GGUF block formats, row gathers)
// on weights already dequantized by gguf::dequantize, and random weights that exercise every
// field of the block formats. Knows no Vulkan.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "engine/gguf/types.hpp"

namespace vkllm::ref {

// Every weight type the kernels read (ops::weight_type_supported), for the tests that run them all.
inline constexpr gguf::TensorType kKernelTypes[] = {
    gguf::TensorType::kF32,  gguf::TensorType::kF16,  gguf::TensorType::kBF16,
    gguf::TensorType::kQ8_0, gguf::TensorType::kQ4_0, gguf::TensorType::kQ4_1,
    gguf::TensorType::kQ5_0, gguf::TensorType::kQ5_1, gguf::TensorType::kQ2_K,
    gguf::TensorType::kQ3_K, gguf::TensorType::kQ4_K, gguf::TensorType::kQ5_K,
    gguf::TensorType::kQ6_K, gguf::TensorType::kIQ4_NL, gguf::TensorType::kIQ4_XS,
    gguf::TensorType::kMXFP4};

// y[t * nrows + r] = sum_c w[r * ncols + c] * x[t * ncols + c] for t < ntok, accumulated in
// double. w: [nrows, ncols], x: [ntok, ncols], y: [ntok, nrows].
void matmul(std::span<const float> w, std::span<const float> x, std::span<float> y,
            std::uint32_t ncols, std::uint32_t nrows, std::uint32_t ntok);

// The values the integer-dot GEMV multiplies: x in blocks of 32 rounded to int8 codes times
// d = max |x| / 127 per block (code = roundEven(x * 127 / max |x|), shaders/quantize_q8.comp).
std::vector<float> q8_activations(std::span<const float> x);

// out[t * ncols + c] = w[ids[t] * ncols + c], or 0 when ids[t] >= nrows.
void get_rows(std::span<const float> w, std::span<const std::uint32_t> ids, std::span<float> out,
              std::uint32_t ncols, std::uint32_t nrows);

// Random [nrows, ncols] weights quantized to `type` (gguf::quantize) and the values the blocks
// hold (gguf::dequantize). Each run of 16 values gets its own magnitude and offset, so block and
// sub-block scales and mins differ.
struct QuantizedWeights {
  std::vector<std::uint8_t> bytes;
  std::vector<float> values;
};
QuantizedWeights random_quantized(std::mt19937& rng, gguf::TensorType type, std::uint32_t ncols,
                                  std::uint32_t nrows);

}  // namespace vkllm::ref
