#version 450
#extension GL_GOOGLE_include_directive : require
// Causal GQA attention over paged K/V for prompt chunks on matrix cores (VK_KHR_cooperative_matrix):
// flash attention whose two products, S = Q K^T and P V, are f16 x f16 -> f32 cooperative
// matrices of the size the device reports (CM_M x CM_N x CM_K, as the matrix-core GEMM's).
// Rows, grid and shapes: attention_rows.glsl; the online softmax of attention.comp over the
// same key tiles from key 0 (those before every row's sliding window skipped), in f32.
//
// A workgroup is NSG subgroups of exactly the subgroup size the host requires; subgroup g owns
// query rows [g * CM_M, (g + 1) * CM_M) of the tile. Per tile of BC = FC * CM_N keys:
// - the workgroup stages K and V (f16, zero past the last key: P V must not see NaN);
// - S: FC accumulators over HEAD_DIM / CM_K steps, Q (pre-scaled) as A and K as a column-major
//   B, stored to the subgroup's f32 staging rows. Q is two f16 matrices, its f16 rounding and
//   what that leaves (about 22 bits together), so S takes two products per step;
// - lanes < CM_M take a row each: masking, running max and sum, P (f16) to shared memory and the
//   row's rescale factor alpha;
// - P V: one accumulator per CM_N head-dim columns, through the staging matrix into the
//   invocation's f32 output registers, O = O * alpha + P V (no per-row scaling exists for an
//   accumulator, so O stays outside them).
// f16 inputs: K, V and P are rounded to f16 (11-bit mantissa) before the products; Q is not
// (its two parts): with Q rounded too, random-weight models' peaked scores moved their logits
// by up to 15% of the spread against the f32 path (tests/model/test_model.cpp), with the two
// parts no more than the f16 matmuls do. The sums, the softmax and O are f32.
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define PUSH_ATTENTION
#include "push_constants.glsl"

layout(constant_id = 1) const uint HEAD_DIM = 128;  // a multiple of CM_K and CM_N
layout(constant_id = 2) const uint SG = 32;         // invocations per subgroup (required)
layout(constant_id = 3) const uint CM_M = 16;       // cooperative matrix: rows (query rows)
layout(constant_id = 4) const uint CM_N = 16;       //   columns (keys in S, head-dim in P V)
layout(constant_id = 5) const uint CM_K = 16;       //   the reduced dimension; divides BC
layout(constant_id = 6) const uint FC = 2;          // S matrices per key tile

const uint NSG = WG_SIZE / SG;
const uint ROWS = NSG * CM_M;            // query rows per workgroup
const uint BC = FC * CM_N;               // keys per tile
const uint HD2 = HEAD_DIM / 2;           // pairs per head row (attention_rows.glsl)
const uint HDP = HEAD_DIM + 8;           // padded f16 row stride of Q, K, V (banks)
const uint BCP = BC + 8;                 // padded f16 row stride of P
const uint FD = HEAD_DIM / CM_N;         // P V matrices per row block
const uint OUT_PER_LANE = CM_M * CM_N / SG;  // output elements of one P V matrix per invocation

#include "attention_rows.glsl"

shared float16_t q_sh[ROWS * HDP];      // [row][d], times scale: f16 part
shared float16_t ql_sh[ROWS * HDP];     // [row][d]: what q_sh leaves, f16
shared float16_t k_sh[BC * HDP];        // [key][d]
shared float16_t v_sh[BC * HDP];        // [key][d]
shared float16_t p_sh[ROWS * BCP];      // [row][key]
shared float stage_sh[ROWS * BC];       // per subgroup: S [CM_M][BC], then one P V matrix
shared float alpha_sh[ROWS];            // this tile's rescale factor of each row
shared float l_sh[ROWS];                // running sum of each row (its lane's, then final)
shared uint limit_sh[ROWS];             // last key position of each row (0 past nrows)
shared uint first_sh[ROWS];             // first key position of each row (sliding window)
shared uint base_sh[BC];                // pool pair index of each key of the current tile

