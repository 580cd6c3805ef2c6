#version 450
#extension GL_GOOGLE_include_directive : require
// The router of a Mixture-of-Experts layer (docs/ARCHITECTURE.md "Mixture of experts"), one
// workgroup for the whole step:
//   1. each token's n_used experts: the largest logits (ties: the lower expert), and their
//      weights: the softmax over all experts (gating 0) or over the chosen ones (gating 1),
//      scaled to sum to 1 where pc.norm says (the sum clamped at 2^-14, as llama.cpp does);
//   2. the pairs (token t, slot j) -> p = t * n_used + j grouped by expert: counts[e], their
//      exclusive prefix offsets[e], and entries[offsets[e] ..] the expert's pairs in ascending
//      order; and the experts with any pair, ascending (active_experts, n_active), so the expert matmuls'
//      grid covers min(n_expert, pairs) experts, not all of them. The order depends on nothing but the choices: the expert matmuls that read it
//      give each pair the same sums whatever else the step holds.
// A NaN logit counts as -inf (never chosen over a number, weight 0), and every token gets n_used
// distinct experts, so the counts always add up to the pairs.
#include "common.glsl"
#define PUSH_MOE_ROUTE
#include "push_constants.glsl"

layout(binding = 0) readonly buffer Logits { float logits[]; };
layout(binding = 1) coherent buffer Route { uint route[]; };

const uint kMaxExperts = 512;  // ModelConfig refuses more
shared uint offs_[kMaxExperts];

float logit(uint i) {
  const float v = logits[i];
  return isnan(v) ? -1.0 / 0.0 : v;
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint k = pc.n_used;
  const uint pairs = pc.ntok * k;
  for (uint t = tid; t < pc.ntok; t += WG_SIZE) {
    const uint row = t * pc.stride;
    float mx = -1.0 / 0.0;
    for (uint e = 0; e < pc.n_expert; ++e) mx = max(mx, logit(row + e));
    float total = 0.0;
    for (uint e = 0; e < pc.n_expert; ++e) total += exp(logit(row + e) - mx);
    uint taken[kMaxExperts / 32];
    [[unroll]] for (uint i = 0; i < kMaxExperts / 32; ++i) taken[i] = 0;
    float chosen = 0.0, top = 0.0;
    for (uint j = 0; j < k; ++j) {
      uint best = 0xffffffffu;
      float bv = 0.0;
      for (uint e = 0; e < pc.n_expert; ++e) {
        if ((taken[e >> 5] & (1u << (e & 31u))) != 0) continue;
        const float v = logit(row + e);
        if (best == 0xffffffffu || v > bv) {
          best = e;
          bv = v;
        }
      }
      taken[best >> 5] |= 1u << (best & 31u);
      if (j == 0) top = bv;
      const float w = pc.gating == 0 ? exp(bv - mx) / total : exp(bv - top);
      route[pc.sel + t * k + j] = best;
      route[pc.weights + t * k + j] = floatBitsToUint(w);
      chosen += w;
    }
    if (pc.gating == 1 || pc.norm != 0) {
      const float inv = 1.0 / max(chosen, 6.103515625e-5);
      for (uint j = 0; j < k; ++j) {
        const uint at = pc.weights + t * k + j;
        route[at] = floatBitsToUint(uintBitsToFloat(route[at]) * inv);
      }
    }
  }
  memoryBarrierBuffer();
  barrier();
  for (uint e = tid; e < pc.n_expert; e += WG_SIZE) {
    uint n = 0;
    for (uint p = 0; p < pairs; ++p) n += route[pc.sel + p] == e ? 1u : 0u;
    route[pc.counts + e] = n;
    offs_[e] = n;
  }
  barrier();
  if (tid == 0) {
    uint sum = 0, found = 0;
    for (uint e = 0; e < pc.n_expert; ++e) {
      const uint n = offs_[e];
      offs_[e] = sum;
      route[pc.offsets + e] = sum;
      sum += n;
      if (n > 0) route[pc.active_experts + found++] = e;
    }
    route[pc.n_active] = found;
  }
  barrier();
  for (uint e = tid; e < pc.n_expert; e += WG_SIZE) {
    uint at = pc.entries + offs_[e];
    for (uint p = 0; p < pairs; ++p) {
      if (route[pc.sel + p] == e) route[at++] = p;
    }
  }
}
