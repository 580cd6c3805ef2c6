// The continuous-batching policy with fake requests: token and sequence budgets, decode-first
// ordering, chunked prefill, preemption of the newest running sequence and its recompute, prefix
// reuse at admission, never-fits rejection, and the pool returning to its starting count.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>

#include "common/error.hpp"
#include "engine/kv/block_pool.hpp"
#include "engine/sched/scheduler.hpp"

using namespace vkllm;
using sched::Scheduler;
using sched::SchedulerConfig;
using sched::StepPlan;

namespace {

std::vector<std::uint32_t> prompt_of(std::uint32_t n, std::uint32_t base) {
  std::vector<std::uint32_t> v(n);
  std::iota(v.begin(), v.end(), base);
  return v;
}

// Runs a plan with a fake model: the token drawn for a sequence is a function of its length, so
// a recomputed sequence draws the same tokens it would have without preemption.
std::vector<std::uint32_t> fake_sample(const Scheduler& s, const StepPlan& plan) {
  std::vector<std::uint32_t> out;
  for (const auto& c : plan.chunks) {
    const auto* seq = s.find(c.id);  // null when cancelled while the step ran
    if (c.samples) out.push_back(seq ? 1000 + static_cast<std::uint32_t>(seq->tokens.size()) : 0);
  }
  return out;
}

// Checks what every plan must hold. `admissions_before`: the scheduler's admissions() before the
// plan, when known; sequences admitted by the plan come last (a recomputed sequence whose blocks
// the prefix cache still holds is admitted with one token to compute, which is no decode).
void check_plan(const Scheduler& s, const StepPlan& plan,
                std::optional<std::uint64_t> admissions_before = std::nullopt) {
  std::uint32_t total = 0;
  bool seen_prefill = false, seen_admission = false;
  for (const auto& c : plan.chunks) {
    const auto* seq = s.find(c.id);
    REQUIRE(seq != nullptr);
    CHECK(c.count > 0);
    CHECK(c.start == seq->num_computed);
    CHECK(c.start + c.count <= seq->tokens.size());
    // Enough blocks for the chunk's K/V.
    CHECK(seq->blocks.size() * s.config().block_size >= c.start + c.count);
    // Sliding windows: every block the chunk's queries attend is held (none given back yet), in
    // each pool; before them, at most what is given back.
    const auto windowed = [&](const std::vector<kv::BlockId>& blocks, std::uint32_t window) {
      const std::uint32_t bs = s.config().block_size;
      const std::uint32_t first = window && c.start + 1 > window ? c.start + 1 - window : 0;
      REQUIRE(blocks.size() * bs >= c.start + c.count);
      for (std::uint32_t b = window ? first / bs : 0; b * bs < c.start + c.count; ++b) {
        CAPTURE(b);
        CHECK(blocks[b] != kv::kNullBlock);
      }
    };
    windowed(seq->blocks, s.config().window);
    if (s.swa_pool()) windowed(seq->swa_blocks, s.config().swa_window);
    const bool admitted = admissions_before && seq->admitted_at > *admissions_before;
    if (admitted) {
      seen_admission = true;
    } else {
      CHECK_FALSE(seen_admission);  // admissions come after the running sequences
    }
    const bool decode = !admitted && c.count == 1 && c.start + 1 == seq->tokens.size() &&
                        c.start >= seq->prompt_len;
    if (!decode) seen_prefill = true;
    if (decode) CHECK_FALSE(seen_prefill);  // decodes come first
    total += c.count;
  }
  CHECK(total == plan.num_tokens);
  CHECK(total <= s.config().max_num_batched_tokens);
  CHECK(plan.chunks.size() <= s.config().max_num_seqs);
}

// Commits a plan with the fake model; sequences at their output limit finish, their outputs in
// `done`.
void commit_and_finish(Scheduler& s, const StepPlan& plan, std::map<sched::SeqId, std::vector<std::uint32_t>>& done) {
  s.commit(plan, fake_sample(s, plan));
  for (const auto& c : plan.chunks) {
    const auto* q = s.find(c.id);
    if (c.samples && q->generated() >= q->max_new_tokens) {
      done[c.id].assign(q->tokens.begin() + q->prompt_len, q->tokens.end());
      s.finish(c.id);
    }
  }
}

// Drives the scheduler until every request produced `max_new` tokens; returns outputs by id.
// With n > 0 it also checks every preemption's victim among sequences 1..n: the most recently
// admitted running one (newest) or the least recently admitted (!newest), and sets `saw` when a
// preemption happened.
std::map<sched::SeqId, std::vector<std::uint32_t>> run_checking_victims(Scheduler& s, sched::SeqId n,
                                                                       bool newest, bool& saw) {
  std::map<sched::SeqId, std::vector<std::uint32_t>> done;
  for (int step = 0; step < 10000 && !s.idle(); ++step) {
    std::map<sched::SeqId, std::uint64_t> admitted;
    for (sched::SeqId id = 1; id <= n; ++id) {
      if (auto* q = s.find(id); q && q->status == sched::SeqStatus::running) admitted[id] = q->admitted_at;
    }
    const std::uint64_t admissions_before = s.admissions();
    const StepPlan plan = s.schedule();
    check_plan(s, plan, admissions_before);
    if (n > 0 && !plan.preempted.empty()) {
      std::uint64_t want = newest ? 0 : ~0ull;
      for (auto& [id, at] : admitted) want = newest ? std::max(want, at) : std::min(want, at);
      CHECK(admitted.at(plan.preempted.front()) == want);
      saw = true;
    }
    commit_and_finish(s, plan, done);
  }
  return done;
}

std::map<sched::SeqId, std::vector<std::uint32_t>> run_all(Scheduler& s) {
  bool unused = false;
  return run_checking_victims(s, 0, true, unused);
}

// The preemption tests' requests: id 1..4, prompts of 11..14 tokens, 30 generated each.
void add_request(Scheduler& s, sched::SeqId id) {
  s.add(id, prompt_of(10 + static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id) * 100), 30);
}

