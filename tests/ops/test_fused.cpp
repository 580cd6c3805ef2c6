// Every fused kernel of the step against the unfused sequence it replaces (docs/ARCHITECTURE.md,
// the step): the matmul epilogues (residual add, bias into a slice of a wider row, gate/up with
// SiLU-multiply), QK-norm + RoPE + K/V write in one pass, and RMSNorm spread over workgroups.
// Both sides run on the device with the same inputs; where the fused kernel does the same
// arithmetic in the same order the results must be equal bit for bit. Poisoned outputs, shapes
// that fill no tile, several chunks, padding slots. Runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/gguf/quant.hpp"
#include "engine/ops/attention.hpp"
#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/norm.hpp"
#include "tests/reference/attention_ref.hpp"
#include "tests/reference/quant_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using gguf::TensorType;
using test::DeviceTest;

namespace {

// The epilogues run after the weight decoding, the same code for every type: one float type (its
// tail columns path), one 32-block and one 256-block type. (tests/ops/test_matmul.cpp covers the
// decoding of every type; each type here costs lavapipe a few pipelines to compile.)
constexpr TensorType kTypes[] = {TensorType::kF32, TensorType::kQ4_0, TensorType::kQ4_K};

std::uint32_t cols_for(TensorType type) { return gguf::traits(type).block_size == 256 ? 512 : 96; }

std::span<const std::byte> bytes_of(const std::vector<std::uint8_t>& v) {
  return std::as_bytes(std::span<const std::uint8_t>(v));
}

// Elements that differ by more than a relative `tol` (NaNs must sit at the same places: poisoned
// pool rows that neither side writes).
std::size_t far_apart(const std::vector<float>& a, const std::vector<float>& b, double tol) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      n += std::isnan(a[i]) != std::isnan(b[i]);
    } else {
      n += std::abs(double(a[i]) - b[i]) > tol * std::max(1.0, std::abs(double(b[i])));
    }
  }
  return n;
}

// Number of elements whose bits differ.
std::size_t bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], 4) != 0;
  return n;
}

class FusedTest : public DeviceTest {
 public:
  platform::Buffer u32(const std::vector<std::uint32_t>& v, const char* name) {
    auto b = device().create_buffer(std::max<std::size_t>(v.size(), 1) * 4,
                                    platform::MemoryIntent::activations, name);
    if (!v.empty()) device().upload(b, 0, std::as_bytes(std::span<const std::uint32_t>(v)));
    return b;
  }
  // body() with the device's GEMV layout, then with the other one (shaders/matmul.comp,
  // LANE_ROWS): each has its own epilogue code.
  template <class F>
  void each_gemv_layout(F&& body) {
    for (int pass = 0; pass < 2; ++pass) {
      platform::Tuning t = kernels().tuning();
      if (pass == 1) {
        t.matvec_lane_rows = !t.matvec_lane_rows;
        t.matvec_workgroup = t.matvec_lane_rows ? 8 : 32;
        t.matvec_rows = t.matmul_rows = 2;
        kernels().set_tuning(t);
      }
      CAPTURE(t.matvec_lane_rows);
      body();
    }
    kernels().set_tuning(std::nullopt);
  }
  template <class F>
  void run(F&& record) {
    auto cs = device().command_stream();
    cs.begin();
    record(cs);
    cs.end();
    cs.submit_and_wait();
  }
};

}  // namespace

