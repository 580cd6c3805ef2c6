#version 450
#extension GL_GOOGLE_include_directive : require
// y = x W^T for one chunk of a weight in its GGUF block format (dequant.glsl, one variant per
// type): W [nrows, ncols] of the chunk, x [ntok, ncols] f32, y [ntok, y_stride] f32 written at
// columns row0 + r. f32 accumulation.
//
// A workgroup computes ROWS consecutive rows for a tile of NTOK tokens (grid.y walks the token
// tiles; grid.x, folded into grid.z past the device's limit, walks the row groups). Its
// invocations stride over the decode units of a row (16 elements, or 4/8 for f32/f16/bf16), so
// neighbouring invocations read neighbouring bytes of the row; each weight element is decoded
// once into registers and applied to all NTOK tokens. Partial sums are reduced with subgroup
// arithmetic and then across subgroups in shared memory, all ROWS x NTOK of them at once.
// ntok == 1 (decode) runs with NTOK = 1; prefill with NTOK = 8 (each weight read serves 8 tokens).
//
// LANE_ROWS (CPU devices, Tuning::matvec_lane_rows): each invocation owns ROWS rows for the
// whole K loop instead, a workgroup WG_SIZE x ROWS rows, with no reduction, shared memory or
// barrier. Every invocation then walks the same units in step, so the activation reads are
// uniform (one scalar load on lavapipe instead of a gather) and only the weight reads differ
// per invocation. On a GPU this layout would read each row's bytes from one invocation, which
// is why it is the CPU's choice only (docs/ARCHITECTURE.md, Matmul paths).
//
// pc.epilogue (what happens to each sum s of weight row n, token t, before it is stored; the
// fused step in docs/ARCHITECTURE.md). A push constant, not a specialization constant: the
// branch is uniform and outside the K loop, and one pipeline per (type, token tile) keeps
// lavapipe's pipeline compiles (seconds each) from multiplying by four:
//   0 store:      y[t, y0 + n] = s
//   1 accumulate: y[t, y0 + n] += s            (the residual add after wo and w_down)
//   2 bias:       y[t, y0 + n] = s + aux[y0 + n]  (qwen2's QKV biases: aux is a whole y row;
//                 EXPERTS: aux[e * nrows + n], the biases of every expert one after another)
//   3 swiglu:     rows come in pairs (2i: gate, 2i + 1: up, interleaved at load);
//                 y[t, y0 + i] = silu(s_2i) * s_2i+1. ROWS and every chunk's rows are even.
//   4 geglu:      as swiglu with GELU (tanh form) for silu: Gemma's feed-forward.
//   5 swiglu_oai: gpt-oss's: each sum plus its weight row's bias (aux[n], EXPERTS aux[e * nrows
//                 + n]), then the pair through glu() (common.glsl: clamps, sigmoid(1.702 g)).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#ifdef EXPERTS
#define PUSH_MATMUL_EXPERTS
#else
#define PUSH_MATMUL
#endif
#include "push_constants.glsl"

layout(constant_id = 1) const uint ROWS = 2;
layout(constant_id = 2) const uint NTOK = 1;
// Upper bound on gl_NumSubgroups: WG_SIZE / the device's smallest subgroup size.
layout(constant_id = 3) const uint MAX_SUBGROUPS = 128;
layout(constant_id = 4) const bool LANE_ROWS = false;

layout(binding = 0) readonly buffer Wq { uint wq[]; };
layout(binding = 2) buffer Y { float y[]; };
layout(binding = 3) readonly buffer Aux { float aux[]; };  // epilogues 2 and 5: the bias

// EXPERTS (the grouped expert matmul of a Mixture-of-Experts layer, experts.glsl): grid.z walks
// the chunk's experts, grid.y the tiles of each expert's pairs, grid.x the row groups of one
// expert. Each pair's sums follow the same order as a plain row's, whichever pairs share its
// tile: the result does not depend on the batch.
#include "experts.glsl"

#include "dequant.glsl"

#ifdef INTDOT
// INTDOT (the integer-dot GEMV, every type with integer codes: legacy blocks and K-quants): x
// arrives quantized by quantize_q8.comp, one buffer: ntok * ncols / 4 words of int8 codes (4 a
// word, in element order), then one (d, d * sum of codes) per 32 elements. Each block's products
// are 8 packed 4 x 8-bit dot products (GL_EXT_integer_dot_product) of the weight codes and the
// activation codes: sum_e (s_w c_e + o_w)(d a_e) = s_w d sum_e c_e a_e + o_w (d sum_e a_e)
// (dq_block_codes), per half of 16 where the weight's scales are per 16 (q6_K, q3_K, q2_K).
#extension GL_EXT_integer_dot_product : require
#if !DQ_INTDOT
#error "INTDOT: this weight type has no integer codes (dequant.glsl, dq_block_codes)"
#endif
layout(binding = 1) readonly buffer XQ { uint xq[]; };
layout(binding = 1) readonly buffer XD { vec2 xd[]; };
#else
layout(binding = 1) readonly buffer X { float x[]; };
#endif

