// Instance creation, the validation layer's messenger, and the query of every physical device's
// properties into DeviceProps (then DeviceCaps). Knows nothing of models.
#include <vulkan/vulkan.h>

#include "platform/vk_internal.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"

namespace vkllm::platform {
namespace {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT,
    const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  auto* impl = static_cast<Instance::Impl*>(user);
  const std::string_view text = data && data->pMessage ? data->pMessage : "(no message)";
  MessageSeverity s = MessageSeverity::info;
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    s = MessageSeverity::error;
    log::error("vulkan validation: {}", text);
  } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
    s = MessageSeverity::warning;
    log::warn("vulkan validation: {}", text);
  } else {
    log::debug("vulkan: {}", text);
  }
  if (impl->on_message) impl->on_message(s, text);
  return VK_FALSE;  // never abort the call
}

bool has_layer(const char* name) {
  std::uint32_t n = 0;
  VKLLM_VK(vkEnumerateInstanceLayerProperties(&n, nullptr));
  std::vector<VkLayerProperties> layers(n);
  VKLLM_VK(vkEnumerateInstanceLayerProperties(&n, layers.data()));
  return std::any_of(layers.begin(), layers.end(),
                     [&](const VkLayerProperties& l) { return std::strcmp(l.layerName, name) == 0; });
}

bool has_instance_extension(const char* name) {
  std::uint32_t n = 0;
  VKLLM_VK(vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr));
  std::vector<VkExtensionProperties> exts(n);
  VKLLM_VK(vkEnumerateInstanceExtensionProperties(nullptr, &n, exts.data()));
  return std::any_of(exts.begin(), exts.end(), [&](const VkExtensionProperties& e) {
    return std::strcmp(e.extensionName, name) == 0;
  });
}

std::vector<std::string> device_extensions(VkPhysicalDevice pd) {
  std::uint32_t n = 0;
  VKLLM_VK(vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr));
  std::vector<VkExtensionProperties> exts(n);
  VKLLM_VK(vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data()));
  std::vector<std::string> names;
  for (const auto& e : exts) names.emplace_back(e.extensionName);
  return names;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

DeviceType device_type(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return DeviceType::discrete;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return DeviceType::integrated;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return DeviceType::virtual_gpu;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return DeviceType::cpu;
    default: return DeviceType::other;
  }
}

ComponentType component_type(std::uint32_t t) {
  switch (t) {
    case 0: return ComponentType::f16;  // VK_COMPONENT_TYPE_FLOAT16_KHR
    case 1: return ComponentType::f32;
    case 3: return ComponentType::s8;
    case 5: return ComponentType::s32;
    case 7: return ComponentType::u8;
    case 9: return ComponentType::u32;
    case 1000141000: return ComponentType::bf16;  // VK_COMPONENT_TYPE_BFLOAT16_KHR
    default: return ComponentType::other;
  }
}

