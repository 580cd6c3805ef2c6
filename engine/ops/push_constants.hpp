// C++ mirrors of the push-constant blocks in shaders/include/push_constants.glsl. Change both
// together; the static_asserts catch a size mismatch. Knows no Vulkan.
#pragma once

#include <cstdint>

namespace vkllm::ops {

struct PushElementwise {
  std::uint32_t n;
};
static_assert(sizeof(PushElementwise) == 4);

struct PushRows {
  std::uint32_t ncols;
  std::uint32_t nrows;
  float param;  // RMSNorm: epsilon; softmax: scale
};
static_assert(sizeof(PushRows) == 12);

struct PushMatmul {
  std::uint32_t ncols;
  std::uint32_t nrows;     // rows of this weight chunk
  std::uint32_t row0;      // the chunk's first row in the weight (and in y)
  std::uint32_t y_stride;  // elements between token rows of y
  std::uint32_t ntok;
};
static_assert(sizeof(PushMatmul) == 20);

struct PushGetRows {
  std::uint32_t ncols;
  std::uint32_t nrows;        // rows of this weight chunk
  std::uint32_t row0;         // the chunk's first row
  std::uint32_t nrows_total;  // rows of the whole weight (ids at or past it give zeros)
  std::uint32_t ntok;
};
static_assert(sizeof(PushGetRows) == 20);

}  // namespace vkllm::ops
