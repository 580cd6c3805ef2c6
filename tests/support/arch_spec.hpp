// What random-weight test models of each family set beyond their shapes, so that the family's
// own features bite in a short test: Gemma's sliding window a few blocks long (prompts and
// decodes run past it), soft-caps small enough to bend the scores and logits of random weights,
// and gemma3's six layers (five local, one global with its own scaled RoPE).
#pragma once

#include <cstdint>

#include "engine/model/synthetic.hpp"

namespace vkllm::test {

inline void exercise_family(model::SyntheticSpec& s, std::uint32_t window = 16) {
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
  }
}

}  // namespace vkllm::test
