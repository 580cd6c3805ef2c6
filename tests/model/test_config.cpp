// ModelConfig from GGUF metadata: the three families, and every unsupported or malformed case as
// a typed error naming its cause. No device.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/gguf/writer.hpp"
#include "engine/model/config.hpp"
#include "engine/model/synthetic.hpp"

using namespace vkllm;
using model::Arch;
using model::ModelConfig;
using model::SyntheticSpec;

namespace {

gguf::Reader to_reader(const gguf::Writer& w) { return gguf::Reader::from_bytes(w.to_bytes(), "test.gguf"); }

SyntheticSpec small(Arch arch) {
  SyntheticSpec s;
  s.arch = arch;
  s.n_layers = 2;
  s.d_model = 64;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 16;
  s.ffn_dim = 96;
  s.vocab_size = 320;
  return s;
}

// A copy of `r` with metadata edited by `meta` and tensors filtered/replaced by `tensor`
// (return false to drop one).
using TensorEdit = std::function<bool(gguf::TensorInfo&, std::vector<std::uint8_t>&)>;
gguf::Reader rewrite(const gguf::Reader& r, const std::function<void(gguf::Writer&)>& meta,
                     const TensorEdit& tensor = nullptr) {
  gguf::Writer w;
  for (const gguf::KeyValue& kv : r.metadata()) w.set(kv.key, kv.value);
  meta(w);
  for (const gguf::TensorInfo& t : r.tensors()) {
    gguf::TensorInfo info = t;
    const auto data = r.tensor_data(t);
    std::vector<std::uint8_t> bytes(data.begin(), data.end());
    if (tensor && !tensor(info, bytes)) continue;
    w.add_tensor(info.name, std::vector<std::uint64_t>(info.dims.begin(), info.dims.begin() + info.n_dims),
                 info.type, std::move(bytes));
  }
  return to_reader(w);
}

std::string error_of(const gguf::Reader& r) {
  try {
    ModelConfig::from_gguf(r);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("the four families read their shapes and options") {
  for (Arch arch : {Arch::llama, Arch::qwen2, Arch::qwen3, Arch::phi3}) {
    CAPTURE(model::to_string(arch));
    SyntheticSpec s = small(arch);
    s.tied_output = arch == Arch::qwen2;
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
    CHECK(c.arch == arch);
    CHECK(c.n_layers == 2);
    CHECK(c.d_model == 64);
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 2);
    CHECK(c.head_dim == 16);
    CHECK(c.ffn_dim == 96);
    CHECK(c.vocab_size == 320);
    CHECK(c.rope.neox == (arch != Arch::llama));
    CHECK(c.qkv_bias == (arch == Arch::qwen2));
    CHECK(c.qk_norm == (arch == Arch::qwen3));
    CHECK(c.tied_output == (arch == Arch::qwen2));
    CHECK(c.fused_qkv == (arch == Arch::phi3));
    CHECK(c.fused_gate_up == (arch == Arch::phi3));
  }
}

TEST_CASE("gemma2 and gemma3: llama.cpp's defaults, layer patterns, local RoPE, query scale") {
  SUBCASE("gemma2 with nothing but shapes: caps 50 and 30, a 4096 window on even layers") {
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(small(Arch::gemma2))));
    CHECK(c.arch == Arch::gemma2);
    CHECK(c.embed_scale == doctest::Approx(8.f));  // sqrt(64)
    CHECK(c.geglu);
    CHECK(c.post_norms);
    CHECK_FALSE(c.qk_norm);
    CHECK(c.rope.neox);
    CHECK(c.attn_softcap == 50.f);
    CHECK(c.final_softcap == 30.f);
    CHECK(c.layer_window(0) == 4096);
    CHECK(c.layer_window(1) == 0);
    CHECK(c.layer_window(2) == 4096);
    CHECK(c.attn_scale == doctest::Approx(0.25f));  // 1/sqrt(head_dim 16)
    CHECK(model::rope_inv_freq(c.layer_rope(0)) == model::rope_inv_freq(c.layer_rope(1)));
  }
  SUBCASE("gemma3: five local layers of six with base 10000, the global one scaled; no caps") {
    SyntheticSpec s = small(Arch::gemma3);
    s.n_layers = 12;
    s.sliding_window = 512;
    s.rope_base = 1e6f;
    s.linear_rope_factor = 8.f;
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
    CHECK(c.qk_norm);
    CHECK(c.attn_softcap == 0.f);
    CHECK(c.final_softcap == 0.f);
    for (std::uint32_t l = 0; l < 12; ++l) {
      CAPTURE(l);
      CHECK(c.layer_window(l) == (l % 6 == 5 ? 0u : 512u));
    }
    CHECK(c.layer_rope(0).base == 10000.f);
    CHECK(c.layer_rope(0).scaling == model::RopeScaling::none);
    CHECK(c.layer_rope(5).base == 1e6f);
    CHECK(c.layer_rope(5).scaling == model::RopeScaling::linear);
    CHECK(model::rope_inv_freq(c.layer_rope(5))[0] == doctest::Approx(1.f / 8.f));
    // A file without a window: full attention everywhere. With a period of its own, and a
    // base for the local layers.
    s.sliding_window = 0;
    CHECK(ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s))).layer_window(0) == 0);
    s.sliding_window = 64;
    s.swa_period = 3;
    s.rope_base_local = 5000.f;
    const ModelConfig p = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
    CHECK(p.layer_window(1) == 64);
    CHECK(p.layer_window(2) == 0);
    CHECK(p.layer_rope(0).base == 5000.f);
  }
  SUBCASE("the 27B models scale queries by d_model / n_heads") {
    SyntheticSpec s = small(Arch::gemma2);
    s.n_layers = 46;
    s.head_dim = 32;  // d_model / n_heads = 16
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
    CHECK(c.attn_scale == doctest::Approx(0.25f));
  }
  SUBCASE("malformed: a post-norm missing, a negative cap") {
    const gguf::Reader base = to_reader(model::make_synthetic_model(small(Arch::gemma3)));
    auto r = rewrite(base, [](gguf::Writer&) {},
                     [](gguf::TensorInfo& t, auto&) { return t.name != "blk.1.post_ffw_norm.weight"; });
    CHECK(error_of(r).find("blk.1.post_ffw_norm.weight") != std::string::npos);
    r = rewrite(base, [](gguf::Writer& w) { w.set_f32("gemma3.final_logit_softcapping", -1.f); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("final_logit_softcapping") != std::string::npos);
  }
}

