// The Vulkan instance: loader, optional validation layer routed to our logger, and the list of
// physical devices with their caps. Knows no models; exposes no Vulkan types.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "platform/device_caps.hpp"

namespace vkllm::platform {

enum class MessageSeverity { info, warning, error };

struct InstanceOptions {
  // Khronos validation layer + debug messenger. Messages go to the logger and to the callback.
  bool validation = false;
  // Also enable the layer's synchronization validation (missing barriers become errors).
  bool sync_validation = false;
  std::function<void(MessageSeverity, std::string_view)> on_validation_message;
};

class Instance {
 public:
  // Throws DeviceError naming the cause (no loader, no layer, no driver).
  static Instance create(const InstanceOptions& options = {});

  Instance(Instance&&) noexcept;
  Instance& operator=(Instance&&) noexcept;
  ~Instance();

  // Every physical device the loader reports, in its order; index = `--device N`.
  const std::vector<DeviceCaps>& devices() const;
  bool validation_enabled() const;

  // The device to use: `requested` if given, else $VKLLM_DEVICE if set, else the best usable one
  // (discrete > integrated > virtual > CPU). Throws DeviceError naming the cause.
  std::size_t choose_device(std::optional<std::size_t> requested = std::nullopt) const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Instance(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vkllm::platform
