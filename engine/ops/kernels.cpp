// The kernel library: pipeline lookup by shader id and specialization, and shared shape checks.
// Knows no Vulkan, no models.
#include "engine/ops/kernels.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.hpp"

namespace vkllm::ops {

const char* to_string(KernelChoice c) {
  switch (c) {
    case KernelChoice::automatic: return "auto";
    case KernelChoice::gemv: return "gemv";
    case KernelChoice::tiled: return "tiled";
  }
  return "?";
}

KernelChoice parse_kernel_choice(std::string_view s) {
  for (KernelChoice c : {KernelChoice::automatic, KernelChoice::gemv, KernelChoice::tiled}) {
    if (s == to_string(c)) return c;
  }
  throw InvalidRequest(fmt::format("kernels '{}': expected auto, gemv or tiled", s));
}

KernelChoice kernel_choice_from_env() {
  const char* v = std::getenv("VKLLM_KERNELS");
  if (v == nullptr || *v == 0) return KernelChoice::automatic;
  try {
    return parse_kernel_choice(v);
  } catch (const InvalidRequest& e) {
    throw InvalidRequest(fmt::format("VKLLM_KERNELS: {}", e.what()));
  }
}

const platform::Pipeline& Kernels::pipeline(shaders::ShaderId id, std::uint32_t bindings,
                                            std::uint32_t push_size,
                                            std::vector<std::uint32_t> spec) {
  const shaders::ShaderBlob blob = shaders::shader(id);
  platform::PipelineDesc desc;
  desc.name = std::string(blob.name);
  desc.spirv = blob.words;
  desc.bindings = bindings;
  desc.push_constant_size = push_size;
  desc.spec_constants = std::move(spec);
  return device_.pipeline(desc);
}

void require_bytes(const BufferSpan& span, std::uint64_t bytes, const char* op, const char* arg) {
  if (span.resolved_size() < bytes) {
    throw std::logic_error(fmt::format("{}: {} holds {} bytes, needs {}", op, arg,
                                       span.resolved_size(), bytes));
  }
}

std::uint32_t group_count(const Kernels& k, std::uint64_t n, std::uint32_t per_group) {
  const std::uint64_t groups = (n + per_group - 1) / per_group;
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(groups, k.caps().props.max_workgroup_count[0]));
}

}  // namespace vkllm::ops
