// The kernel library of one device: pipelines of the embedded shader variants, created on first
// use with the device's tuning as specialization constants. Knows no Vulkan, no models.
#pragma once

#include <cstdint>
#include <vector>

#include "platform/device.hpp"
#include "shaders/registry.hpp"

namespace vkllm::ops {

using platform::Access;
using platform::BufferSpan;
using platform::CommandStream;

class Kernels {
 public:
  explicit Kernels(platform::Device& device) : device_(device) {}

  platform::Device& device() { return device_; }
  const platform::DeviceCaps& caps() const { return device_.caps(); }
  const platform::Tuning& tuning() const { return device_.caps().tuning; }

  // spec[0] is the workgroup size (specialization constant 0 of every shader).
  const platform::Pipeline& pipeline(shaders::ShaderId id, std::uint32_t bindings,
                                     std::uint32_t push_size, std::vector<std::uint32_t> spec);

 private:
  platform::Device& device_;
};

// Throws std::logic_error naming the op when `span` holds fewer than `bytes` bytes.
void require_bytes(const BufferSpan& span, std::uint64_t bytes, const char* op, const char* arg);

// Workgroups for `n` items of `per_group` each, capped at the device's 1D limit (kernels that
// take this path loop over the rest).
std::uint32_t group_count(const Kernels& k, std::uint64_t n, std::uint32_t per_group);

}  // namespace vkllm::ops
