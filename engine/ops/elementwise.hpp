// Elementwise ops on f32 vectors (out = a + b, out = a * b, GELU, scale, soft-cap) and the token feed of the
// overlapped loop. Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"

namespace vkllm::ops {

// a, b, out: n f32 each. out may alias a or b.
void record_add(Kernels& k, CommandStream& cs, BufferSpan a, BufferSpan b, BufferSpan out,
                std::uint32_t n);
void record_mul(Kernels& k, CommandStream& cs, BufferSpan a, BufferSpan b, BufferSpan out,
                std::uint32_t n);
// out = gelu(x) (tanh form), n f32; out may alias x.
void record_gelu(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out, std::uint32_t n);

// out = x * factor, n f32; out may alias x.
void record_scale(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out, std::uint32_t n,
                  float factor);
// out = cap * tanh(x / cap) (soft-capping), n f32, cap > 0; out may alias x.
void record_softcap(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out, std::uint32_t n,
                    float cap);
// ids[i] = prev[feed[i]] where feed[i] != 0xffffffff (model::kNoFeed), for i < n: the ids one
// step drew, fed to the next step's tokens on the device. The caller checks every feed entry
// against prev's size.
void record_feed_tokens(Kernels& k, CommandStream& cs, BufferSpan feed, BufferSpan prev,
                        BufferSpan ids, std::uint32_t n);

}  // namespace vkllm::ops
