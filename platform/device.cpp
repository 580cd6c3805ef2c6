// The logical device: creation with the features vkllm uses, the queue and its timeline
// semaphore, VkResult errors, and host<->device copies. Knows nothing of models.
#include <vulkan/vulkan.h>

#include "platform/vk_internal.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"

namespace vkllm::platform {

const char* result_name(VkResult r) {
  switch (r) {
#define VKLLM_CASE(x) case x: return #x;
    VKLLM_CASE(VK_SUCCESS)
    VKLLM_CASE(VK_NOT_READY)
    VKLLM_CASE(VK_TIMEOUT)
    VKLLM_CASE(VK_INCOMPLETE)
    VKLLM_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    VKLLM_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    VKLLM_CASE(VK_ERROR_INITIALIZATION_FAILED)
    VKLLM_CASE(VK_ERROR_DEVICE_LOST)
    VKLLM_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    VKLLM_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    VKLLM_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    VKLLM_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    VKLLM_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    VKLLM_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    VKLLM_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    VKLLM_CASE(VK_ERROR_FRAGMENTED_POOL)
    VKLLM_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    VKLLM_CASE(VK_ERROR_INVALID_SHADER_NV)
    VKLLM_CASE(VK_ERROR_UNKNOWN)
#undef VKLLM_CASE
    default: return "VkResult(unknown)";
  }
}

void vk_fail(VkResult r, const char* call, std::source_location where) {
  const std::string file = std::string(where.file_name());
  const std::string msg = fmt::format("{} failed: {} ({}:{})", call, result_name(r),
                                      file.substr(file.rfind('/') + 1), where.line());
  switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY: throw OutOfMemory(msg);
    case VK_ERROR_DEVICE_LOST: throw DeviceLost(msg);
    default: throw DeviceError(msg);
  }
}

std::string format_device_fault(const DeviceFaultInfo& f) {
  std::string out = fmt::format("device fault: {}", f.description);
  for (const DeviceFaultInfo::Address& a : f.addresses) {
    // The faulting address lies within reportedAddress rounded to addressPrecision (a power of 2).
    const std::uint64_t precision = std::max<std::uint64_t>(a.precision, 1);
    const std::uint64_t lo = a.reported & ~(precision - 1);
    out += fmt::format("\n  address {}: {:#x} (within [{:#x}, {:#x}])", a.type, a.reported, lo,
                       lo + precision - 1);
  }
  for (const DeviceFaultInfo::Vendor& v : f.vendors) {
    out += fmt::format("\n  vendor: {} (code {:#x}, data {:#x})", v.description, v.code, v.data);
  }
  if (f.binary_bytes > 0) out += fmt::format("\n  vendor binary dump: {} bytes (not kept)", f.binary_bytes);
  return out;
}

namespace {

// VK_EXT_device_fault's answer in plain types.
DeviceFaultInfo plain_fault(const VkDeviceFaultCountsEXT& counts, const VkDeviceFaultInfoEXT& info) {
  auto address_type = [](VkDeviceFaultAddressTypeEXT t) -> const char* {
    switch (t) {
      case VK_DEVICE_FAULT_ADDRESS_TYPE_NONE_EXT: return "none";
      case VK_DEVICE_FAULT_ADDRESS_TYPE_READ_INVALID_EXT: return "invalid read";
      case VK_DEVICE_FAULT_ADDRESS_TYPE_WRITE_INVALID_EXT: return "invalid write";
      case VK_DEVICE_FAULT_ADDRESS_TYPE_EXECUTE_INVALID_EXT: return "invalid execute";
      case VK_DEVICE_FAULT_ADDRESS_TYPE_INSTRUCTION_POINTER_UNKNOWN_EXT: return "instruction pointer (unknown fault)";
      case VK_DEVICE_FAULT_ADDRESS_TYPE_INSTRUCTION_POINTER_INVALID_EXT: return "instruction pointer (invalid)";
      case VK_DEVICE_FAULT_ADDRESS_TYPE_INSTRUCTION_POINTER_FAULT_EXT: return "instruction pointer (fault)";
      default: return "unknown type";
    }
  };
  // The driver's strings are fixed arrays; one without a terminator is cut at the array's end.
  auto text = [](const char (&s)[VK_MAX_DESCRIPTION_SIZE]) {
    return std::string(s, std::find(s, s + VK_MAX_DESCRIPTION_SIZE, '\0'));
  };
  DeviceFaultInfo f;
  f.description = text(info.description);
  for (std::uint32_t i = 0; i < counts.addressInfoCount && info.pAddressInfos; ++i) {
    const VkDeviceFaultAddressInfoEXT& a = info.pAddressInfos[i];
    f.addresses.push_back({address_type(a.addressType), a.reportedAddress, a.addressPrecision});
  }
  for (std::uint32_t i = 0; i < counts.vendorInfoCount && info.pVendorInfos; ++i) {
    const VkDeviceFaultVendorInfoEXT& v = info.pVendorInfos[i];
    f.vendors.push_back({text(v.description), v.vendorFaultCode, v.vendorFaultData});
  }
  f.binary_bytes = counts.vendorBinarySize;
  return f;
}

}  // namespace