void add_four(Scheduler& s) {
  for (sched::SeqId id = 1; id <= 4; ++id) add_request(s, id);
}

// Their outputs each alone, with plenty of blocks.
std::map<sched::SeqId, std::vector<std::uint32_t>> four_solo() {
  std::map<sched::SeqId, std::vector<std::uint32_t>> solo;
  for (sched::SeqId id = 1; id <= 4; ++id) {
    kv::BlockPool big(200);
    Scheduler one(big, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128});
    add_request(one, id);
    solo[id] = run_all(one)[id];
  }
  return solo;
}

}  // namespace

TEST_CASE("a long prompt is chunked within the token budget, decodes go first") {
  kv::BlockPool pool(65);
  Scheduler s(pool, {.max_num_batched_tokens = 32, .max_num_seqs = 8, .block_size = 16, .max_model_len = 512});
  s.add(1, prompt_of(10, 0), 5);
  StepPlan p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].count == 10);
  CHECK(p.chunks[0].samples);
  s.commit(p, fake_sample(s, p));
  s.add(2, prompt_of(100, 500), 5);
  p = s.schedule();
  check_plan(s, p);
  REQUIRE(p.chunks.size() == 2);
  CHECK(p.chunks[0].id == 1);  // decode first
  CHECK(p.chunks[0].count == 1);
  CHECK(p.chunks[1].id == 2);
  CHECK(p.chunks[1].count == 31);  // the rest of the budget
  CHECK_FALSE(p.chunks[1].samples);
  s.commit(p, fake_sample(s, p));
  p = s.schedule();
  CHECK(p.chunks[1].start == 31);
  CHECK(p.chunks[1].count == 31);
  auto out = run_all(s);
  CHECK(out.size() == 2);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("an encoder's input runs whole: it waits for a step with room for all of it, never chunked") {
  kv::BlockPool pool(65);
  Scheduler s(pool, {.max_num_batched_tokens = 32, .max_num_seqs = 8, .block_size = 16, .max_model_len = 512});
  CHECK_THROWS_AS(s.add(9, prompt_of(33, 0), 1, false, 0, /*whole=*/true), InvalidRequest);
  s.add(1, prompt_of(10, 0), 5);
  StepPlan p = s.schedule();
  s.commit(p, fake_sample(s, p));
  s.add(2, prompt_of(32, 100), 1, false, 0, /*whole=*/true);  // 31 tokens left beside a decode
  s.add(3, prompt_of(20, 200), 1, false, 0, /*whole=*/true);
  p = s.schedule();
  REQUIRE(p.chunks.size() == 1);  // the decode; both inputs wait (FCFS: 3 waits behind 2)
  CHECK(p.chunks[0].id == 1);
  s.commit(p, fake_sample(s, p));
  s.finish(1);
  p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].id == 2);
  CHECK(p.chunks[0].count == 32);
  CHECK(p.chunks[0].samples);
  s.commit(p, fake_sample(s, p));
  s.finish(2);
  p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].id == 3);
  CHECK(p.chunks[0].count == 20);
  s.commit(p, fake_sample(s, p));
  s.finish(3);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("the sequence limit holds; waiting requests are admitted FCFS as others finish") {
  kv::BlockPool pool(129);
  Scheduler s(pool, {.max_num_batched_tokens = 256, .max_num_seqs = 3, .block_size = 16, .max_model_len = 256});
  for (sched::SeqId id = 1; id <= 7; ++id) s.add(id, prompt_of(5, static_cast<std::uint32_t>(id) * 10), 3 + static_cast<std::uint32_t>(id));
  StepPlan p = s.schedule();
  REQUIRE(p.chunks.size() == 3);
  CHECK(p.chunks[0].id == 1);
  CHECK(p.chunks[2].id == 3);
  CHECK(s.num_waiting() == 4);
  auto out = run_all(s);
  CHECK(out.size() == 7);
  for (auto& [id, toks] : out) CHECK(toks.size() == 3 + id);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("blocks run out: the newest running sequence is preempted and recomputed, outputs unchanged") {
  // Solo outputs first, with plenty of blocks.
  const auto solo = four_solo();
  // Then together in a pool that cannot hold all four at full length (4 x 11 blocks needed).
  kv::BlockPool pool(25);
  Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128});
  add_four(s);
  // Watch who gets preempted: always the most recently admitted running sequence.
  bool checked_order = false;
  const auto together = run_checking_victims(s, 4, true, checked_order);
  CHECK(checked_order);
  CHECK(s.counters().preemptions > 0);
  CHECK(together == solo);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("B10 artificial preemption: decodes preempted at random (p=0.5, at most 500) give the solo outputs") {
  const auto solo = four_solo();
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    kv::BlockPool pool(200);  // plenty: every preemption is an artificial one
    Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128,
                       .artificial_preempt = 0.5, .artificial_preempt_max = 500,
                       .artificial_preempt_seed = seed});
    add_four(s);
    bool checked_order = false;
    const auto together = run_checking_victims(s, 4, true, checked_order);
    CHECK(checked_order);
    CHECK(s.counters().preemptions > 20);
    CHECK(s.counters().preemptions <= 500);
    CHECK(together == solo);
    CHECK(pool.num_used() == 0);
  }
  // The cap holds: with p = 1 and at most 7, exactly 7 preemptions, and everything still finishes.
  kv::BlockPool pool(200);
  Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128,
                     .artificial_preempt = 1.0, .artificial_preempt_max = 7});
  add_four(s);
  CHECK(run_all(s) == solo);
  CHECK(s.counters().preemptions == 7);
  CHECK_THROWS_AS(Scheduler(pool, {.artificial_preempt = 1.5}), std::invalid_argument);
}

