// Platform-private: the Vulkan objects behind the public platform types, the one VkResult check
// helper, and small RAII owners. Included only by platform/*.cpp after <vulkan/vulkan.h>.
#pragma once

#ifndef VULKAN_CORE_H_
#error "platform/vk_internal.hpp is for platform/*.cpp only, after <vulkan/vulkan.h>"
#endif

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "platform/device.hpp"
#include "platform/instance.hpp"

// The pinned headers (third_party/vulkan-headers, 1.4.309) have what the platform uses.
static_assert(VK_HEADER_VERSION >= 309, "platform/ builds against third_party/vulkan-headers");

namespace vkllm::platform {

const char* result_name(VkResult r);

// The one check: throws OutOfMemory, DeviceLost or DeviceError naming the result, the call and
// where it was made.
void vk_fail(VkResult r, const char* call, std::source_location where);
inline void vk_check(VkResult r, const char* call,
                     std::source_location where = std::source_location::current()) {
  if (r < 0) vk_fail(r, call, where);
}
#define VKLLM_VK(call) ::vkllm::platform::vk_check((call), #call)

// Owner of one device-level handle destroyed with vkDestroyX(device, handle, nullptr).
template <typename T, void (*Destroy)(VkDevice, T, const VkAllocationCallbacks*)>
class DeviceOwned {
 public:
  DeviceOwned() = default;
  DeviceOwned(VkDevice device, T handle) : device_(device), handle_(handle) {}
  DeviceOwned(DeviceOwned&& o) noexcept
      : device_(o.device_), handle_(std::exchange(o.handle_, VK_NULL_HANDLE)) {}
  DeviceOwned& operator=(DeviceOwned&& o) noexcept {
    if (this != &o) {
      reset();
      device_ = o.device_;
      handle_ = std::exchange(o.handle_, VK_NULL_HANDLE);
    }
    return *this;
  }
  ~DeviceOwned() { reset(); }
  void reset() {
    if (handle_ != VK_NULL_HANDLE) Destroy(device_, handle_, nullptr);
    handle_ = VK_NULL_HANDLE;
  }
  T get() const { return handle_; }
  T release() { return std::exchange(handle_, VK_NULL_HANDLE); }
  explicit operator bool() const { return handle_ != VK_NULL_HANDLE; }

 private:
  VkDevice device_ = VK_NULL_HANDLE;
  T handle_ = VK_NULL_HANDLE;
};

struct Instance::Impl {
  VkInstance instance = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
  bool validation = false;
  bool debug_utils = false;
  std::function<void(MessageSeverity, std::string_view)> on_message;
  std::vector<VkPhysicalDevice> physical;
  std::vector<DeviceCaps> caps;
  std::vector<std::vector<std::string>> extensions;  // per physical device

  PFN_vkCmdBeginDebugUtilsLabelEXT cmd_begin_label = nullptr;
  PFN_vkCmdEndDebugUtilsLabelEXT cmd_end_label = nullptr;
  PFN_vkSetDebugUtilsObjectNameEXT set_object_name = nullptr;

  ~Impl();
};

// One vkAllocateMemory block, sub-allocated first-fit with coalescing free ranges.
struct MemoryBlock {
  VkDeviceMemory memory = VK_NULL_HANDLE;
  std::uint64_t size = 0;
  std::uint32_t type_index = 0;
  std::byte* mapped = nullptr;
  std::map<std::uint64_t, std::uint64_t> free;  // offset -> size
  std::uint64_t used = 0;
};

struct Buffer::Handle {
  VkBuffer buffer = VK_NULL_HANDLE;
  MemoryBlock* block = nullptr;
  std::uint64_t offset = 0;      // in the block
  std::uint64_t alloc_size = 0;  // bytes taken from the block
};

struct Pipeline::Handle {
  DeviceOwned<VkDescriptorSetLayout, vkDestroyDescriptorSetLayout> set_layout;
  DeviceOwned<VkPipelineLayout, vkDestroyPipelineLayout> layout;
  DeviceOwned<VkPipeline, vkDestroyPipeline> pipeline;
};

struct Device::Impl {
  // First member, so destroyed last: every other member's handle belongs to this device.
  struct Owner {
    VkDevice handle = VK_NULL_HANDLE;
    ~Owner() {
      if (handle != VK_NULL_HANDLE) vkDestroyDevice(handle, nullptr);
    }
  } owner;
  VkDevice device = VK_NULL_HANDLE;  // == owner.handle
  Instance::Impl* instance = nullptr;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  std::uint32_t queue_family = 0;
  DeviceCaps caps;
  VkPhysicalDeviceMemoryProperties memory_properties{};
  PFN_vkGetDeviceFaultInfoEXT get_fault_info = nullptr;  // VK_EXT_device_fault enabled

  // Queue submission, ordered by one timeline semaphore.
  std::mutex queue_mutex;
  DeviceOwned<VkSemaphore, vkDestroySemaphore> timeline;
  std::uint64_t timeline_value = 0;

  // Memory arenas, one list of blocks per intent.
  mutable std::mutex memory_mutex;
  std::vector<std::unique_ptr<MemoryBlock>> arenas[kMemoryIntentCount];
  std::uint64_t next_buffer_id = 1;

  // Pipelines, created on first use.
  std::mutex pipeline_mutex;
  DeviceOwned<VkPipelineCache, vkDestroyPipelineCache> pipeline_cache;
  std::filesystem::path pipeline_cache_path;
  std::unordered_map<std::string, std::unique_ptr<Pipeline>> pipelines;
  bool pipeline_cache_dirty = false;

  void set_name(VkObjectType type, std::uint64_t handle, std::string_view name) const;
  std::uint64_t submit(VkCommandBuffer cb);
  void wait_value(std::uint64_t value);
  ~Impl();
};

}  // namespace vkllm::platform
