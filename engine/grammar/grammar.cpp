// GBNF parsing and lowering to byte-level rules (grammar.hpp).
#include "engine/grammar/grammar.hpp"

#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "common/utf8.hpp"

namespace vkllm::grammar {

namespace {

using Range = std::pair<std::uint32_t, std::uint32_t>;
using Seq = std::vector<Element>;

constexpr std::uint32_t kMaxCodePoint = 0x10FFFF;

void encode_utf8(std::uint32_t cp, std::string& out) { utf8_append(out, static_cast<char32_t>(cp)); }

// lo..hi within one encoded length: split until every byte position spans a full range.
void split_same_length(std::uint32_t lo, std::uint32_t hi,
                       std::vector<std::vector<std::pair<std::uint8_t, std::uint8_t>>>& out) {
  for (int i = 1; i < 4; ++i) {
    const std::uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split_same_length(lo, lo | m, out);
        split_same_length((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split_same_length(lo, (hi & ~m) - 1, out);
        split_same_length(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  encode_utf8(lo, a);
  encode_utf8(hi, b);
  std::vector<std::pair<std::uint8_t, std::uint8_t>> seq;
  for (std::size_t i = 0; i < a.size(); ++i) {
    seq.emplace_back(static_cast<std::uint8_t>(a[i]), static_cast<std::uint8_t>(b[i]));
  }
  out.push_back(std::move(seq));
}

}  // namespace

std::vector<std::vector<std::pair<std::uint8_t, std::uint8_t>>> utf8_sequences(std::uint32_t lo, std::uint32_t hi) {
  std::vector<std::vector<std::pair<std::uint8_t, std::uint8_t>>> out;
  hi = std::min(hi, kMaxCodePoint);
  // Split at the encoded-length boundaries and around the surrogates.
  const Range parts[] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, kMaxCodePoint}};
  for (auto [plo, phi] : parts) {
    const std::uint32_t a = std::max(lo, plo), b = std::min(hi, phi);
    if (a <= b) split_same_length(a, b, out);
  }
  return out;
}

// Rules as they are built: named or anonymous, alternatives of elements.
class Builder {
 public:
  explicit Builder(const GrammarLimits& limits) : limits_(limits) {}

  std::uint32_t rule_named(std::string_view name) {
    auto it = names_.find(std::string(name));
    if (it != names_.end()) return it->second;
    const std::uint32_t id = new_rule(std::string(name));
    names_.emplace(std::string(name), id);
    return id;
  }
  std::uint32_t new_rule(std::string name) {
    rules_.push_back({std::move(name), {}, false});
    return static_cast<std::uint32_t>(rules_.size() - 1);
  }
  void define(std::uint32_t rule, std::vector<Seq> alts) {
    if (rules_[rule].defined) throw GrammarError(fmt::format("grammar: rule '{}' is defined twice", rules_[rule].name));
    for (const Seq& s : alts) count(s.size() + 1);
    rules_[rule].alts = std::move(alts);
    rules_[rule].defined = true;
  }
  std::uint32_t anonymous(std::vector<Seq> alts) {
    const std::uint32_t r = new_rule(fmt::format("<group {}>", rules_.size()));
    define(r, std::move(alts));
    return r;
  }
  Element byte_set(const ByteSet& s) {
    auto it = std::find(sets_.begin(), sets_.end(), s);
    if (it == sets_.end()) {
      sets_.push_back(s);
      it = sets_.end() - 1;
    }
    return {Element::Kind::bytes, static_cast<std::uint32_t>(it - sets_.begin())};
  }
  Element single(std::uint8_t b) {
    ByteSet s;
    s.add(b);
    return byte_set(s);
  }
  static Element ref(std::uint32_t rule) { return {Element::Kind::ref, rule}; }

  // A character class (code point ranges, not yet merged): one byte-set element when it is all
  // ASCII, else a rule with one alternative per UTF-8 byte sequence (cached per class).
  Element char_class(std::vector<Range> ranges, bool negated) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<Range> merged;
    for (const Range& r : ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }
    if (negated) {
      std::vector<Range> comp;
      std::uint32_t next = 0;
      for (const Range& r : merged) {
        if (r.first > next) comp.emplace_back(next, r.first - 1);
        next = r.second + 1;
      }
      if (next <= kMaxCodePoint) comp.emplace_back(next, kMaxCodePoint);
      merged = std::move(comp);
    }
    if (auto it = classes_.find(merged); it != classes_.end()) return it->second;
    ByteSet ascii;
    std::vector<Seq> alts;
    for (const Range& r : merged) {
      if (r.first < 0x80) ascii.add_range(static_cast<std::uint8_t>(r.first), static_cast<std::uint8_t>(std::min<std::uint32_t>(r.second, 0x7F)));
      if (r.second < 0x80) continue;
      for (const auto& seq : utf8_sequences(std::max<std::uint32_t>(r.first, 0x80), r.second)) {
        Seq alt;
        for (auto [lo, hi] : seq) {
          ByteSet s;
          s.add_range(lo, hi);
          alt.push_back(byte_set(s));
        }
        alts.push_back(std::move(alt));
      }
    }
    Element e;
    if (alts.empty()) {
      e = byte_set(ascii);  // all ASCII (or empty: matches nothing)
    } else {
      if (ascii != ByteSet{}) alts.insert(alts.begin(), Seq{byte_set(ascii)});
      e = ref(anonymous(std::move(alts)));
    }
    classes_.emplace(std::move(merged), e);
    return e;
  }

  // Replaces seq[start..] (one item) by its repetition min..max times (max empty: unbounded).
  void repeat(Seq& seq, std::size_t start, std::uint32_t min, std::optional<std::uint32_t> max) {
    if (min > limits_.max_repeat || (max && *max > limits_.max_repeat)) {
      throw GrammarError(fmt::format("grammar: a repetition bound past {}", limits_.max_repeat));
    }
    if (max && *max < min) throw GrammarError(fmt::format("grammar: repetition {{{},{}}} has max < min", min, *max));
    Seq item(seq.begin() + static_cast<std::ptrdiff_t>(start), seq.end());
    seq.resize(start);
    if (item.empty()) return;
    const Element x = item.size() == 1 ? item[0] : ref(anonymous({item}));
    count(min);
    seq.insert(seq.end(), min, x);
    if (!max) {
      const std::uint32_t r = new_rule(fmt::format("<star {}>", rules_.size()));
      define(r, {Seq{x, ref(r)}, Seq{}});
      seq.push_back(ref(r));
      return;
    }
    std::optional<std::uint32_t> inner;
    for (std::uint32_t k = min; k < *max; ++k) {
      Seq body{x};
      if (inner) body.push_back(ref(*inner));
      inner = anonymous({body, Seq{}});
    }
    if (inner) seq.push_back(ref(*inner));
  }

  Grammar finish(std::string_view root_name) {
    auto root = names_.find(std::string(root_name));
    if (root == names_.end() || !rules_[root->second].defined) {
      throw GrammarError(fmt::format("grammar: no '{}' rule", root_name));
    }
    for (const auto& r : rules_) {
      if (!r.defined) throw GrammarError(fmt::format("grammar: rule '{}' is used but not defined", r.name));
    }
    check_left_recursion();
    Grammar g;
    g.root_ = root->second;
    g.sets_ = sets_;
    g.rule_starts_.resize(rules_.size());
    for (std::size_t r = 0; r < rules_.size(); ++r) {
      for (const Seq& alt : rules_[r].alts) {
        g.rule_starts_[r].push_back(static_cast<std::uint32_t>(g.elements_.size()));
        g.elements_.insert(g.elements_.end(), alt.begin(), alt.end());
        g.elements_.push_back({Element::Kind::end, 0});
      }
    }
    return g;
  }

 private:
  struct Rule {
    std::string name;
    std::vector<Seq> alts;
    bool defined = false;
  };

  void count(std::size_t n) {
    elements_ += n;
    if (elements_ > limits_.max_elements) {
      throw GrammarError(fmt::format("grammar: more than {} elements once repetitions are expanded", limits_.max_elements));
    }
  }

  // A rule that can reach itself before consuming a byte would expand forever.
  void check_left_recursion() {
    const std::size_t n = rules_.size();
    // Nullable rules by a work list (linear): each alternative counts the elements not yet
    // known nullable; a rule is nullable when one of its alternatives reaches 0.
    std::vector<bool> nullable(n, false);
    std::vector<std::size_t> need;               // per alternative
    std::vector<std::uint32_t> owner;            // per alternative
    std::vector<std::vector<std::size_t>> users(n);  // per rule: alternatives referring to it, per occurrence
    std::vector<std::uint32_t> queue;
    for (std::size_t r = 0; r < n; ++r) {
      for (const Seq& alt : rules_[r].alts) {
        const std::size_t a = need.size();
        const bool has_bytes = std::any_of(alt.begin(), alt.end(), [](const Element& e) { return e.kind == Element::Kind::bytes; });
        need.push_back(has_bytes ? SIZE_MAX : alt.size());
        owner.push_back(static_cast<std::uint32_t>(r));
        if (has_bytes) continue;
        for (const Element& e : alt) users[e.arg].push_back(a);
        if (alt.empty() && !nullable[r]) {
          nullable[r] = true;
          queue.push_back(static_cast<std::uint32_t>(r));
        }
      }
    }
    while (!queue.empty()) {
      const std::uint32_t x = queue.back();
      queue.pop_back();
      for (std::size_t a : users[x]) {
        if (need[a] == SIZE_MAX || --need[a] != 0 || nullable[owner[a]]) continue;
        nullable[owner[a]] = true;
        queue.push_back(owner[a]);
      }
    }
    std::vector<std::vector<std::uint32_t>> leading(n);
    for (std::size_t r = 0; r < n; ++r) {
      for (const Seq& alt : rules_[r].alts) {
        for (const Element& e : alt) {
          if (e.kind != Element::Kind::ref) break;
          leading[r].push_back(e.arg);
          if (!nullable[e.arg]) break;
        }
      }
    }
    std::vector<std::uint8_t> color(n, 0);  // 0 new, 1 on the path, 2 done
    for (std::size_t start = 0; start < n; ++start) {
      if (color[start]) continue;
      std::vector<std::pair<std::uint32_t, std::size_t>> stack{{static_cast<std::uint32_t>(start), 0}};
      color[start] = 1;
      while (!stack.empty()) {
        auto& [r, i] = stack.back();
        if (i == leading[r].size()) {
          color[r] = 2;
          stack.pop_back();
          continue;
        }
        const std::uint32_t next = leading[r][i++];
        if (color[next] == 1) throw GrammarError(fmt::format("grammar: rule '{}' is left-recursive", rules_[next].name));
        if (color[next] == 0) {
          color[next] = 1;
          stack.emplace_back(next, 0);
        }
      }
    }
  }

  const GrammarLimits& limits_;
  std::vector<Rule> rules_;
  std::unordered_map<std::string, std::uint32_t> names_;
  std::vector<ByteSet> sets_;
  std::map<std::vector<Range>, Element> classes_;
  std::size_t elements_ = 0;
};

namespace {

class Parser {
 public:
  Parser(std::string_view src, Builder& b) : src_(src), b_(b) {}

