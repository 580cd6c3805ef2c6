// The host side of a step: checking the batch, padding it to a bucket, writing its inputs,
// picking or recording its command buffer, submitting it and reading its output back
// (docs/ARCHITECTURE.md, the overlapped loop).
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/fault.hpp"
#include "common/log.hpp"
#include "engine/model/model.hpp"
#include "engine/model/workspace.hpp"

namespace vkllm::model {

void Model::check(const StepInput& in) const {
  const std::uint64_t T = in.token_ids.size();
  if (T == 0 || T > options_.max_batch_tokens) {
    throw InvalidRequest(fmt::format("step: {} tokens (1..{} per step)", T, options_.max_batch_tokens));
  }
  if (in.query_start.size() < 2 || in.query_start.size() - 1 > options_.max_seqs) {
    throw InvalidRequest(fmt::format("step: {} sequences (1..{} per step)",
                                     in.query_start.size() - 1, options_.max_seqs));
  }
  const std::uint32_t S = static_cast<std::uint32_t>(in.query_start.size() - 1);
  if (in.positions.size() != T || in.slot_mapping.size() != T) {
    throw InvalidRequest("step: positions and slot_mapping must have one entry per token");
  }
  if (in.block_table.size() != std::uint64_t{S} * max_blocks_per_seq_) {
    throw InvalidRequest(fmt::format("step: block_table has {} entries, expected {} x {}",
                                     in.block_table.size(), S, max_blocks_per_seq_));
  }
  if (in.query_start.front() != 0 || in.query_start.back() != T) {
    throw InvalidRequest("step: query_start must run from 0 to the token count");
  }
  const bool swa = options_.swa_blocks > 0;
  if (swa ? in.swa_slot_mapping.size() != T || in.swa_block_table.size() != in.block_table.size()
          : !in.swa_slot_mapping.empty() || !in.swa_block_table.empty()) {
    throw InvalidRequest(swa ? "step: the sliding-window layers' swa_slot_mapping and swa_block_table "
                               "must match slot_mapping and block_table in size"
                             : "step: swa_slot_mapping and swa_block_table are for a model with "
                               "sliding-window layers beside full ones");
  }
  const std::uint32_t bs = options_.block_size;
  for (std::uint32_t s = 0; s < S; ++s) {
    if (in.query_start[s + 1] <= in.query_start[s]) {
      throw InvalidRequest(fmt::format("step: sequence {} has no tokens", s));
    }
    for (std::uint32_t t = in.query_start[s]; t < in.query_start[s + 1]; ++t) {
      if (in.token_ids[t] >= config_.vocab_size && (in.feed.empty() || in.feed[t] == kNoFeed)) {
        throw InvalidRequest(fmt::format("step: token id {} is outside the vocabulary of {}",
                                         in.token_ids[t], config_.vocab_size));
      }
      const std::uint32_t p = in.positions[t];
      if (p >= options_.context_length) {
        throw InvalidRequest(fmt::format("step: position {} is beyond the context of {}", p,
                                         options_.context_length));
      }
      if (t > in.query_start[s] && p != in.positions[t - 1] + 1) {
        throw InvalidRequest(fmt::format("step: positions of sequence {} are not consecutive", s));
      }
      // Every block this token attends to must be a real block of its pools; its own slot must be
      // the one the table says. The sliding layers' table (swa) may name the null block before
      // the window: the kernels read no key there.
      const auto check_table = [&](const std::vector<std::uint32_t>& table,
                                   const std::vector<std::uint32_t>& slots, std::uint32_t blocks,
                                   const char* which) {
        for (std::uint32_t b = 0; b <= p / bs; ++b) {
          if (table[s * max_blocks_per_seq_ + b] >= blocks) {
            throw InvalidRequest(fmt::format("step: {}block {} of sequence {} is not a pool block", which, b, s));
          }
        }
        const std::uint32_t slot = table[s * max_blocks_per_seq_ + p / bs] * bs + p % bs;
        if (slots[t] != slot) {
          throw InvalidRequest(fmt::format("step: token {} maps to {}slot {}, its {}block table says {}",
                                           t, which, slots[t], which, slot));
        }
      };
      check_table(in.block_table, in.slot_mapping, options_.num_blocks, "");
      if (swa) check_table(in.swa_block_table, in.swa_slot_mapping, options_.swa_blocks, "swa ");
    }
  }
  if (config_.encoder) {
    for (std::uint32_t s = 0; s < S; ++s) {
      if (in.positions[in.query_start[s]] != 0) {
        throw InvalidRequest(fmt::format("step: sequence {} of an encoder starts at position {}; "
                                         "an encoder runs each input whole in one step",
                                         s, in.positions[in.query_start[s]]));
      }
    }
    if (!in.sample_rows.empty() || !in.score_rows.empty() || in.want_logits) {
      throw InvalidRequest(fmt::format("step: {} is an encoder: it computes embeddings, no "
                                       "logits",
                                       config_.name));
    }
  }
  if (!in.embed_rows.empty() && !options_.embeddings) {
    throw InvalidRequest("step: embedding rows asked of a model loaded without embeddings");
  }
  if (in.embed_rows.size() > T) {
    throw InvalidRequest(fmt::format("step: {} embedding rows for {} tokens", in.embed_rows.size(), T));
  }
  for (std::uint32_t r : in.embed_rows) {
    if (r >= T) throw InvalidRequest(fmt::format("step: embedding row {} is not a token of the batch", r));
  }
  const std::uint64_t R = in.sample_rows.size();
  if (R > S || in.sampling.size() != R) {
    throw InvalidRequest(fmt::format("step: {} sample rows with {} sampling entries (0..{})", R,
                                     in.sampling.size(), S));
  }
  for (std::uint32_t r : in.sample_rows) {
    if (r >= T) throw InvalidRequest(fmt::format("step: sample row {} is not a token of the batch", r));
  }
  if (in.penalties.size() > ws_->in.max_penalties) {
    throw InvalidRequest(fmt::format("step: {} penalty entries (at most {})", in.penalties.size(),
                                     ws_->in.max_penalties));
  }
  if (in.late_mask_words > 0 && (!in.masks.empty() || in.sample_rows.empty())) {
    throw InvalidRequest("step: late masks (late_mask_words) need sampled rows and no masks given with the step");
  }
  const std::uint64_t mask_list = in.late_mask_words > 0 ? in.late_mask_words : in.masks.size();
  for (const ops::SamplingRow& row : in.sampling) {
    if (std::uint64_t{row.penalty_offset} + row.penalty_count > in.penalties.size()) {
      throw InvalidRequest("step: a sampling row's penalty range is outside the penalty list");
    }
    if (row.top_logprobs > ops::kMaxTopLogprobs) {
      throw InvalidRequest(fmt::format("step: {} top logprobs asked (at most {})",
                                       row.top_logprobs, ops::kMaxTopLogprobs));
    }
    if (row.mask_offset != ops::kNoMask &&
        std::uint64_t{row.mask_offset} + ws_->in.mask_words > mask_list) {
      throw InvalidRequest("step: a sampling row's mask is outside the mask list");
    }
  }
  if (mask_list > std::uint64_t{S} * ws_->in.mask_words) {
    throw InvalidRequest(fmt::format("step: {} mask words (at most {} rows of {})", mask_list, S,
                                     ws_->in.mask_words));
  }
  for (const ops::PenaltyEntry& e : in.penalties) {
    if (e.token >= config_.vocab_size) {
      throw InvalidRequest(fmt::format("step: penalty token {} is outside the vocabulary", e.token));
    }
  }
  if (in.score_rows.size() != in.score_targets.size() || in.score_rows.size() > T ||
      in.score_top > ops::kMaxTopLogprobs) {
    throw InvalidRequest(fmt::format("step: {} score rows, {} targets, top {} (at most {} rows, {} top)",
                                     in.score_rows.size(), in.score_targets.size(), in.score_top, T,
                                     ops::kMaxTopLogprobs));
  }
  for (std::size_t i = 0; i < in.score_rows.size(); ++i) {
    if (in.score_rows[i] >= T || in.score_targets[i] >= config_.vocab_size) {
      throw InvalidRequest(fmt::format("step: score row {} (target {}) is outside the batch or vocabulary",
                                       in.score_rows[i], in.score_targets[i]));
    }
  }
  if (!in.feed.empty() && in.feed.size() != T) {
    throw InvalidRequest(fmt::format("step: feed has {} entries for {} tokens", in.feed.size(), T));
  }
  for (std::uint32_t f : in.feed) {
    if (f != kNoFeed && f >= last_rows_) {
      throw InvalidRequest(fmt::format("step: a token is fed from sample row {}; the step before "
                                       "drew {} rows",
                                       f, last_rows_));
    }
  }
}

std::uint32_t Model::step_bucket(std::uint32_t n) {
  if (n <= 8) return std::bit_ceil(std::max<std::uint32_t>(n, 1));
  if (n <= 256) return (n + 7) / 8 * 8;
  return (n + 63) / 64 * 64;
}

// Padding sequences hold the padding tokens (at least one each), so a real sequence never sees
// one: its last token, which sets its attention ranges, stays its own. When the buckets do not
// fit the workspace (max_seqs, max_batch_tokens) the step runs unpadded.
Model::Padded Model::padded_shape(std::uint32_t T, std::uint32_t S, std::uint32_t R) const {
  if (!options_.pad_steps) return {T, S, R};
  for (std::uint32_t extra = 0; extra <= 1; ++extra) {
    const std::uint32_t sb = std::min(step_bucket(S + extra), options_.max_seqs);
    if (sb < S + extra) break;
    const std::uint32_t tmin = T + (sb - S);
    const std::uint32_t tb = std::min(step_bucket(tmin), options_.max_batch_tokens);
    if (tb < tmin) break;
    if (tb == T || sb > S) return {tb, sb, R == 0 ? 0 : std::min(step_bucket(R), sb)};
  }
  return {T, S, R};
}

// Inputs go to their fixed sections of the shape's input buffer, so a recording of this shape
// can be replayed.
void Model::write_inputs(const StepInput& input, const StepShape& sh) {
  Workspace& w = *ws_;
  const auto T0 = static_cast<std::uint32_t>(input.token_ids.size());
  const auto S0 = static_cast<std::uint32_t>(input.query_start.size() - 1);
  const auto R0 = static_cast<std::uint32_t>(input.sample_rows.size());
  const std::uint32_t T = sh.T, S = sh.S, R = sh.R, P = sh.P;
  std::byte* base = w.inputs[sh.slot].mapped();
  // An empty vector's data() may be null, which memcpy must not see even for 0 bytes (UBSan).
  auto put = [&](std::uint64_t offset, const auto& vec) {
    if (!vec.empty()) std::memcpy(base + offset, vec.data(), vec.size() * sizeof(vec[0]));
  };
  put(w.in.token_ids, input.token_ids);
  put(w.in.positions, input.positions);
  put(w.in.query_start, input.query_start);
  put(w.in.slot_mapping, input.slot_mapping);
  put(w.in.block_table, input.block_table);
  put(w.in.swa_slot_mapping, input.swa_slot_mapping);
  put(w.in.swa_block_table, input.swa_block_table);
  put(w.in.sample_rows, input.sample_rows);
  put(w.in.sampling, input.sampling);
  if (!input.penalties.empty()) put(w.in.penalties, input.penalties);
  if (!input.masks.empty()) put(w.in.masks, input.masks);
  // The feed of every token, padding included: kNoFeed where the host's id stands.
  std::memset(base + w.in.feed, 0xff, std::uint64_t{T} * 4);
  put(w.in.feed, input.feed);
  if (T > T0 || S > S0 || R > R0) {
    // Padding sequence j holds token T0 + j; the last one also holds the rest, at positions
    // 0, 1, ... Their tables point at the null block, their slots nowhere; padded sample rows
    // draw greedily from token 0 and are never read.
    auto at = [&](std::uint64_t offset, std::uint64_t i) {
      return reinterpret_cast<std::uint32_t*>(base + offset) + i;
    };
    const std::uint32_t last = S - 1;
    for (std::uint32_t t = T0; t < T; ++t) {
      const std::uint32_t seq = std::min(S0 + (t - T0), last);
      *at(w.in.token_ids, t) = 0;
      *at(w.in.positions, t) = seq < last ? 0 : t - (T0 + (last - S0));
      *at(w.in.slot_mapping, t) = ~0u;
      *at(w.in.swa_slot_mapping, t) = ~0u;
    }
    for (std::uint32_t s = S0; s < S; ++s) *at(w.in.query_start, s + 1) = s < last ? T0 + (s - S0) + 1 : T;
    std::memset(at(w.in.block_table, std::uint64_t{S0} * max_blocks_per_seq_), 0,
                std::uint64_t{S - S0} * max_blocks_per_seq_ * 4);
    std::memset(at(w.in.swa_block_table, std::uint64_t{S0} * max_blocks_per_seq_), 0,
                std::uint64_t{S - S0} * max_blocks_per_seq_ * 4);
    for (std::uint32_t r = R0; r < R; ++r) {
      *at(w.in.sample_rows, r) = 0;
      const ops::SamplingRow greedy;
      std::memcpy(base + w.in.sampling + std::uint64_t{r} * sizeof(ops::SamplingRow), &greedy, sizeof(greedy));
    }
  }
  if (sh.E > 0) {  // padding rows read token 0
    put(w.in.embed_rows, input.embed_rows);
    std::memset(base + w.in.embed_rows + input.embed_rows.size() * 4, 0,
                (sh.E - input.embed_rows.size()) * 4);
  }
  if (config_.encoder) {
    // Bidirectional attention: every token's last key is its sequence's last position (padding
    // included: a padding sequence attends over its own tokens).
    const auto* qs = reinterpret_cast<const std::uint32_t*>(base + w.in.query_start);
    const auto* pos = reinterpret_cast<const std::uint32_t*>(base + w.in.positions);
    auto* limits = reinterpret_cast<std::uint32_t*>(base + w.in.attn_limits);
    for (std::uint32_t s = 0; s < S; ++s) {
      for (std::uint32_t t = qs[s]; t < qs[s + 1]; ++t) limits[t] = pos[qs[s + 1] - 1];
    }
  }
  if (P > 0) {
    std::vector<ops::SamplingRow> rows(P);
    std::vector<ops::PenaltyEntry> force(P);
    for (std::uint32_t i = 0; i < P; ++i) {
      rows[i].penalty_offset = i;
      rows[i].penalty_count = 1;
      rows[i].top_logprobs = input.score_top;
      force[i] = {input.score_targets[i], 0, 1e30f, 0};
    }
    put(w.in.score_rows, input.score_rows);
    put(w.in.score_sampling, rows);
    put(w.in.score_penalties, force);
  }
}

// The recording of this shape: replayed, or recorded now (evicting the least recently used one
// that is not in flight when the cache is full).
Model::Recording& Model::recording_for(const StepShape& shape) {
  auto record_timed = [&](Recording& rec) {
    const auto t0 = std::chrono::steady_clock::now();
    if (shape.split && !rec.tail) rec.tail.emplace(device_.command_stream());
    std::tie(rec.layer_dispatches, rec.layer_barriers) = record(rec.cs, rec.tail ? &*rec.tail : nullptr, shape);
    recording_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++recordings_;
  };
  auto busy = [&](const Recording* r) {
    return std::any_of(in_flight_.begin(), in_flight_.end(),
                       [r](const InFlight& f) { return f.rec == r; });
  };
  auto it = recordings_cache_.find(shape);
  if (it == recordings_cache_.end()) {
    if (recordings_cache_.size() >= kMaxRecordings) {
      auto oldest = recordings_cache_.end();
      for (auto e = recordings_cache_.begin(); e != recordings_cache_.end(); ++e) {
        if (busy(e->second.get())) continue;
        if (oldest == recordings_cache_.end() || e->second->last_use < oldest->second->last_use) oldest = e;
      }
      if (oldest != recordings_cache_.end()) recordings_cache_.erase(oldest);
    }
    std::unique_ptr<Recording> rec;
    try {
      rec = std::make_unique<Recording>(Recording{device_.command_stream()});
      record_timed(*rec);
    } catch (const OutOfMemory& e) {
      // Memory for a new recording ran out at run time (docs/ARCHITECTURE.md "Injected
      // faults"): the idle recordings give back their command buffers and descriptor pools, and
      // this one is tried once more; a second failure fails the step.
      std::erase_if(recordings_cache_, [&](const auto& e) { return !busy(e.second.get()); });
      log::warn("out of memory recording a step ({}); dropped the idle recordings and retrying", e.what());
      rec = std::make_unique<Recording>(Recording{device_.command_stream()});
      record_timed(*rec);
    }
    it = recordings_cache_.emplace(shape, std::move(rec)).first;
  } else if (!replay_) {
    record_timed(*it->second);
  } else {
    ++replays_;
  }
  it->second->last_use = ++use_clock_;
  return *it->second;
}

void Model::submit(const StepInput& input) {
  if (in_flight_.size() >= 2) throw std::logic_error("Model::submit: two steps in flight already");
  if (awaiting_masks()) throw std::logic_error("Model::submit: the last step still waits for its masks");
  check(input);
  if (input.want_logits && !in_flight_.empty()) {
    throw std::logic_error("Model::submit: a step that reads logits back runs alone");
  }
  const auto T0 = static_cast<std::uint32_t>(input.token_ids.size());
  const auto S0 = static_cast<std::uint32_t>(input.query_start.size() - 1);
  const auto R0 = static_cast<std::uint32_t>(input.sample_rows.size());
  const Padded padded = padded_shape(T0, S0, R0);
  StepShape sh;
  sh.T = padded.T;
  sh.S = padded.S;
  sh.R = padded.R;
  sh.want_logits = input.want_logits;
  sh.use_sampler = !input.penalties.empty() || input.want_logprobs;
  for (const ops::SamplingRow& row : input.sampling) {
    sh.use_sampler |= row.temperature > 0.f || row.mask_offset != ops::kNoMask;
    sh.want_top |= row.top_logprobs > 0;
  }
  sh.use_sampler |= sh.want_top;
  sh.split = input.late_mask_words > 0;
  sh.P = static_cast<std::uint32_t>(input.score_rows.size());
  sh.score_top = input.score_top;
  if (!input.embed_rows.empty()) {
    const auto E = static_cast<std::uint32_t>(input.embed_rows.size());
    sh.E = options_.pad_steps ? std::min(step_bucket(E), options_.max_batch_tokens) : E;
  }
  // The other slot than the step in flight's, or than the one whose ids the feed reads; else
  // slot 0, so steps run one at a time replay one recording per shape.
  const bool fed = std::any_of(input.feed.begin(), input.feed.end(), [](std::uint32_t f) { return f != kNoFeed; });
  sh.slot = fed || !in_flight_.empty() ? 1 - last_slot_ : 0;

  write_inputs(input, sh);
  Recording& rec = recording_for(sh);
  last_counts_ = {rec.cs.dispatch_count(), rec.cs.barrier_count(), rec.layer_dispatches,
                  rec.layer_barriers};
  if (fault::hit("step_submit")) {
    throw DeviceLost("vkQueueSubmit failed: VK_ERROR_DEVICE_LOST (injected: VKLLM_FAULT step_submit)");
  }
  rec.cs.submit();
  InFlight f{&rec, sh, R0, {}, static_cast<std::uint32_t>(input.embed_rows.size())};
  f.late_words = input.late_mask_words;
  f.released = !sh.split;
  if (sh.want_top) {
    for (const ops::SamplingRow& row : input.sampling) f.top_counts.push_back(row.top_logprobs);
  }
  in_flight_.push_back(std::move(f));
  last_slot_ = sh.slot;
  last_rows_ = R0;
}

void Model::release_masks(std::span<const std::uint32_t> masks) {
  if (!awaiting_masks()) throw std::logic_error("Model::release_masks: no step waits for masks");
  InFlight& f = in_flight_.back();
  if (masks.size() != f.late_words) {
    throw std::logic_error(fmt::format("Model::release_masks: {} words, the step was submitted for {}",
                                       masks.size(), f.late_words));
  }
  // Host-coherent memory, written before the submission that reads it.
  std::memcpy(ws_->inputs[f.shape.slot].mapped() + ws_->in.masks, masks.data(), masks.size_bytes());
  f.rec->tail->submit();
  f.released = true;
}

StepOutput Model::wait() {
  if (in_flight_.empty()) throw std::logic_error("Model::wait: no step in flight");
  if (in_flight_.size() == 1 && awaiting_masks()) {
    release_masks(std::vector<std::uint32_t>(in_flight_.front().late_words, ~0u));
  }
  const InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  const auto wait0 = std::chrono::steady_clock::now();
  (f.rec->tail ? *f.rec->tail : f.rec->cs).wait();
  if (fault::hit("step_wait")) {
    throw DeviceLost("vkWaitSemaphores failed: VK_ERROR_DEVICE_LOST (injected: VKLLM_FAULT step_wait)");
  }
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - wait0).count();
  for (const platform::CommandStream* cs : {&f.rec->cs, f.shape.split ? &*f.rec->tail : nullptr}) {
    const double busy = cs ? cs->span_seconds() : -1;
    if (busy >= 0) busy_seconds_ += busy;
  }

