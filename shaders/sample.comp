#version 450
#extension GL_GOOGLE_include_directive : require
// The sampler (semantics in engine/ops/sample.hpp), in three phases over logits[nrows, ncols]
// cut into slices of pc.slice_cols columns (docs/ARCHITECTURE.md, "The sampler spreads a long
// row over many workgroups"):
//  SAMPLE_PREPARE (a workgroup per slice and row): copy the slice to scratch, apply the
//    penalties of its tokens, then x = l / T in place; partials: raw max and sum of exp, max x,
//    the greedy argmax of the penalized logits.
//  SAMPLE_CANDIDATES (a workgroup per slice and row): e = exp(x - max x) in place (p up to a
//    constant); partials: max e, sum of e, and the slice's candidates, its cand_cap largest e
//    (every tie of the last kept) with their indices in index order, found by a radix select;
//    the slice's top-N raw logits for rows that ask.
//  finish (a workgroup per row; with one slice per row it runs the two phases above first):
//    merges the partials; top-k's threshold by a radix select and top-p's by bisection run over
//    the candidates, which hold every element >= the largest slice threshold; the draw walks the
//    candidates, or with no filter the one slice the draw lands in. A row whose thresholds fall
//    below what the candidates cover (top-k past cand_cap, top-p's mass in the tail, a slice with
//    more ties than it keeps) falls back to the same steps over the whole row in one workgroup.
// Every filter is scale invariant, so p is never normalized: thresholds and the draw use e, and
// thresholds are f32 bit patterns (monotonic for e >= 0, so they land on a value of the row).
// With SAMPLE_UNIFORM_PROBE the variant only writes sample_uniform(row) to logprobs[r] (tests
// compare it bit for bit with the host function).
#include "common.glsl"
#include "reduce.glsl"
#include "argmax.glsl"
#ifdef SAMPLE_UNIFORM_PROBE
#define PUSH_SAMPLE
#else
#define PUSH_SAMPLER
#endif
#include "push_constants.glsl"

// Mirrors ops::SamplingRow (56 bytes), ops::PenaltyEntry (16 bytes) and ops::TopLogprob
// (8 bytes), std430.
struct SamplingRow {
  float temperature;
  uint top_k;
  float top_p;
  float min_p;
  float repetition_penalty;
  float presence_penalty;
  float frequency_penalty;
  uint seed_lo;
  uint seed_hi;
  uint counter;
  uint penalty_offset;
  uint penalty_count;
  uint top_logprobs;
  uint mask_offset;
};
struct PenaltyEntry {
  uint token;
  uint count;
  float bias;
  uint seen;
};
struct TopLogprob {
  uint token;
  float logprob;
};
const uint kMaxTopLogprobs = 20u;  // ops::kMaxTopLogprobs: the stride of a row's top list

layout(binding = 0) readonly buffer Logits { float logits[]; };
layout(binding = 1) readonly buffer Rows { SamplingRow rows[]; };
layout(binding = 2) readonly buffer Penalties { PenaltyEntry penalties[]; };
// coherent: invocations read elements other invocations wrote (penalties, the draw's chunks).
layout(binding = 3) coherent buffer Scratch { float scratch[]; };
layout(binding = 4) writeonly buffer Ids { uint ids[]; };
layout(binding = 5) writeonly buffer Logprobs { float logprobs[]; };
// Constrained decoding: a row whose mask_offset is not kNoMask may draw only tokens whose bit is
// set in masks[mask_offset + token / 32] (bit token % 32).
layout(binding = 7) readonly buffer Masks { uint masks[]; };
const uint kNoMask = 0xFFFFFFFFu;