  void parse_all() {
    skip(true);
    while (pos_ < src_.size()) {
      const std::string name = parse_name();
      skip(false);
      if (src_.substr(pos_, 3) != "::=") fail("expected '::='");
      pos_ += 3;
      skip(true);
      b_.define(b_.rule_named(name), parse_alternates(false));
      skip(true);
    }
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < pos_ && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw GrammarError(fmt::format("grammar: {} at line {} column {}", what, line, col));
  }
  bool at_end() const { return pos_ >= src_.size(); }
  char peek() const { return at_end() ? '\0' : src_[pos_]; }

  // Spaces, tabs and comments; newlines too when `newlines` (inside groups, after ::= and |).
  void skip(bool newlines) {
    while (!at_end()) {
      const char c = src_[pos_];
      if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && src_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }
  std::string parse_name() {
    const std::size_t start = pos_;
    while (!at_end() && name_char(src_[pos_])) ++pos_;
    if (pos_ == start) fail("expected a rule name");
    return std::string(src_.substr(start, pos_ - start));
  }

  std::vector<Seq> parse_alternates(bool nested) {
    std::vector<Seq> alts{parse_sequence(nested)};
    while (peek() == '|') {
      ++pos_;
      skip(true);
      alts.push_back(parse_sequence(nested));
    }
    return alts;
  }

  std::uint32_t hex(int digits) {
    std::uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else fail("expected a hex digit");
      v = v * 16 + static_cast<std::uint32_t>(d);
      ++pos_;
    }
    return v;
  }

