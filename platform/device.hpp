// A logical device and what lives on it: buffers sub-allocated from arenas by intent, compute
// pipelines (cached on disk), and command streams with tracked barriers, timeline-semaphore
// submission, timestamps and debug labels. Knows no models; exposes no Vulkan types.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "platform/device_caps.hpp"
#include "platform/instance.hpp"

namespace vkllm::platform {

class Device;

// Why memory is wanted decides where it lives and how it is sub-allocated (docs/ARCHITECTURE.md "Decisions and why": memory).
enum class MemoryIntent {
  weights,      // device-local, written once through staging
  kv_cache,     // device-local, long-lived
  activations,  // device-local, reused every step
  upload,       // host-visible, coherent: host writes, device reads
  readback,     // host-visible, coherent (cached when possible): device writes, host reads
};
constexpr std::size_t kMemoryIntentCount = 5;
const char* to_string(MemoryIntent intent);

// A range of device memory with its own buffer object. Move-only; returns its range to the arena.
class Buffer {
 public:
  Buffer() noexcept;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer();

  std::uint64_t size() const { return size_; }
  MemoryIntent intent() const { return intent_; }
  // Host pointer when the memory is host-visible (always for upload/readback), else null.
  std::byte* mapped() const { return mapped_; }
  std::uint64_t id() const { return id_; }  // unique per device, for hazard tracking
  explicit operator bool() const { return device_ != nullptr; }

  struct Handle;  // platform-private
  const Handle& handle() const { return *handle_; }

 private:
  friend class Device;
  Device* device_ = nullptr;
  std::unique_ptr<Handle> handle_;
  std::uint64_t size_ = 0;
  std::uint64_t id_ = 0;
  MemoryIntent intent_ = MemoryIntent::activations;
  std::byte* mapped_ = nullptr;
};

constexpr std::uint64_t kWholeBuffer = ~0ull;

// A byte range of a buffer, as bound to a shader or copied.
struct BufferSpan {
  const Buffer* buffer = nullptr;
  std::uint64_t offset = 0;
  std::uint64_t size = kWholeBuffer;  // to the end of the buffer

  BufferSpan() = default;
  BufferSpan(const Buffer& b, std::uint64_t off = 0, std::uint64_t sz = kWholeBuffer)
      : buffer(&b), offset(off), size(sz) {}
  std::uint64_t resolved_size() const;
};

enum class Access { read, write, read_write };

struct Binding {
  BufferSpan span;
  Access access = Access::read;
};

struct PipelineDesc {
  std::string name;                           // debug name; part of the cache key
  std::span<const std::uint32_t> spirv;
  std::uint32_t bindings = 0;                 // storage buffers at bindings 0..n-1
  std::uint32_t push_constant_size = 0;
  std::vector<std::uint32_t> spec_constants;  // constant_id i = [i]; [0] is the workgroup size
  std::uint32_t required_subgroup_size = 0;   // 0: the driver's choice
};

class Pipeline {
 public:
  ~Pipeline();
  const std::string& name() const { return name_; }
  std::uint32_t bindings() const { return bindings_; }
  std::uint32_t push_constant_size() const { return push_constant_size_; }
  std::uint32_t workgroup_size() const { return workgroup_size_; }

  struct Handle;
  const Handle& handle() const { return *handle_; }

 private:
  friend class Device;
  Pipeline() = default;
  std::string name_;
  std::uint32_t bindings_ = 0;
  std::uint32_t push_constant_size_ = 0;
  std::uint32_t workgroup_size_ = 0;
  std::unique_ptr<Handle> handle_;
  Device* device_ = nullptr;
};

struct DispatchTiming {
  std::string label;
  double ms = 0;
};

// Records commands into one command buffer, inserting a barrier only where a command touches a
// range an earlier command of the same recording wrote (or writes one it read). A recording can
// be submitted again and again (replay) until the next begin().
class CommandStream {
 public:
  CommandStream(CommandStream&&) noexcept;
  CommandStream& operator=(CommandStream&&) noexcept;
  ~CommandStream();

