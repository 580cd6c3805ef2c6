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
    case KernelChoice::coopmat: return "coopmat";
    case KernelChoice::intdot: return "intdot";
  }
  return "?";
}

KernelChoice parse_kernel_choice(std::string_view s) {
  for (KernelChoice c : {KernelChoice::automatic, KernelChoice::gemv, KernelChoice::tiled,
                         KernelChoice::coopmat, KernelChoice::intdot}) {
    if (s == to_string(c)) return c;
  }
  throw InvalidRequest(
      fmt::format("kernels '{}': expected auto, gemv, tiled, coopmat or intdot", s));
}

bool coopmat_shaders_built() {
  static const bool built = shaders::find_shader("matmul_coopmat_f32").has_value();
  return built;
}

bool coopmat_available(const platform::Tuning& t) {
  return t.coopmat_m != 0 && coopmat_shaders_built();
}

bool intdot_shaders_built() {
  static const bool built = shaders::find_shader("quantize_q8").has_value();
  return built;
}

bool intdot_available(const platform::Tuning& t) { return t.intdot && intdot_shaders_built(); }

KernelChoice kernel_choice_from_env() {
  const char* v = std::getenv("VKLLM_KERNELS");
  if (v == nullptr || *v == 0) return KernelChoice::automatic;
  try {
    return parse_kernel_choice(v);
  } catch (const InvalidRequest& e) {
    throw InvalidRequest(fmt::format("VKLLM_KERNELS: {}", e.what()));
  }
}

Kernels::Kernels(platform::Device& device) : device_(device) {
  set_choice(kernel_choice_from_env());
}

void Kernels::set_choice(KernelChoice c) {
  if (c == KernelChoice::coopmat && !coopmat_available(tuning())) {
    throw Unsupported(fmt::format(
        "kernels coopmat: {} has no f16 x f16 -> f32 cooperative-matrix shape vkllm can use{}",
        caps().props.name, coopmat_shaders_built() ? "" : " (and this build has no "
                                                        "cooperative-matrix shaders: its glslang "
                                                        "or spirv-val rejected them)"));
  }
  if (c == KernelChoice::intdot && !intdot_available(tuning())) {
    throw Unsupported(fmt::format("kernels intdot: {} has no integer dot product{}",
                                  caps().props.name,
                                  intdot_shaders_built() ? "" : " (or this build lacks the "
                                                                "integer-dot shaders)"));
  }
  choice_ = c;
}

const platform::Pipeline& Kernels::pipeline(shaders::ShaderId id, std::uint32_t bindings,
                                            std::uint32_t push_size,
                                            std::vector<std::uint32_t> spec,
                                            std::uint32_t required_subgroup) {
  const shaders::ShaderBlob blob = shaders::shader(id);
  platform::PipelineDesc desc;
  desc.name = std::string(blob.name);
  desc.spirv = blob.words;
  desc.bindings = bindings;
  desc.push_constant_size = push_size;
  desc.spec_constants = std::move(spec);
  desc.required_subgroup_size = required_subgroup;
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
