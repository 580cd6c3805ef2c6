// Block pool: an intrusive doubly-linked free queue over block ids gives O(1) allocate, release
// and "take this cached block off the queue" (a prefix-cache hit on an unreferenced block).
#include "engine/kv/block_pool.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace vkllm::kv {

BlockHash chain_hash(BlockHash prev, std::span<const std::uint32_t> tokens) {
  // FNV-1a over the previous hash and the ids, then a 64-bit finalizer (splitmix64). Not
  // collision resistant against a client choosing token ids: it only finds candidates, and
  // BlockPool::lookup verifies a candidate's content before sharing it.
  std::uint64_t h = 0xcbf29ce484222325ull ^ prev;
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 0x100000001b3ull;
    }
  };
  mix(prev);
  mix(tokens.size());
  for (std::uint32_t t : tokens) mix(t);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

BlockPool::BlockPool(std::uint32_t num_blocks, bool prefix_caching)
    : blocks_(num_blocks), prefix_caching_(prefix_caching) {
  if (num_blocks < 2) throw std::invalid_argument("block pool: needs at least 2 blocks");
  for (BlockId b = 1; b < num_blocks; ++b) push_back(b);
}

void BlockPool::push_front(BlockId b) {
  Block& x = blocks_[b];
  x.prev = kNullBlock;
  x.next = head_;
  if (head_ != kNullBlock) blocks_[head_].prev = b;
  head_ = b;
  if (tail_ == kNullBlock) tail_ = b;
  x.queued = true;
  ++free_count_;
}

void BlockPool::push_back(BlockId b) {
  Block& x = blocks_[b];
  x.next = kNullBlock;
  x.prev = tail_;
  if (tail_ != kNullBlock) blocks_[tail_].next = b;
  tail_ = b;
  if (head_ == kNullBlock) head_ = b;
  x.queued = true;
  ++free_count_;
}

void BlockPool::unlink(BlockId b) {
  Block& x = blocks_[b];
  if (x.prev != kNullBlock) blocks_[x.prev].next = x.next; else head_ = x.next;
  if (x.next != kNullBlock) blocks_[x.next].prev = x.prev; else tail_ = x.prev;
  x.prev = x.next = kNullBlock;
  x.queued = false;
  --free_count_;
}

void BlockPool::uncache(BlockId b) {
  Block& x = blocks_[b];
  if (!x.hashed) return;
  auto it = cached_.find(x.hash);
  if (it != cached_.end() && it->second == b) cached_.erase(it);
  x.hashed = false;
  ++x.generation;
  x.tokens.clear();
}

std::optional<std::vector<BlockId>> BlockPool::allocate(std::uint32_t n) {
  if (n > free_count_) return std::nullopt;
  std::vector<BlockId> out;
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const BlockId b = head_;
    unlink(b);
    if (blocks_[b].hashed) {
      uncache(b);
      ++counters_.evictions;
    }
    blocks_[b].refs = 1;
    ++blocks_[b].generation;  // new content from here on
    out.push_back(b);
  }
  return out;
}

std::optional<BlockId> BlockPool::lookup(BlockHash hash, BlockContent content) {
  if (!prefix_caching_) return std::nullopt;
  ++counters_.queries;
  auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  const BlockId b = it->second;
  const Block& x = blocks_[b];
  if (x.parent != content.parent || x.parent_generation != blocks_.at(content.parent).generation ||
      !std::equal(x.tokens.begin(), x.tokens.end(), content.tokens.begin(), content.tokens.end())) {
    ++counters_.collisions;
    return std::nullopt;
  }
  ++counters_.hits;
  if (blocks_[b].queued) unlink(b);
  ++blocks_[b].refs;
  return b;
}

bool BlockPool::contains(BlockHash hash) const { return cached_.count(hash) != 0; }

void BlockPool::cache(BlockId block, BlockHash hash, BlockContent content) {
  if (!prefix_caching_) return;
  Block& x = blocks_.at(block);
  if (block == kNullBlock || x.refs == 0) {
    throw std::logic_error(fmt::format("block pool: caching block {} that is not held", block));
  }
  if (x.hashed || cached_.count(hash)) return;
  x.hashed = true;
  x.hash = hash;
  x.parent = content.parent;
  x.parent_generation = blocks_.at(content.parent).generation;
  x.tokens.assign(content.tokens.begin(), content.tokens.end());
  cached_.emplace(hash, block);
}

void BlockPool::ref(BlockId block) {
  Block& x = blocks_.at(block);
  if (block == kNullBlock || x.refs == 0) {
    throw std::logic_error(fmt::format("block pool: ref of block {} that is not held", block));
  }
  ++x.refs;
}

void BlockPool::release(BlockId block) {
  Block& x = blocks_.at(block);
  if (block == kNullBlock || x.refs == 0) {
    throw std::logic_error(fmt::format("block pool: release of block {} that is not held", block));
  }
  if (--x.refs > 0) return;
  if (x.hashed) {
    push_back(block);
  } else {
    push_front(block);
  }
}

void BlockPool::release(std::span<const BlockId> blocks) {
  // Last block first: a sequence's tail blocks are the least likely to be shared, so they are
  // evicted before its head blocks (which other prompts share more often).
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) release(*it);
}

void BlockPool::reset_prefix_cache() {
  for (BlockId b = 1; b < blocks_.size(); ++b) uncache(b);
  cached_.clear();
}

}  // namespace vkllm::kv