std::vector<CoopMatShape> query_coopmat(VkInstance instance, VkPhysicalDevice pd) {
  auto fn = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR>(
      vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"));
  if (!fn) return {};
  std::uint32_t n = 0;
  if (fn(pd, &n, nullptr) != VK_SUCCESS) return {};
  std::vector<VkCooperativeMatrixPropertiesKHR> props(n);
  for (auto& p : props) {
    p = {};
    p.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
  }
  if (fn(pd, &n, props.data()) != VK_SUCCESS) return {};
  std::vector<CoopMatShape> shapes;
  for (const auto& p : props) {
    shapes.push_back(CoopMatShape{p.MSize, p.NSize, p.KSize, component_type(p.AType),
                                  component_type(p.BType), component_type(p.CType),
                                  component_type(p.ResultType), p.scope == 3});
  }
  return shapes;
}

DeviceProps query_props(VkInstance instance, VkPhysicalDevice pd,
                        const std::vector<std::string>& exts) {
  DeviceProps p;
  VkPhysicalDeviceProperties base{};
  vkGetPhysicalDeviceProperties(pd, &base);
  const bool v13 = base.apiVersion >= VK_API_VERSION_1_3;

  VkPhysicalDeviceVulkan11Properties p11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES};
  VkPhysicalDeviceVulkan12Properties p12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_PROPERTIES};
  VkPhysicalDeviceVulkan13Properties p13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_PROPERTIES};
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
  VkPhysicalDeviceShaderCorePropertiesAMD amd{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD};
  VkPhysicalDeviceProperties2 props2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  props2.pNext = &p11;
  p11.pNext = &p12;
  void** tail = &p12.pNext;
  if (v13) { *tail = &p13; tail = &p13.pNext; }
  const bool has_sm = contains(exts, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  const bool has_amd = contains(exts, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME);
  if (has_sm) { *tail = &sm; tail = &sm.pNext; }
  if (has_amd) { *tail = &amd; tail = &amd.pNext; }
  if (base.apiVersion < VK_API_VERSION_1_2) {
    props2.pNext = nullptr;  // the 1.1/1.2 structs are only valid on 1.2 devices
  }
  vkGetPhysicalDeviceProperties2(pd, &props2);

  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR fcm{};
  fcm.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR;
  VkPhysicalDeviceCooperativeMatrix2FeaturesNV fcm2{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV};
  VkPhysicalDeviceFeatures2 feats{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  const bool has_coopmat_ext = contains(exts, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME);
  const bool has_coopmat2_ext = contains(exts, VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME);
  if (base.apiVersion >= VK_API_VERSION_1_2) {
    feats.pNext = &f11;
    f11.pNext = &f12;
    void** ftail = &f12.pNext;
    if (v13) { *ftail = &f13; ftail = &f13.pNext; }
    if (has_coopmat_ext) { *ftail = &fcm; ftail = &fcm.pNext; }
    if (has_coopmat2_ext) { *ftail = &fcm2; ftail = &fcm2.pNext; }
  }
  vkGetPhysicalDeviceFeatures2(pd, &feats);

  p.name = base.deviceName;
  p.vendor_id = base.vendorID;
  p.device_id = base.deviceID;
  p.type = device_type(base.deviceType);
  p.api_version = base.apiVersion;
  p.driver_version = base.driverVersion;
  p.driver_id = static_cast<std::uint32_t>(p12.driverID);
  p.driver_name = p12.driverName;
  p.driver_info = p12.driverInfo;
  std::memcpy(p.pipeline_cache_uuid.data(), base.pipelineCacheUUID, 16);
  std::memcpy(p.device_uuid.data(), p11.deviceUUID, 16);

  p.subgroup_size = p11.subgroupSize;
  p.subgroup_in_compute = p11.subgroupSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT;
  p.subgroup_basic = p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT;
  p.subgroup_arithmetic = p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
  p.subgroup_shuffle = p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
  if (v13) {
    p.min_subgroup_size = p13.minSubgroupSize;
    p.max_subgroup_size = p13.maxSubgroupSize;
    p.subgroup_size_control = f13.subgroupSizeControl &&
                              (p13.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT);
    p.compute_full_subgroups = f13.computeFullSubgroups;
    p.integer_dot_product = f13.shaderIntegerDotProduct;
    p.int_dot_4x8_signed_accelerated = p13.integerDotProduct4x8BitPackedSignedAccelerated;
    p.int_dot_4x8_mixed_accelerated = p13.integerDotProduct4x8BitPackedMixedSignednessAccelerated;
    p.synchronization2 = f13.synchronization2;
    p.maintenance4 = f13.maintenance4;
    p.max_buffer_size = p13.maxBufferSize;
  }
  p.shader_float16 = f12.shaderFloat16;
  // With the memory model on, the other shaders' device-scope barriers and atomics need its
  // device scope too: one without the other is of no use to vkllm.
  p.vulkan_memory_model = f12.vulkanMemoryModel && f12.vulkanMemoryModelDeviceScope;
  p.shader_int8 = f12.shaderInt8;
  p.shader_int64 = feats.features.shaderInt64;
  p.storage_buffer_16bit = f11.storageBuffer16BitAccess;
  p.storage_buffer_8bit = f12.storageBuffer8BitAccess;
  p.timeline_semaphore = f12.timelineSemaphore;
  p.has_coopmat_extension = has_coopmat_ext && fcm.cooperativeMatrix;
  if (p.has_coopmat_extension) p.coopmat = query_coopmat(instance, pd);
  if (has_coopmat2_ext) {
    p.coopmat2 = {true,
                  fcm2.cooperativeMatrixWorkgroupScope == VK_TRUE,
                  fcm2.cooperativeMatrixFlexibleDimensions == VK_TRUE,
                  fcm2.cooperativeMatrixReductions == VK_TRUE,
                  fcm2.cooperativeMatrixConversions == VK_TRUE,
                  fcm2.cooperativeMatrixPerElementOperations == VK_TRUE,
                  fcm2.cooperativeMatrixTensorAddressing == VK_TRUE,
                  fcm2.cooperativeMatrixBlockLoads == VK_TRUE};
  }

  const VkPhysicalDeviceLimits& lim = base.limits;
  p.max_compute_shared_memory = lim.maxComputeSharedMemorySize;
  p.max_workgroup_invocations = lim.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; ++i) {
    p.max_workgroup_size[i] = lim.maxComputeWorkGroupSize[i];
    p.max_workgroup_count[i] = lim.maxComputeWorkGroupCount[i];
  }
  p.max_push_constants_size = lim.maxPushConstantsSize;
  p.max_storage_buffer_range = lim.maxStorageBufferRange;
  p.max_memory_allocation_size = p11.maxMemoryAllocationSize;
  p.min_storage_buffer_offset_alignment = lim.minStorageBufferOffsetAlignment;
  p.timestamp_period_ns = lim.timestampPeriod;
  if (has_sm) p.compute_units = sm.shaderSMCount;
  if (has_amd) p.compute_units = amd.shaderEngineCount * amd.shaderArraysPerEngineCount *
                                 amd.computeUnitsPerShaderArray;

  std::uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> queues(nq);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, queues.data());
  for (const auto& q : queues) {
    if (q.queueFlags & VK_QUEUE_COMPUTE_BIT) {
      p.timestamp_valid_bits = q.timestampValidBits;
      break;
    }
  }

  p.memory_budget_extension = contains(exts, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
  VkPhysicalDeviceMemoryProperties2 mem{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2};
  if (p.memory_budget_extension) mem.pNext = &budget;
  vkGetPhysicalDeviceMemoryProperties2(pd, &mem);
  const auto& mp = mem.memoryProperties;
  for (std::uint32_t h = 0; h < mp.memoryHeapCount; ++h) {
    MemoryHeap heap;
    heap.size = mp.memoryHeaps[h].size;
    heap.device_local = mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT;
    for (std::uint32_t t = 0; t < mp.memoryTypeCount; ++t) {
      if (mp.memoryTypes[t].heapIndex == h &&
          (mp.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)) {
        heap.host_visible = true;
      }
    }
    if (p.memory_budget_extension) {
      heap.budget = budget.heapBudget[h];
      heap.usage = budget.heapUsage[h];
    }
    p.heaps.push_back(heap);
  }
  return p;
}

}  // namespace

