// The KV block pool's bookkeeping (no device): block ids, reference counts, a free queue in
// eviction order, and the prefix cache (full blocks found by a hash chained over the token ids of
// every block before them, and verified on every hit: docs/ARCHITECTURE.md "Prefix cache").
// Pure C++, O(1) per block operation (O(block size) per verified hit).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace vkllm::kv {

using BlockId = std::uint32_t;
using BlockHash = std::uint64_t;

// Block 0 is reserved: it pads block tables and is never handed out, so a stray read of an
// unused table entry lands in harmless memory.
inline constexpr BlockId kNullBlock = 0;

// hash(previous block's hash, this block's token ids); the first block chains from `seed` (0
// unless requests must not share, e.g. different LoRA or cache salt).
BlockHash chain_hash(BlockHash prev, std::span<const std::uint32_t> tokens);

// What a cached block holds, checked on every hit so that a hash collision (clients choose token
// ids, so one can be crafted) never shares another prompt's K/V: the block before it in its
// sequence (kNullBlock for a first block) and its token ids. The parent was itself verified, and
// a parent that left the cache since (and may hold other tokens now) has a new generation.
struct BlockContent {
  BlockId parent = kNullBlock;
  std::span<const std::uint32_t> tokens;
};

struct PoolCounters {
  std::uint64_t queries = 0;    // blocks looked up in the prefix cache
  std::uint64_t hits = 0;       // of which found
  std::uint64_t evictions = 0;  // cached blocks reused for new content
  std::uint64_t collisions = 0; // hash found, content differed (no reuse)
};

class BlockPool {
 public:
  // `num_blocks` includes the null block; usable blocks are 1..num_blocks-1.
  explicit BlockPool(std::uint32_t num_blocks, bool prefix_caching = true);

  std::uint32_t num_blocks() const { return static_cast<std::uint32_t>(blocks_.size()); }
  std::uint32_t usable_blocks() const { return num_blocks() - 1; }
  // Blocks an allocation can take now: never used, freed, or cached but unreferenced.
  std::uint32_t num_free() const { return free_count_; }
  // Blocks referenced by at least one sequence (what "KV usage" reports).
  std::uint32_t num_used() const { return usable_blocks() - free_count_; }
  bool prefix_caching() const { return prefix_caching_; }

  // n blocks with reference count 1, taken from the head of the free queue (unhashed blocks
  // first, then cached blocks least recently used first; a taken cached block leaves the
  // cache). nullopt, with nothing taken, when fewer than n are free.
  std::optional<std::vector<BlockId>> allocate(std::uint32_t n);

  // The cached block holding `hash` and `content`, with one more reference (taken off the free
  // queue if it was there), or nullopt. Counts a query and, when found, a hit.
  std::optional<BlockId> lookup(BlockHash hash, BlockContent content = {});
  // Whether `hash` is cached, without taking a reference or counting.
  bool contains(BlockHash hash) const;

  // Marks a full, referenced block as holding `hash` and `content` so later requests can share
  // it. A hash already cached in another block is left as it is (the block stays private).
  void cache(BlockId block, BlockHash hash, BlockContent content = {});

  // The chain hash the scheduler files blocks under: chain_hash, or a test's stand-in (tests
  // force collisions with it to prove a hit is verified).
  BlockHash hash(BlockHash prev, std::span<const std::uint32_t> tokens) const {
    return hash_for_test_ ? hash_for_test_(prev, tokens) : chain_hash(prev, tokens);
  }
  void set_hash_for_test(std::function<BlockHash(BlockHash, std::span<const std::uint32_t>)> f) {
    hash_for_test_ = std::move(f);
  }

  void ref(BlockId block);
  // One reference fewer; at zero the block returns to the free queue (a cached block at the
  // tail, most recently used last; an uncached one at the head).
  void release(BlockId block);
  void release(std::span<const BlockId> blocks);

  std::uint32_t ref_count(BlockId block) const { return blocks_.at(block).refs; }
  bool is_cached(BlockId block) const { return blocks_.at(block).hashed; }

  // Drops every cached hash (unreferenced cached blocks become plain free blocks).
  void reset_prefix_cache();

  const PoolCounters& counters() const { return counters_; }

 private:
  struct Block {
    std::uint32_t refs = 0;
    bool hashed = false;
    bool queued = false;  // in the free queue
    BlockHash hash = 0;
    BlockId prev = kNullBlock, next = kNullBlock;  // free-queue links (kNullBlock: none)
    std::uint32_t generation = 0;   // +1 each time it leaves the cache
    BlockId parent = kNullBlock;    // content, while cached
    std::uint32_t parent_generation = 0;
    std::vector<std::uint32_t> tokens;
  };
  void push_front(BlockId b);
  void push_back(BlockId b);
  void unlink(BlockId b);
  void uncache(BlockId b);

  std::vector<Block> blocks_;
  BlockId head_ = kNullBlock, tail_ = kNullBlock;
  std::uint32_t free_count_ = 0;
  bool prefix_caching_;
  std::unordered_map<BlockHash, BlockId> cached_;
  PoolCounters counters_;
  std::function<BlockHash(BlockHash, std::span<const std::uint32_t>)> hash_for_test_;
};

}  // namespace vkllm::kv