#if defined(INTDOT)
#elif DQ_FLOAT
// f32/f16/bf16 rows may have any length: x rows are not 16-byte aligned.
vec4 load_x4(uint i) { return vec4(x[i], x[i + 1], x[i + 2], x[i + 3]); }
#else
// Quantized rows are whole blocks of 32 or 256: every unit's columns start 16-byte aligned.
layout(binding = 1) readonly buffer X4 { vec4 x4[]; };
vec4 load_x4(uint i) { return x4[i >> 2]; }
#endif

shared float partial_[LANE_ROWS ? 1 : ROWS * NTOK * MAX_SUBGROUPS];
float acc[ROWS * NTOK];

// acc[r * NTOK + t] += the products of units first, first + step, ... of rows r0 + r (a row past
// the chunk reads the last one again: its sums are never stored, and no branch is divergent).
// INTDOT: of blocks first, first + step, ...
#ifdef INTDOT
void accumulate(uint r0, uint tok0, uint first, uint step) {
  const uint row_bytes = (pc.ncols / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;
  const uint blocks = pc.ncols / 32u;
  const uint d_base = pc.ntok * pc.ncols / 8u;  // where the scales start, in vec2s
  for (uint b = first; b < blocks; b += step) {
    uint c[ROWS][8];
    vec4 sm[ROWS];
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      dq_block_codes((w_base_ + min(r0 + r, pc.nrows - 1)) * row_bytes, b, c[r], sm[r]);
    }
    [[unroll]] for (uint t = 0; t < NTOK; ++t) {
      if (tok0 + t < tok_count()) {
        const uint xb = x_row(tok0 + t) * blocks + b;
        const vec2 ds = xd[d_base + xb];
        uint a[8];
        [[unroll]] for (uint j = 0; j < 8u; ++j) a[j] = xq[8u * xb + j];
#if DQ_INTDOT_HALVES
        // A scale per 16 elements: a dot product per half (and q2_K's offsets: the sums of the
        // half's activation codes).
#if DQ_INTDOT_OFFSET
        int a0 = 0, a1 = 0;
        [[unroll]] for (uint j = 0; j < 4u; ++j) {
          a0 += dotPacked4x8EXT(int(a[j]), 0x01010101);
          a1 += dotPacked4x8EXT(int(a[j + 4u]), 0x01010101);
        }
#endif
        [[unroll]] for (uint r = 0; r < ROWS; ++r) {
          int d0 = 0, d1 = 0;  // at most 16 * 127 * 32 in magnitude
          [[unroll]] for (uint j = 0; j < 4u; ++j) {
            d0 += dotPacked4x8EXT(int(c[r][j]), int(a[j]));
            d1 += dotPacked4x8EXT(int(c[r][j + 4u]), int(a[j + 4u]));
          }
          float s = sm[r].x * float(d0) + sm[r].z * float(d1);
#if DQ_INTDOT_OFFSET
          s += sm[r].y * float(a0) + sm[r].w * float(a1);
#endif
          acc[r * NTOK + t] += ds.x * s;
        }
#else
        [[unroll]] for (uint r = 0; r < ROWS; ++r) {
          int dot = 0;  // at most 32 * 127 * 127 in magnitude
          [[unroll]] for (uint j = 0; j < 8u; ++j) dot += dotPacked4x8EXT(int(c[r][j]), int(a[j]));
          acc[r * NTOK + t] += sm[r].x * ds.x * float(dot) + sm[r].y * ds.y;
        }
#endif
      }
    }
  }
}
#else
void accumulate(uint r0, uint tok0, uint first, uint step) {
  const uint row_bytes = (pc.ncols / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;
  const uint units = pc.ncols / DQ_UNIT;
  for (uint u = first; u < units; u += step) {
    vec4 v[ROWS][DQ_GROUPS];
    uint col[DQ_GROUPS];
    [[unroll]] for (uint r = 0; r < ROWS; ++r) dq_unit((w_base_ + min(r0 + r, pc.nrows - 1)) * row_bytes, u, v[r], col);
    [[unroll]] for (uint t = 0; t < NTOK; ++t) {
      if (tok0 + t < tok_count()) {
        const uint xrow = x_row(tok0 + t) * pc.ncols;
        [[unroll]] for (uint g = 0; g < DQ_GROUPS; ++g) {
          const vec4 xv = load_x4(xrow + col[g]);
          [[unroll]] for (uint r = 0; r < ROWS; ++r) acc[r * NTOK + t] += dot(v[r][g], xv);
        }
      }
    }
  }
#if DQ_FLOAT
  // The ncols % DQ_UNIT columns past the last whole unit.
  for (uint c = units * DQ_UNIT + first; c < pc.ncols; c += step) {
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const float w = dq_one((w_base_ + min(r0 + r, pc.nrows - 1)) * row_bytes, c);
      [[unroll]] for (uint t = 0; t < NTOK; ++t) {
        if (tok0 + t < tok_count()) acc[r * NTOK + t] += w * x[x_row(tok0 + t) * pc.ncols + c];
      }
    }
  }
#endif
}
#endif