std::string Device::fault_report() const {
  if (!impl_->get_fault_info) {
    return "device fault: no details (the device does not offer VK_EXT_device_fault)";
  }
  VkDeviceFaultCountsEXT counts{VK_STRUCTURE_TYPE_DEVICE_FAULT_COUNTS_EXT};
  VkResult r = impl_->get_fault_info(impl_->device, &counts, nullptr);
  if (r != VK_SUCCESS) {
    return fmt::format("device fault: no details (vkGetDeviceFaultInfoEXT: {})", result_name(r));
  }
  std::vector<VkDeviceFaultAddressInfoEXT> addresses(counts.addressInfoCount);
  std::vector<VkDeviceFaultVendorInfoEXT> vendors(counts.vendorInfoCount);
  const std::uint64_t binary_bytes = counts.vendorBinarySize;
  counts.vendorBinarySize = 0;  // the binary dump is not asked for: nothing here can read it
  VkDeviceFaultInfoEXT info{VK_STRUCTURE_TYPE_DEVICE_FAULT_INFO_EXT};
  info.pAddressInfos = addresses.data();
  info.pVendorInfos = vendors.data();
  r = impl_->get_fault_info(impl_->device, &counts, &info);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    return fmt::format("device fault: no details (vkGetDeviceFaultInfoEXT: {})", result_name(r));
  }
  DeviceFaultInfo f = plain_fault(counts, info);
  f.binary_bytes = binary_bytes;
  return format_device_fault(f);
}

namespace {

bool has_extension(const std::vector<std::string>& exts, const char* name) {
  return std::find(exts.begin(), exts.end(), name) != exts.end();
}

std::uint32_t pick_queue_family(VkPhysicalDevice pd) {
  std::uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, families.data());
  for (std::uint32_t i = 0; i < n; ++i) {
    if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return i;
  }
  throw DeviceError("device has no compute queue");
}

}  // namespace

