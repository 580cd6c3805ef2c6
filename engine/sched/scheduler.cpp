// The step planner: decodes first, then chunked prefill in the remaining budget; blocks on
// demand; preemption of the most recently admitted sequence when the pool runs dry.
#include "engine/sched/scheduler.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

#include "common/error.hpp"

namespace vkllm::sched {

Scheduler::Scheduler(kv::BlockPool& pool, kv::BlockPool* swa_pool, SchedulerConfig config,
                     std::unique_ptr<SchedulingPolicy> policy)
    : pool_(pool), swa_pool_(swa_pool), config_(config), policy_(std::move(policy)) {
  if ((swa_pool_ != nullptr) != (config.swa_window > 0)) {
    throw std::invalid_argument("scheduler: a second pool goes with a sliding window, and back");
  }
  if (config.max_num_batched_tokens == 0 || config.max_num_seqs == 0 || config.block_size == 0 ||
      config.max_model_len == 0) {
    throw std::invalid_argument("scheduler: every limit must be > 0");
  }
  if (!policy_) throw std::invalid_argument("scheduler: no policy");
  if (!(config.artificial_preempt >= 0.0 && config.artificial_preempt <= 1.0)) {
    throw std::invalid_argument("scheduler: artificial_preempt must be a probability");
  }
  artificial_rng_.seed(config.artificial_preempt_seed);
  artificial_left_ = config.artificial_preempt > 0.0 ? config.artificial_preempt_max : 0;
}

bool Scheduler::artificial_preemption() {
  if (artificial_left_ == 0) return false;
  if (std::uniform_real_distribution<double>(0.0, 1.0)(artificial_rng_) >= config_.artificial_preempt) {
    return false;
  }
  --artificial_left_;
  return true;
}

std::vector<const Sequence*> Scheduler::view(std::span<const SeqId> ids) const {
  std::vector<const Sequence*> out;
  out.reserve(ids.size());
  for (SeqId id : ids) out.push_back(find(id));
  return out;
}

Sequence& Scheduler::get(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) throw std::logic_error(fmt::format("scheduler: unknown sequence {}", id));
  return *it->second;
}

const Sequence* Scheduler::find(SeqId id) const {
  auto it = seqs_.find(id);
  return it == seqs_.end() ? nullptr : it->second.get();
}

void Scheduler::add(SeqId id, std::vector<std::uint32_t> prompt, std::uint32_t max_new_tokens,
                    bool reuse_prefix, SeqId shares_prompt_of, bool whole) {
  if (seqs_.count(id)) throw std::logic_error(fmt::format("scheduler: duplicate sequence {}", id));
  if (prompt.empty()) throw InvalidRequest("the prompt is empty");
  const std::uint64_t len = prompt.size();
  if (len >= config_.max_model_len) {
    throw InvalidRequest(fmt::format("the prompt has {} tokens; this server's context holds {} "
                                     "(prompt plus at least one generated token)",
                                     len, config_.max_model_len));
  }
  const std::uint64_t blocks_needed = (len + 1 + config_.block_size - 1) / config_.block_size;
  if (blocks_needed > pool_.usable_blocks()) {
    throw InvalidRequest(fmt::format("the prompt has {} tokens; the KV cache holds {} tokens in all",
                                     len, std::uint64_t{pool_.usable_blocks()} * config_.block_size));
  }
  if (swa_pool_) {
    // The sliding layers hold their window and the chunks of two steps (the one in flight, the
    // next) at most.
    const std::uint64_t chunk = std::min<std::uint64_t>(len, config_.max_num_batched_tokens);
    const std::uint64_t most = std::min<std::uint64_t>(
        blocks_needed, (config_.swa_window + 2 * chunk + config_.block_size - 1) / config_.block_size + 2);
    if (most > swa_pool_->usable_blocks()) {
      throw InvalidRequest(fmt::format("the sliding-window layers' KV pool of {} blocks cannot hold "
                                       "a window of {} tokens and this prompt's chunks",
                                       swa_pool_->usable_blocks(), config_.swa_window));
    }
  }
  if (whole && len > config_.max_num_batched_tokens) {
    throw InvalidRequest(fmt::format("scheduler: a whole prompt of {} tokens exceeds a step's {}", len,
                                     config_.max_num_batched_tokens));
  }
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->whole = whole;
  s->prompt_len = static_cast<std::uint32_t>(len);
  s->reuse_prefix = reuse_prefix;
  s->shares_prompt_of = reuse_prefix ? shares_prompt_of : 0;
  // Output is capped by the context and by the whole pool, so a lone sequence always finishes.
  const std::uint64_t pool_tokens = std::uint64_t{pool_.usable_blocks()} * config_.block_size;
  s->max_new_tokens = static_cast<std::uint32_t>(std::min<std::uint64_t>(
      {max_new_tokens, config_.max_model_len - len, pool_tokens - len}));
  s->tokens = std::move(prompt);
  seqs_.emplace(id, std::move(s));
  waiting_.push_back(id);
}

