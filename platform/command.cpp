// CommandStream: one command buffer per recording, barriers derived from the buffer ranges each
// command reads and writes, descriptor sets from per-stream pools (so a recording can be
// replayed), timestamps per command and debug labels. Knows nothing of models.
#include <vulkan/vulkan.h>

#include "platform/vk_internal.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/fault.hpp"
#include "common/log.hpp"

namespace vkllm::platform {
namespace {

constexpr std::uint32_t kSetsPerPool = 256;
constexpr std::uint32_t kMaxBindingsPerSet = 8;
constexpr std::uint32_t kMaxTimedCommands = 2048;

// A byte range of one buffer touched since the last barrier.
struct Touch {
  std::uint64_t buffer;
  std::uint64_t begin;
  std::uint64_t end;
  bool overlaps(const Touch& o) const {
    return buffer == o.buffer && begin < o.end && o.begin < end;
  }
};

bool any_overlap(const std::vector<Touch>& set, const Touch& t) {
  return std::any_of(set.begin(), set.end(), [&](const Touch& s) { return s.overlaps(t); });
}

}  // namespace

struct CommandStream::Impl {
  Device::Impl* dev = nullptr;
  DeviceOwned<VkCommandPool, vkDestroyCommandPool> pool;
  VkCommandBuffer cb = VK_NULL_HANDLE;  // freed with the pool
  std::vector<DeviceOwned<VkDescriptorPool, vkDestroyDescriptorPool>> descriptor_pools;
  std::size_t current_pool = 0;
  DeviceOwned<VkQueryPool, vkDestroyQueryPool> queries;
  DeviceOwned<VkQueryPool, vkDestroyQueryPool> span_queries;  // start and end of the recording

  std::vector<Touch> written;  // since the last barrier
  std::vector<Touch> read;
  std::vector<std::string> timed_labels;
  bool recording = false;
  bool recorded = false;
  bool profile = false;
  bool span = false;
  std::size_t barriers = 0;
  std::size_t dispatches = 0;
  std::size_t commands = 0;
  std::uint64_t last_submit = 0;

  ~Impl() {
    // The command buffer and descriptor sets must not be in use when their pools go.
    if (dev && last_submit) {
      try {
        dev->wait_value(last_submit);
      } catch (const std::exception& e) {
        log::error("command stream destroyed after a failed wait: {}", e.what());
      }
    }
  }

  VkDescriptorSet allocate_set(VkDescriptorSetLayout layout) {
    while (true) {
      if (current_pool == descriptor_pools.size()) {
        VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                  kSetsPerPool * kMaxBindingsPerSet};
        VkDescriptorPoolCreateInfo ci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
        ci.maxSets = kSetsPerPool;
        ci.poolSizeCount = 1;
        ci.pPoolSizes = &size;
        VkDescriptorPool p = VK_NULL_HANDLE;
        vk_check(fault::hit("descriptor_pool") ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                                               : vkCreateDescriptorPool(dev->device, &ci, nullptr, &p),
                 "vkCreateDescriptorPool");
        descriptor_pools.emplace_back(dev->device, p);
      }
      VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
      ai.descriptorPool = descriptor_pools[current_pool].get();
      ai.descriptorSetCount = 1;
      ai.pSetLayouts = &layout;
      VkDescriptorSet set = VK_NULL_HANDLE;
      const VkResult r = vkAllocateDescriptorSets(dev->device, &ai, &set);
      if (r == VK_SUCCESS) return set;
      if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) {
        VKLLM_VK(r);
      }
      ++current_pool;  // this pool is full: go on to the next (created on demand)
    }
  }

  // Inserts one barrier if `reads`/`writes` hazard with what came since the last barrier,
  // then records them.
  void track(const std::vector<Touch>& reads, const std::vector<Touch>& writes) {
    bool hazard = false;
    for (const Touch& r : reads) hazard = hazard || any_overlap(written, r);         // RAW
    for (const Touch& w : writes) {
      hazard = hazard || any_overlap(written, w) || any_overlap(read, w);           // WAW, WAR
    }
    if (hazard) {
      VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
      mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
      const VkPipelineStageFlags stages =
          VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
      vkCmdPipelineBarrier(cb, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
      written.clear();
      read.clear();
      ++barriers;
    }
    read.insert(read.end(), reads.begin(), reads.end());
    written.insert(written.end(), writes.begin(), writes.end());
  }

  void begin_command(std::string_view label) {
    if (!recording) throw std::logic_error("CommandStream: record between begin() and end()");
    ++commands;
    if (dev->instance->cmd_begin_label) {
      const std::string l(label);
      VkDebugUtilsLabelEXT info{VK_STRUCTURE_TYPE_DEBUG_UTILS_LABEL_EXT};
      info.pLabelName = l.c_str();
      dev->instance->cmd_begin_label(cb, &info);
    }
    if (profile && timed_labels.size() < kMaxTimedCommands) {
      vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries.get(),
                          static_cast<std::uint32_t>(2 * timed_labels.size()));
    }
  }

  void end_command(std::string_view label) {
    if (profile && timed_labels.size() < kMaxTimedCommands) {
      vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries.get(),
                          static_cast<std::uint32_t>(2 * timed_labels.size() + 1));
      timed_labels.emplace_back(label);
    }
    if (dev->instance->cmd_end_label) dev->instance->cmd_end_label(cb);
  }

  Touch touch(const BufferSpan& s) const {
    const std::uint64_t size = s.resolved_size();
    return Touch{s.buffer->id(), s.offset, s.offset + size};
  }

  void check_span(const BufferSpan& s, std::string_view what) const {
    if (!s.buffer || !*s.buffer) {
      throw std::logic_error(fmt::format("{}: binding to no buffer", what));
    }
    const std::uint64_t size = s.resolved_size();
    if (s.offset > s.buffer->size() || size > s.buffer->size() - s.offset || size == 0) {
      throw std::logic_error(fmt::format("{}: range [{}, +{}) outside a {}-byte buffer", what,
                                         s.offset, size, s.buffer->size()));
    }
  }
};

