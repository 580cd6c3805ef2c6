// Lookup over the generated table of embedded SPIR-V (see cmake/embed_spirv.cmake).
// Knows nothing of Vulkan.
#include "shaders/registry.hpp"

#include <stdexcept>
#include <string>

namespace vkllm::shaders {

extern const RawBlob kBlobs[];

ShaderBlob shader(ShaderId id) {
  const auto index = static_cast<std::size_t>(id);
  if (index >= kShaderCount) throw std::out_of_range("shader id " + std::to_string(index));
  const RawBlob& raw = kBlobs[index];
  return ShaderBlob{id, raw.name,
                    {reinterpret_cast<const std::uint32_t*>(raw.bytes), raw.size / 4}};
}

std::optional<ShaderBlob> find_shader(std::string_view name) {
  for (std::size_t i = 0; i < kShaderCount; ++i) {
    if (name == kBlobs[i].name) return shader(static_cast<ShaderId>(i));
  }
  return std::nullopt;
}

}  // namespace vkllm::shaders
