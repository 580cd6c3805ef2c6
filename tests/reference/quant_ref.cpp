// CPU references of the weight kernels. Deliberately naive: double accumulation, no tricks.
// Knows no Vulkan.
#include "tests/reference/quant_ref.hpp"

#include <algorithm>
#include <cmath>

#include "engine/gguf/quant.hpp"

namespace vkllm::ref {

void matmul(std::span<const float> w, std::span<const float> x, std::span<float> y,
            std::uint32_t ncols, std::uint32_t nrows, std::uint32_t ntok) {
  for (std::uint32_t t = 0; t < ntok; ++t) {
    for (std::uint32_t r = 0; r < nrows; ++r) {
      double acc = 0.0;
      for (std::uint32_t c = 0; c < ncols; ++c) {
        acc += double(w[std::size_t(r) * ncols + c]) * double(x[std::size_t(t) * ncols + c]);
      }
      y[std::size_t(t) * nrows + r] = static_cast<float>(acc);
    }
  }
}

void get_rows(std::span<const float> w, std::span<const std::uint32_t> ids, std::span<float> out,
              std::uint32_t ncols, std::uint32_t nrows) {
  for (std::size_t t = 0; t < ids.size(); ++t) {
    for (std::uint32_t c = 0; c < ncols; ++c) {
      out[t * ncols + c] = ids[t] < nrows ? w[std::size_t(ids[t]) * ncols + c] : 0.0f;
    }
  }
}

QuantizedWeights random_quantized(std::mt19937& rng, gguf::TensorType type, std::uint32_t ncols,
                                  std::uint32_t nrows) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), scale(0.05f, 2.0f);
  std::vector<float> w(std::size_t(ncols) * nrows);
  float s = 1.0f, o = 0.0f;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (i % 16 == 0) {
      s = scale(rng);
      o = 0.5f * unit(rng) * s;
    }
    w[i] = s * unit(rng) + o;
  }
  QuantizedWeights q;
  q.bytes = gguf::quantize(type, w);
  q.values = gguf::dequantize(type, q.bytes);
  return q;
}

std::vector<float> q8_activations(std::span<const float> x) {
  std::vector<float> out(x.size());
  for (std::size_t b = 0; b + 32 <= x.size(); b += 32) {
    float amax = 0;
    for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float d = amax / 127.0f;
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (std::size_t i = 0; i < 32; ++i) {
      const float code = std::clamp(std::nearbyint(x[b + i] * inv), -127.0f, 127.0f);
      out[b + i] = code * d;
    }
  }
  return out;
}

}  // namespace vkllm::ref
