// Random-weight GGUF models with real shapes (see synthetic.hpp).
#include "engine/model/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include <fmt/format.h>

#include "common/error.hpp"
#include "engine/gguf/quant.hpp"

namespace vkllm::model {
namespace {

using gguf::TensorType;
using gguf::Value;

// A SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte-fallback tokens, then
// distinct pieces (letters and "▁"-prefixed words) with descending scores.
// phi3 and gemma: their chat markers as control tokens at the end, as their vocabularies have them.
void add_vocab(gguf::Writer& w, std::uint32_t vocab_size, Arch arch) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<std::string> tail;
  if (arch == Arch::phi3) tail = {"<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"};
  if (arch == Arch::gemma2 || arch == Arch::gemma3) tail = {"<start_of_turn>", "<end_of_turn>"};
  std::vector<std::int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);
  }
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
  for (std::uint32_t i = 0; tokens.size() + tail.size() < vocab_size; ++i) {
    std::string word;
    // Bijective base 26: every v >= 1 spells a different word (llama.cpp refuses a vocabulary
    // with repeated pieces).
    for (std::uint32_t v = i / 2 + 1; v > 0; v = (v - 1) / 26) word += letters[(v - 1) % 26];
    tokens.push_back(i % 2 == 0 ? "\xE2\x96\x81" + word : word);
    types.push_back(1);
  }
  for (const std::string& t : tail) {
    tokens.push_back(t);
    types.push_back(3);
  }
  std::vector<float> scores(tokens.size());
  for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set("tokenizer.ggml.tokens", Value::string_array(std::move(tokens)));
  w.set("tokenizer.ggml.scores", Value::f32_array(std::move(scores)));
  w.set("tokenizer.ggml.token_type", Value::i32_array(std::move(types)));
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
}

class Filler {
 public:
  Filler(const SyntheticSpec& spec) : spec_(spec), rng_(spec.seed) {}

  // A matrix [nrows, ncols] (ggml dims {ncols, nrows}) with values ~ U(-a, a), a = sqrt(3/ncols)
  // scaled by `gain` (unit-variance outputs for unit-variance inputs).
  // `mats` > 1: a 3-D tensor of that many such matrices (a MoE layer's experts). `type`: this
  // one's instead of the spec's.
  void matrix(gguf::Writer& w, const std::string& name, std::uint32_t ncols, std::uint32_t nrows,
              float gain = 1.f, std::uint32_t mats = 1, std::optional<TensorType> type_override = {}) {
    TensorType type = spec_.type;
    if (spec_.v_up_type && (name.ends_with("attn_v.weight") || name.ends_with("ffn_up.weight") ||
                            name.ends_with("ffn_up_exps.weight"))) {
      type = *spec_.v_up_type;
    }
    type = type_override.value_or(type);
    if (ncols % gguf::traits(type).block_size != 0) type = TensorType::kF16;
    const float a = gain * std::sqrt(3.f / static_cast<float>(ncols));
    const std::uint64_t n = std::uint64_t{ncols} * nrows * mats;
    std::vector<std::uint64_t> dims = {ncols, nrows};
    if (mats > 1) dims.push_back(mats);
    if (!spec_.fast_fill || n <= kPoolElements) {
      std::vector<float> v(n);
      std::uniform_real_distribution<float> d(-a, a);
      for (float& x : v) x = d(rng_);
      w.add_tensor_f32(name, dims, v, type);
      return;
    }
    const gguf::TypeTraits& t = gguf::traits(type);
    // One pool per (type, range): quantizing it is what a large preset's time went to (an 8B
    // model has 224 matrices of 5 distinct ranges).
    std::vector<std::uint8_t>& pool = pools_[{type, a}];
    if (pool.empty()) {
      std::vector<float> pool_values(kPoolElements);
      std::uniform_real_distribution<float> d(-a, a);
      for (float& x : pool_values) x = d(rng_);
      pool = gguf::quantize(type, pool_values);
    }
    const std::uint64_t pool_blocks = kPoolElements / t.block_size;
    const std::uint64_t blocks = n / t.block_size;
    std::vector<std::uint8_t> data(blocks * t.block_bytes);
    std::uniform_int_distribution<std::uint64_t> pick(0, pool_blocks - 1);
    // Each block drawn on its own, so no two rows are alike. Runs of 64 pool blocks (what this
    // was) repeat rows of a few blocks: a row of 768 is three K-quant blocks, a run's start one of
    // 4096, and tiny's 32000 LM-head rows came out in groups of equal ones, whose equal logits
    // left the greedy pick to each engine's tie rule (bench/RESULTS.md).
    for (std::uint64_t b = 0; b < blocks; ++b) {
      std::copy_n(pool.begin() + static_cast<std::ptrdiff_t>(pick(rng_) * t.block_bytes), t.block_bytes,
                  data.begin() + static_cast<std::ptrdiff_t>(b * t.block_bytes));
    }
    w.add_tensor(name, dims, type, std::move(data));
  }

