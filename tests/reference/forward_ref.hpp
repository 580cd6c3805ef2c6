// A plain C++ forward pass of the llama family (llama, qwen2, qwen3, phi3, gemma2, gemma3, and
// the Mixture-of-Experts layers of Mixtral, qwen2moe, qwen3moe and gpt-oss), one token at a time with a
// contiguous K/V cache, every weight dequantized to f32 and every sum in double. The oracle of
// the model tests; written for clarity, not speed. Knows no Vulkan.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/model/config.hpp"

namespace vkllm::ref {

class ReferenceModel {
 public:
  // `round_kv_f16`: store K/V rounded through f16, as the device does where it has 16-bit storage.
  // `context`: the context the model runs with (LongRoPE's factor set; 0: the short one).
  explicit ReferenceModel(const gguf::Reader& reader, bool round_kv_f16 = false,
                          std::uint32_t context = 0);

  const model::ModelConfig& config() const { return config_; }
  // Runs `token` at the next position; returns the logits [vocab] that predict the one after it.
  std::vector<float> forward(std::uint32_t token);
  std::uint32_t length() const { return length_; }

 private:
  struct Layer {
    std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down, bq, bk, bv,
        q_norm, k_norm, post_attn_norm, post_ffw_norm;
    // MoE: the router [n_experts, d_model], the experts one after another, the shared expert's
    // gate [d_model] (its FFN: w_gate, w_up, w_down).
    std::vector<float> router, exp_gate, exp_up, exp_down, shexp_gate;
    // gpt-oss: the output projection's bias, the heads' sinks, the router's and the experts'
    // biases (expert after expert).
    std::vector<float> bo, sinks, router_b, exp_gate_b, exp_up_b, exp_down_b;
    std::vector<float> k_cache, v_cache;  // [length, kv_dim]
  };
  model::ModelConfig config_;
  bool round_kv_f16_;
  std::vector<float> token_embd_, output_norm_, output_, inv_freq_, inv_freq_local_;
  std::vector<Layer> layers_;
  std::uint32_t length_ = 0;
};

// bert (docs/ARCHITECTURE.md "Embeddings"): a whole input at once, every token attending to
// every other, weights dequantized to f32 and sums in double. Returns the last layer's hidden
// states [n, d_model]; the caller pools.
class ReferenceEncoder {
 public:
  explicit ReferenceEncoder(const gguf::Reader& reader);
  const model::ModelConfig& config() const { return config_; }
  std::vector<float> forward(const std::vector<std::uint32_t>& tokens) const;

 private:
  struct Layer {
    std::vector<float> wq, bq, wk, bk, wv, bv, wo, bo, attn_norm_w, attn_norm_b, w_up, b_up,
        w_down, b_down, out_norm_w, out_norm_b;
  };
  model::ModelConfig config_;
  std::vector<float> token_embd_, position_embd_, token_types_, embd_norm_w_, embd_norm_b_;
  std::vector<Layer> layers_;
};

// Pools hidden states [n, d] as `pooling` says and scales the result to unit length.
std::vector<float> pool_normalized(const std::vector<float>& hidden, std::uint32_t d,
                                   model::Pooling pooling);

}  // namespace vkllm::ref