  // One code point of a literal or class, escapes decoded.
  std::uint32_t parse_char() {
    if (at_end()) fail("unexpected end");
    const auto c = static_cast<unsigned char>(src_[pos_]);
    if (c == '\\') {
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '\\': return '\\';
        case '"': return '"';
        case '\'': return '\'';
        case '[': return '[';
        case ']': return ']';
        case '-': return '-';
        case '^': return '^';
        case '/': return '/';
        case 'x': return hex(2);
        case 'u': return hex(4);
        case 'U': return hex(8);
        default: --pos_; fail(fmt::format("unknown escape '\\{}'", e));
      }
    }
    // A UTF-8 sequence in the grammar text: its code point.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || pos_ + static_cast<std::size_t>(len) > src_.size()) fail("invalid UTF-8");
    std::uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int i = 1; i < len; ++i) {
      const auto k = static_cast<unsigned char>(src_[pos_ + static_cast<std::size_t>(i)]);
      if ((k & 0xC0) != 0x80) fail("invalid UTF-8");
      cp = (cp << 6) | (k & 0x3F);
    }
    pos_ += static_cast<std::size_t>(len);
    return cp;
  }

  Seq parse_sequence(bool nested) {
    Seq seq;
    for (;;) {
      skip(nested);
      const char c = peek();
      if (at_end() || c == '|' || c == ')' || c == '\n' || c == '\r') break;
      const std::size_t start = seq.size();
      if (c == '"') {
        ++pos_;
        while (peek() != '"') {
          if (at_end()) fail("unterminated literal");
          std::string bytes;
          encode_utf8(parse_char(), bytes);
          for (char ch : bytes) seq.push_back(b_.single(static_cast<std::uint8_t>(ch)));
        }
        ++pos_;
      } else if (c == '[') {
        ++pos_;
        const bool negated = peek() == '^';
        if (negated) ++pos_;
        std::vector<Range> ranges;
        while (peek() != ']') {
          if (at_end()) fail("unterminated character class");
          const std::uint32_t lo = parse_char();
          std::uint32_t hi = lo;
          if (peek() == '-' && pos_ + 1 < src_.size() && src_[pos_ + 1] != ']') {
            ++pos_;
            hi = parse_char();
            if (hi < lo) fail("a character range goes backwards");
          }
          ranges.emplace_back(lo, hi);
        }
        ++pos_;
        seq.push_back(b_.char_class(std::move(ranges), negated));
      } else if (c == '.') {
        ++pos_;
        seq.push_back(b_.char_class({{0, kMaxCodePoint}}, false));
      } else if (c == '(') {
        if (++depth_ > kMaxDepth) fail(fmt::format("groups nested deeper than {}", kMaxDepth));
        ++pos_;
        skip(true);
        auto alts = parse_alternates(true);
        if (peek() != ')') fail("expected ')'");
        ++pos_;
        --depth_;
        seq.push_back(Builder::ref(b_.anonymous(std::move(alts))));
      } else if (name_char(c)) {
        const std::string name = parse_name();
        skip(nested);
        if (src_.substr(pos_, 3) == "::=") fail(fmt::format("rule '{}' starts before the line ends", name));
        seq.push_back(Builder::ref(b_.rule_named(name)));
      } else {
        fail(fmt::format("unexpected '{}'", c));
      }
      skip(nested);
      const char p = peek();
      if (p == '*') {
        ++pos_;
        b_.repeat(seq, start, 0, std::nullopt);
      } else if (p == '+') {
        ++pos_;
        b_.repeat(seq, start, 1, std::nullopt);
      } else if (p == '?') {
        ++pos_;
        b_.repeat(seq, start, 0, 1);
      } else if (p == '{') {
        ++pos_;
        skip(true);
        const std::uint32_t lo = number();
        std::optional<std::uint32_t> hi = lo;
        skip(true);
        if (peek() == ',') {
          ++pos_;
          skip(true);
          hi = peek() == '}' ? std::nullopt : std::optional(number());
          skip(true);
        }
        if (peek() != '}') fail("expected '}'");
        ++pos_;
        b_.repeat(seq, start, lo, hi);
      }
    }
    return seq;
  }

