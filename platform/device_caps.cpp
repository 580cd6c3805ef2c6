// compute_caps(): capabilities, quirks and tuning as a pure function of DeviceProps.
// Deliberately Vulkan-free so tests can feed fabricated properties; ids are spelled out here.
#include "platform/device_caps.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace vkllm::platform {
namespace {

// PCI vendor ids (and Khronos-assigned ids for vendors without one).
constexpr std::uint32_t kVendorAmd = 0x1002;
constexpr std::uint32_t kVendorIntel = 0x8086;
constexpr std::uint32_t kVendorNvidia = 0x10de;
constexpr std::uint32_t kVendorApple = 0x106b;
constexpr std::uint32_t kVendorArm = 0x13b5;
constexpr std::uint32_t kVendorQualcomm = 0x5143;
constexpr std::uint32_t kVendorImgtec = 0x1010;
constexpr std::uint32_t kVendorMesa = 0x10005;  // VK_VENDOR_ID_MESA (lavapipe)

// VkDriverId values we need to tell apart.
constexpr std::uint32_t kDriverNvidiaProprietary = 4;
constexpr std::uint32_t kDriverIntelProprietaryWindows = 5;
constexpr std::uint32_t kDriverSwiftShader = 10;
constexpr std::uint32_t kDriverMesaLlvmpipe = 13;

Vendor vendor_of(const DeviceProps& p) {
  if (p.type == DeviceType::cpu || p.driver_id == kDriverMesaLlvmpipe ||
      p.driver_id == kDriverSwiftShader || p.vendor_id == kVendorMesa) {
    return Vendor::software;
  }
  switch (p.vendor_id) {
    case kVendorAmd: return Vendor::amd;
    case kVendorIntel: return Vendor::intel;
    case kVendorNvidia: return Vendor::nvidia;
    case kVendorApple: return Vendor::apple;
    case kVendorArm: return Vendor::arm;
    case kVendorQualcomm: return Vendor::qualcomm;
    case kVendorImgtec: return Vendor::imgtec;
    default: return Vendor::other;
  }
}

bool has_f16_coopmat(const std::vector<CoopMatShape>& shapes) {
  return std::any_of(shapes.begin(), shapes.end(), [](const CoopMatShape& s) {
    return s.subgroup_scope && s.a == ComponentType::f16 && s.b == ComponentType::f16 &&
           (s.result == ComponentType::f16 || s.result == ComponentType::f32);
  });
}

ArchClass arch_of(Vendor vendor, const DeviceProps& p, bool coopmat) {
  switch (vendor) {
    case Vendor::software: return ArchClass::cpu;
    case Vendor::nvidia: return coopmat ? ArchClass::nvidia_tensor_core : ArchClass::nvidia_legacy;
    case Vendor::amd:
      return (p.subgroup_size_control && p.min_subgroup_size <= 32 && p.max_subgroup_size >= 64)
                 ? ArchClass::amd_rdna
                 : ArchClass::amd_gcn;
    case Vendor::intel:
      return p.subgroup_size_control ? ArchClass::intel_xe : ArchClass::intel_legacy;
    case Vendor::arm:
    case Vendor::qualcomm:
    case Vendor::imgtec: return ArchClass::mobile;
    case Vendor::apple: return ArchClass::apple;
    case Vendor::other: return ArchClass::unknown;
  }
  return ArchClass::unknown;
}

// The cooperative-matrix GEMM's shape and tiles (Tuning::coopmat_*): the largest f16 x f16 ->
// f32 subgroup shape that tiles the subgroup blocks and whose K divides the 32-column slices,
// on a subgroup size the pipeline can count on (fixed, or required through size control), with
// the invocations and the shared memory (f16 tiles with 40-column rows, one f32 staging matrix
// per subgroup) within the device's limits. Leaves coopmat_m 0 when nothing fits.
constexpr std::uint32_t kVulkan12 = (1u << 22) | (2u << 12);  // VK_MAKE_API_VERSION(0, 1, 2, 0)
constexpr std::uint32_t kVulkan13 = (1u << 22) | (3u << 12);  // SPIR-V 1.6: the coopmat shaders

// The subgroup size a kernel that counts on one can run with: the device's fixed size, or its
// default size required through size control (require); size 0 when it may vary and cannot be
// required.
struct FixedSubgroup {
  std::uint32_t size = 0;
  bool require = false;
};
FixedSubgroup fixed_subgroup(const DeviceCaps& c) {
  if (c.min_subgroup_size == c.max_subgroup_size) return {c.subgroup_size, false};
  if (!c.subgroup_size_control) return {};
  return {c.subgroup_size, true};
}

void choose_coopmat(const DeviceCaps& c, std::uint32_t max_invocations, Tuning& t) {
  if (!c.coopmat || c.props.api_version < kVulkan13) return;
  const FixedSubgroup fixed = fixed_subgroup(c);
  const std::uint32_t sg = fixed.size;
  if (sg == 0) return;
  t.coopmat_require_subgroup = fixed.require;
  const std::uint32_t subgroups = t.coopmat_sg_rows * t.coopmat_sg_tokens;
  const std::uint32_t wm = t.coopmat_rows / t.coopmat_sg_rows;
  const std::uint32_t wn = t.coopmat_tokens / t.coopmat_sg_tokens;
  const CoopMatShape* best = nullptr;
  for (const CoopMatShape& s : c.coopmat_shapes) {
    if (!s.subgroup_scope || s.a != ComponentType::f16 || s.b != ComponentType::f16 ||
        s.c != ComponentType::f32 || s.result != ComponentType::f32) {
      continue;
    }
    if (s.m == 0 || s.n == 0 || s.k == 0 || s.m % 2 != 0 || wm % s.m != 0 || wn % s.n != 0 ||
        32 % s.k != 0) {
      continue;
    }
    if (!best || s.m * s.n * s.k > best->m * best->n * best->k) best = &s;
  }
  if (!best) return;
  const std::uint64_t shared = 2ull * 40 * (t.coopmat_rows + t.coopmat_tokens) +
                               4ull * subgroups * best->m * best->n;
  if (subgroups * sg > max_invocations || (c.shared_memory && shared > c.shared_memory)) return;
  t.coopmat_m = best->m;
  t.coopmat_n = best->n;
  t.coopmat_k = best->k;
  t.coopmat_subgroup = sg;
  // Matrix cores take every matmul the tiled GEMM would; lavapipe runs the matrices as plain
  // vector code, slower than its tuned tiled GEMM (bench/RESULTS.md): there only when forced.
  t.coopmat_min_tokens = c.quirks.prefer_small_workgroups ? 0 : t.tiled_min_tokens;
}

Tuning tuning_for(const DeviceCaps& c) {
  Tuning t;
  const std::uint32_t sg = std::max<std::uint32_t>(c.subgroup_size, 1);
  if (c.quirks.prefer_small_workgroups) {
    // One workgroup runs on one CPU thread: keep them small, several rows each.
    t.elementwise_workgroup = 64;
    t.rows_workgroup = 64;
    // The GEMV: one subgroup a workgroup, each invocation whole rows (LANE_ROWS), so the
    // activations are scalar loads shared by the subgroup and nothing is reduced across
    // invocations. q8_0 2048 x 768, 1 token: 0.65-1.2 ms against 1.4-1.6 for 4 rows a 32-wide
    // workgroup split along K (bench/RESULTS.md).
    t.matvec_workgroup = sg;
    t.matvec_lane_rows = true;
    t.matvec_rows = 2;
    t.matmul_rows = 4;
    t.matmul_tokens = 8;
    // Tiled GEMM: the largest tiles that fit lavapipe's 32 KiB of shared memory, and large
    // register blocks: every shared-memory read that differs per invocation is a gather there,
    // and the per-k overhead of the block is paid once for all its products. q8_0 2048 x 768 x
    // 512 tokens: 128 x 128 tiles of 16 x 16 blocks 21-22 GFLOP/s; 64 x 64 tiles of 8 x 16
    // 14.7, of 4 x 8 10.3, of 2 x 8 7.0; the 8-token GEMV 8.8-10 (bench/RESULTS.md).
    t.tiled_rows = 128;
    t.tiled_tokens = 128;
    t.tiled_thread_rows = 16;
    t.tiled_thread_tokens = 16;
    t.attention_workgroups = 16;
    t.sample_slice_cols = 32768;
  } else if (c.arch == ArchClass::amd_gcn || c.arch == ArchClass::amd_rdna) {
    t.matvec_workgroup = 64;
    t.matvec_rows = 2;
  } else if (c.arch == ArchClass::mobile) {
    t.elementwise_workgroup = 128;
    t.rows_workgroup = 128;
    t.matvec_workgroup = 64;
    t.matvec_rows = 1;
  } else if (c.arch == ArchClass::nvidia_tensor_core) {
    // Measured on an H200 (bench/RESULTS.md, 2026-12-04): the decode GEMV at 14336 x 4096, 4
    // rows a workgroup of 128 against 2: q8_0 0.135 ms against 0.165, integer dot 0.115 against
    // 0.126; the cooperative-matrix GEMM at 4096 x 4096 x 512, 128 x 128 tiles over 4 x 4
    // subgroups against 64 x 64 over 2 x 2: f16 1.37 ms against 3.45, q4_0 1.04 against 2.14.
    t.matvec_workgroup = 4 * sg;
    t.matvec_rows = 4;
    t.coopmat_rows = 128;
    t.coopmat_tokens = 128;
    t.coopmat_sg_rows = 4;
    t.coopmat_sg_tokens = 4;
  } else {
    t.matvec_workgroup = std::max<std::uint32_t>(4 * sg, 64);
    t.matvec_rows = 2;
  }
  // A few waves of workgroups per compute unit where the driver says how many there are.
  if (!c.quirks.prefer_small_workgroups && c.compute_units) t.attention_workgroups = 4 * *c.compute_units;
  // Never ask for more than the device allows.
  const std::uint32_t cap = c.props.max_workgroup_invocations
                                ? std::min(c.props.max_workgroup_invocations,
                                           c.props.max_workgroup_size[0])
                                : 128u;
  t.elementwise_workgroup = std::min(t.elementwise_workgroup, cap);
  t.rows_workgroup = std::min(t.rows_workgroup, cap);
  t.matvec_workgroup = std::min(t.matvec_workgroup, cap);
  // The tiled GEMM: fewer tokens per tile until its invocations and its shared memory (32
  // columns of f32 per tile row and token) fit.
  const auto tiled_fits = [&] {
    return (t.tiled_rows / t.tiled_thread_rows) * (t.tiled_tokens / t.tiled_thread_tokens) <= cap &&
           (!c.shared_memory || 128ull * (t.tiled_rows + t.tiled_tokens) <= c.shared_memory);
  };
  while (t.tiled_tokens > t.tiled_thread_tokens && !tiled_fits()) t.tiled_tokens /= 2;
  choose_coopmat(c, cap, t);
  // Prompt-chunk attention: key tiles of 32 keys, or one per invocation of larger subgroups. On
  // lavapipe 4 subgroups of 16 rows: 512 tokens of 12/4 heads of 64, 36-38 ms (10.7-11.3
  // GFLOP/s) against 40-42 for 8 x 8 rows, 48-50 for 8 x 4, 48 for 2 keys an invocation, and 155
  // for the rows kernel (bench/RESULTS.md). On GPUs 4 subgroups of 8 rows: a starting point.
  const FixedSubgroup attn_sg = fixed_subgroup(c);
  if (c.quirks.prefer_small_workgroups) t.attn_sg_rows = 16;
  if (attn_sg.size && attn_sg.size * t.attn_subgroups <= cap && c.subgroup_arithmetic) {
    t.attn_subgroup = attn_sg.size;
    t.attn_require_subgroup = attn_sg.require;
    t.attn_lane_keys = std::max<std::uint32_t>(1, 32 / attn_sg.size);
  }
  // Integer dot: forced anywhere it exists; chosen where it is accelerated (on a CPU device it
  // is emulated, bench/RESULTS.md): for decode, and for prompts too where no matrix cores take
  // them (the integer-dot tiled GEMM, MMQ: int8 operands are a quarter of the f32 GEMM's shared
  // memory traffic and a packed dot product does 4 multiply-adds; llama.cpp's Vulkan backend
  // makes the same choice on such devices; not yet measured by us on one, bench/gpu.sh sweeps it).
  t.intdot = c.integer_dot;
  if (c.integer_dot_accelerated && !c.quirks.prefer_small_workgroups) {
    t.intdot_max_tokens = t.coopmat_min_tokens != 0 ? t.tiled_min_tokens - 1 : UINT32_MAX;
  }
  return t;
}

}  // namespace

