#version 450
#extension GL_GOOGLE_include_directive : require
// KV write through a slot mapping: row t of k_new/v_new ([ntok, kv_dim] f32) goes to row
// slot_mapping[t] of the pools ([num_slots, kv_dim], KV_F32 or KV_F16). A slot >= num_slots
// (e.g. ~0u for a padding token of a replayed batch) is skipped. Grid-stride over elements.
#include "common.glsl"
#define PUSH_KV_WRITE
#include "push_constants.glsl"

#if defined(KV_F16)
// 16-bit storage: the host checks caps().fp16_storage before choosing this variant.
#extension GL_EXT_shader_16bit_storage : require
#define KV_TYPE float16_t
#elif defined(KV_F32)
#define KV_TYPE float
#else
#error "kv_write.comp: define KV_F32 or KV_F16"
#endif

layout(binding = 0) readonly buffer KNew { float k_new[]; };
layout(binding = 1) readonly buffer VNew { float v_new[]; };
layout(binding = 2) readonly buffer Slots { uint slot_mapping[]; };
layout(binding = 3) writeonly buffer KPool { KV_TYPE k_pool[]; };
layout(binding = 4) writeonly buffer VPool { KV_TYPE v_pool[]; };

void main() {
  const uint n = pc.ntok * pc.kv_dim;
  const uint stride = gl_NumWorkGroups.x * WG_SIZE;
  for (uint i = gl_GlobalInvocationID.x; i < n; i += stride) {
    const uint t = i / pc.kv_dim;
    const uint slot = slot_mapping[t];
    if (slot >= pc.num_slots) continue;
    const uint dst = slot * pc.kv_dim + (i - t * pc.kv_dim);
    k_pool[dst] = KV_TYPE(k_new[i]);
    v_pool[dst] = KV_TYPE(v_new[i]);
  }
}
