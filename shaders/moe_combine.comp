#version 450
#extension GL_GOOGLE_include_directive : require
// The experts' outputs back into the residual (docs/ARCHITECTURE.md "Mixture of experts"):
// x[t, c] += sum_j w(t, j) * y[t * n_used + j, c], in slot order (the same sums alone or
// batched), plus the shared expert sigmoid(logits[t * stride + gate_col]) * shared[t, c] where
// the layer has one (qwen2moe).
#include "common.glsl"
#define PUSH_MOE_COMBINE
#include "push_constants.glsl"

layout(binding = 0) buffer X { float x[]; };
layout(binding = 1) readonly buffer Y { float y[]; };
layout(binding = 2) readonly buffer Route { uint route[]; };
layout(binding = 3) readonly buffer Logits { float logits[]; };
layout(binding = 4) readonly buffer Shared { float shared_out[]; };

void main() {
  const uint n = pc.ntok * pc.ncols;
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
    const uint t = i / pc.ncols, c = i % pc.ncols;
    float s = 0.0;
    for (uint j = 0; j < pc.n_used; ++j) {
      const uint p = t * pc.n_used + j;
      s += uintBitsToFloat(route[pc.weights + p]) * y[p * pc.ncols + c];
    }
    if (pc.shared_expert != 0) {
      const float g = logits[t * pc.stride + pc.gate_col];
      s += shared_out[i] / (1.0 + exp(-g));
    }
    x[i] += s;
  }
}
