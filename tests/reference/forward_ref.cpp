#include "tests/reference/forward_ref.hpp"

#include <algorithm>
#include <cmath>

#include "engine/gguf/quant.hpp"
#include "tests/reference/attention_ref.hpp"

namespace vkllm::ref {
namespace {

std::vector<float> load(const gguf::Reader& r, const std::string& name) {
  const gguf::TensorInfo& t = r.tensor(name);
  return gguf::dequantize(t.type, r.tensor_data(t));
}

// y[r] = sum_c w[(row0 + r) * ncols + c] * x[c]
std::vector<float> matvec(const std::vector<float>& w, const std::vector<float>& x,
                          std::size_t nrows, std::size_t row0 = 0) {
  const std::size_t ncols = x.size();
  std::vector<float> y(nrows);
  for (std::size_t r = 0; r < nrows; ++r) {
    double acc = 0;
    for (std::size_t c = 0; c < ncols; ++c) acc += double(w[(row0 + r) * ncols + c]) * x[c];
    y[r] = static_cast<float>(acc);
  }
  return y;
}

// The biases of gpt-oss's experts (all experts', one after another).
struct ExpertBiases {
  const std::vector<float>& gate;
  const std::vector<float>& up;
  const std::vector<float>& down;
};

// down(act(gate x) * up x) of one feed-forward of width f whose rows start at expert e's. With
// biases (gpt-oss): each projection plus its bias, and the clamped SwiGLU (swiglu_oai).
std::vector<float> gated_ffn(const std::vector<float>& gate, const std::vector<float>& up,
                             const std::vector<float>& down, const std::vector<float>& x,
                             std::size_t f, bool geglu, std::size_t e = 0,
                             const ExpertBiases* bias = nullptr) {
  const std::size_t d = x.size();
  const std::vector<float> g = matvec(gate, x, f, e * f);
  const std::vector<float> u = matvec(up, x, f, e * f);
  std::vector<float> h(f);
  for (std::size_t i = 0; i < f; ++i) {
    const double gi = g[i];
    if (bias) {
      h[i] = static_cast<float>(swiglu_oai(gi + bias->gate[e * f + i], double(u[i]) + bias->up[e * f + i]));
      continue;
    }
    const double act = geglu ? 0.5 * gi * (1.0 + std::tanh(0.7978845608028654 * (gi + 0.044715 * gi * gi * gi)))
                             : gi / (1.0 + std::exp(-gi));
    h[i] = static_cast<float>(act * u[i]);
  }
  std::vector<float> y = matvec(down, h, d, e * d);
  if (bias) {
    for (std::size_t i = 0; i < d; ++i) y[i] += bias->down[e * d + i];
  }
  return y;
}

// RMSNorm of each `n`-element group of x.
std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, float eps) {
  const std::size_t n = w.size();
  std::vector<float> y(x.size());
  for (std::size_t g = 0; g < x.size() / n; ++g) {
    double ss = 0;
    for (std::size_t i = 0; i < n; ++i) ss += double(x[g * n + i]) * x[g * n + i];
    const double s = 1.0 / std::sqrt(ss / n + eps);
    for (std::size_t i = 0; i < n; ++i) y[g * n + i] = static_cast<float>(x[g * n + i] * s * w[i]);
  }
  return y;
}

// The first `rot` elements of each head rotate as a head of that size (partial rotary), times
// mscale (LongRoPE's attention factor, on the rotated pairs only, as llama.cpp's rope).
void rope(std::vector<float>& x, std::uint32_t heads, std::uint32_t hd, std::uint32_t rot,
          std::uint32_t pos, const std::vector<float>& inv_freq, bool neox, double mscale) {
  for (std::uint32_t h = 0; h < heads; ++h) {
    float* v = x.data() + std::size_t{h} * hd;
    for (std::uint32_t i = 0; i < rot / 2; ++i) {
      const double theta = double(pos) * inv_freq[i];
      const double c = std::cos(theta), s = std::sin(theta);
      const std::uint32_t a = neox ? i : 2 * i, b = neox ? i + rot / 2 : 2 * i + 1;
      const double x0 = v[a], x1 = v[b];
      v[a] = static_cast<float>((x0 * c - x1 * s) * mscale);
      v[b] = static_cast<float>((x0 * s + x1 * c) * mscale);
    }
  }
}

}  // namespace

