// A Mixture-of-Experts layer's feed-forward, recorded into the step (docs/ARCHITECTURE.md
// "Mixture of experts"); the rest of the layer is model.cpp's.
#include "engine/model/model.hpp"
#include "engine/model/workspace.hpp"

#include <cstdint>
#include <functional>

#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/moe.hpp"

namespace vkllm::model {

using platform::Buffer;
using platform::BufferSpan;

// A MoE feed-forward (docs/ARCHITECTURE.md "Mixture of experts"), x += its output: the router's
// logits, the route (each token's experts and weights, the pairs grouped by expert), the experts'
// gate/up and down over their pairs (one dispatch each), the shared expert beside them
// (`shared_ffn`: the dense path into w.gate), and the weighted sum into the residual.
void Model::record_moe(platform::CommandStream& cs, const Layer& L, std::uint32_t T, BufferSpan xn_q8,
                       const std::function<void()>& shared_ffn) {
  ops::Kernels& k = kernels_;
  Workspace& w = *ws_;
  const ModelConfig& c = config_;
  const ops::MoeRouteLayout& layout = w.route_layout;
  const std::uint32_t F = c.expert_ffn_dim, K = c.n_experts_used;
  const std::uint32_t stride = c.n_experts + (c.shared_ffn_dim > 0 ? 1 : 0);
  for (const Slice& sl : L.router) {
    ops::MatmulOut out;
    out.x_q8 = xn_q8;
    out.y_stride = stride;
    out.y0 = sl.y0;
    if (c.expert_bias) {  // gpt-oss: one slice, the router's bias
      out.epilogue = ops::Epilogue::bias;
      out.bias = first_span(L.router_b);
    }
    ops::record_matmul(k, cs, sl.w.view(), w.xn, w.router_logits, T, out);
  }
  ops::record_moe_route(k, cs, layout, w.router_logits, stride, w.route, T,
                        c.gating_chosen ? ops::MoeGating::softmax_chosen : ops::MoeGating::softmax,
                        c.expert_norm);
  if (L.exp_gate_up.bytes() > 0) {
    ops::record_matmul_experts(k, cs, L.exp_gate_up.view(), 2 * F, layout, w.route, w.xn, K, w.exp_h,
                               T, c.swiglu_oai ? ops::Epilogue::swiglu_oai : ops::Epilogue::swiglu,
                               c.expert_bias ? first_span(L.exp_gate_up_b) : BufferSpan{});
  } else {
    ops::record_matmul_experts(k, cs, L.exp_gate.view(), F, layout, w.route, w.xn, K, w.exp_h, T);
    ops::record_matmul_experts(k, cs, L.exp_up.view(), F, layout, w.route, w.xn, K, w.exp_up, T);
    ops::record_silu_mul(k, cs, w.exp_h, w.exp_up, w.exp_h, T * K * F);
  }
  ops::record_matmul_experts(k, cs, L.exp_down.view(), c.d_model, layout, w.route, w.exp_h, 1, w.exp_y, T,
                             c.expert_bias ? ops::Epilogue::bias : ops::Epilogue::store,
                             c.expert_bias ? first_span(L.exp_down_b) : BufferSpan{});
  ops::MoeShared shared{w.shared_out, c.n_experts};
  if (c.shared_ffn_dim > 0) {
    shared_ffn();
    ops::record_matmul(k, cs, L.w_down.view(), w.gate, w.shared_out, T);
  }
  ops::record_moe_combine(k, cs, layout, w.x, w.exp_y, w.route, T, c.d_model, w.router_logits, stride,
                          c.shared_ffn_dim > 0 ? &shared : nullptr);
}

}  // namespace vkllm::model
