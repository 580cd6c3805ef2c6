// Byte-level BPE: pre-tokenized words merged by rank with a priority queue over adjacent pairs.
// Knows nothing of special tokens or BOS/EOS (tokenizer.cpp) nor of the split regexes' text.
#include <queue>
#include <string>
#include <vector>

#include "engine/tokenizer/models.hpp"
#include "engine/tokenizer/unicode.hpp"

namespace vkllm::tok {
namespace {

// One symbol of a word being merged: a run of the word's (GPT-2 alphabet) characters.
struct Symbol {
  TokenId id;    // the token spelling this run, kNoToken for an unknown single character
  uint32_t start;
  uint32_t len;  // bytes; 0 once merged into the left neighbour
  int prev;
  int next;
};

struct Candidate {
  int32_t rank;
  int left;
  TokenId left_id;   // ids at queue time: a stale entry no longer matches them
  TokenId right_id;
  TokenId result;
};

struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const noexcept {
    // Lowest rank first; on equal ranks the leftmost pair.
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

class BpeSession {
 public:
  explicit BpeSession(const Vocab& vocab) : vocab_(vocab) {}

  void encode_word(std::string_view word, std::vector<TokenId>& out) {
    symbols_.clear();
    queue_ = {};
    for (size_t pos = 0; pos < word.size();) {
      const size_t n = std::min(utf8_seq_len(static_cast<uint8_t>(word[pos])), word.size() - pos);
      const int idx = static_cast<int>(symbols_.size());
      symbols_.push_back({vocab_.find(word.substr(pos, n)), static_cast<uint32_t>(pos),
                          static_cast<uint32_t>(n), idx - 1, -1});
      if (idx > 0) symbols_[size_t(idx - 1)].next = idx;
      pos += n;
    }
    for (int i = 1; i < static_cast<int>(symbols_.size()); ++i) try_add(i - 1, i);
    while (!queue_.empty()) {
      const Candidate c = queue_.top();
      queue_.pop();
      Symbol& l = symbols_[size_t(c.left)];
      if (l.len == 0 || l.id != c.left_id || l.next < 0) continue;
      Symbol& r = symbols_[size_t(l.next)];
      if (r.id != c.right_id) continue;
      l.id = c.result;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) symbols_[size_t(r.next)].prev = c.left;
      try_add(l.prev, c.left);
      try_add(c.left, l.next);
    }
    for (int i = symbols_.empty() ? -1 : 0; i != -1; i = symbols_[size_t(i)].next) {
      const Symbol& s = symbols_[size_t(i)];
      if (s.id != kNoToken) {
        out.push_back(s.id);
        continue;
      }
      // A character outside the vocabulary's alphabet (only possible for vocabularies that
      // are not fully byte-level): its bytes as single-byte tokens where they exist.
      for (char ch : word.substr(s.start, s.len)) {
        const TokenId id = vocab_.find(std::string_view(&ch, 1));
        if (id != kNoToken) out.push_back(id);
      }
    }
  }

 private:
  void try_add(int left, int right) {
    if (left < 0 || right < 0) return;
    const TokenId a = symbols_[size_t(left)].id;
    const TokenId b = symbols_[size_t(right)].id;
    if (a == kNoToken || b == kNoToken) return;
    if (const auto m = vocab_.merge(a, b)) queue_.push({m->rank, left, a, b, m->result});
  }

  const Vocab& vocab_;
  std::vector<Symbol> symbols_;
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue_;
};

}  // namespace

void encode_bpe(const Vocab& vocab, const PreTokenizer& pre, std::string_view text,
                std::vector<TokenId>& out) {
  BpeSession session(vocab);
  const bool ignore_merges = pre.spec().ignore_merges;
  std::string word;
  for (const TextRange& r : pre.split(text)) {
    word = bytes_to_unicode_text(text.substr(r.begin, r.end - r.begin));
    if (ignore_merges) {
      if (const TokenId id = vocab.find(word); id != kNoToken) {
        out.push_back(id);
        continue;
      }
    }
    session.encode_word(word, out);
  }
}

}  // namespace vkllm::tok