TEST_CASE_FIXTURE(FusedTest, "matmul += (the residual add) equals matmul then add, bit for bit") {
  each_gemv_layout([&] {
    for (TensorType type : kTypes) {
      for (std::uint32_t nrows : {1u, 7u, 33u}) {
        for (std::uint32_t ntok : {1u, 9u, 17u}) {
          CAPTURE(gguf::type_name(type));
          CAPTURE(nrows);
          CAPTURE(ntok);
          const std::uint32_t ncols = cols_for(type);
          const auto q = ref::random_quantized(rng(), type, ncols, nrows);
          const auto w = ops::DeviceWeight::upload(device(), type, ncols, nrows, bytes_of(q.bytes), "W");
          const auto x = ref::random_floats(rng(), std::size_t{ntok} * ncols);
          const auto res = ref::random_floats(rng(), std::size_t{ntok} * nrows, -4, 4);
          auto dx = upload_floats(x, "x");
          auto fused = upload_floats(res, "residual (fused)");
          auto unfused = upload_floats(res, "residual");
          auto tmp = poisoned_floats(res.size(), "tmp");
          run([&](auto& cs) {
            ops::record_matmul(kernels(), cs, w.view(), dx, fused, ntok, ops::with_epilogue(ops::Epilogue::accumulate));
            ops::record_matmul(kernels(), cs, w.view(), dx, tmp, ntok);
            ops::record_add(kernels(), cs, unfused, tmp, unfused, ntok * nrows);
          });
          CHECK(bit_differences(download_floats(fused, res.size()), download_floats(unfused, res.size())) == 0);
        }
      }
    }
  });
}

TEST_CASE_FIXTURE(FusedTest, "QKV slices with the bias epilogue equal three matmuls and bias adds") {
  each_gemv_layout([&] {
    // q and k of one type share a slice, v of another type is its own (as in Q4_K_M files): both
    // write one [ntok, q + 2 kv] row through y0 and y_stride, the bias indexed by y's column.
    const std::uint32_t ncols = 256, q_rows = 40, kv_rows = 10, stride = q_rows + 2 * kv_rows;
    for (auto [qk_type, v_type] : {std::pair{TensorType::kQ4_K, TensorType::kQ6_K},
                                   std::pair{TensorType::kQ8_0, TensorType::kQ8_0}}) {
      for (std::uint32_t ntok : {1u, 9u, 17u}) {  // 17: the tiled GEMM (ops::choose_matmul)
        CAPTURE(gguf::type_name(qk_type));
        CAPTURE(gguf::type_name(v_type));
        CAPTURE(ntok);
        const auto wq = ref::random_quantized(rng(), qk_type, ncols, q_rows);
        const auto wk = ref::random_quantized(rng(), qk_type, ncols, kv_rows);
        const auto wv = ref::random_quantized(rng(), v_type, ncols, kv_rows);
        std::vector<std::uint8_t> qk_bytes = wq.bytes;
        qk_bytes.insert(qk_bytes.end(), wk.bytes.begin(), wk.bytes.end());
        const auto dqk =
            ops::DeviceWeight::upload(device(), qk_type, ncols, q_rows + kv_rows, bytes_of(qk_bytes), "qk");
        const auto dwq = ops::DeviceWeight::upload(device(), qk_type, ncols, q_rows, bytes_of(wq.bytes), "q");
        const auto dwk = ops::DeviceWeight::upload(device(), qk_type, ncols, kv_rows, bytes_of(wk.bytes), "k");
        const auto dwv = ops::DeviceWeight::upload(device(), v_type, ncols, kv_rows, bytes_of(wv.bytes), "v");
        const auto x = ref::random_floats(rng(), std::size_t{ntok} * ncols);
        const auto bias = ref::random_floats(rng(), stride, -2, 2);
        auto dx = upload_floats(x, "x");
        auto dbias = upload_floats(bias, "bias [q|k|v]");
        auto dbq = upload_floats(std::vector<float>(bias.begin(), bias.begin() + q_rows), "bq");
        auto dbk = upload_floats(std::vector<float>(bias.begin() + q_rows, bias.begin() + q_rows + kv_rows), "bk");
        auto dbv = upload_floats(std::vector<float>(bias.begin() + q_rows + kv_rows, bias.end()), "bv");
        auto qkv = poisoned_floats(std::size_t{ntok} * stride, "qkv");
        auto q = poisoned_floats(std::size_t{ntok} * q_rows, "q");
        auto k = poisoned_floats(std::size_t{ntok} * kv_rows, "k");
        auto v = poisoned_floats(std::size_t{ntok} * kv_rows, "v");
        // One type: q|k|v in one upload and one matmul.
        std::vector<std::uint8_t> all = qk_bytes;
        all.insert(all.end(), wv.bytes.begin(), wv.bytes.end());
        const auto dall = qk_type == v_type
                              ? ops::DeviceWeight::upload(device(), qk_type, ncols, stride, bytes_of(all), "qkv")
                              : ops::DeviceWeight();
        run([&](auto& cs) {
          ops::MatmulOut out{ops::Epilogue::bias, dbias, stride, 0, {}};
          if (qk_type == v_type) {
            ops::record_matmul(kernels(), cs, dall.view(), dx, qkv, ntok, out);
          } else {
            ops::record_matmul(kernels(), cs, dqk.view(), dx, qkv, ntok, out);
            out.y0 = q_rows + kv_rows;
            ops::record_matmul(kernels(), cs, dwv.view(), dx, qkv, ntok, out);
          }
          ops::record_matmul(kernels(), cs, dwq.view(), dx, q, ntok);
          ops::record_add_bias(kernels(), cs, q, dbq, q, q_rows, ntok);
          ops::record_matmul(kernels(), cs, dwk.view(), dx, k, ntok);
          ops::record_add_bias(kernels(), cs, k, dbk, k, kv_rows, ntok);
          ops::record_matmul(kernels(), cs, dwv.view(), dx, v, ntok);
          ops::record_add_bias(kernels(), cs, v, dbv, v, kv_rows, ntok);
        });
        const auto got = download_floats(qkv, std::size_t{ntok} * stride);
        const auto gq = download_floats(q, std::size_t{ntok} * q_rows);
        const auto gk = download_floats(k, std::size_t{ntok} * kv_rows);
        const auto gv = download_floats(v, std::size_t{ntok} * kv_rows);
        std::vector<float> expected;
        for (std::uint32_t t = 0; t < ntok; ++t) {
          expected.insert(expected.end(), gq.begin() + t * q_rows, gq.begin() + (t + 1) * q_rows);
          expected.insert(expected.end(), gk.begin() + t * kv_rows, gk.begin() + (t + 1) * kv_rows);
          expected.insert(expected.end(), gv.begin() + t * kv_rows, gv.begin() + (t + 1) * kv_rows);
        }
        CHECK(bit_differences(got, expected) == 0);
      }
    }
  });
}

