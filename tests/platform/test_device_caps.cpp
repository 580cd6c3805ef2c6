// DeviceCaps from fabricated properties: an AMD, an Intel, an NVIDIA and lavapipe, plus the
// rules that make a device unusable and the default ranking. Needs no device.
#include <doctest/doctest.h>

#include "platform/device_caps.hpp"

using namespace vkllm::platform;

namespace {

constexpr std::uint32_t api(std::uint32_t major, std::uint32_t minor) {
  return (major << 22) | (minor << 12);
}

DeviceProps base(const char* name, std::uint32_t vendor, DeviceType type) {
  DeviceProps p;
  p.name = name;
  p.vendor_id = vendor;
  p.type = type;
  p.api_version = api(1, 3);
  p.subgroup_in_compute = p.subgroup_basic = p.subgroup_arithmetic = true;
  p.timeline_semaphore = true;
  p.vulkan_memory_model = p.maintenance4 = true;
  p.max_compute_shared_memory = 48 * 1024;
  p.max_workgroup_invocations = 1024;
  p.max_workgroup_size = {1024, 1024, 64};
  p.max_workgroup_count = {65535, 65535, 65535};
  p.max_push_constants_size = 128;
  p.max_storage_buffer_range = 4ull << 30;
  p.max_memory_allocation_size = 4ull << 30;
  p.min_storage_buffer_offset_alignment = 16;
  p.timestamp_period_ns = 1;
  p.timestamp_valid_bits = 64;
  p.storage_buffer_16bit = p.shader_float16 = true;
  p.storage_buffer_8bit = p.shader_int8 = true;
  return p;
}

DeviceProps amd_rdna3() {
  DeviceProps p = base("AMD Radeon RX 7900 XTX (RADV NAVI31)", 0x1002, DeviceType::discrete);
  p.driver_id = 3;  // RADV
  p.subgroup_size = 64;
  p.min_subgroup_size = 32;
  p.max_subgroup_size = 64;
  p.subgroup_size_control = true;
  p.integer_dot_product = true;
  p.int_dot_4x8_signed_accelerated = true;
  p.has_coopmat_extension = true;
  p.coopmat = {{16, 16, 16, ComponentType::f16, ComponentType::f16, ComponentType::f32,
                ComponentType::f32, true}};
  p.compute_units = 96;
  p.heaps = {{24ull << 30, 23ull << 30, 1ull << 30, true, false},
             {32ull << 30, 0, 0, false, true}};
  return p;
}

DeviceProps intel_arc() {
  DeviceProps p = base("Intel(R) Arc(tm) A770 Graphics (DG2)", 0x8086, DeviceType::discrete);
  p.driver_id = 6;  // ANV
  p.subgroup_size = 32;
  p.min_subgroup_size = 8;
  p.max_subgroup_size = 32;
  p.subgroup_size_control = true;
  p.integer_dot_product = true;
  p.heaps = {{16ull << 30, 0, 0, true, true}};
  return p;
}

DeviceProps nvidia_ada() {
  DeviceProps p = base("NVIDIA GeForce RTX 4090", 0x10de, DeviceType::discrete);
  p.driver_id = 4;  // proprietary
  p.driver_version = (550u << 22) | (54u << 14) | (14u << 6);
  p.subgroup_size = p.min_subgroup_size = p.max_subgroup_size = 32;
  p.subgroup_size_control = true;
  p.integer_dot_product = true;
  p.int_dot_4x8_signed_accelerated = true;
  p.has_coopmat_extension = true;
  p.coopmat = {{16, 8, 16, ComponentType::f16, ComponentType::f16, ComponentType::f16,
                ComponentType::f16, true},
               {16, 8, 16, ComponentType::f16, ComponentType::f16, ComponentType::f32,
                ComponentType::f32, true},
               {16, 8, 32, ComponentType::s8, ComponentType::s8, ComponentType::s32,
                ComponentType::s32, true}};
  p.compute_units = 128;
  p.heaps = {{24ull << 30, 0, 0, true, false}, {64ull << 30, 0, 0, false, true}};
  return p;
}

DeviceProps lavapipe() {
  DeviceProps p = base("llvmpipe (LLVM 19.1.7, 256 bits)", 0x10005, DeviceType::cpu);
  p.driver_id = 13;  // MESA_LLVMPIPE
  p.api_version = api(1, 4);
  p.driver_version = (25u << 22) | (0u << 12) | 7u;
  p.subgroup_size = p.min_subgroup_size = p.max_subgroup_size = 8;
  p.max_compute_shared_memory = 32 * 1024;
  p.max_storage_buffer_range = 128ull << 20;
  p.integer_dot_product = true;
  p.heaps = {{23ull << 30, 0, 0, true, true}};
  return p;
}

}  // namespace

