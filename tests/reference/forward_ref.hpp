// A plain C++ forward pass of the llama family (llama, qwen2, qwen3), one token at a time with a
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
        q_norm, k_norm;
    std::vector<float> k_cache, v_cache;  // [length, kv_dim]
  };
  model::ModelConfig config_;
  bool round_kv_f16_;
  std::vector<float> token_embd_, output_norm_, output_, inv_freq_;
  std::vector<Layer> layers_;
  std::uint32_t length_ = 0;
};

}  // namespace vkllm::ref
