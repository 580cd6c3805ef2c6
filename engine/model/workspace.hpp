// The model's layers and step workspace, shared by model.cpp (load, recording), experts.cpp and
// encoder.cpp (the MoE feed-forward and bert's layers) and step.cpp (checking, inputs,
// submission): the layers' weights and K/V pools, what a step writes, the buffers it runs in,
// and its recordings.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/model/model.hpp"
#include "engine/ops/moe.hpp"

namespace vkllm::model {

inline constexpr std::size_t kMaxRecordings = 32;  // shapes x the two input slots

// A weight's first chunk (norms and biases are one chunk).
inline platform::BufferSpan first_span(const ops::DeviceWeight& w) { return w.view().chunks.at(0).span; }

// Offsets of the per-step inputs inside a host-visible input buffer.
struct InputLayout {
  std::uint64_t token_ids, positions, query_start, slot_mapping, block_table, sample_rows,
      sampling, penalties, masks, score_rows, score_sampling, score_penalties, feed, embed_rows,
      attn_limits, swa_slot_mapping, swa_block_table, total;
  // embed_rows: StepInput::embed_rows. attn_limits (encoders): each token's last key, its
  // sequence's last position, which attention reads where a decoder's read positions.
  std::uint32_t max_penalties;
  std::uint32_t mask_words;  // per sampled row (constrained decoding): vocab / 32 rounded up
};

// A weight that writes columns [y0, y0 + its output columns) of a wider activation row.
struct Slice {
  ops::DeviceWeight w;
  std::uint32_t y0 = 0;
};

// The fused layer (docs/ARCHITECTURE.md, the step): Q, K and V concatenated into as few matmuls
// as their types allow (one when they share a type), gate and up interleaved row by row into
// one swiglu matmul when they share a type.
struct Model::Layer {
  ops::DeviceWeight attn_norm, wo, ffn_norm, w_down;
  std::vector<Slice> qkv;                // slices of the qkv row [q | k | v]
  ops::DeviceWeight w_gate_up;           // interleaved (gate, up) rows, when the types match
  ops::DeviceWeight w_gate, w_up;        // else separate
  ops::DeviceWeight b_qkv;               // qwen2: the biases, one f32 row [q | k | v]
  ops::DeviceWeight q_norm, k_norm;      // qwen3, gemma3
  ops::DeviceWeight post_attn_norm, post_ffw_norm;  // gemma2, gemma3
  // bert: attn_norm and ffn_norm hold the LayerNorms after the attention's and the FFN's
  // residuals (attn_output_norm, layer_output_norm), w_up and w_down the FFN; these their biases.
  ops::DeviceWeight attn_norm_b, ffn_norm_b, b_o, b_up, b_down;
  // Mixture of experts (docs/ARCHITECTURE.md "Mixture of experts"): the router, slices of the
  // logit row [experts | the shared expert's gate]; the experts' gate and up interleaved row by
  // row inside each expert when they share a type, else apart; their down. A qwen2moe layer's
  // shared expert is the dense FFN above (w_gate_up or w_gate and w_up, w_down).
  std::vector<Slice> router;
  ops::DeviceWeight exp_gate_up, exp_gate, exp_up, exp_down;
  // gpt-oss: the router's bias [n_experts], the experts' gate/up biases interleaved as their rows
  // [n_experts * 2 * expert_ffn_dim] and down's [n_experts * d_model]; the heads' sink logits
  // [n_heads]. Its attention output bias is b_o.
  ops::DeviceWeight router_b, exp_gate_up_b, exp_down_b, sinks;
  platform::Buffer k_pool, v_pool;
};

struct Model::Workspace {
  InputLayout in;
  // Two of each (docs/ARCHITECTURE.md, the overlapped loop): the host writes step t + 1's inputs
  // and reads step t's output while the other step runs. Upload intent: written by the host,
  // read by the device.
  std::array<platform::Buffer, 2> inputs;
  platform::Buffer x, xn, qkv, q, attn, attn_partials, attn_counters, gate, up, hs, hn, logits,
      scratch, ids, logprobs, inv_freq;
  // RoPE frequencies of the sliding-window layers where they differ from inv_freq (gemma3).
  platform::Buffer inv_freq_local;
  platform::Buffer top;  // [S, kMaxTopLogprobs] ops::TopLogprob
  // Mixture of experts (docs/ARCHITECTURE.md "Mixture of experts"): the router's logits [T,
  // n_experts (+ 1: the shared expert's gate)], the route (route_layout), the experts' hidden
  // rows [T * n_used, expert_ffn_dim] (and up's, where gate and up differ in type), their
  // outputs [T * n_used, d_model], the shared expert's output [T, d_model].
  platform::Buffer router_logits, route, exp_h, exp_up, exp_y, shared_out;
  ops::MoeRouteLayout route_layout;
  // A matmul input quantized for the integer-dot GEMV (ops::record_quantize_q8), where it can run.
  platform::Buffer xq;
  // ids [S], logprobs [S], top [S, kMaxTopLogprobs], score logprobs [T], score top
  // [T, kMaxTopLogprobs]; the next step's feed reads the ids of the other one.
  std::array<platform::Buffer, 2> readback;
  std::uint64_t readback_top = 0;  // offset of top in readback
  std::uint64_t readback_score = 0, readback_score_top = 0;
  // [S, vocab] (tests): one, so a step that wants logits runs alone
  platform::Buffer logits_readback;
  // [max_batch_tokens, d_model] hidden states (ModelOptions::embeddings), one per slot.
  std::array<platform::Buffer, 2> embed_readback;
};

struct Model::Recording {
  platform::CommandStream cs;
  // StepShape::split: the sampler and its readback, submitted by release_masks().
  std::optional<platform::CommandStream> tail{};
  std::uint64_t last_use = 0;
  std::size_t layer_dispatches = 0, layer_barriers = 0;
};

}  // namespace vkllm::model
