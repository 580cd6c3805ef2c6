// What a device is and can do: raw queried properties (DeviceProps) and the capabilities,
// quirks and tuning derived from them by a pure function. Knows no Vulkan types, no models.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vkllm::platform {

enum class DeviceType { discrete, integrated, virtual_gpu, cpu, other };
enum class Vendor { amd, intel, nvidia, apple, arm, qualcomm, imgtec, software, other };

// Architecture classes that tuning cares about, derived from properties, never from names alone.
enum class ArchClass {
  nvidia_tensor_core,  // NVIDIA with cooperative matrix (Turing and newer)
  nvidia_legacy,       // NVIDIA without cooperative matrix
  amd_rdna,            // AMD with subgroup size 32..64 (wave32 capable)
  amd_gcn,             // AMD with fixed wave64
  intel_xe,            // Intel with subgroup size control (Xe, Arc)
  intel_legacy,
  mobile,              // ARM, Qualcomm, ImgTec
  apple,
  cpu,                 // software rasterizers (lavapipe, SwiftShader)
  unknown,
};

// Component types of cooperative matrices (VkComponentTypeKHR subset we care about).
enum class ComponentType { f16, f32, bf16, s8, u8, s32, u32, other };

struct CoopMatShape {
  std::uint32_t m = 0, n = 0, k = 0;
  ComponentType a = ComponentType::other, b = ComponentType::other;
  ComponentType c = ComponentType::other, result = ComponentType::other;
  bool subgroup_scope = true;
};

struct MemoryHeap {
  std::uint64_t size = 0;
  std::uint64_t budget = 0;  // from VK_EXT_memory_budget; 0 when unknown
  std::uint64_t usage = 0;   // ditto
  bool device_local = false;
  bool host_visible = false;  // some memory type on this heap is host-visible
};

// Everything we query from a physical device, as plain data. Tests fabricate these.
struct DeviceProps {
  std::string name;
  std::uint32_t vendor_id = 0;
  std::uint32_t device_id = 0;
  DeviceType type = DeviceType::other;
  std::uint32_t api_version = 0;     // VK_MAKE_API_VERSION encoding
  std::uint32_t driver_version = 0;  // vendor encoding
  std::uint32_t driver_id = 0;       // VkDriverId
  std::string driver_name;
  std::string driver_info;
  std::array<std::uint8_t, 16> pipeline_cache_uuid{};
  std::array<std::uint8_t, 16> device_uuid{};

  // Subgroups (compute stage).
  std::uint32_t subgroup_size = 0;
  std::uint32_t min_subgroup_size = 0;
  std::uint32_t max_subgroup_size = 0;
  bool subgroup_size_control = false;
  bool compute_full_subgroups = false;
  bool subgroup_in_compute = false;
  bool subgroup_basic = false;
  bool subgroup_arithmetic = false;
  bool subgroup_shuffle = false;

  // Arithmetic and storage.
  bool shader_float16 = false;
  bool shader_int8 = false;
  bool shader_int64 = false;
  bool storage_buffer_16bit = false;
  bool storage_buffer_8bit = false;
  bool integer_dot_product = false;  // shaderIntegerDotProduct feature
  bool int_dot_4x8_signed_accelerated = false;
  bool int_dot_4x8_mixed_accelerated = false;
  std::vector<CoopMatShape> coopmat;  // VK_KHR_cooperative_matrix properties
  bool has_coopmat_extension = false;
  // VK_NV_cooperative_matrix2 (detected and reported; no kernel uses it yet): whether the
  // extension is there and which of its features the device has.
  struct CoopMat2 {
    bool present = false;
    bool workgroup_scope = false, flexible_dimensions = false, reductions = false,
         conversions = false, per_element_operations = false, tensor_addressing = false,
         block_loads = false;
  } coopmat2;
  // What SPIR-V 1.6 shaders with cooperative matrices declare: the Vulkan memory model
  // (GL_KHR_memory_scope_semantics; with its device scope, which the other shaders' barriers
  // then need) and LocalSizeId (maintenance4).
  bool vulkan_memory_model = false;
  bool maintenance4 = false;