namespace {
// A policy of another shape than FCFS: the shortest waiting prompt first, and the oldest running
// sequence gives up its blocks.
class ShortestFirstOldestOut final : public sched::SchedulingPolicy {
 public:
  std::size_t next_waiting(std::span<const sched::Sequence* const> waiting) const override {
    return static_cast<std::size_t>(
        std::min_element(waiting.begin(), waiting.end(),
                         [](auto* a, auto* b) { return a->tokens.size() < b->tokens.size(); }) -
        waiting.begin());
  }
  std::size_t victim(std::span<const sched::Sequence* const>) const override { return 0; }
};
}  // namespace

TEST_CASE("the policy sits behind one interface: admission order and victim come from it") {
  kv::BlockPool pool(200);
  Scheduler s(pool, {.max_num_batched_tokens = 256, .max_num_seqs = 1, .block_size = 4, .max_model_len = 128},
              std::make_unique<ShortestFirstOldestOut>());
  s.add(1, prompt_of(30, 100), 2);
  s.add(2, prompt_of(5, 200), 2);
  s.add(3, prompt_of(12, 300), 2);
  std::vector<sched::SeqId> order;
  for (int step = 0; step < 100 && !s.idle(); ++step) {
    const StepPlan plan = s.schedule();
    check_plan(s, plan);
    s.commit(plan, fake_sample(s, plan));
    for (const auto& c : plan.chunks) {
      const auto* q = s.find(c.id);
      if (c.start == 0) order.push_back(c.id);
      if (c.samples && q->generated() >= q->max_new_tokens) s.finish(c.id);
    }
  }
  CHECK(order == std::vector<sched::SeqId>{2, 3, 1});

  // Blocks run out: the oldest running sequence is the one preempted, and outputs still hold.
  const auto solo = four_solo();
  kv::BlockPool small(25);
  Scheduler t(small, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128},
              std::make_unique<ShortestFirstOldestOut>());
  add_four(t);
  bool checked = false;
  const auto together = run_checking_victims(t, 4, false, checked);
  CHECK(checked);
  CHECK(together == solo);
  CHECK(small.num_used() == 0);
}