bool Scheduler::ensure_blocks(Sequence& s, std::uint32_t tokens) {
  const std::uint32_t need = (tokens + config_.block_size - 1) / config_.block_size;
  const auto grow = [need](kv::BlockPool& pool, std::vector<kv::BlockId>& blocks) {
    if (need <= blocks.size()) return true;
    auto got = pool.allocate(need - static_cast<std::uint32_t>(blocks.size()));
    if (!got) return false;
    blocks.insert(blocks.end(), got->begin(), got->end());
    return true;
  };
  // What one pool gave stays with the sequence (its next try, or its release, takes it).
  return grow(pool_, s.blocks) && (!swa_pool_ || grow(*swa_pool_, s.swa_blocks));
}

void Scheduler::release_all(Sequence& s) {
  for (kv::BlockId b : s.blocks) {
    if (b != kv::kNullBlock) pool_.release(b);
  }
  for (kv::BlockId b : s.swa_blocks) {
    if (b != kv::kNullBlock) swa_pool_->release(b);
  }
  s.blocks.clear();
  s.swa_blocks.clear();
  s.trimmed = s.swa_trimmed = 0;
}

void Scheduler::trim_windows(Sequence& s) {
  const std::uint32_t bs = config_.block_size;
  const auto trim = [&](kv::BlockPool& pool, std::vector<kv::BlockId>& blocks, std::uint32_t& trimmed,
                        std::uint32_t window) {
    if (window == 0) return;
    // Queries from num_computed on attend keys from num_computed + 1 - window. A step already
    // submitted may still read a block given back here: whatever reuses it is written by a later
    // step, which the device runs after.
    const std::uint32_t first = s.num_computed + 1 > window ? s.num_computed + 1 - window : 0;
    const std::uint32_t limit = std::min<std::uint32_t>(
        {first / bs, s.num_hashed > 0 ? s.num_hashed - 1 : 0, static_cast<std::uint32_t>(blocks.size())});
    for (; trimmed < limit; ++trimmed) {
      if (blocks[trimmed] != kv::kNullBlock) pool.release(blocks[trimmed]);
      blocks[trimmed] = kv::kNullBlock;
    }
  };
  trim(pool_, s.blocks, s.trimmed, config_.window);
  if (swa_pool_) trim(*swa_pool_, s.swa_blocks, s.swa_trimmed, config_.swa_window);
}

void Scheduler::preempt(Sequence& s) {
  release_all(s);
  s.num_computed = 0;
  s.num_hashed = 0;
  s.last_hash = 0;
  s.status = SeqStatus::waiting;
  ++s.preemptions;
  ++counters_.preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), s.id));
  waiting_.push_front(s.id);
}

// The prompt's full blocks short of its last token (that one's logits are each choice's own).
static std::uint32_t shareable_blocks(const Sequence& s, std::uint32_t block_size) {
  return (s.prompt_len - 1) / block_size;
}