Instance::Impl::~Impl() {
  if (messenger != VK_NULL_HANDLE) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy) destroy(instance, messenger, nullptr);
  }
  if (instance != VK_NULL_HANDLE) vkDestroyInstance(instance, nullptr);
}

Instance::Instance(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Instance::Instance(Instance&&) noexcept = default;
Instance& Instance::operator=(Instance&&) noexcept = default;
Instance::~Instance() = default;

Instance Instance::create(const InstanceOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->on_message = options.on_validation_message;

  std::uint32_t loader_version = VK_API_VERSION_1_0;
  if (vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS ||
      loader_version < VK_API_VERSION_1_2) {
    throw DeviceError(fmt::format("the Vulkan loader supports only {}; vkllm needs 1.2",
                                  format_api_version(loader_version)));
  }

  std::vector<const char*> layers;
  std::vector<const char*> extensions;
  if (options.validation) {
    if (!has_layer(kValidationLayer)) {
      throw DeviceError(std::string("validation requested but ") + kValidationLayer +
                        " is not installed (Debian: apt-get install vulkan-validationlayers)");
    }
    layers.push_back(kValidationLayer);
    impl->validation = true;
  }
  if (has_instance_extension(VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    impl->debug_utils = true;
  }
  const bool portability = has_instance_extension("VK_KHR_portability_enumeration");
  if (portability) extensions.push_back("VK_KHR_portability_enumeration");

  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "vkllm";
  app.pEngineName = "vkllm";
  app.apiVersion = VK_API_VERSION_1_3;

  VkDebugUtilsMessengerCreateInfoEXT messenger{
      VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  messenger.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                              VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  messenger.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                          VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                          VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  messenger.pfnUserCallback = on_debug_message;
  messenger.pUserData = impl.get();

  VkValidationFeatureEnableEXT sync = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = &sync;

  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  ci.enabledLayerCount = static_cast<std::uint32_t>(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = static_cast<std::uint32_t>(extensions.size());
  ci.ppEnabledExtensionNames = extensions.data();
  if (portability) ci.flags |= 0x00000001;  // VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR
  if (options.validation && impl->debug_utils) {
    ci.pNext = &messenger;  // also covers vkCreateInstance / vkDestroyInstance themselves
    if (options.sync_validation) messenger.pNext = &features;
  }
  VKLLM_VK(vkCreateInstance(&ci, nullptr, &impl->instance));

  if (impl->debug_utils) {
    auto get = [&](const char* name) { return vkGetInstanceProcAddr(impl->instance, name); };
    impl->cmd_begin_label = reinterpret_cast<PFN_vkCmdBeginDebugUtilsLabelEXT>(
        get("vkCmdBeginDebugUtilsLabelEXT"));
    impl->cmd_end_label =
        reinterpret_cast<PFN_vkCmdEndDebugUtilsLabelEXT>(get("vkCmdEndDebugUtilsLabelEXT"));
    impl->set_object_name = reinterpret_cast<PFN_vkSetDebugUtilsObjectNameEXT>(
        get("vkSetDebugUtilsObjectNameEXT"));
    if (options.validation) {
      auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
          get("vkCreateDebugUtilsMessengerEXT"));
      messenger.pNext = nullptr;
      if (create) VKLLM_VK(create(impl->instance, &messenger, nullptr, &impl->messenger));
    }
  }

  std::uint32_t n = 0;
  VKLLM_VK(vkEnumeratePhysicalDevices(impl->instance, &n, nullptr));
  impl->physical.resize(n);
  VKLLM_VK(vkEnumeratePhysicalDevices(impl->instance, &n, impl->physical.data()));
  for (VkPhysicalDevice pd : impl->physical) {
    impl->extensions.push_back(device_extensions(pd));
    impl->caps.push_back(compute_caps(query_props(impl->instance, pd, impl->extensions.back())));
  }
  return Instance(std::move(impl));
}

const std::vector<DeviceCaps>& Instance::devices() const { return impl_->caps; }
bool Instance::validation_enabled() const { return impl_->validation; }

std::size_t Instance::choose_device(std::optional<std::size_t> requested) const {
  const auto& caps = impl_->caps;
  if (caps.empty()) {
    throw DeviceError(
        "no Vulkan device found (install a driver; on a machine without a GPU, Mesa's lavapipe: "
        "apt-get install mesa-vulkan-drivers)");
  }
  if (!requested) {
    if (const char* env = std::getenv("VKLLM_DEVICE"); env && *env) {
      char* end = nullptr;
      const unsigned long v = std::strtoul(env, &end, 10);
      if (*end != '\0') throw DeviceError(fmt::format("VKLLM_DEVICE='{}' is not a number", env));
      requested = v;
    }
  }
  if (requested) {
    if (*requested >= caps.size()) {
      throw DeviceError(fmt::format("device {} requested, but only {} device(s) exist (see "
                                    "`vkllm devices`)", *requested, caps.size()));
    }
    const DeviceCaps& c = caps[*requested];
    if (!c.unusable_reason.empty()) {
      throw DeviceError(fmt::format("device {} ({}) cannot run vkllm: {}", *requested,
                                    c.props.name, c.unusable_reason));
    }
    return *requested;
  }
  std::size_t best = 0;
  for (std::size_t i = 1; i < caps.size(); ++i) {
    if (device_rank(caps[i]) > device_rank(caps[best])) best = i;
  }
  if (!caps[best].unusable_reason.empty()) {
    throw DeviceError(fmt::format("no usable Vulkan device: {} {}", caps[best].props.name,
                                  caps[best].unusable_reason));
  }
  return best;
}

}  // namespace vkllm::platform