// PCG's output permutation as an integer hash (Jarkko & Olano, "Hash Functions for GPU
// Rendering", 2020). Same integer code as ops::sample_uniform in engine/ops/sample.cpp.
uint pcg_hash(uint v) {
  const uint state = v * 747796405u + 2891336453u;
  const uint word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// 24 high bits of the hash / 2^24: exact in f32, in [0, 1).
float sample_uniform(uint seed_lo, uint seed_hi, uint counter) {
  const uint h = pcg_hash(seed_lo ^ pcg_hash(seed_hi ^ pcg_hash(counter)));
  return float(h >> 8u) * (1.0 / 16777216.0);
}

#ifdef SAMPLE_UNIFORM_PROBE

void main() {
  const uint r = gl_WorkGroupID.x;
  if (gl_LocalInvocationID.x == 0) {
    logprobs[r] = sample_uniform(rows[r].seed_lo, rows[r].seed_hi, rows[r].counter);
    ids[r] = 0u;
  }
}

#else

// Not declared for the probe, whose pipeline binds six buffers.
layout(binding = 6) writeonly buffer Top { TopLogprob top[]; };

#define kNegInf uintBitsToFloat(0xFF800000u)

// Scratch (f32 words) for R = nrows, n = ncols, G = slices, C = cand_cap; indices are stored as
// f32 (exact: the host keeps ncols below 2^24), -1 for none:
//   [0, R*n)              the working rows: penalized logits, then x, then e
//   parts   R*G*kPartWords  a slice's partials, fields kP* below
//   cand_e  R*G*C           a slice's candidates' e, in index order; unused slots hold -1
//   cand_i  R*G*C           their indices
//   tops    R*G*kMaxTopLogprobs  a slice's top-N raw logits' indices, best first
// Mirrored by ops::sample_scratch_bytes (engine/ops/sample.cpp).
const uint kPartWords = 8u;
const uint kPMaxRaw = 0u;     // max raw logit
const uint kPSumRaw = 1u;     // sum of exp(raw - max raw); 0 when the max is -inf
const uint kPMaxX = 2u;       // max x (tempered rows)
const uint kPGreedy = 3u;     // greedy rows: the slice's argmax of the penalized logits (-1: none)
const uint kPMaxE = 4u;       // max e
const uint kPSumE = 5u;       // sum of e >= 0
const uint kPThreshold = 6u;  // the candidate threshold's bits (0: every e >= 0 is a candidate)
const uint kPCount = 7u;      // elements >= the threshold; more than C: the slice overflowed

uint parts_base() { return pc.nrows * pc.ncols; }
uint part(uint r, uint s) { return parts_base() + (r * pc.slices + s) * kPartWords; }
uint cand_e_base(uint r) {
  return parts_base() + pc.nrows * pc.slices * kPartWords + r * pc.slices * pc.cand_cap;
}
uint cand_i_base(uint r) { return cand_e_base(r) + pc.nrows * pc.slices * pc.cand_cap; }
uint tops_base(uint r, uint s) {
  return parts_base() + pc.nrows * pc.slices * (kPartWords + 2u * pc.cand_cap) +
         (r * pc.slices + s) * kMaxTopLogprobs;
}

// The invocation's place in subgroup order: chunks handed out by it are in the order the
// subgroup scans below add them up (WG_SIZE is a multiple of the subgroup size).
uint lane_order() { return gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID; }

shared uint red_u_[WG_SIZE];
shared float draw_sub_[WG_SIZE];       // each subgroup's sum of kept e
shared float draw_edge_[WG_SIZE + 1];  // chunk q owns the cumulative range [edge q, q+1)
shared uint draw_choice_;              // the drawn position (kNoIndex: none yet)
shared uint draw_last_;                // 1 + the last kept position (0: none)

uint wg_sum_u(uint v) {
  v = subgroupAdd(v);
  if (subgroupElect()) red_u_[gl_SubgroupID] = v;
  barrier();
  uint r = 0u;
  for (uint i = 0; i < gl_NumSubgroups; ++i) r += red_u_[i];
  barrier();
  return r;
}

// Exclusive prefix sum of v in lane_order(); total = the sum over the workgroup.
uint wg_scan_u(uint v, out uint total) {
  const uint sg_before = subgroupExclusiveAdd(v);
  const uint sg_total = subgroupAdd(v);
  if (subgroupElect()) red_u_[gl_SubgroupID] = sg_total;
  barrier();
  uint before = 0u;
  total = 0u;
  for (uint s = 0; s < gl_NumSubgroups; ++s) {
    if (s == gl_SubgroupID) before = total;
    total += red_u_[s];
  }
  barrier();
  return before + sg_before;
}

// As argmax_fold, for candidates visited in any index order.
void argmax_fold_any(inout float best, inout uint best_i, float v, uint i) {
  if (!isnan(v) && (best_i == kNoIndex || v > best || (v == best && i < best_i))) {
    best = v;
    best_i = i;
  }
}

// The repetition penalty of a seen token (prompt or output), the frequency and presence
// penalties of a generated one (count > 0), then its logit bias.
// precise: no contraction into fma, so the host reference computes the same f32 value.
float penalize(float l, uint count, uint seen, float bias, SamplingRow sp) {
  precise float v = l;
  if (seen != 0u) v = l > 0.0 ? l / sp.repetition_penalty : l * sp.repetition_penalty;
  if (count > 0u) {
    precise float d = sp.frequency_penalty * float(count) + sp.presence_penalty;
    v = v - d;
  }
  precise float out_l = v + bias;
  return out_l;
}

shared uint hist_[256];
// Top-p's survivors, gathered when they fit, so that its passes read them and not the source.
const uint kKeptCap = 1024u;
shared float kept_e_[kKeptCap];
shared uint kept_n_;
shared uint radix_pick_;   // the bucket the k-th largest falls in (kNoIndex: fewer than k values)
shared uint radix_above_;  // elements of the prefix in buckets above it

// The bit pattern of the k-th largest e >= 0 of scratch[base, base + n) (NaN and the -1 of unused
// candidate slots left out): the largest t with count(e >= t) >= k, 0 when fewer than k values.
// A radix select: non-negative floats order like their bit patterns, so 4 passes of a
// 256-bucket histogram, 8 bits at a time from the top, each over the elements that share the
// prefix found so far, find it exactly.
uint kth_largest_bits(uint base, uint n, uint k) {
  const uint tid = gl_LocalInvocationID.x;
  uint prefix = 0u, mask = 0u, want = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (uint b = tid; b < 256u; b += WG_SIZE) hist_[b] = 0u;
    barrier();
    for (uint c = tid; c < n; c += WG_SIZE) {
      const float e = scratch[base + c];
      const uint bits = floatBitsToUint(e);
      if (e >= 0.0 && (bits & mask) == prefix) atomicAdd(hist_[(bits >> uint(shift)) & 255u], 1u);
    }
    barrier();
    if (tid == 0u) {
      uint above = 0u, pick = kNoIndex;
      for (int b = 255; b >= 0; --b) {
        if (above + hist_[b] >= want) {
          pick = uint(b);
          break;
        }
        above += hist_[b];
      }
      radix_pick_ = pick;
      radix_above_ = above;
    }
    barrier();
    const uint pick = radix_pick_, above = radix_above_;
    barrier();  // everyone has read them before the next pass writes
    if (pick == kNoIndex) return 0u;  // workgroup-uniform
    prefix |= pick << uint(shift);
    mask |= 255u << uint(shift);
    want -= above;
  }
  return prefix;
}

