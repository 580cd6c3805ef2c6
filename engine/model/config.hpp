// What a GGUF file says about the network: architecture family, shapes, RoPE, norms, and the
// tensor names and shapes it must hold. Pure C++ (no device). Anything vkllm cannot run is a
// clear error naming the key, tensor or value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/gguf/gguf.hpp"

namespace vkllm::model {

enum class Arch { llama, qwen2, qwen3, phi3 };
const char* to_string(Arch arch);

enum class RopeScaling { none, linear, llama3, longrope };

struct RopeConfig {
  float base = 10000.f;
  std::uint32_t dims = 0;  // rotated dims per head (= head_dim for the supported families)
  bool neox = false;       // rotate (i, i + dims/2) instead of adjacent pairs
  RopeScaling scaling = RopeScaling::none;
  float factor = 1.f;  // linear: positions / factor; llama3: the long-wavelength divisor
  // llama3 only (Llama 3.1 defaults): wavelengths between these bands are interpolated.
  float low_freq_factor = 1.f;
  float high_freq_factor = 4.f;
  std::uint32_t original_context = 8192;
  // Per-pair divisors from the file's rope_freqs.weight (llama3 scaling as converters write it),
  // or LongRoPE's set for the context in use; empty when absent.
  std::vector<float> freq_factors;
  // LongRoPE (phi3's 128k files): rope_factors_short.weight for contexts up to original_context,
  // rope_factors_long.weight beyond (chosen once for the configured context, as llama.cpp does:
  // the cached keys must not change rotation mid-sequence), and the attention factor that scales
  // cos and sin, so the attention scores by its square.
  std::vector<float> short_factors, long_factors;
  float attn_factor = 1.f;
};

struct ModelConfig {
  Arch arch = Arch::llama;
  std::string name;  // general.name or the architecture
  std::uint32_t n_layers = 0;
  std::uint32_t d_model = 0;
  std::uint32_t n_heads = 0;
  std::uint32_t n_kv_heads = 0;
  std::uint32_t head_dim = 0;
  std::uint32_t ffn_dim = 0;
  std::uint32_t vocab_size = 0;
  std::uint32_t context_length = 0;  // trained context (the server may use less)
  float rms_eps = 1e-5f;
  RopeConfig rope;
  bool qkv_bias = false;      // qwen2
  bool qk_norm = false;       // qwen3
  // phi3: Q, K and V in one tensor (attn_qkv, rows q | k | v) and gate and up in one (ffn_up,
  // rows gate | up), as its converter writes them.
  bool fused_qkv = false;
  bool fused_gate_up = false;
  bool tied_output = false;   // no output.weight: the LM head reads token_embd.weight

  std::uint32_t q_dim() const { return n_heads * head_dim; }
  std::uint32_t kv_dim() const { return n_kv_heads * head_dim; }

  // Reads and checks the metadata and every tensor the forward pass needs (presence, shape,
  // a weight type vkllm reads). Throws InvalidModel / Unsupported naming the cause.
  static ModelConfig from_gguf(const gguf::Reader& reader);

  // Fixes what depends on the context the model runs with: LongRoPE's factor set (the short one
  // up to the original context, the long one beyond). from_gguf leaves the short one.
  void use_context(std::uint32_t context);
};

// Per-pair inverse frequencies (head_dim / 2 values) with scaling folded in: pair i of a token
// at position p turns by p * inv_freq[i].
std::vector<float> rope_inv_freq(const RopeConfig& rope);

// The llama3 per-pair divisors that converters store as rope_freqs.weight.
std::vector<float> llama3_freq_factors(const RopeConfig& rope);

// Tensor names of the supported families (ggml/llama.cpp naming).
std::string layer_tensor(std::uint32_t layer, const char* what);  // "blk.{layer}.{what}.weight"
std::string layer_bias(std::uint32_t layer, const char* what);    // "blk.{layer}.{what}.bias"

// Weight types the forward pass reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS).
bool weight_type_runnable(gguf::TensorType type);

}  // namespace vkllm::model