TEST_CASE("prefix reuse: a second request with a shared 3-block prefix computes 3 blocks fewer") {
  kv::BlockPool pool(64);
  Scheduler s(pool, {.max_num_batched_tokens = 256, .max_num_seqs = 4, .block_size = 16, .max_model_len = 256});
  auto shared = prompt_of(48, 7);
  auto a = shared, b = shared;
  a.insert(a.end(), {1, 2, 3, 4, 5});
  b.insert(b.end(), {9, 8, 7});
  s.add(1, a, 4);
  run_all(s);
  const auto computed_a = s.counters().prompt_tokens_computed;
  CHECK(computed_a == a.size());
  s.add(2, b, 4);
  const StepPlan p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].start == 48);
  CHECK(p.chunks[0].count == 3);
  CHECK(s.find(2)->cached_tokens == 48);
  s.commit(p, fake_sample(s, p));
  run_all(s);
  CHECK(s.counters().prompt_tokens_computed - computed_a == 3);
  CHECK(s.counters().prompt_tokens_cached == 48);
  CHECK(pool.counters().hits == 3);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("forged hash collisions never share another prompt's blocks (every hit is verified)") {
  // Every block hashes alike, as a crafted collision would: a prompt with other tokens, or the
  // same block under another prefix, must find nothing; the true prefix still does.
  kv::BlockPool pool(64);
  pool.set_hash_for_test([](kv::BlockHash, std::span<const std::uint32_t>) { return kv::BlockHash{42}; });
  Scheduler s(pool, {.max_num_batched_tokens = 256, .max_num_seqs = 4, .block_size = 16, .max_model_len = 256});
  const auto a = prompt_of(40, 7);
  s.add(1, a, 2);
  run_all(s);
  s.add(2, prompt_of(40, 500), 2);  // other tokens, same hash
  StepPlan p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].start == 0);
  CHECK(s.find(2)->cached_tokens == 0);
  s.commit(p, fake_sample(s, p));
  run_all(s);
  CHECK(pool.counters().hits == 0);
  CHECK(pool.counters().collisions >= 1);
  // The real prompt again: its first block is the one cached (under 42), found and verified.
  s.add(3, a, 2);
  p = s.schedule();
  CHECK(s.find(3)->cached_tokens == 16);
  s.commit(p, fake_sample(s, p));
  run_all(s);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("an identical prompt still computes its last token") {
  kv::BlockPool pool(16);
  Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 4, .block_size = 4, .max_model_len = 64});
  s.add(1, prompt_of(8, 1), 1);
  run_all(s);
  s.add(2, prompt_of(8, 1), 1);
  const StepPlan p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].start == 4);  // block 2 would cover the last token: only block 1 is reused
  CHECK(p.chunks[0].count == 4);
  CHECK(p.chunks[0].samples);
}

TEST_CASE("requests that can never fit are rejected with the numbers") {
  kv::BlockPool pool(5);  // 4 blocks of 4 = 16 tokens
  Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 4, .block_size = 4, .max_model_len = 32});
  CHECK_THROWS_AS(s.add(1, {}, 4), InvalidRequest);
  CHECK_THROWS_WITH_AS(s.add(2, prompt_of(40, 0), 1), doctest::Contains("40 tokens"), InvalidRequest);
  CHECK_THROWS_WITH_AS(s.add(3, prompt_of(20, 0), 1), doctest::Contains("KV cache holds 16"), InvalidRequest);
  s.add(4, prompt_of(10, 0), 100);
  CHECK(s.find(4)->max_new_tokens == 6);  // capped by the pool
  auto out = run_all(s);
  CHECK(out.at(4).size() == 6);
}

