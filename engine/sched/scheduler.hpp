// Continuous batching policy over plain data (docs/ARCHITECTURE.md, scheduling): which sequences run this step and
// how many tokens each, KV blocks allocated on demand from the pool, prefix-cache reuse at
// admission, and preemption (free and recompute the newest) when blocks run out. No device, no
// threads: the engine calls schedule(), runs the plan, then commit().
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/kv/block_pool.hpp"

namespace vkllm::sched {

using SeqId = std::uint64_t;

// A token the device has drawn but the host has not read yet (the overlapped loop, between
// advance() and resolve()).
inline constexpr std::uint32_t kPendingToken = 0xffffffffu;

struct SchedulerConfig {
  std::uint32_t max_num_batched_tokens = 2048;  // tokens per step
  std::uint32_t max_num_seqs = 64;              // sequences per step
  std::uint32_t block_size = 16;
  std::uint32_t max_model_len = 4096;           // prompt + generated, per sequence
  // Sliding windows (docs/ARCHITECTURE.md "Sliding windows"): the window of the layers on the
  // main pool (0: full attention; > 0 when every layer slides), and of those on the second pool
  // (Scheduler's swa_pool; its layers slide). A sequence gives back the blocks before its window.
  std::uint32_t window = 0;
  std::uint32_t swa_window = 0;
  // Testing (vLLM's artificial preemption): each decode is, with this probability, planned as if
  // the pool were out of blocks: the policy's victim is preempted and later recomputed, or, in a
  // plan made without preemption, the plan starves. At most artificial_preempt_max times, from a
  // seeded draw.
  double artificial_preempt = 0.0;
  std::uint32_t artificial_preempt_max = 500;
  std::uint64_t artificial_preempt_seed = 1;
};

enum class SeqStatus { waiting, running, finished };

struct Sequence {
  SeqId id = 0;
  std::vector<std::uint32_t> tokens;  // prompt, then generated tokens (the last one or two may
                                      // be kPendingToken until resolve())
  std::uint32_t prompt_len = 0;
  std::uint32_t max_new_tokens = 0;
  std::uint32_t num_computed = 0;     // leading tokens whose K/V are in `blocks`
  // Block b holds positions [b * block_size, (b + 1) * block_size). Blocks before a sliding
  // window were given back: kNullBlock (the first `trimmed` entries are such).
  std::vector<kv::BlockId> blocks;
  std::uint32_t trimmed = 0;
  // The sliding layers' blocks, in the second pool (a model with both kinds of layer); else empty.
  std::vector<kv::BlockId> swa_blocks;
  std::uint32_t swa_trimmed = 0;
  std::uint32_t num_hashed = 0;       // leading full blocks registered in the prefix cache
  kv::BlockHash last_hash = 0;        // chain hash of block num_hashed - 1
  SeqStatus status = SeqStatus::waiting;
  std::uint64_t admitted_at = 0;      // admission order (preemption picks the largest)
  std::uint32_t preemptions = 0;
  std::uint32_t cached_tokens = 0;    // prompt tokens served by the prefix cache, last admission
  bool reuse_prefix = true;           // false: compute every prompt token (prompt scoring)
  // Another choice of the same request (n > 1) with the same prompt: this one waits until that
  // one has computed the prompt's full blocks, then shares them (docs/ARCHITECTURE.md "Several
  // choices"). 0: none.
  SeqId shares_prompt_of = 0;
  std::uint32_t shared_tokens = 0;    // prompt tokens taken from shares_prompt_of, last admission
  // An encoder's input (bidirectional attention): its prompt is computed in one step, never in
  // chunks; it waits for a step with room for all of it.
  bool whole = false;

  std::uint32_t generated() const { return static_cast<std::uint32_t>(tokens.size()) - prompt_len; }
};

// One sequence's share of a step: tokens [start, start + count) of its token list.
struct ScheduledChunk {
  SeqId id = 0;
  std::uint32_t start = 0;
  std::uint32_t count = 0;
  bool samples = false;  // the chunk reaches the last token: a next token is drawn
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;  // decodes first, then prefill chunks
  std::vector<SeqId> preempted;        // sent back to waiting this step (blocks freed)
  std::uint32_t num_tokens = 0;
  // Planned without preemption and a running sequence found no blocks: it waits for a plan that
  // may preempt.
  bool starved = false;
  bool empty() const { return chunks.empty(); }
};

struct SchedulerCounters {
  std::uint64_t preemptions = 0;
  std::uint64_t prompt_tokens_computed = 0;  // prompt tokens run through the model
  std::uint64_t prompt_tokens_cached = 0;    // prompt tokens reused from the prefix cache or
                                             // shared by another choice of the same request
  std::uint64_t prompt_tokens_shared = 0;    // of which shared by another choice
  std::uint64_t generated_tokens = 0;
};

// Who goes first: the order in which waiting sequences are admitted and which running sequence
// gives up its blocks when they run out. The scheduler asks it and does everything else (budgets,
// chunking, blocks); priorities or fairness plug in here.
class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  // Index in `waiting` (queue order: arrivals, preempted sequences in front) of the next to admit.
  virtual std::size_t next_waiting(std::span<const Sequence* const> waiting) const = 0;
  // Index in `running` (admission order, never empty) of the sequence to preempt.
  virtual std::size_t victim(std::span<const Sequence* const> running) const = 0;
};

