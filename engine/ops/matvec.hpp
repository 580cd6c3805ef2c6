// Matrix-vector products y = W x with W in f32 or f16, f32 accumulation.
// Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"

namespace vkllm::ops {

enum class WeightType { f32, f16 };

// W: [nrows, ncols] row-major (row stride ncols), x: [ncols] f32, y: [nrows] f32.
void record_matvec(Kernels& k, CommandStream& cs, WeightType type, BufferSpan w, BufferSpan x,
                   BufferSpan y, std::uint32_t ncols, std::uint32_t nrows);

}  // namespace vkllm::ops
