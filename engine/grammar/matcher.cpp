// The parse state and token masks of a grammar (matcher.hpp).
#include "engine/grammar/matcher.hpp"

#include <algorithm>
#include <bit>
#include <numeric>
#include <stdexcept>

namespace vkllm::grammar {

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes, std::vector<std::uint32_t> end_tokens,
                     std::unordered_map<std::string, std::uint32_t> control_tokens)
    : vocab_size_(static_cast<std::uint32_t>(token_bytes.size())),
      bytes_(token_bytes),
      end_tokens_(std::move(end_tokens)),
      control_(std::move(control_tokens)) {
  std::sort(end_tokens_.begin(), end_tokens_.end());
  end_tokens_.erase(std::unique(end_tokens_.begin(), end_tokens_.end()), end_tokens_.end());
  std::vector<std::uint32_t> sorted;
  for (std::uint32_t id = 0; id < vocab_size_; ++id) {
    if (!bytes_[id].empty() && !is_end(id)) sorted.push_back(id);
  }
  std::sort(sorted.begin(), sorted.end(), [&](std::uint32_t a, std::uint32_t b) { return bytes_[a] < bytes_[b]; });
  order_.reserve(sorted.size());
  build(sorted, 0, sorted.size(), 0, 0);
}

TokenTrie TokenTrie::from_tokenizer(const tok::Tokenizer& tokenizer, std::uint32_t vocab_size) {
  std::vector<std::string> bytes(vocab_size);
  std::vector<std::uint32_t> ends;
  std::unordered_map<std::string, std::uint32_t> control;
  for (std::uint32_t id = 0; id < vocab_size; ++id) {
    const auto t = static_cast<tok::TokenId>(id);
    if (!tokenizer.vocab().valid(t)) continue;
    if (tokenizer.is_eog(t)) {
      ends.push_back(id);
      continue;
    }
    const tok::TokenType type = tokenizer.vocab().type(t);
    if (type == tok::TokenType::kNormal || type == tok::TokenType::kByte || type == tok::TokenType::kUserDefined) {
      bytes[id] = std::string(tokenizer.token_to_piece(t));
    } else if (type == tok::TokenType::kControl) {
      control.emplace(tokenizer.token_to_piece(t, true), id);
    }
  }
  return TokenTrie(bytes, std::move(ends), std::move(control));
}

std::optional<std::uint32_t> TokenTrie::control_token(std::string_view text) const {
  const auto it = control_.find(std::string(text));
  return it == control_.end() ? std::nullopt : std::optional<std::uint32_t>(it->second);
}

bool TokenTrie::is_end(std::uint32_t id) const {
  return std::binary_search(end_tokens_.begin(), end_tokens_.end(), id);
}

// sorted[lo, hi) share their first `depth` bytes; the shortest (exactly `depth`) sort first.
void TokenTrie::build(const std::vector<std::uint32_t>& sorted, std::size_t lo, std::size_t hi, std::size_t depth,
                      std::uint8_t byte) {
  const auto idx = static_cast<std::uint32_t>(nodes_.size());
  nodes_.push_back({});
  nodes_[idx].byte = byte;
  nodes_[idx].depth = static_cast<std::uint16_t>(std::min<std::size_t>(depth, 0xFFFF));
  nodes_[idx].tok_lo = static_cast<std::uint32_t>(order_.size());
  std::size_t i = lo;
  while (i < hi && bytes_[sorted[i]].size() == depth) order_.push_back(sorted[i++]);
  nodes_[idx].tok_mid = static_cast<std::uint32_t>(order_.size());
  ByteSet below;
  while (i < hi) {
    const auto b = static_cast<std::uint8_t>(bytes_[sorted[i]][depth]);
    std::size_t j = i;
    while (j < hi && static_cast<std::uint8_t>(bytes_[sorted[j]][depth]) == b) ++j;
    const auto child = static_cast<std::uint32_t>(nodes_.size());
    build(sorted, i, j, depth + 1, b);
    below.add(b);
    below |= nodes_[child].below;
    i = j;
  }
  nodes_[idx].below = below;
  nodes_[idx].tok_hi = static_cast<std::uint32_t>(order_.size());
  nodes_[idx].end = static_cast<std::uint32_t>(nodes_.size());
}

std::size_t Automaton::VecHash::operator()(const std::vector<std::uint32_t>& v) const {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::uint32_t x : v) h = (h ^ x) * 0x100000001b3ull;
  return static_cast<std::size_t>(h);
}

