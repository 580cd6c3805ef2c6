// What a request asks of its output, through the engine on the device (validation on): several
// choices of one prompt, a grammar's constraint, stop strings and limits, top logprobs per token,
// the prompt's logprobs.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "engine/grammar/json_schema.hpp"
#include "engine/grammar/matcher.hpp"
#include "tests/serving/engine_fixture.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using namespace vkllm::test;
using serving::Engine;
using serving::FinishReason;

TEST_CASE_FIXTURE(test::DeviceTest, "several choices: the prompt computed once, each choice the tokens its seed draws alone") {
  Fixture f = random_model(device(), 0, 8, true);
  serving::EngineConfig cfg;
  cfg.prefix_caching = false;  // the sharing is the choices' own, not the cache's
  std::mt19937 rng(9);
  std::vector<std::uint32_t> prompt(70);  // 4 full blocks short of the last token: 64 shared
  for (auto& t : prompt) t = 3 + rng() % 300;
  auto params = [](std::uint64_t seed) {
    serving::RequestParams p;
    p.sampling.temperature = 1.0f;
    p.sampling.top_k = 0;
    p.sampling.top_p = 1.0f;
    p.sampling.min_p = 0.0f;
    p.sampling.seed = seed;
    p.max_tokens = 12;
    p.ignore_eos = true;
    return p;
  };
  std::vector<std::vector<std::uint32_t>> solo;
  for (std::uint64_t seed = 100; seed < 104; ++seed) {
    Engine engine(*f.model, f.tokenizer, cfg);
    Collector c;
    engine.submit(prompt, params(seed), c.callback());
    c.wait();
    solo.push_back(c.tokens);
  }
  CHECK(solo[0] != solo[1]);  // distinct seeds, distinct draws
  Engine engine(*f.model, f.tokenizer, cfg);
  std::vector<std::unique_ptr<Collector>> cs;
  serving::RequestId first = 0;
  for (std::uint64_t i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    serving::RequestParams p = params(100 + i);
    p.shares_prompt_of = first;
    const serving::RequestId id = engine.submit(prompt, p, cs.back()->callback());
    if (i == 0) first = id;
  }
  for (std::size_t i = 0; i < 4; ++i) {
    cs[i]->wait();
    CHECK(cs[i]->finish == FinishReason::length);
    CHECK(cs[i]->tokens == solo[i]);
    if (i > 0) CHECK(cs[i]->cached == 64);
  }
  const auto st = engine.stats();
  CHECK(st.prompt_tokens == 70 + 3 * 6);
  CHECK(st.shared_prompt_tokens == 3 * 64);
  CHECK(st.prefix_hits == 3 * 64);
  CHECK(st.kv_blocks_free == st.kv_blocks_total);
}