ReferenceModel::ReferenceModel(const gguf::Reader& r, bool round_kv_f16, std::uint32_t context)
    : config_(model::ModelConfig::from_gguf(r)), round_kv_f16_(round_kv_f16) {
  if (context) config_.use_context(context);
  const model::ModelConfig& c = config_;
  token_embd_ = load(r, "token_embd.weight");
  output_norm_ = load(r, "output_norm.weight");
  output_ = c.tied_output ? token_embd_ : load(r, "output.weight");
  inv_freq_ = model::rope_inv_freq(c.rope);
  inv_freq_local_ = model::rope_inv_freq(c.rope_local);
  layers_.resize(c.n_layers);
  for (std::uint32_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[l];
    using model::layer_tensor;
    L.attn_norm = load(r, layer_tensor(l, "attn_norm"));
    // Row ranges of a fused tensor ([rows, d_model], row-major).
    const auto rows = [&](const std::vector<float>& w, std::uint32_t first, std::uint32_t n) {
      return std::vector<float>(w.begin() + std::size_t{first} * c.d_model,
                                w.begin() + std::size_t{first + n} * c.d_model);
    };
    if (c.fused_qkv) {
      const std::vector<float> qkv = load(r, layer_tensor(l, "attn_qkv"));
      L.wq = rows(qkv, 0, c.q_dim());
      L.wk = rows(qkv, c.q_dim(), c.kv_dim());
      L.wv = rows(qkv, c.q_dim() + c.kv_dim(), c.kv_dim());
    } else {
      L.wq = load(r, layer_tensor(l, "attn_q"));
      L.wk = load(r, layer_tensor(l, "attn_k"));
      L.wv = load(r, layer_tensor(l, "attn_v"));
    }
    L.wo = load(r, layer_tensor(l, "attn_output"));
    L.ffn_norm = load(r, layer_tensor(l, c.ffn_norm_name));
    if (c.out_bias) L.bo = load(r, model::layer_bias(l, "attn_output"));
    if (c.attn_sinks) L.sinks = load(r, layer_tensor(l, "attn_sinks"));
    if (c.expert_bias) {
      L.router_b = load(r, model::layer_bias(l, "ffn_gate_inp"));
      L.exp_gate_b = load(r, model::layer_bias(l, "ffn_gate_exps"));
      L.exp_up_b = load(r, model::layer_bias(l, "ffn_up_exps"));
      L.exp_down_b = load(r, model::layer_bias(l, "ffn_down_exps"));
    }
    if (c.moe()) {
      L.router = load(r, layer_tensor(l, "ffn_gate_inp"));
      L.exp_gate = load(r, layer_tensor(l, "ffn_gate_exps"));
      L.exp_up = load(r, layer_tensor(l, "ffn_up_exps"));
      L.exp_down = load(r, layer_tensor(l, "ffn_down_exps"));
      if (c.shared_ffn_dim > 0) {
        L.shexp_gate = load(r, layer_tensor(l, "ffn_gate_inp_shexp"));
        L.w_gate = load(r, layer_tensor(l, "ffn_gate_shexp"));
        L.w_up = load(r, layer_tensor(l, "ffn_up_shexp"));
        L.w_down = load(r, layer_tensor(l, "ffn_down_shexp"));
      }
    } else if (c.fused_gate_up) {
      const std::vector<float> gate_up = load(r, layer_tensor(l, "ffn_up"));
      L.w_gate = rows(gate_up, 0, c.ffn_dim);
      L.w_up = rows(gate_up, c.ffn_dim, c.ffn_dim);
    } else {
      L.w_gate = load(r, layer_tensor(l, "ffn_gate"));
      L.w_up = load(r, layer_tensor(l, "ffn_up"));
    }
    if (!c.moe()) L.w_down = load(r, layer_tensor(l, "ffn_down"));
    if (c.qkv_bias) {
      L.bq = load(r, model::layer_bias(l, "attn_q"));
      L.bk = load(r, model::layer_bias(l, "attn_k"));
      L.bv = load(r, model::layer_bias(l, "attn_v"));
    }
    if (c.qk_norm) {
      L.q_norm = load(r, layer_tensor(l, "attn_q_norm"));
      L.k_norm = load(r, layer_tensor(l, "attn_k_norm"));
    }
    if (c.post_norms) {
      L.post_attn_norm = load(r, layer_tensor(l, "post_attention_norm"));
      L.post_ffw_norm = load(r, layer_tensor(l, "post_ffw_norm"));
    }
  }
}

