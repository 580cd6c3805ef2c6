// The continuous-batching policy with fake requests: token and sequence budgets, decode-first
// ordering, chunked prefill, preemption of the newest running sequence and its recompute, prefix
// reuse at admission, never-fits rejection, and the pool returning to its starting count.
#include <doctest/doctest.h>

#include <map>
#include <numeric>
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

// Checks what every plan must hold.
void check_plan(const Scheduler& s, const StepPlan& plan) {
  std::uint32_t total = 0;
  bool seen_prefill = false;
  for (const auto& c : plan.chunks) {
    const auto* seq = s.find(c.id);
    REQUIRE(seq != nullptr);
    CHECK(c.count > 0);
    CHECK(c.start == seq->num_computed);
    CHECK(c.start + c.count <= seq->tokens.size());
    // Enough blocks for the chunk's K/V.
    CHECK(seq->blocks.size() * s.config().block_size >= c.start + c.count);
    const bool decode = c.count == 1 && c.start + 1 == seq->tokens.size() && c.start >= seq->prompt_len;
    if (!decode) seen_prefill = true;
    if (decode) CHECK_FALSE(seen_prefill);  // decodes come first
    total += c.count;
  }
  CHECK(total == plan.num_tokens);
  CHECK(total <= s.config().max_num_batched_tokens);
  CHECK(plan.chunks.size() <= s.config().max_num_seqs);
}

// Drives the scheduler until every request produced `max_new` tokens; returns outputs by id.
std::map<sched::SeqId, std::vector<std::uint32_t>> run_all(Scheduler& s, int max_steps = 10000) {
  std::map<sched::SeqId, std::vector<std::uint32_t>> done;
  for (int step = 0; step < max_steps && !s.idle(); ++step) {
    const StepPlan plan = s.schedule();
    check_plan(s, plan);
    const auto sampled = fake_sample(s, plan);
    s.commit(plan, sampled);
    for (const auto& c : plan.chunks) {
      const auto* seq = s.find(c.id);
      if (c.samples && seq->generated() >= seq->max_new_tokens) {
        done[c.id].assign(seq->tokens.begin() + seq->prompt_len, seq->tokens.end());
        s.finish(c.id);
      }
    }
  }
  return done;
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
  std::map<sched::SeqId, std::vector<std::uint32_t>> solo;
  for (sched::SeqId id = 1; id <= 4; ++id) {
    kv::BlockPool big(200);
    Scheduler s(big, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128});
    s.add(id, prompt_of(10 + static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id) * 100), 30);
    solo[id] = run_all(s)[id];
  }
  // Then together in a pool that cannot hold all four at full length (4 x 11 blocks needed).
  kv::BlockPool pool(25);
  Scheduler s(pool, {.max_num_batched_tokens = 64, .max_num_seqs = 8, .block_size = 4, .max_model_len = 128});
  for (sched::SeqId id = 1; id <= 4; ++id) {
    s.add(id, prompt_of(10 + static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id) * 100), 30);
  }
  // Watch who gets preempted: always the most recently admitted running sequence.
  bool checked_order = false;
  std::map<sched::SeqId, std::vector<std::uint32_t>> together;
  for (int step = 0; step < 1000 && !s.idle(); ++step) {
    std::map<sched::SeqId, std::uint64_t> admitted;
    for (sched::SeqId id = 1; id <= 4; ++id) {
      if (auto* q = s.find(id); q && q->status == sched::SeqStatus::running) admitted[id] = q->admitted_at;
    }
    const StepPlan plan = s.schedule();
    check_plan(s, plan);
    if (!plan.preempted.empty()) {
      std::uint64_t newest = 0;
      for (auto& [id, at] : admitted) newest = std::max(newest, at);
      CHECK(admitted.at(plan.preempted.front()) == newest);
      checked_order = true;
    }
    s.commit(plan, fake_sample(s, plan));
    for (const auto& c : plan.chunks) {
      const auto* q = s.find(c.id);
      if (c.samples && q->generated() >= q->max_new_tokens) {
        together[c.id].assign(q->tokens.begin() + q->prompt_len, q->tokens.end());
        s.finish(c.id);
      }
    }
  }
  CHECK(checked_order);
  CHECK(s.counters().preemptions > 0);
  CHECK(together == solo);
  CHECK(pool.num_used() == 0);
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
