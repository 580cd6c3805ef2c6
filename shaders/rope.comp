#version 450
#extension GL_GOOGLE_include_directive : require
// Rotary position embedding, in place on x[ntok, nheads, head_dim] f32. Pair i of token t turns
// by theta = float(positions[t]) * inv_freq[i] (rope.glsl). One invocation per pair,
// grid-stride. The model runs rope_kv.comp, which fuses this with the K/V write; this one is
// its unfused reference in the tests.
#include "common.glsl"
#define PUSH_ROPE
#include "push_constants.glsl"
#include "rope.glsl"

layout(binding = 0) buffer X { float x[]; };
layout(binding = 1) readonly buffer Pos { uint positions[]; };
layout(binding = 2) readonly buffer Freq { float inv_freq[]; };

// Partial rotary (pc.rot_half < pc.half_dim): the first 2 rot_half elements of each head rotate as
// a head of that size; the rest are untouched.
void main() {
  const uint n = pc.ntok * pc.nheads * pc.rot_half;
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint p = gl_GlobalInvocationID.x; p < n; p += stride) {
    const uint i = p % pc.rot_half;
    const uint head = p / pc.rot_half;  // token * nheads + head
    const uint t = head / pc.nheads;
    const uvec2 e = rope_pair(head * 2 * pc.half_dim, i, pc.rot_half);
    const vec2 r = rope_rotate(x[e.x], x[e.y], float(positions[t]) * inv_freq[i]);
    x[e.x] = r.x;
    x[e.y] = r.y;
  }
}