Automaton::Automaton(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie)
    : grammar_(std::move(grammar)), trie_(std::move(trie)) {
  if (!grammar_ || !trie_) throw std::invalid_argument("matcher: no grammar or no vocabulary");
  max_masks_ = std::max(kMinCachedMasks, kMaskCacheBytes / (std::size_t{trie_->mask_words()} * 4 + 1));
  nodes_.push_back({0, 0});  // kEmptyStack
  intern({});                // kDead
  std::vector<std::uint32_t> start;
  ++seen_mark_;
  const std::uint32_t root = grammar_->root();
  for (std::uint32_t alt : grammar_->alternatives(root)) expand(node(alt, kEmptyStack), start);
  start_ = intern(std::move(start));
}

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie)
    : Matcher(std::make_shared<Automaton>(std::move(grammar), std::move(trie))) {}

Matcher::Matcher(std::shared_ptr<Automaton> automaton) : a_(std::move(automaton)), current_(a_->start()) {}

std::uint32_t Automaton::node(std::uint32_t pos, std::uint32_t parent) {
  const std::uint64_t key = (std::uint64_t{pos} << 32) | parent;
  auto [it, fresh] = node_ids_.try_emplace(key, static_cast<std::uint32_t>(nodes_.size()));
  if (fresh) nodes_.push_back({pos, parent});
  return it->second;
}

// The stacks `n` stands for once every rule on top is opened and every finished alternative
// popped: stacks whose top is a byte element, and the empty stack when everything may end.
// Callers start a new mark (++seen_mark_) so that a node is expanded once per transition. An
// explicit work list, not recursion: a grammar's chains of rules may be long.
void Automaton::expand(std::uint32_t start, std::vector<std::uint32_t>& out) {
  const auto elements = grammar_->elements();
  work_.assign(1, start);
  while (!work_.empty()) {
    const std::uint32_t n = work_.back();
    work_.pop_back();
    if (seen_.size() < nodes_.size()) seen_.resize(nodes_.size() * 2, 0);
    if (seen_[n] == seen_mark_) continue;
    seen_[n] = seen_mark_;
    if (n == kEmptyStack) {
      out.push_back(n);
      continue;
    }
    const StackNode sn = nodes_[n];
    const Element& e = elements[sn.pos];
    switch (e.kind) {
      case Element::Kind::end:
        work_.push_back(sn.parent);
        break;
      case Element::Kind::bytes:
        out.push_back(n);
        break;
      case Element::Kind::ref: {
        // The continuation after the rule; a rule last in its alternative continues with the
        // parent directly (right recursion does not grow the stack).
        const std::uint32_t cont =
            elements[sn.pos + 1].kind == Element::Kind::end ? sn.parent : node(sn.pos + 1, sn.parent);
        for (std::uint32_t alt : grammar_->alternatives(e.arg)) work_.push_back(node(alt, cont));
        break;
      }
    }
  }
}

Automaton::StateId Automaton::intern(std::vector<std::uint32_t> nodes) {
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  auto it = state_ids_.find(nodes);
  if (it != state_ids_.end()) return it->second;
  const auto id = static_cast<StateId>(states_.size());
  states_.push_back(nodes);
  state_ids_.emplace(std::move(nodes), id);
  transitions_.resize(states_.size() * 256, -1);
  return id;
}

Automaton::StateId Automaton::step(StateId s, std::uint8_t b) {
  const std::size_t slot = std::size_t{s} * 256 + b;
  if (transitions_[slot] >= 0) return static_cast<StateId>(transitions_[slot]);
  std::vector<std::uint32_t> out;
  ++seen_mark_;
  const auto elements = grammar_->elements();
  for (std::uint32_t n : states_[s]) {
    if (n == kEmptyStack) continue;
    const StackNode sn = nodes_[n];
    if (!grammar_->byte_set(elements[sn.pos].arg).has(b)) continue;
    const std::uint32_t next = node(sn.pos + 1, sn.parent);
    expand(next, out);
  }
  const StateId t = out.empty() ? kDead : intern(std::move(out));
  transitions_[slot] = static_cast<std::int32_t>(t);
  return t;
}

bool Automaton::can_end(StateId s) const {
  const auto& nodes = states_[s];
  return !nodes.empty() && nodes.front() == kEmptyStack;
}

bool Automaton::complete(StateId s) const {
  const auto& nodes = states_[s];
  return nodes.size() == 1 && nodes.front() == kEmptyStack;
}

bool Matcher::accept_bytes(std::string_view bytes) {
  Automaton::StateId s = current_;
  for (char c : bytes) {
    s = a_->step(s, static_cast<std::uint8_t>(c));
    if (s == Automaton::kDead) return false;
  }
  current_ = s;
  return true;
}