TEST_CASE("finishing (cancelling) in any state returns every block") {
  kv::BlockPool pool(40);
  Scheduler s(pool, {.max_num_batched_tokens = 16, .max_num_seqs = 4, .block_size = 4, .max_model_len = 128});
  std::mt19937 rng(3);
  for (sched::SeqId id = 1; id <= 6; ++id) s.add(id, prompt_of(5 + rng() % 30, static_cast<std::uint32_t>(id)), 20);
  for (int step = 0; step < 6; ++step) {
    const StepPlan p = s.schedule();
    s.commit(p, fake_sample(s, p));
  }
  s.finish(2);  // mid-decode or mid-prefill
  s.finish(6);  // still waiting
  const StepPlan p = s.schedule();
  s.finish(1);  // cancelled while its step "runs"
  s.commit(p, fake_sample(s, p));
  for (sched::SeqId id : {3, 4, 5}) s.finish(id);
  CHECK(s.idle());
  CHECK(pool.num_used() == 0);
  CHECK(pool.num_free() == pool.usable_blocks());
}

namespace {

// The token drawn for a chunk as a function of its position only, so plans made before the last
// step's tokens are known draw what plans made after would.
std::vector<std::uint32_t> sample_by_position(const StepPlan& plan) {
  std::vector<std::uint32_t> out;
  for (const auto& c : plan.chunks) {
    if (c.samples) out.push_back(1000 + c.start + c.count);
  }
  return out;
}

// The overlapped loop's order: while step t "runs", plan step t + 1 without preemption and
// advance it; then resolve step t and finish what reached its length. Returns outputs by id;
// counts the plans made ahead.
std::map<sched::SeqId, std::vector<std::uint32_t>> run_overlapped(Scheduler& s, int& ahead) {
  std::map<sched::SeqId, std::vector<std::uint32_t>> done;
  std::optional<StepPlan> flight;
  auto finish_done = [&](const StepPlan& p) {
    for (const auto& c : p.chunks) {
      const auto* q = s.find(c.id);
      if (!q || !c.samples) continue;
      const auto pending = std::count(q->tokens.begin(), q->tokens.end(), sched::kPendingToken);
      if (q->generated() - pending >= q->max_new_tokens) {
        CHECK(pending == 0);  // no decode is planned past the limit
        done[c.id].assign(q->tokens.begin() + q->prompt_len, q->tokens.end());
        s.finish(c.id);
      }
    }
  };
  for (int step = 0; step < 10000 && (flight || !s.idle()); ++step) {
    if (flight) {
      std::optional<StepPlan> next;
      StepPlan p = s.schedule(false);
      CHECK(p.preempted.empty());
      if (!p.empty()) {
        check_plan(s, p);
        s.advance(p);
        next = std::move(p);
        ++ahead;
      }
      s.resolve(*flight, sample_by_position(*flight));
      finish_done(*flight);
      flight = std::move(next);
      if (flight) continue;
    }
    if (s.idle()) break;
    StepPlan p = s.schedule();
    check_plan(s, p);
    if (p.empty()) continue;
    s.advance(p);
    flight = std::move(p);
  }
  return done;
}

std::map<sched::SeqId, std::vector<std::uint32_t>> run_by_position(Scheduler& s) {
  std::map<sched::SeqId, std::vector<std::uint32_t>> done;
  for (int step = 0; step < 10000 && !s.idle(); ++step) {
    const StepPlan p = s.schedule();
    s.commit(p, sample_by_position(p));
    for (const auto& c : p.chunks) {
      const auto* q = s.find(c.id);
      if (q && c.samples && q->generated() >= q->max_new_tokens) {
        done[c.id].assign(q->tokens.begin() + q->prompt_len, q->tokens.end());
        s.finish(c.id);
      }
    }
  }
  return done;
}

}  // namespace

TEST_CASE("the overlapped loop: plans made a step ahead give the same outputs, with and without preemption") {
  for (const std::uint32_t blocks : {200u, 25u}) {
    CAPTURE(blocks);
    kv::BlockPool p1(blocks), p2(blocks);
    const SchedulerConfig cfg{.max_num_batched_tokens = 16, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128};
    Scheduler sync(p1, cfg), ahead(p2, cfg);
    add_four(sync);
    add_four(ahead);
    int planned_ahead = 0;
    const auto a = run_by_position(sync);
    const auto b = run_overlapped(ahead, planned_ahead);
    CHECK(a.size() == 4);
    CHECK(a == b);
    CHECK(planned_ahead > 0);
    CHECK(p2.num_used() == 0);
    CHECK(sync.counters().generated_tokens == ahead.counters().generated_tokens);
  }
}

