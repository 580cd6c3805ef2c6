// The kernels beside attention against their CPU references: RoPE (both styles, real
// frequencies, long positions), SiLU-mul, bias add, and the K/V write (f32 and f16 pools) through
// a slot mapping. Poisoned outputs and pools; runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <numeric>

#include "engine/gguf/quant.hpp"
#include "engine/ops/attention.hpp"
#include "engine/ops/elementwise.hpp"
#include "tests/ops/kernel_buffers.hpp"
#include "tests/reference/attention_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using namespace vkllm::test;

namespace {

// inv_freq[i] = base^(-2i / head_dim), optionally with llama3's long-context scaling
// (factor 8, low/high frequency factors 1 and 4, original context 8192).
std::vector<float> rope_inv_freq(std::uint32_t head_dim, double base, bool llama3) {
  std::vector<float> f(head_dim / 2);
  for (std::uint32_t i = 0; i < head_dim / 2; ++i) {
    double freq = std::pow(base, -2.0 * i / head_dim);
    if (llama3) {
      const double factor = 8, low = 1, high = 4, original = 8192;
      const double wavelen = 2 * std::numbers::pi / freq;
      if (wavelen > original / low) {
        freq /= factor;
      } else if (wavelen >= original / high) {
        const double smooth = (original / wavelen - low) / (high - low);
        freq = (1 - smooth) * freq / factor + smooth * freq;
      }
    }
    f[i] = static_cast<float>(freq);
  }
  return f;
}

}  // namespace