TEST_CASE_FIXTURE(test::DeviceTest, "constrained decoding: outputs of a JSON schema, others in the batch unchanged") {
  Fixture f = random_model(device(), 0, 8, true);
  serving::EngineConfig cfg;
  const auto schema = boost::json::parse(R"({"type": "object", "properties": {"a": {"type": "boolean"},
      "b": {"enum": [1, "two", null]}, "c": {"type": "string", "maxLength": 3}}, "required": ["a", "b"]})");
  auto g = std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(grammar::json_schema_gbnf(schema)));
  const auto ps = prompts(6, 320, 21);
  std::vector<std::vector<std::uint32_t>> solo;
  {
    Engine engine(*f.model, f.tokenizer, cfg);
    solo = run_together(engine, {ps[4], ps[5]}, 20);
  }
  Engine engine(*f.model, f.tokenizer, cfg);
  std::vector<std::unique_ptr<Collector>> cs;
  for (std::size_t i = 0; i < 6; ++i) {
    cs.push_back(std::make_unique<Collector>());
    serving::RequestParams p = greedy(i < 4 ? 200 : 20 + static_cast<std::uint32_t>(ps[i].size() % 7));
    if (i < 4) {
      p.grammar = g;
      p.ignore_eos = false;
      p.sampling.temperature = i % 2 == 0 ? 1.0f : 0.0f;
      p.sampling.top_k = 0;
      p.sampling.seed = 40 + i;
    }
    engine.submit(ps[i], p, cs.back()->callback());
  }
  for (std::size_t i = 0; i < 6; ++i) {
    cs[i]->wait();
    CAPTURE(i);
    if (i >= 4) {
      CHECK(cs[i]->tokens == solo[i - 4]);
      continue;
    }
    const std::string text = text_of(f.tokenizer, *cs[i]);
    CAPTURE(text);
    CHECK(cs[i]->finish == FinishReason::stop);  // the grammar closed, then the end token
    boost::json::error_code ec;
    const boost::json::value v = boost::json::parse(text, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(v.is_object());
    CHECK(v.as_object().at("a").is_bool());
    const auto& b = v.as_object().at("b");
    CHECK((b == boost::json::value(1) || b == boost::json::value("two") || b.is_null()));
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "constrained decoding a step ahead: late masks, the tokens of one step at a time") {
  // Deterministic mode. With the overlapped loop, a constrained request's step t + 1 goes before
  // step t is read, its mask released once the host has step t's token (Model::release_masks):
  // the same tokens as one step at a time, greedy and seeded, beside an unconstrained request.
  Fixture f = random_model(device(), 0, 8, true);
  const auto schema = boost::json::parse(R"({"type": "array", "items": {"type": "string", "maxLength": 6},
      "minItems": 2, "maxItems": 5})");
  auto g = std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(grammar::json_schema_gbnf(schema)));
  const auto ps = prompts(4, 320, 23);
  auto run = [&](bool overlap, bool late_masks = true) {
    serving::EngineConfig cfg;
    cfg.overlap = overlap;
    cfg.late_masks = late_masks;  // on lavapipe too, where they are off by default
    Engine engine(*f.model, f.tokenizer, cfg);
    std::vector<std::unique_ptr<Collector>> cs;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      cs.push_back(std::make_unique<Collector>());
      serving::RequestParams p = greedy(i < 3 ? 120 : 4);
      if (i < 3) {
        p.grammar = g;
        p.ignore_eos = false;
        p.sampling.temperature = i == 0 ? 0.0f : 1.0f;
        p.sampling.top_k = 0;
        p.sampling.seed = 70 + i;
      }
      engine.submit(ps[i], p, cs.back()->callback());
    }
    std::vector<std::vector<std::uint32_t>> tokens;
    for (std::size_t i = 0; i < cs.size(); ++i) {
      cs[i]->wait();
      CAPTURE(i);
      if (i < 3) {
        CHECK(cs[i]->finish == FinishReason::stop);
        boost::json::error_code ec;
        const boost::json::value v = boost::json::parse(text_of(f.tokenizer, *cs[i]), ec);
        CHECK_FALSE(ec);
        CHECK(v.is_array());
      }
      tokens.push_back(cs[i]->tokens);
    }
    return std::pair(tokens, engine.stats());
  };
  const auto [one, one_stats] = run(false);
  const auto [ahead, ahead_stats] = run(true);
  const auto [waiting, waiting_stats] = run(true, false);
  CHECK(ahead == one);
  CHECK(waiting == one);
  // Without late masks only the unconstrained request's steps could go ahead: it ends first.
  CHECK(waiting_stats.overlapped_steps < 10);
  CHECK(one_stats.overlapped_steps == 0);
  // Every step but the first few (prompts, the step after them) goes ahead.
  CHECK(ahead_stats.overlapped_steps + 3 >= ahead_stats.steps);
  CHECK(ahead_stats.overlapped_steps > 10);
  CHECK(ahead_stats.kv_blocks_free == ahead_stats.kv_blocks_total);
}

