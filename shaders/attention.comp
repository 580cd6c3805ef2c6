#version 450
#extension GL_GOOGLE_include_directive : require
// Causal GQA attention over paged K/V (KV_F32 or KV_F16 pools), flash-attention style: online
// softmax (running max and sum) in f32, K/V streamed through shared memory in tiles of KEYS keys.
//
// Rows, grid and shapes: attention_rows.glsl.
//
// SPLIT (flash-decoding): grid y also walks pc.nsplit key ranges, y = split * n_kv_heads + KV
// head. A sequence's ranges split the keys it attends this step evenly (split_range_keys: at
// least pc.split_keys each), so they follow the actual context, not the configured one. A
// workgroup covers its rows' keys in its range only and writes unnormalized partials (O, and the
// running max m and sum l per row) to `part`; the last workgroup of a (row tile, KV head) to
// finish (a counter per pair, reset by that workgroup) combines the ranges into `o`. Ranges
// depend on the row's sequence alone, never on the other sequences of the batch, and the combine
// reads them in range order whichever workgroup is last: the result is deterministic. Decode
// steps of few sequences use it: their grid is otherwise a handful of workgroups that walk a long
// context one tile after another.
//
// Per key tile: load K -> scores S = Q K^T (Q pre-scaled) -> load V into the same buffer and
// partial row maxima -> p = exp(S - m), partial row sums -> O = O * alpha + P V. Prompt chunks
// on devices with a known subgroup size take attention_tiled.comp instead.
#include "common.glsl"
#define PUSH_ATTENTION
#include "push_constants.glsl"
#include "attention_split.glsl"

layout(constant_id = 1) const uint HEAD_DIM = 128;
layout(constant_id = 2) const uint ROWS = 16;  // query rows per workgroup; divides WG_SIZE
layout(constant_id = 3) const uint KEYS = 32;  // keys per tile

const uint HD2 = HEAD_DIM / 2;      // pairs per head row
const uint STRIDE2 = HD2 + 1;       // padded shared row: threads reading column d of
                                    // consecutive rows hit different banks
const uint TPR = WG_SIZE / ROWS;    // threads per row in the softmax phases
const uint OUT_PER_THREAD = (ROWS * HD2 + WG_SIZE - 1) / WG_SIZE;  // output pairs per thread

#include "attention_rows.glsl"
#ifdef SPLIT
// [ntok * n_heads * nsplit] rows of HD2 pairs (O), then the same count of (m, l) pairs.
// Coherent: the last workgroup reads what the others wrote in this dispatch.
layout(binding = 8) coherent buffer Part { vec2 part[]; };
// Arrival counters, one per (row tile, KV head): zero between dispatches.
layout(binding = 9) coherent buffer Counters { uint counters[]; };
#endif

shared vec2 q_sh[ROWS * STRIDE2];    // this tile's query rows, times scale
shared vec2 kv_sh[KEYS * STRIDE2];   // K tile, then V tile
shared float s_sh[ROWS * KEYS];      // scores, then probabilities
shared float max_sh[WG_SIZE];        // partial row maxima, TPR per row
shared float sum_sh[WG_SIZE];        // partial row sums, TPR per row
shared float alpha_sh[ROWS];         // exp(m_old - m_new) of the current tile
shared float l_sh[ROWS];             // final row sums
shared uint limit_sh[ROWS];          // last key position of each row
shared uint first_sh[ROWS];          // first key position of each row (sliding window)
shared uint base_sh[KEYS];           // pool pair index of each key of the next tile