  // Features the platform layer itself relies on.
  bool timeline_semaphore = false;
  bool synchronization2 = false;
  bool memory_budget_extension = false;

  // Limits.
  std::uint32_t max_compute_shared_memory = 0;
  std::uint32_t max_workgroup_invocations = 0;
  std::array<std::uint32_t, 3> max_workgroup_size{};
  std::array<std::uint32_t, 3> max_workgroup_count{};
  std::uint32_t max_push_constants_size = 0;
  std::uint64_t max_storage_buffer_range = 0;
  std::uint64_t max_memory_allocation_size = 0;
  std::uint64_t min_storage_buffer_offset_alignment = 0;
  std::uint64_t max_buffer_size = 0;  // maintenance4; 0 when unknown
  float timestamp_period_ns = 0;
  std::uint32_t timestamp_valid_bits = 0;  // of the compute queue; 0: no timestamps

  std::optional<std::uint32_t> compute_units;  // SMs / CUs where the driver reports them

  std::vector<MemoryHeap> heaps;
};

// Named driver quirks. Each one names the driver and why it exists.
struct Quirks {
  // lavapipe/llvmpipe run one workgroup per CPU thread: many small workgroups keep every core
  // busy, large ones serialize. (Mesa lavapipe, all versions.)
  bool prefer_small_workgroups = false;
  // Memory is host memory: device-local buffers are host-visible, so uploads can skip staging.
  // (Mesa lavapipe; integrated GPUs with a unified heap.)
  bool unified_memory = false;
};

// Per-device knobs for the kernels of each op family (specialization constants).
struct Tuning {
  std::uint32_t elementwise_workgroup = 256;
  std::uint32_t rows_workgroup = 256;    // RMSNorm, softmax: one workgroup per row
  std::uint32_t matvec_workgroup = 128;
  std::uint32_t matvec_rows = 2;         // rows per matvec workgroup
  std::uint32_t matmul_rows = 2;         // rows per prefill workgroup
  std::uint32_t matmul_tokens = 8;       // tokens per prefill workgroup (each weight read serves them)
  // The GEMV's LANE_ROWS layout (shaders/matmul.comp): each invocation owns matvec_rows /
  // matmul_rows whole rows, a workgroup matvec_workgroup times as many; no reduction. For CPU
  // devices, where activation reads that all invocations share are one scalar load.
  bool matvec_lane_rows = false;
  // The tiled GEMM (shaders/matmul_tiled.comp): a tiled_rows x tiled_tokens output tile per
  // workgroup, tiled_thread_rows (even) x tiled_thread_tokens (a multiple of 4) per invocation,
  // so (rows / thread_rows) * (tokens / thread_tokens) invocations. Shared memory: 128 bytes per
  // tile row and token (16 KiB at 64 x 64, the least a device may have).
  std::uint32_t tiled_rows = 64;
  std::uint32_t tiled_tokens = 64;
  std::uint32_t tiled_thread_rows = 4;
  std::uint32_t tiled_thread_tokens = 4;
  // From this many tokens the automatic choice runs the tiled GEMM (ops::choose_matmul).
  std::uint32_t tiled_min_tokens = 16;
  // The cooperative-matrix GEMM (shaders/matmul_coopmat.comp): the f16 x f16 -> f32 matrix
  // shape it multiplies with (coopmat_m x coopmat_n x coopmat_k, one the device reports; 0: the
  // device has none it can use), coopmat_rows x coopmat_tokens output tiles computed by
  // coopmat_sg_rows x coopmat_sg_tokens subgroups of coopmat_subgroup invocations (the
  // pipeline requires that size where the device may vary it).
  std::uint32_t coopmat_m = 0, coopmat_n = 0, coopmat_k = 0;
  std::uint32_t coopmat_rows = 64, coopmat_tokens = 64;
  std::uint32_t coopmat_sg_rows = 2, coopmat_sg_tokens = 2;
  std::uint32_t coopmat_subgroup = 0;
  bool coopmat_require_subgroup = false;
  // From this many tokens the automatic choice runs it instead of the tiled GEMM; 0: never.
  std::uint32_t coopmat_min_tokens = 0;
  // The integer-dot kernels (int8 activations: shaders/matmul.comp INTDOT, the GEMV, below
  // tiled_min_tokens; shaders/matmul_tiled.comp INTDOT, the tiled GEMM, from there): whether the
  // device has packed 4 x 8-bit dot products at all, and up to how many tokens the automatic
  // choice runs them (0: never; only where the driver says they are accelerated).
  bool intdot = false;
  std::uint32_t intdot_max_tokens = 0;
  // Attention over prompt chunks (shaders/attention_tiled.comp): attn_subgroups subgroups of
  // attn_subgroup invocations (0: not on this device, whose subgroup size may vary and cannot be
  // required), attn_sg_rows query rows each, attn_lane_keys keys per invocation in each key tile
  // (tiles of attn_subgroup x attn_lane_keys keys). ops::record_attention takes fewer rows where
  // a head size would not fit the device's shared memory.
  std::uint32_t attn_subgroup = 0;
  bool attn_require_subgroup = false;
  std::uint32_t attn_subgroups = 4;
  std::uint32_t attn_sg_rows = 8;
  std::uint32_t attn_lane_keys = 1;
  // Flash-decoding: workgroups a decode step's attention should fill the device with (sequences
  // x KV heads x key ranges). More ranges than that only add workgroups that wait or exit: on
  // lavapipe even an empty one costs about 0.1 ms (measured: micro, 2048 keys, 32 vs 9 ranges
  // gave 44 vs 71 tok/s).
  std::uint32_t attention_workgroups = 256;
  // The sampler cuts longer rows into slices of this many columns, a workgroup each
  // (ops::record_sample; at least ops::kSampleMinSliceCols). On lavapipe each workgroup's
  // barriers cost CPU time and two threads are all there is: few, long slices.
  std::uint32_t sample_slice_cols = 4096;
};

