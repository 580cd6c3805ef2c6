// CPU references for RoPE, SiLU-mul, bias add, KV write and paged attention. Deliberately naive.
// Knows no Vulkan.
#include "tests/reference/attention_ref.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace vkllm::ref {

void rope(std::span<float> x, std::span<const std::uint32_t> positions,
          std::span<const float> inv_freq, std::uint32_t ntok, std::uint32_t nheads,
          std::uint32_t head_dim, ops::RopeStyle style) {
  const std::uint32_t half = head_dim / 2;
  for (std::uint32_t t = 0; t < ntok; ++t) {
    for (std::uint32_t h = 0; h < nheads; ++h) {
      float* row = x.data() + (std::size_t(t) * nheads + h) * head_dim;
      for (std::uint32_t i = 0; i < half; ++i) {
        const float theta = static_cast<float>(positions[t]) * inv_freq[i];
        const std::uint32_t i0 = style == ops::RopeStyle::normal ? 2 * i : i;
        const std::uint32_t i1 = style == ops::RopeStyle::normal ? 2 * i + 1 : i + half;
        const double c = std::cos(double(theta)), s = std::sin(double(theta));
        const double x0 = row[i0], x1 = row[i1];
        row[i0] = static_cast<float>(x0 * c - x1 * s);
        row[i1] = static_cast<float>(x0 * s + x1 * c);
      }
    }
  }
}

void silu_mul(std::span<const float> gate, std::span<const float> up, std::span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

double swiglu_oai(double g, double u) {
  g = std::min(g, 7.0);
  u = std::clamp(u, -7.0, 7.0);
  return g / (1.0 + std::exp(-1.702 * g)) * (u + 1.0);
}

void add_bias(std::span<const float> x, std::span<const float> bias, std::span<float> out,
              std::uint32_t ncols, std::uint32_t nrows) {
  for (std::uint32_t r = 0; r < nrows; ++r) {
    for (std::uint32_t c = 0; c < ncols; ++c) {
      out[std::size_t(r) * ncols + c] = x[std::size_t(r) * ncols + c] + bias[c];
    }
  }
}

void kv_write(std::span<const float> k_new, std::span<const float> v_new,
              std::span<const std::uint32_t> slot_mapping, std::span<float> k_pool,
              std::span<float> v_pool, std::uint32_t ntok, std::uint32_t kv_dim) {
  const std::size_t num_slots = k_pool.size() / kv_dim;
  for (std::uint32_t t = 0; t < ntok; ++t) {
    const std::size_t slot = slot_mapping[t];
    if (slot >= num_slots) continue;
    for (std::uint32_t c = 0; c < kv_dim; ++c) {
      k_pool[slot * kv_dim + c] = k_new[std::size_t(t) * kv_dim + c];
      v_pool[slot * kv_dim + c] = v_new[std::size_t(t) * kv_dim + c];
    }
  }
}

void paged_attention(const ops::AttentionShape& sh, std::span<const float> q,
                     std::span<const float> k_pool, std::span<const float> v_pool,
                     std::span<const std::uint32_t> positions,
                     std::span<const std::uint32_t> query_start,
                     std::span<const std::uint32_t> block_table, std::span<float> out,
                     std::span<const float> sinks) {
  const std::uint32_t group = sh.n_heads / sh.n_kv_heads;
  const std::size_t kv_dim = std::size_t(sh.n_kv_heads) * sh.head_dim;
  for (std::uint32_t s = 0; s < sh.nseq; ++s) {
    for (std::uint32_t t = query_start[s]; t < query_start[s + 1]; ++t) {
      const std::uint32_t npos = positions[t] + 1;
      // The sliding window's first key (llama.cpp's rule: key p is masked when pos - p >= window).
      const std::uint32_t first = sh.window && positions[t] >= sh.window ? positions[t] + 1 - sh.window : 0;
      // Pool row of every key position of sequence s this token attends.
      std::vector<std::size_t> rows(npos);
      for (std::uint32_t p = first; p < npos; ++p) {
        const std::uint32_t b = p / sh.block_size;
        if (b >= sh.max_blocks_per_seq) throw std::logic_error("ref::paged_attention: no block");
        const std::size_t blk = block_table[std::size_t(s) * sh.max_blocks_per_seq + b];
        rows[p] = blk * sh.block_size + p % sh.block_size;
      }
      for (std::uint32_t h = 0; h < sh.n_heads; ++h) {
        const std::uint32_t kvh = h / group;
        const float* qh = q.data() + (std::size_t(t) * sh.n_heads + h) * sh.head_dim;
        std::vector<double> score(npos, 0.0);
        double m = -INFINITY;
        for (std::uint32_t p = first; p < npos; ++p) {
          const float* kr = k_pool.data() + rows[p] * kv_dim + std::size_t(kvh) * sh.head_dim;
          double dot = 0;
          for (std::uint32_t d = 0; d < sh.head_dim; ++d) dot += double(qh[d]) * kr[d];
          score[p] = dot * sh.scale;
          // Soft-capping of the scaled score (Gemma 2).
          if (sh.softcap > 0) score[p] = sh.softcap * std::tanh(score[p] / sh.softcap);
          m = std::max(m, score[p]);
        }
        if (!sinks.empty()) m = std::max(m, double(sinks[h]));
        double sum = sinks.empty() ? 0 : std::exp(sinks[h] - m);
        for (std::uint32_t p = first; p < npos; ++p) sum += (score[p] = std::exp(score[p] - m));
        float* oh = out.data() + (std::size_t(t) * sh.n_heads + h) * sh.head_dim;
        for (std::uint32_t d = 0; d < sh.head_dim; ++d) {
          double acc = 0;
          for (std::uint32_t p = first; p < npos; ++p) {
            acc += score[p] * v_pool[rows[p] * kv_dim + std::size_t(kvh) * sh.head_dim + d];
          }
          oh[d] = static_cast<float>(acc / sum);
        }
      }
    }
  }
}

}  // namespace vkllm::ref