// The rows [row0, row0 + nrows) of one (row tile, KV head) over keys from k_begin (SPLIT: one
// range of range_keys keys, whose partials go to `part`; else all keys, normalized into `o`).
void attend(uint kvh, uint split, uint row0, uint nrows, uint bt, uint last_key, uint k_begin,
            uint range_keys) {
  const uint tid = gl_LocalInvocationID.x;
  for (uint i = tid; i < nrows * HD2; i += WG_SIZE) {
    const uint r = i / HD2, d = i % HD2;
    q_sh[r * STRIDE2 + d] = q[head_row(row0 + r, kvh) + d] * pc.scale;
  }
  if (tid < nrows) {
    const uint pos = positions[(row0 + tid) / pc.group];
    limit_sh[tid] = min(pos, last_key);
    first_sh[tid] = min(first_key(pos), limit_sh[tid]);
  }
  barrier();
  uint kmax = 0, kmin = last_key;
  for (uint r = 0; r < nrows; ++r) {
    kmax = max(kmax, limit_sh[r]);
    kmin = min(kmin, first_sh[r]);
  }
#ifdef SPLIT
  // Workgroup-uniform (kmax and kmin come from shared memory after the barrier): no range, no
  // work. Rows whose own keys lie outside this range get partials the reduce never reads.
  if (k_begin > kmax || k_begin + range_keys <= kmin) return;
  kmax = min(kmax, k_begin + range_keys - 1);
#endif
  // Key tiles stay on multiples of KEYS from the range's start (k_begin is one): tiles before the
  // sliding windows of all rows are skipped, and the rest are the tiles a full walk would take.
  const uint k_start = max(k_begin, kmin / KEYS * KEYS);
  if (tid < KEYS) base_sh[tid] = pool_base(bt, min(k_start + tid, last_key), kvh);
  barrier();

  // Softmax phases: thread (sr, sk) owns keys sk, sk + TPR, ... of row sr and keeps the row's
  // running max m and sum l (the TPR threads of a row hold the same values).
  const uint sr = tid / TPR, sk = tid % TPR;
  float m = kNegMax, l = 0.0;
  // Output phase: thread owns pairs tid + j * WG_SIZE of the [nrows, HD2] output tile.
  vec2 acc[OUT_PER_THREAD];
  [[unroll]] for (uint j = 0; j < OUT_PER_THREAD; ++j) acc[j] = vec2(0.0);

  for (uint k0 = k_start; k0 <= kmax; k0 += KEYS) {
    const uint nk = min(KEYS, kmax + 1 - k0);
    for (uint i = tid; i < nk * HD2; i += WG_SIZE) {
      const uint j = i / HD2, d = i % HD2;
      kv_sh[j * STRIDE2 + d] = LOAD_KV(k_pool, base_sh[j] + d);
    }
    barrier();

    // Scores: consecutive threads take consecutive keys of one row (Q read is a broadcast).
    for (uint i = tid; i < nrows * KEYS; i += WG_SIZE) {
      const uint r = i / KEYS, j = i % KEYS;
      float sc = kNegMax;
      if (j < nk && k0 + j <= limit_sh[r] && k0 + j >= first_sh[r]) {
        const uint qb = r * STRIDE2, kb = j * STRIDE2;
        vec2 dot2 = vec2(0.0);
        // Unrolled by hand, never fully: lavapipe's LLVM takes tens of seconds to compile the
        // fully unrolled loop (Mesa 25.0, head_dim 64).
        uint d = 0;
        [[dont_unroll]] for (; d + 4 <= HD2; d += 4) {
          dot2 += q_sh[qb + d] * kv_sh[kb + d];
          dot2 += q_sh[qb + d + 1] * kv_sh[kb + d + 1];
          dot2 += q_sh[qb + d + 2] * kv_sh[kb + d + 2];
          dot2 += q_sh[qb + d + 3] * kv_sh[kb + d + 3];
        }
        [[dont_unroll]] for (; d < HD2; ++d) dot2 += q_sh[qb + d] * kv_sh[kb + d];
        sc = capped(dot2.x + dot2.y);
      }
      s_sh[i] = sc;
    }
    barrier();

    // K is consumed: V takes its buffer. Partial row maxima meanwhile.
    for (uint i = tid; i < nk * HD2; i += WG_SIZE) {
      const uint j = i / HD2, d = i % HD2;
      kv_sh[j * STRIDE2 + d] = LOAD_KV(v_pool, base_sh[j] + d);
    }
    if (sr < nrows) {
      float pm = kNegMax;
      for (uint j = sk; j < nk; j += TPR) pm = max(pm, s_sh[sr * KEYS + j]);
      max_sh[tid] = pm;
    }
    barrier();

    if (sr < nrows) {
      float m_new = m;
      for (uint k = 0; k < TPR; ++k) m_new = max(m_new, max_sh[sr * TPR + k]);
      // A masked score's p is 0, also while a row has seen no key of its own yet (m_new still
      // kNegMax: a sliding window that starts in a later tile); from its first key on, m_new is a
      // real score and alpha wipes nothing but zeros.
      const float alpha = exp(m - m_new);
      float ps = 0.0;
      for (uint j = sk; j < nk; j += TPR) {
        const float sc = s_sh[sr * KEYS + j];
        const float p = sc == kNegMax ? 0.0 : exp(sc - m_new);
        s_sh[sr * KEYS + j] = p;
        ps += p;
      }
      sum_sh[tid] = ps;
      if (sk == 0) alpha_sh[sr] = alpha;
      m = m_new;
      l *= alpha;
    }
    barrier();

    if (sr < nrows) {
      for (uint k = 0; k < TPR; ++k) l += sum_sh[sr * TPR + k];
    }
    // O = O * alpha + P V: consecutive threads take consecutive columns of one row.
    [[unroll]] for (uint jo = 0; jo < OUT_PER_THREAD; ++jo) {
      const uint i = min(tid + jo * WG_SIZE, nrows * HD2 - 1);  // spare threads redo the last
      acc[jo] *= alpha_sh[i / HD2];
    }
    for (uint j = 0; j < nk; ++j) {
      [[unroll]] for (uint jo = 0; jo < OUT_PER_THREAD; ++jo) {
        const uint i = min(tid + jo * WG_SIZE, nrows * HD2 - 1);
        acc[jo] += s_sh[(i / HD2) * KEYS + j] * kv_sh[j * STRIDE2 + i % HD2];
      }
    }
    // The next tile's pool rows, while nobody reads base_sh.
    const uint next = k0 + KEYS + tid;
    if (tid < KEYS && next <= kmax) base_sh[tid] = pool_base(bt, next, kvh);
    barrier();
  }

#ifdef SPLIT
  const uint nparts = pc.ntok * pc.n_heads * pc.nsplit;
  if (sr < nrows && sk == 0) {
    const uint row = row0 + sr;
    const uint prow = (row / pc.group) * pc.n_heads + kvh * pc.group + row % pc.group;
    part[nparts * HD2 + prow * pc.nsplit + split] = vec2(m, l);
  }
  [[unroll]] for (uint jo = 0; jo < OUT_PER_THREAD; ++jo) {
    const uint i = tid + jo * WG_SIZE;
    if (i < nrows * HD2) {
      const uint r = i / HD2, d = i % HD2;
      const uint row = row0 + r;
      const uint prow = (row / pc.group) * pc.n_heads + kvh * pc.group + row % pc.group;
      part[(prow * pc.nsplit + split) * HD2 + d] = acc[jo];
    }
  }
#else
  if (sr < nrows && sk == 0) l_sh[sr] = l + sink_term(row0 + sr, kvh, m);
  barrier();
  [[unroll]] for (uint jo = 0; jo < OUT_PER_THREAD; ++jo) {
    const uint i = tid + jo * WG_SIZE;
    if (i < nrows * HD2) {
      const uint r = i / HD2, d = i % HD2;
      o[head_row(row0 + r, kvh) + d] = acc[jo] / l_sh[r];
    }
  }
#endif
}

