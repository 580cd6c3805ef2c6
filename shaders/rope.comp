#version 450
#extension GL_GOOGLE_include_directive : require
// Rotary position embedding, in place on x[ntok, nheads, head_dim] f32. Pair i of token t turns
// by theta = float(positions[t]) * inv_freq[i]. ROPE_NORMAL pairs (x[2i], x[2i+1]) (llama.cpp
// mode 0); ROPE_NEOX pairs (x[i], x[i + head_dim/2]) (llama.cpp NEOX mode). One invocation per
// pair, grid-stride.
#include "common.glsl"
#define PUSH_ROPE
#include "push_constants.glsl"

layout(binding = 0) buffer X { float x[]; };
layout(binding = 1) readonly buffer Pos { uint positions[]; };
layout(binding = 2) readonly buffer Freq { float inv_freq[]; };

void main() {
  const uint n = pc.ntok * pc.nheads * pc.half_dim;
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint p = gl_GlobalInvocationID.x; p < n; p += stride) {
    const uint i = p % pc.half_dim;
    const uint head = p / pc.half_dim;  // token * nheads + head
    const uint t = head / pc.nheads;
    const uint base = head * 2 * pc.half_dim;
#if defined(ROPE_NORMAL)
    const uint i0 = base + 2 * i, i1 = i0 + 1;
#elif defined(ROPE_NEOX)
    const uint i0 = base + i, i1 = i0 + pc.half_dim;
#else
#error "rope.comp: define ROPE_NORMAL or ROPE_NEOX"
#endif
    const float theta = float(positions[t]) * inv_freq[i];
    // Reduce to [-pi, pi] before cos/sin: Vulkan bounds their error only there, and theta reaches
    // thousands of radians at long positions. 2*pi = C1 + C2 with C1 = 201/32 exact in 8 bits,
    // so k * C1 is exact for k < 2^16 and theta - k * C1 is exact (Sterbenz).
    precise const float k = round(theta * 0.15915494309189535);
    precise const float r = (theta - k * 6.28125) - k * 1.9353071795864769e-3;
    const float c = cos(r), s = sin(r);
    const float x0 = x[i0], x1 = x[i1];
    x[i0] = x0 * c - x1 * s;
    x[i1] = x0 * s + x1 * c;
  }
}