  // A 1-D f32 vector centred on `centre` with +-spread noise (norm weights, biases).
  void vector(gguf::Writer& w, const std::string& name, std::uint32_t n, float centre,
              float spread) {
    w.add_tensor_f32(name, {n}, values(n, spread, centre), TensorType::kF32);
  }
  // n values ~ U(centre - spread, centre + spread).
  std::vector<float> values(std::uint64_t n, float spread, float centre = 0.f) {
    std::vector<float> v(n);
    std::uniform_real_distribution<float> d(centre - spread, centre + spread);
    for (float& x : v) x = d(rng_);
    return v;
  }

 private:
  static constexpr std::uint64_t kPoolElements = 1u << 20;
  const SyntheticSpec& spec_;
  std::mt19937 rng_;
  std::map<std::pair<TensorType, float>, std::vector<std::uint8_t>> pools_;
};

// The keys every architecture has: name, shape and context.
gguf::Writer common_header(const SyntheticSpec& s) {
  const std::string arch = to_string(s.arch);
  gguf::Writer w;
  w.set_string("general.architecture", arch);
  w.set_string("general.name", s.name);
  w.set_u32(arch + ".block_count", s.n_layers);
  w.set_u32(arch + ".context_length", s.context_length);
  w.set_u32(arch + ".embedding_length", s.d_model);
  w.set_u32(arch + ".feed_forward_length", s.ffn_dim);
  w.set_u32(arch + ".attention.head_count", s.n_heads);
  return w;
}

// bert (llama.cpp's tensor names): learned positions for the whole context, two token types,
// LayerNorms (weights near 1, biases near 0) on the input and after each residual, biases on
// every projection. Unit-variance activations as in the decoders.
gguf::Writer make_synthetic_encoder(const SyntheticSpec& s) {
  if (s.n_heads != s.n_kv_heads) throw InvalidRequest("synthetic bert: n_kv_heads must equal n_heads");
  const std::string arch = to_string(s.arch);
  gguf::Writer w = common_header(s);
  w.set_f32(arch + ".attention.layer_norm_epsilon", 1e-12f);
  w.set_bool(arch + ".attention.causal", false);
  w.set_u32(arch + ".pooling_type", s.pooling.value_or(1));
  add_vocab(w, s.vocab_size, s.arch);
  Filler fill(s);
  const std::uint32_t d = s.d_model, q = s.n_heads * s.head_dim;
  fill.matrix(w, "token_embd.weight", d, s.vocab_size, std::sqrt(static_cast<float>(d) / 3.f));
  fill.matrix(w, "position_embd.weight", d, s.context_length, 0.5f * std::sqrt(static_cast<float>(d) / 3.f));
  std::vector<float> types(2 * std::uint64_t{d});
  std::mt19937 rng(s.seed + 1);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  for (float& x : types) x = u(rng);
  w.add_tensor_f32("token_types.weight", {d, 2}, types, TensorType::kF32);
  fill.vector(w, "token_embd_norm.weight", d, 1.f, 0.2f);
  fill.vector(w, "token_embd_norm.bias", d, 0.f, 0.2f);
  const auto projection = [&](std::uint32_t l, const char* what, std::uint32_t ncols, std::uint32_t nrows,
                              float gain) {
    fill.matrix(w, layer_tensor(l, what), ncols, nrows, gain);
    fill.vector(w, layer_bias(l, what), nrows, 0.f, 0.3f);
  };
  for (std::uint32_t l = 0; l < s.n_layers; ++l) {
    projection(l, "attn_q", d, q, 1.f);
    projection(l, "attn_k", d, q, 1.f);
    projection(l, "attn_v", d, q, 1.f);
    projection(l, "attn_output", q, d, 0.5f);
    fill.vector(w, layer_tensor(l, "attn_output_norm"), d, 1.f, 0.2f);
    fill.vector(w, layer_bias(l, "attn_output_norm"), d, 0.f, 0.2f);
    projection(l, "ffn_up", d, s.ffn_dim, 1.f);
    projection(l, "ffn_down", s.ffn_dim, d, 0.5f);
    fill.vector(w, layer_tensor(l, "layer_output_norm"), d, 1.f, 0.2f);
    fill.vector(w, layer_bias(l, "layer_output_norm"), d, 0.f, 0.2f);
  }
  return w;
}

}  // namespace

