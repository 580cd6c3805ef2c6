// Host side of shaders/argmax.comp and shaders/sample.comp, and the host copy of the sampler's
// uniform draw. Knows no Vulkan, no models.
#include "engine/ops/sample.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <span>
#include <stdexcept>

#include <fmt/format.h>

#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {
namespace {

// PCG's output permutation as an integer hash (Jarkko & Olano, "Hash Functions for GPU
// Rendering", 2020). Same integer code as pcg_hash in shaders/sample.comp.
std::uint32_t pcg_hash(std::uint32_t v) {
  const std::uint32_t state = v * 747796405u + 2891336453u;
  const std::uint32_t word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

void check_shape(const Kernels& k, std::uint32_t nrows, std::uint32_t ncols, const char* op) {
  if (ncols == 0) throw std::logic_error(fmt::format("{}: rows of 0 columns", op));
  if (nrows > k.caps().props.max_workgroup_count[0]) {
    throw std::logic_error(fmt::format("{}: {} rows exceed one dispatch ({} workgroups)", op,
                                       nrows, k.caps().props.max_workgroup_count[0]));
  }
  // The shaders index elements with 32-bit integers.
  if (std::uint64_t{nrows} * ncols > 0xFFFFFFFFull) {
    throw std::logic_error(fmt::format("{}: [{}, {}] exceeds 2^32 elements", op, nrows, ncols));
  }
}

// The sampler's slices (shaders/sample.comp): rows longer than a slice are cut into slices,
// one workgroup each in the first two phases; each slice keeps its kCandCap largest e as
// candidates, which serve top-k up to kCandCap.
constexpr std::uint32_t kCandCap = 128;
constexpr std::uint32_t kPartWords = 8;  // kPartWords in the shader

struct Slices {
  std::uint32_t count;
  std::uint32_t cols;
};

Slices slices(std::uint32_t ncols, std::uint32_t slice_cols) {
  const std::uint32_t count = (ncols + slice_cols - 1) / slice_cols;
  return {count, count == 1 ? ncols : slice_cols};
}

// One workgroup per row: the tuned row size, smaller for short rows (small vocabularies, tests)
// where most invocations would idle through every barrier.
std::uint32_t row_workgroup(const Kernels& k, std::uint32_t ncols) {
  return std::min(k.tuning().rows_workgroup, std::max<std::uint32_t>(64, std::bit_ceil(ncols)));
}

}  // namespace

SamplingRow sampling_row(const sample::SamplingParams& p, std::uint32_t counter,
                         std::uint32_t penalty_offset, std::uint32_t penalty_count) {
  SamplingRow row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.seed_lo = static_cast<std::uint32_t>(p.seed);
  row.seed_hi = static_cast<std::uint32_t>(p.seed >> 32);
  row.counter = counter;
  row.penalty_offset = penalty_offset;
  row.penalty_count = penalty_count;
  return row;
}

float sample_uniform(std::uint32_t seed_lo, std::uint32_t seed_hi, std::uint32_t counter) {
  const std::uint32_t h = pcg_hash(seed_lo ^ pcg_hash(seed_hi ^ pcg_hash(counter)));
  return static_cast<float>(h >> 8u) * (1.0f / 16777216.0f);
}

std::uint64_t sample_scratch_bytes(std::uint32_t nrows, std::uint32_t ncols,
                                   std::uint32_t slice_cols) {
  // The working rows, then per slice its partials, candidates (e and index) and top list.
  const std::uint64_t per_slice = kPartWords + 2 * kCandCap + kMaxTopLogprobs;
  const std::uint64_t nslices = slices(ncols, std::max(slice_cols, 1u)).count;
  const std::uint64_t words = std::uint64_t{nrows} * ncols + std::uint64_t{nrows} * nslices * per_slice;
  return std::max<std::uint64_t>(words * 4, 4);
}

void record_argmax(Kernels& k, CommandStream& cs, BufferSpan logits, BufferSpan ids,
                   std::uint32_t nrows, std::uint32_t ncols) {
  if (nrows == 0) return;
  check_shape(k, nrows, ncols, "argmax");
  const std::uint64_t bytes = std::uint64_t{nrows} * ncols * 4;
  require_bytes(logits, bytes, "argmax", "logits");
  require_bytes(ids, std::uint64_t{nrows} * 4, "argmax", "ids");
  logits.size = bytes;
  ids.size = std::uint64_t{nrows} * 4;
  const std::uint32_t wg = row_workgroup(k, ncols);
  const auto& p = k.pipeline(shaders::ShaderId::argmax_f32, 2, sizeof(PushSample), {wg});
  const PushSample push{ncols, nrows};
  cs.dispatch(p, {{logits, Access::read}, {ids, Access::write}}, push, {nrows, 1, 1},
              fmt::format("argmax_f32 [{}, {}]", nrows, ncols));
}

void record_sample(Kernels& k, CommandStream& cs, BufferSpan logits, BufferSpan rows,
                   BufferSpan penalties, BufferSpan scratch, BufferSpan ids, BufferSpan logprobs,
                   BufferSpan top, std::uint32_t nrows, std::uint32_t ncols,
                   std::uint32_t slice_cols, std::optional<BufferSpan> masks) {
  if (nrows == 0) return;
  check_shape(k, nrows, ncols, "sample");
  if (slice_cols == 0) slice_cols = std::max(k.tuning().sample_slice_cols, kSampleMinSliceCols);
  const Slices sl = slices(ncols, slice_cols);
  // The shader stores indices as f32 (exact below 2^24) and indexes scratch with 32 bits.
  if (ncols >= (1u << 24)) {
    throw std::logic_error(fmt::format("sample: {} columns exceed 2^24", ncols));
  }
  const std::uint64_t scratch_bytes = sample_scratch_bytes(nrows, ncols, slice_cols);
  if (scratch_bytes / 4 > 0xFFFFFFFFull) {
    throw std::logic_error(fmt::format("sample: [{}, {}] needs more than 2^32 scratch words",
                                       nrows, ncols));
  }
  if (sl.count > 1 && nrows > k.caps().props.max_workgroup_count[1]) {
    throw std::logic_error(fmt::format("sample: {} rows exceed one dispatch ({} workgroups in y)",
                                       nrows, k.caps().props.max_workgroup_count[1]));
  }
  const std::uint64_t bytes = std::uint64_t{nrows} * ncols * 4;
  require_bytes(logits, bytes, "sample", "logits");
  require_bytes(rows, std::uint64_t{nrows} * sizeof(SamplingRow), "sample", "rows");
  require_bytes(penalties, sizeof(PenaltyEntry), "sample", "penalties");
  require_bytes(scratch, scratch_bytes, "sample", "scratch");
  require_bytes(ids, std::uint64_t{nrows} * 4, "sample", "ids");
  require_bytes(logprobs, std::uint64_t{nrows} * 4, "sample", "logprobs");
  require_bytes(top, sample_top_bytes(nrows), "sample", "top");
  logits.size = bytes;
  top.size = sample_top_bytes(nrows);
  rows.size = std::uint64_t{nrows} * sizeof(SamplingRow);
  ids.size = logprobs.size = std::uint64_t{nrows} * 4;
  scratch.size = scratch_bytes;
  // The shader bounds penalty entries by the bound range: bind whole entries only.
  penalties.size = penalties.resolved_size() / sizeof(PenaltyEntry) * sizeof(PenaltyEntry);
  const PushSampler push{ncols, nrows, sl.count, sl.cols, kCandCap};
  const auto push_bytes = std::as_bytes(std::span<const PushSampler>(&push, 1));
  BufferSpan mask_words = masks.value_or(penalties);
  require_bytes(mask_words, 4, "sample", "masks");
  mask_words.size = mask_words.resolved_size() / 4 * 4;
  // The outputs: written by the finishing phase only, bound read-only to the slice phases.
  auto bindings = [&](Access outputs) {
    return std::array<platform::Binding, 8>{{{logits, Access::read},
                                              {rows, Access::read},
                                              {penalties, Access::read},
                                              {scratch, Access::read_write},
                                              {ids, outputs},
                                              {logprobs, outputs},
                                              {top, outputs},
                                              {mask_words, Access::read}}};
  };
  if (sl.count > 1) {
    const std::uint32_t wg = row_workgroup(k, sl.cols);
    const auto slice_bindings = bindings(Access::read);
    for (const auto id : {shaders::ShaderId::sample_prepare_f32,
                          shaders::ShaderId::sample_candidates_f32}) {
      const auto& p = k.pipeline(id, 8, sizeof(PushSampler), {wg});
      cs.dispatch(p, slice_bindings, push_bytes, {sl.count, nrows, 1},
                  fmt::format("{} [{}, {}] in {} slices", shaders::shader(id).name, nrows,
                              ncols, sl.count));
    }
  }
  const auto& p = k.pipeline(shaders::ShaderId::sample_f32, 8, sizeof(PushSampler),
                             {row_workgroup(k, ncols)});
  cs.dispatch(p, bindings(Access::write), push_bytes, {nrows, 1, 1},
              fmt::format("sample_f32 [{}, {}]", nrows, ncols));
}

}  // namespace vkllm::ops