TEST_CASE("the overlapped loop: blocks are hashed only once their tokens are known; no preemption ahead") {
  kv::BlockPool pool(40);
  Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 4, .block_size = 2, .max_model_len = 64});
  s.add(1, {5, 6, 7}, 4);
  const StepPlan p1 = s.schedule();
  s.advance(p1);
  CHECK(s.find(1)->tokens == std::vector<std::uint32_t>{5, 6, 7, sched::kPendingToken});
  const StepPlan p2 = s.schedule(false);  // the decode of the pending token
  REQUIRE(p2.chunks.size() == 1);
  CHECK(p2.chunks[0].start == 3);
  s.advance(p2);
  CHECK(s.find(1)->num_computed == 4);
  CHECK(s.find(1)->num_hashed == 0);  // advancing registers nothing
  s.resolve(p1, std::vector<std::uint32_t>{8});
  CHECK(s.find(1)->num_hashed == 2);  // [5 6] [7 8]; the pending token at 4 is in neither
  CHECK(s.counters().generated_tokens == 1);
  s.add(2, {5, 6, 7, 8, 9}, 1);  // finds both blocks
  s.resolve(p2, std::vector<std::uint32_t>{9});
  const StepPlan p3 = s.schedule(false);
  CHECK(s.find(2)->cached_tokens == 4);
  (void)p3;
  s.finish(1);
  s.finish(2);
  CHECK(pool.num_used() == 0);

  // Ahead of a running step the plan never preempts: sequences without blocks wait (starved),
  // and the next plan, made after the step was read, preempts.
  kv::BlockPool small(5);  // 4 blocks of 2
  Scheduler t(small, {.max_num_batched_tokens = 64, .max_num_seqs = 4, .block_size = 2, .max_model_len = 64});
  t.add(1, {1, 2}, 10);
  t.add(2, {3, 4}, 10);
  const StepPlan q = t.schedule();  // the prompts: a block each
  t.advance(q);
  const StepPlan r = t.schedule(false);  // decodes at 2: a block each, the last two
  REQUIRE(r.chunks.size() == 2);
  CHECK_FALSE(r.starved);
  t.advance(r);
  t.resolve(q, std::vector<std::uint32_t>{7, 7});
  const StepPlan u = t.schedule(false);  // decodes at 3: no new block
  REQUIRE(u.chunks.size() == 2);
  t.advance(u);
  t.resolve(r, std::vector<std::uint32_t>{8, 8});
  const StepPlan v = t.schedule(false);  // decodes at 4 need a block each; none is free
  CHECK(v.empty());
  CHECK(v.starved);
  CHECK(v.preempted.empty());
  t.resolve(u, std::vector<std::uint32_t>{9, 9});
  const StepPlan w = t.schedule();
  CHECK(w.preempted == std::vector<sched::SeqId>{2});
  REQUIRE(w.chunks.size() == 1);
  CHECK(w.chunks[0].id == 1);
}

