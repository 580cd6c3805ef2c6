#version 450
#extension GL_GOOGLE_include_directive : require
// Elementwise binary ops on f32: out = a OP b. One row of the variant table per OP.
#include "common.glsl"
#define PUSH_ELEMENTWISE
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
#else
#error "elementwise.comp: define OP_ADD or OP_MUL"
#endif
  }
}
