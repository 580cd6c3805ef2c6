// vkllm-bench-tokenizer: owns the tokenizer throughput benchmark (encode speed, decode round trip).
// Knows nothing of models, devices or the tokenizer's internals: only its public API.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "tests/tokenizer/vocab_fixtures.hpp"

namespace fs = std::filesystem;
using vkllm::tok::Tokenizer;

namespace {

const std::vector<std::string> kProse = {
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "In 1887, the expedition reached the northern coast after forty-two days at sea.",
    "Researchers found that sleep quality improved by 23% when participants avoided screens.",
    "She didn't expect the letter to arrive so soon, nor that it'd be written in pencil.",
    "Markets opened lower on Tuesday as investors weighed new inflation data from Europe.",
    "A good tokenizer should handle punctuation, numbers like 3.14159, and URLs such as "
    "https://example.com/path?q=1 gracefully.",
    "When the rain finally stopped, children ran outside to splash in the puddles.",
    "\"Are you sure?\" he asked. \"Absolutely,\" she replied, closing the notebook.",
    "The committee's report, published in March, recommends three changes to the policy.",
    "Light travels at roughly 299,792 kilometres per second in a vacuum.",
    "Despite the cold, the market square was crowded with vendors selling roasted chestnuts.",
    "He wrote the final chapter in a single night, fuelled by coffee and stubbornness.",
};

const std::vector<std::string> kCode = {
    "for (size_t i = 0; i < items.size(); ++i) { total += items[i].weight * scale; }",
    "template <class T> constexpr T clamp(T v, T lo, T hi) { return v < lo ? lo : (v > hi ? hi "
    ": v); }",
    "std::vector<std::string> parts = split(line, ',');\nif (parts.empty()) return std::nullopt;",
    "auto it = cache.find(key);\n    if (it != cache.end()) {\n        return it->second;\n    }",
    "def fibonacci(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a "
    "+ b\n    return a",
    "class Matrix:\n    def __init__(self, rows, cols):\n        self.data = [[0.0] * cols for _ in "
    "range(rows)]",
    "import numpy as np\nx = np.linspace(0, 2 * np.pi, 100)\ny = np.sin(x) ** 2",
    "with open(\"data.json\", \"r\", encoding=\"utf-8\") as f:\n    config = json.load(f)",
    "#include <iostream>\nint main() { std::cout << \"hello, world\\n\"; return 0; }",
    "if __name__ == \"__main__\":\n    main(sys.argv[1:])",
    "struct Point { float x, y; };\nPoint operator+(Point a, Point b) { return {a.x + b.x, a.y + "
    "b.y}; }",
    "result = {k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:10]}",
};

const std::vector<std::string> kCjk = {
    "今天天气很好，我们一起去公园散步吧。",
    "机器学习是人工智能的一个重要分支，它使计算机能够从数据中学习。",
    "北京是中国的首都，有着三千多年的历史。🏯",
    "这本书我已经读了三遍，每次都有新的收获。📚",
    "東京は日本の首都であり、世界有数の大都市です。🗼",
    "昨日は友達と一緒にラーメンを食べに行きました。🍜",
    "プログラミングを学ぶことは、論理的思考を鍛えるのに役立ちます。",
    "桜の花が咲く季節になると、多くの人が花見を楽しみます。🌸",
    "我们需要在下周五之前完成这个项目的所有测试。✅",
    "ありがとうございます！とても助かりました😊",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "新しいカメラで撮った写真をみんなに見せたい📷🎉",
};

// Appends shuffled sentences from `pool` to `out` until `bytes` were added.
void fill(std::string& out, const std::vector<std::string>& pool, const char* sep, size_t bytes,
          std::mt19937& rng) {
  const size_t start = out.size();
  std::vector<size_t> order(pool.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  while (out.size() - start < bytes) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      out += pool[i];
      out += sep;
      if (out.size() - start >= bytes) break;
    }
  }
}

// Mixed text of about `total` bytes: prose, code and CJK + emoji in roughly equal thirds,
// interleaved in blocks of ~4 KiB so that no one kind sits at one end.
std::string make_text(size_t total) {
  std::mt19937 rng(20240611u);
  std::string out;
  out.reserve(total + 4096);
  constexpr size_t kBlock = 4096;
  while (out.size() < total) {
    fill(out, kProse, " ", kBlock / 3, rng);
    out += "\n\n";
    fill(out, kCode, "\n", kBlock / 3, rng);
    out += "\n\n";
    fill(out, kCjk, "", kBlock / 3, rng);
    out += "\n\n";
  }
  return out;
}

