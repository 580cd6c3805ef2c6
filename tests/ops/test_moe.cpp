// Mixture-of-Experts kernels against CPU references (docs/ARCHITECTURE.md "Mixture of experts"):
// the router's choice and grouping, the grouped expert matmul in every weight type, and the
// weighted sum. Loads are uneven on purpose: one expert gets every token, two get none, and a
// NaN logit and a tie are in the mix. Runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/gguf/quant.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/moe.hpp"
#include "tests/reference/attention_ref.hpp"
#include "tests/reference/quant_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using gguf::TensorType;
using test::DeviceTest;

namespace {

// The host's route: each token's experts by descending logit (ties: the lower expert; NaN never
// before a number), their softmax weights over all experts (or over the chosen ones:
// `chosen_only`, gpt-oss), rescaled to sum to 1 where `norm`.
struct HostRoute {
  std::vector<std::uint32_t> sel;
  std::vector<double> weights;
};
HostRoute host_route(const std::vector<float>& logits, std::uint32_t ntok, std::uint32_t stride,
                     std::uint32_t n_expert, std::uint32_t k, bool norm, bool chosen_only = false) {
  HostRoute r;
  for (std::uint32_t t = 0; t < ntok; ++t) {
    const float* l = logits.data() + std::size_t{t} * stride;
    std::vector<std::uint32_t> order(n_expert);
    std::iota(order.begin(), order.end(), 0u);
    const auto key = [&](std::uint32_t e) { return std::isnan(l[e]) ? -INFINITY : double(l[e]); };
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return key(a) > key(b); });
    double mx = -INFINITY, total = 0, chosen = 0;
    for (std::uint32_t e = 0; e < n_expert; ++e) mx = std::max(mx, key(e));
    for (std::uint32_t e = 0; e < n_expert; ++e) total += std::exp(key(e) - mx);
    std::vector<double> w(k);
    for (std::uint32_t j = 0; j < k; ++j) {
      chosen += w[j] = chosen_only ? std::exp(key(order[j]) - key(order[0])) : std::exp(key(order[j]) - mx) / total;
    }
    for (std::uint32_t j = 0; j < k; ++j) {
      r.sel.push_back(order[j]);
      r.weights.push_back(norm || chosen_only ? w[j] / std::max(chosen, 6.103515625e-5) : w[j]);
    }
  }
  return r;
}

class MoeTest : public DeviceTest {
 public:
  // Router logits [ntok, stride] with uneven loads: expert `all` far ahead for every token,
  // experts in `none` far behind; token 0 ties two experts, token 1 has a NaN.
  std::vector<float> uneven_logits(std::uint32_t ntok, std::uint32_t stride, std::uint32_t n_expert,
                                   std::uint32_t all, std::vector<std::uint32_t> none) {
    std::vector<float> l = ref::random_floats(rng(), std::size_t{ntok} * stride, -2.f, 2.f);
    for (std::uint32_t t = 0; t < ntok; ++t) {
      l[std::size_t{t} * stride + all] = 10.f;
      for (std::uint32_t e : none) l[std::size_t{t} * stride + e] = -10.f;
    }
    // The tie and the NaN on experts of neither kind.
    std::vector<std::uint32_t> free;
    for (std::uint32_t e = 0; e < n_expert; ++e) {
      if (e != all && std::find(none.begin(), none.end(), e) == none.end()) free.push_back(e);
    }
    REQUIRE(free.size() >= 3);
    l[free[0]] = l[free[1]] = 5.f;
    if (ntok > 1) l[stride + free[2]] = std::numeric_limits<float>::quiet_NaN();
    return l;
  }

