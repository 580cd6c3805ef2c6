#version 450
#extension GL_GOOGLE_include_directive : require
// Activations for the integer-dot GEMV (matmul.comp INTDOT): x f32 in blocks of 32 consecutive
// elements (rows are whole blocks) -> per block an int8 code per element, code = roundEven(x / d)
// with d = max |x| / 127, packed 4 a word in element order, and (d, d * sum of codes). One
// output buffer: the codes (pc.n * 8 words), then the pairs (pc.n vec2s). pc.n: blocks.
// One block per invocation; the CPU mirror is ops::quantize_q8_reference.
#include "common.glsl"
#define PUSH_ELEMENTWISE
#include "push_constants.glsl"

layout(binding = 0) readonly buffer X { vec4 x4[]; };
layout(binding = 1) writeonly buffer Q { uint q[]; };
layout(binding = 1) writeonly buffer D { vec2 qd[]; };

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint b = gl_GlobalInvocationID.x; b < pc.n; b += stride) {
    vec4 v[8];
    float amax = 0.0;
    [[unroll]] for (uint j = 0; j < 8u; ++j) {
      v[j] = x4[8u * b + j];
      const vec4 a = abs(v[j]);
      amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    const float d = amax / 127.0;
    const float inv = amax > 0.0 ? 127.0 / amax : 0.0;
    int sum = 0;
    [[unroll]] for (uint j = 0; j < 8u; ++j) {
      const ivec4 c = clamp(ivec4(roundEven(v[j] * inv)), ivec4(-127), ivec4(127));
      sum += c.x + c.y + c.z + c.w;
      q[8u * b + j] = uint(c.x & 0xFF) | (uint(c.y & 0xFF) << 8) | (uint(c.z & 0xFF) << 16) |
                      (uint(c.w & 0xFF) << 24);
    }
    qd[4u * pc.n + b] = vec2(d, d * float(sum));
  }
}
