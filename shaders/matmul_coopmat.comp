#version 450
#extension GL_GOOGLE_include_directive : require
// y = x W^T for many tokens on matrix cores (VK_KHR_cooperative_matrix): the tiled GEMM of
// matmul_tiled.comp with f16 tiles in shared memory and the products in f16 x f16 -> f32
// cooperative matrices of the size the device reports (CM_M x CM_N x CM_K: 16x16x16 on NVIDIA
// and AMD RDNA3, 8x8x8 on lavapipe). Same bindings, push constants and epilogues as matmul.comp;
// ops::choose_matmul decides when it runs (docs/ARCHITECTURE.md, "Matmul paths").
//
// A workgroup computes a BM x BN output tile (BM weight rows, BN tokens) with SG_M x SG_N
// subgroups, each a (BM / SG_M) x (BN / SG_N) block of accumulators. The K loop walks slices of
// BK = 32 columns: the workgroup decodes the BM x BK weight slice (dequant.glsl, in f32, then
// rounded to f16) and the BN x BK activations into shared memory, [row][k] and [token][k] with
// a padded stride, then each subgroup multiplies its matrices out of them. The result leaves
// through a per-subgroup f32 staging matrix in shared memory, where each lane applies the
// epilogue to its elements (a swiglu pair, rows r and r + 1, lies in one matrix: CM_M is even).
//
// f16 inputs: the weights and activations are rounded to f16 (11-bit mantissa) before the
// products, the sums are f32. Values beyond f16's range (65504) become infinities: activations
// of llama-family models stay far below it (the same rounding as llama.cpp's matrix-core path).
//
// The host gives the pipeline WG_SIZE = SG_M * SG_N * the subgroup size and makes that the
// subgroup size (required subgroup size where the device may vary it).
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define PUSH_MATMUL
#include "push_constants.glsl"

layout(constant_id = 1) const uint BM = 64;    // weight rows per tile
layout(constant_id = 2) const uint BN = 64;    // tokens per tile
layout(constant_id = 3) const uint CM_M = 16;  // cooperative matrix: rows (weight rows)
layout(constant_id = 4) const uint CM_N = 16;  //   columns (tokens)
layout(constant_id = 5) const uint CM_K = 16;  //   the reduced dimension; divides BK
layout(constant_id = 6) const uint SG_M = 2;   // subgroups along the rows
layout(constant_id = 7) const uint SG_N = 2;   // subgroups along the tokens
const uint BK = 32;
const uint BKP = BK + 8;  // padded row stride of the shared tiles (rows start in other banks)
const uint WM = BM / SG_M, WN = BN / SG_N;  // one subgroup's block
const uint FM = WM / CM_M, FN = WN / CM_N;  // its matrices

