// Mutation fuzz of the gguf reader: every byte of a valid file flipped, zeroed, saturated and
// truncated, plus seeded random multi-byte edits. Each parse succeeds or throws vkllm::Error.
#include <doctest/doctest.h>

#include <random>

#include "tests/support/gguf_fuzz.hpp"

using namespace vkllm::gguf;
using vkllm::test::parse_and_touch;
using vkllm::test::seed_file;


TEST_CASE("fuzz: single-byte mutations and truncations never crash") {
  const auto base = seed_file();
  REQUIRE(parse_and_touch(base) == 1);
  int ok = 0, rejected = 0;
  for (size_t pos = 0; pos < base.size(); ++pos) {
    for (int mode = 0; mode < 5; ++mode) {
      std::vector<uint8_t> m = base;
      switch (mode) {
        case 0: m[pos] ^= 0xff; break;
        case 1: m[pos] = 0x00; break;
        case 2: m[pos] = 0xff; break;
        case 3: m[pos] ^= 0x80; break;
        case 4: m.resize(pos); break;
      }
      (parse_and_touch(std::move(m)) ? ok : rejected)++;
    }
  }
  MESSAGE(base.size() << "-byte seed: " << ok << " variants parsed, " << rejected << " rejected");
  CHECK(rejected > 0);
  CHECK(ok > 0);
}

TEST_CASE("fuzz: seeded random multi-byte edits never crash") {
  const auto base = seed_file();
  std::mt19937_64 rng(20261122);
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> m = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[pos] = static_cast<uint8_t>(rng()); break;
        case 1: {  // plant an interesting 64-bit value (counts, lengths, dims, offsets)
          static const uint64_t kValues[] = {0, 1, 0x7fffffffffffffffull, 0xffffffffffffffffull,
                                             0x100000000ull, 1ull << 30, 1ull << 62, 31, 33, 4096};
          const uint64_t v = kValues[rng() % std::size(kValues)];
          for (size_t i = 0; i < 8 && pos + i < m.size(); ++i) m[pos + i] = static_cast<uint8_t>(v >> (8 * i));
          break;
        }
        case 2: m.resize(pos); break;
        case 3: m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<uint8_t>(rng())); break;
      }
      if (m.empty()) break;
    }
    (parse_and_touch(std::move(m)) ? ok : rejected)++;
  }
  MESSAGE("random edits: " << ok << " parsed, " << rejected << " rejected");
  CHECK(rejected > 0);
}
