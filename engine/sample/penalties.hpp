// The penalty list of one sampled row, built from what the request has seen (pure C++).
#pragma once

#include <span>
#include <vector>

#include "engine/sample/params.hpp"

namespace vkllm::sample {

// One entry per distinct token of the last `p.penalty_last_n` tokens of prompt + generated
// (`seen`: the repetition penalty applies), `count` = its occurrences among the generated tokens
// of that window (frequency and presence penalties: OpenAI counts only what the model wrote),
// merged with `bias` (one entry per token). No penalties asked: only the bias entries.
std::vector<PenaltyEntry> build_penalties(const SamplingParams& p,
                                          std::span<const std::uint32_t> prompt,
                                          std::span<const std::uint32_t> generated,
                                          std::span<const LogitBias> bias);

}  // namespace vkllm::sample
