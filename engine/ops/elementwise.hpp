// Elementwise ops on f32 vectors: out = a + b, out = a * b. Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"

namespace vkllm::ops {

// a, b, out: n f32 each. out may alias a or b.
void record_add(Kernels& k, CommandStream& cs, BufferSpan a, BufferSpan b, BufferSpan out,
                std::uint32_t n);
void record_mul(Kernels& k, CommandStream& cs, BufferSpan a, BufferSpan b, BufferSpan out,
                std::uint32_t n);

}  // namespace vkllm::ops
