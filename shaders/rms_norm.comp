#version 450
#extension GL_GOOGLE_include_directive : require
// RMSNorm over rows of x[nrows, ncols] (f32): out = x / sqrt(mean(x^2) + eps) * w.
// LAYER_NORM (bert): out = (x - mean(x)) / sqrt(var(x) + eps) * w + b, the variance from a second
// pass over x - mean (no cancellation of large means). ACCUMULATE (Gemma's post-norms): out +=
// the RMSNorm, out a residual distinct from x.
// Grid x: rows (tokens of a step: never past the grid limit); grid y: slices of a row. Each
// workgroup of a row sums the whole row, in the same order, and writes its slice: a decode step's
// few rows spread over several workgroups, and every slice count gives the same bits.
#include "common.glsl"
#include "reduce.glsl"
#define PUSH_ROWS
#include "push_constants.glsl"

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { float w[]; };
#ifdef ACCUMULATE
layout(binding = 2) buffer Out { float o[]; };
#else
layout(binding = 2) writeonly buffer Out { float o[]; };
#endif
#ifdef LAYER_NORM
layout(binding = 3) readonly buffer B { float b[]; };
#endif

void main() {
  const uint row = gl_WorkGroupID.x;
  const uint base = row * pc.ncols;
  float mean = 0.0;
#ifdef LAYER_NORM
  float sum = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) sum += x[base + c];
  mean = wg_sum(sum) / float(pc.ncols);
#endif
  float ss = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    const float v = x[base + c] - mean;
    ss += v * v;
  }
  ss = wg_sum(ss);
  const float scale = inversesqrt(ss / float(pc.ncols) + pc.param);
  const uint per_slice = (pc.ncols + gl_NumWorkGroups.y - 1) / gl_NumWorkGroups.y;
  const uint end = min(pc.ncols, (gl_WorkGroupID.y + 1) * per_slice);
  for (uint c = gl_WorkGroupID.y * per_slice + gl_LocalInvocationID.x; c < end; c += WG_SIZE) {
#ifdef LAYER_NORM
    o[base + c] = (x[base + c] - mean) * scale * w[c] + b[c];
#elif defined(ACCUMULATE)
    o[base + c] += x[base + c] * scale * w[c];
#else
    o[base + c] = x[base + c] * scale * w[c];
#endif
  }
}
