// Every kernel variant against its CPU reference on fresh random inputs, poisoned outputs, and
// sizes that do not divide the workgroup size. Runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/gguf/quant.hpp"
#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/norm.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using test::DeviceTest;

namespace {

constexpr double kExact = 1e-7;   // elementwise, norms, softmax (docs/ARCHITECTURE.md "Tests")
constexpr double kMatmul = 5e-4;  // products with reduced-precision weights
const std::uint32_t kOddSizes[] = {1, 7, 33, 4097};

}  // namespace

TEST_CASE_FIXTURE(DeviceTest, "add_f32 and mul_f32 match the reference") {
  for (std::uint32_t n : kOddSizes) {
    for (bool is_add : {true, false}) {
      CAPTURE(n);
      CAPTURE(is_add);
      const auto a = ref::random_floats(rng(), n), b = ref::random_floats(rng(), n);
      std::vector<float> expected(n);
      is_add ? ref::add(a, b, expected) : ref::mul(a, b, expected);
      auto da = upload_floats(a, "a"), db = upload_floats(b, "b");
      auto dout = poisoned_floats(n, "out");
      auto cs = device().command_stream();
      cs.begin();
      is_add ? ops::record_add(kernels(), cs, da, db, dout, n)
             : ops::record_mul(kernels(), cs, da, db, dout, n);
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(dout, n), expected) < kExact);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "elementwise loops past the dispatch cap (grid-stride)") {
  // More elements than groups * workgroup would cover if the kernel did not loop.
  const std::uint32_t n = 1'000'003;
  const auto a = ref::random_floats(rng(), n), b = ref::random_floats(rng(), n);
  std::vector<float> expected(n);
  ref::add(a, b, expected);
  auto da = upload_floats(a, "a"), db = upload_floats(b, "b");
  auto dout = poisoned_floats(n, "out");
  auto cs = device().command_stream();
  cs.begin();
  ops::record_add(kernels(), cs, da, db, dout, n);
  cs.end();
  cs.submit_and_wait();
  CHECK(ref::nmse(download_floats(dout, n), expected) < kExact);
}

TEST_CASE_FIXTURE(DeviceTest, "rms_norm_f32 matches the reference") {
  for (std::uint32_t ncols : kOddSizes) {
    for (std::uint32_t nrows : {1u, 3u}) {
      CAPTURE(ncols);
      CAPTURE(nrows);
      const auto x = ref::random_floats(rng(), std::size_t(ncols) * nrows, -3, 3);
      const auto w = ref::random_floats(rng(), ncols, 0.5f, 1.5f);
      std::vector<float> expected(x.size());
      ref::rms_norm(x, w, expected, ncols, nrows, 1e-5f);
      auto dx = upload_floats(x, "x"), dw = upload_floats(w, "w");
      auto dout = poisoned_floats(x.size(), "out");
      auto cs = device().command_stream();
      cs.begin();
      ops::record_rms_norm(kernels(), cs, dx, dw, dout, ncols, nrows, 1e-5f);
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(dout, x.size()), expected) < kExact);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "softmax_f32 matches the reference, large logits included") {
  for (std::uint32_t ncols : kOddSizes) {
    for (float scale : {1.0f, 0.125f}) {
      CAPTURE(ncols);
      CAPTURE(scale);
      const std::uint32_t nrows = 3;
      // Large magnitudes: without the max subtraction exp() overflows to inf.
      const auto x = ref::random_floats(rng(), std::size_t(ncols) * nrows, -200, 200);
      std::vector<float> expected(x.size());
      ref::softmax(x, expected, ncols, nrows, scale);
      auto dx = upload_floats(x, "x");
      auto dout = poisoned_floats(x.size(), "out");
      auto cs = device().command_stream();
      cs.begin();
      ops::record_softmax(kernels(), cs, dx, dout, ncols, nrows, scale);
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(dout, x.size()), expected) < kExact);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "matmul (decode) with f32 and f16 weights matches the reference") {
  // One token: the matrix-vector product. Every weight type is in test_matmul.cpp.
  for (std::uint32_t ncols : kOddSizes) {
    for (std::uint32_t nrows : {1u, 7u, 33u}) {
      for (auto type : {gguf::TensorType::kF32, gguf::TensorType::kF16}) {
        CAPTURE(ncols);
        CAPTURE(nrows);
        CAPTURE(gguf::type_name(type));
        auto w = ref::random_floats(rng(), std::size_t(ncols) * nrows);
        const auto bytes = gguf::quantize(type, w);
        w = gguf::dequantize(type, bytes);  // the reference sees the weights the device sees
        const auto dw = ops::DeviceWeight::upload(
            device(), type, ncols, nrows, std::as_bytes(std::span<const std::uint8_t>(bytes)), "W");
        const auto x = ref::random_floats(rng(), ncols);
        std::vector<float> expected(nrows);
        ref::matvec(w, x, expected, ncols, nrows);
        auto dx = upload_floats(x, "x");
        auto dy = poisoned_floats(nrows, "y");
        auto cs = device().command_stream();
        cs.begin();
        ops::record_matmul(kernels(), cs, dw.view(), dx, dy, 1);
        cs.end();
        cs.submit_and_wait();
        CHECK(ref::nmse(download_floats(dy, nrows), expected) < kMatmul);
      }
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "a chain of dependent kernels gets its barriers") {
  // y = rms_norm(a + b) * c, then softmax(y): every step reads the previous step's output.
  const std::uint32_t n = 4097;
  const auto a = ref::random_floats(rng(), n), b = ref::random_floats(rng(), n);
  const auto c = ref::random_floats(rng(), n), w = ref::random_floats(rng(), n, 0.5f, 1.5f);
  std::vector<float> s(n), r(n), y(n), expected(n);
  ref::add(a, b, s);
  ref::rms_norm(s, w, r, n, 1, 1e-6f);
  ref::mul(r, c, y);
  ref::softmax(y, expected, n, 1, 1.0f);

  auto da = upload_floats(a, "a"), db = upload_floats(b, "b"), dc = upload_floats(c, "c");
  auto dw = upload_floats(w, "w");
  auto t0 = poisoned_floats(n, "t0"), t1 = poisoned_floats(n, "t1");
  auto cs = device().command_stream();
  cs.begin();
  ops::record_add(kernels(), cs, da, db, t0, n);
  ops::record_rms_norm(kernels(), cs, t0, dw, t1, n, 1, 1e-6f);
  ops::record_mul(kernels(), cs, t1, dc, t0, n);
  ops::record_softmax(kernels(), cs, t0, t1, n, 1, 1.0f);
  cs.end();
  CHECK(cs.barrier_count() == 3);
  cs.submit_and_wait();
  CHECK(ref::nmse(download_floats(t1, n), expected) < kExact);
}
