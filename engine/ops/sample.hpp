// Token selection on the device over the rows being sampled: argmax, and the full sampler
// (penalties, temperature, top-k, top-p, min-p, a counter-based draw). Only ids, the chosen
// token's logprob and, for rows that ask, the top-N alternatives leave the device. Knows no
// Vulkan, no models.
#pragma once

#include <cstdint>
#include <optional>

#include "engine/ops/kernels.hpp"
#include "engine/sample/params.hpp"

namespace vkllm::ops {

// ids[r] = the lowest index of the largest value of logits[r, :], r < nrows. ids: nrows u32.
// NaN never wins; a row of NaN gives 0.
void record_argmax(Kernels& k, CommandStream& cs, BufferSpan logits, BufferSpan ids,
                   std::uint32_t nrows, std::uint32_t ncols);

// Per-row sampling parameters, std430 layout (mirrored in the shader).
struct SamplingRow {
  float temperature = 0;         // <= 0: greedy (argmax after penalties)
  std::uint32_t top_k = 0;       // 0: off
  float top_p = 1;               // 1: off
  float min_p = 0;               // 0: off
  float repetition_penalty = 1;  // 1: off (llama.cpp / CTRL style: logit>0 ? l/p : l*p)
  float presence_penalty = 0;
  float frequency_penalty = 0;
  std::uint32_t seed_lo = 0;     // the request's seed
  std::uint32_t seed_hi = 0;
  std::uint32_t counter = 0;     // draw index within the request (tokens generated so far)
  std::uint32_t penalty_offset = 0;  // first entry of this row in the penalty list
  std::uint32_t penalty_count = 0;   // entries (distinct token ids seen, with their counts)
  std::uint32_t top_logprobs = 0;    // N <= kMaxTopLogprobs: the row's N most likely tokens
  std::uint32_t mask_offset = 0xFFFFFFFFu;  // kNoMask, or the row's first word in `masks`
};
// std430: scalars only, so the array stride is the plain size (no vec4 rounding).
static_assert(sizeof(SamplingRow) == 56);
constexpr std::uint32_t kNoMask = 0xFFFFFFFFu;

// OpenAI's bound on top_logprobs (chat: 0..20; completions' logprobs: 0..5).
constexpr std::uint32_t kMaxTopLogprobs = 20;

// One alternative of a row's top list. Output layout: [nrows, kMaxTopLogprobs] entries, row r's
// list first in its slice. token == kNoTopToken ends a list early (fewer non-NaN logits than N).
struct TopLogprob {
  std::uint32_t token = 0;
  float logprob = 0;  // log_softmax(raw logits)[token]
};
static_assert(sizeof(TopLogprob) == 8);
constexpr std::uint32_t kNoTopToken = 0xFFFFFFFFu;

// One entry of a row's penalty list (engine/sample/params.hpp builds them).
using PenaltyEntry = sample::PenaltyEntry;

// The device row for one draw of a request; counter = index of the draw within the request.
SamplingRow sampling_row(const sample::SamplingParams& p, std::uint32_t counter,
                         std::uint32_t penalty_offset, std::uint32_t penalty_count);

// The uniform draw in [0, 1) for (seed, counter): the same function on host and device.
// h = pcg(seed_lo ^ pcg(seed_hi ^ pcg(counter))) with pcg the PCG output-permutation hash;
// u = (h >> 8) / 2^24, exact in f32.
float sample_uniform(std::uint32_t seed_lo, std::uint32_t seed_hi, std::uint32_t counter);

// The sampler's shortest slice (columns a workgroup of its first phases takes; the device's
// tuning picks longer ones on some devices).
constexpr std::uint32_t kSampleMinSliceCols = 4096;

// Bytes of scratch record_sample needs for nrows rows of ncols logits cut into slices of at
// least slice_cols columns.
std::uint64_t sample_scratch_bytes(std::uint32_t nrows, std::uint32_t ncols,
                                   std::uint32_t slice_cols = kSampleMinSliceCols);

// Bytes of record_sample's `top` output for nrows rows.
constexpr std::uint64_t sample_top_bytes(std::uint32_t nrows) {
  return std::uint64_t{nrows} * kMaxTopLogprobs * sizeof(TopLogprob);
}

// For each row r < nrows: apply penalties to logits[r, :] (read only; work happens in scratch),
// then greedy or temperature + top-k + top-p + min-p filtering and a draw with
// sample_uniform(seed, counter). ids: nrows u32. logprobs: nrows f32, the chosen token's log
// probability under the unfiltered softmax of the raw logits.
//
// Exactly, per row with logits l (f32 throughout; the host reference in tests/reference/
// sample_ref.hpp implements the same and is the test oracle):
//  1. Penalties on a copy: for each entry (token, count, bias, seen) of the row's penalty list,
//     seen: l = (l > 0 ? l / repetition_penalty : l * repetition_penalty);
//     count > 0: l -= frequency_penalty * count + presence_penalty; then l += bias.
//     Entries must name distinct tokens; entries past the bound `penalties` range or naming a
//     token >= ncols are ignored. `penalties` holds at least one entry (bind a dummy if none).
//     Then, for a row with mask_offset != kNoMask (constrained decoding), l = -inf for every
//     token whose bit (token % 32 of word mask_offset + token / 32 of `masks`) is clear; mask
//     words past the bound `masks` clear nothing. A row must leave some token allowed.
//  2. temperature <= 0: id = argmax of the penalized l (lowest index on ties). Otherwise
//     p = softmax(l / temperature).
//  3. top_k > 0: keep p >= the k-th largest p (ties at the threshold are all kept).
//  4. top_p < 1: among kept tokens, the largest tau with sum(kept p >= tau) >= top_p *
//     sum(kept p); keep p >= tau (top_p <= 0 keeps the largest p and its ties).
//  5. min_p > 0: keep p >= min(min_p, 1) * max p.
//  6. Draw: target = sample_uniform(seed_lo, seed_hi, counter) * sum(kept p); walk kept tokens
//     in index order accumulating p; id = the first index where the sum exceeds target (the
//     last kept index if rounding leaves none).
//  7. logprobs[r] = log_softmax(raw l)[id].
//  8. N = top_logprobs > 0 (at most kMaxTopLogprobs, larger is clamped): top[r, 0..N) = the N
//     largest raw logits (not penalized, not tempered: OpenAI reports the model's
//     distribution) as (token, log_softmax(raw l)[token]), descending, ties by lower token id;
//     NaN never listed. Fewer than N candidates: the list ends with token kNoTopToken. Entries
//     past the list (and every entry of rows with N = 0) are left as they were.
// Probabilities that underflow to subnormals may be flushed to 0 by the device.
// scratch: sample_scratch_bytes(nrows, ncols); top: sample_top_bytes(nrows). Rows longer than a
// slice (4096 columns on GPUs) are cut into slices worked on by one workgroup each (copy, penalties, maxima,
// sums, each slice's 128 largest p as candidates, its top-N raw logits), then one workgroup per
// row finishes: top-k (k <= 128) by a radix select over the candidates, top-p by bisection over
// them when they hold its mass, the draw over them, or with no filter over the one slice it
// lands in. Larger k, top-p mass in the tail, or a slice with more ties than it keeps fall back
// to the same steps over the whole row in that one workgroup (a radix select, about 31 bisection
// passes). Three dispatches for long rows; a row of one slice runs the whole-row steps in one.
// slice_cols: 0 for the device's tuning; tests pass shorter slices (scratch sized to match).
// masks: the rows' token masks (none: no row may have a mask_offset; `penalties` is bound in
// its place).
void record_sample(Kernels& k, CommandStream& cs, BufferSpan logits, BufferSpan rows,
                   BufferSpan penalties, BufferSpan scratch, BufferSpan ids, BufferSpan logprobs,
                   BufferSpan top, std::uint32_t nrows, std::uint32_t ncols,
                   std::uint32_t slice_cols = 0, std::optional<BufferSpan> masks = std::nullopt);

}  // namespace vkllm::ops