  // Routes ntok tokens over `n_expert` experts (expert `all` chosen by every token, those in
  // `none` by none), runs the expert matmul of random [n_expert * rows, ncols] weights of `type`
  // over them and returns its NMSE against host_experts. Returns the weight's chunk count too.
  std::pair<double, std::size_t> experts_nmse(const ops::MoeRouteLayout& layout, const platform::Buffer& buf,
                                              TensorType type, std::uint32_t ncols, std::uint32_t rows,
                                              std::uint32_t ntok, std::uint32_t x_div, bool swiglu,
                                              std::uint64_t max_chunk_bytes, std::uint32_t all,
                                              std::vector<std::uint32_t> none) {
    return experts_nmse(layout, buf, type, ncols, rows, ntok, x_div,
                        swiglu ? ops::Epilogue::swiglu : ops::Epilogue::store, max_chunk_bytes, all,
                        std::move(none));
  }
  // The same through any epilogue; bias and swiglu_oai with random biases of every expert.
  std::pair<double, std::size_t> experts_nmse(const ops::MoeRouteLayout& layout, const platform::Buffer& buf,
                                              TensorType type, std::uint32_t ncols, std::uint32_t rows,
                                              std::uint32_t ntok, std::uint32_t x_div, ops::Epilogue epilogue,
                                              std::uint64_t max_chunk_bytes, std::uint32_t all,
                                              std::vector<std::uint32_t> none);

  // Runs the router; returns the route buffer's words.
  std::vector<std::uint32_t> route(const ops::MoeRouteLayout& layout, const platform::Buffer& logits,
                                   std::uint32_t stride, const platform::Buffer& buf,
                                   std::uint32_t ntok, bool norm,
                                   ops::MoeGating gating = ops::MoeGating::softmax) {
    auto cs = device().command_stream();
    cs.begin();
    ops::record_moe_route(kernels(), cs, layout, logits, stride, buf, ntok, gating, norm);
    cs.end();
    cs.submit_and_wait();
    std::vector<std::uint32_t> words(layout.bytes / 4);
    device().download(buf, 0, std::as_writable_bytes(std::span(words)));
    return words;
  }
};

}  // namespace

TEST_CASE_FIXTURE(MoeTest, "moe route: top-k, softmax weights and the pairs grouped by expert, uneven loads") {
  for (const std::uint32_t n_expert : {8u, 60u}) {
    for (const std::uint32_t k : {1u, 2u, 4u}) {
      for (const std::uint32_t ntok : {1u, 7u, 37u}) {
        // norm off, on, and gpt-oss's softmax over the chosen logits alone.
        for (const int rule : {0, 1, 2}) {
          const bool norm = rule == 1;
          const bool chosen_only = rule == 2;
          CAPTURE(n_expert);
          CAPTURE(k);
          CAPTURE(ntok);
          CAPTURE(rule);
          const std::uint32_t stride = n_expert + 1;  // a shared-expert gate column after them
          const auto layout = ops::moe_route_layout(40, n_expert, k);
          const auto logits = uneven_logits(ntok, stride, n_expert, 3, {5, 6});
          auto dl = upload_floats(logits, "logits");
          auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
          const auto words = route(layout, dl, stride, buf, ntok, norm,
                                   chosen_only ? ops::MoeGating::softmax_chosen : ops::MoeGating::softmax);
          const HostRoute want = host_route(logits, ntok, stride, n_expert, k, norm, chosen_only);
          const std::uint32_t pairs = ntok * k;
          for (std::uint32_t p = 0; p < pairs; ++p) {
            CAPTURE(p);
            REQUIRE(words[layout.sel + p] == want.sel[p]);
            float w;
            std::memcpy(&w, &words[layout.weights + p], 4);
            CHECK(std::abs(w - want.weights[p]) <= 1e-6 * std::max(1.0, want.weights[p]));
          }
          // Grouping: counts, exclusive offsets, each expert's pairs ascending, the experts with
          // any pair ascending.
          std::uint32_t offset = 0;
          std::vector<std::uint32_t> active;
          for (std::uint32_t e = 0; e < n_expert; ++e) {
            CAPTURE(e);
            std::vector<std::uint32_t> mine;
            for (std::uint32_t p = 0; p < pairs; ++p) {
              if (want.sel[p] == e) mine.push_back(p);
            }
            if (!mine.empty()) active.push_back(e);
            CHECK(words[layout.counts + e] == mine.size());
            CHECK(words[layout.offsets + e] == offset);
            for (std::size_t i = 0; i < mine.size(); ++i) CHECK(words[layout.entries + offset + i] == mine[i]);
            offset += static_cast<std::uint32_t>(mine.size());
          }
          REQUIRE(words[layout.n_active] == active.size());
          for (std::size_t i = 0; i < active.size(); ++i) CHECK(words[layout.active_experts + i] == active[i]);
          CHECK(words[layout.counts + 3] == ntok);  // every token chose expert 3
          CHECK(words[layout.counts + 5] == 0);
          CHECK(words[layout.counts + 6] == 0);
        }
      }
    }
  }
}