// Sum of the e >= uintBitsToFloat(t) of scratch[base, base + n).
float sum_from(uint base, uint n, uint t) {
  const float ft = uintBitsToFloat(t);
  float s = 0.0;
  for (uint c = gl_LocalInvocationID.x; c < n; c += WG_SIZE) {
    const float e = scratch[base + c];
    s += e >= ft ? e : 0.0;
  }
  return wg_sum(s);
}

// Top-p's threshold over scratch[base, base + n): the largest pattern in [lo, hi) with
// sum(e >= it) >= target, by bisection; lo must satisfy it and hi must not. The values >= lo are
// gathered into shared memory first when they fit.
uint top_p_bits(uint base, uint n, uint lo, uint hi, float target) {
  const uint tid = gl_LocalInvocationID.x;
  const float fl = uintBitsToFloat(lo);
  if (tid == 0u) kept_n_ = 0u;
  barrier();
  if (lo > 0u) {  // workgroup-uniform
    for (uint c = tid; c < n; c += WG_SIZE) {
      const float e = scratch[base + c];
      if (e >= fl) {
        const uint slot = atomicAdd(kept_n_, 1u);
        if (slot < kKeptCap) kept_e_[slot] = e;
      }
    }
  }
  barrier();
  const uint m = kept_n_;
  const bool gathered = lo > 0u && m <= kKeptCap;  // workgroup-uniform
  while (hi - lo > 1u) {
    const uint mid = lo + (hi - lo) / 2u;
    float s = 0.0;
    if (gathered) {
      const float fm = uintBitsToFloat(mid);
      for (uint i = tid; i < m; i += WG_SIZE) s += kept_e_[i] >= fm ? kept_e_[i] : 0.0;
      s = wg_sum(s);
    } else {
      s = sum_from(base, n, mid);
    }
    if (s >= target) lo = mid; else hi = mid;
  }
  return lo;
}