// What the rest of vkllm reads: derived once from DeviceProps by compute_caps().
struct DeviceCaps {
  DeviceProps props;
  Vendor vendor = Vendor::other;
  ArchClass arch = ArchClass::unknown;
  std::string api_version_string;
  std::string driver_version_string;

  std::uint32_t subgroup_size = 0;  // the default the driver uses
  std::uint32_t min_subgroup_size = 0;
  std::uint32_t max_subgroup_size = 0;
  bool subgroup_size_control = false;
  bool subgroup_arithmetic = false;  // in compute shaders

  bool fp16_storage = false;
  bool fp16_math = false;
  bool int8_storage = false;
  bool int8_math = false;
  bool integer_dot = false;
  bool integer_dot_accelerated = false;
  // Some f16 x f16 -> f16/f32 subgroup shape, with what its shaders need besides (fp16 math and
  // storage, the Vulkan memory model, maintenance4).
  bool coopmat = false;
  std::vector<CoopMatShape> coopmat_shapes;

  std::uint32_t shared_memory = 0;
  std::optional<std::uint32_t> compute_units;
  std::uint64_t max_storage_buffer_range = 0;
  std::uint64_t max_allocation = 0;
  std::uint64_t storage_offset_alignment = 0;
  std::uint64_t device_local_bytes = 0;  // largest device-local heap (budget when known)
  bool timestamps = false;

  Quirks quirks;
  Tuning tuning;

  // Why the device cannot run vkllm, or empty when it can.
  std::string unusable_reason;
};

// Pure: the same properties always give the same caps (tests feed fabricated ones).
DeviceCaps compute_caps(const DeviceProps& props);

const char* to_string(DeviceType t);
const char* to_string(Vendor v);
const char* to_string(ArchClass a);
const char* to_string(ComponentType c);
std::string format_api_version(std::uint32_t v);
std::string format_driver_version(std::uint32_t vendor_id, std::uint32_t driver_id,
                                  std::uint32_t v);

// Ranking for the default device choice: discrete > integrated > virtual > cpu > other,
// usable before unusable, then the larger device-local heap.
int device_rank(const DeviceCaps& caps);

}  // namespace vkllm::platform