namespace {

// The expert matmul of pairs routed as `sel`: y[p, n] = sum_c W[sel[p] * rows + n, c] x[p / x_div, c]
// through the epilogue (store; bias: + bias[sel[p] * rows + n]; swiglu: y[p, i] = silu(s_2i)
// s_2i+1; swiglu_oai: each s plus its bias, then ref::swiglu_oai).
std::vector<float> host_experts(const std::vector<float>& w, const std::vector<float>& x,
                                const std::vector<std::uint32_t>& sel, std::uint32_t ncols,
                                std::uint32_t rows, std::uint32_t x_div, ops::Epilogue epilogue,
                                const std::vector<float>& bias) {
  const std::size_t pairs = sel.size();
  const bool swiglu = epilogue == ops::Epilogue::swiglu;
  const bool oai = epilogue == ops::Epilogue::swiglu_oai;
  const std::uint32_t cols = ops::paired(epilogue) ? rows / 2 : rows;
  std::vector<float> y(pairs * cols);
  for (std::size_t p = 0; p < pairs; ++p) {
    std::vector<double> s(rows);
    for (std::uint32_t n = 0; n < rows; ++n) {
      const float* wr = w.data() + (std::size_t{sel[p]} * rows + n) * ncols;
      const float* xr = x.data() + (p / x_div) * ncols;
      double acc = 0;
      for (std::uint32_t c = 0; c < ncols; ++c) acc += double(wr[c]) * xr[c];
      s[n] = acc + (bias.empty() ? 0.0 : bias[std::size_t{sel[p]} * rows + n]);
    }
    for (std::uint32_t i = 0; i < cols; ++i) {
      y[p * cols + i] = static_cast<float>(swiglu ? s[2 * i] / (1.0 + std::exp(-s[2 * i])) * s[2 * i + 1]
                                           : oai  ? ref::swiglu_oai(s[2 * i], s[2 * i + 1])
                                                  : s[i]);
    }
  }
  return y;
}

}  // namespace

