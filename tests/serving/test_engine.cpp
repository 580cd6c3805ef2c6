// The serving engine end to end on the device (validation on): many concurrent greedy requests
// give exactly their solo tokens; a pool too small forces preemption and recompute without
// changing outputs; a shared prefix is computed once; cancellation at any point returns every
// block; time limits, queue bounds, device loss and out-of-memory end only their requests.
// What a request asks of its output is in test_engine_outputs.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <type_traits>

#include "common/fault.hpp"
#include "engine/frontend/text_output.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/model/synthetic.hpp"
#include "engine/serving/engine.hpp"
#include "tests/reference/forward_ref.hpp"
#include "tests/serving/engine_fixture.hpp"
#include "tests/support/device_fixture.hpp"
#include "tests/support/shared_data.hpp"

using namespace vkllm;
using namespace vkllm::test;
using serving::Engine;
using serving::FinishReason;


namespace {

// Runs each of `count` prompts alone, then the first n of them together for each n in `ns`:
// every request's 12 greedy tokens must be its solo ones, and the pool whole again after.
void check_batch_invariance(Fixture& f, std::uint32_t count, std::uint32_t seed,
                            std::initializer_list<std::size_t> ns) {
  serving::EngineConfig cfg;
  cfg.max_num_seqs = count;
  cfg.max_num_batched_tokens = 64;
  const auto ps = prompts(count, 320, seed);
  std::vector<std::vector<std::uint32_t>> solo;
  {
    Engine engine(*f.model, f.tokenizer, cfg);
    for (const auto& p : ps) solo.push_back(run_together(engine, {p}, 12)[0]);
  }
  for (std::size_t n : ns) {
    CAPTURE(n);
    Engine engine(*f.model, f.tokenizer, cfg);
    const std::vector<std::vector<std::uint32_t>> subset(ps.begin(), ps.begin() + static_cast<std::ptrdiff_t>(n));
    const auto together = run_together(engine, subset, 12);
    for (std::size_t i = 0; i < n; ++i) {
      CAPTURE(i);
      CHECK(together[i] == solo[i]);
    }
    const auto st = engine.stats();
    CHECK(st.running == 0);
    CHECK(st.kv_blocks_free == st.kv_blocks_total);
  }
}

}  // namespace

TEST_CASE_FIXTURE(test::DeviceTest, "batch invariance: 1, 4, 16 and 32 concurrent requests give their solo tokens") {
  Fixture f = random_model(device(), 0, 32, true);
  check_batch_invariance(f, 32, 5, {1, 4, 16, 32});
}

