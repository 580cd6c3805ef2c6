// Memory by intent: each intent has its own arena of large vkAllocateMemory blocks, carved into
// buffers first-fit with coalescing; limits (maxMemoryAllocationSize) respected; usage reported.
// Knows nothing of models.
#include <vulkan/vulkan.h>

#include "platform/vk_internal.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/fault.hpp"
#include "common/log.hpp"

namespace vkllm::platform {
namespace {

struct IntentPolicy {
  VkMemoryPropertyFlags required;
  VkMemoryPropertyFlags preferred;
  std::uint64_t block_size;  // default arena block; larger buffers get a block of their own
};

IntentPolicy policy(MemoryIntent intent) {
  constexpr std::uint64_t MiB = 1ull << 20;
  switch (intent) {
    case MemoryIntent::weights:
      return {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, 256 * MiB};
    case MemoryIntent::kv_cache:
      return {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, 256 * MiB};
    case MemoryIntent::activations:
      return {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, 64 * MiB};
    case MemoryIntent::upload:
      return {VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0,
              32 * MiB};
    case MemoryIntent::readback:
      return {VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
              VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 16 * MiB};
  }
  return {0, 0, 64 * MiB};
}

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Best memory type: has every required flag, then most preferred flags, then the one the driver
// lists first (drivers order types by preference).
int pick_memory_type(const VkPhysicalDeviceMemoryProperties& mp, std::uint32_t type_bits,
                     const IntentPolicy& p) {
  int best = -1;
  int best_score = -1;
  for (std::uint32_t i = 0; i < mp.memoryTypeCount; ++i) {
    if (!(type_bits & (1u << i))) continue;
    const VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
    if ((f & p.required) != p.required) continue;
    const int score = __builtin_popcount(f & p.preferred);
    if (score > best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

// First fit inside a block; returns the offset or ~0.
std::uint64_t take_range(MemoryBlock& b, std::uint64_t size, std::uint64_t alignment) {
  for (auto it = b.free.begin(); it != b.free.end(); ++it) {
    const std::uint64_t start = align_up(it->first, alignment);
    const std::uint64_t end = it->first + it->second;
    if (start > end || end - start < size) continue;
    const std::uint64_t range_start = it->first;
    b.free.erase(it);
    if (start > range_start) b.free.emplace(range_start, start - range_start);
    if (end > start + size) b.free.emplace(start + size, end - (start + size));
    b.used += size;
    return start;
  }
  return ~0ull;
}

void give_range(MemoryBlock& b, std::uint64_t offset, std::uint64_t size) {
  b.used -= size;
  auto [it, inserted] = b.free.emplace(offset, size);
  (void)inserted;
  // Coalesce with the next and the previous free range.
  auto next = std::next(it);
  if (next != b.free.end() && it->first + it->second == next->first) {
    it->second += next->second;
    b.free.erase(next);
  }
  if (it != b.free.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      b.free.erase(it);
    }
  }
}

}  // namespace

const char* to_string(MemoryIntent intent) {
  switch (intent) {
    case MemoryIntent::weights: return "weights";
    case MemoryIntent::kv_cache: return "kv-cache";
    case MemoryIntent::activations: return "activations";
    case MemoryIntent::upload: return "upload";
    case MemoryIntent::readback: return "readback";
  }
  return "?";
}

std::uint64_t BufferSpan::resolved_size() const {
  if (!buffer) return 0;
  if (size != kWholeBuffer) return size;
  return offset <= buffer->size() ? buffer->size() - offset : 0;
}

Buffer::Buffer() noexcept = default;

Buffer::Buffer(Buffer&& o) noexcept
    : device_(std::exchange(o.device_, nullptr)),
      handle_(std::move(o.handle_)),
      size_(o.size_),
      id_(o.id_),
      intent_(o.intent_),
      mapped_(std::exchange(o.mapped_, nullptr)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (device_) device_->release(*this);
    device_ = std::exchange(o.device_, nullptr);
    handle_ = std::move(o.handle_);
    size_ = o.size_;
    id_ = o.id_;
    intent_ = o.intent_;
    mapped_ = std::exchange(o.mapped_, nullptr);
  }
  return *this;
}

Buffer::~Buffer() {
  if (device_) device_->release(*this);
}

Buffer Device::create_buffer(std::uint64_t size, MemoryIntent intent, std::string_view name) {
  Impl& d = *impl_;
  const DeviceCaps& caps = d.caps;
  if (size == 0) throw InvalidRequest(fmt::format("buffer '{}' of size 0", name));
  const std::uint64_t limit = caps.props.max_buffer_size ? caps.props.max_buffer_size : ~0ull;
  if (size > caps.max_allocation || size > limit) {
    throw OutOfMemory(fmt::format(
        "buffer '{}' ({} MiB, {}) exceeds the device's maxMemoryAllocationSize ({} MiB); split it",
        name, size >> 20, to_string(intent), caps.max_allocation >> 20));
  }

  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = size;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
              VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkBuffer vk_buffer = VK_NULL_HANDLE;
  VKLLM_VK(vkCreateBuffer(d.device, &bci, nullptr, &vk_buffer));
  DeviceOwned<VkBuffer, vkDestroyBuffer> owned(d.device, vk_buffer);

  VkMemoryRequirements req{};
  vkGetBufferMemoryRequirements(d.device, vk_buffer, &req);
  const IntentPolicy pol = policy(intent);
  const int type = pick_memory_type(d.memory_properties, req.memoryTypeBits, pol);
  if (type < 0) {
    throw DeviceError(fmt::format("no memory type for {} buffers on {}", to_string(intent),
                                  caps.props.name));
  }
  const std::uint64_t alignment =
      std::max<std::uint64_t>(req.alignment, caps.storage_offset_alignment);
  const std::uint64_t alloc_size = align_up(req.size, alignment);

  std::lock_guard lock(d.memory_mutex);
  auto& arena = d.arenas[static_cast<std::size_t>(intent)];
  MemoryBlock* block = nullptr;
  std::uint64_t offset = ~0ull;
  for (auto& b : arena) {
    if (b->type_index != static_cast<std::uint32_t>(type)) continue;
    offset = take_range(*b, alloc_size, alignment);
    if (offset != ~0ull) {
      block = b.get();
      break;
    }
  }
  if (!block) {
    const std::uint64_t block_size =
        std::min(std::max(pol.block_size, alloc_size), caps.max_allocation);
    VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    mai.allocationSize = block_size;
    mai.memoryTypeIndex = static_cast<std::uint32_t>(type);
    auto nb = std::make_unique<MemoryBlock>();
    const VkResult r = fault::hit("alloc") ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                                           : vkAllocateMemory(d.device, &mai, nullptr, &nb->memory);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
      throw OutOfMemory(fmt::format("out of device memory allocating {} MiB for {} buffer '{}'",
                                    block_size >> 20, to_string(intent), name));
    }
    VKLLM_VK(r);
    nb->size = block_size;
    nb->type_index = static_cast<std::uint32_t>(type);
    nb->free.emplace(0, block_size);
    const VkMemoryPropertyFlags flags = d.memory_properties.memoryTypes[type].propertyFlags;
    if (flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
      void* p = nullptr;
      const VkResult mr = vkMapMemory(d.device, nb->memory, 0, VK_WHOLE_SIZE, 0, &p);
      if (mr != VK_SUCCESS) {
        vkFreeMemory(d.device, nb->memory, nullptr);
        VKLLM_VK(mr);
      }
      nb->mapped = static_cast<std::byte*>(p);
    }
    offset = take_range(*nb, alloc_size, alignment);
    if (offset == ~0ull) {
      if (nb->mapped) vkUnmapMemory(d.device, nb->memory);
      vkFreeMemory(d.device, nb->memory, nullptr);
      throw OutOfMemory(fmt::format("buffer '{}' ({} bytes aligned) does not fit one allocation",
                                    name, alloc_size));
    }
    block = nb.get();
    arena.push_back(std::move(nb));
  }
  const VkResult br = vkBindBufferMemory(d.device, vk_buffer, block->memory, offset);
  if (br != VK_SUCCESS) {
    give_range(*block, offset, alloc_size);
    VKLLM_VK(br);
  }