TEST_CASE("AMD RDNA: wave32/64, integer dot, cooperative matrix") {
  const DeviceCaps c = compute_caps(amd_rdna3());
  CHECK(c.vendor == Vendor::amd);
  CHECK(c.arch == ArchClass::amd_rdna);
  CHECK(c.min_subgroup_size == 32);
  CHECK(c.max_subgroup_size == 64);
  CHECK(c.integer_dot);
  CHECK(c.integer_dot_accelerated);
  CHECK(c.coopmat);
  CHECK(c.compute_units == 96u);
  CHECK(c.device_local_bytes == 23ull << 30);  // the budget, not the heap size
  CHECK(c.unusable_reason.empty());
  CHECK(c.tuning.matvec_workgroup == 64);
}

TEST_CASE("AMD GCN: fixed wave64") {
  DeviceProps p = amd_rdna3();
  p.min_subgroup_size = p.max_subgroup_size = 64;
  p.has_coopmat_extension = false;
  const DeviceCaps c = compute_caps(p);
  CHECK(c.arch == ArchClass::amd_gcn);
  CHECK_FALSE(c.coopmat);
}

TEST_CASE("Intel Arc: Xe class, no cooperative matrix, unified heap") {
  const DeviceCaps c = compute_caps(intel_arc());
  CHECK(c.vendor == Vendor::intel);
  CHECK(c.arch == ArchClass::intel_xe);
  CHECK_FALSE(c.coopmat);
  CHECK(c.integer_dot);
  CHECK_FALSE(c.integer_dot_accelerated);
  CHECK_FALSE(c.compute_units.has_value());
  CHECK(c.tuning.attention_workgroups == 256);  // unknown compute units: the default
}

TEST_CASE("NVIDIA: tensor-core class from f16 coopmat shapes; driver version encoding") {
  const DeviceCaps c = compute_caps(nvidia_ada());
  CHECK(c.vendor == Vendor::nvidia);
  CHECK(c.arch == ArchClass::nvidia_tensor_core);
  CHECK(c.coopmat);
  CHECK(c.coopmat_shapes.size() == 3);
  CHECK(c.driver_version_string == "550.54.14");
  CHECK(c.tuning.matvec_workgroup == 128);
  CHECK_FALSE(c.tuning.matvec_lane_rows);  // GPUs split rows along K
  CHECK(c.tuning.attention_workgroups == 4 * 128);  // 4 waves over its 128 SMs

  DeviceProps no_tc = nvidia_ada();
  no_tc.coopmat.clear();
  CHECK(compute_caps(no_tc).arch == ArchClass::nvidia_legacy);
  // Shapes without fp16 math are not usable for our f16 paths.
  DeviceProps no_fp16 = nvidia_ada();
  no_fp16.shader_float16 = false;
  CHECK_FALSE(compute_caps(no_fp16).coopmat);
}

TEST_CASE("lavapipe: software vendor, CPU arch, small workgroups, 128 MiB binding limit") {
  const DeviceCaps c = compute_caps(lavapipe());
  CHECK(c.vendor == Vendor::software);
  CHECK(c.arch == ArchClass::cpu);
  CHECK(c.subgroup_size == 8);
  CHECK(c.quirks.prefer_small_workgroups);
  CHECK(c.quirks.unified_memory);
  CHECK(c.tuning.rows_workgroup == 64);
  CHECK(c.tuning.matvec_workgroup == 8);  // one subgroup, whole rows an invocation
  CHECK(c.tuning.matvec_lane_rows);
  CHECK(c.tuning.attention_workgroups == 16);
  CHECK(c.max_storage_buffer_range == 128ull << 20);
  CHECK(c.api_version_string == "1.4.0");
  CHECK(c.driver_version_string == "25.0.7");
  CHECK(c.integer_dot);
  CHECK_FALSE(c.coopmat);
}

