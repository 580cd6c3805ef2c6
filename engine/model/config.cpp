// ModelConfig from GGUF metadata, with every tensor checked before anything reaches a device.
#include "engine/model/config.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numbers>

#include <fmt/format.h>

#include "common/error.hpp"

namespace vkllm::model {
namespace {

using gguf::TensorType;

constexpr std::uint32_t kMaxLayers = 1024;
constexpr std::uint32_t kMaxDim = 1u << 18;
// moe_route.comp's table (ops::kMaxExperts; config knows no ops).
constexpr std::uint32_t kMaxExperts = 512;

std::string key(const std::string& arch, const char* name) { return fmt::format("{}.{}", arch, name); }

std::uint32_t positive(const gguf::Reader& r, const std::string& k, std::uint32_t limit) {
  const std::uint32_t v = r.get_u32(k);
  if (v == 0 || v > limit) {
    throw InvalidModel(fmt::format("{}: {} = {} is out of range (1..{})", r.name(), k, v, limit));
  }
  return v;
}

// Checks a weight tensor's shape (ggml order) and type.
void check_weight(const gguf::Reader& r, const std::string& name,
                  std::initializer_list<std::uint64_t> dims, bool matrix) {
  const gguf::TensorInfo& t = r.tensor(name, std::vector<std::uint64_t>(dims));
  if (!weight_type_runnable(t.type)) {
    throw Unsupported(fmt::format("{}: tensor {} has type {}, which vkllm cannot run yet "
                                  "(supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, "
                                  "q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs, mxfp4)",
                                  r.name(), name, gguf::type_name(t.type)));
  }
  if (!matrix && t.type != TensorType::kF32) {
    throw Unsupported(fmt::format("{}: norm/bias tensor {} is {}; vkllm reads these as f32",
                                  r.name(), name, gguf::type_name(t.type)));
  }
  const gguf::TypeTraits traits = gguf::traits(t.type);
  if (t.dims[0] % traits.block_size != 0) {
    throw InvalidModel(fmt::format("{}: tensor {} rows of {} elements are not whole {} blocks",
                                   r.name(), name, t.dims[0], traits.name));
  }
}

// bert's tensors (llama.cpp's names): learned positions, token types (only type 0 is used),
// the input norm, and per layer Q/K/V/output and up/down with biases, a LayerNorm after the
// attention's residual and one after the FFN's. No output norm, no LM head.
void check_encoder_tensors(const gguf::Reader& r, ModelConfig& c) {
  const gguf::TensorInfo& pos = r.tensor("position_embd.weight");
  if (pos.n_dims != 2 || pos.dims[0] != c.d_model || pos.dims[1] == 0) {
    throw InvalidModel(fmt::format("{}: position_embd.weight has shape [{}, {}], expected [{}, "
                                   "positions]",
                                   r.name(), pos.dims[0], pos.dims[1], c.d_model));
  }
  check_weight(r, "position_embd.weight", {c.d_model, pos.dims[1]}, true);
  // Positions past the table have no embedding: the context is the table's length at most.
  c.context_length = std::min<std::uint32_t>(c.context_length, static_cast<std::uint32_t>(pos.dims[1]));
  const gguf::TensorInfo& types = r.tensor("token_types.weight");
  if (types.n_dims != 2 || types.dims[0] != c.d_model || types.dims[1] == 0) {
    throw InvalidModel(fmt::format("{}: token_types.weight has shape [{}, {}], expected [{}, types]",
                                   r.name(), types.dims[0], types.dims[1], c.d_model));
  }
  check_weight(r, "token_types.weight", {c.d_model, types.dims[1]}, false);
  check_weight(r, "token_embd_norm.weight", {c.d_model}, false);
  check_weight(r, "token_embd_norm.bias", {c.d_model}, false);
  c.qkv_bias = true;
  for (std::uint32_t l = 0; l < c.n_layers; ++l) {
    const std::pair<const char*, std::array<std::uint32_t, 2>> matrices[] = {
        {"attn_q", {c.d_model, c.q_dim()}},    {"attn_k", {c.d_model, c.kv_dim()}},
        {"attn_v", {c.d_model, c.kv_dim()}},   {"attn_output", {c.q_dim(), c.d_model}},
        {"ffn_up", {c.d_model, c.ffn_dim}},    {"ffn_down", {c.ffn_dim, c.d_model}}};
    for (const auto& [what, dims] : matrices) {
      check_weight(r, layer_tensor(l, what), {dims[0], dims[1]}, true);
      check_weight(r, layer_bias(l, what), {dims[1]}, false);
    }
    for (const char* norm : {"attn_output_norm", "layer_output_norm"}) {
      check_weight(r, layer_tensor(l, norm), {c.d_model}, false);
      check_weight(r, layer_bias(l, norm), {c.d_model}, false);
    }
  }
}

// What Gemma 2 and 3 add, with llama.cpp's defaults where a key is absent (docs/ARCHITECTURE.md
// "Model families").
void read_gemma(const gguf::Reader& r, const std::string& arch, ModelConfig& c) {
  const bool g2 = c.arch == Arch::gemma2;
  c.embed_scale = std::sqrt(static_cast<float>(c.d_model));
  c.geglu = true;
  c.post_norms = true;
  c.qk_norm = c.arch == Arch::gemma3;
  const auto cap = [&](const char* name, float dflt) {
    const float v = r.find_f32(key(arch, name)).value_or(dflt);
    if (!(v >= 0.f && v <= 1e6f)) {
      throw InvalidModel(fmt::format("{}: {} = {} is out of range", r.name(), key(arch, name), v));
    }
    return v;
  };
  // Gemma 2 always soft-caps (50 and 30 when the file says nothing); Gemma 3 only its final
  // logits, where the file asks.
  c.attn_softcap = g2 ? cap("attn_logit_softcapping", 50.f) : 0.f;
  c.final_softcap = cap("final_logit_softcapping", g2 ? 30.f : 0.f);
  // Gemma 2: a window of 4096 on even layers unless the file says otherwise. Gemma 3: the window
  // the file gives on five layers of six; none without one.
  c.sliding_window = r.find_u32(key(arch, "attention.sliding_window")).value_or(g2 ? 4096 : 0);
  c.swa_period = r.find_u32(key(arch, "attention.sliding_window_pattern")).value_or(g2 ? 2 : 6);
  if (c.sliding_window > (1u << 24) || c.swa_period > kMaxLayers) {
    throw InvalidModel(fmt::format("{}: sliding window {} or its layer period {} is out of range",
                                   r.name(), c.sliding_window, c.swa_period));
  }
  // Local layers: Gemma 2 rotates them as the global ones; Gemma 3 with a base of their own
  // (10000 unless rope.freq_base_swa says) and no scaling.
  if (!g2) {
    c.rope_local = c.rope;
    c.rope_local.scaling = RopeScaling::none;
    c.rope_local.factor = 1.f;
    c.rope_local.attn_factor = 1.f;
    c.rope_local.freq_factors.clear();
    c.rope_local.base = r.find_f32(key(arch, "rope.freq_base_swa")).value_or(10000.f);
    if (!(c.rope_local.base > 1.f) || !std::isfinite(c.rope_local.base)) {
      throw InvalidModel(fmt::format("{}: rope base {} of the sliding layers is out of range",
                                     r.name(), c.rope_local.base));
    }
  }
  // The query scale: GGUF files carry no query_pre_attn_scalar; as llama.cpp, the 27B models
  // (46 layers of Gemma 2, 62 of Gemma 3) scale by d_model / n_heads, the rest by head_dim.
  const bool is_27b = c.n_layers == (g2 ? 46u : 62u);
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(is_27b ? c.d_model / c.n_heads : c.head_dim));
}

// The experts of llama (Mixtral), qwen2moe and qwen3moe files (llama.cpp's keys): expert_count
// (none or 0 in a dense llama), expert_used_count, and the experts' width where it is a key of
// its own (expert_feed_forward_length; Mixtral's is feed_forward_length).
void read_experts(const gguf::Reader& r, const std::string& arch, ModelConfig& c) {
  const bool family = c.arch != Arch::llama;
  const std::uint32_t n = r.find_u32(key(arch, "expert_count")).value_or(0);
  if (n == 0) {
    if (family) throw InvalidModel(fmt::format("{}: a {} model needs {} > 0", r.name(), arch, key(arch, "expert_count")));
    return;
  }
  if (n > kMaxExperts) {
    throw Unsupported(fmt::format("{}: {} = {} experts (vkllm runs up to {})", r.name(),
                                  key(arch, "expert_count"), n, kMaxExperts));
  }
  c.n_experts = n;
  c.n_experts_used = positive(r, key(arch, "expert_used_count"), n);
  if (family && r.contains(key(arch, "expert_feed_forward_length"))) {
    c.expert_ffn_dim = positive(r, key(arch, "expert_feed_forward_length"), 1u << 20);
  } else if (c.arch == Arch::qwen3moe || c.arch == Arch::gpt_oss) {
    throw InvalidModel(fmt::format("{}: a {} model needs {}", r.name(), arch,
                                   key(arch, "expert_feed_forward_length")));
  }
  // As llama.cpp: Mixtral and Qwen3-MoE rescale the chosen weights, Qwen2-MoE does not; gpt-oss
  // takes the softmax of the chosen experts' logits, which sums to 1 already.
  c.expert_norm = c.arch != Arch::qwen2moe && c.arch != Arch::gpt_oss;
  c.gating_chosen = c.arch == Arch::gpt_oss;
}

// What gpt-oss adds (llama.cpp's keys and rules): biases on Q/K/V, the output projection, the
// router and the experts; the clamped SwiGLU; attention sinks; the sliding window the file gives
// (required, as llama.cpp reads it) on even layers.
void read_gpt_oss(const gguf::Reader& r, const std::string& arch, ModelConfig& c) {
  c.qkv_bias = c.out_bias = c.expert_bias = c.swiglu_oai = c.attn_sinks = true;
  c.ffn_norm_name = "post_attention_norm";
  c.sliding_window = positive(r, key(arch, "attention.sliding_window"), 1u << 24);
  c.swa_period = 2;
}

// A MoE layer's tensors: the router [d_model -> n_experts], the experts' gate, up [d_model ->
// expert_ffn_dim] and down as 3-D tensors (one expert after another), and qwen2moe's shared
// expert with its gate [d_model]; gpt-oss's biases of the router [n_experts] and of each expert's
// gate, up [expert_ffn_dim] and down [d_model].
void check_expert_tensors(const gguf::Reader& r, const ModelConfig& c, std::uint32_t l) {
  const std::uint32_t d = c.d_model, f = c.expert_ffn_dim, e = c.n_experts;
  if (!r.find_tensor(layer_tensor(l, "ffn_gate_exps")) && r.find_tensor(layer_tensor(l, "ffn_gate.0"))) {
    throw Unsupported(fmt::format("{}: layer {} stores its experts as one tensor each ({}), an old "
                                  "conversion; vkllm reads the merged ffn_*_exps tensors of current "
                                  "llama.cpp conversions",
                                  r.name(), l, layer_tensor(l, "ffn_gate.0")));
  }
  check_weight(r, layer_tensor(l, "ffn_gate_inp"), {d, e}, true);
  check_weight(r, layer_tensor(l, "ffn_gate_exps"), {d, f, e}, true);
  check_weight(r, layer_tensor(l, "ffn_up_exps"), {d, f, e}, true);
  check_weight(r, layer_tensor(l, "ffn_down_exps"), {f, d, e}, true);
  if (c.expert_bias) {
    check_weight(r, layer_bias(l, "ffn_gate_inp"), {e}, false);
    check_weight(r, layer_bias(l, "ffn_gate_exps"), {f, e}, false);
    check_weight(r, layer_bias(l, "ffn_up_exps"), {f, e}, false);
    check_weight(r, layer_bias(l, "ffn_down_exps"), {d, e}, false);
  }
  // The clamped SwiGLU runs in the gate/up matmul's epilogue, which needs gate and up
  // interleaved in one weight: one type.
  const TensorType gate_type = r.tensor(layer_tensor(l, "ffn_gate_exps")).type;
  const TensorType up_type = r.tensor(layer_tensor(l, "ffn_up_exps")).type;
  if (c.swiglu_oai && gate_type != up_type) {
    throw Unsupported(fmt::format("{}: layer {}'s ffn_gate_exps is {} and its ffn_up_exps {}; vkllm "
                                  "runs gpt-oss's experts with gate and up of one type",
                                  r.name(), l, gguf::type_name(gate_type), gguf::type_name(up_type)));
  }
  if (c.shared_ffn_dim > 0) {
    check_weight(r, layer_tensor(l, "ffn_gate_inp_shexp"), {d}, true);
    check_weight(r, layer_tensor(l, "ffn_gate_shexp"), {d, c.shared_ffn_dim}, true);
    check_weight(r, layer_tensor(l, "ffn_up_shexp"), {d, c.shared_ffn_dim}, true);
    check_weight(r, layer_tensor(l, "ffn_down_shexp"), {c.shared_ffn_dim, d}, true);
  }
}

}  // namespace