std::optional<SyntheticSpec> synthetic_preset(const std::string& name) {
  SyntheticSpec s;
  s.name = name;
  s.fast_fill = true;
  if (name == "llama3-1b") {  // Llama 3.2 1B
    s.n_layers = 16; s.d_model = 2048; s.n_heads = 32; s.n_kv_heads = 8; s.head_dim = 64;
    s.ffn_dim = 8192; s.vocab_size = 128256; s.context_length = 131072; s.rope_base = 500000.f;
    s.llama3_rope = true; s.rope_factor = 32.f; s.tied_output = true;
  } else if (name == "llama3-8b") {  // Llama 3.1 8B
    s.n_layers = 32; s.d_model = 4096; s.n_heads = 32; s.n_kv_heads = 8; s.head_dim = 128;
    s.ffn_dim = 14336; s.vocab_size = 128256; s.context_length = 131072; s.rope_base = 500000.f;
    s.llama3_rope = true; s.rope_factor = 8.f;
  } else if (name == "qwen2.5-0.5b") {  // Qwen2.5 0.5B
    s.arch = Arch::qwen2; s.n_layers = 24; s.d_model = 896; s.n_heads = 14; s.n_kv_heads = 2;
    s.head_dim = 64; s.ffn_dim = 4864; s.vocab_size = 151936; s.context_length = 32768;
    s.rope_base = 1000000.f; s.tied_output = true; s.rms_eps = 1e-6f;
  } else if (name == "phi3-mini") {  // Phi-3-mini-4k (fused QKV and gate/up)
    s.arch = Arch::phi3; s.n_layers = 32; s.d_model = 3072; s.n_heads = 32; s.n_kv_heads = 32;
    s.head_dim = 96; s.ffn_dim = 8192; s.vocab_size = 32064; s.context_length = 4096;
  } else if (name == "phi4-mini") {  // Phi-4-mini: 96 of 128 dims rotated, LongRoPE, tied
    s.arch = Arch::phi3; s.n_layers = 32; s.d_model = 3072; s.n_heads = 24; s.n_kv_heads = 8;
    s.head_dim = 128; s.rope_dims = 96; s.ffn_dim = 8192; s.vocab_size = 200064;
    s.context_length = 131072; s.tied_output = true; s.longrope = true;
    s.longrope_original_context = 4096; s.longrope_attn_factor = 1.19f;
  } else if (name == "gemma2-2b") {  // Gemma 2 2B: soft-capping, a 4096 window on even layers
    s.arch = Arch::gemma2; s.n_layers = 26; s.d_model = 2304; s.n_heads = 8; s.n_kv_heads = 4;
    s.head_dim = 256; s.ffn_dim = 9216; s.vocab_size = 256000; s.context_length = 8192;
    s.tied_output = true; s.rms_eps = 1e-6f; s.sliding_window = 4096; s.attn_softcap = 50.f;
    s.final_softcap = 30.f;
  } else if (name == "gemma3-4b") {  // Gemma 3 4B: a 1024 window on five layers of six
    s.arch = Arch::gemma3; s.n_layers = 34; s.d_model = 2560; s.n_heads = 8; s.n_kv_heads = 4;
    s.head_dim = 256; s.ffn_dim = 10240; s.vocab_size = 262208; s.context_length = 131072;
    s.rope_base = 1000000.f; s.linear_rope_factor = 8.f; s.tied_output = true; s.rms_eps = 1e-6f;
    s.sliding_window = 1024;
  } else if (name == "tiny" || name == "tiny-yarn" || name == "tiny-phi3" || name == "tiny-phi4" || name == "tiny-gemma2" ||
             name == "tiny-gemma3") {  // ~100M parameters, small enough for lavapipe
    s.n_layers = 12; s.d_model = 768; s.n_heads = 12; s.n_kv_heads = 4; s.head_dim = 64;
    s.ffn_dim = 2048; s.vocab_size = 32000; s.context_length = 4096;
    if (name == "tiny-yarn") {  // YaRN x4 over an original context of 1024 (Qwen's long-context files)
      s.yarn_factor = 4.f;
      s.yarn_original_context = 1024;
    }
    if (name == "tiny-phi3") {  // with Phi-3.5's LongRoPE (the short set up to 4096 tokens)
      s.arch = Arch::phi3;
      s.longrope = true;
      s.longrope_original_context = 4096;
      s.longrope_attn_factor = 1.19f;
    }
    if (name == "tiny-phi4") {  // as tiny-phi3 with Phi-4-mini's partial rotary (48 of 64 dims)
      s.arch = Arch::phi3;
      s.rope_dims = 48;
      s.longrope = true;
      s.longrope_original_context = 4096;
      s.longrope_attn_factor = 1.19f;
    }
    if (name == "tiny-gemma2") {  // with Gemma 2's soft-caps and a window of 512 on even layers
      s.arch = Arch::gemma2;
      s.sliding_window = 512;
      s.attn_softcap = 50.f;
      s.final_softcap = 30.f;
      s.tied_output = true;  // as Gemma 2's files (llama.cpp reads no output.weight for it)
    }
    if (name == "tiny-gemma3") {  // with Gemma 3's layer pattern and a window of 512
      s.arch = Arch::gemma3;
      s.rope_base = 1000000.f;
      s.sliding_window = 512;
      s.tied_output = true;
    }
  } else if (name == "qwen3-30b-a3b") {  // Qwen3-30B-A3B: 128 experts of 768, 8 a token
    s.arch = Arch::qwen3moe; s.n_layers = 48; s.d_model = 2048; s.n_heads = 32; s.n_kv_heads = 4;
    s.head_dim = 128; s.ffn_dim = 6144; s.vocab_size = 151936; s.context_length = 40960;
    s.rope_base = 1000000.f; s.rms_eps = 1e-6f; s.n_experts = 128; s.n_experts_used = 8;
    s.expert_ffn_dim = 768;
  } else if (name == "tiny-qwen3moe" || name == "tiny-mixtral" || name == "tiny-qwen2moe") {
    // tiny with 16 experts, 4 a token (qwen2moe: and a shared expert of 512)
    s.arch = name == "tiny-mixtral" ? Arch::llama : name == "tiny-qwen2moe" ? Arch::qwen2moe : Arch::qwen3moe;
    s.n_layers = 12; s.d_model = 768; s.n_heads = 12; s.n_kv_heads = 4; s.head_dim = 64;
    s.ffn_dim = 256; s.vocab_size = 32000; s.context_length = 4096;
    s.n_experts = 16; s.n_experts_used = 4; s.expert_ffn_dim = 256;
    if (s.arch == Arch::qwen2moe) s.shared_ffn_dim = 512;
  } else if (name == "gpt-oss-20b" || name == "tiny-gpt-oss") {
    // gpt-oss-20b: 32 experts of 2880, 4 a token, MXFP4; a 128 window on even layers, sinks,
    // YaRN x32 over 4096. tiny-gpt-oss: tiny's attention with 16 experts of 256, 4 a token.
    s.arch = Arch::gpt_oss; s.rope_base = 150000.f; s.yarn_factor = 32.f;
    s.yarn_original_context = 4096; s.sliding_window = 128; s.n_experts_used = 4;
    if (name == "gpt-oss-20b") {
      s.n_layers = 24; s.d_model = 2880; s.n_heads = 64; s.n_kv_heads = 8; s.head_dim = 64;
      s.ffn_dim = 2880; s.vocab_size = 201088; s.context_length = 131072;
      s.n_experts = 32; s.expert_ffn_dim = 2880;
    } else {
      s.n_layers = 12; s.d_model = 768; s.n_heads = 12; s.n_kv_heads = 4; s.head_dim = 64;
      s.ffn_dim = 256; s.vocab_size = 32000; s.context_length = 131072;
      s.n_experts = 16; s.expert_ffn_dim = 256;
    }
  } else if (name == "micro-gemma3") {  // micro's size as a gemma3: a window of 32, one global layer of 6
    s.arch = Arch::gemma3; s.n_layers = 6; s.d_model = 128; s.n_heads = 4; s.n_kv_heads = 2;
    s.head_dim = 32; s.ffn_dim = 256; s.vocab_size = 512; s.context_length = 2048;
    s.rope_base = 1000000.f; s.sliding_window = 32; s.tied_output = true; s.fast_fill = false;
  } else if (name == "bge-small") {  // BGE-small-en v1.5 (an encoder: embeddings only)
    s.arch = Arch::bert; s.n_layers = 12; s.d_model = 384; s.n_heads = 12; s.n_kv_heads = 12;
    s.head_dim = 32; s.ffn_dim = 1536; s.vocab_size = 30522; s.context_length = 512; s.pooling = 2;
  } else if (name == "micro-bert") {  // micro's size as an encoder: embedding server tests
    s.arch = Arch::bert; s.n_layers = 2; s.d_model = 128; s.n_heads = 4; s.n_kv_heads = 4;
    s.head_dim = 32; s.ffn_dim = 256; s.vocab_size = 512; s.context_length = 512; s.fast_fill = false;
  } else if (name == "micro") {  // ~0.3M parameters: server tests where no real model exists
    s.n_layers = 2; s.d_model = 128; s.n_heads = 4; s.n_kv_heads = 2; s.head_dim = 32;
    s.ffn_dim = 256; s.vocab_size = 512; s.context_length = 2048; s.fast_fill = false;
  } else {
    return std::nullopt;
  }
  return s;
}