DeviceCaps compute_caps(const DeviceProps& p) {
  DeviceCaps c;
  c.props = p;
  c.vendor = vendor_of(p);
  c.api_version_string = format_api_version(p.api_version);
  c.driver_version_string = format_driver_version(p.vendor_id, p.driver_id, p.driver_version);

  c.subgroup_size = p.subgroup_size;
  c.min_subgroup_size = p.min_subgroup_size ? p.min_subgroup_size : p.subgroup_size;
  c.max_subgroup_size = p.max_subgroup_size ? p.max_subgroup_size : p.subgroup_size;
  c.subgroup_size_control = p.subgroup_size_control;
  c.subgroup_arithmetic = p.subgroup_in_compute && p.subgroup_basic && p.subgroup_arithmetic;

  c.fp16_storage = p.storage_buffer_16bit;
  c.fp16_math = p.shader_float16;
  c.int8_storage = p.storage_buffer_8bit;
  c.int8_math = p.shader_int8;
  c.integer_dot = p.integer_dot_product && p.shader_int8;
  c.integer_dot_accelerated = c.integer_dot && (p.int_dot_4x8_signed_accelerated ||
                                                p.int_dot_4x8_mixed_accelerated);
  c.coopmat_shapes = p.has_coopmat_extension ? p.coopmat : std::vector<CoopMatShape>{};
  c.coopmat = has_f16_coopmat(c.coopmat_shapes) && c.fp16_math && c.fp16_storage &&
              p.vulkan_memory_model && p.maintenance4;
  c.arch = arch_of(c.vendor, p, c.coopmat);

  c.shared_memory = p.max_compute_shared_memory;
  c.compute_units = p.compute_units;
  c.max_storage_buffer_range = p.max_storage_buffer_range;
  c.max_allocation = p.max_memory_allocation_size;
  c.storage_offset_alignment = std::max<std::uint64_t>(p.min_storage_buffer_offset_alignment, 4);
  c.timestamps = p.timestamp_valid_bits > 0 && p.timestamp_period_ns > 0;

  for (const MemoryHeap& h : p.heaps) {
    if (!h.device_local) continue;
    c.device_local_bytes = std::max(c.device_local_bytes, h.budget ? h.budget : h.size);
  }

  c.quirks.prefer_small_workgroups = c.arch == ArchClass::cpu;
  c.quirks.unified_memory =
      c.arch == ArchClass::cpu ||
      (p.type == DeviceType::integrated &&
       std::any_of(p.heaps.begin(), p.heaps.end(),
                   [](const MemoryHeap& h) { return h.device_local && h.host_visible; }));
  c.tuning = tuning_for(c);

  if (p.api_version < kVulkan12) {
    c.unusable_reason = "needs Vulkan 1.2, device has " + c.api_version_string;
  } else if (!p.timeline_semaphore) {
    c.unusable_reason = "needs timeline semaphores";
  } else if (!c.subgroup_arithmetic) {
    c.unusable_reason = "needs subgroup arithmetic in compute shaders";
  } else if (c.max_storage_buffer_range < (16u << 20)) {
    c.unusable_reason = "maxStorageBufferRange below 16 MiB";
  }
  return c;
}

