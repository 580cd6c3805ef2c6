#version 450
#extension GL_GOOGLE_include_directive : require
// The attention block's input stage in one pass, after the fused QKV matmul: for each token t and
// each head of qkv[t] = [q heads | k heads | v heads] (row stride pc.qkv_stride):
//   q head: (QK_NORM: RMSNorm over the head with q_norm) -> RoPE -> q_out[t, head]
//   k head: (QK_NORM: RMSNorm with k_norm) -> RoPE -> k_pool[slot_mapping[t], head]
//   v head: copied -> v_pool[slot_mapping[t], head]
// A slot >= pc.num_slots (a padding token) writes no K/V. One workgroup per (head, token): grid x
// = n_heads + 2 * n_kv_heads, y = token. The same arithmetic as rms_norm.comp (per head row),
// rope.comp and kv_write.comp, which the tests run as the unfused reference.
#include "common.glsl"
#include "reduce.glsl"
#define PUSH_ROPE_KV
#include "push_constants.glsl"
#include "rope.glsl"

#if defined(KV_F16)
// 16-bit storage: the host checks caps().fp16_storage before choosing this variant.
#extension GL_EXT_shader_16bit_storage : require
#define KV_TYPE float16_t
#elif defined(KV_F32)
#define KV_TYPE float
#else
#error "rope_kv.comp: define KV_F32 or KV_F16"
#endif

layout(constant_id = 1) const uint QK_NORM = 0;

layout(binding = 0) readonly buffer Qkv { float qkv[]; };
layout(binding = 1) readonly buffer Pos { uint positions[]; };
layout(binding = 2) readonly buffer Freq { float inv_freq[]; };
layout(binding = 3) readonly buffer Slots { uint slot_mapping[]; };
layout(binding = 4) writeonly buffer QOut { float q_out[]; };
layout(binding = 5) writeonly buffer KPool { KV_TYPE k_pool[]; };
layout(binding = 6) writeonly buffer VPool { KV_TYPE v_pool[]; };
layout(binding = 7) readonly buffer QNorm { float q_norm[]; };
layout(binding = 8) readonly buffer KNorm { float k_norm[]; };

void main() {
  const uint head = gl_WorkGroupID.x;
  const uint t = gl_WorkGroupID.y;
  if (t >= pc.ntok) return;
  const uint half_dim = pc.half_dim, hd = 2 * half_dim;
  const uint kind = head < pc.n_heads ? 0 : (head < pc.n_heads + pc.n_kv_heads ? 1 : 2);
  const uint src = t * pc.qkv_stride + head * hd;
  const uint slot = slot_mapping[t];
  if (kind != 0 && slot >= pc.num_slots) return;  // workgroup-uniform
  uint dst;
  if (kind == 0) {
    dst = (t * pc.n_heads + head) * hd;
  } else {
    const uint kv_head = head - pc.n_heads - (kind == 2 ? pc.n_kv_heads : 0);
    dst = slot * pc.n_kv_heads * hd + kv_head * hd;
  }

  if (kind == 2) {
    for (uint e = gl_LocalInvocationID.x; e < hd; e += WG_SIZE) v_pool[dst + e] = KV_TYPE(qkv[src + e]);
    return;
  }
  float scale = 1.0;
  if (QK_NORM != 0) {
    float ss = 0.0;
    for (uint e = gl_LocalInvocationID.x; e < hd; e += WG_SIZE) {
      const float v = qkv[src + e];
      ss += v * v;
    }
    ss = wg_sum(ss);
    scale = inversesqrt(ss / float(hd) + pc.eps);
  }
  const float position = float(positions[t]);
  for (uint i = gl_LocalInvocationID.x; i < half_dim; i += WG_SIZE) {
    const uvec2 e = rope_pair(0, i, half_dim);
    float x0 = qkv[src + e.x], x1 = qkv[src + e.y];
    if (QK_NORM != 0) {
      if (kind == 0) {
        x0 = x0 * scale * q_norm[e.x];
        x1 = x1 * scale * q_norm[e.y];
      } else {
        x0 = x0 * scale * k_norm[e.x];
        x1 = x1 * scale * k_norm[e.y];
      }
    }
    const vec2 r = rope_rotate(x0, x1, position * inv_freq[i]);
    if (kind == 0) {
      q_out[dst + e.x] = r.x;
      q_out[dst + e.y] = r.y;
    } else {
      k_pool[dst + e.x] = KV_TYPE(r.x);
      k_pool[dst + e.y] = KV_TYPE(r.y);
    }
  }
}
