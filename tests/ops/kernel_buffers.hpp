// Buffers and constants the kernel tests around attention share (test_attention.cpp,
// test_rope_kv.cpp): u32 and u16 uploads, f16 rounding, the KV types the device stores, poison
// values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "engine/gguf/quant.hpp"
#include "engine/ops/attention.hpp"
#include "tests/support/device_fixture.hpp"

namespace vkllm::test {

inline constexpr double kExact = 1e-7;
inline constexpr std::uint16_t kF16Nan = 0x7e00;
inline const float kNan = std::numeric_limits<float>::quiet_NaN();

inline platform::Buffer upload_u32(platform::Device& dev, std::span<const std::uint32_t> data,
                            const char* name) {
  auto b = dev.create_buffer(std::max<std::size_t>(data.size(), 1) * 4,
                             platform::MemoryIntent::activations, name);
  if (!data.empty()) dev.upload(b, 0, std::as_bytes(data));
  return b;
}

inline platform::Buffer upload_u16(platform::Device& dev, std::span<const std::uint16_t> data,
                            const char* name) {
  auto b = dev.create_buffer(data.size() * 2, platform::MemoryIntent::kv_cache, name);
  dev.upload(b, 0, std::as_bytes(data));
  return b;
}

inline std::vector<std::uint16_t> download_u16(platform::Device& dev, const platform::Buffer& b,
                                        std::size_t n) {
  std::vector<std::uint16_t> out(n);
  dev.download(b, 0, std::as_writable_bytes(std::span<std::uint16_t>(out)));
  return out;
}

inline float round_f16(float x) { return gguf::fp16_to_fp32(gguf::fp32_to_fp16(x)); }

// The KV types this device stores: f32, and f16 where it has 16-bit storage.
inline std::vector<ops::KvType> kv_types(DeviceTest& t) {
  std::vector<ops::KvType> types{ops::KvType::f32};
  if (t.kernels().caps().fp16_storage) types.push_back(ops::KvType::f16);
  return types;
}

}  // namespace vkllm::test