CommandStream::CommandStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CommandStream::CommandStream(CommandStream&&) noexcept = default;
CommandStream& CommandStream::operator=(CommandStream&&) noexcept = default;
CommandStream::~CommandStream() = default;

CommandStream Device::command_stream() {
  auto s = std::make_unique<CommandStream::Impl>();
  s->dev = impl_.get();
  VkCommandPoolCreateInfo ci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  ci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  ci.queueFamilyIndex = impl_->queue_family;
  VkCommandPool pool = VK_NULL_HANDLE;
  VKLLM_VK(vkCreateCommandPool(impl_->device, &ci, nullptr, &pool));
  s->pool = {impl_->device, pool};
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VKLLM_VK(vkAllocateCommandBuffers(impl_->device, &ai, &s->cb));
  return CommandStream(std::move(s));
}

void CommandStream::begin(bool profile, bool time_span) {
  Impl& s = *impl_;
  if (s.recording) throw std::logic_error("CommandStream::begin while recording");
  s.dev->wait_value(s.last_submit);  // the previous recording may still run
  VKLLM_VK(vkResetCommandBuffer(s.cb, 0));
  for (auto& p : s.descriptor_pools) VKLLM_VK(vkResetDescriptorPool(s.dev->device, p.get(), 0));
  s.current_pool = 0;
  s.written.clear();
  s.read.clear();
  s.timed_labels.clear();
  s.barriers = 0;
  s.dispatches = 0;
  s.commands = 0;
  s.profile = profile && s.dev->caps.timestamps;
  if (profile && !s.dev->caps.timestamps) log::warn("device has no compute timestamps");
  if (s.profile && !s.queries) {
    VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qi.queryCount = 2 * kMaxTimedCommands;
    VkQueryPool qp = VK_NULL_HANDLE;
    VKLLM_VK(vkCreateQueryPool(s.dev->device, &qi, nullptr, &qp));
    s.queries = {s.dev->device, qp};
  }
  s.span = time_span && s.dev->caps.timestamps;
  if (s.span && !s.span_queries) {
    VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qi.queryCount = 2;
    VkQueryPool qp = VK_NULL_HANDLE;
    VKLLM_VK(vkCreateQueryPool(s.dev->device, &qi, nullptr, &qp));
    s.span_queries = {s.dev->device, qp};
  }
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  VKLLM_VK(vkBeginCommandBuffer(s.cb, &bi));
  if (s.profile) vkCmdResetQueryPool(s.cb, s.queries.get(), 0, 2 * kMaxTimedCommands);
  if (s.span) {
    vkCmdResetQueryPool(s.cb, s.span_queries.get(), 0, 2);
    vkCmdWriteTimestamp(s.cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, s.span_queries.get(), 0);
  }
  s.recording = true;
  s.recorded = false;
}

