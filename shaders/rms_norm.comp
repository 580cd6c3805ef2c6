#version 450
#extension GL_GOOGLE_include_directive : require
// RMSNorm over rows of x[nrows, ncols] (f32): out = x / sqrt(mean(x^2) + eps) * w.
// One workgroup per row (2D grid for > 65535 rows is not needed: rows are tokens in a step).
#include "common.glsl"
#include "reduce.glsl"
#define PUSH_ROWS
#include "push_constants.glsl"

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { float w[]; };
layout(binding = 2) writeonly buffer Out { float o[]; };

void main() {
  const uint row = gl_WorkGroupID.x;
  const uint base = row * pc.ncols;
  float ss = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    const float v = x[base + c];
    ss += v * v;
  }
  ss = wg_sum(ss);
  const float scale = inversesqrt(ss / float(pc.ncols) + pc.param);
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    o[base + c] = x[base + c] * scale * w[c];
  }
}