  std::uint32_t number() {
    const std::size_t start = pos_;
    std::uint64_t v = 0;
    while (!at_end() && src_[pos_] >= '0' && src_[pos_] <= '9') {
      v = v * 10 + static_cast<std::uint64_t>(src_[pos_] - '0');
      if (v > 0xFFFFFFFFull) fail("a number too large");
      ++pos_;
    }
    if (pos_ == start) fail("expected a number");
    return static_cast<std::uint32_t>(v);
  }

  static constexpr int kMaxDepth = 256;
  std::string_view src_;
  std::size_t pos_ = 0;
  int depth_ = 0;  // groups open
  Builder& b_;
};

}  // namespace

Grammar Grammar::parse(std::string_view gbnf, std::string_view root, const GrammarLimits& limits) {
  Builder b(limits);
  Parser(gbnf, b).parse_all();
  return b.finish(root);
}

std::shared_ptr<const Grammar> parse_shared(const std::string& gbnf) {
  static std::mutex mu;
  static std::list<std::pair<std::string, std::shared_ptr<const Grammar>>> recent;  // most recent first
  {
    std::lock_guard lock(mu);
    for (auto it = recent.begin(); it != recent.end(); ++it) {
      if (it->first == gbnf) {
        recent.splice(recent.begin(), recent, it);
        return it->second;
      }
    }
  }
  auto g = std::make_shared<const Grammar>(Grammar::parse(gbnf));  // outside the lock: it may take a while
  std::lock_guard lock(mu);
  recent.emplace_front(gbnf, g);
  if (recent.size() > kSharedGrammars) recent.pop_back();
  return g;
}

}  // namespace vkllm::grammar
