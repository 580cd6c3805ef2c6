// One sequence driven through Model::step with its own K/V blocks: the single-user path of
// `vkllm run` and `vkllm bench`, and the model tests. The serving engine schedules many sequences
// per step itself; this class is the degenerate case of that flat batch (S = 1).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/model/model.hpp"
#include "engine/sample/params.hpp"

namespace vkllm::model {

using SamplingParams = sample::SamplingParams;

class Sequence {
 public:
  // `blocks`: the pool blocks this sequence uses, in order (empty: 0, 1, 2, ...). Tests pass a
  // shuffled list to prove the block table is honoured.
  explicit Sequence(Model& model, std::vector<std::uint32_t> blocks = {});

  // Appends `tokens` (a whole prompt or one generated token), running as many steps as the
  // model's batch limit needs, and draws the next token after the last one with `params`. The
  // first call's tokens are the prompt, later ones generated (for the penalties' counts).
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
  std::uint32_t prompt_len_ = 0;  // the first feed's tokens
  std::uint32_t draws_ = 0;
};

}  // namespace vkllm::model
