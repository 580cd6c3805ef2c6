#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// Causal GQA attention over paged K/V for prompt chunks (KV_F32 or KV_F16 pools): flash attention
// with register blocks, as the tiled GEMM computes its products. Rows, grid and shapes:
// attention_rows.glsl; the same online softmax as attention.comp, over the same key tiles from
// key 0 (those before every row's sliding window skipped), so a row's result depends on its own
// keys only.
//
// A workgroup is NSG subgroups of exactly SG invocations (the pipeline requires SG where the
// device may vary it); subgroup g owns rows [g * SG_ROWS, (g + 1) * SG_ROWS) of the tile, for
// the whole loop. Per tile of KEYS = SG * LANE_KEYS keys:
// - S = Q K^T: invocation `lane` computes the SG_ROWS x LANE_KEYS block of its rows and keys
//   lane, lane + SG, ...: per head-dim pair, SG_ROWS Q reads that are the same for the whole
//   subgroup (one scalar load on a CPU device, a broadcast on a GPU) and LANE_KEYS K reads, for
//   SG_ROWS x LANE_KEYS products (attention.comp: two reads per product).
// - Online softmax per row across the subgroup (subgroupMax, subgroupAdd): no shared memory, no
//   workgroup barrier. P goes to shared memory, the subgroup's own rows.
// - O += P V: the invocation owns head-dim pairs lane, lane + SG, ... of its SG_ROWS rows; per
//   key, SG_ROWS P reads (subgroup-uniform) and LANE_PAIRS V reads.
// A subgroup whose rows all end before the tile (causal) skips its work; it still loads.
#include "common.glsl"
#define PUSH_ATTENTION
#include "push_constants.glsl"

layout(constant_id = 1) const uint HEAD_DIM = 128;
layout(constant_id = 2) const uint SG = 8;         // invocations per subgroup (required)
layout(constant_id = 3) const uint SG_ROWS = 8;    // query rows per subgroup
layout(constant_id = 4) const uint LANE_KEYS = 4;  // keys per invocation per tile

const uint NSG = WG_SIZE / SG;
const uint ROWS = NSG * SG_ROWS;                     // query rows per workgroup
const uint KEYS = SG * LANE_KEYS;                    // keys per tile
const uint HD2 = HEAD_DIM / 2;                       // pairs per head row
const uint STRIDE2 = HD2 + 1;                        // padded shared row (banks)
const uint LANE_PAIRS = (HD2 + SG - 1) / SG;         // output pairs per invocation and row

#include "attention_rows.glsl"