bool Scheduler::admissible(const Sequence& s) const {
  if (s.shares_prompt_of == 0) return true;
  const Sequence* p = find(s.shares_prompt_of);
  if (p == nullptr || p->status == SeqStatus::finished) return true;  // gone: admitted alone
  return p->status == SeqStatus::running &&
         p->num_computed >= shareable_blocks(s, config_.block_size) * config_.block_size;
}

bool Scheduler::share_prompt(Sequence& s) {
  s.shared_tokens = 0;
  if (s.shares_prompt_of == 0) return false;
  const Sequence* p = find(s.shares_prompt_of);
  const std::uint32_t bs = config_.block_size;
  const std::uint32_t k = shareable_blocks(s, bs);
  if (p == nullptr || p->status != SeqStatus::running || k == 0 || p->num_computed < k * bs ||
      p->blocks.size() < k || (swa_pool_ && p->swa_blocks.size() < k) ||
      !std::equal(s.tokens.begin(), s.tokens.begin() + std::ptrdiff_t{k} * bs, p->tokens.begin())) {
    return false;
  }
  // A sliding window's blocks that the other one gave back already cannot be shared: the ones
  // this sequence's first query attends must all be there.
  const auto held = [&](const std::vector<kv::BlockId>& blocks, std::uint32_t window) {
    const std::uint32_t first = window && k * bs + 1 > window ? k * bs + 1 - window : 0;
    for (std::uint32_t b = first / bs; b < k; ++b) {
      if (blocks[b] == kv::kNullBlock) return false;
    }
    return true;
  };
  if (!held(p->blocks, config_.window) || (swa_pool_ && !held(p->swa_blocks, config_.swa_window))) {
    return false;
  }
  // Full blocks of prompt tokens never change: shared by reference. The K/V of the last of them
  // may still be in the step the device runs; this sequence's first step is submitted after it
  // on the same queue, as a sequence's own next chunk is. Its hashes are filed at its next
  // resolve (a block cached already stays as it is; one whose parent was given back is not).
  const auto take = [&](kv::BlockPool& pool, const std::vector<kv::BlockId>& from, std::vector<kv::BlockId>& to) {
    for (std::uint32_t b = 0; b < k; ++b) {
      if (from[b] != kv::kNullBlock) pool.ref(from[b]);
      to.push_back(from[b]);
    }
  };
  take(pool_, p->blocks, s.blocks);
  if (swa_pool_) take(*swa_pool_, p->swa_blocks, s.swa_blocks);
  s.num_hashed = 0;
  s.last_hash = 0;
  s.num_computed = k * bs;
  s.shared_tokens = k * bs;
  s.cached_tokens = k * bs;
  return true;
}

void Scheduler::admit_prefix(Sequence& s) {
  // Reuse cached full blocks of the token list, leaving at least one token to compute (its
  // logits are what the step needs).
  s.cached_tokens = 0;
  const std::uint32_t bs = config_.block_size;
  const std::uint32_t max_blocks = (static_cast<std::uint32_t>(s.tokens.size()) - 1) / bs;
  kv::BlockHash h = 0;
  for (std::uint32_t b = 0; b < max_blocks && pool_.prefix_caching() && s.reuse_prefix; ++b) {
    const auto tokens = std::span(s.tokens).subspan(std::size_t{b} * bs, bs);
    const kv::BlockHash next = pool_.hash(h, tokens);
    auto hit = pool_.lookup(next, {b == 0 ? kv::kNullBlock : s.blocks[b - 1], tokens});
    if (!hit) break;
    if (swa_pool_) {  // the sliding layers' K/V of the block too, or neither
      auto swa_hit = swa_pool_->lookup(next, {b == 0 ? kv::kNullBlock : s.swa_blocks[b - 1], tokens});
      if (!swa_hit) {
        pool_.release(*hit);
        break;
      }
      s.swa_blocks.push_back(*swa_hit);
    }
    s.blocks.push_back(*hit);
    h = next;
    s.num_hashed = b + 1;
    s.last_hash = h;
  }
  s.num_computed = s.num_hashed * bs;
  s.cached_tokens = std::min(s.num_computed, s.prompt_len);
}