std::pair<double, std::size_t> MoeTest::experts_nmse(const ops::MoeRouteLayout& layout, const platform::Buffer& buf,
                                                     TensorType type, std::uint32_t ncols, std::uint32_t rows,
                                                     std::uint32_t ntok, std::uint32_t x_div, ops::Epilogue epilogue,
                                                     std::uint64_t max_chunk_bytes, std::uint32_t all,
                                                     std::vector<std::uint32_t> none) {
  const std::uint32_t n_expert = layout.n_expert, k = layout.n_used;
  const auto logits = uneven_logits(ntok, n_expert, n_expert, all, std::move(none));
  auto dl = upload_floats(logits, "logits");
  const auto words = route(layout, dl, n_expert, buf, ntok, true);
  const std::vector<std::uint32_t> sel(words.begin() + layout.sel, words.begin() + layout.sel + ntok * k);
  const ref::QuantizedWeights q = ref::random_quantized(rng(), type, ncols, n_expert * rows);
  const ops::DeviceWeight w = ops::DeviceWeight::upload(
      device(), type, ncols, n_expert * rows, std::as_bytes(std::span<const std::uint8_t>(q.bytes)),
      "experts", max_chunk_bytes, rows);
  const auto x = ref::random_floats(rng(), std::size_t{ntok * k / x_div} * ncols);
  // Biases of a few units: with sums of about as many, swiglu_oai's clamps at 7 bite.
  std::vector<float> bias;
  if (epilogue == ops::Epilogue::bias || epilogue == ops::Epilogue::swiglu_oai) {
    bias = ref::random_floats(rng(), std::size_t{n_expert} * rows, -8.f, 8.f);
  }
  const auto expected = host_experts(q.values, x, sel, ncols, rows, x_div, epilogue, bias);
  auto dx = upload_floats(x, "x");
  auto dbias = upload_floats(bias.empty() ? std::vector<float>{0.f} : bias, "bias");
  auto dy = poisoned_floats(expected.size(), "y");
  auto cs = device().command_stream();
  cs.begin();
  ops::record_matmul_experts(kernels(), cs, w.view(), rows, layout, buf, dx, x_div, dy, ntok,
                             epilogue, bias.empty() ? platform::BufferSpan() : platform::BufferSpan(dbias));
  cs.end();
  cs.submit_and_wait();
  return {ref::nmse(download_floats(dy, expected.size()), expected), w.view().chunks.size()};
}

TEST_CASE_FIXTURE(MoeTest, "moe expert matmul: weight types of every row size against the reference, one expert with every token, two with none") {
  const auto layout = ops::moe_route_layout(16, 6, 2);
  auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
  // The expert matmul is matmul.comp's GEMV with an expert's base row: its decoding of each type
  // is test_matmul's. What is its own is the addressing, so one type of each kind of row size:
  // 4-byte (f32), 2-byte (bf16), blocks of 34, 18, 17 and 136 bytes (q8_0, q4_0, mxfp4,
  // iq4_xs: expert bases at odd bytes and at 2 mod 4) and super-blocks of 144 and 110 (q4_k,
  // q3_k). Each type is two pipelines that lavapipe compiles in seconds, every type was minutes.
  // 8-token tiles; the decode tile (1 token, another pipeline of the same decoding) at a float
  // type, a 32-block, a 256-block type and MXFP4.
  for (TensorType type : {TensorType::kF32, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0,
                          TensorType::kMXFP4, TensorType::kIQ4_XS, TensorType::kQ4_K, TensorType::kQ3_K}) {
    const std::uint32_t block = gguf::traits(type).block_size;
    const std::uint32_t ncols = block == 1 ? 35 : block == 32 ? 96 : 256;
    const bool decode = type == TensorType::kF32 || type == TensorType::kQ4_0 ||
                        type == TensorType::kQ4_K || type == TensorType::kMXFP4;
    for (std::uint32_t ntok : {1u, 13u}) {
      if (ntok == 1 && !decode) continue;
      CAPTURE(gguf::type_name(type));
      CAPTURE(ntok);
      // gate/up-like: x holds the tokens; down-like: x holds the pairs, with a swiglu epilogue.
      CHECK(experts_nmse(layout, buf, type, ncols, 37, ntok, 2, false, 0, 0, {4, 5}).first < 5e-4);
      CHECK(experts_nmse(layout, buf, type, ncols, 38, ntok, 1, true, 0, 0, {4, 5}).first < 5e-4);
    }
  }
  // Several chunks of whole experts: each dispatch starts at its own first expert.
  const std::uint64_t row_bytes = ops::weight_row_bytes(TensorType::kQ4_K, 256);
  const auto [nmse, chunks] = experts_nmse(layout, buf, TensorType::kQ4_K, 256, 37, 13, 2, false,
                                           2 * 37 * row_bytes + 64, 0, {4, 5});
  CHECK(nmse < 5e-4);
  CHECK(chunks >= 3);
}

