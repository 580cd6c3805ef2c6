// Context-free grammars over bytes for constrained decoding (docs/ARCHITECTURE.md "Constrained
// decoding"): parsed from GBNF (llama.cpp's grammar format, which JSON schemas compile to), with
// repetitions lowered to rules and character classes lowered to UTF-8 byte sequences, so that a
// token's bytes walk the grammar one byte at a time. Pure C++.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace vkllm::grammar {

// A grammar the request sent (GBNF, a JSON schema) that cannot be used: the 400 it becomes names
// the problem.
class GrammarError : public InvalidRequest {
 public:
  using InvalidRequest::InvalidRequest;
};

struct ByteSet {
  std::array<std::uint64_t, 4> bits{};
  bool has(std::uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1u; }
  void add(std::uint8_t b) { bits[b >> 6] |= std::uint64_t{1} << (b & 63); }
  void add_range(std::uint8_t lo, std::uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(static_cast<std::uint8_t>(b));
  }
  ByteSet& operator|=(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) bits[i] |= o.bits[i];
    return *this;
  }
  // Every byte of `o` is in this set.
  bool covers(const ByteSet& o) const {
    for (int i = 0; i < 4; ++i) {
      if ((o.bits[i] & ~bits[i]) != 0) return false;
    }
    return true;
  }
  bool operator==(const ByteSet&) const = default;
};

// One element of an alternative: the end of the alternative, a byte from a set, or a rule.
struct Element {
  enum class Kind : std::uint8_t { end, bytes, ref };
  Kind kind = Kind::end;
  std::uint32_t arg = 0;  // bytes: index of the ByteSet; ref: the rule
};

// Limits on what a request may make the server build.
struct GrammarLimits {
  std::size_t max_elements = 1u << 20;  // after lowering repetitions and classes
  std::uint32_t max_repeat = 10000;     // the largest {m,n} bound
};

class Grammar {
 public:
  // GBNF: `name ::= alternatives`, alternatives split by `|`, items "literal" (escapes \n \r \t
  // \\ \" \xHH \uHHHH \UHHHHHHHH), [class] with ranges and ^, `.` (any character), rule names,
  // ( groups ), each with * + ? {m} {m,} {m,n}; `#` comments. Throws GrammarError naming the
  // problem: syntax, an undefined rule, left recursion, no `root` rule, past the limits.
  static Grammar parse(std::string_view gbnf, std::string_view root = "root", const GrammarLimits& limits = {});

  std::uint32_t root() const { return root_; }
  std::uint32_t num_rules() const { return static_cast<std::uint32_t>(rule_starts_.size()); }
  // Elements of every alternative, each ending with an end element.
  std::span<const Element> elements() const { return elements_; }
  // Positions in elements() where each alternative of `rule` begins.
  std::span<const std::uint32_t> alternatives(std::uint32_t rule) const { return rule_starts_.at(rule); }
  const ByteSet& byte_set(std::uint32_t i) const { return sets_.at(i); }

 private:
  friend class Builder;
  std::vector<Element> elements_;
  std::vector<std::vector<std::uint32_t>> rule_starts_;
  std::vector<ByteSet> sets_;
  std::uint32_t root_ = 0;
};

// Grammar::parse with the default limits, through a process-wide cache of the last
// kSharedGrammars texts: requests that send the same grammar or schema get the same object, and
// so share the engine's automaton of it (docs/ARCHITECTURE.md "Constrained decoding").
// Thread-safe; throws what parse throws (errors are not cached).
std::shared_ptr<const Grammar> parse_shared(const std::string& gbnf);
inline constexpr std::size_t kSharedGrammars = 16;

// Where a lazy grammar begins (docs/ARCHITECTURE.md "Tool calls"): generation runs free until
// a trigger appears in the output, and the grammar constrains it from there on.
struct Trigger {
  std::string text;       // bytes of the output, or the text of a control token
  bool at_start = false;  // only as the output's first bytes (after whitespace)
  bool after = false;     // the grammar begins after the trigger, not at its first byte
};

// The UTF-8 byte-range sequences that together match exactly the code points lo..hi (a part of
// a character class); each sequence is one range per byte. Surrogates are left out.
std::vector<std::vector<std::pair<std::uint8_t, std::uint8_t>>> utf8_sequences(std::uint32_t lo, std::uint32_t hi);

}  // namespace vkllm::grammar
