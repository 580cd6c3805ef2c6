// The embedded shader registry: optimized, validated SPIR-V of every variant, by id and name.
// Knows nothing of Vulkan or of what a shader computes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shaders/shader_ids.hpp"  // generated: enum class ShaderId

namespace vkllm::shaders {

struct RawBlob {
  const char* name;
  const unsigned char* bytes;  // 4-byte aligned SPIR-V words
  std::size_t size;            // bytes
};

struct ShaderBlob {
  ShaderId id;
  std::string_view name;
  std::span<const std::uint32_t> words;
};

constexpr std::size_t kShaderCount = static_cast<std::size_t>(ShaderId::count_);

ShaderBlob shader(ShaderId id);
std::optional<ShaderBlob> find_shader(std::string_view name);

}  // namespace vkllm::shaders