TEST_CASE("phi3: fused tensors of the wrong height, and LongRoPE, are errors naming them") {
  const gguf::Reader base = to_reader(model::make_synthetic_model(small(Arch::phi3)));
  REQUIRE(base.find_tensor("blk.0.attn_qkv.weight") != nullptr);
  REQUIRE(base.find_tensor("blk.0.attn_q.weight") == nullptr);
  REQUIRE(base.find_tensor("blk.0.ffn_gate.weight") == nullptr);
  SUBCASE("gate/up of one ffn's height") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("phi3.feed_forward_length", 192); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("ffn_up") != std::string::npos);
  }
  SUBCASE("qkv of other head counts") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("phi3.attention.head_count_kv", 4); });
    CHECK(error_of(r).find("attn_qkv") != std::string::npos);
  }
  SUBCASE("LongRoPE: one factor set alone") {
    gguf::Writer w = model::make_synthetic_model(small(Arch::phi3));
    w.add_tensor_f32("rope_factors_long.weight", {8}, std::vector<float>(8, 1.5f), gguf::TensorType::kF32);
    const gguf::Reader r = to_reader(w);
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("rope_factors_short") != std::string::npos);
  }
}

TEST_CASE("MoE families: experts, routing rules and shared experts read; malformed experts named") {
  const auto moe = [](Arch arch) {
    SyntheticSpec s = small(arch);
    s.n_experts = 8;
    s.n_experts_used = 2;
    s.expert_ffn_dim = 64;
    return s;
  };
  {
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(moe(Arch::qwen3moe))));
    CHECK(c.arch == Arch::qwen3moe);
    CHECK(c.moe());
    CHECK(c.n_experts == 8);
    CHECK(c.n_experts_used == 2);
    CHECK(c.expert_ffn_dim == 64);
    CHECK(c.expert_norm);
    CHECK(c.shared_ffn_dim == 0);
    CHECK(c.dense_ffn_dim() == 0);
    CHECK(c.qk_norm);
    CHECK(c.rope.neox);
  }
  {
    SyntheticSpec s = moe(Arch::qwen2moe);
    s.shared_ffn_dim = 160;
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
    CHECK(c.arch == Arch::qwen2moe);
    CHECK_FALSE(c.expert_norm);  // as llama.cpp: Qwen2-MoE keeps the softmax weights
    CHECK(c.shared_ffn_dim == 160);
    CHECK(c.dense_ffn_dim() == 160);
    CHECK(c.qkv_bias);
  }
  {
    const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(moe(Arch::llama))));
    CHECK(c.arch == Arch::llama);
    CHECK(c.expert_ffn_dim == c.ffn_dim);  // Mixtral: the experts are feed_forward_length wide
    CHECK(c.expert_norm);
    CHECK_FALSE(c.rope.neox);
  }
  const gguf::Reader base = to_reader(model::make_synthetic_model(moe(Arch::qwen3moe)));
  SUBCASE("more experts a token than there are") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("qwen3moe.expert_used_count", 9); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("expert_used_count") != std::string::npos);
  }
  SUBCASE("more experts than the router kernel takes") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("qwen3moe.expert_count", 600); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("512") != std::string::npos);
  }
  SUBCASE("a MoE family without experts") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("qwen3moe.expert_count", 0); });
    CHECK(error_of(r).find("expert_count") != std::string::npos);
  }
  SUBCASE("an expert tensor of another width") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("qwen3moe.expert_feed_forward_length", 32); });
    CHECK(error_of(r).find("ffn_gate_exps") != std::string::npos);
  }
  SUBCASE("experts one tensor each (an old Mixtral conversion)") {
    const gguf::Reader mixtral = to_reader(model::make_synthetic_model(moe(Arch::llama)));
    auto r = rewrite(mixtral, [](gguf::Writer&) {}, [](gguf::TensorInfo& t, std::vector<std::uint8_t>&) {
      if (t.name.find("ffn_gate_exps") != std::string::npos) t.name.replace(t.name.find("ffn_gate_exps"), 13, "ffn_gate.0");
      return true;
    });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("blk.0.ffn_gate.0.weight") != std::string::npos);
  }
}

