// Token selection on the device (argmax, the sampler) against the CPU references in
// tests/reference/sample_ref.hpp: ids row by row, logprobs, top-N lists, the draw's determinism
// and its distribution. Runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <optional>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/push_constants.hpp"
#include "engine/ops/sample.hpp"
#include "tests/reference/reference.hpp"
#include "tests/reference/sample_ref.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using test::DeviceTest;

namespace {

constexpr double kLogprobTolerance = 1e-4;

template <typename T>
platform::Buffer upload(DeviceTest& t, const std::vector<T>& data, const char* name) {
  auto b = t.device().create_buffer(std::max<std::size_t>(data.size() * sizeof(T), 4),
                                    platform::MemoryIntent::activations, name);
  if (!data.empty()) t.device().upload(b, 0, std::as_bytes(std::span<const T>(data)));
  return b;
}

std::vector<std::uint32_t> download_u32(DeviceTest& t, const platform::Buffer& b, std::size_t n) {
  std::vector<std::uint32_t> out(n);
  t.device().download(b, 0, std::as_writable_bytes(std::span<std::uint32_t>(out)));
  return out;
}

struct Sampled {
  std::vector<std::uint32_t> ids;
  std::vector<float> logprobs;
  std::vector<ops::TopLogprob> top;  // [nrows, kMaxTopLogprobs]
};

// record_sample over rows[i] on logits[i * ncols ...]; penalty entries indexed by the rows.
// ids, logprobs and top start poisoned (NaN; as u32 an id far past any vocabulary).
// slice_cols: the sampler's slices (0: the device's own).
Sampled run_sample(DeviceTest& t, const std::vector<float>& logits,
                   const std::vector<ops::SamplingRow>& rows,
                   std::vector<ops::PenaltyEntry> penalties, std::uint32_t ncols,
                   std::uint32_t slice_cols = 0, const std::vector<std::uint32_t>& masks = {}) {
  const auto nrows = static_cast<std::uint32_t>(rows.size());
  if (penalties.empty()) penalties.push_back({0, 0, 0.0f});  // the binding needs one entry
  auto dl = t.upload_floats(logits, "logits");
  auto dr = upload(t, rows, "rows");
  auto dp = upload(t, penalties, "penalties");
  auto ds = t.device().create_buffer(
      ops::sample_scratch_bytes(nrows, ncols, slice_cols ? slice_cols : ops::kSampleMinSliceCols),
                                     platform::MemoryIntent::activations, "scratch");
  auto di = t.poisoned_floats(nrows, "ids");
  auto dlp = t.poisoned_floats(nrows, "logprobs");
  auto dt = t.poisoned_floats(ops::sample_top_bytes(nrows) / 4, "top");
  auto cs = t.device().command_stream();
  cs.begin();
  std::optional<platform::Buffer> dm;
  if (!masks.empty()) dm = upload(t, masks, "masks");
  ops::record_sample(t.kernels(), cs, dl, dr, dp, ds, di, dlp, dt, nrows, ncols, slice_cols,
                     dm ? std::optional<ops::BufferSpan>(ops::BufferSpan(*dm)) : std::nullopt);
  cs.end();
  cs.submit_and_wait();
  std::vector<ops::TopLogprob> top(std::size_t(nrows) * ops::kMaxTopLogprobs);
  t.device().download(dt, 0, std::as_writable_bytes(std::span<ops::TopLogprob>(top)));
  return {download_u32(t, di, nrows), t.download_floats(dlp, nrows), std::move(top)};
}

std::vector<float> normal_logits(std::mt19937& rng, std::size_t n, float sigma, bool ties) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  // Quantized logits repeat exactly: ties at every threshold, and in the greedy winner.
  for (float& x : v) x = ties ? std::round(d(rng) * 2.0f) / 2.0f : d(rng);
  return v;
}

enum class Kind { greedy, temperature, top_k, top_p, min_p, combined, top_k_one, count_ };

const char* kind_name(Kind k) {
  constexpr const char* names[] = {"greedy",  "temperature", "top_k",    "top_p",
                                   "min_p",   "combined",    "top_k_one"};
  return names[static_cast<int>(k)];
}