struct Row {
  std::string name;
  double mib = 0;
  size_t tokens = 0;
  double median_s = 0;
  bool ok = false;
  std::string note;
};

Row bench(const std::string& name, const Tokenizer& tok, const std::string& text, int reps) {
  Row r;
  r.name = name;
  r.mib = double(text.size()) / (1024.0 * 1024.0);
  const vkllm::tok::EncodeOptions eo{.add_special = false, .parse_special = false};
  std::vector<double> secs;
  std::vector<vkllm::tok::TokenId> ids;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    ids = tok.encode(text, eo);
    const auto t1 = std::chrono::steady_clock::now();
    secs.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  r.median_s = secs.size() % 2 ? secs[secs.size() / 2]
                               : 0.5 * (secs[secs.size() / 2 - 1] + secs[secs.size() / 2]);
  r.tokens = ids.size();
  const std::string back = tok.decode(ids);
  r.ok = back == text;
  if (!r.ok) {
    size_t at = 0;
    while (at < back.size() && at < text.size() && back[at] == text[at]) ++at;
    r.note = fmt::format("first difference at byte {} (decoded {} bytes, input {})", at,
                         back.size(), text.size());
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vkllm-bench-tokenizer: tokenizer encode throughput and decode round trip"};
  std::string shared = "../shared";
  if (const char* env = std::getenv("VKLLM_SHARED_DIR"); env && *env) shared = env;
  int reps = 5;
  double mib = 1.0;
  app.add_option("--shared", shared, "shared data directory (holds vocab/)")
      ->capture_default_str();
  app.add_option("--reps", reps, "encode repetitions (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--mib", mib, "input size in MiB")->capture_default_str()->check(
      CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  const fs::path vocab = fs::path(shared) / "vocab";
  const std::string text = make_text(size_t(mib * 1024 * 1024));

  const std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  fmt::print("machine: nproc {}, {}\n", std::thread::hardware_concurrency(), date);
  fmt::print("input: {} bytes of mixed prose / code / CJK+emoji, encode x{} (single thread)\n\n",
             text.size(), reps);

  struct Vocab {
    std::string name;
    std::function<Tokenizer()> load;
  };
  const std::vector<Vocab> vocabs = {
      {"llama-spm",
       [&] {
         return Tokenizer::from_gguf(
             vkllm::gguf::Reader::open(vocab / "ggml-vocab-llama-spm.gguf"));
       }},
      {"llama-bpe (Llama 3)",
       [&] {
         auto bytes = vkllm::test::tiktoken_to_gguf(vocab / "llama3" / "tokenizer.model",
                                                    "llama-bpe", vkllm::test::llama3_specials(),
                                                    128000, 128009);
         return Tokenizer::from_gguf(
             vkllm::gguf::Reader::from_bytes(std::move(bytes), "llama3-fixture.gguf"));
       }},
      {"qwen2",
       [&] { return vkllm::test::qwen2_tokenizer(vocab); }},
  };

  std::vector<Row> rows;
  bool failed = false;
  for (const Vocab& v : vocabs) {
    try {
      const Tokenizer tok = v.load();
      rows.push_back(bench(v.name, tok, text, reps));
      if (!rows.back().ok) failed = true;
    } catch (const std::exception& e) {
      fmt::print(stderr, "{}: {}\n", v.name, e.what());
      failed = true;
    }
  }

  fmt::print("| vocabulary | input MiB | tokens | median s | MiB/s | tokens/s | round trip |\n");
  fmt::print("|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    fmt::print("| {} | {:.2f} | {} | {:.4f} | {:.2f} | {:.0f} | {} |\n", r.name, r.mib, r.tokens,
               r.median_s, r.mib / r.median_s, double(r.tokens) / r.median_s,
               r.ok ? "OK" : "MISMATCH");
  }
  for (const Row& r : rows) {
    if (!r.ok) fmt::print("{}: MISMATCH, {}\n", r.name, r.note);
  }
  return failed ? 1 : 0;
}
