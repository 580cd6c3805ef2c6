#version 450
#extension GL_GOOGLE_include_directive : require
// The sampler (semantics in engine/ops/sample.hpp): one workgroup per row of logits[nrows, ncols].
// The row is worked on in scratch[nrows, ncols] (f32):
//   copy + raw max -> penalties (one entry per invocation) -> greedy argmax, or
//   x = l / T + max -> e = exp(x - max) (p up to a constant) -> keep threshold on e: top-k's by a
//   radix select, top-p's by bisection (over top-k's survivors gathered in shared memory when
//   they fit), both over the f32 bit pattern (monotonic for e >= 0, so they land on a value of
//   the row) -> draw.
// Every filter is scale invariant, so p is never normalized: thresholds and the draw use e.
// Rows that ask then list their top-N raw logits: N workgroup argmax passes over logits, each
// taking the next (value, index) in the order (descending value, ascending index).
// With SAMPLE_UNIFORM_PROBE the variant only writes sample_uniform(row) to logprobs[r] (tests
// compare it bit for bit with the host function).
#include "common.glsl"
#include "reduce.glsl"
#include "argmax.glsl"
#define PUSH_SAMPLE
#include "push_constants.glsl"

// Mirrors ops::SamplingRow (52 bytes), ops::PenaltyEntry (16 bytes) and ops::TopLogprob
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

shared uint red_u_[WG_SIZE];
shared float draw_sub_[WG_SIZE];       // each subgroup's sum of kept e
shared float draw_edge_[WG_SIZE + 1];  // invocation i owns the cumulative range [edge i, i+1)
shared uint draw_choice_;              // the drawn index (kNoIndex: none yet)
shared uint draw_last_;                // 1 + the last kept index (0: none)