// First come, first served: admit in queue order, preempt the most recently admitted.
class FcfsPolicy final : public SchedulingPolicy {
 public:
  std::size_t next_waiting(std::span<const Sequence* const>) const override { return 0; }
  std::size_t victim(std::span<const Sequence* const> running) const override {
    return running.size() - 1;
  }
};

class Scheduler {
 public:
  Scheduler(kv::BlockPool& pool, SchedulerConfig config,
            std::unique_ptr<SchedulingPolicy> policy = std::make_unique<FcfsPolicy>())
      : Scheduler(pool, nullptr, config, std::move(policy)) {}
  // swa_pool: the sliding-window layers' own pool (config.swa_window > 0), or nullptr. Every
  // sequence then holds blocks of both pools for the positions it computes; a step runs when both
  // have room (preemption frees both), and the prefix cache shares a block only where both pools
  // still hold it.
  Scheduler(kv::BlockPool& pool, kv::BlockPool* swa_pool, SchedulerConfig config,
            std::unique_ptr<SchedulingPolicy> policy = std::make_unique<FcfsPolicy>());

  const SchedulerConfig& config() const { return config_; }

  // Queues a request (FCFS). Throws InvalidRequest when it can never fit: an empty prompt, a
  // prompt longer than max_model_len, or more blocks than the whole pool for its prompt plus one
  // token. max_new_tokens is capped so prompt + output <= max_model_len. reuse_prefix false:
  // every prompt token is computed (its logits are wanted: prompt scoring), none from the cache.
  // shares_prompt_of: a sequence added before with the same prompt (another choice of one
  // request); this one is not admitted before that one has computed the prompt's full blocks,
  // and then takes them by reference (with or without the prefix cache). When that sequence is
  // gone, this one is admitted as any other. whole: Sequence::whole (a prompt longer than a
  // step is an InvalidRequest).
  void add(SeqId id, std::vector<std::uint32_t> prompt, std::uint32_t max_new_tokens,
           bool reuse_prefix = true, SeqId shares_prompt_of = 0, bool whole = false);

  // Plans the next step from the running and waiting sequences. Without preemption (a plan made
  // while the step before still runs: its blocks may not be taken back), a running sequence that
  // finds no blocks is left out and the plan says starved. A running sequence whose output is
  // at its limit (the last token still pending) gets no decode.
  StepPlan schedule(bool allow_preemption = true);

  // After the step was submitted: advances num_computed and appends kPendingToken for each
  // chunk that samples, so the next step can be planned before this one's tokens are known.
  void advance(const StepPlan& plan);
  // After the step ran: sampled[i] is the token drawn for the i-th chunk with samples == true;
  // it replaces that chunk's pending token (sequences finished meanwhile are skipped), and full
  // blocks of known tokens become findable in the prefix cache. Sequences are not finished
  // here: the caller decides (stop conditions) and calls finish().
  void resolve(const StepPlan& plan, std::span<const std::uint32_t> sampled);
  // advance() then resolve(): a step run synchronously.
  void commit(const StepPlan& plan, std::span<const std::uint32_t> sampled) {
    advance(plan);
    resolve(plan, sampled);
  }

  // Ends a sequence (finished, stopped or cancelled) in any state: its blocks go back to the pool
  // (full ones stay findable in the prefix cache). Unknown ids are ignored.
  void finish(SeqId id);

  const Sequence* find(SeqId id) const;
  std::size_t num_running() const { return running_.size(); }
  std::size_t num_waiting() const { return waiting_.size(); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  std::uint64_t admissions() const { return admissions_; }  // the last Sequence::admitted_at given
  const SchedulerCounters& counters() const { return counters_; }
  const kv::BlockPool& pool() const { return pool_; }
  const kv::BlockPool* swa_pool() const { return swa_pool_; }

 private:
  Sequence& get(SeqId id);
  bool ensure_blocks(Sequence& s, std::uint32_t tokens);  // blocks for `tokens` K/V rows
  void preempt(Sequence& s);
  void admit_prefix(Sequence& s);
  bool admissible(const Sequence& s) const;     // not held back for the sequence it shares with
  bool share_prompt(Sequence& s);               // takes the shared blocks; false: none to take
  void hash_full_blocks(Sequence& s);
  // Gives back the blocks before the sequence's sliding windows: those that no query from
  // num_computed on attends, and whose successor is filed in the prefix cache (it names them).
  void trim_windows(Sequence& s);
  void release_all(Sequence& s);  // both pools' blocks, the given-back entries skipped
  std::vector<const Sequence*> view(std::span<const SeqId> ids) const;

  kv::BlockPool& pool_;
  kv::BlockPool* swa_pool_ = nullptr;
  SchedulerConfig config_;
  std::unique_ptr<SchedulingPolicy> policy_;
  std::unordered_map<SeqId, std::unique_ptr<Sequence>> seqs_;
  std::vector<SeqId> running_;  // admission order
  std::deque<SeqId> waiting_;   // arrivals; preempted sequences go back to the front
  std::uint64_t admissions_ = 0;
  SchedulerCounters counters_;
  std::mt19937_64 artificial_rng_;
  std::uint32_t artificial_left_ = 0;
  bool artificial_preemption();  // draws whether this decode is planned as if blocks ran out
};

}  // namespace vkllm::sched
