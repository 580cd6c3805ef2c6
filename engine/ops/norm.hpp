// Row-wise ops over [nrows, ncols] f32 matrices: RMSNorm, LayerNorm and softmax. Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"

namespace vkllm::ops {

// out[r, c] = x[r, c] / sqrt(mean_c(x[r]^2) + eps) * w[c]
void record_rms_norm(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan out,
                     std::uint32_t ncols, std::uint32_t nrows, float eps);
// out[r, c] += x[r, c] / sqrt(mean_c(x[r]^2) + eps) * w[c]: a norm added to a residual (Gemma's
// post-norms). out must not overlap x.
void record_rms_norm_add(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan out,
                         std::uint32_t ncols, std::uint32_t nrows, float eps);
// LayerNorm: out[r, c] = (x[r, c] - mean_c(x[r])) / sqrt(var_c(x[r]) + eps) * w[c] + b[c]
void record_layer_norm(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan b,
                       BufferSpan out, std::uint32_t ncols, std::uint32_t nrows, float eps);
// out[r, c] = softmax_c(scale * x[r, c])
void record_softmax(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out,
                    std::uint32_t ncols, std::uint32_t nrows, float scale);

}  // namespace vkllm::ops