TEST_CASE("gpt-oss: biases, sinks, the clamped SwiGLU, chosen-softmax gating, a window on even layers; malformed files named") {
  SyntheticSpec s = small(Arch::gpt_oss);
  s.n_layers = 4;
  s.head_dim = 32;
  s.n_experts = 8;
  s.n_experts_used = 4;
  s.expert_ffn_dim = 64;
  s.sliding_window = 128;
  s.yarn_factor = 32.f;
  s.yarn_original_context = 4096;
  const gguf::Reader base = to_reader(model::make_synthetic_model(s));
  {
    const ModelConfig c = ModelConfig::from_gguf(base);
    CHECK(c.arch == Arch::gpt_oss);
    CHECK(std::string(model::to_string(c.arch)) == "gpt-oss");
    CHECK(c.n_experts == 8);
    CHECK(c.n_experts_used == 4);
    CHECK(c.expert_ffn_dim == 64);
    CHECK_FALSE(c.expert_norm);
    CHECK(c.gating_chosen);
    CHECK(c.expert_bias);
    CHECK(c.swiglu_oai);
    CHECK(c.qkv_bias);
    CHECK(c.out_bias);
    CHECK(c.attn_sinks);
    CHECK_FALSE(c.post_norms);
    CHECK(std::string(c.ffn_norm_name) == "post_attention_norm");
    CHECK(c.rope.neox);
    CHECK(c.rope.scaling == model::RopeScaling::yarn);
    CHECK(c.rope.original_context == 4096);
    // llama.cpp's pattern for gpt-oss: even layers slide.
    CHECK(c.layer_window(0) == 128);
    CHECK(c.layer_window(1) == 0);
    CHECK(c.layer_window(2) == 128);
    CHECK(c.layer_window(3) == 0);
    CHECK(c.attn_scale == doctest::Approx(1.0 / std::sqrt(32.0)));
  }
  const auto without = [&](const std::string& name) {
    return rewrite(base, [](gguf::Writer&) {}, [&](gguf::TensorInfo& t, std::vector<std::uint8_t>&) { return t.name != name; });
  };
  for (const char* name : {"blk.1.attn_sinks.weight", "blk.0.attn_output.bias", "blk.1.ffn_gate_inp.bias",
                           "blk.0.ffn_up_exps.bias", "blk.1.ffn_down_exps.bias", "blk.0.post_attention_norm.weight",
                           "blk.1.attn_k.bias"}) {
    CAPTURE(name);
    CHECK(error_of(without(name)).find(name) != std::string::npos);
  }
  SUBCASE("no sliding window key (llama.cpp requires one)") {
    gguf::Writer w;
    for (const gguf::KeyValue& kv : base.metadata()) {
      if (kv.key != "gpt-oss.attention.sliding_window") w.set(kv.key, kv.value);
    }
    for (const gguf::TensorInfo& t : base.tensors()) {
      const auto data = base.tensor_data(t);
      w.add_tensor(t.name, std::vector<std::uint64_t>(t.dims.begin(), t.dims.begin() + t.n_dims), t.type,
                   std::vector<std::uint8_t>(data.begin(), data.end()));
    }
    CHECK(error_of(to_reader(w)).find("gpt-oss.attention.sliding_window") != std::string::npos);
  }
  SUBCASE("sinks of another length than the heads") {
    auto r = rewrite(base, [](gguf::Writer&) {}, [](gguf::TensorInfo& t, std::vector<std::uint8_t>& bytes) {
      if (t.name == "blk.0.attn_sinks.weight") {
        t.dims[0] = 5;
        t.n_elements = 5;
        bytes.resize(20);
      }
      return true;
    });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("blk.0.attn_sinks.weight") != std::string::npos);
  }
  SUBCASE("gate and up experts of different types") {
    auto r = rewrite(base, [](gguf::Writer&) {}, [](gguf::TensorInfo& t, std::vector<std::uint8_t>& bytes) {
      if (t.name == "blk.0.ffn_up_exps.weight") {
        std::vector<float> zeros(t.n_elements, 0.f);
        const auto* p = reinterpret_cast<const std::uint8_t*>(zeros.data());
        bytes.assign(p, p + zeros.size() * 4);
        t.type = gguf::TensorType::kF32;
      }
      return true;
    });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("ffn_up_exps") != std::string::npos);
  }
}

