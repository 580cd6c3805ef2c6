// Shared by the model's device tests (test_model.cpp: forward passes against the reference;
// test_model_step.cpp: how steps are batched, recorded and replayed): random-weight models of llama
// shapes and the steps fed to them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/model/synthetic.hpp"
#include "tests/support/arch_spec.hpp"

namespace vkllm::test {

using model::Arch;

inline constexpr double kForwardNmse = 5e-4;

inline model::SyntheticSpec spec_for(Arch arch, gguf::TensorType type, std::uint32_t seed,
                                     bool experts = false) {
  model::SyntheticSpec s;
  s.arch = arch;
  s.n_layers = 2;
  s.d_model = 256;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 64;
  s.ffn_dim = 512;
  s.vocab_size = 384;
  s.type = type;
  s.seed = seed;
  s.tied_output = arch == Arch::qwen2;
  s.llama3_rope = arch == Arch::llama;
  exercise_family(s, 16, experts);
  return s;
}

inline std::vector<std::uint32_t> random_tokens(std::mt19937& rng, std::size_t n, std::uint32_t vocab) {
  std::uniform_int_distribution<std::uint32_t> d(0, vocab - 1);
  std::vector<std::uint32_t> v(n);
  for (auto& t : v) t = d(rng);
  return v;
}

// The GGUF of a random-weight model of `spec`, in memory.
inline gguf::Reader synthetic_reader(const model::SyntheticSpec& spec) {
  return gguf::Reader::from_bytes(model::make_synthetic_model(spec).to_bytes(), "synthetic.gguf");
}

// A random-weight model of `spec` on the device (the model keeps nothing of the reader).
inline std::unique_ptr<model::Model> load_synthetic(platform::Device& device,
                                             const model::SyntheticSpec& spec,
                                             const model::ModelOptions& opt) {
  return model::Model::load(device, synthetic_reader(spec), opt);
}

inline model::SamplingParams greedy() {
  model::SamplingParams p;
  p.temperature = 0.f;
  return p;
}

// Appends one sequence to a step: its block-table row (blocks[i] holds positions i * bs ..),
// its tokens at positions pos0.., and a greedy sample of its last token.
inline void add_sequence(model::StepInput& in, std::uint32_t mb, std::uint32_t bs,
                  std::span<const std::uint32_t> blocks, std::span<const std::uint32_t> toks,
                  std::uint32_t pos0) {
  const std::size_t row = in.block_table.size();
  in.block_table.resize(row + mb, 0);
  std::copy(blocks.begin(), blocks.end(), in.block_table.begin() + static_cast<std::ptrdiff_t>(row));
  for (std::size_t i = 0; i < toks.size(); ++i) {
    const std::uint32_t pos = pos0 + static_cast<std::uint32_t>(i);
    in.token_ids.push_back(toks[i]);
    in.positions.push_back(pos);
    in.slot_mapping.push_back(blocks[pos / bs] * bs + pos % bs);
  }
  in.query_start.push_back(static_cast<std::uint32_t>(in.token_ids.size()));
  in.sample_rows.push_back(static_cast<std::uint32_t>(in.token_ids.size() - 1));
  in.sampling.push_back(ops::sampling_row(greedy(), 0, 0, 0));
}

}  // namespace vkllm::test
