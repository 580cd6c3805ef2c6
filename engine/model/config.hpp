// What a GGUF file says about the network: architecture family, shapes, RoPE, norms, and the
// tensor names and shapes it must hold. Pure C++ (no device). Anything vkllm cannot run is a
// clear error naming the key, tensor or value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf/gguf.hpp"

namespace vkllm::model {

// bert: an encoder (BERT/BGE/MiniLM): learned absolute positions, post-LayerNorm layers with
// biases, GELU FFN, bidirectional attention; it computes embeddings, never generates.
// gemma2, gemma3 (text): embeddings times sqrt(d_model), GeGLU, a norm after attention and after
// the FFN (added to the residual), sliding-window attention on a pattern of layers; gemma2 soft-caps
// attention and final logits, gemma3 has QK-norm and a RoPE base of its own on local layers.
// qwen2moe, qwen3moe (and llama with experts: Mixtral): Mixture-of-Experts feed-forwards
// (docs/ARCHITECTURE.md "Mixture of experts") on qwen2's and qwen3's attention.
// gpt_oss ("gpt-oss"): experts with biases and the clamped SwiGLU, gated by the softmax of the
// chosen experts' logits; Q/K/V and output biases, attention sinks, a 128-token window on even
// layers, YaRN; its pre-FFN norm is the file's post_attention_norm.
enum class Arch { llama, qwen2, qwen3, phi3, gemma2, gemma3, bert, qwen2moe, qwen3moe, gpt_oss };
const char* to_string(Arch arch);

// How a sequence's hidden states become one embedding (`<arch>.pooling_type`, llama.cpp's
// numbering: 1 mean, 2 cls, 3 last): the mean over its tokens, its first token's, its last's.
enum class Pooling { mean, cls, last };
const char* to_string(Pooling pooling);
// "mean", "cls" or "last"; nullopt for anything else.
std::optional<Pooling> parse_pooling(std::string_view name);

enum class RopeScaling { none, linear, llama3, longrope, yarn };

struct RopeConfig {
  float base = 10000.f;
  std::uint32_t dims = 0;  // rotated dims per head: head_dim, or fewer (partial rotary)
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
  // cos and sin (the rotated dims of Q and K; with partial rotary, not the rest).
  std::vector<float> short_factors, long_factors;
  float attn_factor = 1.f;
  // YaRN (Qwen2.5/Qwen3's long-context files, gpt-oss), as llama.cpp: each pair's rate is the
  // interpolated one (/ factor) blended toward the original by a ramp over the pairs between the
  // correction dims of beta_fast and beta_slow rotations in original_context, times ext_factor;
  // attn_factor (the rotated pairs' scale) is the file's times 1 + 0.1 ln(factor).
  float yarn_ext_factor = 1.f;
  float yarn_beta_fast = 32.f;
  float yarn_beta_slow = 1.f;
  // bert: no rotation. Its inverse frequencies are zero, so the rotation kernel turns by cos 0 = 1
  // and sin 0 = 0: exactly the identity.
  bool none = false;
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
  // Gemma (docs/ARCHITECTURE.md "Model families"):
  float embed_scale = 0.f;    // > 0: the input embeddings times this (sqrt(d_model))
  bool geglu = false;         // GELU (tanh form) gate instead of SiLU
  bool post_norms = false;    // post_attention_norm and post_ffw_norm, added to the residual
  float attn_softcap = 0.f;   // > 0: attention logits soft-capped (cap * tanh(s / cap))
  float final_softcap = 0.f;  // > 0: output logits soft-capped
  // Sliding-window attention: on layers where layer_slides(l), a query attends its last
  // sliding_window keys (itself included). llama.cpp's pattern rule: with period p, layer l
  // slides when p == 0 or l % p < p - 1 (gemma2: p = 2, even layers; gemma3: p = 6, five of six).
  std::uint32_t sliding_window = 0;
  std::uint32_t swa_period = 0;
  // RoPE of the sliding layers where it differs (gemma3: base 10000, no scaling); else `rope`.
  RopeConfig rope_local;
  // The query scale before the softmax: 1/sqrt(head_dim), or what the family's size says.
  float attn_scale = 0.f;
  // bert (docs/ARCHITECTURE.md "Embeddings"): every token of a sequence attends to every other
  // (the whole input in one step), positions are learned rows added to the input (no rotation),
  // and norms are LayerNorms with biases after each residual. rms_eps is LayerNorm's epsilon.
  bool encoder = false;
  // The pooling the file asks for; without one: last for decoders (Qwen3-Embedding style), mean
  // for encoders.
  Pooling pooling = Pooling::last;

  // Mixture of experts (docs/ARCHITECTURE.md "Mixture of experts"): n_experts > 0 replaces the
  // feed-forward by n_experts_used of n_experts SwiGLU experts of expert_ffn_dim each, chosen
  // per token by the router (ffn_gate_inp): the softmax of its logits over all experts, the top
  // n_experts_used, their weights scaled to sum to 1 where expert_norm (Mixtral, qwen3moe; not
  // qwen2moe). shared_ffn_dim > 0 (qwen2moe): a shared expert of that width beside them, gated
  // by sigmoid(ffn_gate_inp_shexp . x).
  std::uint32_t n_experts = 0;
  std::uint32_t n_experts_used = 0;
  std::uint32_t expert_ffn_dim = 0;
  std::uint32_t shared_ffn_dim = 0;
  bool expert_norm = false;
  // gpt-oss: the router's weights are the softmax of the chosen experts' logits (not of all);
  // the router, the experts' gate/up (through the clamped SwiGLU, Epilogue::swiglu_oai) and down
  // have biases; the attention output projection has one; each head has a sink logit
  // (attn_sinks: a key every query sees, with no value).
  bool gating_chosen = false;
  bool expert_bias = false;
  bool swiglu_oai = false;
  bool out_bias = false;
  bool attn_sinks = false;
  // The tensor of the norm before the feed-forward: ffn_norm, gpt-oss's post_attention_norm.
  const char* ffn_norm_name = "ffn_norm";

  bool moe() const { return n_experts > 0; }
  // The width of the layers' dense feed-forward: ffn_dim, or a MoE layer's shared expert's (0:
  // none).
  std::uint32_t dense_ffn_dim() const { return moe() ? shared_ffn_dim : ffn_dim; }
  std::uint32_t q_dim() const { return n_heads * head_dim; }
  bool layer_slides(std::uint32_t l) const {
    return sliding_window > 0 && (swa_period == 0 || l % swa_period < swa_period - 1);
  }
  std::uint32_t sliding_layers() const {
    std::uint32_t n = 0;
    for (std::uint32_t l = 0; l < n_layers; ++l) n += layer_slides(l) ? 1 : 0;
    return n;
  }
  // The sliding window of layer l (0: full attention).
  std::uint32_t layer_window(std::uint32_t l) const { return layer_slides(l) ? sliding_window : 0; }
  // The RoPE of layer l.
  const RopeConfig& layer_rope(std::uint32_t l) const { return layer_slides(l) ? rope_local : rope; }
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
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4).
bool weight_type_runnable(gguf::TensorType type);

}  // namespace vkllm::model