#ifdef SPLIT
shared uint last_sh;

// Every workgroup of a (row tile, KV head) with rows arrives here once, after writing its partials
// (or finding its range empty); the last of the pc.nsplit combines the ranges of its rows: out
// row = sum_i w_i O_i / sum_i w_i l_i with w_i = exp(m_i - max m), over the ranges i that hold
// keys of the row (range i starts at key i * range_keys; the row attends keys
// first_key(position)..min(position, last_key)). Ranges outside a row's keys were skipped or hold
// garbage from a workgroup shared with other rows; they are never read.
void combine_if_last(uint tile, uint kvh, uint row0, uint nrows, uint range_keys, uint last_key) {
  memoryBarrierBuffer();
  barrier();
  const uint nparts = pc.ntok * pc.n_heads * pc.nsplit;
  if (gl_LocalInvocationID.x == 0) {
    const uint c = tile * (pc.n_heads / pc.group) + kvh;
    const bool last = atomicAdd(counters[c], 1u) == pc.nsplit - 1;
    if (last) counters[c] = 0;  // ready for the next dispatch and for a replay
    last_sh = last ? 1u : 0u;
  }
  barrier();
  if (last_sh == 0) return;
  memoryBarrierBuffer();
  for (uint i = gl_LocalInvocationID.x; i < nrows * HD2; i += WG_SIZE) {
    const uint r = i / HD2, d = i % HD2;
    const uint row = row0 + r;
    const uint token = row / pc.group;
    const uint prow = token * pc.n_heads + kvh * pc.group + row % pc.group;
    const uint last = min(positions[token], last_key);
    const uint nvalid = min(last / range_keys + 1, pc.nsplit);
    const uint j0 = min(first_key(positions[token]), last) / range_keys;  // sliding window
    const uint ml = nparts * HD2 + prow * pc.nsplit;  // (m, l) of range 0
    float mx = part[ml + j0].x;
    for (uint j = j0 + 1; j < nvalid; ++j) mx = max(mx, part[ml + j].x);
    float l = 0.0;
    for (uint j = j0; j < nvalid; ++j) l += exp(part[ml + j].x - mx) * part[ml + j].y;
    const float inv_l = 1.0 / (l + sink_term(row, kvh, mx));
    vec2 acc = vec2(0.0);
    for (uint j = j0; j < nvalid; ++j) acc += exp(part[ml + j].x - mx) * part[(prow * pc.nsplit + j) * HD2 + d];
    o[prow * HD2 + d] = acc * inv_l;
  }
}
#endif

