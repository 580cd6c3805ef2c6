#version 450
#extension GL_GOOGLE_include_directive : require
// ids[r] = the lowest index of the largest value of logits[r, :] (NaN never wins; a row of NaN
// gives 0). One workgroup per row; invocations stride over the columns (coalesced reads).
#include "common.glsl"
#include "reduce.glsl"
#include "argmax.glsl"
#define PUSH_SAMPLE
#include "push_constants.glsl"

layout(binding = 0) readonly buffer Logits { float logits[]; };
layout(binding = 1) writeonly buffer Ids { uint ids[]; };

void main() {
  const uint base = gl_WorkGroupID.x * pc.ncols;
  float best = uintBitsToFloat(0xFF800000u);  // -inf
  uint best_i = kNoIndex;
  for (uint c = gl_LocalInvocationID.x; c < pc.ncols; c += WG_SIZE) {
    argmax_fold(best, best_i, logits[base + c], c);
  }
  const uint id = wg_argmax(best, best_i);
  if (gl_LocalInvocationID.x == 0) ids[gl_WorkGroupID.x] = id == kNoIndex ? 0u : id;
}