ops::SamplingRow random_row(std::mt19937& rng, Kind kind, std::uint32_t ncols) {
  std::uniform_real_distribution<float> uf(0.0f, 1.0f);
  auto k_in = [&](std::uint32_t lo, std::uint32_t hi) {
    return std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng);
  };
  ops::SamplingRow r;
  r.temperature = 0.3f + 1.2f * uf(rng);
  r.seed_lo = static_cast<std::uint32_t>(rng());
  r.seed_hi = static_cast<std::uint32_t>(rng());
  r.counter = k_in(0, 5000);
  const std::uint32_t kmax = std::max<std::uint32_t>(1, std::min<std::uint32_t>(ncols, 200));
  switch (kind) {
    case Kind::greedy: r.temperature = uf(rng) < 0.5f ? 0.0f : -1.0f; break;
    case Kind::temperature: break;
    case Kind::top_k: r.top_k = k_in(1, kmax); break;
    case Kind::top_p: r.top_p = 0.05f + 0.9f * uf(rng); break;
    case Kind::min_p: r.min_p = 0.02f + 0.5f * uf(rng); break;
    case Kind::combined:
      // Half of them with a k past the 1024 survivors the sampler gathers for top-p.
      r.top_k = k_in(1, rng() % 2 ? kmax : std::max(kmax, std::min<std::uint32_t>(ncols, 3000)));
      r.top_p = 0.3f + 0.65f * uf(rng);
      r.min_p = 0.01f + 0.1f * uf(rng);
      break;
    case Kind::top_k_one: r.top_k = 1; break;
    case Kind::count_: break;
  }
  return r;
}

// Penalties for about half the rows: distinct tokens, counts 0..5 (0: not generated), seen or
// not (the repetition penalty; unseen with count 0: a logit bias only), a logit bias on about a
// third of them.
std::vector<ops::PenaltyEntry> random_penalties(std::mt19937& rng, ops::SamplingRow& r,
                                                std::uint32_t ncols, std::uint32_t offset) {
  std::vector<ops::PenaltyEntry> out;
  r.penalty_offset = offset;
  if (rng() % 2 == 0) return out;
  std::uniform_real_distribution<float> uf(0.0f, 1.0f);
  r.repetition_penalty = 1.0f + 0.6f * uf(rng);
  r.presence_penalty = 0.8f * uf(rng);
  r.frequency_penalty = 0.4f * uf(rng);
  std::vector<std::uint32_t> tokens(ncols);
  std::iota(tokens.begin(), tokens.end(), 0u);
  std::shuffle(tokens.begin(), tokens.end(), rng);
  // The greedy winner is often among them, so penalties change the answer.
  tokens.resize(std::min<std::size_t>(ncols, 1 + rng() % 300));
  for (std::uint32_t tok : tokens) {
    const float bias = rng() % 3 == 0 ? 8.0f * (uf(rng) - 0.5f) : 0.0f;
    const std::uint32_t count = static_cast<std::uint32_t>(rng() % 6);
    out.push_back({tok, count, bias, count > 0 || rng() % 2 == 0 ? 1u : 0u});
  }
  r.penalty_count = static_cast<std::uint32_t>(out.size());
  return out;
}

// A grammar's mask for about half the rows (constrained decoding): a few, half or almost all
// tokens allowed, at least one.
void random_mask(std::mt19937& rng, ops::SamplingRow& r, std::uint32_t ncols, std::vector<std::uint32_t>& masks) {
  if (rng() % 2 == 0) return;
  const double density = std::array{0.002, 0.5, 0.98}[rng() % 3];
  std::bernoulli_distribution allowed(density);
  r.mask_offset = static_cast<std::uint32_t>(masks.size());
  std::vector<std::uint32_t> words((ncols + 31) / 32, 0);
  for (std::uint32_t c = 0; c < ncols; ++c) {
    if (allowed(rng)) words[c / 32] |= 1u << (c % 32);
  }
  const std::uint32_t one = static_cast<std::uint32_t>(rng() % ncols);
  words[one / 32] |= 1u << (one % 32);
  masks.insert(masks.end(), words.begin(), words.end());
}

}  // namespace

