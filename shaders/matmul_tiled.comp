#version 450
#extension GL_GOOGLE_include_directive : require
// y = x W^T for many tokens (prompt processing): a tiled GEMM over one chunk of a weight in its
// GGUF block format (dequant.glsl), f32 in shared memory, f32 accumulation. Same bindings, push
// constants and epilogues as matmul.comp (pc.epilogue: 0 store, 1 accumulate, 2 bias, 3 swiglu,
// 4 geglu, 5 swiglu_oai); which of the two runs is ops::choose_matmul's decision
// (docs/ARCHITECTURE.md, "Matmul paths").
//
// A workgroup computes a BM x BN output tile (BM weight rows, BN tokens). Its K loop walks the
// row in slices of BK = 32 columns: every invocation decodes a few vec4s of the BM x BK weight
// slice and copies a few of the BN x BK activations into shared memory (each weight element is
// decoded once per BN tokens), then each invocation multiplies its own TM x TN register block
// out of shared memory. Shared layout [k][row / 2] as vec2 (rows in (even, odd) pairs: a swiglu
// epilogue's gate and up stay in one invocation) and [k][token / 4] as vec4: a register block
// reads TM / 2 vec2s and TN / 4 vec4s per k for TM x TN multiply-adds, and neighbouring
// invocations read neighbouring pairs (no bank conflicts on GPUs).
//
// Invocation -> register block: rg = the row group (RG = BM / TM of them), tg = the token group.
// With UNIFORM_TG the host has checked that every subgroup lies inside one token group (the
// device's largest subgroup divides RG), and tg is computed from the subgroup's id alone: then
// the compiler knows the activation reads are uniform across the subgroup (one load and a
// broadcast on a CPU device instead of a gather).
//
// INTDOT (the integer-dot GEMM, MMQ style; every type with integer codes, dequant.glsl
// dq_block_codes): x arrives quantized by quantize_q8.comp (int8 codes, a (d, d * sum) per 32
// elements, matmul.comp's INTDOT layout). The K loop walks slices of KB blocks of 32: shared
// memory holds the weight slice as int8 codes (4 a word) with each block's (scale, offset) per
// half, and the activation slice as codes with (d, d * sum) and, for q2_K's offsets, d times the
// code sum of each half. Each product of a register block is 8 packed 4 x 8-bit dot products
// (or 4 per half of 16 where the scales are per 16), scaled once per block:
// sum_e (s c_e + o)(d a_e) = s d sum_e c_e a_e + o d sum_e a_e. Same tiles, register blocks,
// epilogues and invocation mapping as the f32 GEMM; shared memory 96 bytes per tile row and
// token (the f32 GEMM's 128 bound holds).
//
// EXPERTS (experts.glsl; the grouped expert GEMM of a Mixture-of-Experts layer's prompt steps):
// grid.z walks the chunk's experts, grid.y the tiles of BN of each expert's pairs (gathered x
// rows, scattered y rows), grid.x the tiles of BM of one expert's rows.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#ifdef EXPERTS
#define PUSH_MATMUL_EXPERTS
#else
#define PUSH_MATMUL
#endif
#include "push_constants.glsl"

layout(constant_id = 1) const uint BM = 64;  // weight rows per tile
layout(constant_id = 2) const uint BN = 64;  // tokens per tile, a multiple of 4
layout(constant_id = 3) const uint TM = 4;   // rows per invocation, a multiple of 2
layout(constant_id = 4) const uint TN = 4;   // tokens per invocation, a multiple of 4
layout(constant_id = 5) const bool UNIFORM_TG = false;
const uint BK = 32;
const uint RG = BM / TM;  // row groups; (BM / TM) * (BN / TN) == WG_SIZE

layout(binding = 0) readonly buffer Wq { uint wq[]; };
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
layout(binding = 1) readonly buffer XQ { uint xq[]; };
layout(binding = 1) readonly buffer XD { vec2 xd[]; };
#else
layout(binding = 1) readonly buffer X { float x[]; };
#endif
layout(binding = 2) buffer Y { float y[]; };
layout(binding = 3) readonly buffer Aux { float aux[]; };  // epilogues 2 and 5: the bias

#include "dequant.glsl"

#include "experts.glsl"
#include "matmul_io.glsl"

#ifdef INTDOT
#ifdef EXPERTS
#error "INTDOT: the expert GEMMs read f32 activations"
#endif
#if !DQ_INTDOT
#error "INTDOT: this weight type has no integer codes (dequant.glsl, dq_block_codes)"
#endif
const uint KB = 2;  // blocks of 32 per K slice
shared uvec2 wc_[KB * 8 * BM / 2];  // [block][word][row / 2]: the codes of rows (even, odd)
shared vec4 wsm_[KB * 2 * BM / 2];  // [block][half][row / 2]: (scale, offset) of (even, odd)
shared uvec4 xc_[KB * 8 * BN / 4];  // [block][word][token / 4]: component token % 4
shared vec4 xd_[KB * BN];           // [block][token]: d, d * sum, d * sums of the halves
#else
shared vec2 ws_[BK * BM / 2];  // [k][row / 2]: component row % 2
shared vec4 xs_[BK * BN / 4];  // [k][token / 4]: component token % 4
#endif