std::vector<float> ReferenceModel::forward(std::uint32_t token) {
  const model::ModelConfig& c = config_;
  const std::uint32_t d = c.d_model, hd = c.head_dim, pos = length_++;
  std::vector<float> x(token_embd_.begin() + std::size_t{token} * d,
                       token_embd_.begin() + std::size_t{token + 1} * d);
  if (c.embed_scale > 0) {
    for (float& e : x) e = static_cast<float>(double(e) * c.embed_scale);
  }
  // Gemma's post-norms: a sublayer's output normed before the residual add.
  const auto add_residual = [&](const std::vector<float>& out, const std::vector<float>& post_norm) {
    const std::vector<float> o = c.post_norms ? rms_norm(out, post_norm, c.rms_eps) : out;
    for (std::uint32_t i = 0; i < d; ++i) x[i] += o[i];
  };
  for (std::uint32_t l = 0; l < c.n_layers; ++l) {
    Layer& L = layers_[l];
    const std::vector<float>& inv_freq = c.layer_slides(l) ? inv_freq_local_ : inv_freq_;
    const std::vector<float> xn = rms_norm(x, L.attn_norm, c.rms_eps);
    std::vector<float> q = matvec(L.wq, xn, c.q_dim());
    std::vector<float> k = matvec(L.wk, xn, c.kv_dim());
    std::vector<float> v = matvec(L.wv, xn, c.kv_dim());
    if (c.qkv_bias) {
      for (std::size_t i = 0; i < q.size(); ++i) q[i] += L.bq[i];
      for (std::size_t i = 0; i < k.size(); ++i) k[i] += L.bk[i];
      for (std::size_t i = 0; i < v.size(); ++i) v[i] += L.bv[i];
    }
    if (c.qk_norm) {
      q = rms_norm(q, L.q_norm, c.rms_eps);
      k = rms_norm(k, L.k_norm, c.rms_eps);
    }
    // LongRoPE's attention factor multiplies cos and sin (llama.cpp's rope attn_factor).
    rope(q, c.n_heads, hd, c.rope.dims, pos, inv_freq, c.rope.neox, c.rope.attn_factor);
    rope(k, c.n_kv_heads, hd, c.rope.dims, pos, inv_freq, c.rope.neox, c.rope.attn_factor);
    if (round_kv_f16_) {
      for (float& e : k) e = gguf::fp16_to_fp32(gguf::fp32_to_fp16(e));
      for (float& e : v) e = gguf::fp16_to_fp32(gguf::fp32_to_fp16(e));
    }
    L.k_cache.insert(L.k_cache.end(), k.begin(), k.end());
    L.v_cache.insert(L.v_cache.end(), v.begin(), v.end());

    std::vector<float> attn(c.q_dim());
    const std::uint32_t group = c.n_heads / c.n_kv_heads;
    const double scale = c.attn_scale;
    // The sliding window: keys pos - window + 1 .. pos.
    const std::uint32_t window = c.layer_window(l);
    const std::uint32_t first = window && pos >= window ? pos + 1 - window : 0;
    for (std::uint32_t h = 0; h < c.n_heads; ++h) {
      const std::uint32_t kvh = h / group;
      std::vector<double> scores(pos + 1, 0.0);
      double mx = -INFINITY;
      for (std::uint32_t j = first; j <= pos; ++j) {
        double s = 0;
        for (std::uint32_t i = 0; i < hd; ++i) {
          s += double(q[h * hd + i]) * L.k_cache[std::size_t{j} * c.kv_dim() + kvh * hd + i];
        }
        scores[j] = s * scale;
        if (c.attn_softcap > 0) scores[j] = c.attn_softcap * std::tanh(scores[j] / c.attn_softcap);
        mx = std::max(mx, scores[j]);
      }
      // gpt-oss's sink: a logit of the head's own in the softmax's sum, with no value.
      double sum = c.attn_sinks ? std::exp(double(L.sinks[h]) - mx) : 0.0;
      for (std::uint32_t j = first; j <= pos; ++j) sum += (scores[j] = std::exp(scores[j] - mx));
      for (std::uint32_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (std::uint32_t j = first; j <= pos; ++j) {
          acc += scores[j] * L.v_cache[std::size_t{j} * c.kv_dim() + kvh * hd + i];
        }
        attn[h * hd + i] = static_cast<float>(acc / sum);
      }
    }
    std::vector<float> o = matvec(L.wo, attn, d);
    if (c.out_bias) {
      for (std::uint32_t i = 0; i < d; ++i) o[i] += L.bo[i];
    }
    add_residual(o, L.post_attn_norm);
    const std::vector<float> xn2 = rms_norm(x, L.ffn_norm, c.rms_eps);
    if (!c.moe()) {
      add_residual(gated_ffn(L.w_gate, L.w_up, L.w_down, xn2, c.ffn_dim, c.geglu), L.post_ffw_norm);
      continue;
    }
    // Mixture of experts: the softmax of the router's logits, the n_used largest (ties: the
    // lower expert), their probabilities (rescaled to sum to 1 where the family does). gpt-oss:
    // the logits plus the router's bias, the weights the softmax of the chosen ones' only.
    std::vector<float> logits = matvec(L.router, xn2, c.n_experts);
    if (c.expert_bias) {
      for (std::uint32_t e = 0; e < c.n_experts; ++e) logits[e] += L.router_b[e];
    }
    std::vector<std::uint32_t> order(c.n_experts);
    for (std::uint32_t e = 0; e < c.n_experts; ++e) order[e] = e;
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return logits[a] > logits[b]; });
    const double mx = logits[order[0]];
    double total = 0;
    for (std::uint32_t e = 0; e < (c.gating_chosen ? c.n_experts_used : c.n_experts); ++e) {
      total += std::exp(logits[order[e]] - mx);
    }
    std::vector<double> weight(c.n_experts_used);
    double chosen = 0;
    for (std::uint32_t j = 0; j < c.n_experts_used; ++j) chosen += weight[j] = std::exp(logits[order[j]] - mx) / total;
    std::vector<double> out(d, 0.0);
    const ExpertBiases biases{L.exp_gate_b, L.exp_up_b, L.exp_down_b};
    for (std::uint32_t j = 0; j < c.n_experts_used; ++j) {
      const double wj = c.expert_norm ? weight[j] / std::max(chosen, 6.103515625e-5) : weight[j];
      const std::vector<float> y = gated_ffn(L.exp_gate, L.exp_up, L.exp_down, xn2, c.expert_ffn_dim, false,
                                             order[j], c.expert_bias ? &biases : nullptr);
      for (std::uint32_t i = 0; i < d; ++i) out[i] += wj * y[i];
    }
    if (c.shared_ffn_dim > 0) {
      double g = 0;
      for (std::uint32_t i = 0; i < d; ++i) g += double(L.shexp_gate[i]) * xn2[i];
      const std::vector<float> y = gated_ffn(L.w_gate, L.w_up, L.w_down, xn2, c.shared_ffn_dim, false);
      for (std::uint32_t i = 0; i < d; ++i) out[i] += y[i] / (1.0 + std::exp(-g));
    }
    for (std::uint32_t i = 0; i < d; ++i) x[i] += static_cast<float>(out[i]);
  }
  std::vector<float> logits = matvec(output_, rms_norm(x, output_norm_, c.rms_eps), c.vocab_size);
  if (c.final_softcap > 0) {
    for (float& v : logits) v = static_cast<float>(c.final_softcap * std::tanh(double(v) / c.final_softcap));
  }
  return logits;
}

