// The kernel library of one device: pipelines of the embedded shader variants, created on first
// use with the device's tuning as specialization constants. Knows no Vulkan, no models.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "platform/device.hpp"
#include "shaders/registry.hpp"

namespace vkllm::ops {

using platform::Access;
using platform::BufferSpan;
using platform::CommandStream;

// Which matmul kernels run (docs/ARCHITECTURE.md, "Matmul paths"). automatic: per matmul, from
// its token count and the device (ops::choose_matmul); the others force one path wherever it can
// run, for tests and benchmarks. A process takes it from VKLLM_KERNELS=auto|gemv|tiled.
enum class KernelChoice { automatic, gemv, tiled };

const char* to_string(KernelChoice c);
// "auto", "gemv" or "tiled"; throws InvalidRequest naming the accepted values otherwise.
KernelChoice parse_kernel_choice(std::string_view s);
// VKLLM_KERNELS, or automatic when it is unset or empty.
KernelChoice kernel_choice_from_env();

class Kernels {
 public:
  explicit Kernels(platform::Device& device)
      : device_(device), choice_(kernel_choice_from_env()) {}

  KernelChoice choice() const { return choice_; }
  void set_choice(KernelChoice c) { choice_ = c; }

  platform::Device& device() { return device_; }
  const platform::DeviceCaps& caps() const { return device_.caps(); }
  const platform::Tuning& tuning() const { return tuning_ ? *tuning_ : device_.caps().tuning; }
  // Another device class's tuning on this device (tests, benchmarks); nullopt: the device's own.
  void set_tuning(std::optional<platform::Tuning> t) { tuning_ = std::move(t); }

  // spec[0] is the workgroup size (specialization constant 0 of every shader).
  const platform::Pipeline& pipeline(shaders::ShaderId id, std::uint32_t bindings,
                                     std::uint32_t push_size, std::vector<std::uint32_t> spec);

 private:
  platform::Device& device_;
  KernelChoice choice_;
  std::optional<platform::Tuning> tuning_;
};

// Throws std::logic_error naming the op when `span` holds fewer than `bytes` bytes.
void require_bytes(const BufferSpan& span, std::uint64_t bytes, const char* op, const char* arg);

// Workgroups for `n` items of `per_group` each, capped at the device's 1D limit (kernels that
// take this path loop over the rest).
std::uint32_t group_count(const Kernels& k, std::uint64_t n, std::uint32_t per_group);

}  // namespace vkllm::ops