  Buffer b;
  b.device_ = this;
  b.handle_ = std::make_unique<Buffer::Handle>();
  b.handle_->buffer = vk_buffer;
  b.handle_->block = block;
  b.handle_->offset = offset;
  b.handle_->alloc_size = alloc_size;
  b.size_ = size;
  b.id_ = d.next_buffer_id++;
  b.intent_ = intent;
  b.mapped_ = block->mapped ? block->mapped + offset : nullptr;
  d.set_name(VK_OBJECT_TYPE_BUFFER, reinterpret_cast<std::uint64_t>(vk_buffer), name);
  owned.release();  // ownership moves to the Buffer (destroyed in Device::release)
  return b;
}

void Device::release(Buffer& b) noexcept {
  Impl& d = *impl_;
  if (!b.handle_) return;
  vkDestroyBuffer(d.device, b.handle_->buffer, nullptr);
  std::lock_guard lock(d.memory_mutex);
  MemoryBlock* block = b.handle_->block;
  give_range(*block, b.handle_->offset, b.handle_->alloc_size);
  if (block->used == 0) {
    auto& arena = d.arenas[static_cast<std::size_t>(b.intent_)];
    auto it = std::find_if(arena.begin(), arena.end(),
                           [&](const auto& p) { return p.get() == block; });
    if (it != arena.end()) {
      vkFreeMemory(d.device, block->memory, nullptr);
      arena.erase(it);
    }
  }
  b.handle_.reset();
  b.device_ = nullptr;
  b.mapped_ = nullptr;
}

std::array<MemoryUsage, kMemoryIntentCount> Device::memory_usage() const {
  std::lock_guard lock(impl_->memory_mutex);
  std::array<MemoryUsage, kMemoryIntentCount> out{};
  for (std::size_t i = 0; i < kMemoryIntentCount; ++i) {
    for (const auto& b : impl_->arenas[i]) {
      out[i].reserved += b->size;
      out[i].used += b->used;
      out[i].allocations += 1;
    }
  }
  return out;
}

Device::Impl::~Impl() {
  for (auto& arena : arenas) {
    for (auto& b : arena) {
      log::warn("device closed with {} bytes of buffers still alive", b->used);
      vkFreeMemory(device, b->memory, nullptr);
    }
    arena.clear();
  }
}

}  // namespace vkllm::platform