TEST_CASE("phi3 LongRoPE: the short factors up to the original context, the long ones beyond") {
  SyntheticSpec s = small(Arch::phi3);
  s.longrope = true;
  s.longrope_original_context = 512;
  s.longrope_attn_factor = 1.19f;
  ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
  REQUIRE(c.rope.scaling == model::RopeScaling::longrope);
  REQUIRE(c.rope.short_factors.size() == s.head_dim / 2);
  CHECK(c.rope.original_context == 512);
  CHECK(c.rope.attn_factor == doctest::Approx(1.19f));
  CHECK(c.rope.freq_factors == c.rope.short_factors);
  c.use_context(512);
  CHECK(c.rope.freq_factors == c.rope.short_factors);
  c.use_context(513);
  CHECK(c.rope.freq_factors == c.rope.long_factors);
  CHECK(c.rope.long_factors.back() > c.rope.short_factors.back());
  // The slowest pair turns by the base's rate over its factor.
  const auto inv = model::rope_inv_freq(c.rope);
  CHECK(inv.back() == doctest::Approx(std::pow(10000.0, -2.0 * (s.head_dim / 2 - 1) / s.head_dim) /
                                      c.rope.long_factors.back()));
}

TEST_CASE("head_dim comes from key_length when present (qwen3: heads x head_dim != d_model)") {
  SyntheticSpec s = small(Arch::qwen3);
  s.head_dim = 32;  // 4 heads x 32 = 128 != 64
  const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
  CHECK(c.head_dim == 32);
  CHECK(c.q_dim() == 128);
}

