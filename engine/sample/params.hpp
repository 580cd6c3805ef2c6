// What a request asks of token selection: sampling parameters, logit bias, and the penalty list
// the device sampler reads. Plain data (pure C++); ops/sample records the kernel that uses it,
// and docs/ARCHITECTURE.md ("Sampling") says which tokens each penalty counts.
#pragma once

#include <cstdint>

namespace vkllm::sample {

// What a user asks of the sampler (llama.cpp's defaults where it has them).
struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  std::uint32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repetition_penalty = 1.f;  // over the prompt and the output (HF / vLLM)
  float presence_penalty = 0.f;    // over the output only (OpenAI)
  float frequency_penalty = 0.f;   // over the output only (OpenAI)
  std::uint32_t penalty_last_n = 64;  // tokens the penalties look back over
  std::uint64_t seed = 0;

  bool penalizes() const {
    return repetition_penalty != 1.f || presence_penalty != 0.f || frequency_penalty != 0.f;
  }
};

struct LogitBias {
  std::uint32_t token = 0;
  float bias = 0;  // added to the token's logit before sampling (-100 bans, +100 forces)
};

// One entry of a row's penalty list, std430 layout (mirrored in shaders/sample.comp): a token the
// request has seen, how often it was generated, and its logit bias.
struct PenaltyEntry {
  std::uint32_t token = 0;
  std::uint32_t count = 0;  // times generated (frequency and presence penalties)
  float bias = 0;           // added after the penalties (OpenAI logit_bias)
  std::uint32_t seen = 0;   // 1: in the prompt or the output (repetition penalty)
};
static_assert(sizeof(PenaltyEntry) == 16);

}  // namespace vkllm::sample
