// CPU references (oracles) for token selection: argmax and the sampler of engine/ops/sample.hpp,
// written for clarity (sorting, double sums), not speed. Knows no Vulkan.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/ops/sample.hpp"

namespace vkllm::ref {

// The lowest index of the largest value; NaN never wins; a row of NaN gives 0.
std::uint32_t argmax(std::span<const float> row);

// log_softmax(raw)[id], in double.
double log_softmax_at(std::span<const float> raw, std::uint32_t id);

// Step 8 of record_sample's contract: the n largest raw values as (token, log_softmax(raw)[token]),
// by a full sort on (value descending, index ascending); NaN never listed, so fewer than n when
// the row has fewer non-NaN values.
struct TopEntry {
  std::uint32_t token = 0;
  double logprob = 0;
};
std::vector<TopEntry> top_logprobs(std::span<const float> raw, std::uint32_t n);

// Relative distance to a decision boundary under which the device may legitimately decide
// otherwise (its exp, sums and scan round differently from the reference's).
constexpr double kSampleTolerance = 1e-5;

struct SampleResult {
  std::uint32_t id = 0;
  double logprob = 0;  // log_softmax(raw)[id]
  // Some decision (greedy winner, top-k/top-p/min-p threshold, the draw) lies within
  // kSampleTolerance of its boundary: the device's id may differ; tests skip the row.
  bool ambiguous = false;
};

// One row of the sampler, steps 1-7 of record_sample's contract. `penalties` are the row's own
// entries (row.penalty_offset/count are not read); `mask`, when not empty, the row's own mask
// words (row.mask_offset is not read).
SampleResult sample_row(std::span<const float> logits, const ops::SamplingRow& row,
                        std::span<const ops::PenaltyEntry> penalties, std::span<const std::uint32_t> mask = {});

}  // namespace vkllm::ref