StepPlan Scheduler::schedule(bool allow_preemption) {
  StepPlan plan;
  std::uint32_t budget = config_.max_num_batched_tokens;
  std::unordered_set<SeqId> planned;

  // Running sequences: decodes (one token) first, then unfinished prefills, oldest first. When
  // blocks run out, the policy's victim is preempted (possibly the one asking; FCFS: the newest).
  auto unplan = [&](SeqId id) {
    auto it = std::find_if(plan.chunks.begin(), plan.chunks.end(),
                           [id](const ScheduledChunk& c) { return c.id == id; });
    if (it == plan.chunks.end()) return;
    budget += it->count;
    plan.chunks.erase(it);
    planned.erase(id);
  };
  for (int pass = 0; pass < 2; ++pass) {
    std::size_t i = 0;
    while (i < running_.size() && budget > 0) {
      Sequence& s = get(running_[i]);
      const std::uint32_t remaining = static_cast<std::uint32_t>(s.tokens.size()) - s.num_computed;
      // A decode of a sequence whose output reaches its limit with the pending token would be
      // thrown away: the caller finishes it once that token is read.
      if (planned.count(s.id) || (pass == 0) != (remaining == 1) ||
          (remaining == 1 && s.generated() >= s.max_new_tokens)) {
        ++i;
        continue;
      }
      const std::uint32_t count = std::min(remaining, budget);
      bool scheduled = true, preempted = false;
      bool artificial = remaining == 1 && artificial_preemption();
      while (std::exchange(artificial, false) || !ensure_blocks(s, s.num_computed + count)) {
        if (!allow_preemption) {
          plan.starved = true;
          scheduled = false;
          break;
        }
        const std::size_t v = policy_->victim(view(running_));
        if (v >= running_.size()) throw std::logic_error("scheduler: the policy chose no victim");
        Sequence& victim = get(running_[v]);
        unplan(victim.id);
        plan.preempted.push_back(victim.id);
        const bool self = victim.id == s.id;
        preempt(victim);
        preempted = true;
        if (self) {
          scheduled = false;
          break;
        }
      }
      if (scheduled) {
        planned.insert(s.id);
        plan.chunks.push_back({s.id, s.num_computed, count,
                               s.num_computed + count == s.tokens.size()});
        budget -= count;
      }
      // A preemption shifts running_ (and may have unplanned anyone): scan again from the start;
      // planned sequences are skipped. Each rescan follows a preemption, so this ends.
      i = preempted ? 0 : i + 1;
    }
  }

  // Waiting sequences, in the policy's order, while the budget, the sequence limit and the pool
  // allow.
  while (!waiting_.empty() && budget > 0 && running_.size() < config_.max_num_seqs &&
         plan.preempted.empty() && !plan.starved) {
    // Choices that wait for their prompt's first computation are not offered to the policy.
    std::vector<SeqId> queue;
    for (SeqId id : waiting_) {
      if (admissible(get(id))) queue.push_back(id);
    }
    if (queue.empty()) break;
    const std::size_t q = policy_->next_waiting(view(queue));
    if (q >= queue.size()) throw std::logic_error("scheduler: the policy chose no waiting sequence");
    const auto w = static_cast<std::size_t>(std::find(waiting_.begin(), waiting_.end(), queue[q]) - waiting_.begin());
    Sequence& s = get(waiting_[w]);
    // An input taken whole waits for a step with room for all of it.
    if (s.whole && s.tokens.size() - s.num_computed > budget) break;
    if (!share_prompt(s)) admit_prefix(s);
    // A long prefix hit keeps only its windows' blocks (the rest stay cached) before the chunk's
    // are asked for: a hit longer than a small pool must not keep the request out.
    trim_windows(s);
    const std::uint32_t remaining = static_cast<std::uint32_t>(s.tokens.size()) - s.num_computed;
    const std::uint32_t count = std::min(remaining, budget);
    if (!ensure_blocks(s, s.num_computed + count)) {
      release_all(s);  // give back the prefix hits; try again next step
      s.num_computed = s.num_hashed = 0;
      s.last_hash = 0;
      break;
    }
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(w));
    s.status = SeqStatus::running;
    s.admitted_at = ++admissions_;
    running_.push_back(s.id);
    counters_.prompt_tokens_cached += s.cached_tokens;
    counters_.prompt_tokens_shared += s.shared_tokens;
    planned.insert(s.id);
    plan.chunks.push_back({s.id, s.num_computed, count, s.num_computed + count == s.tokens.size()});
    budget -= count;
  }
  for (const ScheduledChunk& c : plan.chunks) plan.num_tokens += c.count;
  return plan;
}