TEST_CASE_FIXTURE(DeviceTest, "rope normal and neox match the reference at long positions") {
  for (auto style : {ops::RopeStyle::normal, ops::RopeStyle::neox}) {
    for (std::uint32_t head_dim : {64u, 128u}) {
      for (bool llama3 : {false, true}) {
        CAPTURE(style == ops::RopeStyle::neox);
        CAPTURE(head_dim);
        CAPTURE(llama3);
        const std::uint32_t ntok = 9, nheads = 5;
        const auto inv_freq = rope_inv_freq(head_dim, llama3 ? 500000.0 : 10000.0, llama3);
        std::vector<std::uint32_t> positions{0, 1, 4000, 4095};
        std::uniform_int_distribution<std::uint32_t> pos(0, 4096);
        while (positions.size() < ntok) positions.push_back(pos(rng()));
        const auto x = ref::random_floats(rng(), std::size_t(ntok) * nheads * head_dim, -2, 2);
        auto expected = x;
        ref::rope(expected, positions, inv_freq, ntok, nheads, head_dim, style);
        auto dx = upload_floats(x, "x");
        auto dpos = upload_u32(device(), positions, "positions");
        auto dfreq = upload_floats(inv_freq, "inv_freq");
        auto cs = device().command_stream();
        cs.begin();
        ops::record_rope(kernels(), cs, dx, dpos, dfreq, ntok, nheads, head_dim, style);
        cs.end();
        cs.submit_and_wait();
        const auto got = download_floats(dx, x.size());
        CHECK(ref::nmse(got, expected) < kExact);
        CHECK(ref::nmse(x, expected) > 1e-2);  // the rotation did move things
      }
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "rope: the two styles rotate different pairs") {
  // head_dim 4, one token at position 1 with inv_freq {1, 0}: normal turns (x0, x1) by 1 rad,
  // neox turns (x0, x2).
  const std::vector<float> x{1, 2, 3, 4}, inv_freq{1, 0};
  const std::vector<std::uint32_t> positions{1};
  const float c = std::cos(1.0f), s = std::sin(1.0f);
  const std::vector<float> normal{1 * c - 2 * s, 1 * s + 2 * c, 3, 4};
  const std::vector<float> neox{1 * c - 3 * s, 2, 1 * s + 3 * c, 4};
  for (auto style : {ops::RopeStyle::normal, ops::RopeStyle::neox}) {
    auto dx = upload_floats(x, "x");
    auto dpos = upload_u32(device(), positions, "positions");
    auto dfreq = upload_floats(inv_freq, "inv_freq");
    auto cs = device().command_stream();
    cs.begin();
    ops::record_rope(kernels(), cs, dx, dpos, dfreq, 1, 1, 4, style);
    cs.end();
    cs.submit_and_wait();
    CHECK(ref::nmse(download_floats(dx, 4), style == ops::RopeStyle::normal ? normal : neox) <
          kExact);
  }
}

TEST_CASE_FIXTURE(DeviceTest, "silu_mul matches the reference, in place too") {
  for (std::uint32_t n : {1u, 7u, 33u, 4097u, 1'000'003u}) {
    for (int alias : {0, 1, 2}) {  // out separate, out = gate, out = up
      if (alias != 0 && n != 4097) continue;
      CAPTURE(n);
      CAPTURE(alias);
      const auto gate = ref::random_floats(rng(), n, -12, 12), up = ref::random_floats(rng(), n);
      std::vector<float> expected(n);
      ref::silu_mul(gate, up, expected);
      auto dg = upload_floats(gate, "gate"), du = upload_floats(up, "up");
      auto dout = poisoned_floats(n, "out");
      const platform::Buffer& out = alias == 1 ? dg : alias == 2 ? du : dout;
      auto cs = device().command_stream();
      cs.begin();
      ops::record_silu_mul(kernels(), cs, dg, du, out, n);
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(out, n), expected) < kExact);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "add_bias broadcasts the bias over rows, in place too") {
  struct Shape { std::uint32_t ncols, nrows; };
  for (Shape sh : {Shape{1, 1}, Shape{7, 3}, Shape{896, 37}, Shape{4097, 5}}) {
    for (bool in_place : {false, true}) {
      CAPTURE(sh.ncols);
      CAPTURE(sh.nrows);
      CAPTURE(in_place);
      const auto x = ref::random_floats(rng(), std::size_t(sh.ncols) * sh.nrows);
      const auto bias = ref::random_floats(rng(), sh.ncols, -5, 5);
      std::vector<float> expected(x.size());
      ref::add_bias(x, bias, expected, sh.ncols, sh.nrows);
      auto dx = upload_floats(x, "x"), db = upload_floats(bias, "bias");
      auto dout = poisoned_floats(x.size(), "out");
      const platform::Buffer& out = in_place ? dx : dout;
      auto cs = device().command_stream();
      cs.begin();
      ops::record_add_bias(kernels(), cs, dx, db, out, sh.ncols, sh.nrows);
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(out, x.size()), expected) < kExact);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "kv_write scatters rows through the slot mapping, f32 and f16") {
  for (auto type : kv_types(*this)) {
    for (std::uint32_t kv_dim : {7u, 128u, 512u}) {
      const bool f16 = type == ops::KvType::f16;
      CAPTURE(f16);
      CAPTURE(kv_dim);
      const std::uint32_t ntok = 13, num_slots = 48;
      std::vector<std::uint32_t> all(num_slots);
      std::iota(all.begin(), all.end(), 0u);
      std::shuffle(all.begin(), all.end(), rng());
      std::vector<std::uint32_t> slots(all.begin(), all.begin() + ntok);
      slots[5] = 0xffffffffu;  // a padding token: skipped
      const auto k_new = ref::random_floats(rng(), std::size_t(ntok) * kv_dim, -4, 4);
      const auto v_new = ref::random_floats(rng(), std::size_t(ntok) * kv_dim, -4, 4);
      const std::size_t pool_elems = std::size_t(num_slots) * kv_dim;
      std::vector<float> k_exp(pool_elems, kNan), v_exp(pool_elems, kNan);
      ref::kv_write(k_new, v_new, slots, k_exp, v_exp, ntok, kv_dim);

      auto poisoned_pool = [&](const char* name) {
        if (!f16) return poisoned_floats(pool_elems, name);
        return upload_u16(device(), std::vector<std::uint16_t>(pool_elems, kF16Nan), name);
      };
      auto dk = poisoned_pool("k_pool"), dv = poisoned_pool("v_pool");
      auto dkn = upload_floats(k_new, "k_new"), dvn = upload_floats(v_new, "v_new");
      auto dslots = upload_u32(device(), slots, "slots");
      auto cs = device().command_stream();
      cs.begin();
      ops::record_kv_write(kernels(), cs, type, dkn, dvn, dslots, dk, dv, ntok, kv_dim);
      cs.end();
      cs.submit_and_wait();

      for (int which = 0; which < 2; ++which) {
        const auto& expected = which == 0 ? k_exp : v_exp;
        const auto& buf = which == 0 ? dk : dv;
        std::vector<float> got_written, exp_written;
        std::size_t untouched_ok = 0, untouched = 0;
        if (f16) {
          const auto got = download_u16(device(), buf, pool_elems);
          for (std::size_t i = 0; i < pool_elems; ++i) {
            if (std::isnan(expected[i])) {
              ++untouched;
              untouched_ok += got[i] == kF16Nan;
            } else {
              got_written.push_back(gguf::fp16_to_fp32(got[i]));
              exp_written.push_back(round_f16(expected[i]));
            }
          }
        } else {
          const auto got = download_floats(buf, pool_elems);
          for (std::size_t i = 0; i < pool_elems; ++i) {
            if (std::isnan(expected[i])) {
              ++untouched;
              untouched_ok += std::isnan(got[i]);
            } else {
              got_written.push_back(got[i]);
              exp_written.push_back(expected[i]);
            }
          }
        }
        CHECK(got_written.size() == std::size_t(ntok - 1) * kv_dim);
        CHECK(ref::nmse(got_written, exp_written) < kExact);
        CHECK(untouched_ok == untouched);  // no row outside the mapping was written
      }
    }
  }
}
