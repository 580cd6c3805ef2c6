#version 450
#extension GL_GOOGLE_include_directive : require
// Elementwise binary ops on f32: out = a OP b. One row of the variant table per OP.
// OP_ADD_BIAS broadcasts b (one row of ncols) over the rows of a. OP_GELU is unary (b unread).
#include "common.glsl"
#if defined(OP_ADD_BIAS)
#define PUSH_BIAS
#else
#define PUSH_ELEMENTWISE
#endif
#include "push_constants.glsl"

layout(binding = 0) readonly buffer A { float a[]; };
layout(binding = 1) readonly buffer B { float b[]; };
layout(binding = 2) writeonly buffer Out { float o[]; };

void main() {
  // Grid-stride loop: any n with a dispatch capped at the device's group-count limit.
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
#if defined(OP_ADD)
    o[i] = a[i] + b[i];
#elif defined(OP_MUL)
    o[i] = a[i] * b[i];
#elif defined(OP_SILU_MUL)
    // silu(g) = g / (1 + exp(-g)); exp overflows to inf for g < -88 and the quotient is -0.
    const float g = a[i];
    o[i] = g / (1.0 + exp(-g)) * b[i];
#elif defined(OP_ADD_BIAS)
    o[i] = a[i] + b[i % pc.ncols];
#elif defined(OP_GELU)
    // GELU's tanh form (BERT's FFN, as llama.cpp computes it); tanh's argument is clamped where
    // it is 1 or -1 in f32 anyway, so no exp inside tanh overflows.
    const float v = a[i];
    const float t = clamp(0.7978845608 * (v + 0.044715 * v * v * v), -10.0, 10.0);
    o[i] = 0.5 * v * (1.0 + tanh(t));
#else
#error "elementwise.comp: define OP_ADD, OP_MUL, OP_SILU_MUL, OP_ADD_BIAS or OP_GELU"
#endif
  }
}
