// The model's steps on the device: a mixed flat batch against the same sequences alone, decodes
// batched with a prefill chunk, top logprobs through a replayed recording, bad batches refused,
// the overlapped loop (ids fed on the device), late masks, bucket padding. Forward passes against
// the reference: test_model.cpp. Validation layer on.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sstream>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/fault.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/model/sequence.hpp"
#include "engine/model/synthetic.hpp"
#include "tests/model/model_fixture.hpp"
#include "tests/reference/forward_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/reference/sample_ref.hpp"
#include "tests/support/device_fixture.hpp"
#include "tests/support/shared_data.hpp"

using namespace vkllm;
using namespace vkllm::test;
using model::Arch;

namespace {

// The overlapped-loop tests' model (deterministic, 4 sequences of 64 tokens) and two prompts of
// n0 and n1 tokens; run r keeps its K/V in blocks of its own, so a run that feeds on the device
// and one that takes the host's ids can be compared.
struct TwoPrompts {
  std::unique_ptr<model::Model> m;
  std::uint32_t bs = 0, mb = 0;
  std::vector<std::uint32_t> p0, p1;

  std::vector<std::uint32_t> blocks(std::uint32_t run, std::uint32_t seq) const {
    std::vector<std::uint32_t> b(mb);
    std::iota(b.begin(), b.end(), 1 + run * 8 + seq * mb);
    return b;
  }
  model::StepInput prompt_step(std::uint32_t run) const {
    model::StepInput in;
    in.query_start = {0};
    add_sequence(in, mb, bs, blocks(run, 0), p0, 0);
    add_sequence(in, mb, bs, blocks(run, 1), p1, 0);
    return in;
  }
};

TwoPrompts two_prompts(platform::Device& device, const model::SyntheticSpec& spec, std::mt19937& rng,
                       std::size_t n0, std::size_t n1) {
  model::ModelOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 4;
  opt.context_length = 64;
  opt.num_blocks = 1 + 4 * 4;
  opt.deterministic = true;
  TwoPrompts t;
  t.m = load_synthetic(device, spec, opt);
  t.bs = opt.block_size;
  t.mb = t.m->max_blocks_per_seq();
  t.p0 = random_tokens(rng, n0, spec.vocab_size);
  t.p1 = random_tokens(rng, n1, spec.vocab_size);
  return t;
}

}  // namespace

TEST_CASE_FIXTURE(test::DeviceTest, "a mixed flat batch gives each sequence its solo logits") {
  const auto spec = spec_for(Arch::qwen2, gguf::TensorType::kQ8_0, rng()());
  const gguf::Reader reader =
      gguf::Reader::from_bytes(model::make_synthetic_model(spec).to_bytes(), "synthetic.gguf");
  model::ModelOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 4;
  opt.context_length = 64;
  opt.num_blocks = 16;
  auto m = model::Model::load(device(), reader, opt);
  const std::uint32_t bs = opt.block_size, mb = m->max_blocks_per_seq();

  // Sequence A: 20 tokens already cached (blocks 5, 9), now decodes one. Sequence B: a fresh
  // prompt chunk of 11 tokens (blocks 2, 14). Solo runs first, through separate references.
  const auto a_prompt = random_tokens(rng(), 21, spec.vocab_size);
  const auto b_prompt = random_tokens(rng(), 11, spec.vocab_size);
  ref::ReferenceModel ra(reader, m->kv_type() == ops::KvType::f16);
  ref::ReferenceModel rb(reader, m->kv_type() == ops::KvType::f16);
  std::vector<float> ea, eb;
  for (std::uint32_t t : a_prompt) ea = ra.forward(t);
  for (std::uint32_t t : b_prompt) eb = rb.forward(t);

  const std::vector<std::uint32_t> a_blocks = {5, 9}, b_blocks = {2, 14};
  // Step 1: A's first 20 tokens alone (prefill).
  model::StepInput first;
  first.query_start = {0};
  add_sequence(first, mb, bs, a_blocks, std::span(a_prompt).first(20), 0);
  m->step(first);
  // Step 2: A's decode token and B's whole prompt in one flat batch.
  model::StepInput mixed;
  mixed.query_start = {0};
  mixed.want_logits = true;
  add_sequence(mixed, mb, bs, a_blocks, std::span(a_prompt).last(1), 20);
  add_sequence(mixed, mb, bs, b_blocks, b_prompt, 0);
  const auto out = m->step(mixed);
  REQUIRE(out.logits.size() == 2 * spec.vocab_size);
  CHECK(ref::nmse(std::span(out.logits).first(spec.vocab_size), ea) < kForwardNmse);
  CHECK(ref::nmse(std::span(out.logits).last(spec.vocab_size), eb) < kForwardNmse);
}