TEST_CASE("rope frequencies: plain, linear and llama3 scaling") {
  model::RopeConfig rope;
  rope.base = 10000.f;
  rope.dims = 8;
  auto inv = model::rope_inv_freq(rope);
  REQUIRE(inv.size() == 4);
  CHECK(inv[0] == doctest::Approx(1.0));
  CHECK(inv[1] == doctest::Approx(0.1));
  CHECK(inv[3] == doctest::Approx(0.001));
  rope.scaling = model::RopeScaling::linear;
  rope.factor = 4.f;
  CHECK(model::rope_inv_freq(rope)[1] == doctest::Approx(0.025));

  // Llama 3.1 8B: base 500000, 128 dims, factor 8: high frequencies untouched, low divided by 8,
  // the band between interpolated (values as transformers computes them).
  model::RopeConfig l3;
  l3.base = 500000.f;
  l3.dims = 128;
  l3.factor = 8.f;
  const auto f = model::llama3_freq_factors(l3);
  REQUIRE(f.size() == 64);
  CHECK(f[0] == 1.f);
  CHECK(f[63] == 8.f);
  int interpolated = 0;
  for (float v : f) interpolated += v > 1.f && v < 8.f;
  CHECK(interpolated > 0);
  for (std::size_t i = 1; i < f.size(); ++i) CHECK(f[i] >= f[i - 1]);

  // Written by make-model as rope_freqs.weight and read back as llama3 scaling.
  SyntheticSpec s = small(Arch::llama);
  s.llama3_rope = true;
  s.rope_factor = 8.f;
  const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
  CHECK(c.rope.scaling == model::RopeScaling::llama3);
  CHECK(c.rope.freq_factors.size() == 8);
}

TEST_CASE("YaRN: the ramp between the correction dims, the attention factor, read from the file") {
  // 16 rotated dims, base 10000, x4 over 64 positions: ggml's correction dims are floor(16 ln(64
  // / (32 2 pi)) / (2 ln 10000)) = -1 -> 0 and ceil(16 ln(64 / (2 pi)) / (2 ln 10000)) = 3. Pair
  // i blends i / 3 of the way from the original rate to the interpolated one (rate / 4).
  SyntheticSpec s = small(Arch::qwen3);
  s.yarn_factor = 4.f;
  s.yarn_original_context = 64;
  const ModelConfig c = ModelConfig::from_gguf(to_reader(model::make_synthetic_model(s)));
  REQUIRE(c.rope.scaling == model::RopeScaling::yarn);
  CHECK(c.rope.original_context == 64);
  CHECK(c.rope.attn_factor == doctest::Approx(1.0 + 0.1 * std::log(4.0)));
  const auto inv = model::rope_inv_freq(c.rope);
  REQUIRE(inv.size() == 8);
  const auto rate = [](int i) { return std::pow(10000.0, -2.0 * i / 16); };
  CHECK(inv[0] == doctest::Approx(rate(0)));
  CHECK(inv[1] == doctest::Approx(rate(1) * (2.0 / 3 + 1.0 / 3 / 4)));
  CHECK(inv[2] == doctest::Approx(rate(2) * (1.0 / 3 + 2.0 / 3 / 4)));
  for (int i = 3; i < 8; ++i) CHECK(inv[i] == doctest::Approx(rate(i) / 4));
  // Out-of-range values are errors naming YaRN.
  const gguf::Reader base = to_reader(model::make_synthetic_model(s));
  auto r = rewrite(base, [](gguf::Writer& w) { w.set_f32("qwen3.rope.scaling.factor", 0.5f); });
  CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
  CHECK(error_of(r).find("YaRN") != std::string::npos);
}