// The draw over the m elements scratch[base + p], kept when >= ft, in index order; index(p) is
// uint(scratch[ibase + p]) when mapped, else ibase + p. target = u * (sum of kept) when
// abs_target < 0, else abs_target. Returns the index of the first kept element whose cumulative
// sum exceeds target; rounding that leaves none gives the last kept one; none kept: kNoIndex.
// Each invocation sums a contiguous chunk; a scan over invocations gives each its cumulative
// range; the owner of target walks its chunk.
uint draw(uint base, uint ibase, bool mapped, uint m, float ft, float u, float abs_target) {
  const uint tid = gl_LocalInvocationID.x;
  const uint q = lane_order();
  const uint chunk = (m + WG_SIZE - 1u) / WG_SIZE;
  const uint p0 = min(q * chunk, m), p1 = min(p0 + chunk, m);
  float tot = 0.0;
  uint last = 0u;
  for (uint p = p0; p < p1; ++p) {
    const float e = scratch[base + p];
    if (e >= ft) {
      tot += e;
      last = p + 1u;
    }
  }
  const float sg_before = subgroupExclusiveAdd(tot);
  const float sg_total = subgroupAdd(tot);
  if (subgroupElect()) draw_sub_[gl_SubgroupID] = sg_total;
  if (tid == 0) {
    draw_choice_ = kNoIndex;
    draw_last_ = 0u;
  }
  barrier();
  float before = 0.0, total = 0.0;
  for (uint s = 0; s < gl_NumSubgroups; ++s) {
    if (s == gl_SubgroupID) before = total;
    total += draw_sub_[s];
  }
  draw_edge_[q] = before + sg_before;
  if (tid == 0) draw_edge_[WG_SIZE] = total;
  atomicMax(draw_last_, last);
  barrier();
  const float target = abs_target < 0.0 ? u * total : abs_target;
  const float start = draw_edge_[q], end = draw_edge_[q + 1u];
  if (start <= target && target < end) {
    float cum = start;
    uint pick = kNoIndex;
    for (uint p = p0; p < p1; ++p) {
      const float e = scratch[base + p];
      if (e >= ft) {
        cum += e;
        pick = p;
        if (cum > target) break;
      }
    }
    // A scan that is not exactly monotonic could give two owners: the lower position wins.
    if (pick != kNoIndex) atomicMin(draw_choice_, pick);
  }
  barrier();
  uint pos = draw_choice_;
  // target == total after rounding: no owner; the last kept element (as the host reference).
  if (pos == kNoIndex && draw_last_ > 0u) pos = draw_last_ - 1u;
  barrier();  // everyone has read the shared results
  if (pos == kNoIndex) return kNoIndex;
  return mapped ? uint(scratch[ibase + pos]) : ibase + pos;
}

// Phase 1 over slice s of row r.
void prepare(uint r, uint s) {
  const uint tid = gl_LocalInvocationID.x;
  const uint n = pc.ncols, base = r * n;
  const uint c0 = min(s * pc.slice_cols, n), c1 = min(c0 + pc.slice_cols, n);
  const SamplingRow sp = rows[r];

  float mraw = kNegInf;
  for (uint c = c0 + tid; c < c1; c += WG_SIZE) {
    const float v = logits[base + c];
    mraw = max(mraw, v);
    scratch[base + c] = v;
  }
  memoryBarrierBuffer();
  mraw = wg_max(mraw);

  // Penalties of the slice's tokens: entries name distinct tokens, so invocations never touch
  // the same element. Entries past the bound list or naming tokens >= ncols are ignored.
  const uint plen = penalties.length();
  const uint q0 = min(sp.penalty_offset, plen);
  const uint q1 = q0 + min(sp.penalty_count, plen - q0);
  for (uint j = q0 + tid; j < q1; j += WG_SIZE) {
    const PenaltyEntry pe = penalties[j];
    if (pe.token >= c0 && pe.token < c1) {
      scratch[base + pe.token] = penalize(scratch[base + pe.token], pe.count, pe.seen, pe.bias, sp);
    }
  }
  memoryBarrierBuffer();
  barrier();
  // The grammar's mask, after the penalties: each invocation its own columns (a row's mask words
  // past the bound buffer mask nothing out).
  if (sp.mask_offset != kNoMask) {
    const uint mlen = masks.length();
    for (uint c = c0 + tid; c < c1; c += WG_SIZE) {
      const uint wi = sp.mask_offset + (c >> 5u);
      if (wi < mlen && ((masks[wi] >> (c & 31u)) & 1u) == 0u) scratch[base + c] = kNegInf;
    }
  }

  float sraw = 0.0;
  if (mraw > kNegInf) {  // workgroup-uniform
    for (uint c = c0 + tid; c < c1; c += WG_SIZE) sraw += exp(logits[base + c] - mraw);
  }
  sraw = wg_sum(sraw);
  float mx = kNegInf, greedy = -1.0;
  if (!(sp.temperature > 0.0)) {
    float best = kNegInf;
    uint best_i = kNoIndex;
    for (uint c = c0 + tid; c < c1; c += WG_SIZE) argmax_fold(best, best_i, scratch[base + c], c);
    const uint i = wg_argmax(best, best_i);
    if (i != kNoIndex) greedy = float(i);
  } else {
    // x = l / T in place: each invocation rewrites exactly the elements it reads.
    for (uint c = c0 + tid; c < c1; c += WG_SIZE) {
      precise float x = scratch[base + c] / sp.temperature;
      scratch[base + c] = x;
      mx = max(mx, x);
    }
    mx = wg_max(mx);
  }
  if (tid == 0u) {
    const uint o = part(r, s);
    scratch[o + kPMaxRaw] = mraw;
    scratch[o + kPSumRaw] = sraw;
    scratch[o + kPMaxX] = mx;
    scratch[o + kPGreedy] = greedy;
  }
}