int device_rank(const DeviceCaps& caps) {
  int type_rank = 0;
  switch (caps.props.type) {
    case DeviceType::discrete: type_rank = 4; break;
    case DeviceType::integrated: type_rank = 3; break;
    case DeviceType::virtual_gpu: type_rank = 2; break;
    case DeviceType::cpu: type_rank = 1; break;
    case DeviceType::other: type_rank = 0; break;
  }
  return (caps.unusable_reason.empty() ? 100 : 0) + type_rank * 10;
}

const char* to_string(DeviceType t) {
  switch (t) {
    case DeviceType::discrete: return "discrete GPU";
    case DeviceType::integrated: return "integrated GPU";
    case DeviceType::virtual_gpu: return "virtual GPU";
    case DeviceType::cpu: return "CPU";
    case DeviceType::other: return "other";
  }
  return "?";
}

const char* to_string(Vendor v) {
  switch (v) {
    case Vendor::amd: return "AMD";
    case Vendor::intel: return "Intel";
    case Vendor::nvidia: return "NVIDIA";
    case Vendor::apple: return "Apple";
    case Vendor::arm: return "ARM";
    case Vendor::qualcomm: return "Qualcomm";
    case Vendor::imgtec: return "ImgTec";
    case Vendor::software: return "software";
    case Vendor::other: return "other";
  }
  return "?";
}