shared vec2 q_sh[ROWS * STRIDE2];     // this tile's query rows, times scale
shared KV_PAIR kv_sh[KEYS * STRIDE2]; // K tile, then V tile, as stored in the pool
shared float p_sh[ROWS * KEYS];       // probabilities of the current tile
shared uint limit_sh[ROWS];           // last key position of each row (0 past nrows)
shared uint first_sh[ROWS];           // first key position of each row (sliding window)
shared uint base_sh[KEYS];            // pool pair index of each key of the current tile

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
  const uint r0 = gl_SubgroupID * SG_ROWS;  // this subgroup's first row in the tile

  for (uint i = tid; i < nrows * HD2; i += WG_SIZE) {
    const uint r = i / HD2, d = i % HD2;
    q_sh[r * STRIDE2 + d] = q[head_row(row0 + r, kvh) + d] * pc.scale;
  }
  // Rows past nrows attend key 0 alone and are never stored: they stay finite.
  for (uint r = tid; r < ROWS; r += WG_SIZE) {
    const uint pos = r < nrows ? positions[(row0 + r) / pc.group] : 0;
    limit_sh[r] = min(pos, last_key);
    first_sh[r] = min(first_key(pos), limit_sh[r]);
  }
  barrier();
  // The first and last key of the tile and of this subgroup's rows (subgroup-uniform).
  uint kmax = 0, sg_kmax = 0, kmin = last_key, sg_kmin = last_key;
  for (uint r = 0; r < nrows; ++r) {
    kmax = max(kmax, limit_sh[r]);
    kmin = min(kmin, first_sh[r]);
  }
  [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
    sg_kmax = max(sg_kmax, limit_sh[r0 + r]);
    sg_kmin = min(sg_kmin, first_sh[r0 + r]);
  }
  const bool sg_rows = r0 < nrows;
  // Tiles before every row's sliding window are skipped; the rest are on multiples of KEYS from
  // key 0, as a full walk takes them.
  const uint k_start = kmin / KEYS * KEYS;
  for (uint j = tid; j < KEYS; j += WG_SIZE) base_sh[j] = pool_base(bt, min(k_start + j, last_key), kvh);
  barrier();

  float m[SG_ROWS], l[SG_ROWS];
  vec2 acc[SG_ROWS][LANE_PAIRS];
  [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
    m[r] = kNegMax;
    l[r] = 0.0;
    [[unroll]] for (uint i = 0; i < LANE_PAIRS; ++i) acc[r][i] = vec2(0.0);
  }

  for (uint k0 = k_start; k0 <= kmax; k0 += KEYS) {
    const uint nk = min(KEYS, kmax + 1 - k0);
    for (uint i = tid; i < nk * HD2; i += WG_SIZE) {
      const uint j = i / HD2, d = i % HD2;
      kv_sh[j * STRIDE2 + d] = k_pool[base_sh[j] + d];
    }
    barrier();
    // Subgroup-uniform; a tile wholly before the subgroup's windows would add p = 0 throughout.
    const bool busy = sg_rows && k0 <= sg_kmax && k0 + KEYS > sg_kmin;

    float s[SG_ROWS][LANE_KEYS];
    if (busy) {
      vec2 dot2[SG_ROWS][LANE_KEYS];
      [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
        [[unroll]] for (uint c = 0; c < LANE_KEYS; ++c) dot2[r][c] = vec2(0.0);
      }
      // Keys past nk read a stale or unwritten row of kv_sh: finite or not, they are masked.
      [[dont_unroll]] for (uint d = 0; d < HD2; ++d) {
        vec2 kv[LANE_KEYS];
        [[unroll]] for (uint c = 0; c < LANE_KEYS; ++c) {
          kv[c] = UNPACK_KV(kv_sh[(c * SG + lane) * STRIDE2 + d]);
        }
        [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
          const vec2 qv = q_sh[(r0 + r) * STRIDE2 + d];
          [[unroll]] for (uint c = 0; c < LANE_KEYS; ++c) dot2[r][c] += qv * kv[c];
        }
      }
      [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
        const uint limit = limit_sh[r0 + r], first = first_sh[r0 + r];
        [[unroll]] for (uint c = 0; c < LANE_KEYS; ++c) {
          const uint j = c * SG + lane;
          s[r][c] = j < nk && k0 + j <= limit && k0 + j >= first ? capped(dot2[r][c].x + dot2[r][c].y)
                                                                  : kNegMax;
        }
      }
    }
    barrier();  // K consumed: V takes its buffer

    for (uint i = tid; i < nk * HD2; i += WG_SIZE) {
      const uint j = i / HD2, d = i % HD2;
      kv_sh[j * STRIDE2 + d] = v_pool[base_sh[j] + d];
    }
    if (busy) {
      // A masked score's p is 0, also while a row has seen no key of its own yet (m still
      // kNegMax: a sliding window that starts in a later tile); from its first key on m is a
      // real score, and a row whose keys end before this tile gets p = 0 for all of it.
      [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
        float mx = s[r][0];
        [[unroll]] for (uint c = 1; c < LANE_KEYS; ++c) mx = max(mx, s[r][c]);
        const float m_new = max(m[r], subgroupMax(mx));
        const float alpha = exp(m[r] - m_new);
        float ps = 0.0;
        [[unroll]] for (uint c = 0; c < LANE_KEYS; ++c) {
          const float p = s[r][c] == kNegMax ? 0.0 : exp(s[r][c] - m_new);
          p_sh[(r0 + r) * KEYS + c * SG + lane] = p;
          ps += p;
        }
        l[r] = l[r] * alpha + subgroupAdd(ps);
        m[r] = m_new;
        [[unroll]] for (uint i = 0; i < LANE_PAIRS; ++i) acc[r][i] *= alpha;
      }
    }
    barrier();  // V and P in place

    if (busy) {
      for (uint j = 0; j < nk; ++j) {
        vec2 v[LANE_PAIRS];
        [[unroll]] for (uint i = 0; i < LANE_PAIRS; ++i) {
          const uint d = min(lane + i * SG, HD2 - 1);  // lanes past HD2 redo the last pair
          v[i] = UNPACK_KV(kv_sh[j * STRIDE2 + d]);
        }
        [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
          const float p = p_sh[(r0 + r) * KEYS + j];
          [[unroll]] for (uint i = 0; i < LANE_PAIRS; ++i) acc[r][i] += p * v[i];
        }
      }
    }
    // The next tile's pool rows, while nobody reads base_sh.
    const uint next = k0 + KEYS;
    for (uint j = tid; j < KEYS; j += WG_SIZE) {
      if (next + j <= kmax) base_sh[j] = pool_base(bt, next + j, kvh);
    }
    barrier();
  }

  if (!sg_rows) return;  // after the last barrier
  [[unroll]] for (uint r = 0; r < SG_ROWS; ++r) {
    if (r0 + r < nrows) {
      const float inv_l = 1.0 / (l[r] + sink_term(row0 + r0 + r, kvh, m[r]));
      const uint dst = head_row(row0 + r0 + r, kvh);
      [[unroll]] for (uint i = 0; i < LANE_PAIRS; ++i) {
        const uint d = lane + i * SG;
        if (d < HD2) o[dst + d] = acc[r][i] * inv_l;
      }
    }
  }
}