TEST_CASE_FIXTURE(FusedTest, "gate/up interleaved with the swiglu (geglu) epilogue equals two matmuls and silu_mul (gelu, mul)") {
  each_gemv_layout([&] {
    for (ops::Epilogue epilogue : {ops::Epilogue::swiglu, ops::Epilogue::geglu})
    for (TensorType type : kTypes) {
      for (std::uint32_t ffn : {1u, 7u, 33u}) {
        for (bool chunked : {false, true}) {
          CAPTURE(gguf::type_name(type));
          CAPTURE(ffn);
          CAPTURE(chunked);
          CAPTURE(epilogue == ops::Epilogue::geglu);
          const std::uint32_t ncols = cols_for(type);
          const std::uint64_t row_bytes = ops::weight_row_bytes(type, ncols);
          const auto g = ref::random_quantized(rng(), type, ncols, ffn);
          const auto u = ref::random_quantized(rng(), type, ncols, ffn);
          std::vector<std::uint8_t> inter(2 * ffn * row_bytes);
          for (std::uint32_t i = 0; i < ffn; ++i) {
            std::memcpy(inter.data() + 2 * i * row_bytes, g.bytes.data() + i * row_bytes, row_bytes);
            std::memcpy(inter.data() + (2 * i + 1) * row_bytes, u.bytes.data() + i * row_bytes, row_bytes);
          }
          // Chunked: 5 rows' worth of bytes a chunk, which row_multiple 2 cuts to 4 (two pairs).
          const auto gu = ops::DeviceWeight::upload(device(), type, ncols, 2 * ffn, bytes_of(inter),
                                                    "gate+up", chunked ? 5 * row_bytes : 0, 2);
          for (const auto& c : gu.view().chunks) CHECK(c.nrows % 2 == 0);
          if (chunked && ffn > 2) CHECK(gu.view().chunks.size() > 1);
          const auto dg = ops::DeviceWeight::upload(device(), type, ncols, ffn, bytes_of(g.bytes), "gate");
          const auto du = ops::DeviceWeight::upload(device(), type, ncols, ffn, bytes_of(u.bytes), "up");
          for (std::uint32_t ntok : {1u, 9u, 17u}) {  // 17: the tiled GEMM (ops::choose_matmul)
            CAPTURE(ntok);
            // Large inputs: silu's exp sees arguments past +-88.
            const auto x = ref::random_floats(rng(), std::size_t{ntok} * ncols, -3, 3);
            auto dx = upload_floats(x, "x");
            auto fused = poisoned_floats(std::size_t{ntok} * ffn, "fused");
            auto gate = poisoned_floats(std::size_t{ntok} * ffn, "gate");
            auto up = poisoned_floats(std::size_t{ntok} * ffn, "up");
            run([&](auto& cs) {
              ops::record_matmul(kernels(), cs, gu.view(), dx, fused, ntok, ops::with_epilogue(epilogue));
              ops::record_matmul(kernels(), cs, dg.view(), dx, gate, ntok);
              ops::record_matmul(kernels(), cs, du.view(), dx, up, ntok);
              if (epilogue == ops::Epilogue::geglu) {
                ops::record_gelu(kernels(), cs, gate, gate, ntok * ffn);
                ops::record_mul(kernels(), cs, gate, up, gate, ntok * ffn);
              } else {
                ops::record_silu_mul(kernels(), cs, gate, up, gate, ntok * ffn);
              }
            });
            CHECK(bit_differences(download_floats(fused, std::size_t{ntok} * ffn),
                                  download_floats(gate, std::size_t{ntok} * ffn)) == 0);
          }
        }
      }
    }
  });
}