TEST_CASE_FIXTURE(test::DeviceTest, "lazy grammar: free until its trigger, the grammar's from there, a step ahead or not") {
  // tool_choice auto's mechanism: a grammar with triggers holds from where a trigger appears in
  // the output. The trigger is two tokens the free run draws, so the lazy run draws the same
  // tokens up to it and a JSON array after it; a trigger that never appears changes nothing.
  Fixture f = random_model(device(), 0, 8, true);
  const auto trie = grammar::TokenTrie::from_tokenizer(f.tokenizer, f.model->config().vocab_size);
  const auto ps = prompts(2, 320, 29);
  auto seeded = [](std::uint32_t max_tokens) {
    serving::RequestParams p = greedy(max_tokens);
    p.sampling.temperature = 1.0f;
    p.sampling.top_k = 0;
    p.sampling.seed = 77;
    p.ignore_eos = false;
    return p;
  };
  std::vector<std::uint32_t> free;
  {
    Engine engine(*f.model, f.tokenizer, {});
    Collector c;
    engine.submit(ps[0], seeded(10), c.callback());
    c.wait();
    free = c.tokens;
  }
  REQUIRE(free.size() == 10);
  // The first two adjacent tokens of plain ASCII whose text first appears ending with them.
  std::string trigger;
  std::size_t upto = 0;  // tokens of the free run up to the trigger's end
  for (std::size_t i = 2; i + 1 < free.size() && trigger.empty(); ++i) {
    const std::string t = std::string(trie.bytes(free[i])) + std::string(trie.bytes(free[i + 1]));
    std::string text;
    for (std::size_t k = 0; k <= i + 1; ++k) text += trie.bytes(free[k]);
    const bool plain = t.size() >= 2 && std::all_of(t.begin(), t.end(), [](char c) {
      return c > ' ' && c < 127 && c != '"' && c != '\\';
    });
    if (plain && text.find(t) == text.size() - t.size()) trigger = t, upto = i + 2;
  }
  REQUIRE_MESSAGE(!trigger.empty(), "no plain trigger in the free run");
  MESSAGE("trigger '", trigger, "' ends at token ", upto);
  std::string arr = grammar::json_schema_gbnf(boost::json::parse(
      R"({"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 1, "maxItems": 3})"));
  arr.replace(arr.find("root ::="), 8, "arr ::=");
  auto g = std::make_shared<const grammar::Grammar>(grammar::Grammar::parse("root ::= \"" + trigger + "\" arr\n" + arr));
  auto run = [&](bool overlap) {
    serving::EngineConfig cfg;
    cfg.overlap = overlap;
    cfg.late_masks = true;  // on lavapipe too, where they are off by default
    Engine engine(*f.model, f.tokenizer, cfg);
    Collector lazy, never;
    serving::RequestParams p = seeded(120);
    p.grammar = g;
    p.grammar_triggers = {{trigger, false, false}};
    engine.submit(ps[0], p, lazy.callback());
    p = seeded(10);
    p.grammar = g;
    p.grammar_triggers = {{"\x01never", false, false}};
    engine.submit(ps[0], p, never.callback());
    lazy.wait();
    never.wait();
    CHECK(never.tokens == free);
    CHECK(lazy.finish == FinishReason::stop);  // the grammar closed, then the end token
    REQUIRE(lazy.tokens.size() > upto);
    CHECK(std::equal(free.begin(), free.begin() + static_cast<std::ptrdiff_t>(upto), lazy.tokens.begin()));
    std::string text;
    for (std::size_t k = 0; k + 1 < lazy.tokens.size(); ++k) text += trie.bytes(lazy.tokens[k]);
    const std::size_t at = text.find(trigger);
    REQUIRE(at != std::string::npos);
    boost::json::error_code ec;
    const boost::json::value v = boost::json::parse(text.substr(at + trigger.size()), ec);
    CAPTURE(text);
    if (overlap) MESSAGE("lazy output: '", text, "'");
    CHECK_FALSE(ec);
    CHECK(v.is_array());
    const auto st = engine.stats();
    CHECK(st.kv_blocks_free == st.kv_blocks_total);
    return std::pair(lazy.tokens, st.overlapped_steps);
  };
  const auto [one, one_overlapped] = run(false);
  const auto [ahead, ahead_overlapped] = run(true);
  CHECK(ahead == one);
  CHECK(one_overlapped == 0);
  CHECK(ahead_overlapped > 5);
}