Device::Device(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Device::~Device() {
  if (impl_ && impl_->device != VK_NULL_HANDLE) {
    vkDeviceWaitIdle(impl_->device);
    if (impl_->pipeline_cache_dirty) {
      try {
        save_pipeline_cache();
      } catch (const std::exception& e) {
        log::warn("pipeline cache not saved: {}", e.what());
      }
    }
  }
}

void load_pipeline_cache(Device::Impl& d, const DeviceOptions& options);  // pipeline.cpp

std::unique_ptr<Device> Device::open(Instance& instance, std::size_t index,
                                     const DeviceOptions& options) {
  Instance::Impl& inst = instance.impl();
  if (index >= inst.physical.size()) {
    throw DeviceError(fmt::format("no device {} (there are {})", index, inst.physical.size()));
  }
  auto impl = std::make_unique<Impl>();
  impl->instance = &inst;
  impl->physical = inst.physical[index];
  impl->caps = inst.caps[index];
  const DeviceCaps& caps = impl->caps;
  if (!caps.unusable_reason.empty()) {
    throw DeviceError(fmt::format("device {} ({}) cannot run vkllm: {}", index,
                                  caps.props.name, caps.unusable_reason));
  }
  const auto& exts = inst.extensions[index];
  impl->queue_family = pick_queue_family(impl->physical);
  vkGetPhysicalDeviceMemoryProperties(impl->physical, &impl->memory_properties);

  // Enable exactly what the caps say is there and kernels may use.
  const bool v13 = caps.props.api_version >= VK_API_VERSION_1_3;
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  f11.storageBuffer16BitAccess = caps.fp16_storage;
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  f12.timelineSemaphore = VK_TRUE;
  f12.shaderFloat16 = caps.fp16_math;
  f12.shaderInt8 = caps.int8_math;
  f12.storageBuffer8BitAccess = caps.int8_storage;
  // The cooperative-matrix shaders declare the memory model; the other shaders then use its
  // device scope (DeviceProps::vulkan_memory_model).
  f12.vulkanMemoryModel = caps.coopmat;
  f12.vulkanMemoryModelDeviceScope = caps.coopmat;
  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  f13.subgroupSizeControl = caps.subgroup_size_control;
  f13.computeFullSubgroups = caps.props.compute_full_subgroups;
  f13.shaderIntegerDotProduct = caps.props.integer_dot_product;
  f13.maintenance4 = caps.coopmat;
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR fcm{};
  fcm.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR;
  fcm.cooperativeMatrix = VK_TRUE;
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  features.features.shaderInt64 = caps.props.shader_int64;
  features.pNext = &f11;
  f11.pNext = &f12;
  void** tail = &f12.pNext;
  if (v13) { *tail = &f13; tail = &f13.pNext; }

  std::vector<const char*> enabled;
  if (caps.props.has_coopmat_extension) {
    enabled.push_back(VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME);
    *tail = &fcm;
    tail = &fcm.pNext;
  }
  if (has_extension(exts, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) {
    enabled.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  }
  // VK_EXT_device_fault: after a loss, the log says what faulted (Device::fault_report).
  VkPhysicalDeviceFaultFeaturesEXT ffault{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FAULT_FEATURES_EXT};
  if (has_extension(exts, VK_EXT_DEVICE_FAULT_EXTENSION_NAME)) {
    VkPhysicalDeviceFaultFeaturesEXT supported{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FAULT_FEATURES_EXT};
    VkPhysicalDeviceFeatures2 query{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    query.pNext = &supported;
    vkGetPhysicalDeviceFeatures2(impl->physical, &query);
    if (supported.deviceFault) {
      enabled.push_back(VK_EXT_DEVICE_FAULT_EXTENSION_NAME);
      ffault.deviceFault = VK_TRUE;
      *tail = &ffault;
      tail = &ffault.pNext;
    }
  }

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = impl->queue_family;
  qci.queueCount = 1;
  qci.pQueuePriorities = &priority;
  VkDeviceCreateInfo ci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  ci.pNext = &features;
  ci.queueCreateInfoCount = 1;
  ci.pQueueCreateInfos = &qci;
  ci.enabledExtensionCount = static_cast<std::uint32_t>(enabled.size());
  ci.ppEnabledExtensionNames = enabled.data();
  VKLLM_VK(vkCreateDevice(impl->physical, &ci, nullptr, &impl->owner.handle));
  impl->device = impl->owner.handle;
  vkGetDeviceQueue(impl->device, impl->queue_family, 0, &impl->queue);
  if (ffault.deviceFault) {
    impl->get_fault_info = reinterpret_cast<PFN_vkGetDeviceFaultInfoEXT>(
        vkGetDeviceProcAddr(impl->device, "vkGetDeviceFaultInfoEXT"));
  }

  VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  VkSemaphoreCreateInfo sci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
  sci.pNext = &type;
  VkSemaphore sem = VK_NULL_HANDLE;
  VKLLM_VK(vkCreateSemaphore(impl->device, &sci, nullptr, &sem));
  impl->timeline = {impl->device, sem};

  load_pipeline_cache(*impl, options);
  log::debug("opened device {}: {} ({}, driver {} {})", index, caps.props.name,
             to_string(caps.props.type), caps.props.driver_name, caps.driver_version_string);
  return std::unique_ptr<Device>(new Device(std::move(impl)));
}

const DeviceCaps& Device::caps() const { return impl_->caps; }
const std::string& Device::name() const { return impl_->caps.props.name; }

void Device::wait_idle() { VKLLM_VK(vkDeviceWaitIdle(impl_->device)); }

void Device::Impl::set_name(VkObjectType type, std::uint64_t handle,
                            std::string_view name) const {
  if (!instance->set_object_name || name.empty()) return;
  const std::string n(name);
  VkDebugUtilsObjectNameInfoEXT info{VK_STRUCTURE_TYPE_DEBUG_UTILS_OBJECT_NAME_INFO_EXT};
  info.objectType = type;
  info.objectHandle = handle;
  info.pObjectName = n.c_str();
  instance->set_object_name(device, &info);
}

std::uint64_t Device::Impl::submit(VkCommandBuffer cb) {
  std::lock_guard lock(queue_mutex);
  // Wait on the previous submission: execution and memory dependency between steps, so a
  // replayed recording sees what the one before it wrote.
  const std::uint64_t wait = timeline_value;
  const std::uint64_t signal = timeline_value + 1;
  VkTimelineSemaphoreSubmitInfo tsi{VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
  tsi.waitSemaphoreValueCount = 1;
  tsi.pWaitSemaphoreValues = &wait;
  tsi.signalSemaphoreValueCount = 1;
  tsi.pSignalSemaphoreValues = &signal;
  const VkSemaphore sem = timeline.get();
  const VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.pNext = &tsi;
  si.waitSemaphoreCount = 1;
  si.pWaitSemaphores = &sem;
  si.pWaitDstStageMask = &stage;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  si.signalSemaphoreCount = 1;
  si.pSignalSemaphores = &sem;
  VKLLM_VK(vkQueueSubmit(queue, 1, &si, VK_NULL_HANDLE));
  timeline_value = signal;
  return signal;
}

void Device::Impl::wait_value(std::uint64_t value) {
  if (value == 0) return;
  const VkSemaphore sem = timeline.get();
  VkSemaphoreWaitInfo wi{VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO};
  wi.semaphoreCount = 1;
  wi.pSemaphores = &sem;
  wi.pValues = &value;
  VKLLM_VK(vkWaitSemaphores(device, &wi, std::numeric_limits<std::uint64_t>::max()));
}

void Device::upload(const Buffer& dst, std::uint64_t offset, std::span<const std::byte> bytes) {
  if (offset > dst.size() || bytes.size() > dst.size() - offset) {
    throw InvalidRequest(fmt::format("upload of {} bytes at {} overflows a {}-byte buffer",
                                     bytes.size(), offset, dst.size()));
  }
  if (bytes.empty()) return;
  if (dst.mapped()) {
    std::memcpy(dst.mapped() + offset, bytes.data(), bytes.size());
    return;
  }
  const std::uint64_t chunk = std::min<std::uint64_t>(bytes.size(), 64ull << 20);
  Buffer staging = create_buffer(chunk, MemoryIntent::upload, "staging upload");
  CommandStream cs = command_stream();
  for (std::uint64_t done = 0; done < bytes.size(); done += chunk) {
    const std::uint64_t n = std::min<std::uint64_t>(chunk, bytes.size() - done);
    std::memcpy(staging.mapped(), bytes.data() + done, n);
    cs.begin();
    cs.copy(BufferSpan(staging, 0, n), BufferSpan(dst, offset + done, n), "upload");
    cs.end();
    cs.submit_and_wait();
  }
}

void Device::download(const Buffer& src, std::uint64_t offset, std::span<std::byte> bytes) {
  if (offset > src.size() || bytes.size() > src.size() - offset) {
    throw InvalidRequest(fmt::format("download of {} bytes at {} overflows a {}-byte buffer",
                                     bytes.size(), offset, src.size()));
  }
  if (bytes.empty()) return;
  if (src.mapped()) {
    std::memcpy(bytes.data(), src.mapped() + offset, bytes.size());
    return;
  }
  const std::uint64_t chunk = std::min<std::uint64_t>(bytes.size(), 64ull << 20);
  Buffer staging = create_buffer(chunk, MemoryIntent::readback, "staging readback");
  CommandStream cs = command_stream();
  for (std::uint64_t done = 0; done < bytes.size(); done += chunk) {
    const std::uint64_t n = std::min<std::uint64_t>(chunk, bytes.size() - done);
    cs.begin();
    cs.copy(BufferSpan(src, offset + done, n), BufferSpan(staging, 0, n), "download");
    cs.end();
    cs.submit_and_wait();
    std::memcpy(bytes.data() + done, staging.mapped(), n);
  }
}

}  // namespace vkllm::platform
