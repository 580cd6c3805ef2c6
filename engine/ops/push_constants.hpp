// C++ mirrors of the push-constant blocks in shaders/include/push_constants.glsl. Change both
// together; the static_asserts catch a size mismatch. Knows no Vulkan.
#pragma once

#include <cstdint>

namespace vkllm::ops {

struct PushElementwise {
  std::uint32_t n;
  float param = 0;  // scale: the factor; softcap: the cap
};
static_assert(sizeof(PushElementwise) == 8);

struct PushRows {
  std::uint32_t ncols;
  std::uint32_t nrows;
  float param;  // RMSNorm: epsilon; softmax: scale
};
static_assert(sizeof(PushRows) == 12);

struct PushMatmul {
  std::uint32_t ncols;
  std::uint32_t nrows;     // rows of this weight chunk
  std::uint32_t row0;      // the chunk's first row in the weight
  std::uint32_t y_stride;  // elements between token rows of y
  std::uint32_t ntok;
  std::uint32_t y0;        // y's column of weight row 0
  std::uint32_t epilogue;  // ops::Epilogue
};
static_assert(sizeof(PushMatmul) == 28);

struct PushMatmulExperts {
  std::uint32_t ncols;
  std::uint32_t nrows;     // rows of one expert
  std::uint32_t row0;      // 0
  std::uint32_t y_stride;
  std::uint32_t ntok;      // pairs of the step
  std::uint32_t y0;
  std::uint32_t epilogue;  // ops::Epilogue (store, swiglu, geglu)
  std::uint32_t x_div;     // pairs per x row
  std::uint32_t expert0;   // the chunk's first expert
  std::uint32_t counts, offsets, entries;  // route word offsets
  std::uint32_t active_experts, n_active;  // route word offsets
  std::uint32_t chunk_experts;             // experts in this chunk
};
static_assert(sizeof(PushMatmulExperts) == 60);

struct PushMoeRoute {
  std::uint32_t ntok;
  std::uint32_t n_expert;
  std::uint32_t n_used;
  std::uint32_t stride;
  std::uint32_t gating;  // 0 softmax over all, 1 over the chosen
  std::uint32_t norm;
  std::uint32_t sel, weights, counts, offsets, entries, active_experts, n_active;
};
static_assert(sizeof(PushMoeRoute) == 52);

struct PushMoeCombine {
  std::uint32_t ntok;
  std::uint32_t ncols;
  std::uint32_t n_used;
  std::uint32_t weights;
  std::uint32_t shared_expert;
  std::uint32_t stride;
  std::uint32_t gate_col;
};
static_assert(sizeof(PushMoeCombine) == 28);

struct PushGetRows {
  std::uint32_t ncols;
  std::uint32_t nrows;        // rows of this weight chunk
  std::uint32_t row0;         // the chunk's first row
  std::uint32_t nrows_total;  // rows of the whole weight (ids at or past it give zeros)
  std::uint32_t ntok;
};
static_assert(sizeof(PushGetRows) == 20);

struct PushSample {
  std::uint32_t ncols;
  std::uint32_t nrows;
};
static_assert(sizeof(PushSample) == 8);

struct PushSampler {
  std::uint32_t ncols;
  std::uint32_t nrows;
  std::uint32_t slices;      // slices per row
  std::uint32_t slice_cols;  // columns per slice (the last slice may be shorter)
  std::uint32_t cand_cap;    // candidates a slice keeps
};
static_assert(sizeof(PushSampler) == 20);

struct PushBias {
  std::uint32_t n;
  std::uint32_t ncols;
};
static_assert(sizeof(PushBias) == 8);

struct PushRope {
  std::uint32_t ntok;
  std::uint32_t nheads;
  std::uint32_t half_dim;  // head_dim / 2
  std::uint32_t rot_half;  // rotated pairs: rotary dims / 2 (partial rotary: fewer than half_dim)
};
static_assert(sizeof(PushRope) == 16);

struct PushRopeKv {
  std::uint32_t ntok;
  std::uint32_t n_heads;
  std::uint32_t n_kv_heads;
  std::uint32_t half_dim;
  std::uint32_t qkv_stride;
  std::uint32_t num_slots;
  float eps;
  std::uint32_t rot_half;  // rotated pairs (partial rotary: fewer than half_dim)
  float mscale;            // the rotated pairs times this (LongRoPE's attention factor)
};
static_assert(sizeof(PushRopeKv) == 36);

struct PushKvWrite {
  std::uint32_t ntok;
  std::uint32_t kv_dim;
  std::uint32_t num_slots;  // slots >= num_slots are skipped
};
static_assert(sizeof(PushKvWrite) == 12);

struct PushAttention {
  std::uint32_t ntok;
  std::uint32_t nseq;
  std::uint32_t n_heads;
  std::uint32_t group;       // n_heads / n_kv_heads
  std::uint32_t kv_dim;      // n_kv_heads * head_dim
  std::uint32_t block_size;
  std::uint32_t max_blocks;  // row length of the block table
  std::uint32_t num_blocks;  // blocks in each pool
  std::uint32_t tiles;       // row tiles in the grid
  float scale;
  std::uint32_t split_keys;  // split variant: keys per range
  std::uint32_t nsplit;      // split variant: ranges in the grid
  std::uint32_t window;      // sliding window (0: none)
  float softcap;             // attention-logit soft-capping (0: none)
  std::uint32_t sinks;       // 1: the sinks binding holds a logit per query head (0: none)
};
static_assert(sizeof(PushAttention) == 60);

}  // namespace vkllm::ops
