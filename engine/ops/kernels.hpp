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
// run, for tests and benchmarks. A process takes it from VKLLM_KERNELS=auto|gemv|tiled|coopmat.
// coopmat needs a device with a usable f16 cooperative-matrix shape (Tuning::coopmat_m) and a
// build whose shader toolchain compiled the cooperative-matrix variants.
// intdot needs a device with integer dot products (Tuning::intdot) and the build's integer-dot
// variants; it applies to the legacy 32-element block types (q8_0, q4_0, q4_1, q5_0, q5_1), the
// others take the path they would take automatically.
enum class KernelChoice { automatic, gemv, tiled, coopmat, intdot };

const char* to_string(KernelChoice c);
// "auto", "gemv", "tiled", "coopmat" or "intdot"; throws InvalidRequest naming the accepted
// values otherwise.
KernelChoice parse_kernel_choice(std::string_view s);
// VKLLM_KERNELS, or automatic when it is unset or empty.
KernelChoice kernel_choice_from_env();

// Whether the build holds the cooperative-matrix shaders (their toolchain probe passed).
bool coopmat_shaders_built();
// Whether a device of tuning t can run the cooperative-matrix GEMM: it has a shape
// (Tuning::coopmat_m) and the build has the shaders.
bool coopmat_available(const platform::Tuning& t);
// Whether the build holds the integer-dot shaders, and a device of tuning t can run them.
bool intdot_shaders_built();
bool intdot_available(const platform::Tuning& t);

class Kernels {
 public:
  // Throws Unsupported when VKLLM_KERNELS forces a path the device or build lacks.
  explicit Kernels(platform::Device& device);

  KernelChoice choice() const { return choice_; }
  // Throws Unsupported, naming the device, for a path it cannot run (coopmat without a shape,
  // intdot without integer dot products).
  void set_choice(KernelChoice c);

  platform::Device& device() { return device_; }
  const platform::DeviceCaps& caps() const { return device_.caps(); }
  const platform::Tuning& tuning() const { return tuning_ ? *tuning_ : device_.caps().tuning; }
  // Another device class's tuning on this device (tests, benchmarks); nullopt: the device's own.
  void set_tuning(std::optional<platform::Tuning> t) { tuning_ = std::move(t); }

  // spec[0] is the workgroup size (specialization constant 0 of every shader).
  // required_subgroup: the subgroup size the pipeline must run with (0: the driver's choice).
  const platform::Pipeline& pipeline(shaders::ShaderId id, std::uint32_t bindings,
                                     std::uint32_t push_size, std::vector<std::uint32_t> spec,
                                     std::uint32_t required_subgroup = 0);

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
