#version 450
#extension GL_GOOGLE_include_directive : require
// The attention block's input stage in one pass, after the fused QKV matmul: for each token t and
// each head of qkv[t] = [q heads | k heads | v heads] (row stride pc.qkv_stride):
//   q head: (QK_NORM: RMSNorm over the head with q_norm) -> RoPE -> q_out[t, head]
//   k head: (QK_NORM: RMSNorm with k_norm) -> RoPE -> k_pool[slot_mapping[t], head]
//   v head: copied -> v_pool[slot_mapping[t], head]
// A slot >= pc.num_slots (a padding token) writes no K/V. Grid y = token; a workgroup takes
// HPW = max(1, WG_SIZE / half_dim) consecutive heads (grid x walks them), LANES = WG_SIZE / HPW
// invocations each, so small heads share a workgroup (lavapipe pays per workgroup). The same
// arithmetic as rms_norm.comp (per head row; its sum in another order), rope.comp and
// kv_write.comp, which the tests run as the unfused reference.
#include "common.glsl"
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

shared float ss_sh[WG_SIZE];  // QK_NORM: each lane's sum of squares

void main() {
  const uint half_dim = pc.half_dim, hd = 2 * half_dim;
  const uint hpw = max(1u, WG_SIZE / half_dim), lanes = WG_SIZE / hpw;
  const uint tid = gl_LocalInvocationID.x;
  const uint lh = tid / lanes, lane = tid % lanes;
  const uint head = gl_WorkGroupID.x * hpw + lh;
  const uint t = gl_WorkGroupID.y;
  const uint n_all = pc.n_heads + 2 * pc.n_kv_heads;
  const bool in_range = lh < hpw && head < n_all && t < pc.ntok;
  const uint kind = head < pc.n_heads ? 0 : (head < pc.n_heads + pc.n_kv_heads ? 1 : 2);
  const uint src = t * pc.qkv_stride + head * hd;
  const uint slot = in_range ? slot_mapping[t] : 0;
  const bool write = in_range && (kind == 0 || slot < pc.num_slots);
  uint dst = 0;
  if (kind == 0) {
    dst = (t * pc.n_heads + head) * hd;
  } else {
    const uint kv_head = head - pc.n_heads - (kind == 2 ? pc.n_kv_heads : 0);
    dst = slot * pc.n_kv_heads * hd + kv_head * hd;
  }

  float scale = 1.0;
  if (QK_NORM != 0) {
    // Workgroup-uniform branch: every invocation reaches the barrier.
    float ss = 0.0;
    if (in_range) {
      for (uint e = lane; e < hd; e += lanes) {
        const float v = qkv[src + e];
        ss += v * v;
      }
    }
    ss_sh[tid] = ss;
    barrier();
    float total = 0.0;
    for (uint l = 0; l < lanes && lh < hpw; ++l) total += ss_sh[lh * lanes + l];
    scale = inversesqrt(total / float(hd) + pc.eps);
  }
  if (!write) return;
  if (kind == 2) {
    for (uint e = lane; e < hd; e += lanes) v_pool[dst + e] = KV_TYPE(qkv[src + e]);
    return;
  }
  const float position = float(positions[t]);
  // Partial rotary (pc.rot_half < half_dim): pairs past the rotated dims pass through (normed).
  for (uint i = lane; i < half_dim; i += lanes) {
    const bool rotated = i < pc.rot_half;
    const uvec2 e = rotated ? rope_pair(0, i, pc.rot_half) : uvec2(2 * i, 2 * i + 1);
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
    // LongRoPE's attention factor scales the rotated pairs only (llama.cpp's rope mscale): with
    // partial rotary the pass-through dims keep their size.
    const vec2 r = rotated ? rope_rotate(x0, x1, position * inv_freq[i]) * pc.mscale : vec2(x0, x1);
    if (kind == 0) {
      q_out[dst + e.x] = r.x;
      q_out[dst + e.y] = r.y;
    } else {
      k_pool[dst + e.x] = KV_TYPE(r.x);
      k_pool[dst + e.y] = KV_TYPE(r.y);
    }
  }
}
