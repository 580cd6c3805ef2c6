// Host side of shaders/rms_norm.comp and shaders/softmax.comp. Knows no Vulkan, no models.
#include "engine/ops/norm.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {
namespace {

constexpr std::uint32_t kSpreadRows = 8;
constexpr std::uint32_t kMaxSlices = 8;

void check_rows(const Kernels& k, std::uint32_t nrows, const char* op) {
  if (nrows > k.caps().props.max_workgroup_count[0]) {
    throw std::logic_error(fmt::format("{}: {} rows exceed one dispatch", op, nrows));
  }
}

// RMSNorm into out, or added to it (accumulate).
void rms_norm(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan out,
              std::uint32_t ncols, std::uint32_t nrows, float eps, bool accumulate) {
  const char* op = accumulate ? "rms_norm_add" : "rms_norm";
  const std::uint64_t bytes = std::uint64_t{ncols} * nrows * 4;
  require_bytes(x, bytes, op, "x");
  require_bytes(w, std::uint64_t{ncols} * 4, op, "w");
  require_bytes(out, bytes, op, "out");
  check_rows(k, nrows, op);
  x.size = out.size = bytes;
  w.size = std::uint64_t{ncols} * 4;
  const std::uint32_t wg = k.tuning().rows_workgroup;
  const auto& p = k.pipeline(accumulate ? shaders::ShaderId::rms_norm_add_f32 : shaders::ShaderId::rms_norm_f32,
                             3, sizeof(PushRows), {wg});
  const PushRows push{ncols, nrows, eps};
  // Few rows (decode): a row's slices over several workgroups, each writing at least 4 columns
  // per invocation; many rows fill the device with one workgroup each.
  const std::uint32_t slices =
      nrows >= kSpreadRows ? 1 : std::clamp<std::uint32_t>(ncols / (4 * wg), 1, kMaxSlices);
  cs.dispatch(p, {{x, Access::read}, {w, Access::read}, {out, accumulate ? Access::read_write : Access::write}},
              push, {nrows, slices, 1},
              fmt::format("{}_f32 [{}, {}]{}", op, nrows, ncols,
                          slices > 1 ? fmt::format(" in {} slices", slices) : ""));
}

}  // namespace

void record_rms_norm(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan out,
                     std::uint32_t ncols, std::uint32_t nrows, float eps) {
  rms_norm(k, cs, x, w, out, ncols, nrows, eps, false);
}

void record_rms_norm_add(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan out,
                         std::uint32_t ncols, std::uint32_t nrows, float eps) {
  if (x.buffer == out.buffer) throw std::logic_error("rms_norm_add: out must not be x's buffer");
  rms_norm(k, cs, x, w, out, ncols, nrows, eps, true);
}

void record_layer_norm(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan w, BufferSpan b,
                       BufferSpan out, std::uint32_t ncols, std::uint32_t nrows, float eps) {
  const std::uint64_t bytes = std::uint64_t{ncols} * nrows * 4;
  require_bytes(x, bytes, "layer_norm", "x");
  require_bytes(w, std::uint64_t{ncols} * 4, "layer_norm", "w");
  require_bytes(b, std::uint64_t{ncols} * 4, "layer_norm", "b");
  require_bytes(out, bytes, "layer_norm", "out");
  check_rows(k, nrows, "layer_norm");
  x.size = out.size = bytes;
  w.size = b.size = std::uint64_t{ncols} * 4;
  const std::uint32_t wg = k.tuning().rows_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::layer_norm_f32, 4, sizeof(PushRows), {wg});
  const PushRows push{ncols, nrows, eps};
  // One workgroup per row: encoders run whole prompts, never few-row decode steps.
  cs.dispatch(p, {{x, Access::read}, {w, Access::read}, {out, Access::write}, {b, Access::read}},
              push, {nrows, 1, 1}, fmt::format("layer_norm_f32 [{}, {}]", nrows, ncols));
}

void record_softmax(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out,
                    std::uint32_t ncols, std::uint32_t nrows, float scale) {
  const std::uint64_t bytes = std::uint64_t{ncols} * nrows * 4;
  require_bytes(x, bytes, "softmax", "x");
  require_bytes(out, bytes, "softmax", "out");
  check_rows(k, nrows, "softmax");
  x.size = out.size = bytes;
  const std::uint32_t wg = k.tuning().rows_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::softmax_f32, 2, sizeof(PushRows), {wg});
  const PushRows push{ncols, nrows, scale};
  cs.dispatch(p, {{x, Access::read}, {out, Access::read_write}}, push, {nrows, 1, 1},
              fmt::format("softmax_f32 [{}, {}]", nrows, ncols));
}

}  // namespace vkllm::ops
