// Embeddings on the device (docs/ARCHITECTURE.md "Embeddings"): a random-weight bert encoder with
// BGE's WordPiece vocabulary against the plain C++ encoder (1e-4 cosine, inputs of different
// lengths alone and batched, every pooling), and a decoder's embedding rows as the final norm's
// output (the LM head applied to them on the host gives the device's logits). Validation on.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/model/model.hpp"
#include "engine/model/synthetic.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "tests/reference/forward_ref.hpp"
#include "tests/support/device_fixture.hpp"
#include "tests/support/shared_data.hpp"

using namespace vkllm;

namespace {

double cosine(std::span<const float> a, std::span<const float> b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// One step over whole sequences, each from position 0 in blocks of its own, every token an
// embedding row (in order); no sampling.
model::StepInput encoder_step(const model::Model& m, const std::vector<std::vector<std::uint32_t>>& seqs) {
  model::StepInput in;
  in.query_start = {0};
  const std::uint32_t bs = m.options().block_size, mb = m.max_blocks_per_seq();
  std::uint32_t next_block = 1;
  for (const auto& toks : seqs) {
    const std::size_t row = in.block_table.size();
    in.block_table.resize(row + mb, 0);
    for (std::uint32_t b = 0; b * bs < toks.size(); ++b) in.block_table[row + b] = next_block++;
    for (std::uint32_t p = 0; p < toks.size(); ++p) {
      in.embed_rows.push_back(static_cast<std::uint32_t>(in.token_ids.size()));
      in.token_ids.push_back(toks[p]);
      in.positions.push_back(p);
      in.slot_mapping.push_back(in.block_table[row + p / bs] * bs + p % bs);
    }
    in.query_start.push_back(static_cast<std::uint32_t>(in.token_ids.size()));
  }
  return in;
}

model::SyntheticSpec small_bert(std::uint32_t vocab, gguf::TensorType type) {
  model::SyntheticSpec s;
  s.arch = model::Arch::bert;
  s.n_layers = 2;
  s.d_model = 128;
  s.n_heads = 4;
  s.n_kv_heads = 4;
  s.head_dim = 32;
  s.ffn_dim = 256;
  s.vocab_size = vocab;
  s.context_length = 512;
  s.type = type;
  s.seed = 5;
  return s;
}

}  // namespace

TEST_CASE_FIXTURE(test::DeviceTest, "bert: BGE's vocabulary, embeddings within 1e-4 cosine of the CPU encoder, alone and batched") {
  VKLLM_REQUIRE_SHARED(shared);
  const gguf::Reader vocab = gguf::Reader::open(shared / "vocab" / "ggml-vocab-bert-bge.gguf");
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_gguf(vocab);
  const std::vector<std::string> texts = {
      "hello",
      "The quick brown fox jumps over the lazy dog.",
      "Embeddings map text to vectors; similar meanings land close together, and a retrieval "
      "pipeline ranks documents by the cosine between the query's vector and theirs.",
      "GPU", "Vulkan runs on AMD, Intel and NVIDIA cards, and on lavapipe on a plain CPU."};
  std::vector<std::vector<std::uint32_t>> inputs;
  for (const std::string& t : texts) {
    const std::vector<tok::TokenId> ids = tokenizer.encode(t);
    inputs.emplace_back(ids.begin(), ids.end());
  }
  // BERT's special tokens frame every input: [CLS] ... [SEP].
  CHECK(tokenizer.token_to_piece(static_cast<tok::TokenId>(inputs[1].front()), true) == "[CLS]");
  CHECK(tokenizer.token_to_piece(static_cast<tok::TokenId>(inputs[1].back()), true) == "[SEP]");

  for (gguf::TensorType type : {gguf::TensorType::kF16, gguf::TensorType::kQ8_0}) {
    CAPTURE(gguf::type_name(type));
    gguf::Writer w = model::make_synthetic_model(small_bert(static_cast<std::uint32_t>(tokenizer.n_tokens()), type));
    w.erase_prefix("tokenizer.");
    for (const gguf::KeyValue& kv : vocab.metadata()) {
      if (kv.key.starts_with("tokenizer.")) w.set(kv.key, kv.value);
    }
    const gguf::Reader reader = gguf::Reader::from_bytes(w.to_bytes(), "bert.gguf");
    CHECK(tok::Tokenizer::from_gguf(reader).encode(texts[1]) == tokenizer.encode(texts[1]));
    const ref::ReferenceEncoder ref(reader);
    model::ModelOptions o;
    o.max_batch_tokens = 128;
    o.max_seqs = 8;
    o.block_size = 16;
    o.context_length = 128;
    o.num_blocks = 64;
    auto m = model::Model::load(device(), reader, o);
    CHECK(m->config().encoder);
    CHECK(m->config().pooling == model::Pooling::mean);
    const std::uint32_t d = m->config().d_model;

    std::vector<std::vector<float>> hidden_ref;
    for (const auto& toks : inputs) hidden_ref.push_back(ref.forward(toks));
    const auto check_pooled = [&](const std::vector<float>& hidden, std::size_t i) {
      for (model::Pooling p : {model::Pooling::mean, model::Pooling::cls, model::Pooling::last}) {
        CAPTURE(model::to_string(p));
        const std::vector<float> got = ref::pool_normalized(hidden, d, p);
        const std::vector<float> want = ref::pool_normalized(hidden_ref[i], d, p);
        CHECK(cosine(got, want) >= 1 - 1e-4);
      }
    };
    {  // each input alone
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        CAPTURE(i);
        const model::StepOutput out = m->step(encoder_step(*m, {inputs[i]}));
        REQUIRE(out.embeddings.size() == inputs[i].size() * d);
        CHECK(out.ids.empty());
        check_pooled(out.embeddings, i);
      }
    }
    {  // all in one step
      const model::StepOutput out = m->step(encoder_step(*m, inputs));
      std::size_t at = 0;
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        CAPTURE(i);
        const auto n = inputs[i].size() * d;
        check_pooled(std::vector<float>(out.embeddings.begin() + at, out.embeddings.begin() + at + n), i);
        at += n;
      }
    }
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "bert: an encoder's step must hold whole inputs and asks no logits") {
  auto s = small_bert(512, gguf::TensorType::kF32);
  model::ModelOptions o;
  o.max_batch_tokens = 64;
  o.max_seqs = 4;
  o.context_length = 128;
  o.num_blocks = 16;
  auto m = model::Model::load(device(), gguf::Reader::from_bytes(model::make_synthetic_model(s).to_bytes(), "bert"), o);
  model::StepInput in = encoder_step(*m, {{5, 6, 7}});
  model::StepInput chunk = in;
  for (auto& p : chunk.positions) p += 16;  // a later chunk of a longer input
  for (std::size_t t = 0; t < chunk.positions.size(); ++t) {
    chunk.block_table[1] = 2;
    chunk.slot_mapping[t] = 2 * 16 + chunk.positions[t] % 16;
  }
  CHECK_THROWS_AS(m->step(chunk), InvalidRequest);
  model::StepInput sampled = in;
  sampled.sample_rows = {2};
  sampled.sampling = {ops::SamplingRow{}};
  CHECK_THROWS_AS(m->step(sampled), InvalidRequest);
  o.context_length = 1024;  // beyond the 512 learned positions
  CHECK_THROWS_AS(model::Model::load(device(), gguf::Reader::from_bytes(model::make_synthetic_model(s).to_bytes(), "bert"), o),
                  InvalidRequest);
}