// Phase 2 over slice s of row r; phase 1 has run on every slice of the row.
void candidates(uint r, uint s) {
  const uint tid = gl_LocalInvocationID.x;
  const uint n = pc.ncols, base = r * n;
  const uint c0 = min(s * pc.slice_cols, n), c1 = min(c0 + pc.slice_cols, n);
  const SamplingRow sp = rows[r];

  if (sp.temperature > 0.0) {  // workgroup-uniform; greedy rows need no e
    float mx = kNegInf;
    for (uint j = tid; j < pc.slices; j += WG_SIZE) mx = max(mx, scratch[part(r, j) + kPMaxX]);
    mx = wg_max(mx);
    float emax = 0.0, esum = 0.0;
    for (uint c = c0 + tid; c < c1; c += WG_SIZE) {
      const float e = exp(scratch[base + c] - mx);
      scratch[base + c] = e;
      emax = max(emax, e);
      esum += e >= 0.0 ? e : 0.0;
    }
    memoryBarrierBuffer();  // the selection below reads other invocations' elements
    emax = wg_max(emax);
    esum = wg_sum(esum);

    // The slice's candidates: every e >= its cand_cap-th largest, in index order (each
    // invocation a contiguous chunk, placed by a scan). A row with no filter draws from the
    // slices' sums and needs none: its count says so (past cand_cap, as an overflow).
    // A row of one slice needs none either: the finishing steps over the whole row cost the
    // same as over its candidates.
    const bool filters = (sp.top_k > 0u && sp.top_k < n) || sp.top_p < 1.0 || sp.min_p > 0.0;
    const bool keep = filters && pc.slices > 1u;
    uint thr = 0u, count = pc.cand_cap + 1u;
    if (keep) {  // workgroup-uniform
      thr = kth_largest_bits(base + c0, c1 - c0, pc.cand_cap);
      const float fthr = uintBitsToFloat(thr);
      const uint len = c1 - c0;
      const uint chunk = (len + WG_SIZE - 1u) / WG_SIZE;
      const uint a0 = c0 + min(lane_order() * chunk, len), a1 = min(a0 + chunk, c1);
      uint mine = 0u;
      for (uint c = a0; c < a1; ++c) mine += scratch[base + c] >= fthr ? 1u : 0u;
      uint pos = wg_scan_u(mine, count);
      const uint ce = cand_e_base(r) + s * pc.cand_cap, ci = cand_i_base(r) + s * pc.cand_cap;
      for (uint c = a0; c < a1; ++c) {
        const float e = scratch[base + c];
        if (e >= fthr) {
          if (pos < pc.cand_cap) {
            scratch[ce + pos] = e;
            scratch[ci + pos] = float(c);
          }
          ++pos;
        }
      }
      for (uint p = count + tid; p < pc.cand_cap; p += WG_SIZE) {
        scratch[ce + p] = -1.0;
        scratch[ci + p] = -1.0;
      }
    }
    if (tid == 0u) {
      const uint o = part(r, s);
      scratch[o + kPMaxE] = emax;
      scratch[o + kPSumE] = esum;
      scratch[o + kPThreshold] = uintBitsToFloat(thr);
      scratch[o + kPCount] = float(min(count, pc.cand_cap + 1u));
    }
  }

  // The slice's top-N raw logits. Pass j takes the largest (value, index) after pass j-1's
  // winner in the order (descending value, ascending index): a strict order over non-NaN values,
  // so no list of chosen ids is kept. sp.top_logprobs and every pass's winner are uniform across
  // the workgroup, so the barriers inside wg_argmax are reached by all invocations. The loop is
  // bounded by a row value: never unrolled.
  const uint ntop = min(sp.top_logprobs, kMaxTopLogprobs);
  const uint to = tops_base(r, s);
  float prev = 0.0;
  uint prev_i = kNoIndex;  // kNoIndex: the first pass, every non-NaN value is a candidate
  for (uint j = 0u; j < ntop; ++j) {
    float best = kNegInf;
    uint best_i = kNoIndex;
    for (uint c = c0 + tid; c < c1; c += WG_SIZE) {
      const float v = logits[base + c];
      if (prev_i == kNoIndex || v < prev || (v == prev && c > prev_i)) {
        argmax_fold(best, best_i, v, c);
      }
    }
    const uint i = wg_argmax(best, best_i);
    if (i == kNoIndex) {  // fewer than N non-NaN values: the rest of the list says none
      for (uint k = j + tid; k < ntop; k += WG_SIZE) scratch[to + k] = -1.0;
      break;
    }
    if (tid == 0u) scratch[to + j] = float(i);
    prev = logits[base + i];
    prev_i = i;
  }
}

