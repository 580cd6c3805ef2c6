// One sequence driven through Model::step with its own K/V blocks: the single-user path of
// `vkllm run` and `vkllm bench`, and the model tests. The serving engine schedules many sequences
// per step itself; this class is the degenerate case of that flat batch (S = 1).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model/model.hpp"

namespace vkllm::model {

// What a user asks of the sampler (llama.cpp's defaults where it has them).
struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  std::uint32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repetition_penalty = 1.f;
  float presence_penalty = 0.f;
  float frequency_penalty = 0.f;
  std::uint32_t penalty_last_n = 64;  // tokens the penalties look back over
  std::uint64_t seed = 0;
};

// Distinct tokens of `recent` with their counts, in first-seen order.
std::vector<ops::PenaltyEntry> penalty_entries(std::span<const std::uint32_t> recent);

// The device row for one draw; counter = index of the draw within the request.
ops::SamplingRow sampling_row(const SamplingParams& p, std::uint32_t counter,
                              std::uint32_t penalty_offset, std::uint32_t penalty_count);

class Sequence {
 public:
  // `blocks`: the pool blocks this sequence uses, in order (empty: 0, 1, 2, ...). Tests pass a
  // shuffled list to prove the block table is honoured.
  explicit Sequence(Model& model, std::vector<std::uint32_t> blocks = {});

  // Appends `tokens` (a whole prompt or one generated token), running as many steps as the
  // model's batch limit needs, and draws the next token after the last one with `params`.
  // Throws InvalidRequest when the context would overflow.
  StepOutput feed(std::span<const std::uint32_t> tokens, const SamplingParams& params,
                  bool want_logits = false);

  std::uint32_t length() const { return static_cast<std::uint32_t>(history_.size()); }
  std::uint32_t capacity() const;
  const std::vector<std::uint32_t>& history() const { return history_; }

 private:
  Model& model_;
  std::vector<std::uint32_t> blocks_;
  std::vector<std::uint32_t> history_;
  std::uint32_t draws_ = 0;
};

}  // namespace vkllm::model