// The epilogues: row r0 + r (of the chunk), token t, its sum s.
void store(uint r0, uint r, uint t, float s) {
  const uint n = pc.row0 + r0 + r;
  const uint at = y_row(t) * pc.y_stride + pc.y0 + n;
  if (pc.epilogue == 1) {
    y[at] = y[at] + s;
  } else if (pc.epilogue == 2) {
    y[at] = s + aux[pc.y0 + b_base_ + n];
  } else {
    y[at] = s;
  }
}
// Rows r0 + r (gate) and r0 + r + 1 (up), r even (epilogues 3-5; 5: each plus its bias first).
void store_glu(uint r0, uint r, uint t, float g, float u) {
  const uint n = pc.row0 + r0 + r;
  const vec2 b = glu_bias(n);
  y[y_row(t) * pc.y_stride + pc.y0 + n / 2] = glu(pc.epilogue, g + b.x, u + b.y);
}

void main() {
  const uint tok0 = gl_WorkGroupID.y * NTOK;
  const uint tid = gl_LocalInvocationID.x;
#ifdef EXPERTS
  const uint group = gl_WorkGroupID.x;
  if (!experts_begin(tok0)) return;  // the whole workgroup: no pairs of this expert here
#else
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
#endif
  [[unroll]] for (uint i = 0; i < ROWS * NTOK; ++i) acc[i] = 0.0;

  if (LANE_ROWS) {
    const uint r0 = (group * WG_SIZE + tid) * ROWS;
    accumulate(r0, tok0, 0, 1);
    [[unroll]] for (uint t = 0; t < NTOK; ++t) {
      if (tok0 + t < tok_count()) {
        if (pc.epilogue >= 3) {
          [[unroll]] for (uint r = 0; r < ROWS; r += 2) {
            if (r0 + r < pc.nrows) store_glu(r0, r, tok0 + t, acc[r * NTOK + t], acc[(r + 1) * NTOK + t]);
          }
        } else {
          [[unroll]] for (uint r = 0; r < ROWS; ++r) {
            if (r0 + r < pc.nrows) store(r0, r, tok0 + t, acc[r * NTOK + t]);
          }
        }
      }
    }
    return;
  }

  const uint r0 = group * ROWS;  // first row of this workgroup, in the chunk
  if (r0 >= pc.nrows) return;    // whole workgroup: the folded grid's tail
  accumulate(r0, tok0, tid, WG_SIZE);
  [[unroll]] for (uint i = 0; i < ROWS * NTOK; ++i) {
    const float s = subgroupAdd(acc[i]);
    if (subgroupElect()) partial_[i * MAX_SUBGROUPS + gl_SubgroupID] = s;
  }
  barrier();
  if (pc.epilogue >= 3) {
    for (uint i = tid; i < ROWS / 2 * NTOK; i += WG_SIZE) {
      const uint r = 2 * (i / NTOK), t = i % NTOK;
      if (r0 + r < pc.nrows && tok0 + t < tok_count()) {
        float g = 0.0, u = 0.0;
        for (uint j = 0; j < gl_NumSubgroups; ++j) {
          g += partial_[(r * NTOK + t) * MAX_SUBGROUPS + j];
          u += partial_[((r + 1) * NTOK + t) * MAX_SUBGROUPS + j];
        }
        store_glu(r0, r, tok0 + t, g, u);
      }
    }
    return;
  }
  for (uint i = tid; i < ROWS * NTOK; i += WG_SIZE) {
    const uint r = i / NTOK, t = i % NTOK;
    if (r0 + r < pc.nrows && tok0 + t < tok_count()) {
      float sum = 0.0;
      for (uint g = 0; g < gl_NumSubgroups; ++g) sum += partial_[i * MAX_SUBGROUPS + g];
      store(r0, r, tok0 + t, sum);
    }
  }
}