TEST_CASE_FIXTURE(test::DeviceTest, "MoE batch invariance: 16 concurrent requests give their solo tokens (deterministic mode)") {
  // Each request's tokens route to their own experts; batched, an expert's rows mix requests and
  // the matmul's tiles hold pairs of many sequences, none of which may change a token's sums.
  for (const Family& family : kFamilies) {
    if (!family.experts) continue;
    CAPTURE(std::string(family.name));
    Fixture f = random_model(device(), 0, 16, true, family.arch, gguf::TensorType::kQ4_K, 0, true);
    check_batch_invariance(f, 16, 31, {16});
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "every architecture: 64 greedy tokens through the batching engine are the CPU reference's, near-ties excepted") {
  // Four requests at once (prompt chunks and decodes share steps). The reference follows each
  // request's own tokens (teacher-forced), so a near-tie taken early does not end the comparison:
  // every token must be the reference's argmax or within 1e-3 of the logits' spread of it.
  int compared = 0, near_ties = 0;
  for (const Family& family : kFamilies) {
    for (gguf::TensorType type : {gguf::TensorType::kF16, gguf::TensorType::kQ8_0, gguf::TensorType::kQ4_K}) {
      CAPTURE(std::string(family.name));
      CAPTURE(gguf::type_name(type));
      Fixture f = random_model(device(), 0, 4, false, family.arch, type, 0, family.experts);
      serving::EngineConfig cfg;
      cfg.max_num_seqs = 4;
      cfg.max_num_batched_tokens = 32;
      Engine engine(*f.model, f.tokenizer, cfg);
      const auto ps = prompts(4, 320, 17);
      std::vector<std::unique_ptr<Collector>> cs;
      for (const auto& p : ps) {
        cs.push_back(std::make_unique<Collector>());
        engine.submit(p, greedy(64), cs.back()->callback());
      }
      for (std::size_t i = 0; i < ps.size(); ++i) {
        cs[i]->wait();
        REQUIRE(cs[i]->tokens.size() == 64);
        ref::ReferenceModel reference(f.reader, f.model->kv_type() == ops::KvType::f16);
        std::vector<float> logits;
        for (std::uint32_t t : ps[i]) logits = reference.forward(t);
        for (std::size_t j = 0; j < 64; ++j) {
          const std::uint32_t got = cs[i]->tokens[j];
          const auto [lo, hi] = std::minmax_element(logits.begin(), logits.end());
          ++compared;
          if (got != static_cast<std::uint32_t>(hi - logits.begin())) {
            ++near_ties;
            CAPTURE(i);
            CAPTURE(j);
            CHECK(*hi - logits[got] < 1e-3f * (*hi - *lo));
          }
          logits = reference.forward(got);
        }
      }
    }
  }
  MESSAGE(compared << " tokens compared, " << near_ties << " near-ties taken instead");
  CHECK(near_ties * 20 < compared);
}

TEST_CASE_FIXTURE(test::DeviceTest, "B9 C8: preemption: a pool too small for all recomputes and keeps every output") {
  Fixture big = random_model(device(), 0, 8);
  serving::EngineConfig cfg;
  cfg.max_num_seqs = 8;
  const auto ps = prompts(8, 320, 9);
  std::vector<std::vector<std::uint32_t>> solo;
  {
    Engine engine(*big.model, big.tokenizer, cfg);
    for (const auto& p : ps) solo.push_back(run_together(engine, {p}, 40)[0]);
  }
  Fixture small = random_model(device(), 13, 8);  // 12 usable blocks of 16 for 8 x ~5 blocks
  Engine engine(*small.model, small.tokenizer, cfg);
  const auto together = run_together(engine, ps, 40);
  CHECK(together == solo);
  const auto st = engine.stats();
  CHECK(st.preemptions > 0);
  CHECK(st.kv_blocks_free == st.kv_blocks_total);
  // The stats carry the device's memory by use; the KV pools are live buffers.
  REQUIRE(st.device_memory.size() == platform::kMemoryIntentCount);
  const auto& kv = st.device_memory[static_cast<std::size_t>(platform::MemoryIntent::kv_cache)];
  CHECK(kv.intent == "kv-cache");
  CHECK(kv.used > 0);
  CHECK(kv.used <= kv.reserved);
}

TEST_CASE_FIXTURE(test::DeviceTest, "B10 artificial preemption: decodes preempted at random (p=0.5) keep every greedy output") {
  Fixture f = random_model(device(), 0, 8);
  serving::EngineConfig cfg;
  cfg.max_num_seqs = 8;
  const auto ps = prompts(8, 320, 21);
  std::vector<std::vector<std::uint32_t>> baseline;
  {
    Engine engine(*f.model, f.tokenizer, cfg);
    baseline = run_together(engine, ps, 40);
    CHECK(engine.stats().preemptions == 0);
  }
  for (bool overlap : {false, true}) {
    CAPTURE(overlap);
    cfg.overlap = overlap;
    cfg.artificial_preempt = 0.5;
    Engine engine(*f.model, f.tokenizer, cfg);
    CHECK(run_together(engine, ps, 40) == baseline);
    const auto st = engine.stats();
    CHECK(st.preemptions > 0);
    CHECK(st.preemptions <= 500);
    CHECK(st.kv_blocks_free == st.kv_blocks_total);
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "the overlapped loop: one step at a time or a step ahead, the same tokens") {
  // Deterministic mode (batch-invariant), a pool too small for all (preemption), one request
  // with a repetition penalty (every step waits for its token on the host), one sampled with a
  // seed, one ending on a stop id (its step-ahead token is thrown away).
  Fixture f = random_model(device(), 13, 8, true);
  const auto ps = prompts(8, 320, 17);
  struct Run {
    std::vector<std::vector<std::uint32_t>> tokens;
    std::vector<FinishReason> finish;
    serving::EngineStats stats;
  };
  auto run = [&](bool overlap, std::uint32_t stop_id) {
    serving::EngineConfig cfg;
    cfg.max_num_seqs = 8;
    cfg.max_num_batched_tokens = 64;
    cfg.overlap = overlap;
    Engine engine(*f.model, f.tokenizer, cfg);
    std::vector<std::unique_ptr<Collector>> cs;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      auto params = greedy(36 + static_cast<std::uint32_t>(i % 5));
      if (i == 3) params.sampling.repetition_penalty = 1.3f;
      if (i == 5) {
        params.sampling.temperature = 0.9f;
        params.sampling.seed = 7;
      }
      if (i == 6 && stop_id != ~0u) params.stop_token_ids = {stop_id};
      cs.push_back(std::make_unique<Collector>());
      engine.submit(ps[i], params, cs.back()->callback());
    }
    Run r;
    for (auto& c : cs) {
      c->wait();
      CHECK(c->final_events == 1);
      r.tokens.push_back(c->tokens);
      r.finish.push_back(c->finish);
    }
    r.stats = engine.stats();
    return r;
  };
  const Run base = run(false, ~0u);
  REQUIRE(base.tokens[6].size() > 10);
  const std::uint32_t stop_id = base.tokens[6][9];
  const Run one = run(false, stop_id);
  const Run ahead = run(true, stop_id);
  CHECK(one.finish[6] == FinishReason::stop);
  CHECK(ahead.tokens == one.tokens);
  CHECK(ahead.finish == one.finish);
  CHECK(one.stats.overlapped_steps == 0);
  CHECK(ahead.stats.overlapped_steps > 0);
  CHECK(ahead.stats.preemptions > 0);
  // Tokens drawn a step ahead for a request that had stopped are not counted.
  CHECK(ahead.stats.generation_tokens == one.stats.generation_tokens);
  CHECK(ahead.stats.kv_blocks_free == ahead.stats.kv_blocks_total);
}

TEST_CASE_FIXTURE(test::DeviceTest, "prefix cache: a shared 3-block prefix is computed once, same output") {
  Fixture f = random_model(device(), 0, 4);
  serving::EngineConfig cfg;
  std::mt19937 rng(4);
  std::vector<std::uint32_t> shared(48);
  for (auto& t : shared) t = 3 + rng() % 300;
  auto a = shared, b = shared;
  a.insert(a.end(), {5, 6, 7, 8});
  b.insert(b.end(), {9, 10});
  std::vector<std::uint32_t> b_uncached;
  {
    serving::EngineConfig off = cfg;
    off.prefix_caching = false;
    Engine engine(*f.model, f.tokenizer, off);
    b_uncached = run_together(engine, {b}, 10)[0];
  }
  Engine engine(*f.model, f.tokenizer, cfg);
  run_together(engine, {a}, 10);
  const auto before = engine.stats();
  const auto b_out = run_together(engine, {b}, 10)[0];
  const auto after = engine.stats();
  CHECK(b_out == b_uncached);
  CHECK(after.prompt_tokens - before.prompt_tokens <= b.size() - 48);
  CHECK(after.prefix_hits - before.prefix_hits >= 3 * 16);  // tokens
}

TEST_CASE_FIXTURE(test::DeviceTest, "sliding windows (gemma3): blocks before each window go back to the second pool; together = solo, prefix cache, preemption") {
  // gemma3 with a window of 24 on five layers of six (the sixth on the main pool), deterministic
  // kernels. Four requests of about 190 tokens each alone on roomy pools, then together on a
  // second pool of 8 usable blocks: without giving blocks back they would hold 48 there. The
  // blocks given back are taken by the others while they run, preemption recomputes, and the
  // tokens are the solo ones.
  const auto ps = prompts(4, 320, 23);
  const auto q8 = gguf::TensorType::kQ8_0;
  std::vector<std::vector<std::uint32_t>> solo;
  {
    Fixture f = random_model(device(), 0, 4, true, model::Arch::gemma3, q8);
    REQUIRE(f.model->swa_num_blocks() > 0);
    CHECK(f.model->swa_window() == 24);
    CHECK(f.model->window() == 0);
    CHECK(f.model->swa_num_blocks() < f.model->num_blocks());  // windows, not contexts
    Engine engine(*f.model, f.tokenizer, {});
    for (const auto& p : ps) solo.push_back(run_together(engine, {p}, 150)[0]);
    // The prefix cache: a 100-token prompt again finds its 6 full blocks in both pools (the
    // second still caches the chain) and computes the rest; its tokens are the first run's.
    std::vector<std::uint32_t> longer(100);
    std::mt19937 rng(5);
    for (auto& t : longer) t = 3 + rng() % 300;
    const auto first = run_together(engine, {longer}, 20)[0];
    const auto before = engine.stats();
    CHECK(run_together(engine, {longer}, 20)[0] == first);
    const auto after = engine.stats();
    CHECK(after.cached_prompt_tokens - before.cached_prompt_tokens == 96);
    CHECK(after.kv_swa_blocks_free == after.kv_swa_blocks_total);
  }
  Fixture f = random_model(device(), 0, 4, true, model::Arch::gemma3, q8, 9);
  Engine engine(*f.model, f.tokenizer, {});
  const auto together = run_together(engine, ps, 150);
  CHECK(together == solo);
  const auto st = engine.stats();
  CHECK(st.kv_swa_blocks_total == 8);
  CHECK(st.kv_swa_blocks_free == 8);
  CHECK(st.preemptions > 0);  // four windows do not fit at once
  CHECK(st.kv_blocks_free == st.kv_blocks_total);
  std::size_t tokens = 0;
  for (std::size_t i = 0; i < ps.size(); ++i) tokens += ps[i].size() + together[i].size();
  CHECK(tokens / 16 > 4 * 8);  // what the four held in the main pool, far past the second's
}

TEST_CASE_FIXTURE(test::DeviceTest, "cancellation mid-prefill, mid-decode and while queued returns every block") {
  Fixture f = random_model(device(), 0, 4);
  serving::EngineConfig cfg;
  cfg.max_num_seqs = 2;            // the rest queue
  cfg.max_num_batched_tokens = 16; // long prompts take several steps
  Engine engine(*f.model, f.tokenizer, cfg);
  const auto start = engine.stats();
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<serving::RequestId> ids;
  std::mt19937 rng(8);
  for (int i = 0; i < 6; ++i) {
    std::vector<std::uint32_t> p(100 + i * 10);
    for (auto& t : p) t = 3 + rng() % 300;
    cs.push_back(std::make_unique<Collector>());
    ids.push_back(engine.submit(p, greedy(200), cs.back()->callback()));
  }
  // Let some prefill happen, then cancel half at once (queued, prefilling), then the rest after
  // they started decoding.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i : {0, 3, 5}) engine.cancel(ids[i]);
  for (;;) {
    std::lock_guard lock(cs[1]->mu);
    if (!cs[1]->tokens.empty() || cs[1]->final_events) break;
  }
  for (int i : {1, 2, 4}) engine.cancel(ids[i]);
  for (auto& c : cs) {
    c->wait();
    CHECK(c->final_events == 1);
    CHECK(c->finish == FinishReason::cancelled);
  }
  engine.cancel(ids[0]);  // twice: harmless
  // The engine processes cancels before its next step; give it that step.
  for (int spin = 0; spin < 1000 && engine.stats().running + engine.stats().waiting > 0; ++spin) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto end = engine.stats();
  CHECK(end.running == 0);
  CHECK(end.waiting == 0);
  CHECK(end.kv_blocks_free == start.kv_blocks_free);
  for (auto& c : cs) CHECK(c->final_events == 1);
}

TEST_CASE_FIXTURE(test::DeviceTest, "max_queue bounds the requests waiting, not the running ones") {
  Fixture f = random_model(device(), 0, 1);
  serving::EngineConfig ec;
  ec.max_num_seqs = 1;
  ec.max_queue = 1;
  Engine engine(*f.model, f.tokenizer, ec);
  const std::vector<std::uint32_t> p = {1, 50, 60, 70};
  auto long_params = greedy(400);
  long_params.ignore_eos = true;
  Collector running;
  const serving::RequestId a = engine.submit(p, long_params, running.callback());
  {
    std::unique_lock lock(running.mu);
    REQUIRE(running.cv.wait_for(lock, std::chrono::seconds(300), [&] { return !running.tokens.empty(); }));
  }
  CHECK(engine.stats().running == 1);
  Collector waiting;
  CHECK_NOTHROW(engine.submit(p, greedy(2), waiting.callback()));  // the one waiting place
  CHECK_THROWS_AS(engine.submit(p, greedy(2), [](const serving::TokenEvent&) {}), serving::QueueFull);
  engine.cancel(a);
  running.wait();
  waiting.wait();
  CHECK(waiting.finish != FinishReason::error);
  // A 429 is never a kind of 400: a catch of InvalidRequest must not take QueueFull.
  CHECK_FALSE(std::is_base_of_v<InvalidRequest, serving::QueueFull>);
}

TEST_CASE_FIXTURE(test::DeviceTest, "a request past its time limit ends with timeout, running or queued; its blocks come back") {
  Fixture f = random_model(device(), 0, 2);
  serving::EngineConfig ec;
  ec.max_num_seqs = 1;  // the second request queues behind the first
  Engine engine(*f.model, f.tokenizer, ec);
  const auto start = engine.stats();
  const std::vector<std::uint32_t> p = {1, 50, 60, 70};
  auto params = greedy(100000);
  params.ignore_eos = true;
  params.timeout = std::chrono::milliseconds(300);
  Collector running, queued, free_run;
  engine.submit(p, params, running.callback());
  engine.submit(p, params, queued.callback());
  running.wait();
  queued.wait();
  CHECK(running.finish == FinishReason::timeout);
  CHECK(queued.finish == FinishReason::timeout);
  CHECK(running.error.find("time limit") != std::string::npos);
  CHECK(running.final_events == 1);
  CHECK_FALSE(running.tokens.empty());
  // No limit: the same request runs to its length.
  engine.submit(p, greedy(8), free_run.callback());
  free_run.wait();
  CHECK(free_run.finish == FinishReason::length);
  for (int spin = 0; spin < 1000 && engine.stats().running + engine.stats().waiting > 0; ++spin) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto end = engine.stats();
  CHECK(end.timeouts == 2);
  CHECK(end.running == 0);
  CHECK(end.kv_blocks_free == start.kv_blocks_free);
}

TEST_CASE_FIXTURE(test::DeviceTest, "stories260K: the story through the engine, alone and among others") {
  VKLLM_REQUIRE_SHARED(shared);
  gguf::Reader reader = gguf::Reader::open(shared / "models/stories260K/stories260K.gguf");
  tok::Tokenizer tokenizer = tok::Tokenizer::from_gguf(reader);
  model::ModelOptions o;
  o.max_batch_tokens = 64;
  o.max_seqs = 16;
  o.context_length = 512;
  o.deterministic = true;
  auto m = model::Model::load(device(), reader, o);
  Engine engine(*m, tokenizer, {});
  auto ps = prompts(15, 512, 21);
  std::vector<std::unique_ptr<Collector>> cs;
  Collector story;
  engine.submit({1}, greedy(256), story.callback());
  for (auto& p : ps) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(p, greedy(50), cs.back()->callback());
  }
  story.wait();
  for (auto& c : cs) c->wait();
  // EXPECTED.md item 1: the story run.c prints (its final newline is run.c's own).
  std::ifstream f(shared / "models/stories260K/EXPECTED.md");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const auto open = doc.find("```", doc.find("## 1.")) + 4;
  const std::string expected = doc.substr(open, doc.find("```", open) - open - 1);
  CHECK(text_of(tokenizer, story) == expected);
  CHECK(story.finish == FinishReason::length);
}