void main() {
  const uint tile = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  const uint kvh = gl_WorkGroupID.y;
  // Workgroup-uniform returns, before any barrier.
  if (tile >= pc.tiles) return;
  const RowTile rt = row_tile(tile);
  if (rt.nrows == 0) return;
  const uint row0 = rt.row0, nrows = rt.nrows;
  const uint bt = rt.s * pc.max_blocks;
  const uint last_key = pc.max_blocks * pc.block_size - 1;  // the table holds no more
  const uint tid = gl_LocalInvocationID.x;
  const uint lane = gl_SubgroupInvocationID;
  const uint r0 = gl_SubgroupID * CM_M;  // this subgroup's first row in the tile
  const uint stage = gl_SubgroupID * CM_M * BC;

  // Rows past nrows hold zeros and attend key 0 alone: finite, never stored.
  for (uint i = tid; i < ROWS * HD2; i += WG_SIZE) {
    const uint r = i / HD2, d = i % HD2;
    const vec2 v = r < nrows ? q[head_row(row0 + r, kvh) + d] * pc.scale : vec2(0.0);
    const f16vec2 hi = f16vec2(v);
    q_sh[r * HDP + 2 * d] = hi.x;
    q_sh[r * HDP + 2 * d + 1] = hi.y;
    const f16vec2 lo = f16vec2(v - vec2(hi));
    ql_sh[r * HDP + 2 * d] = lo.x;
    ql_sh[r * HDP + 2 * d + 1] = lo.y;
  }
  for (uint r = tid; r < ROWS; r += WG_SIZE) {
    const uint pos = r < nrows ? positions[(row0 + r) / pc.group] : 0;
    limit_sh[r] = min(pos, last_key);
    first_sh[r] = min(first_key(pos), limit_sh[r]);
  }
  barrier();
  uint kmax = 0, kmin = last_key;
  for (uint r = 0; r < nrows; ++r) {
    kmax = max(kmax, limit_sh[r]);
    kmin = min(kmin, first_sh[r]);
  }
  // Tiles before every row's sliding window are skipped; the rest are on multiples of BC.
  const uint k_start = kmin / BC * BC;
  for (uint j = tid; j < BC; j += WG_SIZE) base_sh[j] = pool_base(bt, min(k_start + j, last_key), kvh);
  barrier();
  const bool sg_rows = r0 < nrows;
  // The softmax lane of row r0 + lane keeps the row's running max.
  float m = kNegMax;
  if (lane < CM_M) l_sh[r0 + lane] = 0.0;

  float acc[FD][OUT_PER_LANE];
  [[unroll]] for (uint f = 0; f < FD; ++f) {
    [[unroll]] for (uint i = 0; i < OUT_PER_LANE; ++i) acc[f][i] = 0.0;
  }

  for (uint k0 = k_start; k0 <= kmax; k0 += BC) {
    const uint nk = min(BC, kmax + 1 - k0);
    for (uint i = tid; i < BC * HD2; i += WG_SIZE) {
      const uint j = i / HD2, d = i % HD2;
      const vec2 kv = j < nk ? LOAD_KV(k_pool, base_sh[j] + d) : vec2(0.0);
      const vec2 vv = j < nk ? LOAD_KV(v_pool, base_sh[j] + d) : vec2(0.0);
      k_sh[j * HDP + 2 * d] = float16_t(kv.x);
      k_sh[j * HDP + 2 * d + 1] = float16_t(kv.y);
      v_sh[j * HDP + 2 * d] = float16_t(vv.x);
      v_sh[j * HDP + 2 * d + 1] = float16_t(vv.y);
    }
    barrier();

    {
      // Every subgroup multiplies every tile, also one whose rows end before it or a subgroup
      // past nrows (their p are 0, alpha 1): on lavapipe 26.1 the cooperative-matrix stores of
      // some subgroups went wrong when others skipped theirs (as in matmul_coopmat.comp).
      // S = Q K^T, CM_N keys a matrix; B (d, key) is k_sh[key * HDP + d]: column-major.
      [[unroll]] for (uint fc = 0; fc < FC; ++fc) {
        coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> s =
            coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0);
        for (uint kk = 0; kk < HEAD_DIM; kk += CM_K) {
          coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA> a;
          coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB> b;
          coopMatLoad(a, q_sh, r0 * HDP + kk, HDP, gl_CooperativeMatrixLayoutRowMajor);
          coopMatLoad(b, k_sh, fc * CM_N * HDP + kk, HDP, gl_CooperativeMatrixLayoutColumnMajor);
          s = coopMatMulAdd(a, b, s);
          coopMatLoad(a, ql_sh, r0 * HDP + kk, HDP, gl_CooperativeMatrixLayoutRowMajor);
          s = coopMatMulAdd(a, b, s);
        }
        coopMatStore(s, stage_sh, stage + fc * CM_N, BC, gl_CooperativeMatrixLayoutRowMajor);
      }
      subgroupMemoryBarrierShared();
      subgroupBarrier();

      // The online softmax, a lane per row (scores soft-capped where asked). Masked keys get
      // p = 0, also while a row has seen no key of its own yet (m still kNegMax: a sliding window
      // that starts in a later tile); from its first key on m is a real score.
      if (lane < CM_M) {
        const uint r = r0 + lane;
        const uint limit = limit_sh[r], first = first_sh[r];
        float mx = kNegMax;
        for (uint j = 0; j < nk; ++j) {
          const float sc = capped(stage_sh[stage + lane * BC + j]);
          stage_sh[stage + lane * BC + j] = sc;
          if (k0 + j <= limit && k0 + j >= first) mx = max(mx, sc);
        }
        const float m_new = max(m, mx);
        const float alpha = exp(m - m_new);
        float ps = 0.0;
        for (uint j = 0; j < BC; ++j) {
          const bool live = j < nk && k0 + j <= limit && k0 + j >= first;
          const float p = live ? exp(stage_sh[stage + lane * BC + j] - m_new) : 0.0;
          p_sh[r * BCP + j] = float16_t(p);
          ps += p;
        }
        l_sh[r] = l_sh[r] * alpha + ps;
        alpha_sh[r] = alpha;
        m = m_new;
      }
      subgroupMemoryBarrierShared();
      subgroupBarrier();

      // O = O * alpha + P V, CM_N head-dim columns a matrix; B (key, d) is v_sh[key * HDP + d].
      [[unroll]] for (uint f = 0; f < FD; ++f) {
        coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> pv =
            coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0);
        [[unroll]] for (uint kk = 0; kk < BC; kk += CM_K) {
          coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA> a;
          coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB> b;
          coopMatLoad(a, p_sh, r0 * BCP + kk, BCP, gl_CooperativeMatrixLayoutRowMajor);
          coopMatLoad(b, v_sh, kk * HDP + f * CM_N, HDP, gl_CooperativeMatrixLayoutRowMajor);
          pv = coopMatMulAdd(a, b, pv);
        }
        coopMatStore(pv, stage_sh, stage, CM_N, gl_CooperativeMatrixLayoutRowMajor);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        [[unroll]] for (uint i = 0; i < OUT_PER_LANE; ++i) {
          const uint e = lane + i * SG;
          acc[f][i] = acc[f][i] * alpha_sh[r0 + e / CM_N] + stage_sh[stage + e];
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();  // the lanes' reads are done before the next matrix is stored
      }
    }
    // The next tile's pool rows, while nobody reads base_sh.
    const uint next = k0 + BC;
    for (uint j = tid; j < BC; j += WG_SIZE) {
      if (next + j <= kmax) base_sh[j] = pool_base(bt, next + j, kvh);
    }
    barrier();
  }

  // Idle subgroups came along to here (no early return around cooperative matrices: see
  // matmul_coopmat.comp); they store nothing.
  if (!sg_rows) return;
  // The sink's share of each row's sum, from the lane that holds the row's running max.
  if (lane < CM_M && r0 + lane < nrows) l_sh[r0 + lane] += sink_term(row0 + r0 + lane, kvh, m);
  subgroupMemoryBarrierShared();
  subgroupBarrier();
  [[unroll]] for (uint f = 0; f < FD; ++f) {
    [[unroll]] for (uint i = 0; i < OUT_PER_LANE; ++i) {
      const uint e = lane + i * SG;
      const uint r = e / CM_N, d = f * CM_N + e % CM_N;
      if (r0 + r < nrows) {
        o[head_row(row0 + r0 + r, kvh) + d / 2][d % 2] = acc[f][i] / l_sh[r0 + r];
      }
    }
  }
}