TEST_CASE_FIXTURE(FusedTest, "gate/up interleaved with the swiglu_oai epilogue (gpt-oss): its biases, clamps and sigmoid against biased matmuls") {
  each_gemv_layout([&] {
    for (TensorType type : kTypes) {
      for (std::uint32_t ffn : {7u, 33u}) {
        for (bool chunked : {false, true}) {
          CAPTURE(gguf::type_name(type));
          CAPTURE(ffn);
          CAPTURE(chunked);
          const std::uint32_t ncols = cols_for(type);
          const std::uint64_t row_bytes = ops::weight_row_bytes(type, ncols);
          const auto g = ref::random_quantized(rng(), type, ncols, ffn);
          const auto u = ref::random_quantized(rng(), type, ncols, ffn);
          // Biases of a few units beside sums of about as many: the clamps at 7 bite.
          const auto bg = ref::random_floats(rng(), ffn, -8, 8), bu = ref::random_floats(rng(), ffn, -8, 8);
          std::vector<std::uint8_t> inter(2 * ffn * row_bytes);
          std::vector<float> bias(2 * ffn);
          for (std::uint32_t i = 0; i < ffn; ++i) {
            std::memcpy(inter.data() + 2 * i * row_bytes, g.bytes.data() + i * row_bytes, row_bytes);
            std::memcpy(inter.data() + (2 * i + 1) * row_bytes, u.bytes.data() + i * row_bytes, row_bytes);
            bias[2 * i] = bg[i];
            bias[2 * i + 1] = bu[i];
          }
          const auto gu = ops::DeviceWeight::upload(device(), type, ncols, 2 * ffn, bytes_of(inter),
                                                    "gate+up", chunked ? 5 * row_bytes : 0, 2);
          if (chunked) CHECK(gu.view().chunks.size() > 1);
          const auto dg = ops::DeviceWeight::upload(device(), type, ncols, ffn, bytes_of(g.bytes), "gate");
          const auto du = ops::DeviceWeight::upload(device(), type, ncols, ffn, bytes_of(u.bytes), "up");
          auto dbias = upload_floats(bias, "bias"), dbg = upload_floats(bg, "bg"), dbu = upload_floats(bu, "bu");
          for (std::uint32_t ntok : {1u, 9u, 17u}) {  // 17: the tiled GEMM (ops::choose_matmul)
            CAPTURE(ntok);
            const auto x = ref::random_floats(rng(), std::size_t{ntok} * ncols, -3, 3);
            auto dx = upload_floats(x, "x");
            const std::size_t n = std::size_t{ntok} * ffn;
            auto fused = poisoned_floats(n, "fused");
            auto gate = poisoned_floats(n, "gate");
            auto up = poisoned_floats(n, "up");
            run([&](auto& cs) {
              ops::MatmulOut oai = ops::with_epilogue(ops::Epilogue::swiglu_oai);
              oai.bias = dbias;
              ops::record_matmul(kernels(), cs, gu.view(), dx, fused, ntok, oai);
              ops::MatmulOut biased = ops::with_epilogue(ops::Epilogue::bias);
              biased.bias = dbg;
              ops::record_matmul(kernels(), cs, dg.view(), dx, gate, ntok, biased);
              biased.bias = dbu;
              ops::record_matmul(kernels(), cs, du.view(), dx, up, ntok, biased);
            });
            // The same f32 sums and biases; only the activation's f32 against the host's double.
            const auto gs = download_floats(gate, n), us = download_floats(up, n);
            std::vector<float> expected(n);
            std::size_t clamped = 0;
            for (std::size_t i = 0; i < n; ++i) {
              expected[i] = static_cast<float>(ref::swiglu_oai(gs[i], us[i]));
              clamped += gs[i] > 7 || std::abs(us[i]) > 7;
            }
            CHECK(ref::nmse(download_floats(fused, n), expected) < 1e-10);
            if (n >= 63) CHECK(clamped > 0);
          }
        }
      }
    }
  });
}

