#version 450
#extension GL_GOOGLE_include_directive : require
// Elementwise binary ops on f32: out = a OP b. One row of the variant table per OP.
// OP_ADD_BIAS broadcasts b (one row of ncols) over the rows of a. OP_GELU, OP_SCALE (a times
// pc.param) and OP_SOFTCAP (pc.param * tanh(a / pc.param)) are unary (b unread).
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
    o[i] = gelu_tanh(a[i]);
#elif defined(OP_SCALE)
    o[i] = a[i] * pc.param;
#elif defined(OP_SOFTCAP)
    // cap * tanh(x / cap), the argument clamped where tanh is +-1 in f32 (no overflow inside).
    o[i] = pc.param * tanh(clamp(a[i] / pc.param, -10.0, 10.0));
#else
#error "elementwise.comp: define OP_ADD, OP_MUL, OP_SILU_MUL, OP_ADD_BIAS, OP_GELU, OP_SCALE or OP_SOFTCAP"
#endif
  }
}
