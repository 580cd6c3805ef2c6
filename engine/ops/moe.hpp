// Mixture-of-Experts layers on the device (docs/ARCHITECTURE.md "Mixture of experts"): the
// router's choice (each token's top-k experts and weights, the (token, slot) pairs grouped by
// expert), the grouped expert matmul (ops::record_matmul_experts in matmul.hpp) and the weighted
// sum back into the residual. Knows no Vulkan, no models.
#pragma once

#include <cstdint>

#include "engine/ops/kernels.hpp"

namespace vkllm::ops {

// The route buffer of a step, in 32-bit words at offsets fixed by the largest step (so a
// recording replays at any token count): sel [T * n_used] expert ids, weights [T * n_used] f32,
// counts [n_expert], offsets [n_expert], entries [T * n_used] the pairs grouped by expert,
// active_experts [n_expert] the experts with pairs in ascending order and n_active [1] their number. Pair
// p = t * n_used + j is token t's j-th choice.
struct MoeRouteLayout {
  std::uint32_t n_expert = 0, n_used = 0, max_tokens = 0;
  std::uint32_t sel = 0, weights = 0, counts = 0, offsets = 0, entries = 0, active_experts = 0, n_active = 0;
  std::uint64_t bytes = 0;
};
MoeRouteLayout moe_route_layout(std::uint32_t max_tokens, std::uint32_t n_expert, std::uint32_t n_used);

// The most experts a layer may have (moe_route.comp's shared table).
inline constexpr std::uint32_t kMaxExperts = 512;

// How a token's chosen experts are weighted: the softmax over all experts' logits (Mixtral,
// Qwen-MoE) or over the chosen ones' (gpt-oss); `norm`: the chosen weights scaled to sum to 1.
enum class MoeGating : std::uint32_t { softmax = 0, softmax_chosen = 1 };

// route <- the choice of each of ntok tokens from logits [ntok, stride] (the experts in the first
// layout.n_expert columns). One workgroup.
void record_moe_route(Kernels& k, CommandStream& cs, const MoeRouteLayout& layout, BufferSpan logits,
                      std::uint32_t stride, BufferSpan route, std::uint32_t ntok, MoeGating gating,
                      bool norm);

// The shared expert of a qwen2moe layer: its output [ntok, ncols] and the column of the logits
// that gates it (sigmoid).
struct MoeShared {
  BufferSpan out;
  std::uint32_t gate_col = 0;
};

// x[t, c] += sum_j weight(t, j) * y[t * n_used + j, c] (+ the gated shared expert) for t < ntok,
// c < ncols. y: the down matmul's pair rows [ntok * n_used, ncols].
void record_moe_combine(Kernels& k, CommandStream& cs, const MoeRouteLayout& layout, BufferSpan x,
                        BufferSpan y, BufferSpan route, std::uint32_t ntok, std::uint32_t ncols,
                        BufferSpan logits, std::uint32_t stride, const MoeShared* shared = nullptr);

}  // namespace vkllm::ops