TEST_CASE_FIXTURE(DeviceTest, "argmax matches the reference, ties take the lowest index") {
  for (std::uint32_t ncols : {1u, 7u, 4097u, 151936u}) {
    for (std::uint32_t nrows = 1; nrows <= 5; ++nrows) {
      if (ncols == 151936u && nrows % 2 == 0) continue;  // keep lavapipe time down
      CAPTURE(ncols);
      CAPTURE(nrows);
      auto x = ref::random_floats(rng(), std::size_t(ncols) * nrows, -5, 5);
      for (std::uint32_t r = 0; r < nrows; ++r) {
        float* row = x.data() + std::size_t(r) * ncols;
        if (r % 3 == 1) {
          // The largest value repeated at scattered places, the first occurrence anywhere.
          const float m = *std::max_element(row, row + ncols) + 1.0f;
          for (int i = 0; i < 4; ++i) row[rng()() % ncols] = m;
        } else if (r % 3 == 2) {
          for (std::uint32_t c = 0; c < ncols; ++c) row[c] = std::floor(row[c]);  // many ties
        }
      }
      auto dx = upload_floats(x, "logits");
      auto dids = poisoned_floats(nrows, "ids");
      auto cs = device().command_stream();
      cs.begin();
      ops::record_argmax(kernels(), cs, dx, dids, nrows, ncols);
      cs.end();
      cs.submit_and_wait();
      const auto ids = download_u32(*this, dids, nrows);
      for (std::uint32_t r = 0; r < nrows; ++r) {
        CAPTURE(r);
        CHECK(ids[r] == ref::argmax({x.data() + std::size_t(r) * ncols, ncols}));
      }
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "sampler matches the reference row by row, logprobs included") {
  struct Shape {
    std::uint32_t ncols, nrows, dispatches;
  };
  std::size_t checked = 0, skipped = 0;
  // Vocabularies of a tiny model (512), Llama 2 (32000) and Qwen2 (151936) with every kind of
  // row (7 kinds) in each, plus odd sizes; in the device's slices and in slices of 512 columns
  // (many slices, short ones with fewer values than the candidates they may keep).
  for (const std::uint32_t slice_cols : {0u, 512u})
  for (const Shape s : {Shape{7, 14, 3}, Shape{100, 14, 4}, Shape{512, 14, 2}, Shape{4097, 14, 6},
                        Shape{32000, 7, 2}, Shape{151936, 7, 1}}) {
    for (std::uint32_t d = 0; d < s.dispatches; ++d) {
      CAPTURE(slice_cols);
      CAPTURE(s.ncols);
      const bool ties = d % 2 == 1;
      const auto logits = normal_logits(rng(), std::size_t(s.ncols) * s.nrows, 2.0f, ties);
      std::vector<ops::SamplingRow> rows;
      std::vector<ops::PenaltyEntry> pen;
      std::vector<std::uint32_t> masks;
      std::vector<Kind> kinds;
      for (std::uint32_t r = 0; r < s.nrows; ++r) {
        // Every kind in every dispatch, next to each other.
        const auto kind = static_cast<Kind>((r + d) % static_cast<int>(Kind::count_));
        auto row = random_row(rng(), kind, s.ncols);
        const auto p = random_penalties(rng(), row, s.ncols, std::uint32_t(pen.size()));
        pen.insert(pen.end(), p.begin(), p.end());
        random_mask(rng(), row, s.ncols, masks);
        rows.push_back(row);
        kinds.push_back(kind);
      }
      const auto out = run_sample(*this, logits, rows, pen, s.ncols, slice_cols, masks);
      for (std::uint32_t r = 0; r < s.nrows; ++r) {
        const std::span<const float> lr(logits.data() + std::size_t(r) * s.ncols, s.ncols);
        const std::span<const ops::PenaltyEntry> pr(pen.data() + rows[r].penalty_offset,
                                                    rows[r].penalty_count);
        std::span<const std::uint32_t> mr;
        if (rows[r].mask_offset != ops::kNoMask) mr = std::span(masks).subspan(rows[r].mask_offset, (s.ncols + 31) / 32);
        const auto want = ref::sample_row(lr, rows[r], pr, mr);
        if (!mr.empty()) CHECK(((mr[out.ids[r] / 32] >> (out.ids[r] % 32)) & 1u) == 1u);  // never a masked token
        CAPTURE(r);
        const std::string kind = kind_name(kinds[r]);
        CAPTURE(kind);
        CAPTURE(rows[r].temperature);
        CAPTURE(rows[r].top_k);
        CAPTURE(rows[r].top_p);
        CAPTURE(rows[r].min_p);
        CAPTURE(rows[r].penalty_count);
        REQUIRE(out.ids[r] < s.ncols);
        // The logprob of whatever the device chose, under the raw softmax.
        CHECK(std::abs(out.logprobs[r] - ref::log_softmax_at(lr, out.ids[r])) <
              kLogprobTolerance);
        if (want.ambiguous) {
          ++skipped;
          continue;
        }
        ++checked;
        CHECK(out.ids[r] == want.id);
        if (kinds[r] == Kind::top_k_one && !ties) {
          // top_k = 1 is greedy, whatever the temperature and the draw (with a unique largest
          // logit: top_k keeps every tie of the k-th value).
          auto greedy = rows[r];
          greedy.temperature = 0;
          const auto g = ref::sample_row(lr, greedy, pr, mr);
          if (!g.ambiguous) CHECK(out.ids[r] == g.id);
        }
      }
    }
  }
  MESSAGE(checked << " rows compared, " << skipped << " skipped as within "
                  << ref::kSampleTolerance << " of a decision boundary");
  // Only that the comparison is not vacuous: the dispatches with tied logits put about 7.5% of
  // the rows on a boundary (30 to 44 of 462 over seeds), so a bound of 10% failed now and then.
  CHECK(skipped * 5 <= checked);
}

TEST_CASE_FIXTURE(DeviceTest, "top logprobs match the reference: ids exact, ties by lower id") {
  // Every kind of draw next to rows asking N in {0, 1, 5, 20}: the list is over the raw logits,
  // whatever the row's own filters and penalties do.
  constexpr std::uint32_t kNs[] = {0, 1, 5, 20};
  const auto kPoison = std::bit_cast<std::uint32_t>(std::numeric_limits<float>::quiet_NaN());
  struct Shape {
    std::uint32_t ncols, nrows, dispatches;
  };
  std::size_t lists = 0;
  for (const std::uint32_t slice_cols : {0u, 512u})
  for (const Shape s : {Shape{7, 16, 2}, Shape{100, 16, 2}, Shape{4097, 16, 2},
                        Shape{151936, 4, 1}}) {
    for (std::uint32_t d = 0; d < s.dispatches; ++d) {
      CAPTURE(slice_cols);
      CAPTURE(s.ncols);
      const bool ties = d % 2 == 1 || s.ncols == 151936;
      auto logits = normal_logits(rng(), std::size_t(s.ncols) * s.nrows, 2.0f, ties);
      std::vector<ops::SamplingRow> rows;
      std::vector<ops::PenaltyEntry> pen;
      for (std::uint32_t r = 0; r < s.nrows; ++r) {
        const auto kind = static_cast<Kind>((r + d) % static_cast<int>(Kind::count_));
        auto row = random_row(rng(), kind, s.ncols);
        const auto p = random_penalties(rng(), row, s.ncols, std::uint32_t(pen.size()));
        pen.insert(pen.end(), p.begin(), p.end());
        row.top_logprobs = kNs[(r + d) % 4];
        rows.push_back(row);
      }
      if (s.ncols == 7) {
        // A row with 3 non-NaN values asking 5: the list ends early. (Its logprobs are NaN.)
        rows[3].top_logprobs = 5;
        for (std::uint32_t c = 0; c < 7; ++c) {
          if (c % 2 == 0) logits[3 * 7 + c] = std::numeric_limits<float>::quiet_NaN();
        }
      }
      const auto out = run_sample(*this, logits, rows, pen, s.ncols, slice_cols);
      for (std::uint32_t r = 0; r < s.nrows; ++r) {
        CAPTURE(r);
        CAPTURE(rows[r].temperature);
        CAPTURE(rows[r].top_logprobs);
        const std::span<const float> lr(logits.data() + std::size_t(r) * s.ncols, s.ncols);
        const auto want = ref::top_logprobs(lr, rows[r].top_logprobs);
        const ops::TopLogprob* got = out.top.data() + std::size_t(r) * ops::kMaxTopLogprobs;
        const bool has_nan = std::any_of(lr.begin(), lr.end(), [](float v) { return std::isnan(v); });
        for (std::uint32_t j = 0; j < want.size(); ++j) {
          CAPTURE(j);
          REQUIRE(got[j].token == want[j].token);
          if (has_nan) continue;
          CHECK(std::abs(got[j].logprob - want[j].logprob) <=
                1e-5 * std::max(1.0, std::abs(want[j].logprob)));
          // The chosen token's entry is the chosen token's logprob, same expression.
          if (got[j].token == out.ids[r]) CHECK(got[j].logprob == out.logprobs[r]);
        }
        std::uint32_t end = static_cast<std::uint32_t>(want.size());
        if (end < rows[r].top_logprobs) CHECK(got[end++].token == ops::kNoTopToken);
        // Only what the row asked is written.
        for (std::uint32_t j = end; j < ops::kMaxTopLogprobs; ++j) {
          CAPTURE(j);
          CHECK(got[j].token == kPoison);
        }
        lists += rows[r].top_logprobs > 0;
      }
    }
  }
  MESSAGE(lists << " top lists compared");
}

TEST_CASE_FIXTURE(DeviceTest, "sample_uniform: the device's draw equals the host's bit for bit") {
  // Through a probe variant that writes u itself: every bit of the 24.
  const std::uint32_t nrows = 1024;
  std::vector<ops::SamplingRow> rows(nrows);
  for (std::uint32_t r = 0; r < nrows; ++r) {
    rows[r].seed_lo = static_cast<std::uint32_t>(rng()());
    rows[r].seed_hi = r % 4 == 0 ? 0u : static_cast<std::uint32_t>(rng()());
    rows[r].counter = r % 2 == 0 ? r : static_cast<std::uint32_t>(rng()());
  }
  auto dr = upload(*this, rows, "rows");
  auto dummy = upload_floats(std::vector<float>(4, 0.0f), "unused");
  auto di = poisoned_floats(nrows, "ids");
  auto du = poisoned_floats(nrows, "u");
  const auto& p = kernels().pipeline(shaders::ShaderId::sample_uniform_probe, 6,
                                     sizeof(ops::PushSample), {64});
  auto cs = device().command_stream();
  cs.begin();
  cs.dispatch(p,
              {{dummy, platform::Access::read},
               {dr, platform::Access::read},
               {dummy, platform::Access::read},
               {dummy, platform::Access::read},
               {di, platform::Access::write},
               {du, platform::Access::write}},
              ops::PushSample{1, nrows}, {nrows, 1, 1}, "sample_uniform_probe");
  cs.end();
  cs.submit_and_wait();
  const auto u = download_u32(*this, du, nrows);
  std::set<std::uint32_t> distinct;
  for (std::uint32_t r = 0; r < nrows; ++r) {
    CAPTURE(r);
    const float host = ops::sample_uniform(rows[r].seed_lo, rows[r].seed_hi, rows[r].counter);
    CHECK(u[r] == std::bit_cast<std::uint32_t>(host));
    CHECK(host >= 0.0f);
    CHECK(host < 1.0f);
    distinct.insert(u[r]);
  }
  CHECK(distinct.size() > nrows - 4);
}

TEST_CASE_FIXTURE(DeviceTest, "sampler draws are reproducible and follow the counter") {
  // Flat rows of 4096 equal logits: every p is 1/4096 exactly and every sum is exact, so the
  // sampler must pick floor(u * 4096), the top 12 bits of the host's u.
  {
    const std::uint32_t ncols = 4096, nrows = 128;
    std::vector<ops::SamplingRow> rows(nrows);
    for (std::uint32_t r = 0; r < nrows; ++r) {
      rows[r].temperature = 1.0f;
      rows[r].seed_lo = static_cast<std::uint32_t>(rng()());
      rows[r].counter = r;
    }
    const auto out = run_sample(*this, std::vector<float>(std::size_t(ncols) * nrows, 0.5f),
                                rows, {}, ncols);
    for (std::uint32_t r = 0; r < nrows; ++r) {
      CAPTURE(r);
      const float u = ops::sample_uniform(rows[r].seed_lo, rows[r].seed_hi, rows[r].counter);
      CHECK(out.ids[r] == static_cast<std::uint32_t>(u * 4096.0f));
    }
  }
  // Same seed and counter: the same id, across rows and dispatches. Different counters: the
  // stream varies.
  const std::uint32_t ncols = 1000, nrows = 64;
  const auto row_logits = ref::random_floats(rng(), ncols, -1, 1);
  std::vector<float> logits;
  for (std::uint32_t r = 0; r < nrows; ++r) {
    logits.insert(logits.end(), row_logits.begin(), row_logits.end());
  }
  ops::SamplingRow base;
  base.temperature = 1.0f;
  base.top_p = 0.95f;
  base.seed_lo = 1234;
  base.seed_hi = 99;
  base.counter = 17;
  std::vector<ops::SamplingRow> same(nrows, base), stream(nrows, base), reseeded(nrows, base);
  for (std::uint32_t r = 0; r < nrows; ++r) {
    stream[r].counter = r;
    reseeded[r].counter = r;
    reseeded[r].seed_lo = 4321;
  }
  const auto a = run_sample(*this, logits, same, {}, ncols);
  const auto b = run_sample(*this, logits, same, {}, ncols);
  CHECK(std::set<std::uint32_t>(a.ids.begin(), a.ids.end()).size() == 1);
  CHECK(a.ids == b.ids);
  const auto s1 = run_sample(*this, logits, stream, {}, ncols);
  const auto s2 = run_sample(*this, logits, stream, {}, ncols);
  const auto s3 = run_sample(*this, logits, reseeded, {}, ncols);
  CHECK(s1.ids == s2.ids);
  CHECK(std::set<std::uint32_t>(s1.ids.begin(), s1.ids.end()).size() >= nrows / 2);
  std::size_t equal = 0;
  for (std::uint32_t r = 0; r < nrows; ++r) equal += s1.ids[r] == s3.ids[r];
  CHECK(equal < nrows / 4);
}

TEST_CASE_FIXTURE(DeviceTest, "sampler draws follow the softmax (chi-square), top-k renormalized") {
  // 16 tokens, 20,480 draws (one row per counter), Pearson's chi-square against the expected
  // counts at p = 0.001. Critical values: chi2(15) = 37.697, chi2(3) = 16.266.
  const std::uint32_t ncols = 16, nrows = 20480;
  const auto row_logits = ref::random_floats(rng(), ncols, -2, 2);
  std::vector<float> logits;
  logits.reserve(std::size_t(ncols) * nrows);
  for (std::uint32_t r = 0; r < nrows; ++r) {
    logits.insert(logits.end(), row_logits.begin(), row_logits.end());
  }
  std::vector<double> p(ncols);
  for (std::uint32_t c = 0; c < ncols; ++c) p[c] = std::exp(ref::log_softmax_at(row_logits, c));

  struct Case {
    std::uint32_t top_k;
    double critical;
  };
  for (const Case cs : {Case{0, 37.697}, Case{4, 16.266}}) {
    CAPTURE(cs.top_k);
    std::vector<ops::SamplingRow> rows(nrows);
    const auto seed = static_cast<std::uint32_t>(rng()());
    for (std::uint32_t r = 0; r < nrows; ++r) {
      rows[r].temperature = 1.0f;
      rows[r].top_k = cs.top_k;
      rows[r].seed_lo = seed;
      rows[r].counter = r;
    }
    const auto out = run_sample(*this, logits, rows, {}, ncols);
    std::vector<double> counts(ncols, 0.0);
    for (std::uint32_t id : out.ids) {
      REQUIRE(id < ncols);
      counts[id] += 1;
    }
    // The expected distribution: the softmax, restricted to the top k and renormalized.
    std::vector<double> q = p;
    if (cs.top_k > 0) {
      std::vector<double> sorted = p;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      const double thr = sorted[cs.top_k - 1];
      for (double& v : q) v = v >= thr ? v : 0.0;
    }
    const double qsum = std::accumulate(q.begin(), q.end(), 0.0);
    double chi2 = 0;
    for (std::uint32_t c = 0; c < ncols; ++c) {
      CAPTURE(c);
      if (q[c] == 0) {
        CHECK(counts[c] == 0);  // filtered tokens never appear
        continue;
      }
      const double expected = nrows * q[c] / qsum;
      chi2 += (counts[c] - expected) * (counts[c] - expected) / expected;
    }
    MESSAGE("top_k " << cs.top_k << ": chi-square " << chi2 << " (critical " << cs.critical
                     << ")");
    CHECK(chi2 < cs.critical);
  }
}

TEST_CASE_FIXTURE(DeviceTest, "sampler paths over slices: candidates, the landing slice, the whole row") {
  // Rows of 3 full slices of 4096 columns and a short one, each scenario built to take one path
  // of the finishing phase (engine/ops/sample.hpp), every one against the reference with many
  // draws.
  static_assert(ops::kSampleMinSliceCols == 4096);
  const std::uint32_t ncols = 3 * 4096 + 37;
  struct Scenario {
    const char* name;
    float sigma;        // spread of the logits
    float temperature;
    std::uint32_t top_k;
    float top_p;
    float min_p;
    int layout;  // 0: normal; 1: a slice of equal logits on top; 2: mass in the short slice;
                 // 3: one slice all -inf; 4: the survivors in one slice; 5: 1500 live
                 // logits in one slice, the rest far below
  };
  const Scenario scenarios[] = {
      {"top-k at the candidate cap", 2.0f, 1.0f, 128, 1.0f, 0.0f, 0},
      {"top-k past the candidate cap", 2.0f, 1.0f, 129, 1.0f, 0.0f, 0},
      {"top-k 40, top-p 0.95, min-p 0.05 (the defaults)", 2.0f, 0.8f, 40, 0.95f, 0.05f, 0},
      {"top-p over a peaked row (candidates hold the mass)", 6.0f, 0.7f, 0, 0.9f, 0.0f, 0},
      {"top-p over a flat slice (the mass past the candidates)", 1.0f, 1.0f, 0, 0.9f, 0.0f, 5},
      {"min-p alone", 2.0f, 1.0f, 0, 1.0f, 0.1f, 0},
      {"temperature alone (the landing slice)", 1.0f, 1.0f, 0, 1.0f, 0.0f, 0},
      {"temperature alone, the mass in the short slice", 1.0f, 1.0f, 0, 1.0f, 0.0f, 2},
      {"a slice of ties past its capacity, top-k 5", 0.5f, 1.0f, 5, 1.0f, 0.0f, 1},
      {"a slice of ties, top-p", 0.5f, 1.0f, 0, 0.5f, 0.0f, 1},
      {"a slice all -inf", 2.0f, 1.0f, 0, 0.9f, 0.0f, 3},
      {"top-k survivors all in one slice", 1.0f, 1.0f, 100, 0.9f, 0.0f, 4},
      {"greedy", 2.0f, 0.0f, 0, 1.0f, 0.0f, 4},
  };
  constexpr std::uint32_t kDraws = 12;
  std::size_t checked = 0, skipped = 0;
  for (const auto& sc : scenarios) {
    const std::string name = sc.name;
    CAPTURE(name);
    std::size_t compared = 0;
    std::vector<float> logits;
    std::vector<ops::SamplingRow> rows;
    for (std::uint32_t d = 0; d < kDraws; ++d) {
      auto row = normal_logits(rng(), ncols, sc.sigma, false);
      const float top = *std::max_element(row.begin(), row.end());
      switch (sc.layout) {
        case 1: std::fill(row.begin() + 4096, row.begin() + 2 * 4096, top + 1.0f); break;
        case 2:
          for (std::uint32_t c = 3 * 4096; c < ncols; ++c) row[c] += 6.0f;
          break;
        case 3:
          std::fill(row.begin() + 2 * 4096, row.begin() + 3 * 4096,
                    -std::numeric_limits<float>::infinity());
          break;
        case 4:
          for (std::uint32_t c = 4096; c < 4096 + 300; ++c) row[c] += 8.0f;
          break;
        case 5:
          for (std::uint32_t c = 0; c < ncols; ++c) {
            if (c < 4096 || c >= 4096 + 1500) row[c] = -30.0f;
          }
          break;
        default: break;
      }
      logits.insert(logits.end(), row.begin(), row.end());
      ops::SamplingRow r;
      r.temperature = sc.temperature;
      r.top_k = sc.top_k;
      r.top_p = sc.top_p;
      r.min_p = sc.min_p;
      r.seed_lo = static_cast<std::uint32_t>(rng()());
      r.counter = d;
      rows.push_back(r);
    }
    const auto out = run_sample(*this, logits, rows, {}, ncols, ops::kSampleMinSliceCols);
    for (std::uint32_t r = 0; r < kDraws; ++r) {
      CAPTURE(r);
      const std::span<const float> lr(logits.data() + std::size_t(r) * ncols, ncols);
      const auto want = ref::sample_row(lr, rows[r], {});
      REQUIRE(out.ids[r] < ncols);
      CHECK(std::abs(out.logprobs[r] - ref::log_softmax_at(lr, out.ids[r])) < kLogprobTolerance);
      if (want.ambiguous) {
        ++skipped;
        continue;
      }
      ++compared;
      CHECK(out.ids[r] == want.id);
    }
    CHECK(compared >= kDraws / 4);  // every path compared, not only skipped
    checked += compared;
  }
  MESSAGE(checked << " rows compared, " << skipped << " skipped as ambiguous");
}

TEST_CASE_FIXTURE(DeviceTest, "sampler and argmax reject buffers that are too small") {
  auto logits = upload_floats(std::vector<float>(64, 0.0f), "logits");
  auto small = upload_floats(std::vector<float>(1, 0.0f), "small");
  auto rows = upload(*this, std::vector<ops::SamplingRow>(2), "rows");
  auto pen = upload(*this, std::vector<ops::PenaltyEntry>(1), "penalties");
  auto ids = poisoned_floats(2, "ids");
  auto top = poisoned_floats(ops::sample_top_bytes(2) / 4, "top");
  auto scratch = device().create_buffer(ops::sample_scratch_bytes(2, 32),
                                        platform::MemoryIntent::activations, "scratch");
  auto cs = device().command_stream();
  cs.begin();
  // 2 rows of 32 need their working rows, partials, candidates and top lists in scratch.
  CHECK(ops::sample_scratch_bytes(2, 32) > 2 * 32 * 4);
  CHECK_THROWS_AS(
      ops::record_sample(kernels(), cs, logits, rows, pen, small, ids, ids, top, 2, 32),
      std::logic_error);
  CHECK_THROWS_AS(
      ops::record_sample(kernels(), cs, logits, rows, pen, logits, ids, ids, top, 2, 32),
      std::logic_error);
  // ... and 2 x 20 top entries.
  CHECK_THROWS_AS(
      ops::record_sample(kernels(), cs, logits, rows, pen, scratch, ids, ids, ids, 2, 32),
      std::logic_error);
  CHECK_THROWS_AS(ops::record_argmax(kernels(), cs, logits, small, 2, 32), std::logic_error);
  CHECK_THROWS_AS(ops::record_argmax(kernels(), cs, logits, ids, 2, 33), std::logic_error);
  cs.end();
}
