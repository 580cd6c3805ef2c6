// The kernel library: pipeline lookup by shader id and specialization, and shared shape checks.
// Knows no Vulkan, no models.
#include "engine/ops/kernels.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace vkllm::ops {

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