namespace {

// LayerNorm of each `n`-element group of x, with weight w and bias b.
std::vector<float> layer_norm(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b, float eps) {
  const std::size_t n = w.size();
  std::vector<float> y(x.size());
  for (std::size_t g = 0; g < x.size() / n; ++g) {
    double mean = 0, var = 0;
    for (std::size_t i = 0; i < n; ++i) mean += x[g * n + i];
    mean /= double(n);
    for (std::size_t i = 0; i < n; ++i) var += (x[g * n + i] - mean) * (x[g * n + i] - mean);
    const double s = 1.0 / std::sqrt(var / double(n) + eps);
    for (std::size_t i = 0; i < n; ++i) y[g * n + i] = static_cast<float>((x[g * n + i] - mean) * s * w[i] + b[i]);
  }
  return y;
}

std::vector<float> plus(std::vector<float> a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

}  // namespace

ReferenceEncoder::ReferenceEncoder(const gguf::Reader& r) : config_(model::ModelConfig::from_gguf(r)) {
  token_embd_ = load(r, "token_embd.weight");
  position_embd_ = load(r, "position_embd.weight");
  token_types_ = load(r, "token_types.weight");
  embd_norm_w_ = load(r, "token_embd_norm.weight");
  embd_norm_b_ = load(r, "token_embd_norm.bias");
  for (std::uint32_t l = 0; l < config_.n_layers; ++l) {
    const auto w = [&](const char* what) { return load(r, model::layer_tensor(l, what)); };
    const auto b = [&](const char* what) { return load(r, model::layer_bias(l, what)); };
    layers_.push_back({w("attn_q"), b("attn_q"), w("attn_k"), b("attn_k"), w("attn_v"), b("attn_v"),
                       w("attn_output"), b("attn_output"), w("attn_output_norm"), b("attn_output_norm"),
                       w("ffn_up"), b("ffn_up"), w("ffn_down"), b("ffn_down"), w("layer_output_norm"),
                       b("layer_output_norm")});
  }
}

std::vector<float> ReferenceEncoder::forward(const std::vector<std::uint32_t>& tokens) const {
  const model::ModelConfig& c = config_;
  const std::size_t n = tokens.size(), d = c.d_model, hd = c.head_dim, q = c.q_dim();
  std::vector<std::vector<float>> x(n);
  for (std::size_t t = 0; t < n; ++t) {
    std::vector<float> e(d);
    for (std::size_t i = 0; i < d; ++i) {
      e[i] = token_embd_[tokens[t] * d + i] + position_embd_[t * d + i] + token_types_[i];
    }
    x[t] = layer_norm(e, embd_norm_w_, embd_norm_b_, c.rms_eps);
  }
  const double scale = 1.0 / std::sqrt(double(hd));
  for (const Layer& L : layers_) {
    std::vector<std::vector<float>> qs(n), ks(n), vs(n);
    for (std::size_t t = 0; t < n; ++t) {
      qs[t] = plus(matvec(L.wq, x[t], q), L.bq);
      ks[t] = plus(matvec(L.wk, x[t], q), L.bk);
      vs[t] = plus(matvec(L.wv, x[t], q), L.bv);
    }
    for (std::size_t t = 0; t < n; ++t) {
      std::vector<float> attn(q);
      for (std::size_t h = 0; h < c.n_heads; ++h) {
        std::vector<double> p(n);
        double m = -1e300, sum = 0;
        for (std::size_t j = 0; j < n; ++j) {
          double dot = 0;
          for (std::size_t i = 0; i < hd; ++i) dot += double(qs[t][h * hd + i]) * ks[j][h * hd + i];
          p[j] = dot * scale;
          m = std::max(m, p[j]);
        }
        for (double& v : p) sum += (v = std::exp(v - m));
        for (std::size_t i = 0; i < hd; ++i) {
          double acc = 0;
          for (std::size_t j = 0; j < n; ++j) acc += p[j] * vs[j][h * hd + i];
          attn[h * hd + i] = static_cast<float>(acc / sum);
        }
      }
      const std::vector<float> o = plus(matvec(L.wo, attn, d), L.bo);
      const std::vector<float> h1 = layer_norm(plus(x[t], o), L.attn_norm_w, L.attn_norm_b, c.rms_eps);
      std::vector<float> up = plus(matvec(L.w_up, h1, c.ffn_dim), L.b_up);
      for (float& v : up) {
        const double g = v;
        v = static_cast<float>(0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))));
      }
      const std::vector<float> down = plus(matvec(L.w_down, up, d), L.b_down);
      x[t] = layer_norm(plus(h1, down), L.out_norm_w, L.out_norm_b, c.rms_eps);
    }
  }
  std::vector<float> out;
  for (const auto& row : x) out.insert(out.end(), row.begin(), row.end());
  return out;
}

std::vector<float> pool_normalized(const std::vector<float>& hidden, std::uint32_t d,
                                   model::Pooling pooling) {
  const std::size_t n = hidden.size() / d;
  std::vector<double> v(d, 0.0);
  if (pooling == model::Pooling::mean) {
    for (std::size_t t = 0; t < n; ++t) {
      for (std::size_t i = 0; i < d; ++i) v[i] += hidden[t * d + i];
    }
    for (double& x : v) x /= double(n);
  } else {
    const std::size_t t = pooling == model::Pooling::cls ? 0 : n - 1;
    for (std::size_t i = 0; i < d; ++i) v[i] = hidden[t * d + i];
  }
  double norm = 0;
  for (double x : v) norm += x * x;
  norm = std::sqrt(norm);
  std::vector<float> out(d);
  for (std::size_t i = 0; i < d; ++i) out[i] = static_cast<float>(norm > 0 ? v[i] / norm : 0.0);
  return out;
}

}  // namespace vkllm::ref
