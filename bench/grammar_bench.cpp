// vkllm-bench-grammar: what constrained decoding costs the host per step. For each JSON schema
// of tests/grammar/schemas.json, generations are simulated over a real vocabulary (Qwen2's
// 151k tokens, built as the tokenizer tests build it): a fresh matcher per generation, each step
// the mask of allowed tokens (timed), then a random allowed token (the end token once allowed,
// with some probability). Prints the per-step mask time's percentiles over all steps, and the
// first step's (a cold state) apart.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "engine/gguf/gguf.hpp"
#include "engine/grammar/json_schema.hpp"
#include "engine/grammar/matcher.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "tests/tokenizer/vocab_fixtures.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace vkllm;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vkllm-bench-grammar: constrained decoding's mask time per step"};
  std::string shared = (fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared").string();
  std::string schemas = (fs::path(__FILE__).parent_path().parent_path() / "tests" / "grammar" / "schemas.json").string();
  int walks = 3, max_steps = 300;
  unsigned seed = 1;
  app.add_option("--shared", shared, "The shared data folder (vocab/qwen2)");
  app.add_option("--schemas", schemas, "The schemas (a JSON list of {name, schema})");
  app.add_option("--walks", walks, "Generations per schema");
  app.add_option("--max-steps", max_steps, "Steps per generation at most");
  app.add_option("--seed", seed, "Random seed");
  CLI11_PARSE(app, argc, argv);

  const fs::path vocab = fs::path(shared) / "vocab";
  const auto tokenizer = test::qwen2_tokenizer(vocab);
  const auto n_vocab = static_cast<std::uint32_t>(tokenizer.vocab().size());
  auto t0 = std::chrono::steady_clock::now();
  auto trie = std::make_shared<const grammar::TokenTrie>(grammar::TokenTrie::from_tokenizer(tokenizer, n_vocab));
  const double trie_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("vocabulary: Qwen2, {} tokens; byte trie of {} nodes built in {:.0f} ms (once per engine)\n", n_vocab,
             trie->nodes().size(), trie_ms);

  std::ifstream f(schemas);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const json::array list = json::parse(text).as_array();
  std::mt19937 rng(seed);
  std::vector<double> all, first, compile_ms;
  fmt::print("{:<18} {:>7} {:>9} {:>9} {:>9} {:>10} {:>8}\n", "schema", "steps", "p50 ms", "p99 ms", "max ms",
             "first ms", "states");
  for (const json::value& entry : list) {
    const std::string name(entry.at("name").as_string());
    t0 = std::chrono::steady_clock::now();
    auto g = std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(grammar::json_schema_gbnf(entry.at("schema"))));
    compile_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    std::vector<double> mine;
    std::size_t states = 0;
    for (int w = 0; w < walks; ++w) {
      grammar::Matcher m(g, trie);
      for (int step = 0; step < max_steps; ++step) {
        const auto a = std::chrono::steady_clock::now();
        const auto mask = m.mask();
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
        mine.push_back(ms);
        all.push_back(ms);
        if (step == 0) first.push_back(ms);
        if (m.can_end() && (m.complete() || rng() % 4 == 0)) break;
        std::vector<std::uint32_t> allowed;
        for (std::uint32_t t = 0; t < n_vocab; ++t) {
          if (((mask[t >> 5] >> (t & 31)) & 1u) && !trie->is_end(t)) allowed.push_back(t);
        }
        if (allowed.empty()) break;
        // Favour short tokens a little, as text is mostly made of them.
        std::uint32_t pick = allowed[rng() % allowed.size()];
        const std::uint32_t other = allowed[rng() % allowed.size()];
        if (trie->bytes(other).size() < trie->bytes(pick).size()) pick = other;
        if (!m.accept_token(pick)) {
          fmt::print(stderr, "{}: the mask allowed token {} that the matcher refused\n", name, pick);
          return 1;
        }
      }
      states = std::max(states, m.num_states());
    }
    fmt::print("{:<18} {:>7} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.3f} {:>8}\n", name, mine.size(), percentile(mine, 50),
               percentile(mine, 99), percentile(mine, 100), mine.front(), states);
  }
  fmt::print("\nall {} steps: p50 {:.3f} ms, p99 {:.3f} ms, max {:.3f} ms; first steps p50 {:.3f} ms, max {:.3f} ms; "
             "schema to grammar p50 {:.3f} ms\n",
             all.size(), percentile(all, 50), percentile(all, 99), percentile(all, 100), percentile(first, 50),
             percentile(first, 100), percentile(compile_ms, 50));
  return 0;
}
