#version 450
#extension GL_GOOGLE_include_directive : require
// The overlapped loop's token feed (docs/ARCHITECTURE.md, the overlapped loop): token i whose
// feed[i] names a sample row takes the id the step before drew for that row, so step t + 1 runs
// without its ids passing through the host. feed[i] == 0xffffffff keeps the host's id. The host
// checks every named row against the rows the step before drew.
#include "common.glsl"
#define PUSH_ELEMENTWISE
#include "push_constants.glsl"

layout(binding = 0) readonly buffer Feed { uint feed[]; };
layout(binding = 1) readonly buffer Prev { uint prev[]; };
layout(binding = 2) buffer Ids { uint ids[]; };

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
    const uint f = feed[i];
    if (f != 0xffffffffu) ids[i] = prev[f];
  }
}
