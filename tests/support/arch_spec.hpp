// What random-weight test models of each family set beyond their shapes, so that the family's
// own features bite in a short test: Gemma's sliding window a few blocks long (prompts and
// decodes run past it), soft-caps small enough to bend the scores and logits of random weights,
// gemma3's six layers (five local, one global with its own scaled RoPE), and the MoE families'
// eight experts (a few chosen a token, so some get many of a step's tokens and some none), and
// gpt-oss's window, sinks, biases and YaRN.
#pragma once

#include <cstdint>

#include "engine/model/synthetic.hpp"

namespace vkllm::test {

// A family the model tests run through: an architecture, and for llama whether it has experts
// (Mixtral).
struct Family {
  model::Arch arch;
  bool experts;
  const char* name;
};
inline constexpr Family kFamilies[] = {
    {model::Arch::llama, false, "llama"},       {model::Arch::llama, true, "mixtral"},
    {model::Arch::qwen2, false, "qwen2"},       {model::Arch::qwen2moe, true, "qwen2moe"},
    {model::Arch::qwen3, false, "qwen3"},       {model::Arch::qwen3moe, true, "qwen3moe"},
    {model::Arch::phi3, false, "phi3"},         {model::Arch::gemma2, false, "gemma2"},
    {model::Arch::gemma3, false, "gemma3"},     {model::Arch::gpt_oss, true, "gpt-oss"}};

// `experts`: llama with experts (the MoE families always have them).
inline void exercise_family(model::SyntheticSpec& s, std::uint32_t window = 16, bool experts = false) {
  if (s.arch == model::Arch::gemma2) {
    s.sliding_window = window;  // even layers of the two
    s.attn_softcap = 2.f;
    s.final_softcap = 8.f;
  } else if (s.arch == model::Arch::gemma3) {
    s.n_layers = 6;
    s.sliding_window = window;
    s.rope_base = 1000000.f;
    s.linear_rope_factor = 8.f;
    s.final_softcap = 10.f;
  } else if (s.arch == model::Arch::gpt_oss) {
    s.sliding_window = window;  // even layers of the two
    s.yarn_factor = 8.f;        // YaRN over an original context of 32: the tests run past it
    s.yarn_original_context = 32;
  }
  if (experts || s.arch == model::Arch::qwen2moe || s.arch == model::Arch::qwen3moe ||
      s.arch == model::Arch::gpt_oss) {
    // Mixtral 2 of 8 (its experts ffn_dim wide), qwen3moe 3 with the weights renormalised,
    // qwen2moe 4 without, beside its shared expert; gpt-oss 4 (MXFP4, biases, the softmax of
    // the chosen ones).
    s.n_experts = 8;
    s.n_experts_used = s.arch == model::Arch::qwen2moe || s.arch == model::Arch::gpt_oss ? 4
                       : s.arch == model::Arch::qwen3moe                                 ? 3
                                                                                         : 2;
    s.expert_ffn_dim = 256;
  }
}

inline void exercise_family(model::SyntheticSpec& s, const Family& f, std::uint32_t window = 16) {
  s.arch = f.arch;
  exercise_family(s, window, f.experts);
}

}  // namespace vkllm::test