void main() {
#ifdef EXPERTS
  const uint group = gl_WorkGroupID.x;
  if (!experts_begin(gl_WorkGroupID.y * BN)) return;  // the whole workgroup, before any barrier
#else
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
#endif
  // First row of this tile, in the chunk. A folded grid's tail tile (r0 >= nrows) runs and
  // stores nothing: an early return would put every later access under an execution mask.
  const uint r0 = group * BM;
  const uint tok0 = gl_WorkGroupID.y * BN;
  const uint tid = gl_LocalInvocationID.x;
  const uint row_bytes = (pc.ncols / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;

  uint rg, tg;
  if (UNIFORM_TG) {
    const uint first = gl_SubgroupID * gl_SubgroupSize;  // the subgroup's first lane
    tg = first / RG;
    rg = first % RG + gl_SubgroupInvocationID;
  } else {
    tg = tid / RG;
    rg = tid % RG;
  }

  vec2 acc[TM / 2][TN];  // pair i of rows, token j
  [[unroll]] for (uint i = 0; i < TM / 2; ++i) {
    [[unroll]] for (uint j = 0; j < TN; ++j) acc[i][j] = vec2(0.0);
  }

#ifdef INTDOT
  const uint blocks = pc.ncols / 32u;
  const uint d_base = pc.ntok * pc.ncols / 8u;  // where x's (d, d * sum) start, in vec2s
  for (uint b0 = 0; b0 < blocks; b0 += KB) {
    barrier();  // the previous slice's reads are done
    // The weight slice: BM rows x KB blocks, a block per invocation (rows past the chunk and
    // blocks past the row as zeros).
    for (uint j = tid; j < BM * KB; j += WG_SIZE) {
      const uint r = j / KB, kb = j % KB;
      uint c[8];
      vec4 sm = vec4(0.0);
      [[unroll]] for (uint w = 0; w < 8u; ++w) c[w] = 0u;
      if (r0 + r < pc.nrows && b0 + kb < blocks) {
        dq_block_codes((w_base_ + r0 + r) * row_bytes, b0 + kb, c, sm);
      }
      [[unroll]] for (uint w = 0; w < 8u; ++w) wc_[(kb * 8u + w) * (BM / 2) + r / 2][r % 2] = c[w];
      const uint h = (kb * 2u) * (BM / 2) + r / 2, e = 2u * (r % 2);
      wsm_[h][e] = sm.x;
      wsm_[h][e + 1u] = sm.y;
      wsm_[h + BM / 2][e] = sm.z;
      wsm_[h + BM / 2][e + 1u] = sm.w;
    }
    // The activation slice: BN tokens x KB blocks.
    for (uint j = tid; j < BN * KB; j += WG_SIZE) {
      const uint t = j / KB, kb = j % KB;
      uint a[8];
      vec4 ds = vec4(0.0);
      [[unroll]] for (uint w = 0; w < 8u; ++w) a[w] = 0u;
      if (tok0 + t < tok_count() && b0 + kb < blocks) {
        const uint xb = x_row(tok0 + t) * blocks + b0 + kb;
        [[unroll]] for (uint w = 0; w < 8u; ++w) a[w] = xq[8u * xb + w];
        int s0 = 0, s1 = 0;
        [[unroll]] for (uint w = 0; w < 4u; ++w) {
          s0 += dotPacked4x8EXT(int(a[w]), 0x01010101);
          s1 += dotPacked4x8EXT(int(a[w + 4u]), 0x01010101);
        }
        const vec2 d = xd[d_base + xb];
        ds = vec4(d, d.x * float(s0), d.x * float(s1));
      }
      [[unroll]] for (uint w = 0; w < 8u; ++w) xc_[(kb * 8u + w) * (BN / 4) + t / 4][t % 4] = a[w];
      xd_[kb * BN + t] = ds;
    }
    barrier();
    if (tok0 + tg * TN >= tok_count()) continue;
    for (uint kb = 0; kb < KB; ++kb) {
#if DQ_INTDOT_HALVES
      const uint halves = 2u, words = 4u;
#else
      const uint halves = 1u, words = 8u;
#endif
      [[unroll]] for (uint h = 0; h < halves; ++h) {
        ivec2 dot2[TM / 2][TN];  // the codes' dot products of rows (even, odd), token j
        [[unroll]] for (uint i = 0; i < TM / 2; ++i) {
          [[unroll]] for (uint j = 0; j < TN; ++j) dot2[i][j] = ivec2(0);
        }
        [[unroll]] for (uint w = h * words; w < (h + 1u) * words; ++w) {
          uvec2 wc[TM / 2];
          [[unroll]] for (uint i = 0; i < TM / 2; ++i) wc[i] = wc_[(kb * 8u + w) * (BM / 2) + i * RG + rg];
          [[unroll]] for (uint j4 = 0; j4 < TN / 4; ++j4) {
            const uvec4 xv = xc_[(kb * 8u + w) * (BN / 4) + tg * (TN / 4) + j4];
            [[unroll]] for (uint i = 0; i < TM / 2; ++i) {
              [[unroll]] for (uint e = 0; e < 4u; ++e) {
                dot2[i][4u * j4 + e] += ivec2(dotPacked4x8EXT(int(wc[i].x), int(xv[e])),
                                              dotPacked4x8EXT(int(wc[i].y), int(xv[e])));
              }
            }
          }
        }
        [[unroll]] for (uint i = 0; i < TM / 2; ++i) {
          const vec4 sm = wsm_[(kb * 2u + h) * (BM / 2) + i * RG + rg];  // (s, o) even, odd
          [[unroll]] for (uint j = 0; j < TN; ++j) {
            const vec4 ds = xd_[kb * BN + tg * TN + j];
            // The offset's activation sum: of the whole block, or of this half.
#if DQ_INTDOT_HALVES
            const float xs = h == 0u ? ds.z : ds.w;
#else
            const float xs = ds.y;
#endif
            acc[i][j] += ds.x * vec2(sm.x, sm.z) * vec2(dot2[i][j]) + vec2(sm.y, sm.w) * xs;
          }
        }
      }
    }
  }
#else
  for (uint k0 = 0; k0 < pc.ncols; k0 += BK) {
    barrier();  // the previous slice's reads are done
    // The weight slice: BM rows x 8 vec4s; 8 neighbouring invocations read one row's bytes.
    for (uint j = tid; j < BM * (BK / 4); j += WG_SIZE) {
      const uint r = j / (BK / 4), q = j % (BK / 4);
      const vec4 v = r0 + r < pc.nrows && k0 + 4u * q < pc.ncols
                         ? load_w4((w_base_ + r0 + r) * row_bytes, k0 + 4u * q)
                         : vec4(0.0);
      [[unroll]] for (uint e = 0; e < 4u; ++e) ws_[(4u * q + e) * (BM / 2) + r / 2][r % 2] = v[e];
    }
    // The activation slice: BN tokens x 8 vec4s.
    for (uint j = tid; j < BN * (BK / 4); j += WG_SIZE) {
      const uint t = j / (BK / 4), q = j % (BK / 4);
      const vec4 v = tok0 + t < tok_count() && k0 + 4u * q < pc.ncols
                         ? load_x4(x_row(tok0 + t), k0 + 4u * q)
                         : vec4(0.0);
      [[unroll]] for (uint e = 0; e < 4u; ++e) xs_[(4u * q + e) * (BN / 4) + t / 4][t % 4] = v[e];
    }
    barrier();
    // A token group past the last token skips its products (uniform across its subgroup with
    // UNIFORM_TG, so a partial tile of tokens costs what it holds on a CPU device too).
    if (tok0 + tg * TN >= tok_count()) continue;
    for (uint k = 0; k < BK; ++k) {
      vec2 w[TM / 2];
      [[unroll]] for (uint i = 0; i < TM / 2; ++i) w[i] = ws_[k * (BM / 2) + i * RG + rg];
      [[unroll]] for (uint j4 = 0; j4 < TN / 4; ++j4) {
        const vec4 xv = xs_[k * (BN / 4) + tg * (TN / 4) + j4];
        [[unroll]] for (uint i = 0; i < TM / 2; ++i) {
          [[unroll]] for (uint e = 0; e < 4u; ++e) acc[i][4u * j4 + e] += w[i] * xv[e];
        }
      }
    }
  }
#endif

  // acc[i][j][e]: row (i * RG + rg) * 2 + e of the tile, token tg * TN + j.
  [[unroll]] for (uint i = 0; i < TM / 2; ++i) {
    const uint r = r0 + (i * RG + rg) * 2u;  // in the chunk; r % 2 == 0
    [[unroll]] for (uint j = 0; j < TN; ++j) {
      const uint t = tok0 + tg * TN + j;
      if (t >= tok_count()) continue;
      if (pc.epilogue >= 3) {
        // The (gate, up) pair (r, r + 1). Chunks and tiles start even.
        if (r < pc.nrows) store_glu(r, t, acc[i][j].x, acc[i][j].y);
        continue;
      }
      [[unroll]] for (uint e = 0; e < 2u; ++e) {
        if (r + e < pc.nrows) store_out(r + e, t, acc[i][j][e]);
      }
    }
  }
}
