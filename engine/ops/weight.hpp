// Weights on the device in their GGUF block format (STYLE: weights stay quantized), split by rows
// into chunks that each fit one storage-buffer binding (maxStorageBufferRange, e.g. 128 MiB on
// lavapipe) and one allocation. Knows no Vulkan, no models.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/gguf/types.hpp"
#include "platform/device.hpp"

namespace vkllm::ops {

// Rows [row0, row0 + nrows) of a weight, bound through `span` (row0 starts at the span's start).
// Except for F32, the span also holds at least 4 bytes past the rows, rounded up to a multiple of 4
// (the shaders read 32-bit words and one word ahead; DeviceWeight::upload pads every chunk).
struct WeightChunk {
  platform::BufferSpan span;
  std::uint32_t row0 = 0;
  std::uint32_t nrows = 0;
};

// A 2-D weight [nrows, ncols] (ggml dims {ncols, nrows}), rows in the GGUF block layout of
// `type`: each row is ncols / block_size blocks. A 1-D tensor is one row.
struct WeightView {
  gguf::TensorType type = gguf::TensorType::kF32;
  std::uint32_t ncols = 0;
  std::uint32_t nrows = 0;
  std::vector<WeightChunk> chunks;  // in row order, covering [0, nrows)
};

// Bytes of one row of `ncols` elements of `type`; throws InvalidModel when ncols is not a
// multiple of the type's block size.
std::uint64_t weight_row_bytes(gguf::TensorType type, std::uint32_t ncols);

// Owns the device buffers of one weight.
class DeviceWeight {
 public:
  DeviceWeight() = default;
  // Uploads `data` (nrows rows in the GGUF layout). Chunks hold at most `max_chunk_bytes`
  // (0: the device's binding and allocation limits) and a multiple of `row_multiple` rows (a
  // swiglu matmul's (gate, up) pairs stay in one chunk). Throws Unsupported when `row_multiple`
  // rows do not fit one binding, OutOfMemory from the device.
  static DeviceWeight upload(platform::Device& device, gguf::TensorType type, std::uint32_t ncols,
                             std::uint32_t nrows, std::span<const std::byte> data,
                             const std::string& name, std::uint64_t max_chunk_bytes = 0,
                             std::uint32_t row_multiple = 1);

  const WeightView& view() const { return view_; }
  std::uint64_t bytes() const;

 private:
  std::vector<platform::Buffer> buffers_;
  WeightView view_;
};

// A view of an f32 activation matrix [nrows, ncols] in one buffer span, so the weight kernels
// (get_rows) can also gather activation rows.
WeightView f32_view(platform::BufferSpan span, std::uint32_t ncols, std::uint32_t nrows);

}  // namespace vkllm::ops
