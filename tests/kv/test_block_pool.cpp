// Block pool: reference counts, the reserved null block, free-queue order (uncached first, then
// cached least recently used first), prefix-cache lookups and eviction, counters.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <stdexcept>

#include "engine/kv/block_pool.hpp"

using namespace vkllm::kv;

TEST_CASE("allocation never hands out the null block and fails whole when short") {
  BlockPool pool(5);
  CHECK(pool.usable_blocks() == 4);
  CHECK(pool.num_free() == 4);
  auto a = pool.allocate(3);
  REQUIRE(a);
  CHECK(std::find(a->begin(), a->end(), kNullBlock) == a->end());
  CHECK(pool.num_free() == 1);
  CHECK_FALSE(pool.allocate(2));
  CHECK(pool.num_free() == 1);  // nothing taken by the failed call
  auto b = pool.allocate(1);
  REQUIRE(b);
  std::set<BlockId> all(a->begin(), a->end());
  all.insert(b->front());
  CHECK(all.size() == 4);
  pool.release(*a);
  pool.release(*b);
  CHECK(pool.num_free() == 4);
  CHECK(pool.num_used() == 0);
}

TEST_CASE("reference counts: a shared block is free only after its last release") {
  BlockPool pool(3);
  const BlockId b = pool.allocate(1)->front();
  pool.ref(b);
  CHECK(pool.ref_count(b) == 2);
  pool.release(b);
  CHECK(pool.num_free() == 1);
  pool.release(b);
  CHECK(pool.num_free() == 2);
  CHECK_THROWS_AS(pool.release(b), std::logic_error);
  CHECK_THROWS_AS(pool.ref(b), std::logic_error);
  CHECK_THROWS_AS(pool.release(kNullBlock), std::logic_error);
}

TEST_CASE("prefix cache: a released cached block is found again, and evicted LRU") {
  BlockPool pool(4);  // 3 usable
  const std::vector<std::uint32_t> t1 = {1, 2, 3, 4}, t2 = {5, 6, 7, 8};
  const BlockHash h1 = chain_hash(0, t1), h2 = chain_hash(h1, t2), h3 = chain_hash(0, t2);
  CHECK(h1 != h2);
  CHECK(h2 != h3);  // same tokens, different prefix
  auto blocks = *pool.allocate(2);
  pool.cache(blocks[0], h1);
  pool.cache(blocks[1], h2);
  pool.release(blocks);  // tail block released first -> evicted first
  CHECK(pool.num_free() == 3);
  CHECK(pool.contains(h1));

  // A hit takes the block off the free queue with one reference.
  auto hit = pool.lookup(h1);
  REQUIRE(hit);
  CHECK(*hit == blocks[0]);
  CHECK(pool.ref_count(*hit) == 1);
  CHECK(pool.num_free() == 2);
  CHECK_FALSE(pool.lookup(h3));
  CHECK(pool.counters().queries == 2);
  CHECK(pool.counters().hits == 1);

  // Allocation takes the never-cached block first, then evicts the cached one.
  const BlockId fresh = pool.allocate(1)->front();
  CHECK(fresh != blocks[1]);
  CHECK(pool.contains(h2));
  const BlockId evicted = pool.allocate(1)->front();
  CHECK(evicted == blocks[1]);
  CHECK_FALSE(pool.contains(h2));
  CHECK(pool.counters().evictions == 1);
}

TEST_CASE("eviction order is least recently released first") {
  BlockPool pool(4);
  auto blocks = *pool.allocate(3);
  for (std::uint32_t i = 0; i < 3; ++i) pool.cache(blocks[i], 100 + i);
  pool.release(blocks[1]);
  pool.release(blocks[0]);
  pool.release(blocks[2]);
  CHECK(pool.allocate(1)->front() == blocks[1]);
  CHECK(pool.allocate(1)->front() == blocks[0]);
  CHECK(pool.allocate(1)->front() == blocks[2]);
}

TEST_CASE("a hash cached twice stays with its first block; reset drops every hash") {
  BlockPool pool(4);
  auto blocks = *pool.allocate(2);
  pool.cache(blocks[0], 7);
  pool.cache(blocks[1], 7);
  CHECK(pool.is_cached(blocks[0]));
  CHECK_FALSE(pool.is_cached(blocks[1]));
  pool.release(blocks);
  pool.reset_prefix_cache();
  CHECK_FALSE(pool.contains(7));
  CHECK(pool.num_free() == 3);
}

TEST_CASE("without prefix caching nothing is cached or found") {
  BlockPool pool(3, false);
  const BlockId b = pool.allocate(1)->front();
  pool.cache(b, 9);
  pool.release(b);
  CHECK_FALSE(pool.lookup(9));
  CHECK(pool.counters().queries == 0);
}

TEST_CASE("random workload: free count and references stay consistent") {
  std::mt19937 rng(42);
  BlockPool pool(33);
  std::vector<std::vector<BlockId>> held;
  BlockHash next_hash = 1;
  for (int step = 0; step < 5000; ++step) {
    const int op = rng() % 4;
    if (op == 0) {
      if (auto got = pool.allocate(rng() % 4 + 1)) held.push_back(*got);
    } else if (op == 1 && !held.empty()) {
      const std::size_t i = rng() % held.size();
      pool.release(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (op == 2 && !held.empty()) {
      auto& h = held[rng() % held.size()];
      pool.cache(h[rng() % h.size()], next_hash++);
    } else if (op == 3 && next_hash > 1) {
      if (auto b = pool.lookup(rng() % next_hash)) held.push_back({*b});
    }
    std::uint32_t refs = 0;
    std::set<BlockId> distinct;
    for (auto& h : held) {
      for (BlockId b : h) distinct.insert(b);
    }
    for (BlockId b : distinct) refs += pool.ref_count(b) > 0;
    REQUIRE(pool.num_used() == distinct.size());
    REQUIRE(refs == distinct.size());
  }
}

TEST_CASE("a hit needs the same tokens and the same verified parent, not only the hash") {
  BlockPool pool(8);
  auto blocks = *pool.allocate(3);
  const std::vector<std::uint32_t> t1 = {1, 2, 3, 4}, t2 = {5, 6, 7, 8}, other = {9, 9, 9, 9};
  pool.cache(blocks[0], 100, {kNullBlock, t1});
  pool.cache(blocks[1], 200, {blocks[0], t2});
  // The hash alone: other tokens under a colliding hash find nothing.
  CHECK_FALSE(pool.lookup(100, {kNullBlock, other}));
  // The right tokens under another parent find nothing.
  CHECK_FALSE(pool.lookup(200, {blocks[2], t2}));
  CHECK(pool.counters().collisions == 2);
  auto hit0 = pool.lookup(100, {kNullBlock, t1});
  REQUIRE(hit0);
  auto hit1 = pool.lookup(200, {*hit0, t2});
  REQUIRE(hit1);
  CHECK(*hit1 == blocks[1]);
  pool.release(std::vector<BlockId>{*hit0, *hit1});
  // The parent leaves the cache and is reused for other tokens while its child stays cached
  // (still held): the child no longer matches under that block id.
  pool.release(blocks[0]);
  pool.release(blocks[2]);
  const std::uint32_t free_now = pool.num_free();
  auto all = *pool.allocate(free_now);
  REQUIRE(std::find(all.begin(), all.end(), blocks[0]) != all.end());
  CHECK_FALSE(pool.is_cached(blocks[0]));
  pool.cache(blocks[0], 300, {kNullBlock, other});
  CHECK(pool.is_cached(blocks[1]));
  CHECK_FALSE(pool.lookup(200, {blocks[0], t2}));
}
