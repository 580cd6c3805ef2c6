// Synthetic models: GGUF files with real shapes and random weights, written by our own writer,
// for tests (every architecture family and weight type against the CPU reference) and benchmarks
// (speed does not depend on weight values). They carry a small SentencePiece-style vocabulary
// (byte fallback) so every CLI path works on them. Pure C++.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/gguf/writer.hpp"
#include "engine/model/config.hpp"

namespace vkllm::model {

struct SyntheticSpec {
  Arch arch = Arch::llama;
  std::string name = "synthetic";
  std::uint32_t n_layers = 2;
  std::uint32_t d_model = 256;
  std::uint32_t n_heads = 4;
  std::uint32_t n_kv_heads = 2;
  std::uint32_t head_dim = 64;
  std::uint32_t ffn_dim = 512;
  std::uint32_t vocab_size = 512;
  std::uint32_t context_length = 2048;
  float rope_base = 10000.f;
  std::uint32_t rope_dims = 0;  // rotated dims per head (partial rotary, Phi-4-mini); 0: head_dim
  bool llama3_rope = false;  // write rope_freqs.weight with Llama 3.1 scaling (factor below)
  float rope_factor = 8.f;
  // LongRoPE (phi3's 128k files): rope_factors_short/long.weight, the original context and the
  // attention factor (0: none written).
  bool longrope = false;
  std::uint32_t longrope_original_context = 0;
  float longrope_attn_factor = 0.f;
  bool tied_output = false;
  float rms_eps = 1e-5f;
  // gemma2, gemma3 (gpt-oss: the window only; 128 when 0): the sliding window and its layer period, the soft-caps (each written when
  // > 0), gemma3's linear RoPE scaling of the global layers (rope.scaling.type linear, written
  // when > 0) and the sliding layers' RoPE base (rope.freq_base_swa, written when > 0).
  std::uint32_t sliding_window = 0;
  std::uint32_t swa_period = 0;
  float attn_softcap = 0.f;
  float final_softcap = 0.f;
  float linear_rope_factor = 0.f;
  // YaRN scaling (any family; rope.scaling.type yarn) by this factor over this original context
  // (written when > 0).
  float yarn_factor = 0.f;
  std::uint32_t yarn_original_context = 0;
  float rope_base_local = 0.f;
  // Mixture of experts (llama: Mixtral; qwen2moe, qwen3moe, gpt-oss need them): n_experts > 0 writes a
  // router (f32, as llama.cpp's quantizer keeps it) and the experts' gate, up and down as 3-D
  // tensors of expert_ffn_dim rows each (Mixtral: ffn_dim, its feed_forward_length) instead of
  // the dense feed-forward; qwen2moe adds a
  // shared expert of shared_ffn_dim (0: ffn_dim) and its gate.
  std::uint32_t n_experts = 0;
  std::uint32_t n_experts_used = 0;
  std::uint32_t expert_ffn_dim = 0;
  std::uint32_t shared_ffn_dim = 0;
  // Type of the 2-D weights (norms and biases stay f32). Matrices whose rows are not whole
  // blocks of it fall back to f16 (as llama.cpp's quantizer falls back for odd shapes).
  gguf::TensorType type = gguf::TensorType::kF32;
  // attn_v and ffn_up (and ffn_up_exps) in this type instead (mixed files such as Q4_K_M keep attn_v at Q6_K): the
  // model then runs Q/K/V in two slices and gate/up unfused.
  std::optional<gguf::TensorType> v_up_type;
  // `<arch>.pooling_type` to write (llama.cpp's numbering: 1 mean, 2 cls, 3 last); encoders
  // write 1 (mean) when unset, decoders nothing.
  std::optional<std::uint32_t> pooling;
  std::uint32_t seed = 1;
  // Benchmark models: fill each matrix by repeating a pool of random quantized blocks instead of
  // quantizing every element (minutes -> seconds for 8B shapes; values stay random-looking).
  bool fast_fill = false;
};

// Named presets with real shapes: llama3-1b (Llama 3.2 1B), llama3-8b (Llama 3.1 8B),
// qwen2.5-0.5b, phi3-mini (Phi-3-mini-4k), phi4-mini (Phi-4-mini: partial rotary), gemma2-2b
// (Gemma 2 2B), gemma3-4b (Gemma 3 4B), tiny (~100M parameters, llama, for lavapipe
// benchmarks), tiny-phi3, tiny-phi4, tiny-gemma2 and tiny-gemma3 (tiny's shapes as those
// families), tiny-qwen3moe, tiny-mixtral and tiny-qwen2moe (tiny's attention with 16 experts of
// which 4 run; qwen2moe's shared expert beside them),
// qwen3-30b-a3b (Qwen3-30B-A3B: 128 experts, 8 run), gpt-oss-20b (32 MXFP4 experts, 4 run;
// sinks, biases, a 128 window on even layers, YaRN), tiny-gpt-oss (tiny's attention as a
// gpt-oss, 16 experts), tiny-yarn (tiny with YaRN x4 over 1024
// positions), micro (~0.3M, tests), micro-gemma3 (a micro-sized gemma3, six layers, server
// tests), and the encoders bge-small (BGE-small-en's shapes) and micro-bert (micro's, tests).
std::optional<SyntheticSpec> synthetic_preset(const std::string& name);
std::vector<std::string> synthetic_preset_names();

// Parameters the spec describes (all tensors).
std::uint64_t synthetic_parameter_count(const SyntheticSpec& spec);

// Builds the whole file in a writer (metadata, vocabulary, tensors).
gguf::Writer make_synthetic_model(const SyntheticSpec& spec);

}  // namespace vkllm::model