TEST_CASE_FIXTURE(FusedTest, "rope_kv equals QK-norm, rope on q and k, and kv_write") {
  std::vector<ops::KvType> kv_types{ops::KvType::f32};
  if (kernels().caps().fp16_storage) kv_types.push_back(ops::KvType::f16);
  for (auto style : {ops::RopeStyle::normal, ops::RopeStyle::neox}) {
    for (auto kv_type : kv_types) {
      for (bool qk_norm : {false, true}) {
        // The last: rotary dims (partial rotary, Phi-4-mini: 96 of 128).
        for (auto [n_heads, n_kv, hd, rot] : {std::tuple{4u, 2u, 64u, 64u}, std::tuple{3u, 1u, 128u, 96u},
                                              std::tuple{2u, 2u, 6u, 6u}, std::tuple{4u, 2u, 64u, 16u}}) {
          CAPTURE(style == ops::RopeStyle::neox);
          CAPTURE(kv_type == ops::KvType::f16);
          CAPTURE(qk_norm);
          CAPTURE(hd);
          CAPTURE(rot);
          const bool f16 = kv_type == ops::KvType::f16;
          const std::uint32_t ntok = 5, q_dim = n_heads * hd, kv_dim = n_kv * hd;
          const std::uint32_t stride = q_dim + 2 * kv_dim, slots = 16;
          const auto qkv = ref::random_floats(rng(), std::size_t{ntok} * stride, -2, 2);
          std::vector<float> q_part, k_part, v_part;
          for (std::uint32_t t = 0; t < ntok; ++t) {
            const float* row = qkv.data() + std::size_t{t} * stride;
            q_part.insert(q_part.end(), row, row + q_dim);
            k_part.insert(k_part.end(), row + q_dim, row + q_dim + kv_dim);
            v_part.insert(v_part.end(), row + q_dim + kv_dim, row + stride);
          }
          std::vector<float> inv_freq(rot / 2);
          for (std::uint32_t i = 0; i < rot / 2; ++i) inv_freq[i] = std::pow(10000.f, -2.f * i / rot);
          const std::vector<std::uint32_t> positions = {0, 1, 7, 4000, 131071};
          // Token 3 is padding: no K/V row written anywhere.
          const std::vector<std::uint32_t> slot_map = {3, 0, 15, ~0u, 8};
          const auto qn = ref::random_floats(rng(), hd, 0.5f, 1.5f);
          const auto kn = ref::random_floats(rng(), hd, 0.5f, 1.5f);
          auto dqkv = upload_floats(qkv, "qkv");
          auto dpos = u32(positions, "positions"), dslots = u32(slot_map, "slots");
          auto dfreq = upload_floats(inv_freq, "inv_freq");
          auto dqn = upload_floats(qn, "q_norm"), dkn = upload_floats(kn, "k_norm");
          // Pools start as the same poison on both sides: unwritten rows must stay so.
          const std::size_t pool_floats = std::size_t{slots} * kv_dim;
          auto pool = [&](const char* name) { return poisoned_floats(pool_floats, name); };
          auto kp1 = pool("k_pool fused"), vp1 = pool("v_pool fused");
          auto kp2 = pool("k_pool"), vp2 = pool("v_pool");
          auto q1 = poisoned_floats(q_part.size(), "q fused");
          auto q2 = upload_floats(q_part, "q"), k2 = upload_floats(k_part, "k");
          auto v2 = upload_floats(v_part, "v");
          auto q2n = poisoned_floats(q_part.size(), "q normed");
          auto k2n = poisoned_floats(k_part.size(), "k normed");
          ops::RopeKvShape sh{ntok, n_heads, n_kv, hd, style, kv_type, qk_norm, 1e-6f, rot};
          const float eps = 1e-6f;
          run([&](auto& cs) {
            ops::record_rope_kv(kernels(), cs, sh, dqkv, dpos, dfreq, dslots, q1, kp1, vp1,
                                qk_norm ? platform::BufferSpan(dqn) : platform::BufferSpan{},
                                qk_norm ? platform::BufferSpan(dkn) : platform::BufferSpan{});
            platform::Buffer* qq = &q2;
            platform::Buffer* kk = &k2;
            if (qk_norm) {
              ops::record_rms_norm(kernels(), cs, q2, dqn, q2n, hd, ntok * n_heads, eps);
              ops::record_rms_norm(kernels(), cs, k2, dkn, k2n, hd, ntok * n_kv, eps);
              qq = &q2n;
              kk = &k2n;
            }
            ops::record_rope(kernels(), cs, *qq, dpos, dfreq, ntok, n_heads, hd, style, rot);
            ops::record_rope(kernels(), cs, *kk, dpos, dfreq, ntok, n_kv, hd, style, rot);
            ops::record_kv_write(kernels(), cs, kv_type, *kk, v2, dslots, kp2, vp2, ntok, kv_dim);
          });
          const auto got_q = download_floats(q1, q_part.size());
          const auto want_q = download_floats(qk_norm ? q2n : q2, q_part.size());
          // The pools compared as raw words (f16 pools hold two halves a word).
          const std::size_t words = f16 ? pool_floats / 2 : pool_floats;
          const auto gk = download_floats(kp1, words), wk = download_floats(kp2, words);
          const auto gv = download_floats(vp1, words), wv = download_floats(vp2, words);
          if (!qk_norm) {
            CHECK(bit_differences(got_q, want_q) == 0);
            CHECK(bit_differences(gk, wk) == 0);
          } else {
            // The head's sum of squares is reduced by another workgroup size: rounding only.
            CHECK(ref::nmse(got_q, want_q) < 1e-12);
            if (!f16) CHECK(far_apart(gk, wk, 1e-5) == 0);
            if (f16) {
              std::size_t far = 0;  // f16 words may round differently in the last bit of a half
              for (std::size_t i = 0; i < gk.size(); ++i) {
                std::uint32_t a, b;
                std::memcpy(&a, &gk[i], 4);
                std::memcpy(&b, &wk[i], 4);
                for (int h = 0; h < 2; ++h) {
                  const int da = static_cast<int>((a >> (16 * h)) & 0xffff);
                  const int db = static_cast<int>((b >> (16 * h)) & 0xffff);
                  far += std::abs(da - db) > 1;
                }
              }
              CHECK(far == 0);
            }
          }
          CHECK(bit_differences(gv, wv) == 0);
        }
      }
    }
  }
}