  const Workspace& w = *ws_;
  const StepShape& sh = f.shape;
  const std::uint32_t R0 = f.R0, P = sh.P;
  auto top_list = [](const std::byte* at, std::uint32_t n) {
    std::vector<ops::TopLogprob> list(n);
    std::memcpy(list.data(), at, n * sizeof(ops::TopLogprob));
    list.erase(std::find_if(list.begin(), list.end(),
                            [](const ops::TopLogprob& e) { return e.token == ops::kNoTopToken; }),
               list.end());
    return list;
  };
  StepOutput out;
  const std::byte* rb = w.readback[sh.slot].mapped();
  out.ids.resize(R0);
  std::memcpy(out.ids.data(), rb, R0 * 4);
  if (sh.use_sampler) {
    out.logprobs.resize(R0);
    std::memcpy(out.logprobs.data(), rb + std::uint64_t{options_.max_seqs} * 4, R0 * 4);
  }
  if (sh.want_logits) {
    out.logits.resize(std::uint64_t{R0} * config_.vocab_size);
    std::memcpy(out.logits.data(), w.logits_readback.mapped(), out.logits.size() * 4);
  }
  if (sh.want_top) {
    out.top.resize(R0);
    for (std::uint32_t r = 0; r < R0; ++r) {
      out.top[r] = top_list(rb + w.readback_top + ops::sample_top_bytes(r), f.top_counts[r]);
    }
  }
  if (P > 0) {
    out.score_logprobs.resize(P);
    std::memcpy(out.score_logprobs.data(), rb + w.readback_score, std::uint64_t{P} * 4);
  }
  if (f.E0 > 0) {
    out.embeddings.resize(std::uint64_t{f.E0} * config_.d_model);
    std::memcpy(out.embeddings.data(), w.embed_readback[sh.slot].mapped(), out.embeddings.size() * 4);
  }
  if (P > 0 && sh.score_top > 0) {
    out.score_top.resize(P);
    for (std::uint32_t i = 0; i < P; ++i) {
      out.score_top[i] = top_list(rb + w.readback_score_top + ops::sample_top_bytes(i), sh.score_top);
    }
  }
  return out;
}

}  // namespace vkllm::model
