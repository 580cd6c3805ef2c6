#include "engine/sample/penalties.hpp"

#include <algorithm>

namespace vkllm::sample {

std::vector<PenaltyEntry> build_penalties(const SamplingParams& p,
                                          std::span<const std::uint32_t> prompt,
                                          std::span<const std::uint32_t> generated,
                                          std::span<const LogitBias> bias) {
  std::vector<PenaltyEntry> entries;
  auto entry = [&entries](std::uint32_t token) -> PenaltyEntry& {
    auto it = std::find_if(entries.begin(), entries.end(),
                           [token](const PenaltyEntry& e) { return e.token == token; });
    if (it != entries.end()) return *it;
    entries.push_back({token, 0, 0.f, 0});
    return entries.back();
  };
  if (p.penalizes()) {
    const std::size_t n_gen = std::min<std::size_t>(generated.size(), p.penalty_last_n);
    const std::size_t n_prompt = std::min<std::size_t>(prompt.size(), p.penalty_last_n - n_gen);
    for (std::uint32_t t : prompt.last(n_prompt)) entry(t).seen = 1;
    for (std::uint32_t t : generated.last(n_gen)) {
      PenaltyEntry& e = entry(t);
      e.seen = 1;
      ++e.count;
    }
  }
  for (const LogitBias& b : bias) entry(b.token).bias = b.bias;
  return entries;
}

}  // namespace vkllm::sample