TEST_CASE_FIXTURE(FusedTest, "Gemma's ops: rms_norm_add, scale and softcap against the reference") {
  for (std::uint32_t nrows : {1u, 9u}) {  // decode rows in slices, prefill rows whole
    CAPTURE(nrows);
    const std::uint32_t ncols = 4096;
    const std::size_t n = std::size_t{nrows} * ncols;
    const auto x = ref::random_floats(rng(), n, -3, 3);
    const auto w = ref::random_floats(rng(), ncols, 0.5f, 1.5f);
    const auto res = ref::random_floats(rng(), n, -20, 20);
    auto dx = upload_floats(x, "x"), dw = upload_floats(w, "w"), dres = upload_floats(res, "residual");
    auto scaled = poisoned_floats(n, "scaled"), capped = poisoned_floats(n, "capped");
    run([&](auto& cs) {
      ops::record_rms_norm_add(kernels(), cs, dx, dw, dres, ncols, nrows, 1e-6f);
      ops::record_scale(kernels(), cs, dx, scaled, static_cast<std::uint32_t>(n), 45.25f);
      ops::record_softcap(kernels(), cs, dres, capped, static_cast<std::uint32_t>(n), 5.f);
    });
    std::vector<float> normed(n), expected_res(n), expected_scaled(n), expected_capped(n);
    ref::rms_norm(x, w, normed, ncols, nrows, 1e-6f);
    for (std::size_t i = 0; i < n; ++i) {
      expected_res[i] = res[i] + normed[i];
      expected_scaled[i] = x[i] * 45.25f;
      expected_capped[i] = static_cast<float>(5.0 * std::tanh((double(res[i]) + normed[i]) / 5.0));
    }
    CHECK(ref::nmse(download_floats(dres, n), expected_res) < 1e-12);
    CHECK(bit_differences(download_floats(scaled, n), expected_scaled) == 0);
    // Capped after the add: the residual's values run to +-20, far into tanh's flat ends.
    CHECK(ref::nmse(download_floats(capped, n), expected_capped) < 1e-10);
  }
  // The residual must not be the norm's input (its slices would read rows others wrote).
  auto a = upload_floats(std::vector<float>(4, 1.f), "a");
  run([&](auto& cs) {
    CHECK_THROWS_AS(ops::record_rms_norm_add(kernels(), cs, a, a, a, 4, 1, 1e-6f), std::logic_error);
  });
}