TEST_CASE("the cooperative-matrix GEMM's shape: f16 x f16 -> f32, the largest that tiles, a subgroup size it can count on") {
  // NVIDIA: the one f32-accumulating shape (16x8x16), 32-wide subgroups, from the tiled GEMM's
  // threshold on.
  const Tuning ada = compute_caps(nvidia_ada()).tuning;
  CHECK(ada.coopmat_m == 16);
  CHECK(ada.coopmat_n == 8);
  CHECK(ada.coopmat_k == 16);
  CHECK(ada.coopmat_subgroup == 32);
  CHECK_FALSE(ada.coopmat_require_subgroup);
  CHECK(ada.coopmat_min_tokens == ada.tiled_min_tokens);
  // NVIDIA's tiles and decode rows, as measured on an H200.
  CHECK(ada.coopmat_rows == 128);
  CHECK(ada.coopmat_tokens == 128);
  CHECK(ada.coopmat_sg_rows * ada.coopmat_sg_tokens == 16);
  CHECK(ada.matvec_rows == 4);
  // RDNA3 varies its wave size: the pipeline requires the default one.
  const Tuning rdna = compute_caps(amd_rdna3()).tuning;
  CHECK(rdna.coopmat_m == 16);
  CHECK(rdna.coopmat_subgroup == 64);
  CHECK(rdna.coopmat_require_subgroup);
  DeviceProps no_control = amd_rdna3();
  no_control.subgroup_size_control = false;
  CHECK(compute_caps(no_control).tuning.coopmat_m == 0);
  // Mesa 26.1's lavapipe: 8x8x8, used only when forced (slower than its tiled GEMM there).
  DeviceProps lvp = lavapipe();
  lvp.has_coopmat_extension = true;
  lvp.storage_buffer_16bit = lvp.shader_float16 = true;
  lvp.coopmat = {{8, 8, 8, ComponentType::f16, ComponentType::f16, ComponentType::f16,
                  ComponentType::f16, true},
                 {8, 8, 8, ComponentType::f16, ComponentType::f16, ComponentType::f32,
                  ComponentType::f32, true}};
  const DeviceCaps lc = compute_caps(lvp);
  CHECK(lc.coopmat);
  CHECK(lc.tuning.coopmat_m == 8);
  CHECK(lc.tuning.coopmat_min_tokens == 0);
  // Without the memory model, maintenance4, an f32 accumulator or Vulkan 1.3: none.
  for (auto strip : {+[](DeviceProps& p) { p.vulkan_memory_model = false; },
                     +[](DeviceProps& p) { p.maintenance4 = false; },
                     +[](DeviceProps& p) { p.api_version = api(1, 2); },
                     +[](DeviceProps& p) { p.coopmat.erase(p.coopmat.begin() + 1); }}) {
    DeviceProps p = nvidia_ada();
    strip(p);
    CHECK(compute_caps(p).tuning.coopmat_m == 0);
  }
}

TEST_CASE("the integer-dot kernels: forced wherever integer dot exists, automatic where it is accelerated") {
  const Tuning ada = compute_caps(nvidia_ada()).tuning;  // 4x8 signed dot accelerated
  CHECK(ada.intdot);
  CHECK(ada.coopmat_min_tokens != 0);  // prompts on matrix cores: integer dot for decode only
  CHECK(ada.intdot_max_tokens == ada.tiled_min_tokens - 1);
  // Accelerated integer dot without matrix cores (the same card without its cooperative-matrix
  // extension): prompts on the integer-dot tiled GEMM as well.
  DeviceProps no_coopmat = nvidia_ada();
  no_coopmat.has_coopmat_extension = false;
  const Tuning plain = compute_caps(no_coopmat).tuning;
  CHECK(plain.coopmat_min_tokens == 0);
  CHECK(plain.intdot_max_tokens == UINT32_MAX);
  const Tuning arc = compute_caps(intel_arc()).tuning;  // integer dot, not accelerated
  CHECK(arc.intdot);
  CHECK(arc.intdot_max_tokens == 0);
  const Tuning lvp = compute_caps(lavapipe()).tuning;  // emulated on the CPU
  CHECK(lvp.intdot);
  CHECK(lvp.intdot_max_tokens == 0);
  DeviceProps none = nvidia_ada();
  none.integer_dot_product = false;
  CHECK_FALSE(compute_caps(none).tuning.intdot);
}

TEST_CASE("unusable devices say why") {
  DeviceProps old = intel_arc();
  old.api_version = api(1, 1);
  CHECK(compute_caps(old).unusable_reason.find("1.2") != std::string::npos);
  DeviceProps no_timeline = intel_arc();
  no_timeline.timeline_semaphore = false;
  CHECK(compute_caps(no_timeline).unusable_reason.find("timeline") != std::string::npos);
  DeviceProps no_subgroups = intel_arc();
  no_subgroups.subgroup_arithmetic = false;
  CHECK(compute_caps(no_subgroups).unusable_reason.find("subgroup") != std::string::npos);
}

TEST_CASE("ranking: discrete > integrated > CPU; usable first") {
  DeviceProps igpu = intel_arc();
  igpu.type = DeviceType::integrated;
  const int dgpu = device_rank(compute_caps(nvidia_ada()));
  const int integrated = device_rank(compute_caps(igpu));
  const int cpu = device_rank(compute_caps(lavapipe()));
  CHECK(dgpu > integrated);
  CHECK(integrated > cpu);
  DeviceProps broken = nvidia_ada();
  broken.timeline_semaphore = false;
  CHECK(device_rank(compute_caps(broken)) < cpu);
}

TEST_CASE("tuning never exceeds the device's workgroup limit") {
  DeviceProps small = intel_arc();
  small.max_workgroup_invocations = 32;
  small.max_workgroup_size = {32, 32, 32};
  const DeviceCaps c = compute_caps(small);
  CHECK(c.tuning.elementwise_workgroup <= 32);
  CHECK(c.tuning.rows_workgroup <= 32);
  CHECK(c.tuning.matvec_workgroup <= 32);
}