// Phase 3: row r from its slices' partials.
void finish(uint r) {
  const uint tid = gl_LocalInvocationID.x;
  const uint n = pc.ncols, base = r * n, nslices = pc.slices;
  const SamplingRow sp = rows[r];
  const bool greedy = !(sp.temperature > 0.0);

  float mraw = kNegInf;
  for (uint j = tid; j < nslices; j += WG_SIZE) mraw = max(mraw, scratch[part(r, j) + kPMaxRaw]);
  mraw = wg_max(mraw);
  float sraw = 0.0, emax = 0.0, esum = 0.0, tau = 0.0, gbest = kNegInf;
  uint over = 0u, gbest_i = kNoIndex;
  for (uint j = tid; j < nslices; j += WG_SIZE) {
    const uint o = part(r, j);
    const float sr = scratch[o + kPSumRaw];
    if (sr > 0.0) sraw += sr * exp(scratch[o + kPMaxRaw] - mraw);
    if (greedy) {
      const float g = scratch[o + kPGreedy];
      if (g >= 0.0) argmax_fold(gbest, gbest_i, scratch[base + uint(g)], uint(g));
    } else {
      emax = max(emax, scratch[o + kPMaxE]);
      esum += scratch[o + kPSumE];
      tau = max(tau, scratch[o + kPThreshold]);
      if (scratch[o + kPCount] > float(pc.cand_cap)) over = 1u;
    }
  }
  sraw = wg_sum(sraw);

  uint id;
  if (greedy) {
    // The slices' argmaxes come in index order: argmax_fold keeps the lowest index of a tie.
    id = wg_argmax(gbest, gbest_i);
    if (id == kNoIndex) id = 0u;
  } else {
    emax = wg_max(emax);
    esum = wg_sum(esum);
    tau = wg_max(tau);
    // Every e >= tau is a candidate unless a slice overflowed: thresholds >= tau are found
    // exactly over the candidates; lower ones need the whole row.
    const bool cands = wg_sum_u(over) == 0u;
    const uint tau_bits = floatBitsToUint(tau);
    const uint cb = cand_e_base(r), cn = nslices * pc.cand_cap;
    bool full = !cands;
    uint t = 0u;
    if (sp.top_k > 0u && sp.top_k < n) {
      // The k-th largest is >= every slice's cand_cap-th largest when k <= cand_cap.
      if (!full && sp.top_k <= pc.cand_cap) {
        t = kth_largest_bits(cb, cn, sp.top_k);
      } else {
        full = true;
        t = kth_largest_bits(base, n, sp.top_k);
      }
    }
    if (sp.top_p < 1.0) {
      // The largest tau with sum(kept e >= tau) >= top_p * sum(kept e), over the candidates when
      // their share already reaches the target.
      const float kept = t == 0u ? esum : (full ? sum_from(base, n, t) : sum_from(cb, cn, t));
      const float target = sp.top_p * kept;
      uint lo = t;
      if (!full) {
        lo = max(t, tau_bits);
        if (sum_from(cb, cn, lo) < target) {  // workgroup-uniform
          full = true;
          lo = t;
        }
      }
      t = top_p_bits(full ? base : cb, full ? n : cn, lo, floatBitsToUint(emax) + 1u, target);
    }
    if (sp.min_p > 0.0) t = max(t, floatBitsToUint(min(sp.min_p, 1.0) * emax));
    const float ft = uintBitsToFloat(t);
    const float u = sample_uniform(sp.seed_lo, sp.seed_hi, sp.counter);
    if (cands && t >= tau_bits) {
      id = draw(cb, cand_i_base(r), true, cn, ft, u, -1.0);
    } else if (t == 0u) {
      // No filter: the slice the draw lands in from the slices' sums, then a walk of it.
      if (tid == 0u) {
        float cum = 0.0;
        uint pick = kNoIndex, last = kNoIndex;
        for (uint j = 0u; j < nslices; ++j) cum += scratch[part(r, j) + kPSumE];
        const float target = u * cum;
        cum = 0.0;
        for (uint j = 0u; j < nslices; ++j) {
          const float sj = scratch[part(r, j) + kPSumE];
          if (sj > 0.0) last = j;
          if (pick == kNoIndex && cum <= target && target < cum + sj) {
            pick = j;
            draw_sub_[0] = target - cum;
          }
          cum += sj;
        }
        if (pick == kNoIndex && last != kNoIndex) {
          pick = last;
          draw_sub_[0] = scratch[part(r, last) + kPSumE];  // past its end: its last element
        }
        red_u_[0] = pick;
      }
      barrier();
      const uint s = red_u_[0];
      const float target = draw_sub_[0];
      barrier();
      if (s == kNoIndex) {
        id = kNoIndex;
      } else {
        const uint c0 = s * pc.slice_cols, c1 = min(c0 + pc.slice_cols, n);
        id = draw(base + c0, c0, false, c1 - c0, 0.0, u, target);
      }
    } else {
      id = draw(base, 0u, false, n, ft, u, -1.0);
    }
    if (id == kNoIndex) id = 0u;
  }

  if (tid == 0) {
    ids[r] = id;
    logprobs[r] = logits[base + id] - mraw - log(sraw);
  }

  // The top list: pass j takes the largest (value, index) after pass j-1's winner among the
  // slices' own top lists, which hold the row's top N.
  const uint ntop = min(sp.top_logprobs, kMaxTopLogprobs);
  float prev = 0.0;
  uint prev_i = kNoIndex;
  for (uint j = 0u; j < ntop; ++j) {
    float best = kNegInf;
    uint best_i = kNoIndex;
    for (uint q = tid; q < nslices * ntop; q += WG_SIZE) {
      const float fi = scratch[tops_base(r, q / ntop) + q % ntop];
      if (fi < 0.0) continue;
      const uint c = uint(fi);
      const float v = logits[base + c];
      if (prev_i == kNoIndex || v < prev || (v == prev && c > prev_i)) {
        argmax_fold_any(best, best_i, v, c);
      }
    }
    const uint i = wg_argmax(best, best_i);
    if (tid == 0) {
      // The chosen token's expression, so its entry equals logprobs[r] bit for bit.
      top[r * kMaxTopLogprobs + j] = i == kNoIndex
          ? TopLogprob(kNoIndex, kNegInf)
          : TopLogprob(i, logits[base + i] - mraw - log(sraw));
    }
    if (i == kNoIndex) break;
    prev = logits[base + i];
    prev_i = i;
  }
}

#if defined(SAMPLE_PREPARE)
void main() { prepare(gl_WorkGroupID.y, gl_WorkGroupID.x); }
#elif defined(SAMPLE_CANDIDATES)
void main() { candidates(gl_WorkGroupID.y, gl_WorkGroupID.x); }
#else
void main() {
  const uint r = gl_WorkGroupID.x;
  if (pc.slices == 1u) {  // one slice per row: the three phases in one dispatch
    prepare(r, 0u);
    memoryBarrierBuffer();
    barrier();
    candidates(r, 0u);
    memoryBarrierBuffer();
    barrier();
  }
  finish(r);
}
#endif

#endif