// Injected faults (VKLLM_FAULT, docs/ARCHITECTURE.md "Injected faults" and "Device loss").
namespace {
struct Disarm {
  ~Disarm() { fault::arm(""); }
};
template <typename Pred>
bool eventually(Pred pred) {
  for (int spin = 0; spin < 6000 && !pred(); ++spin) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pred();
}
}  // namespace

TEST_CASE_FIXTURE(test::DeviceTest, "B12 device loss: requests end with device_lost, the engine reloads and serves the same tokens; a second loss soon after is final") {
  Fixture f = random_model(device(), 0, 4);
  Disarm disarm;
  // The reload recreates what `vkllm serve` owns: a device of its own and the model on it.
  platform::Instance& instance = test::gpu().instance;
  std::unique_ptr<platform::Device> dev;
  std::unique_ptr<model::Model> current;
  int reloads = 0;
  serving::EngineConfig cfg;
  cfg.max_num_seqs = 4;
  cfg.reload = [&]() -> model::Model& {
    const model::ModelOptions o = (current ? *current : *f.model).options();
    current.reset();
    dev.reset();
    ++reloads;
    dev = platform::Device::open(instance, instance.choose_device());
    current = model::Model::load(*dev, f.reader, o);
    return *current;
  };
  Engine engine(*f.model, f.tokenizer, cfg);
  const auto ps = prompts(3, 320, 21);
  const auto before = run_together(engine, ps, 16);

  // The third step's wait reports the loss: each request in flight ends once, with device_lost.
  fault::arm("step_wait:3");
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& p : ps) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(p, greedy(40), cs.back()->callback());
  }
  for (auto& c : cs) {
    c->wait();
    CHECK(c->final_events == 1);
    CHECK(c->finish == FinishReason::device_lost);
    CHECK(c->error.find("the device was lost") != std::string::npos);
  }
  REQUIRE(eventually([&] { return engine.health() == serving::Health::ok; }));
  CHECK(reloads == 1);
  CHECK_FALSE(engine.failed());
  // Served again, token for token as before the loss (temperature 0).
  CHECK(run_together(engine, ps, 16) == before);
  auto st = engine.stats();
  CHECK(st.device_losses == 1);
  CHECK(st.device_recoveries == 1);
  CHECK(st.running == 0);
  CHECK(st.kv_blocks_free == st.kv_blocks_total);

  // Lost again at a submit, well within the window: not retried; the engine says why.
  fault::arm("step_submit:1");
  Collector late;
  engine.submit(ps[0], greedy(16), late.callback());
  late.wait();
  CHECK(late.finish == FinishReason::device_lost);
  REQUIRE(eventually([&] { return engine.health() == serving::Health::failed; }));
  CHECK(engine.health_message().find("lost again") != std::string::npos);
  CHECK(reloads == 1);
  CHECK(engine.failed());
  CHECK_THROWS_AS(engine.submit(ps[0], greedy(4), [](const serving::TokenEvent&) {}), DeviceLost);
  st = engine.stats();
  CHECK(st.device_losses == 2);
  CHECK(st.device_recoveries == 1);
}

