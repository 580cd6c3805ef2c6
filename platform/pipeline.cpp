// Compute pipelines from SPIR-V + specialization constants, created on first use, and the
// on-disk pipeline cache keyed by device UUID and driver version. Knows nothing of models.
#include <vulkan/vulkan.h>

#include "platform/vk_internal.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"

namespace vkllm::platform {
namespace {

std::filesystem::path default_cache_dir() {
  if (const char* d = std::getenv("VKLLM_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "vkllm";
  if (const char* h = std::getenv("HOME"); h && *h) {
    return std::filesystem::path(h) / ".cache" / "vkllm";
  }
  return {};
}

std::string hex(const std::array<std::uint8_t, 16>& bytes) {
  std::string s;
  for (std::uint8_t b : bytes) s += fmt::format("{:02x}", b);
  return s;
}

// The header every pipeline cache starts with (Vulkan spec, "Pipeline Cache").
struct CacheHeader {
  std::uint32_t length;
  std::uint32_t version;
  std::uint32_t vendor_id;
  std::uint32_t device_id;
  std::uint8_t uuid[VK_UUID_SIZE];
};

bool cache_matches(const std::vector<char>& data, const DeviceProps& p) {
  if (data.size() < sizeof(CacheHeader)) return false;
  CacheHeader h;
  std::memcpy(&h, data.data(), sizeof h);
  return h.length >= sizeof(CacheHeader) && h.version == VK_PIPELINE_CACHE_HEADER_VERSION_ONE &&
         h.vendor_id == p.vendor_id && h.device_id == p.device_id &&
         std::memcmp(h.uuid, p.pipeline_cache_uuid.data(), VK_UUID_SIZE) == 0;
}

std::string pipeline_key(const PipelineDesc& d) {
  std::string key = d.name;
  for (std::uint32_t v : d.spec_constants) key += fmt::format(":{}", v);
  if (d.required_subgroup_size) key += fmt::format("@sg{}", d.required_subgroup_size);
  return key;
}

}  // namespace

void load_pipeline_cache(Device::Impl& d, const DeviceOptions& options) {
  const DeviceProps& p = d.caps.props;
  std::vector<char> data;
  if (options.pipeline_cache) {
    const auto dir = options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
    if (!dir.empty()) {
      d.pipeline_cache_path = dir / fmt::format("pipelines-{}-{:08x}.bin", hex(p.device_uuid),
                                                p.driver_version);
      std::ifstream in(d.pipeline_cache_path, std::ios::binary);
      if (in) data.assign(std::istreambuf_iterator<char>(in), {});
      // A cache from another driver build is ignored rather than handed to the driver.
      if (!data.empty() && !cache_matches(data, p)) {
        log::info("pipeline cache {} is from another driver; starting empty",
                  d.pipeline_cache_path.string());
        data.clear();
      }
    }
  }
  VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  ci.initialDataSize = data.size();
  ci.pInitialData = data.empty() ? nullptr : data.data();
  VkPipelineCache cache = VK_NULL_HANDLE;
  VKLLM_VK(vkCreatePipelineCache(d.device, &ci, nullptr, &cache));
  d.pipeline_cache = {d.device, cache};
}

Pipeline::~Pipeline() = default;

const Pipeline& Device::pipeline(const PipelineDesc& desc) {
  Impl& d = *impl_;
  const std::string key = pipeline_key(desc);
  std::lock_guard lock(d.pipeline_mutex);
  if (auto it = d.pipelines.find(key); it != d.pipelines.end()) return *it->second;

  const DeviceCaps& caps = d.caps;
  if (desc.spirv.empty()) throw DeviceError(fmt::format("pipeline {}: no SPIR-V", desc.name));
  if (desc.push_constant_size > caps.props.max_push_constants_size) {
    throw Unsupported(fmt::format("pipeline {}: {} bytes of push constants, device allows {}",
                                  desc.name, desc.push_constant_size,
                                  caps.props.max_push_constants_size));
  }
  const std::uint32_t wg = desc.spec_constants.empty() ? 0 : desc.spec_constants[0];
  if (wg > caps.props.max_workgroup_invocations || wg > caps.props.max_workgroup_size[0]) {
    throw Unsupported(fmt::format("pipeline {}: workgroup size {} over the device's limit {}",
                                  desc.name, wg, caps.props.max_workgroup_invocations));
  }

  auto pipeline = std::unique_ptr<Pipeline>(new Pipeline());
  pipeline->name_ = desc.name;
  pipeline->bindings_ = desc.bindings;
  pipeline->push_constant_size_ = desc.push_constant_size;
  pipeline->workgroup_size_ = wg;
  pipeline->device_ = this;
  pipeline->handle_ = std::make_unique<Pipeline::Handle>();
  Pipeline::Handle& h = *pipeline->handle_;

  std::vector<VkDescriptorSetLayoutBinding> bindings(desc.bindings);
  for (std::uint32_t i = 0; i < desc.bindings; ++i) {
    bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  }
  VkDescriptorSetLayoutCreateInfo dci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dci.bindingCount = desc.bindings;
  dci.pBindings = bindings.data();
  VkDescriptorSetLayout dsl = VK_NULL_HANDLE;
  VKLLM_VK(vkCreateDescriptorSetLayout(d.device, &dci, nullptr, &dsl));
  h.set_layout = {d.device, dsl};

  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, desc.push_constant_size};
  VkPipelineLayoutCreateInfo lci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  lci.setLayoutCount = 1;
  lci.pSetLayouts = &dsl;
  lci.pushConstantRangeCount = desc.push_constant_size ? 1 : 0;
  lci.pPushConstantRanges = &range;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VKLLM_VK(vkCreatePipelineLayout(d.device, &lci, nullptr, &layout));
  h.layout = {d.device, layout};

  VkShaderModuleCreateInfo sci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  sci.codeSize = desc.spirv.size_bytes();
  sci.pCode = desc.spirv.data();
  VkShaderModule module = VK_NULL_HANDLE;
  VKLLM_VK(vkCreateShaderModule(d.device, &sci, nullptr, &module));
  DeviceOwned<VkShaderModule, vkDestroyShaderModule> module_owner(d.device, module);

  std::vector<VkSpecializationMapEntry> entries(desc.spec_constants.size());
  for (std::uint32_t i = 0; i < entries.size(); ++i) {
    entries[i] = {i, i * 4u, 4u};
  }
  VkSpecializationInfo spec{static_cast<std::uint32_t>(entries.size()), entries.data(),
                            desc.spec_constants.size() * 4, desc.spec_constants.data()};

  VkPipelineShaderStageRequiredSubgroupSizeCreateInfo sg{
      VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
  sg.requiredSubgroupSize = desc.required_subgroup_size;
  VkComputePipelineCreateInfo pci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  pci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  pci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  pci.stage.module = module;
  pci.stage.pName = "main";
  pci.stage.pSpecializationInfo = entries.empty() ? nullptr : &spec;
  if (desc.required_subgroup_size) {
    if (!caps.subgroup_size_control || desc.required_subgroup_size < caps.min_subgroup_size ||
        desc.required_subgroup_size > caps.max_subgroup_size) {
      throw Unsupported(fmt::format("pipeline {}: subgroup size {} not available ({}..{})",
                                    desc.name, desc.required_subgroup_size,
                                    caps.min_subgroup_size, caps.max_subgroup_size));
    }
    pci.stage.pNext = &sg;
  }
  pci.layout = layout;
  VkPipeline vk_pipeline = VK_NULL_HANDLE;
  VKLLM_VK(vkCreateComputePipelines(d.device, d.pipeline_cache.get(), 1, &pci, nullptr,
                                    &vk_pipeline));
  h.pipeline = {d.device, vk_pipeline};
  d.set_name(VK_OBJECT_TYPE_PIPELINE, reinterpret_cast<std::uint64_t>(vk_pipeline), key);
  d.pipeline_cache_dirty = true;

  const Pipeline& ref = *pipeline;
  d.pipelines.emplace(key, std::move(pipeline));
  return ref;
}

std::size_t Device::pipeline_count() const {
  std::lock_guard lock(impl_->pipeline_mutex);
  return impl_->pipelines.size();
}

const std::filesystem::path& Device::pipeline_cache_path() const {
  return impl_->pipeline_cache_path;
}

void Device::save_pipeline_cache() {
  Impl& d = *impl_;
  std::lock_guard lock(d.pipeline_mutex);
  if (d.pipeline_cache_path.empty() || !d.pipeline_cache) return;
  std::size_t size = 0;
  VKLLM_VK(vkGetPipelineCacheData(d.device, d.pipeline_cache.get(), &size, nullptr));
  std::vector<char> data(size);
  VKLLM_VK(vkGetPipelineCacheData(d.device, d.pipeline_cache.get(), &size, data.data()));
  data.resize(size);
  std::error_code ec;
  std::filesystem::create_directories(d.pipeline_cache_path.parent_path(), ec);
  // Write then rename, so a crash never leaves half a cache behind.
  const auto tmp = d.pipeline_cache_path.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.close();  // flushes: a full disk shows here, and the half-written file is never renamed
    if (!out) {
      std::filesystem::remove(tmp, ec);
      throw DeviceError(fmt::format("cannot write pipeline cache {}", tmp));
    }
  }
  std::filesystem::rename(tmp, d.pipeline_cache_path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw DeviceError(fmt::format("cannot write pipeline cache {}: {}",
                                  d.pipeline_cache_path.string(), ec.message()));
  }
  d.pipeline_cache_dirty = false;
}

}  // namespace vkllm::platform
