// SentencePiece-style BPE by token score (llama.cpp's SPM tokenizer semantics).
// Knows nothing of special tokens, BOS/EOS or space escaping (the caller does those).
#include <queue>
#include <vector>

#include "engine/tokenizer/models.hpp"
#include "engine/tokenizer/unicode.hpp"

namespace vkllm::tok {
namespace {

struct Symbol {
  size_t start;  // byte offset in the text
  size_t len;    // 0 once merged into its left neighbour
  int prev;
  int next;
};

struct Bigram {
  float score;
  int left;
  int right;
  size_t len;  // joined length when queued: a stale entry no longer matches
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const noexcept {
    // Highest score first; on equal scores the leftmost pair.
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class SpmSession {
 public:
  SpmSession(const Vocab& vocab, std::string_view text) : vocab_(vocab), text_(text) {}

  void run(std::vector<TokenId>& out) {
    for (size_t pos = 0; pos < text_.size();) {
      const size_t n = std::min(utf8_seq_len(static_cast<uint8_t>(text_[pos])), text_.size() - pos);
      const int idx = static_cast<int>(symbols_.size());
      symbols_.push_back({pos, n, idx - 1, pos + n == text_.size() ? -1 : idx + 1});
      pos += n;
    }
    for (int i = 1; i < static_cast<int>(symbols_.size()); ++i) try_add(i - 1, i);
    while (!queue_.empty()) {
      const Bigram b = queue_.top();
      queue_.pop();
      Symbol& l = symbols_[size_t(b.left)];
      Symbol& r = symbols_[size_t(b.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) symbols_[size_t(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    if (symbols_.empty()) return;
    for (int i = 0; i != -1; i = symbols_[size_t(i)].next) emit(symbols_[size_t(i)], out);
  }

 private:
  void try_add(int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols_[size_t(left)];
    const Symbol& r = symbols_[size_t(right)];
    const size_t len = l.len + r.len;
    if (len > vocab_.max_token_bytes()) return;  // no token that long: skip the lookup
    const TokenId id = vocab_.find(text_.substr(l.start, len));
    if (id == kNoToken) return;
    queue_.push({vocab_.score(id), left, right, len});
  }

  void emit(const Symbol& s, std::vector<TokenId>& out) const {
    const std::string_view piece = text_.substr(s.start, s.len);
    if (const TokenId id = vocab_.find(piece); id != kNoToken) {
      out.push_back(id);
      return;
    }
    // Only single characters can be missing (merges always form tokens): byte fallback.
    for (char c : piece) {
      TokenId id = vocab_.byte_token(static_cast<uint8_t>(c));
      if (id == kNoToken) id = vocab_.data().unk;
      if (id != kNoToken) out.push_back(id);
    }
  }

  const Vocab& vocab_;
  std::string_view text_;
  std::vector<Symbol> symbols_;
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue_;
};

}  // namespace

void encode_spm(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) {
  SpmSession(vocab, text).run(out);
}

}  // namespace vkllm::tok