const char* to_string(Arch arch) {
  switch (arch) {
    case Arch::llama: return "llama";
    case Arch::qwen2: return "qwen2";
    case Arch::qwen3: return "qwen3";
    case Arch::phi3: return "phi3";
    case Arch::gemma2: return "gemma2";
    case Arch::gemma3: return "gemma3";
    case Arch::bert: return "bert";
    case Arch::qwen2moe: return "qwen2moe";
    case Arch::qwen3moe: return "qwen3moe";
    case Arch::gpt_oss: return "gpt-oss";
  }
  return "?";
}

const char* to_string(Pooling pooling) {
  switch (pooling) {
    case Pooling::mean: return "mean";
    case Pooling::cls: return "cls";
    case Pooling::last: return "last";
  }
  return "?";
}

std::optional<Pooling> parse_pooling(std::string_view name) {
  for (Pooling p : {Pooling::mean, Pooling::cls, Pooling::last}) {
    if (name == to_string(p)) return p;
  }
  return std::nullopt;
}

bool weight_type_runnable(TensorType type) {
  switch (type) {
    case TensorType::kF32: case TensorType::kF16: case TensorType::kBF16:
    case TensorType::kQ8_0: case TensorType::kQ4_0: case TensorType::kQ4_1:
    case TensorType::kQ5_0: case TensorType::kQ5_1: case TensorType::kQ4_K:
    case TensorType::kQ5_K: case TensorType::kQ6_K: case TensorType::kQ2_K:
    case TensorType::kQ3_K: case TensorType::kIQ4_NL: case TensorType::kIQ4_XS:
    case TensorType::kMXFP4:
      return true;
    default:
      return false;
  }
}