TEST_CASE_FIXTURE(test::DeviceTest, "stop strings, stop ids, max tokens and bad requests") {
  Fixture f = random_model(device(), 0, 4);
  Engine engine(*f.model, f.tokenizer, {});
  const std::vector<std::uint32_t> p = {1, 50, 60, 70};
  Collector base;
  engine.submit(p, greedy(30), base.callback());
  base.wait();
  REQUIRE(base.tokens.size() == 30);
  const std::string base_text = text_of(f.tokenizer, base);
  REQUIRE(base_text.size() > 4);
  CHECK(base.finish == FinishReason::length);

  // A stop string from the middle of that text (matched by the front end's TextOutput over the
  // engine's tokens): the output ends right before it.
  const std::string stop = base_text.substr(base_text.size() / 2, 3);
  CHECK(text_of(f.tokenizer, base, {stop}) == base_text.substr(0, base_text.find(stop)));

  // A stop token id.
  auto params = greedy(30);
  params.stop_token_ids = {base.tokens[5]};
  Collector t;
  engine.submit(p, params, t.callback());
  t.wait();
  CHECK(t.finish == FinishReason::stop);
  CHECK(t.tokens.size() <= 6);

  CHECK_THROWS_AS(engine.submit({}, greedy(4), [](const serving::TokenEvent&) {}), InvalidRequest);
  CHECK_THROWS_AS(engine.submit(std::vector<std::uint32_t>(600, 5), greedy(4), [](const serving::TokenEvent&) {}),
                  InvalidRequest);
  CHECK_THROWS_AS(engine.submit({100000}, greedy(4), [](const serving::TokenEvent&) {}), InvalidRequest);
}

TEST_CASE_FIXTURE(test::DeviceTest, "top logprobs: per token for the requests that ask, the draw unchanged") {
  Fixture f = random_model(device(), 0, 4);
  Engine engine(*f.model, f.tokenizer, {});
  const std::vector<std::uint32_t> p = {1, 50, 60, 70};
  Collector plain, greedy_top, sampled_top;
  engine.submit(p, greedy(12), plain.callback());
  auto params = greedy(12);
  params.logprobs = true;
  params.top_logprobs = 5;
  engine.submit(p, params, greedy_top.callback());
  params.sampling.temperature = 1.f;
  params.sampling.seed = 7;
  params.top_logprobs = 20;
  engine.submit(p, params, sampled_top.callback());
  for (Collector* c : {&plain, &greedy_top, &sampled_top}) c->wait();

  CHECK(plain.top.empty());
  CHECK(greedy_top.tokens == plain.tokens);  // asking for logprobs changes no token
  for (Collector* c : {&greedy_top, &sampled_top}) {
    REQUIRE(c->top.size() == c->tokens.size());
    REQUIRE(c->logprobs.size() == c->tokens.size());
    for (std::size_t i = 0; i < c->top.size(); ++i) {
      CAPTURE(i);
      const auto& list = c->top[i];
      REQUIRE(list.size() == (c == &greedy_top ? 5u : 20u));
      for (std::size_t j = 1; j < list.size(); ++j) CHECK(list[j - 1].logprob >= list[j].logprob);
      CHECK(list.front().logprob <= 0.f);
      // The chosen token is in the list exactly when its logprob reaches the list's last.
      const auto chosen = std::find_if(list.begin(), list.end(),
                                       [&](const auto& e) { return e.token == c->tokens[i]; });
      if (chosen != list.end()) CHECK(chosen->logprob == c->logprobs[i]);
      if (c == &greedy_top) CHECK(chosen == list.begin());
    }
  }
  params.top_logprobs = 21;
  CHECK_THROWS_AS(engine.submit(p, params, [](const serving::TokenEvent&) {}), InvalidRequest);
}

TEST_CASE_FIXTURE(test::DeviceTest, "prompt logprobs: a prompt scores as the same tokens scored when generated") {
  // Greedy generation gives tokens g with logprobs; the prompt p + g, scored in its own prefill
  // steps (chunks of 8 tokens among other requests), gives the same logprobs for g, and top
  // lists led by g (greedy). The prefix cache is bypassed for it.
  Fixture f = random_model(device(), 0, 4);
  serving::EngineConfig ec;
  ec.max_num_batched_tokens = 8;
  Engine engine(*f.model, f.tokenizer, ec);
  const std::vector<std::uint32_t> p = {1, 50, 60, 70, 80, 90, 100, 110, 120};
  auto params = greedy(20);
  params.logprobs = true;
  Collector gen;
  engine.submit(p, params, gen.callback());
  gen.wait();
  std::vector<std::uint32_t> prompt = p;
  prompt.insert(prompt.end(), gen.tokens.begin(), gen.tokens.end() - 1);
  params = greedy(1);
  params.logprobs = true;
  params.top_logprobs = 3;
  params.prompt_logprobs = true;
  for (int round = 0; round < 2; ++round) {
    Collector other, scored;
    engine.submit({1, 7, 8, 9}, greedy(6), other.callback());
    engine.submit(prompt, params, scored.callback());
    scored.wait();
    other.wait();
    REQUIRE(scored.prompt_logprobs.size() == prompt.size() - 1);
    REQUIRE(scored.prompt_top.size() == prompt.size() - 1);
    CHECK(scored.cached == 0);  // round 2: the same prompt again, still computed
    for (std::size_t i = 0; i + 1 < gen.tokens.size(); ++i) {
      CAPTURE(i);
      const std::size_t at = p.size() - 1 + i;  // prompt token p.size() + i
      CHECK(scored.prompt_logprobs[at] == doctest::Approx(gen.logprobs[i]).epsilon(1e-3));
      REQUIRE(scored.prompt_top[at].size() == 3);
      CHECK(scored.prompt_top[at][0].token == gen.tokens[i]);
    }
    for (float lp : scored.prompt_logprobs) CHECK(lp <= 0.f);
  }
}