TEST_CASE_FIXTURE(MoeTest, "moe expert matmul with gpt-oss's per-expert biases: swiglu_oai and a biased store, GEMV and tiled") {
  // The epilogue is a push constant: the pipelines of the test above, no new compiles.
  const auto layout = ops::moe_route_layout(150, 6, 2);
  auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
  for (const bool tiled : {false, true}) {
    const ops::KernelChoice before = kernels().choice();
    if (tiled) kernels().set_choice(ops::KernelChoice::tiled);
    for (TensorType type : {TensorType::kF32, TensorType::kMXFP4}) {
      const std::uint32_t ncols = type == TensorType::kF32 ? 35 : 96;
      for (std::uint32_t ntok : {1u, 13u, 150u}) {
        if (!tiled && ntok == 150) continue;
        CAPTURE(tiled);
        CAPTURE(gguf::type_name(type));
        CAPTURE(ntok);
        // gate/up-like (x the tokens, swiglu_oai: 37 (gate, up) pairs) and down-like (x the
        // pairs, a bias per expert row).
        CHECK(experts_nmse(layout, buf, type, ncols, 74, ntok, 2, ops::Epilogue::swiglu_oai, 0, 0, {4, 5}).first < 5e-4);
        CHECK(experts_nmse(layout, buf, type, ncols, 37, ntok, 1, ops::Epilogue::bias, 0, 0, {4, 5}).first < 5e-4);
      }
    }
    kernels().set_choice(before);
  }
}

TEST_CASE_FIXTURE(MoeTest, "moe expert matmul in both GEMV layouts: split along K and whole rows per invocation") {
  const auto layout = ops::moe_route_layout(9, 6, 3);
  auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
  for (const bool lane_rows : {false, true}) {
    platform::Tuning t = kernels().tuning();
    t.matvec_lane_rows = lane_rows;
    t.matvec_workgroup = lane_rows ? 8 : 32;
    t.matvec_rows = 3;
    t.matmul_rows = lane_rows ? 1 : 4;
    kernels().set_tuning(t);
    for (TensorType type : {TensorType::kF32, TensorType::kQ4_0, TensorType::kQ4_K}) {
      for (std::uint32_t ntok : {1u, 9u}) {
        CAPTURE(lane_rows);
        CAPTURE(gguf::type_name(type));
        CAPTURE(ntok);
        const std::uint32_t ncols = type == TensorType::kF32 ? 67 : 256;
        CHECK(experts_nmse(layout, buf, type, ncols, 29, ntok, 3, false, 0, 2, {0}).first < 5e-4);
      }
    }
  }
  kernels().set_tuning(std::nullopt);
}

TEST_CASE_FIXTURE(MoeTest, "moe expert matmul, tiled GEMM (prompt steps): types, partial tiles, several tiles of one expert") {
  const ops::KernelChoice before = kernels().choice();
  kernels().set_choice(ops::KernelChoice::tiled);
  const auto layout = ops::moe_route_layout(150, 6, 2);
  auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_K,
                          TensorType::kQ6_K, TensorType::kIQ4_XS, TensorType::kMXFP4}) {
    const std::uint32_t block = gguf::traits(type).block_size;
    const std::uint32_t ncols = block == 1 ? 35 : block == 32 ? 96 : 256;
    // 150 tokens: expert 0 gets all of them (several token tiles), two experts none.
    for (std::uint32_t ntok : {1u, 13u, 150u}) {
      CAPTURE(gguf::type_name(type));
      CAPTURE(ntok);
      CHECK(experts_nmse(layout, buf, type, ncols, 37, ntok, 2, false, 0, 0, {4, 5}).first < 5e-4);
      CHECK(experts_nmse(layout, buf, type, ncols, 70, ntok, 1, true, 0, 0, {4, 5}).first < 5e-4);
    }
  }
  kernels().set_choice(before);
}