bool Matcher::accept_token(std::uint32_t id) {
  if (a_->trie().is_end(id)) return can_end();
  const std::string_view bytes = a_->trie().bytes(id);
  if (bytes.empty()) return false;
  return accept_bytes(bytes);
}

// Every byte of `bytes` leaves `s` as it is.
bool Automaton::loops_on(StateId s, const ByteSet& bytes) {
  for (int w = 0; w < 4; ++w) {
    for (std::uint64_t m = bytes.bits[w]; m != 0; m &= m - 1) {
      const auto b = static_cast<std::uint8_t>(w * 64 + std::countr_zero(m));
      if (step(s, b) != s) return false;
    }
  }
  return true;
}

std::span<const std::uint32_t> Automaton::mask(StateId current) {
  auto it = masks_.find(current);
  if (it != masks_.end()) return it->second;
  // A bounded cache (a mask of a 151k vocabulary is 19 KB): past it, start again.
  if (masks_.size() >= max_masks_) masks_.clear();
  std::vector<std::uint32_t> bits(trie_->mask_words(), 0);
  const auto nodes = trie_->nodes();
  const auto order = trie_->order();
  auto set = [&](std::uint32_t lo, std::uint32_t hi) {
    for (std::uint32_t i = lo; i < hi; ++i) bits[order[i] >> 5] |= 1u << (order[i] & 31);
  };
  // The trie in preorder, one state per depth: a node the grammar rejects skips its subtree.
  walk_states_.assign(1, current);
  for (std::uint32_t i = 1; i < nodes.size();) {
    const TokenTrie::Node& tn = nodes[i];
    const StateId s = walk_states_[tn.depth - 1u];
    const StateId t = step(s, tn.byte);
    if (t == kDead) {
      i = tn.end;
      continue;
    }
    set(tn.tok_lo, tn.tok_mid);
    // Every token below stays in t: all allowed. Tried only where this edge kept the state (a
    // loop, the inside of a string): elsewhere the check would cost more than it saves.
    if (tn.tok_mid != tn.tok_hi && t == s && loops_on(t, tn.below)) {
      set(tn.tok_mid, tn.tok_hi);
      i = tn.end;
      continue;
    }
    if (walk_states_.size() <= tn.depth) walk_states_.resize(tn.depth + 1u);
    walk_states_[tn.depth] = t;
    ++i;
  }
  if (can_end(current)) {
    for (std::uint32_t id : trie_->end_tokens()) bits[id >> 5] |= 1u << (id & 31);
  }
  return masks_.emplace(current, std::move(bits)).first->second;
}

LazyStart::LazyStart(std::span<const Trigger> triggers, std::shared_ptr<const TokenTrie> trie)
    : trie_(std::move(trie)) {
  for (const Trigger& t : triggers) {
    if (t.text.empty()) continue;
    if (const auto id = trie_->control_token(t.text)) {
      tokens_.push_back({*id, t.after ? std::string() : t.text});
      continue;
    }
    words_.push_back({t.text, t.at_start, t.after});
    longest_ = std::max(longest_, t.text.size());
  }
  at_start_ = std::any_of(words_.begin(), words_.end(), [](const Word& w) { return w.at_start; });
}

std::optional<std::string> LazyStart::push(std::uint32_t token) {
  for (const auto& [id, start] : tokens_) {
    if (id == token) return start;
  }
  const std::size_t old = text_.size();
  text_.append(trie_->bytes(token));
  // The output after its leading whitespace (text_ is whole while at_start_).
  const std::size_t lead = text_.find_first_not_of(" \t\r\n");
  const std::string_view rest = lead == std::string::npos ? std::string_view() : std::string_view(text_).substr(lead);
  std::size_t best = std::string::npos;
  const Word* hit = nullptr;
  bool start_open = false;  // an at-start trigger may still come
  for (const Word& w : words_) {
    std::size_t p = std::string::npos;
    if (w.at_start) {
      if (!at_start_) continue;
      if (rest.size() >= w.text.size()) {
        if (rest.starts_with(w.text)) p = lead;
      } else if (std::string_view(w.text).starts_with(rest)) {
        start_open = true;
      }
    } else {
      p = text_.find(w.text, old >= w.text.size() - 1 ? old - (w.text.size() - 1) : 0);
    }
    if (p < best) best = p, hit = &w;
  }
  if (hit) return text_.substr(hit->after ? best + hit->text.size() : best);
  at_start_ = start_open;
  // Only a word's last bytes can begin a trigger that a later token completes.
  if (!at_start_ && text_.size() >= longest_) {
    const std::size_t cut = text_.size() - (longest_ > 0 ? longest_ - 1 : 0);
    text_.erase(0, cut);
  }
  return std::nullopt;
}

}  // namespace vkllm::grammar