TEST_CASE("unsupported and malformed models are typed errors naming the cause") {
  const gguf::Reader base = to_reader(model::make_synthetic_model(small(Arch::llama)));

  SUBCASE("architecture") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_string("general.architecture", "gpt2"); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("gpt2") != std::string::npos);
  }
  SUBCASE("missing tensor") {
    auto r = rewrite(base, [](gguf::Writer&) {},
                     [](gguf::TensorInfo& t, auto&) { return t.name != "blk.1.ffn_up.weight"; });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("blk.1.ffn_up.weight") != std::string::npos);
  }
  SUBCASE("more layers announced than stored") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("llama.block_count", 3); });
    CHECK(error_of(r).find("blk.2.") != std::string::npos);
  }
  SUBCASE("wrong shape") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("llama.feed_forward_length", 128); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("ffn_gate") != std::string::npos);
  }
  SUBCASE("weight type vkllm cannot run") {
    // iq3_s (110 bytes per 256 elements) on a model whose rows are 256 wide.
    SyntheticSpec s = small(Arch::llama);
    s.d_model = 256;
    s.head_dim = 64;
    const gguf::Reader wide = to_reader(model::make_synthetic_model(s));
    auto r = rewrite(wide, [](gguf::Writer&) {}, [](gguf::TensorInfo& t, auto& bytes) {
      if (t.name == "token_embd.weight") {
        t.type = gguf::TensorType::kIQ3_S;
        bytes.assign(t.n_elements / 256 * 110, 0);
      }
      return true;
    });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("iq3_s") != std::string::npos);
  }
  SUBCASE("head counts") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("llama.attention.head_count_kv", 3); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
    CHECK(error_of(r).find("KV heads") != std::string::npos);
  }
  SUBCASE("zero layers") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("llama.block_count", 0); });
    CHECK(error_of(r).find("block_count") != std::string::npos);
  }
  SUBCASE("missing key") {
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    CHECK_THROWS_AS(ModelConfig::from_gguf(to_reader(w)), InvalidModel);
    CHECK(error_of(to_reader(w)).find("llama.block_count") != std::string::npos);
  }
  SUBCASE("rotary dims: partial runs; odd or past the head does not") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("llama.rope.dimension_count", 8); });
    CHECK(ModelConfig::from_gguf(r).rope.dims == 8);
    CHECK(model::rope_inv_freq(ModelConfig::from_gguf(r).rope).size() == 4);
    for (std::uint32_t dims : {7u, 18u, 0u}) {
      CAPTURE(dims);
      r = rewrite(base, [dims](gguf::Writer& w) { w.set_u32("llama.rope.dimension_count", dims); });
      CHECK_THROWS_AS(ModelConfig::from_gguf(r), InvalidModel);
      CHECK(error_of(r).find("rotary dims") != std::string::npos);
    }
  }
  SUBCASE("unknown rope scaling") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_string("llama.rope.scaling.type", "dynamic"); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("dynamic") != std::string::npos);
  }
}

