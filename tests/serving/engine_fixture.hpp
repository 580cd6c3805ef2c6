// The serving engine tests' shared pieces (test_engine.cpp, test_engine_outputs.cpp): a
// request's event collector, a small random-weight model, greedy parameters, random prompts.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/frontend/text_output.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/model/synthetic.hpp"
#include "engine/serving/engine.hpp"
#include "tests/support/arch_spec.hpp"

namespace vkllm::test {

using serving::Engine;
using serving::FinishReason;


// Collects one request's events; wait() blocks until its final event.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::uint32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<serving::TopLogprob>> top;
  std::vector<float> prompt_logprobs;
  std::vector<std::vector<serving::TopLogprob>> prompt_top;
  std::vector<float> embedding;
  std::uint32_t cached = 0;
  FinishReason finish = FinishReason::none;
  std::string error;
  int final_events = 0;
  int events = 0;

  serving::EventCallback callback() {
    return [this](const serving::TokenEvent& ev) {
      std::lock_guard lock(mu);
      ++events;
      tokens.insert(tokens.end(), ev.tokens.begin(), ev.tokens.end());
      logprobs.insert(logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
      top.insert(top.end(), ev.top_logprobs.begin(), ev.top_logprobs.end());
      prompt_logprobs.insert(prompt_logprobs.end(), ev.prompt_logprobs.begin(), ev.prompt_logprobs.end());
      prompt_top.insert(prompt_top.end(), ev.prompt_top_logprobs.begin(), ev.prompt_top_logprobs.end());
      cached = ev.cached_tokens;
      embedding.insert(embedding.end(), ev.embedding.begin(), ev.embedding.end());
      if (ev.finish != FinishReason::none) {
        finish = ev.finish;
        error = ev.error;
        ++final_events;
      }
      cv.notify_all();
    };
  }
  void wait() {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(300), [&] { return final_events > 0; }));
  }
};

// The request's text as the front end shows it: every token that is text (an ending stop or
// end-of-generation token is not), through the server's TextOutput with `stop`.
inline std::string text_of(const tok::Tokenizer& tokenizer, const Collector& c, std::vector<std::string> stop = {}) {
  frontend::TextOutput out(tokenizer, frontend::TextOutputOptions{std::move(stop), false, false});
  std::string text;
  const std::size_t n = c.tokens.size() - (c.finish == FinishReason::stop ? 1 : 0);
  for (std::size_t i = 0; i < n && !out.stopped(); ++i) text += out.push(c.tokens[i]).content;
  return text + out.finish().content;
}

struct Fixture {
  gguf::Reader reader;
  tok::Tokenizer tokenizer;
  std::unique_ptr<model::Model> model;
};

// deterministic: batch-invariant kernels only (--deterministic); the default mode splits decode
// attention over 256-key ranges once the context can exceed 256.
inline Fixture random_model(platform::Device& device, std::uint32_t num_blocks, std::uint32_t max_seqs,
                     bool deterministic = false, model::Arch arch = model::Arch::llama,
                     gguf::TensorType type = gguf::TensorType::kQ8_0, std::uint32_t swa_blocks = 0,
                     bool experts = false) {
  model::SyntheticSpec s;
  s.arch = arch;
  s.n_layers = 2;
  s.d_model = 128;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 32;
  s.ffn_dim = 256;
  s.vocab_size = 320;
  s.type = type;
  s.seed = 11;
  test::exercise_family(s, 24, experts);
  gguf::Reader reader = gguf::Reader::from_bytes(model::make_synthetic_model(s).to_bytes(), "random");
  tok::Tokenizer tokenizer = tok::Tokenizer::from_gguf(reader);
  model::ModelOptions o;
  o.max_batch_tokens = 64;
  o.max_seqs = max_seqs;
  o.block_size = 16;
  o.context_length = 512;
  o.num_blocks = num_blocks;
  o.swa_blocks = swa_blocks;
  o.deterministic = deterministic;
  o.embeddings = true;
  auto m = model::Model::load(device, reader, o);
  return Fixture{std::move(reader), std::move(tokenizer), std::move(m)};
}

inline serving::RequestParams greedy(std::uint32_t max_tokens) {
  serving::RequestParams p;
  p.sampling.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

inline std::vector<std::vector<std::uint32_t>> prompts(std::size_t n, std::uint32_t vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<std::uint32_t>> out(n);
  for (auto& p : out) {
    p.resize(3 + rng() % 40);
    for (auto& t : p) t = 3 + rng() % (vocab - 3);
  }
  return out;
}

// Runs every prompt through `engine` at once and returns the generated tokens per prompt.
inline std::vector<std::vector<std::uint32_t>> run_together(Engine& engine,
                                                     const std::vector<std::vector<std::uint32_t>>& ps,
                                                     std::uint32_t max_tokens) {
  std::vector<std::unique_ptr<Collector>> cs;
  for (const auto& p : ps) {
    cs.push_back(std::make_unique<Collector>());
    engine.submit(p, greedy(max_tokens + static_cast<std::uint32_t>(p.size() % 7)), cs.back()->callback());
  }
  std::vector<std::vector<std::uint32_t>> out;
  for (auto& c : cs) {
    c->wait();
    CHECK(c->final_events == 1);
    CHECK(c->finish == FinishReason::length);
    out.push_back(c->tokens);
  }
  return out;
}

}  // namespace vkllm::test