TEST_CASE("sliding windows: blocks before every window go back to their pool; outputs and prefix hits hold") {
  // block_size 4, a window of 10 on the second pool: a sequence at position p holds blocks from
  // (p + 1 - 10) / 4 on, and one more the prefix cache names, plus the chunk in flight.
  const SchedulerConfig cfg{.max_num_batched_tokens = 16, .max_num_seqs = 8, .block_size = 4,
                            .max_model_len = 128, .window = 0, .swa_window = 10};
  SUBCASE("the second pool's use stays at the windows, the first holds everything; both empty at the end") {
    kv::BlockPool main(200), swa(40);
    Scheduler s(main, &swa, cfg);
    add_four(s);
    std::uint32_t most_swa = 0;
    std::map<sched::SeqId, std::vector<std::uint32_t>> done;
    for (int step = 0; step < 10000 && !s.idle(); ++step) {
      const StepPlan plan = s.schedule();
      check_plan(s, plan);
      CHECK(plan.preempted.empty());
      most_swa = std::max(most_swa, swa.num_used());
      commit_and_finish(s, plan, done);
      for (sched::SeqId id = 1; id <= 4; ++id) {
        const auto* q = s.find(id);
        if (!q || q->status != sched::SeqStatus::running) continue;
        std::uint32_t held = 0;
        for (kv::BlockId b : q->swa_blocks) held += b != kv::kNullBlock;
        // The window's 10 keys over 4 blocks of 4 at most, the one the cache names, the next chunk's.
        CHECK(held <= 4 + 1 + 16 / 4);
        CHECK((q->swa_trimmed > 0 || q->num_computed < 20));
      }
    }
    CHECK(done == four_solo());
    CHECK(most_swa <= 4 * (4 + 1 + 4));
    CHECK(main.num_used() == 0);
    CHECK(swa.num_used() == 0);
  }
  SUBCASE("a tight second pool preempts and recomputes; the outputs are the solo ones") {
    kv::BlockPool main(200), swa(9);  // 8 usable: one sequence's prompt, not four windows
    Scheduler s(main, &swa, cfg);
    add_four(s);
    bool saw = false;
    const auto done = run_checking_victims(s, 4, true, saw);
    CHECK(saw);
    CHECK(done == four_solo());
    CHECK(swa.num_used() == 0);
  }
  SUBCASE("every layer sliding: the one pool gives back its blocks") {
    kv::BlockPool pool(30);  // 29 usable: 4 x 30+ tokens would need 32 without windows
    SchedulerConfig all = cfg;
    all.window = 10;
    all.swa_window = 0;
    Scheduler s(pool, all);
    add_four(s);
    bool saw = false;
    CHECK(run_checking_victims(s, 4, true, saw) == four_solo());
    CHECK(pool.num_used() == 0);
  }
  SUBCASE("the overlapped loop: blocks given back while a step is ahead; the same outputs") {
    kv::BlockPool m1(200), s1(40), m2(200), s2(40);
    Scheduler sync(m1, &s1, cfg), ahead(m2, &s2, cfg);
    add_four(sync);
    add_four(ahead);
    int planned_ahead = 0;
    CHECK(run_by_position(sync) == run_overlapped(ahead, planned_ahead));
    CHECK(planned_ahead > 0);
    CHECK(s2.num_used() == 0);
  }
  SUBCASE("prefix cache: a hit needs both pools; the second pool's chain evicted, the hit shrinks") {
    for (std::uint32_t swa_blocks : {60u, 11u}) {
      CAPTURE(swa_blocks);
      kv::BlockPool main(200), swa(swa_blocks);
      SchedulerConfig small_steps = cfg;
      small_steps.max_num_batched_tokens = 8;  // the 11-block request runs in a 10-block pool
      Scheduler s(main, &swa, small_steps);
      s.add(1, prompt_of(41, 7), 3);  // 10 full blocks and one token
      run_all(s);
      s.add(2, prompt_of(41, 7), 3);
      const StepPlan plan = s.schedule();
      check_plan(s, plan);
      const auto* q = s.find(2);
      REQUIRE(q != nullptr);
      if (swa_blocks == 60) {
        CHECK(q->cached_tokens == 40);  // every full block, in both pools
        // Only the window of its first query (position 40) is held in the second pool.
        CHECK(q->swa_trimmed == (41 - 10) / 4);
      } else {
        // The small pool reused the chain's first block for the first request's last one: the
        // chain breaks there, and the hit stops where the second pool's does.
        CHECK(q->cached_tokens < 40);
        CHECK(swa.counters().evictions > 0);
      }
      s.commit(plan, fake_sample(s, plan));
      s.finish(2);
      CHECK(main.num_used() == 0);
      CHECK(swa.num_used() == 0);
    }
  }
  SUBCASE("a prefix hit longer than the second pool has room for: only its window is kept") {
    kv::BlockPool main(200), swa(14);  // 13 usable: the first request's 13 blocks, no eviction
    SchedulerConfig small_steps = cfg;
    small_steps.max_num_batched_tokens = 8;
    Scheduler s(main, &swa, small_steps);
    s.add(1, prompt_of(49, 7), 3);  // 12 full blocks cached in both pools
    run_all(s);
    auto longer = prompt_of(48, 7);
    for (std::uint32_t t = 0; t < 8; ++t) longer.push_back(900 + t);
    s.add(2, longer, 3);  // 12 hits, then blocks 12 and 13 for its chunk: 14 > 13 if all were kept
    const StepPlan plan = s.schedule();
    check_plan(s, plan);
    REQUIRE(plan.chunks.size() == 1);
    CHECK(s.find(2)->cached_tokens == 48);
    CHECK(s.find(2)->swa_trimmed == (48 + 1 - 10) / 4);
    s.commit(plan, fake_sample(s, plan));
    run_all(s);
    CHECK(swa.num_used() == 0);
  }
  SUBCASE("a second pool too small for one window and its chunks rejects the request, naming it") {
    kv::BlockPool main(200), swa(5);
    Scheduler s(main, &swa, cfg);
    CHECK_THROWS_WITH_AS(s.add(1, prompt_of(40, 1), 3), doctest::Contains("sliding-window"), InvalidRequest);
    s.add(2, prompt_of(3, 1), 3);  // a short one fits
  }
}