std::vector<std::string> synthetic_preset_names() {
  return {"llama3-1b", "llama3-8b", "qwen2.5-0.5b", "phi3-mini", "phi4-mini", "gemma2-2b", "gemma3-4b", "tiny",
          "tiny-phi3", "tiny-phi4", "tiny-gemma2", "tiny-gemma3", "qwen3-30b-a3b", "tiny-qwen3moe",
          "tiny-mixtral", "tiny-qwen2moe", "gpt-oss-20b", "tiny-gpt-oss", "tiny-yarn", "micro", "micro-gemma3",
          "bge-small", "micro-bert"};
}

std::uint64_t synthetic_parameter_count(const SyntheticSpec& s) {
  const std::uint64_t d = s.d_model, q = std::uint64_t{s.n_heads} * s.head_dim,
                      kv = std::uint64_t{s.n_kv_heads} * s.head_dim, f = s.ffn_dim;
  if (s.arch == Arch::bert) {  // q = kv; biases; two LayerNorms a layer; positions and types
    const std::uint64_t layer = 4 * d * q + 3 * q + d + 2 * d * f + f + d + 4 * d;
    return s.n_layers * layer + (std::uint64_t{s.vocab_size} + s.context_length + 2 + 2) * d;
  }
  std::uint64_t layer = 2 * d + d * q + 2 * d * kv + q * d;
  if (s.n_experts == 0) {
    layer += 3 * d * f;
  } else {  // the router, the experts, a shared expert and its gate
    layer += d * s.n_experts + 3 * d * std::uint64_t{s.expert_ffn_dim} * s.n_experts;
    if (s.arch == Arch::qwen2moe) layer += d + 3 * d * (s.shared_ffn_dim ? s.shared_ffn_dim : f);
  }
  if (s.arch == Arch::qwen2 || s.arch == Arch::qwen2moe || s.arch == Arch::gpt_oss) layer += q + 2 * kv;
  if (s.arch == Arch::gpt_oss) {  // output bias, sinks, the router's and the experts' biases
    layer += d + s.n_heads + s.n_experts + (2 * std::uint64_t{s.expert_ffn_dim} + d) * s.n_experts;
  }
  if (s.arch == Arch::qwen3 || s.arch == Arch::qwen3moe || s.arch == Arch::gemma3) layer += 2 * std::uint64_t{s.head_dim};
  if (s.arch == Arch::gemma2 || s.arch == Arch::gemma3) layer += 2 * d;  // the post-norms
  const std::uint64_t embd = std::uint64_t{s.vocab_size} * d;
  return s.n_layers * layer + d + embd * (s.tied_output ? 1 : 2);
}