TEST_CASE_FIXTURE(test::DeviceTest, "decoder embeddings: the final norm's output, which the LM head turns into the step's logits") {
  model::SyntheticSpec s;
  s.n_layers = 2;
  s.d_model = 128;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 32;
  s.ffn_dim = 256;
  s.vocab_size = 320;
  s.type = gguf::TensorType::kF32;
  const gguf::Reader reader = gguf::Reader::from_bytes(model::make_synthetic_model(s).to_bytes(), "llama");
  model::ModelOptions o;
  o.max_batch_tokens = 64;
  o.max_seqs = 4;
  o.context_length = 128;
  o.num_blocks = 16;
  o.embeddings = true;
  auto m = model::Model::load(device(), reader, o);
  CHECK(m->config().pooling == model::Pooling::last);
  model::StepInput in = encoder_step(*m, {{1, 17, 42, 99, 7}, {1, 250, 3}});
  in.embed_rows = {4, 7, 0};  // each sequence's last token, and the first token
  in.sample_rows = {4, 7};
  in.sampling = {ops::SamplingRow{}, ops::SamplingRow{}};
  in.want_logits = true;
  const model::StepOutput out = m->step(in);
  REQUIRE(out.embeddings.size() == 3 * 128);
  const gguf::TensorInfo& head = reader.tensor("output.weight");
  const std::vector<float> w = gguf::dequantize(head.type, reader.tensor_data(head));
  for (std::size_t r = 0; r < 2; ++r) {
    CAPTURE(r);
    double worst = 0, spread = 0;
    for (std::uint32_t v = 0; v < s.vocab_size; ++v) {
      double logit = 0;
      for (std::uint32_t i = 0; i < 128; ++i) logit += double(w[v * 128 + i]) * out.embeddings[r * 128 + i];
      worst = std::max(worst, std::abs(logit - out.logits[r * s.vocab_size + v]));
      spread = std::max(spread, std::abs(logit));
    }
    CHECK(worst <= 1e-4 * spread);
  }
  model::ModelOptions plain = o;
  plain.embeddings = false;
  auto without = model::Model::load(device(), reader, plain);
  in.want_logits = false;
  CHECK_THROWS_AS(without->step(in), InvalidRequest);
}
