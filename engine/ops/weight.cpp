// Weights on the device in their GGUF block format: row sizes, the split into chunks that fit
// one binding and one allocation, the upload. Knows no Vulkan, no models.
#include "engine/ops/weight.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.hpp"

namespace vkllm::ops {
namespace {

// Each chunk buffer holds its rows, then zeros up to a multiple of 4 bytes plus one more word:
// the shaders read weights as 32-bit words and read the word after the one they need
// (shaders/include/dequant.glsl).
constexpr std::uint64_t kPadBytes = 4;

std::uint64_t padded_bytes(std::uint64_t data_bytes) {
  return (data_bytes + 3) / 4 * 4 + kPadBytes;
}

}  // namespace

std::uint64_t weight_row_bytes(gguf::TensorType type, std::uint32_t ncols) {
  const gguf::TypeTraits& t = gguf::traits(type);
  if (t.block_size == 0 || ncols % t.block_size != 0) {
    throw InvalidModel(fmt::format("weight of type {}: {} columns is not a multiple of the block "
                                   "size {}", t.name, ncols, t.block_size));
  }
  return std::uint64_t{ncols} / t.block_size * t.block_bytes;
}

DeviceWeight DeviceWeight::upload(platform::Device& device, gguf::TensorType type,
                                  std::uint32_t ncols, std::uint32_t nrows,
                                  std::span<const std::byte> data, const std::string& name,
                                  std::uint64_t max_chunk_bytes, std::uint32_t row_multiple) {
  const std::uint64_t row_bytes = weight_row_bytes(type, ncols);
  const std::uint64_t total = row_bytes * nrows;
  if (data.size() != total) {
    throw InvalidModel(fmt::format("weight '{}' ({} [{}, {}]): {} bytes given, {} expected", name,
                                   gguf::type_name(type), nrows, ncols, data.size(), total));
  }
  if (nrows == 0 || ncols == 0) {
    throw InvalidModel(fmt::format("weight '{}' is empty ([{}, {}])", name, nrows, ncols));
  }
  // The largest buffer one chunk may take: one binding, one allocation, one buffer. Byte offsets
  // in the shaders are 32-bit, hence the 4 GiB cap.
  const platform::DeviceCaps& caps = device.caps();
  std::uint64_t limit = std::min(caps.max_storage_buffer_range, caps.max_allocation);
  if (caps.props.max_buffer_size) limit = std::min(limit, caps.props.max_buffer_size);
  limit = std::min<std::uint64_t>(limit, 0xFFFFFFFFull);
  // r rows take padded_bytes(r * row_bytes) <= r * row_bytes + 7 bytes.
  std::uint64_t rows_per_chunk = limit > 8 ? (limit - 8) / row_bytes : 0;
  if (rows_per_chunk == 0) {
    throw Unsupported(fmt::format(
        "weight '{}': one row of {} bytes does not fit one storage-buffer binding ({} bytes)",
        name, row_bytes, limit));
  }
  if (max_chunk_bytes) rows_per_chunk = std::min(rows_per_chunk, max_chunk_bytes / row_bytes);
  row_multiple = std::max<std::uint32_t>(row_multiple, 1);
  rows_per_chunk = rows_per_chunk / row_multiple * row_multiple;
  if (rows_per_chunk == 0) {
    throw Unsupported(fmt::format("weight '{}': {} rows of {} bytes exceed the chunk limit of {} "
                                  "bytes", name, row_multiple, row_bytes, max_chunk_bytes));
  }

  DeviceWeight w;
  w.view_.type = type;
  w.view_.ncols = ncols;
  w.view_.nrows = nrows;
  const std::uint32_t nchunks =
      static_cast<std::uint32_t>((nrows + rows_per_chunk - 1) / rows_per_chunk);
  w.buffers_.reserve(nchunks);
  for (std::uint32_t i = 0; i < nchunks; ++i) {
    const std::uint64_t row0 = i * rows_per_chunk;
    const std::uint64_t rows = std::min<std::uint64_t>(rows_per_chunk, nrows - row0);
    const std::uint64_t bytes = rows * row_bytes;
    const std::uint64_t size = padded_bytes(bytes);
    platform::Buffer buf = device.create_buffer(
        size, platform::MemoryIntent::weights,
        nchunks == 1 ? name : fmt::format("{} [rows {}..{})", name, row0, row0 + rows));
    device.upload(buf, 0, data.subspan(row0 * row_bytes, bytes));
    const std::byte zeros[8] = {};
    device.upload(buf, bytes, std::span<const std::byte>(zeros, size - bytes));
    w.buffers_.push_back(std::move(buf));
    w.view_.chunks.push_back(WeightChunk{platform::BufferSpan(w.buffers_.back(), 0, size),
                                         static_cast<std::uint32_t>(row0),
                                         static_cast<std::uint32_t>(rows)});
  }
  return w;
}

std::uint64_t DeviceWeight::bytes() const {
  std::uint64_t n = 0;
  for (const platform::Buffer& b : buffers_) n += b.size();
  return n;
}

WeightView f32_view(platform::BufferSpan span, std::uint32_t ncols, std::uint32_t nrows) {
  const std::uint64_t bytes = std::uint64_t{ncols} * nrows * 4;
  if (span.resolved_size() < bytes) {
    throw std::logic_error(fmt::format("f32_view: span holds {} bytes, [{}, {}] f32 needs {}",
                                       span.resolved_size(), nrows, ncols, bytes));
  }
  span.size = bytes;
  WeightView v;
  v.type = gguf::TensorType::kF32;
  v.ncols = ncols;
  v.nrows = nrows;
  v.chunks.push_back(WeightChunk{span, 0, nrows});
  return v;
}

}  // namespace vkllm::ops