void CommandStream::dispatch(const Pipeline& pipeline, std::span<const Binding> bindings,
                             std::span<const std::byte> push,
                             std::array<std::uint32_t, 3> groups, std::string_view label) {
  Impl& s = *impl_;
  const DeviceCaps& caps = s.dev->caps;
  if (bindings.size() != pipeline.bindings()) {
    throw std::logic_error(fmt::format("{}: {} bindings for a pipeline of {}", label,
                                       bindings.size(), pipeline.bindings()));
  }
  if (push.size() != pipeline.push_constant_size()) {
    throw std::logic_error(fmt::format("{}: {} bytes of push constants, pipeline has {}", label,
                                       push.size(), pipeline.push_constant_size()));
  }
  for (int i = 0; i < 3; ++i) {
    if (groups[i] > caps.props.max_workgroup_count[i]) {
      throw std::logic_error(fmt::format("{}: {} workgroups in dimension {} (device limit {})",
                                         label, groups[i], i, caps.props.max_workgroup_count[i]));
    }
  }
  if (groups[0] == 0 || groups[1] == 0 || groups[2] == 0) return;  // nothing to do
  ++s.dispatches;

  std::vector<Touch> reads, writes;
  std::vector<VkDescriptorBufferInfo> infos(bindings.size());
  for (std::size_t i = 0; i < bindings.size(); ++i) {
    const Binding& b = bindings[i];
    s.check_span(b.span, label);
    const std::uint64_t size = b.span.resolved_size();
    if (size > caps.max_storage_buffer_range) {
      throw std::logic_error(fmt::format(
          "{}: binding {} spans {} bytes, over maxStorageBufferRange {}: split the tensor",
          label, i, size, caps.max_storage_buffer_range));
    }
    if (b.span.offset % caps.storage_offset_alignment != 0) {
      throw std::logic_error(fmt::format("{}: binding {} offset {} not aligned to {}", label, i,
                                         b.span.offset, caps.storage_offset_alignment));
    }
    infos[i] = {b.span.buffer->handle().buffer, b.span.offset, size};
    if (b.access != Access::write) reads.push_back(s.touch(b.span));
    if (b.access != Access::read) writes.push_back(s.touch(b.span));
  }
  s.track(reads, writes);

  const Pipeline::Handle& h = pipeline.handle();
  const VkDescriptorSet set = s.allocate_set(h.set_layout.get());
  std::vector<VkWriteDescriptorSet> w(bindings.size());
  for (std::size_t i = 0; i < bindings.size(); ++i) {
    w[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    w[i].dstSet = set;
    w[i].dstBinding = static_cast<std::uint32_t>(i);
    w[i].descriptorCount = 1;
    w[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w[i].pBufferInfo = &infos[i];
  }
  vkUpdateDescriptorSets(s.dev->device, static_cast<std::uint32_t>(w.size()), w.data(), 0,
                         nullptr);

  s.begin_command(label);
  vkCmdBindPipeline(s.cb, VK_PIPELINE_BIND_POINT_COMPUTE, h.pipeline.get());
  vkCmdBindDescriptorSets(s.cb, VK_PIPELINE_BIND_POINT_COMPUTE, h.layout.get(), 0, 1, &set, 0,
                          nullptr);
  if (!push.empty()) {
    vkCmdPushConstants(s.cb, h.layout.get(), VK_SHADER_STAGE_COMPUTE_BIT, 0,
                       static_cast<std::uint32_t>(push.size()), push.data());
  }
  vkCmdDispatch(s.cb, groups[0], groups[1], groups[2]);
  s.end_command(label);
}

void CommandStream::copy(BufferSpan src, BufferSpan dst, std::string_view label) {
  Impl& s = *impl_;
  s.check_span(src, label);
  s.check_span(dst, label);
  const std::uint64_t size = src.resolved_size();
  if (dst.resolved_size() < size) {
    throw std::logic_error(fmt::format("{}: copy of {} bytes into {}", label, size,
                                       dst.resolved_size()));
  }
  dst.size = size;
  s.track({s.touch(src)}, {s.touch(dst)});
  s.begin_command(label);
  VkBufferCopy region{src.offset, dst.offset, size};
  vkCmdCopyBuffer(s.cb, src.buffer->handle().buffer, dst.buffer->handle().buffer, 1, &region);
  s.end_command(label);
}

void CommandStream::fill(BufferSpan dst, std::uint32_t value, std::string_view label) {
  Impl& s = *impl_;
  s.check_span(dst, label);
  const std::uint64_t size = dst.resolved_size();
  if (dst.offset % 4 != 0 || size % 4 != 0) {
    throw std::logic_error(fmt::format("{}: fill range must be 4-byte aligned", label));
  }
  s.track({}, {s.touch(dst)});
  s.begin_command(label);
  vkCmdFillBuffer(s.cb, dst.buffer->handle().buffer, dst.offset, size, value);
  s.end_command(label);
}

void CommandStream::end() {
  Impl& s = *impl_;
  if (!s.recording) throw std::logic_error("CommandStream::end without begin");
  // Make device writes visible to the host once the submission's semaphore is reached.
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(s.cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
  if (s.span) vkCmdWriteTimestamp(s.cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s.span_queries.get(), 1);
  VKLLM_VK(vkEndCommandBuffer(s.cb));
  s.recording = false;
  s.recorded = true;
}

std::uint64_t CommandStream::submit() {
  Impl& s = *impl_;
  if (!s.recorded) throw std::logic_error("CommandStream::submit before end()");
  // A recording runs once at a time: wait for its previous run before submitting it again.
  s.dev->wait_value(s.last_submit);
  s.last_submit = s.dev->submit(s.cb);
  return s.last_submit;
}

void CommandStream::wait() { impl_->dev->wait_value(impl_->last_submit); }

std::vector<DispatchTiming> CommandStream::timings() const {
  const Impl& s = *impl_;
  std::vector<DispatchTiming> out;
  if (!s.profile || s.timed_labels.empty()) return out;
  std::vector<std::uint64_t> stamps(2 * s.timed_labels.size());
  VKLLM_VK(vkGetQueryPoolResults(s.dev->device, s.queries.get(), 0,
                                 static_cast<std::uint32_t>(stamps.size()),
                                 stamps.size() * sizeof(std::uint64_t), stamps.data(),
                                 sizeof(std::uint64_t),
                                 VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
  const std::uint32_t bits = s.dev->caps.props.timestamp_valid_bits;
  const std::uint64_t mask = bits >= 64 ? ~0ull : ((1ull << bits) - 1);
  const double period_ms = s.dev->caps.props.timestamp_period_ns * 1e-6;
  for (std::size_t i = 0; i < s.timed_labels.size(); ++i) {
    const std::uint64_t t0 = stamps[2 * i] & mask;
    const std::uint64_t t1 = stamps[2 * i + 1] & mask;
    out.push_back({s.timed_labels[i], static_cast<double>((t1 - t0) & mask) * period_ms});
  }
  return out;
}

double CommandStream::span_seconds() const {
  const Impl& s = *impl_;
  if (!s.span || !s.recorded || s.last_submit == 0) return -1;
  std::uint64_t stamps[2] = {};
  VKLLM_VK(vkGetQueryPoolResults(s.dev->device, s.span_queries.get(), 0, 2, sizeof(stamps), stamps,
                                 sizeof(std::uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
  const std::uint32_t bits = s.dev->caps.props.timestamp_valid_bits;
  const std::uint64_t mask = bits >= 64 ? ~0ull : ((1ull << bits) - 1);
  return static_cast<double>(((stamps[1] & mask) - (stamps[0] & mask)) & mask) *
         s.dev->caps.props.timestamp_period_ns * 1e-9;
}

std::size_t CommandStream::barrier_count() const { return impl_->barriers; }
std::size_t CommandStream::dispatch_count() const { return impl_->dispatches; }
std::size_t CommandStream::command_count() const { return impl_->commands; }

}  // namespace vkllm::platform