const char* to_string(ArchClass a) {
  switch (a) {
    case ArchClass::nvidia_tensor_core: return "nvidia-tensor-core";
    case ArchClass::nvidia_legacy: return "nvidia-legacy";
    case ArchClass::amd_rdna: return "amd-rdna";
    case ArchClass::amd_gcn: return "amd-gcn";
    case ArchClass::intel_xe: return "intel-xe";
    case ArchClass::intel_legacy: return "intel-legacy";
    case ArchClass::mobile: return "mobile";
    case ArchClass::apple: return "apple";
    case ArchClass::cpu: return "cpu";
    case ArchClass::unknown: return "unknown";
  }
  return "?";
}

const char* to_string(ComponentType c) {
  switch (c) {
    case ComponentType::f16: return "f16";
    case ComponentType::f32: return "f32";
    case ComponentType::bf16: return "bf16";
    case ComponentType::s8: return "s8";
    case ComponentType::u8: return "u8";
    case ComponentType::s32: return "s32";
    case ComponentType::u32: return "u32";
    case ComponentType::other: return "other";
  }
  return "?";
}

std::string format_api_version(std::uint32_t v) {
  return fmt::format("{}.{}.{}", (v >> 22) & 0x7f, (v >> 12) & 0x3ff, v & 0xfff);
}

std::string format_driver_version(std::uint32_t vendor_id, std::uint32_t driver_id,
                                  std::uint32_t v) {
  if (vendor_id == kVendorNvidia && driver_id == kDriverNvidiaProprietary) {
    return fmt::format("{}.{}.{}", (v >> 22) & 0x3ff, (v >> 14) & 0xff, (v >> 6) & 0xff);
  }
  if (vendor_id == kVendorIntel && driver_id == kDriverIntelProprietaryWindows) {
    return fmt::format("{}.{}", v >> 14, v & 0x3fff);
  }
  return fmt::format("{}.{}.{}", v >> 22, (v >> 12) & 0x3ff, v & 0xfff);
}

}  // namespace vkllm::platform
