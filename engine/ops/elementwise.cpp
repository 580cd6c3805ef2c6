// Host side of shaders/elementwise.comp and shaders/feed_tokens.comp. Knows no Vulkan, no models.
#include "engine/ops/elementwise.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {
namespace {

void record_binary(Kernels& k, CommandStream& cs, shaders::ShaderId id, const char* op,
                   BufferSpan a, BufferSpan b, BufferSpan out, std::uint32_t n, float param = 0) {
  const std::uint64_t bytes = std::uint64_t{n} * 4;
  require_bytes(a, bytes, op, "a");
  require_bytes(b, bytes, op, "b");
  require_bytes(out, bytes, op, "out");
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(id, 3, sizeof(PushElementwise), {wg});
  const PushElementwise push{n, param};
  // Exact ranges: the barrier tracker then sees only what is really touched.
  a.size = b.size = out.size = bytes;
  cs.dispatch(p, {{a, Access::read}, {b, Access::read}, {out, Access::write}}, push,
              {group_count(k, n, wg), 1, 1}, fmt::format("{} n={}", op, n));
}

}  // namespace

void record_add(Kernels& k, CommandStream& cs, BufferSpan a, BufferSpan b, BufferSpan out,
                std::uint32_t n) {
  record_binary(k, cs, shaders::ShaderId::add_f32, "add_f32", a, b, out, n);
}

void record_mul(Kernels& k, CommandStream& cs, BufferSpan a, BufferSpan b, BufferSpan out,
                std::uint32_t n) {
  record_binary(k, cs, shaders::ShaderId::mul_f32, "mul_f32", a, b, out, n);
}

void record_gelu(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out, std::uint32_t n) {
  record_binary(k, cs, shaders::ShaderId::gelu_f32, "gelu_f32", x, x, out, n);
}

void record_scale(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out, std::uint32_t n,
                  float factor) {
  record_binary(k, cs, shaders::ShaderId::scale_f32, "scale_f32", x, x, out, n, factor);
}

void record_softcap(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan out, std::uint32_t n,
                    float cap) {
  if (!(cap > 0.f)) throw std::logic_error(fmt::format("softcap: cap {} is not positive", cap));
  record_binary(k, cs, shaders::ShaderId::softcap_f32, "softcap_f32", x, x, out, n, cap);
}

void record_feed_tokens(Kernels& k, CommandStream& cs, BufferSpan feed, BufferSpan prev,
                        BufferSpan ids, std::uint32_t n) {
  const std::uint64_t bytes = std::uint64_t{n} * 4;
  require_bytes(feed, bytes, "feed_tokens", "feed");
  require_bytes(ids, bytes, "feed_tokens", "ids");
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::feed_tokens, 3, sizeof(PushElementwise), {wg});
  const PushElementwise push{n};
  feed.size = ids.size = bytes;
  cs.dispatch(p, {{feed, Access::read}, {prev, Access::read}, {ids, Access::write}}, push,
              {group_count(k, n, wg), 1, 1}, fmt::format("feed_tokens n={}", n));
}

}  // namespace vkllm::ops