uint wg_sum_u(uint v) {
  v = subgroupAdd(v);
  if (subgroupElect()) red_u_[gl_SubgroupID] = v;
  barrier();
  uint r = 0u;
  for (uint i = 0; i < gl_NumSubgroups; ++i) r += red_u_[i];
  barrier();
  return r;
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
// Top-k's survivors, gathered when they fit, so that top-p's passes read them and not the row.
const uint kKeptCap = 1024u;
shared float kept_e_[kKeptCap];
shared uint kept_n_;
shared uint radix_pick_;  // the bucket the k-th largest falls in (kNoIndex: fewer than k values)
shared uint radix_above_;  // elements of the prefix in buckets above it

// The bit pattern of the k-th largest e >= 0 of scratch[base, base + n) (NaNs left out): the
// largest t with count(e >= t) >= k, 0 when fewer than k values. A radix select: non-negative
// floats order like their bit patterns, so 4 passes of a 256-bucket histogram, 8 bits at a time
// from the top, each over the elements that share the prefix found so far, find it exactly
// (a bisection over the patterns took 31 passes).
uint kth_largest_bits(uint base, uint n, uint k) {
  const uint tid = gl_LocalInvocationID.x;
  uint prefix = 0u, mask = 0u, want = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (uint b = tid; b < 256u; b += WG_SIZE) hist_[b] = 0u;
    barrier();
    for (uint c = tid; c < n; c += WG_SIZE) {
      const float e = scratch[base + c];
      const uint bits = floatBitsToUint(e);
      if (!isnan(e) && (bits & mask) == prefix) atomicAdd(hist_[(bits >> uint(shift)) & 255u], 1u);
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

void main() {
  const uint r = gl_WorkGroupID.x;
  const uint tid = gl_LocalInvocationID.x;
  const uint n = pc.ncols;
  const uint base = r * n;
  const SamplingRow sp = rows[r];
  const float neg_inf = uintBitsToFloat(0xFF800000u);

  // Copy the row to scratch; the raw max is for the logprob.
  float mraw = neg_inf;
  for (uint c = tid; c < n; c += WG_SIZE) {
    const float v = logits[base + c];
    mraw = max(mraw, v);
    scratch[base + c] = v;
  }
  memoryBarrierBuffer();
  mraw = wg_max(mraw);

  // Penalties: entries name distinct tokens, so invocations never touch the same element.
  // Entries past the bound list or naming tokens >= ncols are ignored.
  const uint plen = penalties.length();
  const uint p0 = min(sp.penalty_offset, plen);
  const uint p1 = p0 + min(sp.penalty_count, plen - p0);
  for (uint j = p0 + tid; j < p1; j += WG_SIZE) {
    const PenaltyEntry pe = penalties[j];
    if (pe.token < n) {
      scratch[base + pe.token] = penalize(scratch[base + pe.token], pe.count, pe.seen, pe.bias, sp);
    }
  }
  memoryBarrierBuffer();
  barrier();

  uint id = kNoIndex;
  float sraw = 0.0;  // sum of exp(raw - mraw)
  if (!(sp.temperature > 0.0)) {
    // Greedy: the argmax of the penalized logits.
    float best = neg_inf;
    uint best_i = kNoIndex;
    for (uint c = tid; c < n; c += WG_SIZE) {
      argmax_fold(best, best_i, scratch[base + c], c);
      sraw += exp(logits[base + c] - mraw);
    }
    id = wg_argmax(best, best_i);
    if (id == kNoIndex) id = 0u;
    sraw = wg_sum(sraw);
  } else {
    // x = l / T and its max; then e = exp(x - max) in place. Each invocation rewrites exactly
    // the elements it reads here.
    float mx = neg_inf;
    for (uint c = tid; c < n; c += WG_SIZE) {
      precise float x = scratch[base + c] / sp.temperature;
      scratch[base + c] = x;
      mx = max(mx, x);
    }
    mx = wg_max(mx);
    float emax = 0.0;
    for (uint c = tid; c < n; c += WG_SIZE) {
      const float e = exp(scratch[base + c] - mx);
      scratch[base + c] = e;
      emax = max(emax, e);
      sraw += exp(logits[base + c] - mraw);
    }
    memoryBarrierBuffer();  // the draw reads other invocations' elements
    emax = wg_max(emax);
    sraw = wg_sum(sraw);

    // The keep threshold t (bit pattern of an f32 e): kept = e >= t. Bisection keeps lo a
    // threshold that satisfies the filter and hi one that does not, on bit patterns in
    // [0, bits(emax)]; it ends on the largest satisfying pattern, a value present in the row.
    const uint hi0 = floatBitsToUint(emax) + 1u;
    uint t = 0u;
    if (sp.top_k > 0u && sp.top_k < n) t = kth_largest_bits(base, n, sp.top_k);
    if (sp.top_p < 1.0) {
      // The largest tau with sum(kept e >= tau) >= top_p * sum(kept e). After top-k the kept
      // values are few: gathered into shared memory (when they fit), the bisection's passes
      // read them instead of the whole row.
      const float ft = uintBitsToFloat(t);
      if (tid == 0u) kept_n_ = 0u;
      barrier();
      if (t > 0u) {  // workgroup-uniform: top-k kept fewer than the row
        for (uint c = tid; c < n; c += WG_SIZE) {
          const float e = scratch[base + c];
          if (e >= ft) {
            const uint slot = atomicAdd(kept_n_, 1u);
            if (slot < kKeptCap) kept_e_[slot] = e;
          }
        }
      }
      barrier();
      const uint m = kept_n_;
      const bool gathered = t > 0u && m <= kKeptCap;  // workgroup-uniform
      float kept = 0.0;
      if (gathered) {
        for (uint i = tid; i < m; i += WG_SIZE) kept += kept_e_[i];
      } else {
        for (uint c = tid; c < n; c += WG_SIZE) {
          const float e = scratch[base + c];
          kept += e >= ft ? e : 0.0;
        }
      }
      const float target = sp.top_p * wg_sum(kept);
      uint lo = t, hi = hi0;
      while (hi - lo > 1u) {
        const uint mid = lo + (hi - lo) / 2u;
        const float fm = uintBitsToFloat(mid);  // > t: e >= fm implies kept
        float s = 0.0;
        if (gathered) {
          for (uint i = tid; i < m; i += WG_SIZE) s += kept_e_[i] >= fm ? kept_e_[i] : 0.0;
        } else {
          for (uint c = tid; c < n; c += WG_SIZE) {
            const float e = scratch[base + c];
            s += e >= fm ? e : 0.0;
          }
        }
        if (wg_sum(s) >= target) lo = mid; else hi = mid;
      }
      t = lo;
    }
    if (sp.min_p > 0.0) t = max(t, floatBitsToUint(min(sp.min_p, 1.0) * emax));
    const float ft = uintBitsToFloat(t);

    // The draw: invocation i sums its contiguous chunk of kept e; a scan over invocations gives
    // each its cumulative range; the owner of target = u * total walks its chunk in index order.
    const uint chunk = (n + WG_SIZE - 1u) / WG_SIZE;
    const uint c0 = min(tid * chunk, n), c1 = min(c0 + chunk, n);
    float tot = 0.0;
    uint last = 0u;
    for (uint c = c0; c < c1; ++c) {
      const float e = scratch[base + c];
      if (e >= ft) {
        tot += e;
        last = c + 1u;
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
    draw_edge_[tid] = before + sg_before;
    if (tid == 0) draw_edge_[WG_SIZE] = total;
    atomicMax(draw_last_, last);
    barrier();
    const float target = sample_uniform(sp.seed_lo, sp.seed_hi, sp.counter) * total;
    const float start = draw_edge_[tid], end = draw_edge_[tid + 1u];
    if (start <= target && target < end) {
      // The first kept index whose cumulative sum exceeds target; rounding inside the chunk
      // can leave none, then the chunk's last kept index.
      float cum = start;
      uint pick = kNoIndex;
      for (uint c = c0; c < c1; ++c) {
        const float e = scratch[base + c];
        if (e >= ft) {
          cum += e;
          pick = c;
          if (cum > target) break;
        }
      }
      // A scan that is not exactly monotonic could give two owners: the lower index wins.
      if (pick != kNoIndex) atomicMin(draw_choice_, pick);
    }
    barrier();
    id = draw_choice_;
    // target == total after rounding: no owner; the last kept index (as the host reference).
    if (id == kNoIndex) id = draw_last_ > 0u ? draw_last_ - 1u : 0u;
  }

  if (tid == 0) {
    ids[r] = id;
    logprobs[r] = logits[base + id] - mraw - log(sraw);
  }

  // The top list. Pass j takes the largest (value, index) after pass j-1's winner in the order
  // (descending value, ascending index): a strict order over non-NaN values, so no list of
  // chosen ids is kept. sp.top_logprobs and every pass's winner are uniform across the
  // workgroup, so the barriers inside wg_argmax are reached by all invocations. The loop is
  // bounded by a row value: never unrolled.
  const uint ntop = min(sp.top_logprobs, kMaxTopLogprobs);
  float prev = 0.0;
  uint prev_i = kNoIndex;  // kNoIndex: the first pass, every non-NaN value is a candidate
  for (uint j = 0u; j < ntop; ++j) {
    float best = neg_inf;
    uint best_i = kNoIndex;
    for (uint c = tid; c < n; c += WG_SIZE) {
      const float v = logits[base + c];
      if (prev_i == kNoIndex || v < prev || (v == prev && c > prev_i)) {
        argmax_fold(best, best_i, v, c);
      }
    }
    const uint i = wg_argmax(best, best_i);
    if (tid == 0) {
      // The chosen token's expression, so its entry equals logprobs[r] bit for bit.
      top[r * kMaxTopLogprobs + j] = i == kNoIndex
          ? TopLogprob(kNoIndex, neg_inf)
          : TopLogprob(i, logits[base + i] - mraw - log(sraw));
    }
    if (i == kNoIndex) break;
    prev = logits[base + i];
    prev_i = i;
  }
}

#endif