std::string layer_tensor(std::uint32_t layer, const char* what) {
  return fmt::format("blk.{}.{}.weight", layer, what);
}
std::string layer_bias(std::uint32_t layer, const char* what) {
  return fmt::format("blk.{}.{}.bias", layer, what);
}

ModelConfig ModelConfig::from_gguf(const gguf::Reader& r) {
  ModelConfig c;
  const std::string arch = r.get_string("general.architecture");
  if (arch == "llama") {
    c.arch = Arch::llama;
  } else if (arch == "qwen2") {
    c.arch = Arch::qwen2;
  } else if (arch == "qwen3") {
    c.arch = Arch::qwen3;
  } else if (arch == "phi3") {
    c.arch = Arch::phi3;
  } else if (arch == "gemma2") {
    c.arch = Arch::gemma2;
  } else if (arch == "gemma3") {
    c.arch = Arch::gemma3;
  } else if (arch == "bert") {
    c.arch = Arch::bert;
    c.encoder = true;
  } else if (arch == "qwen2moe") {
    c.arch = Arch::qwen2moe;
  } else if (arch == "qwen3moe") {
    c.arch = Arch::qwen3moe;
  } else if (arch == "gpt-oss") {
    c.arch = Arch::gpt_oss;
  } else {
    throw Unsupported(fmt::format("{}: architecture '{}' is not supported (supported: llama "
                                  "(with or without experts), qwen2, qwen3, qwen2moe, qwen3moe, "
                                  "gpt-oss, phi3, gemma2, gemma3, bert)",
                                  r.name(), arch));
  }
  c.name = r.find_string("general.name").value_or(arch);
  c.n_layers = positive(r, key(arch, "block_count"), kMaxLayers);
  c.d_model = positive(r, key(arch, "embedding_length"), kMaxDim);
  c.n_heads = positive(r, key(arch, "attention.head_count"), kMaxDim);
  c.n_kv_heads = r.contains(key(arch, "attention.head_count_kv"))
                     ? positive(r, key(arch, "attention.head_count_kv"), kMaxDim)
                     : c.n_heads;
  if (c.n_heads % c.n_kv_heads != 0) {
    throw InvalidModel(fmt::format("{}: {} query heads are not a multiple of {} KV heads",
                                   r.name(), c.n_heads, c.n_kv_heads));
  }
  if (r.contains(key(arch, "attention.key_length"))) {
    c.head_dim = positive(r, key(arch, "attention.key_length"), 1024);
    const std::string vkey = key(arch, "attention.value_length");
    if (r.contains(vkey) && r.get_u32(vkey) != c.head_dim) {
      throw Unsupported(fmt::format("{}: key length {} differs from value length {}", r.name(),
                                    c.head_dim, r.get_u32(vkey)));
    }
  } else {
    if (c.d_model % c.n_heads != 0) {
      throw InvalidModel(fmt::format("{}: embedding length {} is not a multiple of {} heads",
                                     r.name(), c.d_model, c.n_heads));
    }
    c.head_dim = c.d_model / c.n_heads;
  }
  if (c.head_dim % 2 != 0 || c.head_dim > 256) {
    throw Unsupported(fmt::format("{}: head dimension {} is not supported (even, at most 256)",
                                  r.name(), c.head_dim));
  }
  if (c.arch == Arch::llama || c.arch == Arch::qwen2moe || c.arch == Arch::qwen3moe || c.arch == Arch::gpt_oss) {
    read_experts(r, arch, c);
  }
  // A MoE family's own feed-forward length may be absent (its experts have theirs).
  c.ffn_dim = c.moe() && !r.contains(key(arch, "feed_forward_length"))
                  ? c.expert_ffn_dim
                  : positive(r, key(arch, "feed_forward_length"), 1u << 20);
  if (c.arch == Arch::llama && c.moe()) c.expert_ffn_dim = c.ffn_dim;  // Mixtral: the experts'
  if (c.arch == Arch::qwen2moe) {
    if (c.expert_ffn_dim == 0) c.expert_ffn_dim = std::max(c.ffn_dim / c.n_experts_used, 1u);
    c.shared_ffn_dim = r.contains(key(arch, "expert_shared_feed_forward_length"))
                           ? positive(r, key(arch, "expert_shared_feed_forward_length"), 1u << 20)
                           : c.ffn_dim;
  }
  c.context_length = r.contains(key(arch, "context_length"))
                         ? positive(r, key(arch, "context_length"), 1u << 24)
                         : 2048;
  c.rms_eps = r.find_f32(key(arch, c.encoder ? "attention.layer_norm_epsilon"
                                             : "attention.layer_norm_rms_epsilon"))
                  .value_or(c.encoder ? 1e-12f : 1e-5f);
  if (!(c.rms_eps > 0.f && c.rms_eps < 1.f)) {
    throw InvalidModel(fmt::format("{}: norm epsilon {} is out of range", r.name(), c.rms_eps));
  }
  if (c.encoder && r.find_bool(key(arch, "attention.causal")).value_or(false)) {
    throw Unsupported(fmt::format("{}: a causal {} model is not supported", r.name(), arch));
  }
  // llama.cpp's numbering; 0 (none) keeps the default, 4 (rank) is a reranker's head.
  c.pooling = c.encoder ? Pooling::mean : Pooling::last;
  if (const auto pooling = r.find_u32(key(arch, "pooling_type"))) {
    switch (*pooling) {
      case 0: break;
      case 1: c.pooling = Pooling::mean; break;
      case 2: c.pooling = Pooling::cls; break;
      case 3: c.pooling = Pooling::last; break;
      default:
        throw Unsupported(fmt::format("{}: pooling type {} is not supported (mean, cls or last; "
                                      "rerankers' rank pooling is not)",
                                      r.name(), *pooling));
    }
  }

  RopeConfig& rope = c.rope;
  rope.base = r.find_f32(key(arch, "rope.freq_base")).value_or(10000.f);
  if (!(rope.base > 1.f) || !std::isfinite(rope.base)) {
    throw InvalidModel(fmt::format("{}: rope base {} is out of range", r.name(), rope.base));
  }
  rope.dims = r.find_u32(key(arch, "rope.dimension_count")).value_or(c.head_dim);
  // Partial rotary (Phi-4-mini: 96 of 128): the first rope.dims elements of each head rotate.
  if (rope.dims == 0 || rope.dims % 2 != 0 || rope.dims > c.head_dim) {
    throw InvalidModel(fmt::format("{}: {} rotary dims of a head of {} (an even count up to the "
                                   "head's is needed)",
                                   r.name(), rope.dims, c.head_dim));
  }
  rope.neox = c.arch != Arch::llama;  // qwen2, qwen3 (and their MoE), gpt-oss, phi3, gemma2, gemma3: neox
  const std::string scaling = r.find_string(key(arch, "rope.scaling.type")).value_or("none");
  if (scaling == "linear") {
    rope.scaling = RopeScaling::linear;
    rope.factor = r.get_f32(key(arch, "rope.scaling.factor"));
    if (!(rope.factor >= 1.f && rope.factor <= 1024.f)) {
      throw InvalidModel(fmt::format("{}: rope scaling factor {} is out of range", r.name(),
                                     rope.factor));
    }
  } else if (scaling == "yarn") {
    rope.scaling = RopeScaling::yarn;
    rope.factor = r.get_f32(key(arch, "rope.scaling.factor"));
    rope.original_context =
        r.find_u32(key(arch, "rope.scaling.original_context_length")).value_or(c.context_length);
    rope.yarn_ext_factor = r.find_f32(key(arch, "rope.scaling.yarn_ext_factor")).value_or(1.f);
    rope.yarn_beta_fast = r.find_f32(key(arch, "rope.scaling.yarn_beta_fast")).value_or(32.f);
    rope.yarn_beta_slow = r.find_f32(key(arch, "rope.scaling.yarn_beta_slow")).value_or(1.f);
    const float attn = r.find_f32(key(arch, "rope.scaling.yarn_attn_factor")).value_or(1.f);
    if (!(rope.factor >= 1.f && rope.factor <= 1024.f) || rope.original_context == 0 ||
        !(rope.yarn_ext_factor >= 0.f && rope.yarn_ext_factor <= 1.f) ||
        !(rope.yarn_beta_fast > 0.f && rope.yarn_beta_fast <= 1e4f) ||
        !(rope.yarn_beta_slow > 0.f && rope.yarn_beta_slow <= 1e4f) || !(attn > 0.f && attn <= 16.f)) {
      throw InvalidModel(fmt::format("{}: YaRN factor {}, original context {}, ext factor {}, betas "
                                     "{} / {} or attention factor {} is out of range",
                                     r.name(), rope.factor, rope.original_context,
                                     rope.yarn_ext_factor, rope.yarn_beta_fast, rope.yarn_beta_slow, attn));
    }
    // ggml's rope_yarn: the rotated pairs' magnitude grows with the interpolation.
    rope.attn_factor = attn * (rope.yarn_ext_factor != 0.f ? 1.f + 0.1f * std::log(rope.factor) : 1.f);
  } else if (scaling != "none") {
    throw Unsupported(fmt::format("{}: rope scaling '{}' is not supported (none, linear, yarn, and "
                                  "llama3 through rope_freqs.weight)",
                                  r.name(), scaling));
  }
  // Per-pair RoPE divisors stored as tensors: [head_dim / 2] f32, positive and finite.
  const auto factors = [&](const char* name) {
    const gguf::TensorInfo& f = r.tensor(name, std::vector<std::uint64_t>{rope.dims / 2});
    if (f.type != TensorType::kF32) {
      throw Unsupported(fmt::format("{}: {} is {}, expected f32", r.name(), name,
                                    gguf::type_name(f.type)));
    }
    std::vector<float> v(rope.dims / 2);
    std::memcpy(v.data(), r.tensor_data(f).data(), v.size() * 4);
    for (float x : v) {
      if (!(x > 0.f) || !std::isfinite(x)) {
        throw InvalidModel(fmt::format("{}: {} holds {}", r.name(), name, x));
      }
    }
    return v;
  };
  if (r.find_tensor("rope_freqs.weight")) {
    rope.freq_factors = factors("rope_freqs.weight");
    rope.scaling = RopeScaling::llama3;
  }
  // LongRoPE (Phi-3's 128k-context files): both factor sets, the original context and the
  // attention factor.
  const bool has_long = r.find_tensor("rope_factors_long.weight") != nullptr;
  const bool has_short = r.find_tensor("rope_factors_short.weight") != nullptr;
  if (has_long || has_short) {
    if (!has_long || !has_short || rope.scaling != RopeScaling::none) {
      throw InvalidModel(fmt::format("{}: LongRoPE needs rope_factors_long.weight and "
                                     "rope_factors_short.weight and no other rope scaling",
                                     r.name()));
    }
    rope.scaling = RopeScaling::longrope;
    rope.long_factors = factors("rope_factors_long.weight");
    rope.short_factors = factors("rope_factors_short.weight");
    rope.freq_factors = rope.short_factors;
    rope.original_context =
        r.find_u32(key(arch, "rope.scaling.original_context_length")).value_or(c.context_length);
    rope.attn_factor = r.find_f32(key(arch, "rope.scaling.attn_factor")).value_or(1.f);
    if (rope.original_context == 0 || !(rope.attn_factor > 0.f && rope.attn_factor <= 16.f)) {
      throw InvalidModel(fmt::format("{}: LongRoPE original context {} or attention factor {} "
                                     "is out of range",
                                     r.name(), rope.original_context, rope.attn_factor));
    }
  }

  rope.none = c.encoder;
  c.rope_local = rope;
  c.attn_scale = 1.f / std::sqrt(static_cast<float>(c.head_dim));
  if (c.arch == Arch::gemma2 || c.arch == Arch::gemma3) read_gemma(r, arch, c);
  if (c.arch == Arch::gpt_oss) read_gpt_oss(r, arch, c);

  // Tensors.
  const gguf::TensorInfo& embd = r.tensor("token_embd.weight");
  if (embd.n_dims != 2 || embd.dims[0] != c.d_model || embd.dims[1] == 0 ||
      embd.dims[1] > (1u << 24)) {
    throw InvalidModel(fmt::format("{}: token_embd.weight has shape [{}, {}], expected [{}, "
                                   "vocab]",
                                   r.name(), embd.dims[0], embd.dims[1], c.d_model));
  }
  c.vocab_size = static_cast<std::uint32_t>(embd.dims[1]);
  check_weight(r, "token_embd.weight", {c.d_model, c.vocab_size}, true);
  if (c.encoder) {
    check_encoder_tensors(r, c);
    return c;
  }
  check_weight(r, "output_norm.weight", {c.d_model}, false);
  c.tied_output = r.find_tensor("output.weight") == nullptr;
  if (!c.tied_output) check_weight(r, "output.weight", {c.d_model, c.vocab_size}, true);
  c.qkv_bias = c.qkv_bias || c.arch == Arch::qwen2 || c.arch == Arch::qwen2moe;
  c.qk_norm = c.arch == Arch::qwen3 || c.arch == Arch::qwen3moe || c.arch == Arch::gemma3;
  c.fused_qkv = c.fused_gate_up = c.arch == Arch::phi3;
  for (std::uint32_t l = 0; l < c.n_layers; ++l) {
    check_weight(r, layer_tensor(l, "attn_norm"), {c.d_model}, false);
    if (c.fused_qkv) {
      check_weight(r, layer_tensor(l, "attn_qkv"), {c.d_model, c.q_dim() + 2 * c.kv_dim()}, true);
    } else {
      check_weight(r, layer_tensor(l, "attn_q"), {c.d_model, c.q_dim()}, true);
      check_weight(r, layer_tensor(l, "attn_k"), {c.d_model, c.kv_dim()}, true);
      check_weight(r, layer_tensor(l, "attn_v"), {c.d_model, c.kv_dim()}, true);
    }
    check_weight(r, layer_tensor(l, "attn_output"), {c.q_dim(), c.d_model}, true);
    if (c.out_bias) check_weight(r, layer_bias(l, "attn_output"), {c.d_model}, false);
    if (c.attn_sinks) check_weight(r, layer_tensor(l, "attn_sinks"), {c.n_heads}, false);
    check_weight(r, layer_tensor(l, c.ffn_norm_name), {c.d_model}, false);
    if (c.moe()) {
      check_expert_tensors(r, c, l);
    } else if (c.fused_gate_up) {
      check_weight(r, layer_tensor(l, "ffn_up"), {c.d_model, 2 * c.ffn_dim}, true);
    } else {
      check_weight(r, layer_tensor(l, "ffn_gate"), {c.d_model, c.ffn_dim}, true);
      check_weight(r, layer_tensor(l, "ffn_up"), {c.d_model, c.ffn_dim}, true);
    }
    if (!c.moe()) check_weight(r, layer_tensor(l, "ffn_down"), {c.ffn_dim, c.d_model}, true);
    if (c.qkv_bias) {
      check_weight(r, layer_bias(l, "attn_q"), {c.q_dim()}, false);
      check_weight(r, layer_bias(l, "attn_k"), {c.kv_dim()}, false);
      check_weight(r, layer_bias(l, "attn_v"), {c.kv_dim()}, false);
    }
    if (c.qk_norm) {
      check_weight(r, layer_tensor(l, "attn_q_norm"), {c.head_dim}, false);
      check_weight(r, layer_tensor(l, "attn_k_norm"), {c.head_dim}, false);
    }
    if (c.post_norms) {
      check_weight(r, layer_tensor(l, "post_attention_norm"), {c.d_model}, false);
      check_weight(r, layer_tensor(l, "post_ffw_norm"), {c.d_model}, false);
    }
  }
  return c;
}