// Several choices of one request (n > 1): the followers wait for the first choice's prompt, then
// share its full blocks by reference and compute only the last partial block each.
TEST_CASE("choices of one request compute their prompt once and share its full blocks") {
  for (const bool caching : {false, true}) {
    for (const double artificial : {0.0, 0.3}) {
      CAPTURE(caching);
      CAPTURE(artificial);
      kv::BlockPool pool(64, caching);
      const std::uint32_t before = pool.num_free();
      Scheduler s(pool, {.max_num_batched_tokens = 16, .max_num_seqs = 8, .block_size = 8, .max_model_len = 128,
                         .artificial_preempt = artificial});
      const auto prompt = prompt_of(37, 5);
      s.add(1, prompt, 6);
      for (sched::SeqId id = 2; id <= 4; ++id) s.add(id, prompt, 6, true, 1);
      bool shared_seen = false;
      std::map<sched::SeqId, std::vector<std::uint32_t>> done;
      for (int step = 0; step < 200 && !s.idle(); ++step) {
        const std::uint64_t admissions_before = s.admissions();
        const StepPlan plan = s.schedule();
        check_plan(s, plan, admissions_before);
        for (const auto& c : plan.chunks) {
          const auto* q = s.find(c.id);
          if (c.id == 1 || q->admitted_at <= admissions_before) continue;
          // A follower is admitted only once the first choice has computed 32 prompt tokens
          // (4 full blocks short of the last token); it starts past them, on the same blocks.
          const auto* first = s.find(1);
          if (first != nullptr && first->status == sched::SeqStatus::running && q->shared_tokens > 0) {
            shared_seen = true;
            CHECK(c.start == 32);
            for (std::size_t b = 0; b < 4; ++b) {
              CHECK(q->blocks[b] == first->blocks[b]);
              CHECK(pool.ref_count(q->blocks[b]) >= 2);
            }
          }
        }
        commit_and_finish(s, plan, done);
      }
      CHECK(s.idle());
      CHECK(shared_seen);
      REQUIRE(done.size() == 4);
      for (sched::SeqId id = 2; id <= 4; ++id) CHECK(done[id] == done[1]);
      CHECK(pool.num_free() == before);
      if (artificial == 0.0) {
        // 37 tokens once, then 5 for each follower; 3 x 32 shared.
        CHECK(s.counters().prompt_tokens_computed == 37 + 3 * 5);
        CHECK(s.counters().prompt_tokens_shared == 3 * 32);
        CHECK(s.counters().prompt_tokens_cached == 3 * 32);
      }
    }
  }
}

TEST_CASE("a choice whose first choice is gone is admitted alone") {
  kv::BlockPool pool(64, false);
  Scheduler s(pool, {.max_num_batched_tokens = 16, .max_num_seqs = 8, .block_size = 8, .max_model_len = 128});
  const auto prompt = prompt_of(37, 5);
  s.add(1, prompt, 6);
  s.add(2, prompt, 6, true, 1);
  StepPlan p = s.schedule();
  REQUIRE(p.chunks.size() == 1);  // the follower waits
  CHECK(p.chunks[0].id == 1);
  CHECK(s.num_waiting() == 1);
  s.commit(p, fake_sample(s, p));
  s.finish(1);  // cancelled
  p = s.schedule();
  REQUIRE(p.chunks.size() == 1);
  CHECK(p.chunks[0].id == 2);
  CHECK(p.chunks[0].start == 0);  // no cache, no sharer: the whole prompt
  CHECK(s.find(2)->shared_tokens == 0);
  // A prompt scored for its logprobs never shares (each choice computes its rows).
  s.add(3, prompt, 6, false, 2);
  CHECK(s.find(3)->shares_prompt_of == 0);
}
