// Host side of shaders/matvec.comp: variant choice by weight type and device, shape checks.
// Knows no Vulkan, no models.
#include "engine/ops/matvec.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "common/error.hpp"
#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {

void record_matvec(Kernels& k, CommandStream& cs, WeightType type, BufferSpan w, BufferSpan x,
                   BufferSpan y, std::uint32_t ncols, std::uint32_t nrows) {
  const std::uint64_t elem = type == WeightType::f16 ? 2 : 4;
  const std::uint64_t wbytes = std::uint64_t{ncols} * nrows * elem;
  require_bytes(w, wbytes, "matvec", "W");
  require_bytes(x, std::uint64_t{ncols} * 4, "matvec", "x");
  require_bytes(y, std::uint64_t{nrows} * 4, "matvec", "y");
  if (type == WeightType::f16 && !k.caps().fp16_storage) {
    throw Unsupported("matvec with f16 weights needs 16-bit storage buffers");
  }
  w.size = wbytes;
  x.size = std::uint64_t{ncols} * 4;
  y.size = std::uint64_t{nrows} * 4;
  const platform::Tuning& t = k.tuning();
  const auto id = type == WeightType::f16 ? shaders::ShaderId::matvec_f16
                                          : shaders::ShaderId::matvec_f32;
  const auto& p = k.pipeline(id, 3, sizeof(PushMatvec), {t.matvec_workgroup, t.matvec_rows});
  const std::uint32_t groups = (nrows + t.matvec_rows - 1) / t.matvec_rows;
  if (groups > k.caps().props.max_workgroup_count[0]) {
    throw std::logic_error(fmt::format("matvec: {} rows exceed one dispatch", nrows));
  }
  const PushMatvec push{ncols, nrows, ncols};
  cs.dispatch(p, {{w, Access::read}, {x, Access::read}, {y, Access::write}}, push, {groups, 1, 1},
              fmt::format("matvec_{} [{}, {}]", type == WeightType::f16 ? "f16" : "f32", nrows,
                          ncols));
}

}  // namespace vkllm::ops