void ModelConfig::use_context(std::uint32_t context) {
  for (RopeConfig* r : {&rope, &rope_local}) {
    if (r->scaling != RopeScaling::longrope) continue;
    r->freq_factors = context > r->original_context ? r->long_factors : r->short_factors;
  }
}

std::vector<float> llama3_freq_factors(const RopeConfig& rope) {
  // Llama 3.1's scaling, as transformers and llama.cpp's converter compute it.
  const std::uint32_t n = rope.dims / 2;
  std::vector<float> factors(n, 1.f);
  const double low_wavelen = rope.original_context / rope.low_freq_factor;
  const double high_wavelen = rope.original_context / rope.high_freq_factor;
  for (std::uint32_t i = 0; i < n; ++i) {
    const double freq = std::pow(static_cast<double>(rope.base), -2.0 * i / rope.dims);
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      factors[i] = 1.f;
    } else if (wavelen > low_wavelen) {
      factors[i] = rope.factor;
    } else {
      const double smooth = (rope.original_context / wavelen - rope.low_freq_factor) /
                            (rope.high_freq_factor - rope.low_freq_factor);
      factors[i] = static_cast<float>(1.0 / ((1 - smooth) / rope.factor + smooth));
    }
  }
  return factors;
}

std::vector<float> rope_inv_freq(const RopeConfig& rope) {
  const std::uint32_t n = rope.dims / 2;
  std::vector<float> inv(n);
  if (rope.none) return inv;
  // YaRN's ramp runs between the pairs that turn beta_fast and beta_slow times over the original
  // context (ggml_rope_yarn_corr_dims: floor and ceil, clamped to the rotated dims).
  double low = 0, high = 0;
  if (rope.scaling == RopeScaling::yarn) {
    const auto corr_dim = [&](double rotations) {
      return rope.dims * std::log(rope.original_context / (rotations * 2 * std::numbers::pi)) /
             (2 * std::log(static_cast<double>(rope.base)));
    };
    low = std::max(0.0, std::floor(corr_dim(rope.yarn_beta_fast)));
    high = std::min(static_cast<double>(rope.dims) - 1, std::ceil(corr_dim(rope.yarn_beta_slow)));
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    double f = std::pow(static_cast<double>(rope.base), -2.0 * i / rope.dims);
    if (!rope.freq_factors.empty()) f /= rope.freq_factors[i];
    if (rope.scaling == RopeScaling::linear) f /= rope.factor;
    if (rope.scaling == RopeScaling::yarn) {
      const double y = (static_cast<double>(i) - low) / std::max(0.001, high - low);
      const double mix = (1 - std::clamp(y, 0.0, 1.0)) * rope.yarn_ext_factor;
      f = f / rope.factor * (1 - mix) + f * mix;
    }
    inv[i] = static_cast<float>(f);
  }
  return inv;
}

}  // namespace vkllm::model
