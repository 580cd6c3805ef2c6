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
// pc.epilogue (what happens to each sum s of weight row n, token t, before it is stored; the
// fused step in docs/ARCHITECTURE.md). A push constant, not a specialization constant: the
// branch is uniform and outside the K loop, and one pipeline per (type, token tile) keeps
// lavapipe's pipeline compiles (seconds each) from multiplying by four:
//   0 store:      y[t, y0 + n] = s
//   1 accumulate: y[t, y0 + n] += s            (the residual add after wo and w_down)
//   2 bias:       y[t, y0 + n] = s + aux[y0 + n]  (qwen2's QKV biases: aux is a whole y row)
//   3 swiglu:     rows come in pairs (2i: gate, 2i + 1: up, interleaved at load);
//                 y[t, y0 + i] = silu(s_2i) * s_2i+1. ROWS and every chunk's rows are even.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define PUSH_MATMUL
#include "push_constants.glsl"

layout(constant_id = 1) const uint ROWS = 2;
layout(constant_id = 2) const uint NTOK = 1;
// Upper bound on gl_NumSubgroups: WG_SIZE / the device's smallest subgroup size.
layout(constant_id = 3) const uint MAX_SUBGROUPS = 128;

layout(binding = 0) readonly buffer Wq { uint wq[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) buffer Y { float y[]; };
layout(binding = 3) readonly buffer Aux { float aux[]; };  // epilogue 2: the bias

#include "dequant.glsl"

#if DQ_FLOAT
// f32/f16/bf16 rows may have any length: x rows are not 16-byte aligned.
vec4 load_x4(uint i) { return vec4(x[i], x[i + 1], x[i + 2], x[i + 3]); }
#else
// Quantized rows are whole blocks of 32 or 256: every unit's columns start 16-byte aligned.
layout(binding = 1) readonly buffer X4 { vec4 x4[]; };
vec4 load_x4(uint i) { return x4[i >> 2]; }
#endif

shared float partial_[ROWS * NTOK * MAX_SUBGROUPS];

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
  const uint r0 = group * ROWS;  // first row of this workgroup, in the chunk
  if (r0 >= pc.nrows) return;    // whole workgroup: the folded grid's tail
  const uint tok0 = gl_WorkGroupID.y * NTOK;
  const uint tid = gl_LocalInvocationID.x;
  const uint row_bytes = (pc.ncols / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;

  float acc[ROWS * NTOK];
  [[unroll]] for (uint i = 0; i < ROWS * NTOK; ++i) acc[i] = 0.0;

  const uint units = pc.ncols / DQ_UNIT;
  for (uint u = tid; u < units; u += WG_SIZE) {
    vec4 v[ROWS][DQ_GROUPS];
    uint col[DQ_GROUPS];
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      if (r0 + r < pc.nrows) {
        dq_unit((r0 + r) * row_bytes, u, v[r], col);
      } else {
        [[unroll]] for (uint g = 0; g < DQ_GROUPS; ++g) v[r][g] = vec4(0.0);
      }
    }
    [[unroll]] for (uint t = 0; t < NTOK; ++t) {
      if (tok0 + t < pc.ntok) {
        const uint xrow = (tok0 + t) * pc.ncols;
        [[unroll]] for (uint g = 0; g < DQ_GROUPS; ++g) {
          const vec4 xv = load_x4(xrow + col[g]);
          [[unroll]] for (uint r = 0; r < ROWS; ++r) acc[r * NTOK + t] += dot(v[r][g], xv);
        }
      }
    }
  }
#if DQ_FLOAT
  // The ncols % DQ_UNIT columns past the last whole unit.
  for (uint c = units * DQ_UNIT + tid; c < pc.ncols; c += WG_SIZE) {
    [[unroll]] for (uint r = 0; r < ROWS; ++r) {
      const float w = r0 + r < pc.nrows ? dq_one((r0 + r) * row_bytes, c) : 0.0;
      [[unroll]] for (uint t = 0; t < NTOK; ++t) {
        if (tok0 + t < pc.ntok) acc[r * NTOK + t] += w * x[(tok0 + t) * pc.ncols + c];
      }
    }
  }
#endif

  [[unroll]] for (uint i = 0; i < ROWS * NTOK; ++i) {
    const float s = subgroupAdd(acc[i]);
    if (subgroupElect()) partial_[i * MAX_SUBGROUPS + gl_SubgroupID] = s;
  }
  barrier();
  if (pc.epilogue == 3) {
    for (uint i = tid; i < ROWS / 2 * NTOK; i += WG_SIZE) {
      const uint pr = i / NTOK, t = i % NTOK;
      const uint r = 2 * pr;
      if (r0 + r < pc.nrows && tok0 + t < pc.ntok) {
        float g = 0.0, u = 0.0;
        for (uint j = 0; j < gl_NumSubgroups; ++j) {
          g += partial_[(r * NTOK + t) * MAX_SUBGROUPS + j];
          u += partial_[((r + 1) * NTOK + t) * MAX_SUBGROUPS + j];
        }
        // silu(g) = g / (1 + exp(-g)); exp overflows to inf for g < -88 and the quotient is -0.
        y[(tok0 + t) * pc.y_stride + pc.y0 + (pc.row0 + r0) / 2 + pr] = g / (1.0 + exp(-g)) * u;
      }
    }
    return;
  }
  for (uint i = tid; i < ROWS * NTOK; i += WG_SIZE) {
    const uint r = i / NTOK, t = i % NTOK;
    if (r0 + r < pc.nrows && tok0 + t < pc.ntok) {
      float sum = 0.0;
      for (uint g = 0; g < gl_NumSubgroups; ++g) sum += partial_[i * MAX_SUBGROUPS + g];
      const uint n = pc.row0 + r0 + r;
      const uint at = (tok0 + t) * pc.y_stride + pc.y0 + n;
      if (pc.epilogue == 1) {
        y[at] = y[at] + sum;
      } else if (pc.epilogue == 2) {
        y[at] = sum + aux[pc.y0 + n];
      } else {
        y[at] = sum;
      }
    }
  }
}
