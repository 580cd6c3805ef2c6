// A single sequence through the flat-batch forward pass.
#include "engine/model/sequence.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "common/error.hpp"

namespace vkllm::model {

std::vector<ops::PenaltyEntry> penalty_entries(std::span<const std::uint32_t> recent) {
  std::vector<ops::PenaltyEntry> entries;
  for (std::uint32_t t : recent) {
    auto it = std::find_if(entries.begin(), entries.end(),
                           [t](const ops::PenaltyEntry& e) { return e.token == t; });
    if (it == entries.end()) {
      entries.push_back({t, 1});
    } else {
      ++it->count;
    }
  }
  return entries;
}

ops::SamplingRow sampling_row(const SamplingParams& p, std::uint32_t counter,
                              std::uint32_t penalty_offset, std::uint32_t penalty_count) {
  ops::SamplingRow row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.seed_lo = static_cast<std::uint32_t>(p.seed);
  row.seed_hi = static_cast<std::uint32_t>(p.seed >> 32);
  row.counter = counter;
  row.penalty_offset = penalty_offset;
  row.penalty_count = penalty_count;
  return row;
}

Sequence::Sequence(Model& model, std::vector<std::uint32_t> blocks)
    : model_(model), blocks_(std::move(blocks)) {
  if (blocks_.empty()) {
    blocks_.resize(std::min(model.max_blocks_per_seq(), model.num_blocks()));
    std::iota(blocks_.begin(), blocks_.end(), 0u);
  }
  if (blocks_.size() > model.max_blocks_per_seq()) blocks_.resize(model.max_blocks_per_seq());
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
    in.sample_rows = {static_cast<std::uint32_t>(n - 1)};
    const bool last = done + n == tokens.size();
    std::vector<std::uint32_t> seen = history_;
    seen.insert(seen.end(), in.token_ids.begin(), in.token_ids.end());
    const std::size_t window = std::min<std::size_t>(seen.size(), params.penalty_last_n);
    const bool penalize = params.repetition_penalty != 1.f || params.presence_penalty != 0.f ||
                          params.frequency_penalty != 0.f;
    if (penalize && window > 0) {
      in.penalties = penalty_entries(std::span(seen).last(window));
    }
    in.sampling = {sampling_row(params, draws_, 0, static_cast<std::uint32_t>(in.penalties.size()))};
    in.want_logits = want_logits && last;
    out = model_.step(in);
    history_.insert(history_.end(), in.token_ids.begin(), in.token_ids.end());
    done += n;
  }
  ++draws_;
  return out;
}

}  // namespace vkllm::model
