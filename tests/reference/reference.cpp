// CPU references (oracles) for the kernels. Deliberately naive: double accumulation, no tricks.
// Knows no Vulkan.
#include "tests/reference/reference.hpp"

#include <cmath>
#include <limits>

namespace vkllm::ref {

void add(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] + b[i];
}

void mul(std::span<const float> a, std::span<const float> b, std::span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] * b[i];
}

void rms_norm(std::span<const float> x, std::span<const float> w, std::span<float> out,
              std::uint32_t ncols, std::uint32_t nrows, float eps) {
  for (std::uint32_t r = 0; r < nrows; ++r) {
    double ss = 0;
    for (std::uint32_t c = 0; c < ncols; ++c) ss += double(x[r * ncols + c]) * x[r * ncols + c];
    const double scale = 1.0 / std::sqrt(ss / ncols + eps);
    for (std::uint32_t c = 0; c < ncols; ++c) {
      out[r * ncols + c] = static_cast<float>(x[r * ncols + c] * scale * w[c]);
    }
  }
}

void softmax(std::span<const float> x, std::span<float> out, std::uint32_t ncols,
             std::uint32_t nrows, float scale) {
  for (std::uint32_t r = 0; r < nrows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (std::uint32_t c = 0; c < ncols; ++c) m = std::max(m, double(scale) * x[r * ncols + c]);
    double s = 0;
    for (std::uint32_t c = 0; c < ncols; ++c) s += std::exp(double(scale) * x[r * ncols + c] - m);
    for (std::uint32_t c = 0; c < ncols; ++c) {
      out[r * ncols + c] = static_cast<float>(std::exp(double(scale) * x[r * ncols + c] - m) / s);
    }
  }
}

void matvec(std::span<const float> w, std::span<const float> x, std::span<float> y,
            std::uint32_t ncols, std::uint32_t nrows) {
  for (std::uint32_t r = 0; r < nrows; ++r) {
    double acc = 0;
    for (std::uint32_t c = 0; c < ncols; ++c) acc += double(w[std::size_t(r) * ncols + c]) * x[c];
    y[r] = static_cast<float>(acc);
  }
}

double nmse(std::span<const float> actual, std::span<const float> expected) {
  if (actual.size() != expected.size()) return std::numeric_limits<double>::infinity();
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) return std::numeric_limits<double>::infinity();
    const double d = double(actual[i]) - expected[i];
    err += d * d;
    norm += double(expected[i]) * expected[i];
  }
  if (norm == 0) return err == 0 ? 0 : std::numeric_limits<double>::infinity();
  return err / norm;
}

std::vector<float> random_floats(std::mt19937& rng, std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

}  // namespace vkllm::ref