gguf::Writer make_synthetic_model(const SyntheticSpec& s) {
  if (s.vocab_size < 300) throw InvalidRequest("synthetic model: vocab_size must be >= 300");
  if (s.n_kv_heads == 0 || s.n_heads % s.n_kv_heads != 0) {
    throw InvalidRequest("synthetic model: n_heads must be a multiple of n_kv_heads");
  }
  if (s.arch == Arch::bert) return make_synthetic_encoder(s);
  const std::string arch = to_string(s.arch);
  gguf::Writer w = common_header(s);
  w.set_u32(arch + ".attention.head_count_kv", s.n_kv_heads);
  w.set_u32(arch + ".attention.key_length", s.head_dim);
  w.set_u32(arch + ".attention.value_length", s.head_dim);
  const std::uint32_t rot = s.rope_dims ? s.rope_dims : s.head_dim;
  w.set_u32(arch + ".rope.dimension_count", rot);
  w.set_f32(arch + ".rope.freq_base", s.rope_base);
  w.set_f32(arch + ".attention.layer_norm_rms_epsilon", s.rms_eps);
  if (s.pooling) w.set_u32(arch + ".pooling_type", *s.pooling);
  const bool gpt_oss = s.arch == Arch::gpt_oss;
  const bool moe_family = s.arch == Arch::qwen2moe || s.arch == Arch::qwen3moe || gpt_oss;
  if (moe_family && s.n_experts == 0) {
    throw InvalidRequest(fmt::format("synthetic model: a {} model needs n_experts", arch));
  }
  if (s.n_experts > 0) {
    if (s.n_experts_used == 0 || s.n_experts_used > s.n_experts ||
        (moe_family && s.expert_ffn_dim == 0) || !(s.arch == Arch::llama || moe_family)) {
      throw InvalidRequest("synthetic model: experts need 1..n_experts used, an expert_ffn_dim "
                           "(Mixtral: ffn_dim), and llama, qwen2moe, qwen3moe or gpt-oss");
    }
    w.set_u32(arch + ".expert_count", s.n_experts);
    w.set_u32(arch + ".expert_used_count", s.n_experts_used);
    if (moe_family) w.set_u32(arch + ".expert_feed_forward_length", s.expert_ffn_dim);
    if (s.arch == Arch::qwen2moe && s.shared_ffn_dim) {
      w.set_u32(arch + ".expert_shared_feed_forward_length", s.shared_ffn_dim);
    }
  }
  const bool gemma = s.arch == Arch::gemma2 || s.arch == Arch::gemma3;
  if (gemma) {
    if (s.sliding_window) w.set_u32(arch + ".attention.sliding_window", s.sliding_window);
    if (s.swa_period) w.set_u32(arch + ".attention.sliding_window_pattern", s.swa_period);
    if (s.attn_softcap > 0.f) w.set_f32(arch + ".attn_logit_softcapping", s.attn_softcap);
    if (s.final_softcap > 0.f) w.set_f32(arch + ".final_logit_softcapping", s.final_softcap);
    if (s.linear_rope_factor > 0.f) {
      w.set_string(arch + ".rope.scaling.type", "linear");
      w.set_f32(arch + ".rope.scaling.factor", s.linear_rope_factor);
    }
    if (s.rope_base_local > 0.f) w.set_f32(arch + ".rope.freq_base_swa", s.rope_base_local);
  }
  // gpt-oss: the window on even layers (128 when the spec gives none); llama.cpp requires the key.
  if (gpt_oss) w.set_u32(arch + ".attention.sliding_window", s.sliding_window ? s.sliding_window : 128);
  if (s.yarn_factor > 0.f) {
    w.set_string(arch + ".rope.scaling.type", "yarn");
    w.set_f32(arch + ".rope.scaling.factor", s.yarn_factor);
    if (s.yarn_original_context) {
      w.set_u32(arch + ".rope.scaling.original_context_length", s.yarn_original_context);
    }
  }
  add_vocab(w, s.vocab_size, s.arch);

  Filler fill(s);
  const std::uint32_t d = s.d_model, q = s.n_heads * s.head_dim, kv = s.n_kv_heads * s.head_dim;
  // Embeddings with unit-ish entries so the first norm sees a healthy scale (Gemma's: unit-ish
  // after its sqrt(d_model) scale, as trained ones are).
  fill.matrix(w, "token_embd.weight", d, s.vocab_size, gemma ? 1.f : std::sqrt(static_cast<float>(d) / 3.f));
  if (s.llama3_rope) {
    RopeConfig rope;
    rope.base = s.rope_base;
    rope.dims = rot;
    rope.factor = s.rope_factor;
    const std::vector<float> factors = llama3_freq_factors(rope);
    w.add_tensor_f32("rope_freqs.weight", {rot / 2}, factors, TensorType::kF32);
  }
  if (s.longrope) {
    // Phi-3.5's shape of factors: 1 for the fast pairs rising to the slow ones', short ones
    // gentler than long ones.
    const std::uint32_t n = rot / 2;
    std::vector<float> shorter(n), longer(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      const float t = static_cast<float>(i) / static_cast<float>(std::max(n - 1, 1u));
      shorter[i] = 1.f + 1.5f * t * t;
      longer[i] = 1.f + 24.f * t * t;
    }
    w.add_tensor_f32("rope_factors_long.weight", {n}, longer, TensorType::kF32);
    w.add_tensor_f32("rope_factors_short.weight", {n}, shorter, TensorType::kF32);
    if (s.longrope_original_context) {
      w.set_u32(arch + ".rope.scaling.original_context_length", s.longrope_original_context);
    }
    if (s.longrope_attn_factor > 0.f) {
      w.set_f32(arch + ".rope.scaling.attn_factor", s.longrope_attn_factor);
    }
  }
  for (std::uint32_t l = 0; l < s.n_layers; ++l) {
    fill.vector(w, layer_tensor(l, "attn_norm"), d, 1.f, 0.2f);
    if (s.arch == Arch::phi3) {  // fused, rows q | k | v
      fill.matrix(w, layer_tensor(l, "attn_qkv"), d, q + 2 * kv);
    } else {
      fill.matrix(w, layer_tensor(l, "attn_q"), d, q);
      fill.matrix(w, layer_tensor(l, "attn_k"), d, kv);
      fill.matrix(w, layer_tensor(l, "attn_v"), d, kv);
    }
    if (s.arch == Arch::qwen2 || s.arch == Arch::qwen2moe || gpt_oss) {
      fill.vector(w, layer_bias(l, "attn_q"), q, 0.f, 0.5f);
      fill.vector(w, layer_bias(l, "attn_k"), kv, 0.f, 0.5f);
      fill.vector(w, layer_bias(l, "attn_v"), kv, 0.f, 0.5f);
    }
    if (s.arch == Arch::qwen3 || s.arch == Arch::qwen3moe || s.arch == Arch::gemma3) {
      fill.vector(w, layer_tensor(l, "attn_q_norm"), s.head_dim, 1.f, 0.2f);
      fill.vector(w, layer_tensor(l, "attn_k_norm"), s.head_dim, 1.f, 0.2f);
    }
    fill.matrix(w, layer_tensor(l, "attn_output"), q, d, 0.5f);
    if (gpt_oss) {  // the output bias, the heads' sinks (logits of a few units)
      fill.vector(w, layer_bias(l, "attn_output"), d, 0.f, 0.5f);
      fill.vector(w, layer_tensor(l, "attn_sinks"), s.n_heads, 0.f, 2.f);
    }
    // gpt-oss names its pre-FFN norm post_attention_norm.
    if (gemma || gpt_oss) fill.vector(w, layer_tensor(l, "post_attention_norm"), d, 1.f, 0.2f);
    if (!gpt_oss) fill.vector(w, layer_tensor(l, "ffn_norm"), d, 1.f, 0.2f);
    if (s.n_experts > 0) {
      // Mixtral's expert width is its feed_forward_length. gpt-oss's experts are MXFP4 (as its
      // files ship), their gate and up wide enough that the SwiGLU's clamps at 7 bite, with
      // biases on the router and every expert projection.
      const std::uint32_t f = s.arch == Arch::llama ? s.ffn_dim : s.expert_ffn_dim;
      const std::optional<TensorType> experts = gpt_oss ? std::optional(TensorType::kMXFP4) : std::nullopt;
      const float gain = gpt_oss ? 2.5f : 1.f;
      fill.matrix(w, layer_tensor(l, "ffn_gate_inp"), d, s.n_experts, 1.f, 1, TensorType::kF32);
      fill.matrix(w, layer_tensor(l, "ffn_gate_exps"), d, f, gain, s.n_experts, experts);
      fill.matrix(w, layer_tensor(l, "ffn_up_exps"), d, f, gain, s.n_experts, experts);
      fill.matrix(w, layer_tensor(l, "ffn_down_exps"), f, d, 0.5f, s.n_experts, experts);
      if (gpt_oss) {
        fill.vector(w, layer_bias(l, "ffn_gate_inp"), s.n_experts, 0.f, 0.5f);
        const auto expert_bias = [&](const char* what, std::uint32_t rows) {  // [rows, n_experts]
          w.add_tensor_f32(layer_bias(l, what), {rows, s.n_experts},
                           fill.values(std::uint64_t{rows} * s.n_experts, 0.5f), TensorType::kF32);
        };
        expert_bias("ffn_gate_exps", f);
        expert_bias("ffn_up_exps", f);
        expert_bias("ffn_down_exps", d);
      }
      if (s.arch == Arch::qwen2moe) {
        const std::uint32_t sf = s.shared_ffn_dim ? s.shared_ffn_dim : s.ffn_dim;
        fill.vector(w, layer_tensor(l, "ffn_gate_inp_shexp"), d, 0.f, std::sqrt(3.f / static_cast<float>(d)));
        fill.matrix(w, layer_tensor(l, "ffn_gate_shexp"), d, sf);
        fill.matrix(w, layer_tensor(l, "ffn_up_shexp"), d, sf);
        fill.matrix(w, layer_tensor(l, "ffn_down_shexp"), sf, d, 0.5f);
      }
    } else if (s.arch == Arch::phi3) {  // fused, rows gate | up
      fill.matrix(w, layer_tensor(l, "ffn_up"), d, 2 * s.ffn_dim);
    } else {
      fill.matrix(w, layer_tensor(l, "ffn_gate"), d, s.ffn_dim);
      fill.matrix(w, layer_tensor(l, "ffn_up"), d, s.ffn_dim);
    }
    if (s.n_experts == 0) fill.matrix(w, layer_tensor(l, "ffn_down"), s.ffn_dim, d, 0.5f);
    if (gemma) fill.vector(w, layer_tensor(l, "post_ffw_norm"), d, 1.f, 0.2f);
  }
  fill.vector(w, "output_norm.weight", d, 1.f, 0.2f);
  if (!s.tied_output) fill.matrix(w, "output.weight", d, s.vocab_size, 2.f);
  return w;
}

}  // namespace vkllm::model