layout(binding = 0) readonly buffer Wq { uint wq[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) buffer Y { float y[]; };
layout(binding = 3) readonly buffer Aux { float aux[]; };  // epilogues 2 and 5: the bias

#include "dequant.glsl"
#include "experts.glsl"
#include "matmul_io.glsl"

shared float16_t ws_[BM * BKP];  // [row][k]
shared float16_t xs_[BN * BKP];  // [token][k]
shared float cs_[SG_M * SG_N * CM_M * CM_N];  // per subgroup: one accumulator, row-major

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
  // A folded grid's tail tile (r0 >= nrows) runs and stores nothing.
  const uint r0 = group * BM;
  const uint tok0 = gl_WorkGroupID.y * BN;
  const uint tid = gl_LocalInvocationID.x;
  const uint row_bytes = (pc.ncols / DQ_BLOCK_SIZE) * DQ_BLOCK_BYTES;
  const uint sg = gl_SubgroupID;
  const uint wr = (sg % SG_M) * WM;  // the subgroup's block in the tile
  const uint wt = (sg / SG_M) * WN;
  // A block of tokens wholly past the last one skips its products (uniform in the subgroup).
  const bool busy = tok0 + wt < pc.ntok;

  coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> acc[FM * FN];
  [[unroll]] for (uint i = 0; i < FM * FN; ++i) {
    acc[i] = coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0);
  }

  for (uint k0 = 0; k0 < pc.ncols; k0 += BK) {
    barrier();  // the previous slice's reads are done
    for (uint j = tid; j < BM * (BK / 4); j += WG_SIZE) {
      const uint r = j / (BK / 4), q = j % (BK / 4);
      const vec4 v = r0 + r < pc.nrows && k0 + 4u * q < pc.ncols
                         ? load_w4((r0 + r) * row_bytes, k0 + 4u * q)
                         : vec4(0.0);
      [[unroll]] for (uint e = 0; e < 4u; ++e) ws_[r * BKP + 4u * q + e] = float16_t(v[e]);
    }
    for (uint j = tid; j < BN * (BK / 4); j += WG_SIZE) {
      const uint t = j / (BK / 4), q = j % (BK / 4);
      const vec4 v = tok0 + t < pc.ntok && k0 + 4u * q < pc.ncols ? load_x4(tok0 + t, k0 + 4u * q)
                                                                  : vec4(0.0);
      [[unroll]] for (uint e = 0; e < 4u; ++e) xs_[t * BKP + 4u * q + e] = float16_t(v[e]);
    }
    barrier();
    if (!busy) continue;
    [[unroll]] for (uint kk = 0; kk < BK; kk += CM_K) {
      coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA> a[FM];
      [[unroll]] for (uint i = 0; i < FM; ++i) {
        coopMatLoad(a[i], ws_, (wr + i * CM_M) * BKP + kk, BKP, gl_CooperativeMatrixLayoutRowMajor);
      }
      [[unroll]] for (uint j = 0; j < FN; ++j) {
        // B is K x N: element (k, token) at xs_[token * BKP + k], a column-major matrix.
        coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB> b;
        coopMatLoad(b, xs_, (wt + j * CM_N) * BKP + kk, BKP, gl_CooperativeMatrixLayoutColumnMajor);
        [[unroll]] for (uint i = 0; i < FM; ++i) acc[i * FN + j] = coopMatMulAdd(a[i], b, acc[i * FN + j]);
      }
    }
  }

  // Each matrix through the subgroup's staging area: element (i, j) is tile row wr + .. + i,
  // token wt + .. + j. Idle subgroups come along and store nothing: on lavapipe 26.1 the
  // busy subgroups' stores went wrong when the idle ones had returned (tests/ops/test_matmul.cpp).
  const uint stage = sg * CM_M * CM_N;
  const uint lane = gl_SubgroupInvocationID, lanes = gl_SubgroupSize;
  [[unroll]] for (uint fi = 0; fi < FM; ++fi) {
    [[unroll]] for (uint fj = 0; fj < FN; ++fj) {
      coopMatStore(acc[fi * FN + fj], cs_, stage, CM_N, gl_CooperativeMatrixLayoutRowMajor);
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      const uint rb = r0 + wr + fi * CM_M, tb = tok0 + wt + fj * CM_N;
      if (pc.epilogue >= 3) {
        for (uint e = lane; e < CM_M / 2u * CM_N; e += lanes) {
          const uint i = 2u * (e / CM_N), j = e % CM_N;
          if (rb + i < pc.nrows && tb + j < pc.ntok) {
            store_glu(rb + i, tb + j, cs_[stage + i * CM_N + j], cs_[stage + (i + 1u) * CM_N + j]);
          }
        }
      } else {
        for (uint e = lane; e < CM_M * CM_N; e += lanes) {
          const uint i = e / CM_N, j = e % CM_N;
          if (rb + i < pc.nrows && tb + j < pc.ntok) store_out(rb + i, tb + j, cs_[stage + e]);
        }
      }
      subgroupMemoryBarrierShared();
      subgroupBarrier();  // the lanes' reads are done before the next matrix is stored
    }
  }
}