TEST_CASE_FIXTURE(test::DeviceTest, "default mode: decodes batched with a prefill chunk keep their solo logits") {
  // Alone, a decode step is small and splits attention over 256-key ranges; batched with a
  // 100-token chunk it is not split. The logits may differ in rounding only.
  const auto spec = spec_for(Arch::qwen3, gguf::TensorType::kQ8_0, rng()());
  model::ModelOptions opt;
  opt.max_batch_tokens = 512;
  opt.max_seqs = 8;
  opt.context_length = 1024;
  const std::uint32_t mb = (opt.context_length + opt.block_size - 1) / opt.block_size;
  opt.num_blocks = 1 + 8 * mb;
  auto m = load_synthetic(device(), spec, opt);
  REQUIRE(!m->options().deterministic);
  const std::uint32_t bs = opt.block_size;

  // Sequence s owns blocks 1 + s * mb ...
  auto add = [&](model::StepInput& in, std::uint32_t s, std::span<const std::uint32_t> toks,
                 std::uint32_t pos0) {
    std::vector<std::uint32_t> blocks(mb);
    std::iota(blocks.begin(), blocks.end(), 1 + s * mb);
    add_sequence(in, mb, bs, blocks, toks, pos0);
  };
  auto fresh = [] {
    model::StepInput in;
    in.query_start = {0};
    in.want_logits = true;
    return in;
  };
  constexpr std::uint32_t kSeqs = 6, kSteps = 4;
  std::vector<std::vector<std::uint32_t>> prompts, decodes;
  for (std::uint32_t s = 0; s < kSeqs; ++s) {
    prompts.push_back(random_tokens(rng(), 250 + 13 * s, spec.vocab_size));  // decodes cross 256
    decodes.push_back(random_tokens(rng(), kSteps, spec.vocab_size));
  }
  auto prefill = [&](std::uint32_t s) {
    model::StepInput in = fresh();
    add(in, s, prompts[s], 0);
    m->step(in);
  };

  std::vector<std::vector<float>> solo(kSeqs * kSteps);
  for (std::uint32_t s = 0; s < kSeqs; ++s) {
    prefill(s);
    for (std::uint32_t j = 0; j < kSteps; ++j) {
      model::StepInput in = fresh();
      add(in, s, std::span(decodes[s]).subspan(j, 1), static_cast<std::uint32_t>(prompts[s].size()) + j);
      solo[s * kSteps + j] = m->step(in).logits;
    }
  }
  for (std::uint32_t s = 0; s < kSeqs; ++s) prefill(s);
  const auto filler = random_tokens(rng(), 100 * kSteps, spec.vocab_size);
  for (std::uint32_t j = 0; j < kSteps; ++j) {
    model::StepInput in = fresh();
    for (std::uint32_t s = 0; s < kSeqs; ++s) {
      add(in, s, std::span(decodes[s]).subspan(j, 1), static_cast<std::uint32_t>(prompts[s].size()) + j);
    }
    add(in, kSeqs, std::span(filler).subspan(100 * j, 100), 100 * j);
    const auto out = m->step(in);
    for (std::uint32_t s = 0; s < kSeqs; ++s) {
      CAPTURE(s);
      CAPTURE(j);
      CHECK(ref::nmse(std::span(out.logits).subspan(std::size_t{s} * spec.vocab_size, spec.vocab_size),
                      solo[s * kSteps + j]) < kForwardNmse);
    }
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "top logprobs per row, right from a replayed recording too") {
  const auto spec = spec_for(Arch::llama, gguf::TensorType::kQ8_0, rng()());
  model::ModelOptions opt;
  opt.max_batch_tokens = 16;
  opt.max_seqs = 3;
  opt.context_length = 32;
  opt.num_blocks = 8;
  auto m = load_synthetic(device(), spec, opt);
  const std::uint32_t mb = m->max_blocks_per_seq(), bs = opt.block_size;
  // Three sequences of 4 tokens in blocks 1, 2, 3; greedy rows, one of them sampled.
  model::StepInput in;
  in.query_start = {0};
  in.block_table.assign(3 * mb, 0);
  for (std::uint32_t s = 0; s < 3; ++s) {
    in.block_table[s * mb] = s + 1;
    for (std::uint32_t p = 0; p < 4; ++p) {
      in.token_ids.push_back(random_tokens(rng(), 1, spec.vocab_size)[0]);
      in.positions.push_back(p);
      in.slot_mapping.push_back((s + 1) * bs + p);
    }
    in.query_start.push_back(4 * (s + 1));
    in.sample_rows.push_back(4 * s + 3);
    model::SamplingParams sp = greedy();
    if (s == 1) sp.temperature = 1.f;
    in.sampling.push_back(ops::sampling_row(sp, s, 0, 0));
  }
  in.want_logits = true;
  // The same shape twice: the second step replays the first's recording with other N.
  for (const std::vector<std::uint32_t>& ns : {std::vector<std::uint32_t>{3, 0, 20},
                                               std::vector<std::uint32_t>{0, 20, 1}}) {
    for (std::uint32_t r = 0; r < 3; ++r) in.sampling[r].top_logprobs = ns[r];
    const auto out = m->step(in);
    REQUIRE(out.top.size() == 3);
    for (std::uint32_t r = 0; r < 3; ++r) {
      CAPTURE(r);
      const auto want = ref::top_logprobs(
          std::span(out.logits).subspan(std::size_t(r) * spec.vocab_size, spec.vocab_size), ns[r]);
      REQUIRE(out.top[r].size() == want.size());
      for (std::size_t j = 0; j < want.size(); ++j) {
        CAPTURE(j);
        CHECK(out.top[r][j].token == want[j].token);
        CHECK(std::abs(out.top[r][j].logprob - want[j].logprob) <=
              1e-5 * std::max(1.0, std::abs(want[j].logprob)));
      }
      // Greedy rows: the chosen token heads the list, with the chosen token's logprob.
      if (ns[r] > 0 && r != 1) {
        CHECK(out.top[r][0].token == out.ids[r]);
        CHECK(out.top[r][0].logprob == out.logprobs[r]);
      }
    }
  }
  CHECK(m->recordings() == 1);
  CHECK(m->replays() == 1);
}

TEST_CASE_FIXTURE(test::DeviceTest, "a bad batch is refused before it reaches the device") {
  const auto spec = spec_for(Arch::llama, gguf::TensorType::kF32, 7);
  const gguf::Reader reader =
      gguf::Reader::from_bytes(model::make_synthetic_model(spec).to_bytes(), "synthetic.gguf");
  model::ModelOptions opt;
  opt.max_batch_tokens = 8;
  opt.max_seqs = 2;
  opt.context_length = 32;
  auto m = model::Model::load(device(), reader, opt);
  model::StepInput in;
  in.token_ids = {1, 2};
  in.positions = {0, 1};
  in.query_start = {0, 2};
  in.slot_mapping = {0, 1};
  in.block_table.assign(m->max_blocks_per_seq(), 0);
  in.sample_rows = {1};
  in.sampling = {ops::sampling_row(greedy(), 0, 0, 0)};
  CHECK_NOTHROW(m->step(in));
  auto bad = in;
  bad.token_ids[1] = spec.vocab_size;
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad = in;
  bad.slot_mapping[1] = 7;
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad = in;
  bad.positions[1] = 5;
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad = in;
  bad.sample_rows = {2};
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad = in;
  bad.token_ids.assign(9, 1);
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad = in;
  bad.block_table[0] = m->num_blocks();
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad = in;
  bad.sampling[0].top_logprobs = ops::kMaxTopLogprobs + 1;
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  // The feed: one entry per token, rows the step before drew (it drew one).
  bad = in;
  bad.feed = {model::kNoFeed};
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad.feed = {model::kNoFeed, 1};
  CHECK_THROWS_AS(m->step(bad), InvalidRequest);
  bad.feed = {model::kNoFeed, 0};
  bad.token_ids[1] = spec.vocab_size;  // ignored where the feed names a row
  CHECK_NOTHROW(m->step(bad));
  CHECK(m->in_flight() == 0);
  CHECK_THROWS_AS(m->wait(), std::logic_error);
  // Tables for sliding-window layers this model does not have.
  bad = in;
  bad.swa_slot_mapping = in.slot_mapping;
  bad.swa_block_table = in.block_table;
  CHECK_THROWS_WITH_AS(m->step(bad), doctest::Contains("swa_slot_mapping"), InvalidRequest);

  // gemma2 (a sliding layer and a full one): its second table is checked as the first.
  opt.swa_blocks = 3;
  auto g = model::Model::load(device(), synthetic_reader(spec_for(Arch::gemma2, gguf::TensorType::kF32, 7)), opt);
  REQUIRE(g->swa_num_blocks() == 3);
  CHECK(g->num_blocks() > 3);
  CHECK_THROWS_WITH_AS(g->step(in), doctest::Contains("swa_slot_mapping"), InvalidRequest);
  auto two = in;
  two.swa_slot_mapping = {2 * opt.block_size, 2 * opt.block_size + 1};
  two.swa_block_table.assign(g->max_blocks_per_seq(), 2);
  CHECK_NOTHROW(g->step(two));
  bad = two;
  bad.swa_block_table[0] = 3;  // past the second pool
  CHECK_THROWS_WITH_AS(g->step(bad), doctest::Contains("swa block 0"), InvalidRequest);
  bad = two;
  bad.swa_slot_mapping[1] = 1;
  CHECK_THROWS_WITH_AS(g->step(bad), doctest::Contains("swa slot"), InvalidRequest);
}

TEST_CASE_FIXTURE(test::DeviceTest, "the overlapped loop: a step fed on the device matches the host's ids") {
  // Step A (two prompts) and step B (their next tokens, fed from A's rows on the device) are
  // both submitted before A is read; the same two steps with B's ids from the host must give
  // the same ids and log probabilities, bit for bit (deterministic mode: same shapes, same sums).
  const auto spec = spec_for(Arch::qwen3, gguf::TensorType::kQ4_K, 21);
  const TwoPrompts t = two_prompts(device(), spec, rng(), 19, 5);  // run 0: fed, 1: from the host
  model::Model* m = t.m.get();
  const std::uint32_t bs = t.bs, mb = t.mb;
  const auto blocks = [&](std::uint32_t run, std::uint32_t seq) { return t.blocks(run, seq); };
  auto prompt_step = [&](std::uint32_t run) {
    model::StepInput in = t.prompt_step(run);
    in.want_logprobs = true;
    return in;
  };
  // B: sequence 1 first, so the feed crosses rows.
  auto next_step = [&](std::uint32_t run, std::uint32_t t0, std::uint32_t t1) {
    model::StepInput in;
    in.query_start = {0};
    add_sequence(in, mb, bs, blocks(run, 1), std::vector<std::uint32_t>{t1}, 5);
    add_sequence(in, mb, bs, blocks(run, 0), std::vector<std::uint32_t>{t0}, 19);
    in.want_logprobs = true;
    return in;
  };
  m->submit(prompt_step(0));
  model::StepInput fed = next_step(0, 0, 0);
  fed.feed = {1, 0};
  m->submit(fed);
  CHECK(m->in_flight() == 2);
  CHECK_THROWS_AS(m->submit(fed), std::logic_error);  // two in flight already
  const auto a = m->wait();
  const auto b = m->wait();
  const auto a_host = m->step(prompt_step(1));
  const auto b_host = m->step(next_step(1, a_host.ids[0], a_host.ids[1]));
  CHECK(a.ids == a_host.ids);
  CHECK(a.logprobs == a_host.logprobs);
  CHECK(b.ids == b_host.ids);
  CHECK(b.logprobs == b_host.logprobs);
}

TEST_CASE_FIXTURE(test::DeviceTest, "late masks: the sampler waits for masks released after submit, as if given with the step") {
  // Step B is fed from step A on the device and submitted with late masks before A is read;
  // its masks come after (release_masks), as the engine's constrained requests do. The same two
  // steps with B's ids and masks from the host give the same ids, each inside its mask.
  const auto spec = spec_for(Arch::llama, gguf::TensorType::kQ8_0, 22);
  const TwoPrompts t = two_prompts(device(), spec, rng(), 11, 6);
  model::Model* m = t.m.get();
  const std::uint32_t words = (spec.vocab_size + 31) / 32;
  const auto prompt_step = [&](std::uint32_t run) { return t.prompt_step(run); };
  auto next_step = [&](std::uint32_t run, std::uint32_t t0, std::uint32_t t1) {
    model::StepInput in;
    in.query_start = {0};
    add_sequence(in, t.mb, t.bs, t.blocks(run, 0), std::vector<std::uint32_t>{t0}, 11);
    add_sequence(in, t.mb, t.bs, t.blocks(run, 1), std::vector<std::uint32_t>{t1}, 6);
    in.sampling[0].mask_offset = 0;
    in.sampling[1].mask_offset = words;
    return in;
  };
  // Row 0 may draw one of three tokens, row 1 one of two.
  std::vector<std::uint32_t> masks(2 * words, 0);
  const std::vector<std::uint32_t> allowed0 = {7, 100, 201}, allowed1 = {3, 299};
  for (std::uint32_t t : allowed0) masks[t / 32] |= 1u << (t % 32);
  for (std::uint32_t t : allowed1) masks[words + t / 32] |= 1u << (t % 32);

  m->submit(prompt_step(0));
  model::StepInput late = next_step(0, 0, 0);
  late.feed = {0, 1};
  late.late_mask_words = 2 * words;
  m->submit(late);
  CHECK(m->awaiting_masks());
  CHECK_THROWS_AS(m->release_masks(std::vector<std::uint32_t>(words, ~0u)), std::logic_error);  // wrong size
  const auto a = m->wait();
  m->release_masks(masks);
  CHECK_FALSE(m->awaiting_masks());
  CHECK_THROWS_AS(m->release_masks(masks), std::logic_error);  // none waits
  const auto b = m->wait();

  const auto a_host = m->step(prompt_step(1));
  model::StepInput given = next_step(1, a_host.ids[0], a_host.ids[1]);
  given.masks = masks;
  const auto b_host = m->step(given);
  CHECK(a.ids == a_host.ids);
  CHECK(b.ids == b_host.ids);
  CHECK(std::find(allowed0.begin(), allowed0.end(), b.ids[0]) != allowed0.end());
  CHECK(std::find(allowed1.begin(), allowed1.end(), b.ids[1]) != allowed1.end());

  // Late masks and masks given with the step at once, or late masks with nothing sampled, are refused.
  model::StepInput both = next_step(1, 1, 2);
  both.masks = masks;
  both.late_mask_words = 2 * words;
  CHECK_THROWS_AS(m->submit(both), InvalidRequest);
  // A late step whose masks never come: wait() releases all-allowed ones (no hang), and no step
  // may be submitted before.
  m->submit(prompt_step(0));
  (void)m->wait();
  late.feed.clear();
  m->submit(late);
  CHECK_THROWS_AS(m->submit(prompt_step(1)), std::logic_error);
  const auto unreleased = m->wait();
  CHECK(unreleased.ids.size() == 2);
  CHECK(m->in_flight() == 0);
}

TEST_CASE_FIXTURE(test::DeviceTest, "bucket padding: the same bits as exact shapes, and shapes that replay") {
  // Deterministic mode: no split attention, so every token's sums follow one order whatever the
  // step's shape; padded and unpadded steps must then agree bit for bit.
  const auto spec = spec_for(Arch::llama, gguf::TensorType::kQ8_0, rng()());
  const gguf::Reader reader =
      gguf::Reader::from_bytes(model::make_synthetic_model(spec).to_bytes(), "synthetic.gguf");
  model::ModelOptions opt;
  opt.max_batch_tokens = 64;
  opt.max_seqs = 8;
  opt.context_length = 64;
  opt.num_blocks = 1 + 8 * 4;
  opt.deterministic = true;
  opt.pad_steps = false;
  auto exact = model::Model::load(device(), reader, opt);
  opt.pad_steps = true;
  auto padded = model::Model::load(device(), reader, opt);
  const std::uint32_t bs = opt.block_size, mb = exact->max_blocks_per_seq();
  CHECK(model::Model::step_bucket(1) == 1);
  CHECK(model::Model::step_bucket(3) == 4);
  CHECK(model::Model::step_bucket(9) == 16);
  CHECK(model::Model::step_bucket(17) == 24);
  CHECK(model::Model::step_bucket(257) == 320);

  // Steps of 3, then 5, 6, 7 sequences decoding, one with a prompt chunk: sequence s owns blocks
  // 1 + 4s ...; every sequence has a cached prefix of s + 3 tokens written by a first step.
  std::vector<std::vector<std::uint32_t>> toks(8);
  for (auto& t : toks) t = random_tokens(rng(), 40, spec.vocab_size);
  auto blocks_of = [&](std::uint32_t s) {
    std::vector<std::uint32_t> b(mb);
    std::iota(b.begin(), b.end(), 1 + s * mb);
    return b;
  };
  model::StepInput prefill;
  prefill.query_start = {0};
  for (std::uint32_t s = 0; s < 7; ++s) {
    add_sequence(prefill, mb, bs, blocks_of(s), std::span(toks[s]).first(s + 3), 0);
  }
  prefill.want_logits = true;
  const auto a0 = exact->step(prefill);
  const auto b0 = padded->step(prefill);
  CHECK(a0.logits == b0.logits);
  const std::uint64_t recordings0 = padded->recordings();
  for (std::uint32_t n : {5u, 6u, 7u, 3u}) {
    CAPTURE(n);
    model::StepInput in;
    in.query_start = {0};
    in.want_logits = true;
    for (std::uint32_t s = 0; s < n; ++s) {
      // Sequence 2 also feeds a chunk of 5 more prompt tokens.
      const std::uint32_t len = s == 2 ? 6 : 1;
      add_sequence(in, mb, bs, blocks_of(s), std::span(toks[s]).subspan(s + 3, len), s + 3);
    }
    const auto a = exact->step(in);
    const auto b = padded->step(in);
    REQUIRE(a.ids.size() == n);
    CHECK(a.ids == b.ids);
    CHECK(a.logits == b.logits);
  }
  // 5, 6 and 7 sequences (T 10..12) share the bucket (8 sequences, 16 tokens): one recording;
  // 3 sequences (T 8, 4 sequences) another.
  CHECK(padded->recordings() - recordings0 == 2);
  CHECK(exact->recordings() == 5);
}

// Injected faults (VKLLM_FAULT, docs/ARCHITECTURE.md "Injected faults"): device memory running
// out at each stage of a load, on a device of the test's own so the allocations are counted
// from its first.
