// CPU references (oracles) for every kernel, written for clarity, not speed, plus the error
// measures tests and benchmarks compare with. Knows no Vulkan.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace vkllm::ref {

void add(std::span<const float> a, std::span<const float> b, std::span<float> out);
void mul(std::span<const float> a, std::span<const float> b, std::span<float> out);
void rms_norm(std::span<const float> x, std::span<const float> w, std::span<float> out,
              std::uint32_t ncols, std::uint32_t nrows, float eps);
void softmax(std::span<const float> x, std::span<float> out, std::uint32_t ncols,
             std::uint32_t nrows, float scale);
// y[r] = sum_c w[r * ncols + c] * x[c], accumulated in double.
void matvec(std::span<const float> w, std::span<const float> x, std::span<float> y,
            std::uint32_t ncols, std::uint32_t nrows);

// Normalized mean squared error sum((a-b)^2) / sum(b^2); +inf when any value is not finite or
// the sizes differ (so NaN never passes).
double nmse(std::span<const float> actual, std::span<const float> expected);

std::vector<float> random_floats(std::mt19937& rng, std::size_t n, float lo = -1.f, float hi = 1.f);

}  // namespace vkllm::ref