void main() {
  const uint tile = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
#ifdef SPLIT
  const uint n_kv_heads = pc.n_heads / pc.group;
  const uint kvh = gl_WorkGroupID.y % n_kv_heads;
  const uint split = gl_WorkGroupID.y / n_kv_heads;
#else
  const uint kvh = gl_WorkGroupID.y;
  const uint k_begin = 0;
#endif
  // Every early return below depends on workgroup-uniform values only, before any barrier.
  if (tile >= pc.tiles) return;
  const RowTile rt = row_tile(tile);
  if (rt.nrows == 0) return;
  const uint s = rt.s, q_end = rt.q_end, row0 = rt.row0, nrows = rt.nrows;
  const uint bt = s * pc.max_blocks;
  const uint last_key = pc.max_blocks * pc.block_size - 1;  // the table holds no more
#ifdef SPLIT
  // Workgroup-uniform: every row of this workgroup belongs to sequence s.
  const uint seq_last = min(positions[q_end - 1], last_key);  // positions increase in a sequence
  const uint range_keys = split_range_keys(seq_last + 1, pc.nsplit, pc.split_keys, KEYS);
  const uint k_begin = split * range_keys;
  // A range past the sequence's keys: nothing to do, and nothing loaded or waited for first
  // (a short context on a long-context shape leaves most ranges empty); it still arrives.
  if (k_begin <= seq_last) attend(kvh, split, row0, nrows, bt, last_key, k_begin, range_keys);
  combine_if_last(tile, kvh, row0, nrows, range_keys, last_key);
#else
  attend(kvh, 0, row0, nrows, bt, last_key, k_begin, 0);
#endif

}