void Scheduler::advance(const StepPlan& plan) {
  for (const ScheduledChunk& c : plan.chunks) {
    auto it = seqs_.find(c.id);
    if (it == seqs_.end()) continue;  // finished (cancelled) while the step was planned
    Sequence& s = *it->second;
    if (s.status != SeqStatus::running || s.num_computed != c.start) continue;
    s.num_computed += c.count;
    if (c.start < s.prompt_len) {
      counters_.prompt_tokens_computed += std::min(c.start + c.count, s.prompt_len) - c.start;
    }
    if (c.samples) s.tokens.push_back(kPendingToken);
  }
}

void Scheduler::resolve(const StepPlan& plan, std::span<const std::uint32_t> sampled) {
  std::size_t next = 0;
  for (const ScheduledChunk& c : plan.chunks) {
    std::uint32_t token = kPendingToken;
    if (c.samples) {
      if (next >= sampled.size()) throw std::logic_error("scheduler: fewer sampled tokens than chunks");
      token = sampled[next++];
    }
    auto it = seqs_.find(c.id);
    if (it == seqs_.end()) continue;  // finished while the step ran
    Sequence& s = *it->second;
    const std::size_t at = std::size_t{c.start} + c.count;  // where advance() put the pending token
    if (c.samples && at < s.tokens.size() && s.tokens[at] == kPendingToken) {
      s.tokens[at] = token;
      ++counters_.generated_tokens;
    }
    hash_full_blocks(s);
    trim_windows(s);
  }
}

// Full blocks whose K/V are computed and whose tokens are all known become findable.
void Scheduler::hash_full_blocks(Sequence& s) {
  const std::uint32_t bs = config_.block_size;
  while (s.num_hashed < s.num_computed / bs) {
    const auto tokens = std::span(s.tokens).subspan(std::size_t{s.num_hashed} * bs, bs);
    if (std::find(tokens.begin(), tokens.end(), kPendingToken) != tokens.end()) return;
    const kv::BlockHash h = pool_.hash(s.last_hash, tokens);
    // Filed in each pool where the block and its parent are held (a block taken from another
    // choice after the parent was given back is not: its parent's id may hold other K/V now).
    const auto file = [&](kv::BlockPool& pool, const std::vector<kv::BlockId>& blocks) {
      const kv::BlockId parent = s.num_hashed == 0 ? kv::kNullBlock : blocks[s.num_hashed - 1];
      if (blocks[s.num_hashed] == kv::kNullBlock || (s.num_hashed > 0 && parent == kv::kNullBlock)) return;
      pool.cache(blocks[s.num_hashed], h, {parent, tokens});
    };
    file(pool_, s.blocks);
    if (swa_pool_) file(*swa_pool_, s.swa_blocks);
    s.last_hash = h;
    ++s.num_hashed;
  }
}

void Scheduler::finish(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  Sequence& s = *it->second;
  release_all(s);
  if (s.status == SeqStatus::running) {
    running_.erase(std::find(running_.begin(), running_.end(), id));
  } else if (s.status == SeqStatus::waiting) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), id));
  }
  seqs_.erase(it);
}

}  // namespace vkllm::sched