TEST_CASE_FIXTURE(MoeTest, "moe combine: the weighted pairs (and a gated shared expert) added to x") {
  constexpr std::uint32_t kExperts = 4, kUsed = 2, kCols = 67;
  for (const bool shared : {false, true}) {
    for (std::uint32_t ntok : {1u, 11u}) {
      CAPTURE(shared);
      CAPTURE(ntok);
      const auto layout = ops::moe_route_layout(ntok, kExperts, kUsed);
      const std::uint32_t stride = kExperts + 1;
      const auto logits = uneven_logits(ntok, stride, kExperts, 1, {});
      auto dl = upload_floats(logits, "logits");
      auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
      const auto words = route(layout, dl, stride, buf, ntok, true);
      const auto x = ref::random_floats(rng(), std::size_t{ntok} * kCols);
      const auto y = ref::random_floats(rng(), std::size_t{ntok} * kUsed * kCols);
      const auto sh = ref::random_floats(rng(), std::size_t{ntok} * kCols);
      std::vector<float> expected = x;
      for (std::uint32_t t = 0; t < ntok; ++t) {
        for (std::uint32_t c = 0; c < kCols; ++c) {
          double s = 0;
          for (std::uint32_t j = 0; j < kUsed; ++j) {
            float w;
            std::memcpy(&w, &words[layout.weights + t * kUsed + j], 4);
            s += double(w) * y[(std::size_t{t} * kUsed + j) * kCols + c];
          }
          if (shared) s += sh[std::size_t{t} * kCols + c] / (1.0 + std::exp(-double(logits[std::size_t{t} * stride + kExperts])));
          expected[std::size_t{t} * kCols + c] += static_cast<float>(s);
        }
      }
      auto dx = upload_floats(x, "x");
      auto dy = upload_floats(y, "y");
      auto dsh = upload_floats(sh, "shared");
      const ops::MoeShared gate{dsh, kExperts};
      auto cs = device().command_stream();
      cs.begin();
      ops::record_moe_combine(kernels(), cs, layout, dx, dy, buf, ntok, kCols, dl, stride, shared ? &gate : nullptr);
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(dx, expected.size()), expected) < 1e-10);
    }
  }
}

TEST_CASE_FIXTURE(MoeTest, "moe: shapes the kernels cannot take are errors") {
  CHECK_THROWS_AS(ops::moe_route_layout(8, 0, 1), std::logic_error);
  CHECK_THROWS_AS(ops::moe_route_layout(8, 4, 5), std::logic_error);
  CHECK_THROWS_AS(ops::moe_route_layout(8, ops::kMaxExperts + 1, 2), std::logic_error);
  const auto layout = ops::moe_route_layout(4, 4, 2);
  auto buf = device().create_buffer(layout.bytes, platform::MemoryIntent::activations, "route");
  const ref::QuantizedWeights q = ref::random_quantized(rng(), TensorType::kQ8_0, 32, 4 * 6);
  const ops::DeviceWeight w = ops::DeviceWeight::upload(
      device(), TensorType::kQ8_0, 32, 4 * 6, std::as_bytes(std::span<const std::uint8_t>(q.bytes)), "experts", 0, 6);
  auto x = poisoned_floats(8 * 32, "x");
  auto y = poisoned_floats(8 * 6, "y");
  auto cs = device().command_stream();
  cs.begin();
  // Rows that are not 4 experts of 5; more tokens than the route holds; x rows of 3 pairs.
  CHECK_THROWS_AS(ops::record_matmul_experts(kernels(), cs, w.view(), 5, layout, buf, x, 2, y, 4), std::logic_error);
  CHECK_THROWS_AS(ops::record_matmul_experts(kernels(), cs, w.view(), 6, layout, buf, x, 2, y, 5), std::logic_error);
  CHECK_THROWS_AS(ops::record_matmul_experts(kernels(), cs, w.view(), 6, layout, buf, x, 3, y, 4), std::logic_error);
  cs.end();
}