TEST_CASE("presets have their real shapes") {
  for (const std::string& name : model::synthetic_preset_names()) {
    CAPTURE(name);
    REQUIRE(model::synthetic_preset(name).has_value());
  }
  CHECK_FALSE(model::synthetic_preset("nope").has_value());
  const auto tiny = *model::synthetic_preset("tiny");
  const double p = double(model::synthetic_parameter_count(tiny));
  CHECK(p > 90e6);
  CHECK(p < 130e6);
  const double p8 = double(model::synthetic_parameter_count(*model::synthetic_preset("llama3-8b")));
  CHECK(p8 == doctest::Approx(8.03e9).epsilon(0.01));
  const double p1 = double(model::synthetic_parameter_count(*model::synthetic_preset("llama3-1b")));
  CHECK(p1 == doctest::Approx(1.236e9).epsilon(0.01));
  const double pq = double(model::synthetic_parameter_count(*model::synthetic_preset("qwen3-30b-a3b")));
  CHECK(pq == doctest::Approx(30.5e9).epsilon(0.01));  // Qwen3-30B-A3B: 30.5B
  const double pg = double(model::synthetic_parameter_count(*model::synthetic_preset("gpt-oss-20b")));
  CHECK(pg == doctest::Approx(20.9e9).epsilon(0.01));  // gpt-oss-20b: 20.9B
}

TEST_CASE("synthetic vocabularies have no repeated piece (llama.cpp loads our models)") {
  SyntheticSpec s = small(Arch::llama);
  s.vocab_size = 32000;
  const auto reader = to_reader(model::make_synthetic_model(s));
  const auto tokens = reader.get_string_array("tokenizer.ggml.tokens");
  REQUIRE(tokens.size() == 32000);
  std::set<std::string> distinct(tokens.begin(), tokens.end());
  CHECK(distinct.size() == tokens.size());
}

TEST_CASE("bert: an encoder with learned positions, pooling from the file; malformed ones named") {
  SyntheticSpec s = small(Arch::bert);
  s.n_kv_heads = s.n_heads;
  s.context_length = 256;
  s.pooling = 2;
  const gguf::Reader base = to_reader(model::make_synthetic_model(s));
  const ModelConfig c = ModelConfig::from_gguf(base);
  CHECK(c.arch == Arch::bert);
  CHECK(c.encoder);
  CHECK(c.qkv_bias);
  CHECK(c.rope.none);
  CHECK(c.pooling == model::Pooling::cls);
  CHECK(c.context_length == 256);
  for (float f : model::rope_inv_freq(c.rope)) CHECK(f == 0.f);
  CHECK(ModelConfig::from_gguf(to_reader(model::make_synthetic_model(small(Arch::llama)))).pooling ==
        model::Pooling::last);
  SUBCASE("a reranker's rank pooling") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_u32("bert.pooling_type", 4); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
    CHECK(error_of(r).find("pooling type 4") != std::string::npos);
  }
  SUBCASE("causal") {
    auto r = rewrite(base, [](gguf::Writer& w) { w.set_bool("bert.attention.causal", true); });
    CHECK_THROWS_AS(ModelConfig::from_gguf(r), Unsupported);
  }
  SUBCASE("a missing LayerNorm bias") {
    auto r = rewrite(base, [](gguf::Writer&) {},
                     [](gguf::TensorInfo& t, auto&) { return t.name != "blk.1.layer_output_norm.bias"; });
    CHECK(error_of(r).find("blk.1.layer_output_norm.bias") != std::string::npos);
  }
  SUBCASE("position table of another width") {
    auto r = rewrite(base, [](gguf::Writer&) {}, [](gguf::TensorInfo& t, std::vector<std::uint8_t>& bytes) {
      if (t.name == "position_embd.weight") {
        t.dims[0] = 32;
        t.dims[1] = 512;
      }
      (void)bytes;
      return true;
    });
    CHECK(error_of(r).find("position_embd.weight") != std::string::npos);
  }
  CHECK(model::parse_pooling("cls") == model::Pooling::cls);
  CHECK_FALSE(model::parse_pooling("max").has_value());
}
