// Host side of shaders/moe_route.comp and shaders/moe_combine.comp. Knows no Vulkan, no models.
#include "engine/ops/moe.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {

MoeRouteLayout moe_route_layout(std::uint32_t max_tokens, std::uint32_t n_expert, std::uint32_t n_used) {
  if (n_expert == 0 || n_expert > kMaxExperts || n_used == 0 || n_used > n_expert) {
    throw std::logic_error(fmt::format("moe: {} of {} experts a token (1..{} experts)", n_used,
                                       n_expert, kMaxExperts));
  }
  MoeRouteLayout l;
  l.n_expert = n_expert;
  l.n_used = n_used;
  l.max_tokens = max_tokens;
  const std::uint64_t pairs = std::uint64_t{max_tokens} * n_used;
  if (3 * pairs + 2 * n_expert >= (1ull << 31)) {
    throw std::logic_error(fmt::format("moe: {} pairs exceed the route buffer's indexing", pairs));
  }
  l.sel = 0;
  l.weights = static_cast<std::uint32_t>(pairs);
  l.counts = static_cast<std::uint32_t>(2 * pairs);
  l.offsets = l.counts + n_expert;
  l.entries = l.offsets + n_expert;
  l.active_experts = static_cast<std::uint32_t>(l.entries + pairs);
  l.n_active = l.active_experts + n_expert;
  l.bytes = (std::uint64_t{l.n_active} + 1) * 4;
  return l;
}

void record_moe_route(Kernels& k, CommandStream& cs, const MoeRouteLayout& layout, BufferSpan logits,
                      std::uint32_t stride, BufferSpan route, std::uint32_t ntok, MoeGating gating,
                      bool norm) {
  if (ntok == 0) return;
  if (ntok > layout.max_tokens || stride < layout.n_expert) {
    throw std::logic_error(fmt::format("moe_route: {} tokens (at most {}), logit rows of {} for {} experts",
                                       ntok, layout.max_tokens, stride, layout.n_expert));
  }
  require_bytes(logits, (std::uint64_t{ntok - 1} * stride + layout.n_expert) * 4, "moe_route", "logits");
  require_bytes(route, layout.bytes, "moe_route", "route");
  logits.size = (std::uint64_t{ntok - 1} * stride + layout.n_expert) * 4;
  route.size = layout.bytes;
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::moe_route, 2, sizeof(PushMoeRoute), {wg});
  const PushMoeRoute push{ntok, layout.n_expert, layout.n_used, stride,
                          static_cast<std::uint32_t>(gating), norm ? 1u : 0u, layout.sel,
                          layout.weights, layout.counts, layout.offsets, layout.entries,
                          layout.active_experts, layout.n_active};
  cs.dispatch(p, {{logits, Access::read}, {route, Access::read_write}}, push, {1, 1, 1},
              fmt::format("moe_route {} tok, top {} of {}", ntok, layout.n_used, layout.n_expert));
}

void record_moe_combine(Kernels& k, CommandStream& cs, const MoeRouteLayout& layout, BufferSpan x,
                        BufferSpan y, BufferSpan route, std::uint32_t ntok, std::uint32_t ncols,
                        BufferSpan logits, std::uint32_t stride, const MoeShared* shared) {
  if (ntok == 0) return;
  const std::uint64_t n = std::uint64_t{ntok} * ncols;
  require_bytes(x, n * 4, "moe_combine", "x");
  require_bytes(y, n * layout.n_used * 4, "moe_combine", "y");
  require_bytes(route, layout.bytes, "moe_combine", "route");
  x.size = n * 4;
  y.size = n * layout.n_used * 4;
  route.size = layout.bytes;
  BufferSpan shared_out = y;  // unread without a shared expert (one layout for both)
  if (shared) {
    if (shared->gate_col >= stride) {
      throw std::logic_error(fmt::format("moe_combine: gate column {} of logit rows of {}",
                                         shared->gate_col, stride));
    }
    require_bytes(logits, (std::uint64_t{ntok - 1} * stride + shared->gate_col + 1) * 4, "moe_combine", "logits");
    shared_out = shared->out;
    require_bytes(shared_out, n * 4, "moe_combine", "shared");
    shared_out.size = n * 4;
  }
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::moe_combine, 5, sizeof(PushMoeCombine), {wg});
  const PushMoeCombine push{ntok, ncols, layout.n_used, layout.weights, shared ? 1u : 0u, stride,
                            shared ? shared->gate_col : 0u};
  cs.dispatch(p,
              {{x, Access::read_write},
               {y, Access::read},
               {route, Access::read},
               {logits, Access::read},
               {shared_out, Access::read}},
              push, {group_count(k, n, wg), 1, 1},
              fmt::format("moe_combine [{}, {}] x {}{}", ntok, ncols, layout.n_used,
                          shared ? " + shared" : ""));
}

}  // namespace vkllm::ops
