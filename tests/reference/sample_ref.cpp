// CPU references for argmax and the sampler. Deliberately naive: sorts, double sums, and an
// explicit check of every decision's margin. Knows no Vulkan.
#include "tests/reference/sample_ref.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace vkllm::ref {
namespace {

// Step 1, in f32 as the device (no fused multiply-add: the device's arithmetic is `precise`).
float penalize(float l, const ops::PenaltyEntry& pe, const ops::SamplingRow& row) {
  float v = l;
  if (pe.seen != 0) v = l > 0 ? l / row.repetition_penalty : l * row.repetition_penalty;
  if (pe.count != 0) {
    const float d = row.frequency_penalty * static_cast<float>(pe.count) + row.presence_penalty;
    v = v - d;
  }
  return v + pe.bias;
}

bool near(double a, double b, double scale) {
  return std::abs(a - b) <= kSampleTolerance * scale;
}

}  // namespace

std::uint32_t argmax(std::span<const float> row) {
  std::uint32_t best = 0;
  bool found = false;
  for (std::uint32_t i = 0; i < row.size(); ++i) {
    if (std::isnan(row[i])) continue;
    if (!found || row[i] > row[best]) best = i;
    found = true;
  }
  return best;
}

double log_softmax_at(std::span<const float> raw, std::uint32_t id) {
  double m = -std::numeric_limits<double>::infinity();
  for (float v : raw) m = std::max(m, double(v));
  double s = 0;
  for (float v : raw) s += std::exp(double(v) - m);
  return double(raw[id]) - m - std::log(s);
}

std::vector<TopEntry> top_logprobs(std::span<const float> raw, std::uint32_t n) {
  std::vector<std::uint32_t> order;
  for (std::uint32_t i = 0; i < raw.size(); ++i) {
    if (!std::isnan(raw[i])) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return raw[a] != raw[b] ? raw[a] > raw[b] : a < b;
  });
  order.resize(std::min<std::size_t>(order.size(), n));
  std::vector<TopEntry> out;
  for (std::uint32_t i : order) out.push_back({i, log_softmax_at(raw, i)});
  return out;
}

SampleResult sample_row(std::span<const float> logits, const ops::SamplingRow& row,
                        std::span<const ops::PenaltyEntry> penalties, std::span<const std::uint32_t> mask) {
  const std::size_t n = logits.size();
  SampleResult res;

  // 1. Penalties on a copy.
  std::vector<float> l(logits.begin(), logits.end());
  for (const auto& pe : penalties) {
    if (pe.token < n) l[pe.token] = penalize(l[pe.token], pe, row);
  }
  // The grammar's mask.
  for (std::size_t c = 0; c < n && !mask.empty(); ++c) {
    if (c / 32 >= mask.size() || ((mask[c / 32] >> (c % 32)) & 1u) == 0) l[c] = -std::numeric_limits<float>::infinity();
  }

  // 2. Greedy.
  if (!(row.temperature > 0)) {
    res.id = argmax(l);
    const double best = l[res.id];
    for (float v : l) {
      if (v != best && near(v, best, std::max(std::abs(double(v)), std::abs(best)))) {
        res.ambiguous = true;
      }
    }
    res.logprob = log_softmax_at(logits, res.id);
    return res;
  }

  // p = softmax(l / T): x and e = exp(x - max x) in f32 as the device, p normalized in double.
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = l[i] / row.temperature;
  const float mx = *std::max_element(x.begin(), x.end());
  std::vector<double> p(n);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += p[i] = std::exp(x[i] - mx);
  for (double& v : p) v /= sum;
  const double pmax = *std::max_element(p.begin(), p.end());

  // A threshold decision is fragile when some p lies close to it without being equal, or when
  // equal p come from different x (the device's exp may separate them).
  auto threshold_fragile = [&](double thr) {
    const float* x_at = nullptr;
    for (std::size_t i = 0; i < n; ++i) {
      if (p[i] == thr) {
        if (x_at && *x_at != x[i]) return true;
        x_at = &x[i];
      } else if (near(p[i], thr, thr)) {
        return true;
      }
    }
    return false;
  };

  double t = 0;  // kept: p >= t
  // 3. top-k: the k-th largest p.
  if (row.top_k > 0 && row.top_k < n) {
    std::vector<double> sorted = p;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    t = sorted[row.top_k - 1];
    res.ambiguous |= threshold_fragile(t);
  }
  // 4. top-p: walk the kept values from the largest, a whole group of ties at a time.
  if (row.top_p < 1) {
    std::vector<double> kept;
    for (double v : p) {
      if (v >= t) kept.push_back(v);
    }
    std::sort(kept.begin(), kept.end(), std::greater<>());
    double kept_sum = 0;
    for (double v : kept) kept_sum += v;
    const double target = double(row.top_p) * kept_sum;
    double cum = 0, tau = kept.front();
    for (std::size_t i = 0; i < kept.size();) {
      const double v = kept[i], before = cum;
      while (i < kept.size() && kept[i] == v) cum += kept[i++];
      if (cum >= target) {
        tau = v;
        res.ambiguous |= near(cum, target, kept_sum) || near(before, target, kept_sum);
        break;
      }
    }
    res.ambiguous |= threshold_fragile(tau);
    t = std::max(t, tau);
  }
  // 5. min-p.
  if (row.min_p > 0) {
    const double thr = std::min(double(row.min_p), 1.0) * pmax;
    for (double v : p) res.ambiguous |= near(v, thr, thr);
    t = std::max(t, thr);
  }

  // 6. The draw, in index order.
  double kept_sum = 0;
  std::uint32_t last = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (p[i] >= t) {
      kept_sum += p[i];
      last = i;
    }
  }
  const double target =
      double(ops::sample_uniform(row.seed_lo, row.seed_hi, row.counter)) * kept_sum;
  double cum = 0;
  res.id = last;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!(p[i] >= t)) continue;
    const double before = cum;
    cum += p[i];
    if (cum > target) {
      res.id = i;
      res.ambiguous |= near(cum, target, kept_sum) || near(before, target, kept_sum);
      break;
    }
  }
  res.logprob = log_softmax_at(logits, res.id);
  return res;
}

}  // namespace vkllm::ref