TEST_CASE_FIXTURE(FusedTest, "rms_norm: a row spread over several workgroups gives the same bits as one") {
  // One row (decode) takes several slices; the same row among 9 (prefill) takes one workgroup.
  for (std::uint32_t ncols : {64u, 4096u, 5000u}) {
    CAPTURE(ncols);
    const std::uint32_t nrows = 9;
    const auto x = ref::random_floats(rng(), std::size_t{nrows} * ncols, -3, 3);
    const auto w = ref::random_floats(rng(), ncols, 0.5f, 1.5f);
    auto dx = upload_floats(x, "x"), dw = upload_floats(w, "w");
    auto dx1 = upload_floats(std::vector<float>(x.begin() + 4 * ncols, x.begin() + 5 * ncols), "row 4");
    auto all = poisoned_floats(x.size(), "all"), one = poisoned_floats(ncols, "one");
    run([&](auto& cs) {
      ops::record_rms_norm(kernels(), cs, dx, dw, all, ncols, nrows, 1e-5f);
      ops::record_rms_norm(kernels(), cs, dx1, dw, one, ncols, 1, 1e-5f);
    });
    const auto a = download_floats(all, x.size());
    std::vector<float> row4(a.begin() + 4 * ncols, a.begin() + 5 * ncols);
    std::vector<float> expected(row4.size());
    ref::rms_norm(std::vector<float>(x.begin() + 4 * ncols, x.begin() + 5 * ncols), w, expected, ncols, 1, 1e-5f);
    CHECK(bit_differences(download_floats(one, ncols), row4) == 0);
    CHECK(ref::nmse(row4, expected) < 1e-12);
  }
}
