#version 450
#extension GL_GOOGLE_include_directive : require
// Softmax over rows of x[nrows, ncols] (f32), numerically stable: exp(s*x - max) / sum.
// One workgroup per row.
#include "common.glsl"
#include "reduce.glsl"
#define PUSH_ROWS
#include "push_constants.glsl"

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) buffer Out { float o[]; };

void main() {
  const uint base = gl_WorkGroupID.x * pc.ncols;
  float m = -3.402823466e+38;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    m = max(m, pc.param * x[base + c]);
  }
  m = wg_max(m);
  float s = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    const float e = exp(pc.param * x[base + c] - m);
    o[base + c] = e;
    s += e;
  }
  s = wg_sum(s);
  const float inv = 1.0 / s;
  // Each invocation rescales exactly the elements it wrote: no barrier needed on o.
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    o[base + c] *= inv;
  }
}
