// The fault hook's state: a rule list and per-point pass counts behind one mutex, reached only
// while something is armed.
#include "common/fault.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.hpp"
#include "common/log.hpp"

namespace vkllm::fault {
namespace {

constexpr std::array<std::string_view, 4> kPoints{"alloc", "descriptor_pool", "step_submit",
                                                  "step_wait"};

struct Rule {
  std::size_t point;
  std::uint64_t n;
};

struct State {
  std::mutex mu;
  std::vector<Rule> rules;
  std::array<std::uint64_t, kPoints.size()> counts{};
  std::atomic<bool> armed{false};
};

State& state() {
  static State s;
  return s;
}

std::size_t point_index(std::string_view name) {
  const auto it = std::find(kPoints.begin(), kPoints.end(), name);
  return static_cast<std::size_t>(it - kPoints.begin());
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<Rule> parse(std::string_view spec) {
  std::vector<Rule> rules;
  while (!trim(spec).empty()) {
    const std::size_t comma = spec.find(',');
    const std::string_view item = trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    const std::size_t colon = item.find(':');
    const std::string_view name = item.substr(0, colon);
    const std::size_t index = point_index(name);
    if (index == kPoints.size()) {
      throw InvalidRequest(fmt::format("VKLLM_FAULT: unknown point '{}' (points: {})", name,
                                       fmt::join(kPoints, ", ")));
    }
    const std::string count = colon == std::string_view::npos ? "" : std::string(item.substr(colon + 1));
    char* end = nullptr;
    const unsigned long long n = count.empty() ? 0 : std::strtoull(count.c_str(), &end, 10);
    if (count.empty() || *end != '\0' || n == 0 || count.front() == '-') {
      throw InvalidRequest(fmt::format("VKLLM_FAULT: '{}' is not <point>:<n> with n >= 1", item));
    }
    rules.push_back({index, n});
  }
  return rules;
}

}  // namespace

void arm(std::string_view spec) {
  std::vector<Rule> rules = parse(spec);
  State& s = state();
  std::lock_guard lock(s.mu);
  s.rules = std::move(rules);
  s.counts.fill(0);
  s.armed.store(!s.rules.empty(), std::memory_order_release);
}

void arm_from_env() {
  if (const char* spec = std::getenv("VKLLM_FAULT")) {
    arm(spec);
    if (*spec) log::warn("fault injection armed: VKLLM_FAULT={}", spec);
  }
}

bool hit(std::string_view point) {
  State& s = state();
  if (!s.armed.load(std::memory_order_relaxed)) return false;
  const std::size_t index = point_index(point);
  if (index == kPoints.size()) throw std::logic_error(fmt::format("fault::hit: unknown point '{}'", point));
  std::lock_guard lock(s.mu);
  const std::uint64_t pass = ++s.counts[index];
  const bool fires = std::any_of(s.rules.begin(), s.rules.end(),
                                 [&](const Rule& r) { return r.point == index && r.n == pass; });
  if (fires) log::warn("injected fault: {} pass {} fails (VKLLM_FAULT)", point, pass);
  return fires;
}

std::uint64_t passes(std::string_view point) {
  const std::size_t index = point_index(point);
  if (index == kPoints.size()) throw std::logic_error(fmt::format("fault::passes: unknown point '{}'", point));
  State& s = state();
  std::lock_guard lock(s.mu);
  return s.counts[index];
}

}  // namespace vkllm::fault