  // Starts a new recording. With `profile`, each dispatch and copy is timed; with `time_span`,
  // the whole recording (two timestamps: span_seconds()).
  void begin(bool profile = false, bool time_span = false);
  void dispatch(const Pipeline& pipeline, std::span<const Binding> bindings,
                std::span<const std::byte> push, std::array<std::uint32_t, 3> groups,
                std::string_view label);
  template <typename Push>
  void dispatch(const Pipeline& pipeline, std::initializer_list<Binding> bindings,
                const Push& push, std::array<std::uint32_t, 3> groups, std::string_view label) {
    dispatch(pipeline, std::span<const Binding>(bindings.begin(), bindings.size()),
             std::as_bytes(std::span<const Push>(&push, 1)), groups, label);
  }
  void copy(BufferSpan src, BufferSpan dst, std::string_view label = "copy");
  void fill(BufferSpan dst, std::uint32_t value, std::string_view label = "fill");
  void end();

  // Submits the recording; waits on the previous submission of this device's queue so that
  // replays see each other's writes. Returns the timeline value it signals.
  std::uint64_t submit();
  void wait();  // until the last submit of this stream finished (throws DeviceLost on loss)
  void submit_and_wait() { submit(); wait(); }

  // After wait(), with profiling on: one entry per dispatch/copy, in record order.
  std::vector<DispatchTiming> timings() const;
  // After wait(), begun with time_span: the device time of the last run, first command to last
  // (-1 when not timed or the device has no compute timestamps).
  double span_seconds() const;
  std::size_t barrier_count() const;  // barriers the tracker inserted in this recording
  std::size_t dispatch_count() const;  // dispatches recorded (empty grids not counted)
  std::size_t command_count() const;

  struct Impl;

 private:
  friend class Device;
  explicit CommandStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct MemoryUsage {
  std::uint64_t reserved = 0;  // device memory allocated for this intent
  std::uint64_t used = 0;      // sub-allocated to live buffers
  std::uint64_t allocations = 0;  // vkAllocateMemory blocks
};

struct DeviceOptions {
  // Where compiled pipelines are cached; empty: $VKLLM_CACHE_DIR, $XDG_CACHE_HOME/vkllm or
  // ~/.cache/vkllm. The file is keyed by device UUID and driver version.
  std::filesystem::path cache_dir;
  bool pipeline_cache = true;
};

// What VK_EXT_device_fault reports after a loss, in plain types.
struct DeviceFaultInfo {
  struct Address {
    std::string type;  // "invalid read", "instruction pointer (fault)", ...
    std::uint64_t reported = 0, precision = 0;
  };
  struct Vendor {
    std::string description;
    std::uint64_t code = 0, data = 0;
  };
  std::string description;
  std::vector<Address> addresses;
  std::vector<Vendor> vendors;
  std::uint64_t binary_bytes = 0;  // the vendor's binary dump, not read
};
// As text: the description, then one line per faulting address and per vendor record.
std::string format_device_fault(const DeviceFaultInfo& f);

class Device {
 public:
  // Opens physical device `index` of the instance. The instance must outlive the device.
  static std::unique_ptr<Device> open(Instance& instance, std::size_t index,
                                      const DeviceOptions& options = {});
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const DeviceCaps& caps() const;
  const std::string& name() const;

  // Throws OutOfMemory naming the size, intent and the limit it broke.
  Buffer create_buffer(std::uint64_t size, MemoryIntent intent, std::string_view name);
  // Host <-> device copies that wait for completion (staging when the buffer is not mapped).
  void upload(const Buffer& dst, std::uint64_t offset, std::span<const std::byte> bytes);
  void download(const Buffer& src, std::uint64_t offset, std::span<std::byte> bytes);

  // Created on first use, then cached by (name, spec constants, subgroup size).
  const Pipeline& pipeline(const PipelineDesc& desc);
  std::size_t pipeline_count() const;
  void save_pipeline_cache();
  const std::filesystem::path& pipeline_cache_path() const;

  CommandStream command_stream();

  std::array<MemoryUsage, kMemoryIntentCount> memory_usage() const;
  void wait_idle();

  // After VK_ERROR_DEVICE_LOST: what the driver says about the fault through
  // VK_EXT_device_fault (description, faulting addresses, vendor codes), one line each; a line
  // saying why there is nothing when the device lacks the extension or the query fails.
  std::string fault_report() const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  friend class Buffer;
  explicit Device(std::unique_ptr<Impl> impl);
  void release(Buffer& buffer) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vkllm::platform
