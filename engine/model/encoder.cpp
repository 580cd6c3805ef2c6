// bert's layers, recorded into the step (docs/ARCHITECTURE.md "Embeddings"); the decoder
// families' are model.cpp's.
#include "engine/model/model.hpp"
#include "engine/model/workspace.hpp"

#include <cstdint>
#include <utility>

#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/attention.hpp"
#include "engine/ops/norm.hpp"

namespace vkllm::model {

using platform::Buffer;
using platform::BufferSpan;

// bert's layers (docs/ARCHITECTURE.md "Embeddings"): the input is the token's row plus its
// position's plus token type 0's, LayerNormed; each layer is post-norm, every projection with its
// bias: x = LN(x + Wo attn(Wq x, Wk x, Wv x)), x = LN(x + Wdown gelu(Wup x)). Attention is
// bidirectional: each token's last key is its sequence's last (attn_limits), and the whole
// sequence is in the step. No rotation (the inverse frequencies are zero).
std::pair<std::size_t, std::size_t> Model::record_encoder_layers(platform::CommandStream& cs,
                                                                 const StepShape& sh) {
  ops::Kernels& k = kernels_;
  Workspace& w = *ws_;
  const ModelConfig& c = config_;
  const InputLayout& in = w.in;
  const std::uint32_t T = sh.T, S = sh.S;
  const Buffer& inputs = w.inputs[sh.slot];
  const BufferSpan token_ids(inputs, in.token_ids, T * 4);
  const BufferSpan positions(inputs, in.positions, T * 4);
  const BufferSpan limits(inputs, in.attn_limits, T * 4);
  const BufferSpan query_start(inputs, in.query_start, (S + 1) * 4);
  const BufferSpan slots(inputs, in.slot_mapping, T * 4);
  const BufferSpan block_table(inputs, in.block_table, std::uint64_t{S} * max_blocks_per_seq_ * 4);
  const std::uint32_t n = T * c.d_model;

  ops::record_get_rows(k, cs, token_embd_.view(), token_ids, w.x, T);
  ops::record_get_rows(k, cs, position_embd_.view(), positions, w.xn, T);
  ops::record_add(k, cs, w.x, w.xn, w.xn, n);
  ops::record_add_bias(k, cs, w.xn, first_span(token_types_), w.xn, c.d_model, T);
  ops::record_layer_norm(k, cs, w.xn, first_span(embd_norm_), first_span(embd_norm_b_), w.x, c.d_model, T,
                         c.rms_eps);

  ops::AttentionShape shape = attention_shape(T, S);
  ops::RopeKvShape rkv;
  rkv.ntok = T;
  rkv.n_heads = c.n_heads;
  rkv.n_kv_heads = c.n_kv_heads;
  rkv.head_dim = c.head_dim;
  rkv.style = ops::RopeStyle::neox;
  rkv.kv_type = kv_type_;
  const std::uint32_t qkv_stride = c.q_dim() + 2 * c.kv_dim();
  const std::size_t d0 = cs.dispatch_count(), b0 = cs.barrier_count();
  for (const Layer& L : layers_) {
    for (const Slice& sl : L.qkv) {
      ops::MatmulOut out = ops::with_epilogue(ops::Epilogue::bias);
      out.bias = first_span(L.b_qkv);
      out.y_stride = qkv_stride;
      out.y0 = sl.y0;
      ops::record_matmul(k, cs, sl.w.view(), w.x, w.qkv, T, out);
    }
    ops::record_rope_kv(k, cs, rkv, w.qkv, positions, w.inv_freq, slots, w.q, L.k_pool, L.v_pool, {}, {});
    ops::record_attention(k, cs, shape, w.q, L.k_pool, L.v_pool, limits, query_start, block_table,
                          w.attn, w.attn_partials, w.attn_counters);
    ops::MatmulOut o = ops::with_epilogue(ops::Epilogue::bias);
    o.bias = first_span(L.b_o);
    ops::record_matmul(k, cs, L.wo.view(), w.attn, w.xn, T, o);
    ops::record_add(k, cs, w.x, w.xn, w.xn, n);
    ops::record_layer_norm(k, cs, w.xn, first_span(L.attn_norm), first_span(L.attn_norm_b), w.x, c.d_model,
                           T, c.rms_eps);
    ops::MatmulOut up = ops::with_epilogue(ops::Epilogue::bias);
    up.bias = first_span(L.b_up);
    ops::record_matmul(k, cs, L.w_up.view(), w.x, w.gate, T, up);
    ops::record_gelu(k, cs, w.gate, w.gate, T * c.ffn_dim);
    ops::MatmulOut down = ops::with_epilogue(ops::Epilogue::bias);
    down.bias = first_span(L.b_down);
    ops::record_matmul(k, cs, L.w_down.view(), w.gate, w.xn, T, down);
    ops::record_add(k, cs, w.x, w.xn, w.xn, n);
    ops::record_layer_norm(k, cs, w.xn, first_span(L.ffn_norm), first_span(L.ffn_norm_b), w.x, c.d_model,
                           T, c.rms_eps);
  }
  return {cs.dispatch_count() - d0, cs.barrier_count() - b0};
}

}  // namespace vkllm::model
