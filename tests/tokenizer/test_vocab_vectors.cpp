// Tokenizer against llama.cpp's test-tokenizer-0 vectors (ids from each model's Hugging Face
// tokenizer): every ../shared/vocab GGUF with .inp/.out, plus Llama 3, Qwen2 and Llama 4
// vocabularies rebuilt as GGUF at test time from their original tokenizer files.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "tests/support/shared_data.hpp"
#include "tests/tokenizer/vocab_fixtures.hpp"

namespace fs = std::filesystem;
using vkllm::tok::EncodeOptions;
using vkllm::tok::Tokenizer;
using vkllm::tok::VocabKind;

namespace {

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// Runs every vector; returns the number that pass. Mismatches are reported (first few).
// llama.cpp's vectors use add_special = false, parse_special = false.
size_t run_vectors(const Tokenizer& tok, const fs::path& inp, const fs::path& out,
                   const std::string& label) {
  const auto vectors = vkllm::test::read_token_vectors(inp, out);
  REQUIRE(!vectors.empty());
  size_t passed = 0, shown = 0, round_trips = 0;
  const EncodeOptions opts{.add_special = false, .parse_special = false};
  for (const auto& v : vectors) {
    const std::vector<int32_t> got = tok.encode(v.text, opts);
    if (got == v.ids) {
      ++passed;
    } else if (shown++ < 3) {
      MESSAGE(label << ": input \"" << v.text << "\"\n  expected" << ids_str(v.ids)
                    << "\n  got     " << ids_str(got));
    }
    // Byte-level BPE and SentencePiece are lossless: the expected ids decode to the input.
    if (tok.kind() != VocabKind::kWpm) {
      const std::string back = tok.decode(v.ids);
      if (back == v.text) {
        ++round_trips;
      } else if (shown++ < 3) {
        MESSAGE(label << ": decode of \"" << v.text << "\" gave \"" << back << "\"");
      }
    }
  }
  MESSAGE(label << ": " << passed << "/" << vectors.size() << " vectors pass"
                << (tok.kind() != VocabKind::kWpm
                        ? ", " + std::to_string(round_trips) + " decode back exactly"
                        : std::string()));
  CHECK(passed == vectors.size());
  if (tok.kind() != VocabKind::kWpm) CHECK(round_trips == vectors.size());
  return passed;
}

}  // namespace

TEST_CASE("every shared vocab GGUF with vectors reproduces them exactly") {
  VKLLM_REQUIRE_SHARED(shared);
  const fs::path dir = shared / "vocab";
  std::vector<fs::path> ggufs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
  }
  std::sort(ggufs.begin(), ggufs.end());
  size_t files = 0, files_passed = 0;
  for (const fs::path& g : ggufs) {
    const fs::path inp = g.string() + ".inp", out = g.string() + ".out";
    if (!fs::exists(inp) || !fs::exists(out)) continue;
    ++files;
    CAPTURE(g.filename().string());
    const Tokenizer tok = Tokenizer::from_gguf(vkllm::gguf::Reader::open(g));
    const size_t n = vkllm::test::read_token_vectors(inp, out).size();
    if (run_vectors(tok, inp, out, g.filename().string()) == n) ++files_passed;
  }
  MESSAGE(files_passed << "/" << files << " vocab files pass all their vectors");
  CHECK(files >= 10);  // 10 in ../shared/vocab today (see SOURCES.md)
}

// Llama 3 (pre "llama-bpe"): meta-llama's tiktoken ranks file -> GGUF with merges derived from
// the ranks (see tiktoken_to_gguf) -> Reader -> Tokenizer, then the llama-bpe vectors.
TEST_CASE("llama-bpe (Llama 3) vectors from a GGUF built from tokenizer.model") {
  VKLLM_REQUIRE_SHARED(shared);
  const fs::path dir = shared / "vocab";
  auto bytes = vkllm::test::tiktoken_to_gguf(dir / "llama3" / "tokenizer.model", "llama-bpe",
                                             vkllm::test::llama3_specials(), 128000, 128009);
  const Tokenizer tok = Tokenizer::from_gguf(
      vkllm::gguf::Reader::from_bytes(std::move(bytes), "llama3-fixture.gguf"));
  CHECK(tok.n_tokens() == 128256);
  run_vectors(tok, dir / "vectors-only" / "ggml-vocab-llama-bpe.gguf.inp",
              dir / "vectors-only" / "ggml-vocab-llama-bpe.gguf.out", "llama-bpe");
  // The repository's own example (tokenizer.py's test): BOS, text, then EOS by hand.
  std::vector<int32_t> ids = tok.encode("This is a test sentence.");
  ids.push_back(128001);
  CHECK(ids == std::vector<int32_t>{128000, 2028, 374, 264, 1296, 11914, 13, 128001});
  // Control tokens: parsed only on request, and shown only on request.
  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  const auto parsed = tok.encode(chat, {.add_special = false, .parse_special = true});
  CHECK(parsed.front() == 128006);
  CHECK(parsed.back() == 128009);
  CHECK(tok.decode(parsed, {.show_special = true}) == chat);
  CHECK(tok.decode(parsed) == "user\n\nHi");
  const auto literal = tok.encode(chat, {.add_special = false, .parse_special = false});
  CHECK(std::find(literal.begin(), literal.end(), 128006) == literal.end());
  CHECK(tok.decode(literal) == chat);
}

// Qwen2 (pre "qwen2"): Hugging Face vocab.json + merges.txt -> GGUF -> Tokenizer.
TEST_CASE("qwen2 vectors from a GGUF built from vocab.json + merges.txt") {
  VKLLM_REQUIRE_SHARED(shared);
  const fs::path dir = shared / "vocab";
  for (const char* pre : {"qwen2", "deepseek-r1-qwen"}) {
    CAPTURE(pre);
    const Tokenizer tok = vkllm::test::qwen2_tokenizer(dir, pre);
    CHECK(tok.n_tokens() == 151646);
    const std::string name = std::string("ggml-vocab-") + pre + ".gguf";
    run_vectors(tok, dir / "vectors-only" / (name + ".inp"), dir / "vectors-only" / (name + ".out"),
                pre);
    const auto ids = tok.encode("<|im_start|>user\nhi<|im_end|>", {.parse_special = true});
    CHECK(ids.front() == 151644);
    CHECK(ids.back() == 151645);
    CHECK(tok.is_eog(151645));
  }
}

// Llama 4 (pre "llama4", o200k-style split): tiktoken ranks -> GGUF -> Tokenizer.
TEST_CASE("llama4 vectors from a GGUF built from tokenizer.model") {
  VKLLM_REQUIRE_SHARED(shared);
  const fs::path dir = shared / "vocab";
  auto bytes = vkllm::test::tiktoken_to_gguf(dir / "llama4" / "tokenizer.model", "llama4",
                                             {{200000, "<|begin_of_text|>"},
                                              {200001, "<|end_of_text|>"}},
                                             200000, 200001);
  const Tokenizer tok = Tokenizer::from_gguf(
      vkllm::gguf::Reader::from_bytes(std::move(bytes), "llama4-fixture.gguf"));
  run_vectors(tok, dir / "vectors-only" / "ggml-vocab-llama4.gguf.inp",
              dir / "vectors-only" / "ggml-vocab-llama4.gguf.out", "llama4");
}
