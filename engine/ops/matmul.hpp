// Products with weights in any GGUF type: y = x W^T for a batch of token rows, dequantizing in
// registers with f32 accumulation; and row gathers (embedding lookup). Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"
#include "engine/ops/weight.hpp"

namespace vkllm::ops {

// Weight types the kernels read: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
bool weight_type_supported(const Kernels& k, gguf::TensorType type);

// y[t, r] = sum_c W[r, c] * x[t, c] for t < ntok, r < w.nrows.
// x: [ntok, w.ncols] f32 (row stride w.ncols); y: [ntok, w.nrows] f32 (row stride w.nrows).
// ntok == 1 is the decode (matrix-vector) case; every ntok uses the same entry point and the
// host picks the variant. Throws Unsupported for a type the device cannot read.
void record_matmul(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan x, BufferSpan y,
                   std::uint32_t ntok);

// out[t, c] = W[ids[t], c] dequantized to f32, for t < ntok. ids: ntok u32, each < w.nrows
// (an id out of range writes zeros). out: [ntok, w.ncols] f32.
void record_get_rows(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan ids,
                     BufferSpan out, std::uint32_t ntok);

}  // namespace vkllm::ops