TEST_CASE_FIXTURE(test::DeviceTest, "embeddings: 64 inputs beside running generations change no token, each as it is alone") {
  // Deterministic mode: a token's sums follow one order alone or batched, so neither the
  // generations nor the embeddings may differ by a bit for what runs beside them.
  auto fx = random_model(device(), 160, 16, /*deterministic=*/true);
  const auto gen_prompts = prompts(6, 320, 41);
  auto embed_inputs = prompts(64, 320, 43);
  embed_inputs[5].assign(150, 9);  // longer than a step (64 tokens): pooled over chunks
  for (std::size_t i = 0; i < 150; ++i) embed_inputs[5][i] = 3 + static_cast<std::uint32_t>(i * 7 % 300);
  const model::Pooling poolings[] = {model::Pooling::mean, model::Pooling::cls, model::Pooling::last};
  auto embed_params = [&](std::size_t i) {
    serving::RequestParams p;
    p.embed = poolings[i % 3];
    p.dimensions = i % 4 == 3 ? 64 : 0;
    return p;
  };
  std::vector<std::vector<std::uint32_t>> alone_tokens;
  std::vector<std::vector<float>> alone_embeddings;
  {
    Engine engine(*fx.model, fx.tokenizer, {});
    alone_tokens = run_together(engine, gen_prompts, 24);
    for (std::size_t i = 0; i < embed_inputs.size(); ++i) {
      Collector c;
      engine.submit(embed_inputs[i], embed_params(i), c.callback());
      c.wait();
      REQUIRE(c.finish == FinishReason::stop);
      alone_embeddings.push_back(c.embedding);
    }
  }
  Engine engine(*fx.model, fx.tokenizer, {});
  std::vector<std::unique_ptr<Collector>> gens, embeds;
  for (std::size_t i = 0; i < embed_inputs.size(); ++i) {
    if (i % 10 == 0 && i / 10 < gen_prompts.size()) {
      const auto& p = gen_prompts[i / 10];
      gens.push_back(std::make_unique<Collector>());
      engine.submit(p, greedy(24 + static_cast<std::uint32_t>(p.size() % 7)), gens.back()->callback());
    }
    embeds.push_back(std::make_unique<Collector>());
    engine.submit(embed_inputs[i], embed_params(i), embeds.back()->callback());
  }
  for (std::size_t i = 0; i < gens.size(); ++i) {
    gens[i]->wait();
    CHECK(gens[i]->tokens == alone_tokens[i]);
  }
  for (std::size_t i = 0; i < embeds.size(); ++i) {
    CAPTURE(i);
    embeds[i]->wait();
    REQUIRE(embeds[i]->finish == FinishReason::stop);
    CHECK(embeds[i]->final_events == 1);
    CHECK(embeds[i]->tokens.empty());
    const std::vector<float>& e = embeds[i]->embedding;
    REQUIRE(e.size() == (i % 4 == 3 ? 64u : 128u));
    double norm = 0;
    for (float v : e) norm += double(v) * v;
    CHECK(std::abs(norm - 1.0) < 1e-5);
    CHECK(e == alone_embeddings[i]);
  }
  // More dimensions than the model has are refused.
  serving::RequestParams too_wide;
  too_wide.embed = model::Pooling::mean;
  too_wide.dimensions = 129;
  Collector c;
  CHECK_THROWS_AS(engine.submit({5, 6}, too_wide, c.callback()), InvalidRequest);
}
