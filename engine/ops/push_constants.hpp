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

struct PushMatvec {
  std::uint32_t ncols;
  std::uint32_t nrows;
  std::uint32_t stride;  // elements between rows of W
};
static_assert(sizeof(PushMatvec) == 12);

struct PushSample {
  std::uint32_t ncols;
  std::uint32_t nrows;
};
static_assert(sizeof(PushSample) == 8);

}  // namespace vkllm::ops