TEST_CASE_FIXTURE(test::DeviceTest, "B11 out of memory at run time: a recording retries after dropping the idle ones; a step that still fails ends only its requests") {
  serving::EngineConfig cfg;
  cfg.max_num_seqs = 4;
  const auto ps = prompts(2, 320, 33);
  std::vector<std::vector<std::uint32_t>> solo;
  {
    Fixture f = random_model(device(), 0, 4);
    Engine engine(*f.model, f.tokenizer, cfg);
    for (const auto& p : ps) solo.push_back(run_together(engine, {p}, 12)[0]);
  }
  Disarm disarm;
  SUBCASE("one failure: absorbed") {
    Fixture f = random_model(device(), 0, 4);  // the same weights, nothing recorded yet
    Engine engine(*f.model, f.tokenizer, cfg);
    fault::arm("descriptor_pool:1");
    CHECK(run_together(engine, {ps[0]}, 12)[0] == solo[0]);
    CHECK(fault::passes("descriptor_pool") >= 2);
  }
  SUBCASE("two in a row: the step's request ends with the error, the next one is served") {
    Fixture f = random_model(device(), 0, 4);
    Engine engine(*f.model, f.tokenizer, cfg);
    fault::arm("descriptor_pool:1,descriptor_pool:2");
    Collector failed;
    engine.submit(ps[0], greedy(12), failed.callback());
    failed.wait();
    CHECK(failed.finish == FinishReason::error);
    CHECK(failed.error.find("VK_ERROR_OUT_OF_DEVICE_MEMORY") != std::string::npos);
    CHECK(run_together(engine, {ps[1]}, 12)[0] == solo[1]);
    CHECK(eventually([&] { return engine.stats().running == 0; }));
    const auto st = engine.stats();
    CHECK(st.kv_blocks_free == st.kv_blocks_total);
    CHECK_FALSE(engine.failed());
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "C1 slot saturation: (slots, requests) = (1,3) (2,2) (2,4) (4,2) (4,6) run min(slots, requests) at once") {
  Fixture f = random_model(device(), 0, 4);
  const std::vector<std::uint32_t> p = {1, 50, 60, 70};
  for (const auto& [slots, n] : std::vector<std::pair<std::uint32_t, std::uint32_t>>{{1, 3}, {2, 2}, {2, 4}, {4, 2}, {4, 6}}) {
    CAPTURE(slots);
    CAPTURE(n);
    serving::EngineConfig cfg;
    cfg.max_num_seqs = slots;
    Engine engine(*f.model, f.tokenizer, cfg);
    std::vector<std::unique_ptr<Collector>> cs;
    std::vector<serving::RequestId> ids;
    for (std::uint32_t i = 0; i < n; ++i) {
      cs.push_back(std::make_unique<Collector>());
      ids.push_back(engine.submit(p, greedy(400), cs.back()->callback()));
    }
    const std::size_t busy = std::min(slots, n);
    CHECK(eventually([&] {
      const auto st = engine.stats();
      return st.running == busy && st.waiting == n - busy;
    }));
    for (serving::RequestId id : ids) engine.cancel(id);
    for (auto& c : cs) {
      c->wait();
      CHECK(c->final_events == 1);
    }
  }
}
