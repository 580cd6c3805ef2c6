// A single sequence through the flat-batch forward pass.
#include "engine/model/sequence.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "common/error.hpp"
#include "engine/sample/penalties.hpp"

namespace vkllm::model {

Sequence::Sequence(Model& model, std::vector<std::uint32_t> blocks)
    : model_(model), blocks_(std::move(blocks)) {
  if (blocks_.empty()) {
    blocks_.resize(std::min(model.max_blocks_per_seq(), model.num_blocks()));
    std::iota(blocks_.begin(), blocks_.end(), 0u);
  }
  if (blocks_.size() > model.max_blocks_per_seq()) blocks_.resize(model.max_blocks_per_seq());
  // The sliding layers' table (a model with both kinds of layer) names the same blocks: their
  // pools must hold them all (no window is given back here).
  if (model.swa_num_blocks() > 0 &&
      *std::max_element(blocks_.begin(), blocks_.end()) >= model.swa_num_blocks()) {
    throw InvalidRequest(fmt::format("sequence: the sliding-window layers' pool of {} blocks does "
                                     "not hold its blocks; load the model with swa_blocks >= {}",
                                     model.swa_num_blocks(),
                                     *std::max_element(blocks_.begin(), blocks_.end()) + 1));
  }
}

std::uint32_t Sequence::capacity() const {
  return static_cast<std::uint32_t>(blocks_.size()) * model_.options().block_size;
}

StepOutput Sequence::feed(std::span<const std::uint32_t> tokens, const SamplingParams& params,
                          bool want_logits) {
  if (tokens.empty()) throw InvalidRequest("feed: no tokens");
  if (length() + tokens.size() > capacity()) {
    throw InvalidRequest(fmt::format("context overflow: {} tokens + {} new exceed {}", length(),
                                     tokens.size(), capacity()));
  }
  const std::uint32_t bs = model_.options().block_size;
  const std::uint32_t mb = model_.max_blocks_per_seq();
  StepOutput out;
  std::size_t done = 0;
  while (done < tokens.size()) {
    const std::size_t n = std::min<std::size_t>(tokens.size() - done, model_.options().max_batch_tokens);
    StepInput in;
    in.token_ids.assign(tokens.begin() + done, tokens.begin() + done + n);
    in.query_start = {0, static_cast<std::uint32_t>(n)};
    in.block_table.assign(mb, 0);
    std::copy(blocks_.begin(), blocks_.end(), in.block_table.begin());
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t pos = length() + static_cast<std::uint32_t>(i);
      in.positions.push_back(pos);
      in.slot_mapping.push_back(blocks_[pos / bs] * bs + pos % bs);
    }
    if (model_.swa_num_blocks() > 0) {
      in.swa_slot_mapping = in.slot_mapping;
      in.swa_block_table = in.block_table;
    }
    in.sample_rows = {static_cast<std::uint32_t>(n - 1)};
    const bool last = done + n == tokens.size();
    // Tokens of this call count as prompt on the first call, as generated after it.
    std::vector<std::uint32_t> seen = history_;
    seen.insert(seen.end(), in.token_ids.begin(), in.token_ids.end());
    const std::size_t prompt_len = draws_ == 0 ? seen.size() : prompt_len_;
    const std::span<const std::uint32_t> all(seen);
    in.penalties = sample::build_penalties(params, all.first(prompt_len), all.subspan(prompt_len), {});
    in.sampling = {ops::sampling_row(params, draws_, 0, static_cast<std::uint32_t>(in.penalties.size()))};
    in.want_logits = want_logits && last;
    out = model_.step(in);
    history_.insert(history_.end(), in.token_ids.begin(), in.token_ids.end());
    done += n;
  }
  if (draws_ == 0) prompt_len_ = length();
  ++draws_;
  return out;
}

}  // namespace vkllm::model
