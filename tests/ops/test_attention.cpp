// Paged causal GQA attention against its CPU reference over shuffled block tables: decode,
// prefill, prefill chunks and mixed batches, every kernel (rows, split, tiled, cooperative
// matrix), sliding windows and soft-caps. The kernels beside it (RoPE, K/V write, SiLU-mul, bias)
// are in test_rope_kv.cpp. Poisoned outputs and pools; runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>
#include <optional>
#include <stdexcept>

#include "common/error.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/ops/attention.hpp"
#include "tests/ops/kernel_buffers.hpp"
#include "tests/reference/attention_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using namespace vkllm::test;

namespace {

// Attention sees exactly the K/V the reference sees (f16 pools are rounded for both), so only
// f32 arithmetic separates them: ~1e-12 in practice. Far tighter than the 5e-4 of docs/ARCHITECTURE.md "Tests", because
// one dropped or extra key among a few hundred moves the output by only ~1e-5 NMSE.
constexpr double kAttention = 1e-6;
// The cooperative-matrix kernel rounds Q (times scale), K, V and P to f16 (11-bit mantissas)
// before its products: scores of a few units are off by about 1e-3, the outputs' NMSE stays
// under this against the f32 reference.
constexpr double kAttentionF16 = 2e-5;

// One sequence of an attention batch: `context` key positions after this step, the last `nnew`
// of them are this step's query tokens.
struct Seq {
  std::uint32_t context;
  std::uint32_t nnew;
};

struct AttnCase {
  std::uint32_t n_heads, n_kv_heads, head_dim;
  std::uint32_t block_size = 16;
  ops::KvType kv_type = ops::KvType::f32;
  std::uint32_t split_keys = 0;  // flash-decoding ranges; 0: one pass
  // Also through the tiled kernel, where the device has it and a sequence has a prompt chunk
  // (what it is chosen for). Each of its variants costs seconds to compile on lavapipe.
  bool tiled = true;
  // Only this kernel (coopmat: only where it runs; it rounds Q, K, V and P to f16).
  std::optional<ops::AttentionKernel> only = std::nullopt;
  std::uint32_t window = 0;  // sliding window (ops::AttentionShape::window)
  float softcap = 0;         // attention-logit soft-capping
  // Attention sinks (gpt-oss): a random logit per head about the scores' size, one head's far
  // above them (its rows' outputs near zero) and one's far below (no effect).
  bool sinks = false;
};

// Builds a paged cache with shuffled, non-contiguous blocks holding each sequence's earlier
// keys; the batch's own K/V go in through kv_write in the same recording as the attention, as in
// a forward pass. Unused pool rows and table entries hold NaN / an unused block, so reading
// anything outside the causal window poisons the output.
// Whether the device runs attention_tiled.comp for this head (ops::AttentionKernel).
bool tiled_attention_available(DeviceTest& t, std::uint32_t head_dim, ops::KvType kv_type) {
  ops::AttentionShape probe;
  probe.head_dim = head_dim;
  probe.kv_type = kv_type;
  probe.kernel = ops::AttentionKernel::tiled;
  try {
    ops::attention_kernel(t.kernels(), probe);
    return true;
  } catch (const Unsupported&) {
    return false;
  }
}

void check_attention(DeviceTest& t, const AttnCase& c, const std::vector<Seq>& seqs) {
  auto& dev = t.device();
  auto& rng = t.rng();
  const bool f16 = c.kv_type == ops::KvType::f16;
  const std::uint32_t nseq = static_cast<std::uint32_t>(seqs.size());
  const std::uint32_t bs = c.block_size;
  const std::uint32_t kv_dim = c.n_kv_heads * c.head_dim;
  std::uint32_t ntok = 0, max_blocks = 1, used_blocks = 0;
  for (const Seq& s : seqs) {
    ntok += s.nnew;
    const std::uint32_t nb = (s.context + bs - 1) / bs;
    max_blocks = std::max(max_blocks, nb + 1);  // a spare, never-used entry per row
    used_blocks += nb;
  }
  const std::uint32_t num_blocks = used_blocks + 3;
  std::vector<std::uint32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0u);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::uint32_t unused_block = ids.back();  // NaN everywhere

  const std::size_t pool_elems = std::size_t(num_blocks) * bs * kv_dim;
  std::vector<float> k_pool(pool_elems, kNan), v_pool(pool_elems, kNan);
  std::vector<std::uint32_t> table(std::size_t(nseq) * max_blocks, unused_block);
  std::vector<std::uint32_t> query_start{0}, positions, slots;
  std::vector<float> k_new, v_new;
  std::size_t next_id = 0;
  for (std::uint32_t s = 0; s < nseq; ++s) {
    const Seq& sq = seqs[s];
    REQUIRE(sq.nnew <= sq.context);
    for (std::uint32_t b = 0; b * bs < sq.context; ++b) table[s * max_blocks + b] = ids[next_id++];
    for (std::uint32_t p = 0; p < sq.context; ++p) {
      const std::uint32_t slot = table[s * max_blocks + p / bs] * bs + p % bs;
      const auto kr = ref::random_floats(rng, kv_dim), vr = ref::random_floats(rng, kv_dim);
      if (p + sq.nnew >= sq.context) {  // written by kv_write
        positions.push_back(p);
        slots.push_back(slot);
        k_new.insert(k_new.end(), kr.begin(), kr.end());
        v_new.insert(v_new.end(), vr.begin(), vr.end());
      } else {  // already in the cache
        std::copy(kr.begin(), kr.end(), k_pool.begin() + std::size_t(slot) * kv_dim);
        std::copy(vr.begin(), vr.end(), v_pool.begin() + std::size_t(slot) * kv_dim);
      }
    }
    query_start.push_back(query_start.back() + sq.nnew);
  }
  REQUIRE(positions.size() == ntok);
  // A sliding window: the keys before every new token's window of a sequence hold finite junk,
  // and the table entries of blocks wholly before it name one junk block (given back and reused
  // by another sequence): a kernel that used them would move the result. Not NaN: the kernels
  // load the masked keys of a partial tile (with p = 0), and a pool only ever holds finite K/V.
  if (c.window > 0) {
    const std::uint32_t junk_block = ids[num_blocks - 2];  // never handed out
    auto junk = [&](std::uint32_t slot) {
      const auto kr = ref::random_floats(rng, kv_dim, -50, 50), vr = ref::random_floats(rng, kv_dim, -50, 50);
      std::copy(kr.begin(), kr.end(), k_pool.begin() + std::size_t(slot) * kv_dim);
      std::copy(vr.begin(), vr.end(), v_pool.begin() + std::size_t(slot) * kv_dim);
    };
    for (std::uint32_t i = 0; i < bs; ++i) junk(junk_block * bs + i);
    for (std::uint32_t s = 0; s < nseq; ++s) {
      const std::uint32_t pos = seqs[s].context - seqs[s].nnew;  // the first new token's
      const std::uint32_t lo = pos >= c.window ? pos + 1 - c.window : 0;
      for (std::uint32_t p = 0; p < lo; ++p) {
        std::uint32_t& entry = table[s * max_blocks + p / bs];
        if ((p / bs + 1) * bs <= lo) {
          entry = junk_block;
        } else {
          junk(entry * bs + p % bs);
        }
      }
    }
  }

  // The pool as the device stores it (NaN stays NaN in f16).
  auto upload_pool = [&](const std::vector<float>& pool, const char* name) {
    if (!f16) return t.upload_floats(pool, name);
    std::vector<std::uint16_t> h(pool.size());
    for (std::size_t i = 0; i < pool.size(); ++i) {
      h[i] = std::isnan(pool[i]) ? kF16Nan : gguf::fp32_to_fp16(pool[i]);
    }
    return upload_u16(dev, h, name);
  };
  auto dk = upload_pool(k_pool, "k_pool"), dv = upload_pool(v_pool, "v_pool");

  ops::AttentionShape shape;
  shape.ntok = ntok;
  shape.nseq = nseq;
  shape.n_heads = c.n_heads;
  shape.n_kv_heads = c.n_kv_heads;
  shape.head_dim = c.head_dim;
  shape.block_size = bs;
  shape.max_blocks_per_seq = max_blocks;
  shape.scale = 1.0f / std::sqrt(float(c.head_dim));
  shape.kv_type = c.kv_type;
  shape.split_keys = c.split_keys;
  shape.window = c.window;
  shape.softcap = c.softcap;
  // Scores of a few units: a peaked softmax, so the running max matters.
  const auto q = ref::random_floats(rng, std::size_t(ntok) * c.n_heads * c.head_dim, -3, 3);

  // The reference sees the cache as the device holds it after kv_write.
  ref::kv_write(k_new, v_new, slots, k_pool, v_pool, ntok, kv_dim);
  if (f16) {
    for (float& x : k_pool) x = round_f16(x);
    for (float& x : v_pool) x = round_f16(x);
  }
  std::vector<float> sinks;
  if (c.sinks) {
    sinks = ref::random_floats(rng, c.n_heads, -2, 4);
    sinks[0] = 30;
    if (c.n_heads > 1) sinks[1] = -60;
  }
  std::vector<float> expected(q.size());
  ref::paged_attention(shape, q, k_pool, v_pool, positions, query_start, table, expected, sinks);

  auto dq = t.upload_floats(q, "q");
  auto dkn = t.upload_floats(k_new, "k_new"), dvn = t.upload_floats(v_new, "v_new");
  auto dslots = upload_u32(dev, slots, "slots"), dpos = upload_u32(dev, positions, "positions");
  auto dqs = upload_u32(dev, query_start, "query_start"), dtable = upload_u32(dev, table, "table");
  std::optional<platform::Buffer> dsinks;
  if (c.sinks) dsinks = t.upload_floats(sinks, "sinks");
  // Both kernels where the device has the tiled one (the split is the rows kernel's).
  std::vector<ops::AttentionKernel> kernels{ops::AttentionKernel::rows};
  const bool chunk = std::any_of(seqs.begin(), seqs.end(), [](const Seq& sq) { return sq.nnew > 1; });
  if (c.tiled && chunk && c.split_keys == 0 && tiled_attention_available(t, c.head_dim, c.kv_type)) {
    kernels.push_back(ops::AttentionKernel::tiled);
  }
  if (c.only) kernels = {*c.only};
  for (const ops::AttentionKernel kernel : kernels) {
    CAPTURE(ops::to_string(kernel));
    shape.kernel = kernel;
    auto dout = t.poisoned_floats(q.size(), "out");
    // Poisoned: a range the reduce should not read turns the row into NaN.
    auto dpart = t.poisoned_floats(std::max<std::uint64_t>(ops::attention_partial_bytes(shape) / 4, 1),
                                   "partials");
    auto dcount = upload_u32(dev, std::vector<std::uint32_t>(ops::attention_counter_bytes(shape) / 4), "counters");
    auto cs = dev.command_stream();
    cs.begin();
    ops::record_kv_write(t.kernels(), cs, c.kv_type, dkn, dvn, dslots, dk, dv, ntok, kv_dim);
    ops::record_attention(t.kernels(), cs, shape, dq, dk, dv, dpos, dqs, dtable, dout, dpart, dcount,
                          dsinks ? platform::BufferSpan(*dsinks) : platform::BufferSpan());
    cs.end();
    cs.submit_and_wait();
    const double bound = kernel == ops::AttentionKernel::coopmat ? kAttentionF16 : kAttention;
    CHECK(ref::nmse(t.download_floats(dout, q.size()), expected) < bound);
  }
}

// c through every kernel: rows (and tiled where the device has it), the split (on seqs and on a
// long decode) and the cooperative-matrix kernel where the device has it.
void check_every_kernel(DeviceTest& t, AttnCase c, const std::vector<Seq>& seqs, bool coopmat) {
  check_attention(t, c, seqs);
  c.split_keys = 64;
  check_attention(t, c, seqs);
  check_attention(t, c, {{700, 1}, {65, 1}});
  c.split_keys = 0;
  if (coopmat) {
    c.only = ops::AttentionKernel::coopmat;
    check_attention(t, c, seqs);
  }
}

// GQA groups 1, 4 and 8 with head sizes 64 and 128.
const AttnCase kCases[] = {{8, 8, 64}, {8, 2, 128}, {32, 4, 64}, {16, 2, 128}};

}  // namespace

TEST_CASE_FIXTURE(DeviceTest, "attention: one sequence decoding, contexts 1..300") {
  for (const AttnCase& base : kCases) {
    for (auto type : kv_types(*this)) {
      for (std::uint32_t context : {1u, 2u, 16u, 17u, 33u, 100u, 300u}) {
        AttnCase c = base;
        c.kv_type = type;
        CAPTURE(c.n_heads);
        CAPTURE(c.n_kv_heads);
        CAPTURE(c.head_dim);
        CAPTURE(type == ops::KvType::f16);
        CAPTURE(context);
        check_attention(*this, c, {{context, 1}});
      }
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention: 300 decoding sequences with contexts 1..300 in one batch") {
  for (auto type : kv_types(*this)) {
    CAPTURE(type == ops::KvType::f16);
    std::vector<Seq> seqs;
    for (std::uint32_t ctx = 1; ctx <= 300; ++ctx) seqs.push_back({ctx, 1});
    std::shuffle(seqs.begin(), seqs.end(), rng());
    check_attention(*this, {8, 2, 64, 16, type}, seqs);
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention: prefill from position 0 and a chunk from position 50") {
  for (const AttnCase& base : kCases) {
    for (auto type : kv_types(*this)) {
      AttnCase c = base;
      c.kv_type = type;
      CAPTURE(c.n_heads);
      CAPTURE(c.n_kv_heads);
      CAPTURE(c.head_dim);
      CAPTURE(type == ops::KvType::f16);
      check_attention(*this, c, {{37, 37}});
      check_attention(*this, c, {{87, 37}});
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention: mixed batch of decodes and prefill chunks") {
  const std::vector<Seq> seqs{{1, 1}, {70, 20}, {200, 1}, {37, 37}};
  for (const AttnCase& base : kCases) {
    for (auto type : kv_types(*this)) {
      for (std::uint32_t block_size : {16u, 5u}) {
        AttnCase c = base;
        c.kv_type = type;
        c.block_size = block_size;
        CAPTURE(c.n_heads);
        CAPTURE(c.n_kv_heads);
        CAPTURE(c.head_dim);
        CAPTURE(type == ops::KvType::f16);
        CAPTURE(block_size);
        check_attention(*this, c, seqs);
      }
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention: head sizes 32, 48, 80, 256 and a tiny odd-pair one") {
  const std::vector<Seq> seqs{{45, 1}, {40, 23}, {3, 3}};
  for (std::uint32_t head_dim : {32u, 48u, 80u, 256u, 6u}) {
    for (auto type : kv_types(*this)) {
      CAPTURE(head_dim);
      CAPTURE(type == ops::KvType::f16);
      // The tiled kernel's head sizes in f32 (f16 differs from it only in its loads).
      check_attention(*this, {6, 2, head_dim, 8, type, 0, type == ops::KvType::f32}, seqs);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention: sliding windows and soft-capping, every kernel and the split") {
  // Windows of one key, shorter than a key tile, a block, and longer than some contexts; decodes
  // whose window starts mid-block, prompt chunks whose rows' windows start in different tiles
  // (a tile's first rows see none of its keys); out-of-window keys are junk (check_attention).
  const std::vector<Seq> seqs{{1, 1}, {70, 20}, {200, 1}, {37, 37}, {129, 3}, {300, 64}};
  const bool coopmat = test::coopmat_or_skip(kernels());
  for (auto type : kv_types(*this)) {
    for (std::uint32_t window : {1u, 7u, 16u, 40u, 100u}) {
      for (float softcap : {0.f, 3.f}) {
        CAPTURE(type == ops::KvType::f16);
        CAPTURE(window);
        CAPTURE(softcap);
        AttnCase c{8, 2, 64, 16, type};
        c.window = window;
        c.softcap = softcap;
        check_every_kernel(*this, c, seqs, coopmat);
        c.block_size = 5;
        check_attention(*this, c, seqs);
      }
    }
  }
  // Soft-capping alone (no window), where it bites: scores of a few units against a cap of 1.
  AttnCase c{8, 8, 64};
  c.softcap = 1.f;
  check_attention(*this, c, seqs);
}

TEST_CASE_FIXTURE(DeviceTest, "attention: sinks (gpt-oss), every kernel and the split, with and without a window") {
  // A push constant, not another pipeline: this costs lavapipe no compiles past the test above.
  const std::vector<Seq> seqs{{1, 1}, {70, 20}, {200, 1}, {37, 37}, {129, 3}};
  const bool coopmat = test::coopmat_or_skip(kernels());
  for (auto type : kv_types(*this)) {
    for (std::uint32_t window : {0u, 40u}) {
      CAPTURE(type == ops::KvType::f16);
      CAPTURE(window);
      AttnCase c{8, 2, 64, 16, type};
      c.window = window;
      c.sinks = true;
      check_every_kernel(*this, c, seqs, coopmat);
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention: GQA group larger than a workgroup's rows") {
  // 64 query heads on one KV head: a token's group spans several row tiles.
  for (auto type : kv_types(*this)) {
    CAPTURE(type == ops::KvType::f16);
    check_attention(*this, {64, 1, 64, 16, type}, {{30, 3}, {9, 1}});
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention tiled: long prompt chunks, and its tiles and blocks of other devices") {
  // Every check_attention runs both kernels; this one is about the tiled kernel's own edges:
  // chunks over several row tiles and key tiles, a chunk after a long context, sequences whose
  // rows end inside a subgroup's rows, under the tunings other devices get (smaller and odd
  // row blocks, one key an invocation, larger key tiles).
  if (!tiled_attention_available(*this, 64, ops::KvType::f32)) {
    MESSAGE("skipped: this device has no tiled attention (no fixed subgroup size)");
    CHECK_FALSE(kernels().caps().quirks.prefer_small_workgroups);  // lavapipe has it
    return;
  }
  struct Blocks {
    std::uint32_t subgroups, sg_rows, lane_keys;
  };
  const Blocks blocks[] = {{0, 0, 0}, {4, 8, 1}, {2, 3, 2}};
  const std::vector<Seq> seqs{{300, 300}, {320, 70}, {5, 5}, {1, 1}, {129, 129}};
  for (const Blocks& b : blocks) {
    platform::Tuning t = kernels().caps().tuning;
    if (b.subgroups) {
      t.attn_subgroups = b.subgroups;
      t.attn_sg_rows = b.sg_rows;
      t.attn_lane_keys = b.lane_keys;
    }
    kernels().set_tuning(t);
    CAPTURE(t.attn_subgroups);
    CAPTURE(t.attn_sg_rows);
    CAPTURE(t.attn_lane_keys);
    // The device's own blocks in both pool types and two head shapes; the others in f32.
    for (auto type : kv_types(*this)) {
      if (b.subgroups && type != ops::KvType::f32) continue;
      CAPTURE(type == ops::KvType::f16);
      check_attention(*this, {12, 4, 64, 16, type}, seqs);
      if (!b.subgroups) check_attention(*this, {8, 1, 80, 7, type}, {{90, 90}, {40, 17}});
    }
  }
  kernels().set_tuning(std::nullopt);
}

TEST_CASE_FIXTURE(DeviceTest, "attention coopmat: prompt chunks, mixed batches, head sizes, GQA") {
  if (!test::coopmat_or_skip(kernels())) return;
  const auto coopmat = ops::AttentionKernel::coopmat;
  const platform::Tuning& t = kernels().tuning();
  MESSAGE("coopmat attention: " << t.coopmat_m << "x" << t.coopmat_n << "x" << t.coopmat_k
                                << " matrices, subgroup " << t.coopmat_subgroup);
  for (auto type : kv_types(*this)) {
    CAPTURE(type == ops::KvType::f16);
    for (const AttnCase& base : kCases) {
      AttnCase c = base;
      c.kv_type = type;
      c.only = coopmat;
      CAPTURE(c.n_heads);
      CAPTURE(c.n_kv_heads);
      CAPTURE(c.head_dim);
      check_attention(*this, c, {{37, 37}});
      check_attention(*this, c, {{87, 37}, {1, 1}, {300, 300}, {70, 20}});
    }
    // Head sizes that are multiples of the matrices; a GQA group over several row tiles; odd
    // block sizes.
    for (std::uint32_t head_dim : {32u, 48u, 80u, 256u}) {
      if (head_dim % t.coopmat_k != 0 || head_dim % t.coopmat_n != 0) continue;
      CAPTURE(head_dim);
      check_attention(*this, {6, 2, head_dim, 8, type, 0, true, coopmat}, {{45, 1}, {40, 23}, {3, 3}});
    }
    check_attention(*this, {64, 1, 64, 5, type, 0, true, coopmat}, {{30, 3}, {9, 1}, {129, 129}});
  }
  // Automatic: prompt chunks take it where the matmuls are forced onto matrix cores.
  const ops::KernelChoice before = kernels().choice();
  kernels().set_choice(ops::KernelChoice::coopmat);
  ops::AttentionShape sh;
  sh.n_heads = 12;
  sh.n_kv_heads = 4;
  sh.head_dim = 64;
  sh.ntok = 512;
  sh.nseq = 1;
  CHECK(ops::attention_kernel(kernels(), sh) == coopmat);
  sh.ntok = sh.nseq = 64;
  CHECK(ops::attention_kernel(kernels(), sh) == ops::AttentionKernel::rows);
  kernels().set_choice(before);
  sh.head_dim = 6;  // no matrix divides it
  sh.kernel = coopmat;
  CHECK_THROWS_AS(ops::attention_kernel(kernels(), sh), Unsupported);
}

TEST_CASE_FIXTURE(DeviceTest, "attention kernel choice: tiled for prompt chunks, rows for decode and splits") {
  ops::AttentionShape sh;
  sh.n_heads = 12;
  sh.n_kv_heads = 4;
  sh.head_dim = 64;
  sh.kv_type = ops::KvType::f32;
  sh.ntok = 64;
  sh.nseq = 64;  // decode
  CHECK(ops::attention_kernel(kernels(), sh) == ops::AttentionKernel::rows);
  sh.kernel = ops::AttentionKernel::rows;
  sh.ntok = 512;
  sh.nseq = 1;
  CHECK(ops::attention_kernel(kernels(), sh) == ops::AttentionKernel::rows);
  if (!tiled_attention_available(*this, 64, ops::KvType::f32)) {
    MESSAGE("skipped the tiled half: this device has no tiled attention");
    return;
  }
  sh.kernel = ops::AttentionKernel::automatic;
  // Prompt chunks: the cooperative-matrix kernel where the matmuls take matrix cores (an H200),
  // else the tiled one.
  const ops::AttentionKernel chunk = ops::attention_kernel(kernels(), sh);
  if (ops::coopmat_available(kernels().tuning()) && kernels().tuning().coopmat_min_tokens != 0) {
    CHECK(chunk == ops::AttentionKernel::coopmat);
  } else {
    CHECK(chunk == ops::AttentionKernel::tiled);
  }
  sh.split_keys = 256;  // flash-decoding is the rows kernel's
  CHECK(ops::attention_kernel(kernels(), sh) == ops::AttentionKernel::rows);
  sh.kernel = ops::AttentionKernel::tiled;
  CHECK_THROWS_AS(ops::attention_kernel(kernels(), sh), Unsupported);
  sh.kernel = ops::AttentionKernel::coopmat;
  CHECK_THROWS_AS(ops::attention_kernel(kernels(), sh), Unsupported);  // split, or no matrices
  sh.kernel = ops::AttentionKernel::tiled;
  sh.split_keys = 0;
  sh.head_dim = 1 << 16;  // no tile fits shared memory
  CHECK_THROWS_AS(ops::attention_kernel(kernels(), sh), Unsupported);
}

TEST_CASE_FIXTURE(DeviceTest, "attention split over key ranges (flash-decoding): decodes and chunks") {
  // Ranges of 64 keys: contexts inside one range, on its edges and over many; decoding rows
  // alone, and sharing workgroups with prefill rows whose keys end in other ranges.
  const std::vector<std::vector<Seq>> batches{
      {{1, 1}}, {{64, 1}}, {{65, 1}}, {{700, 1}},
      {{1, 1}, {70, 20}, {200, 1}, {37, 37}, {129, 3}}};
  for (const AttnCase& base : kCases) {
    for (auto type : kv_types(*this)) {
      for (const auto& seqs : batches) {
        AttnCase c = base;
        c.kv_type = type;
        c.split_keys = 64;
        CAPTURE(c.n_heads);
        CAPTURE(c.n_kv_heads);
        CAPTURE(c.head_dim);
        CAPTURE(type == ops::KvType::f16);
        CAPTURE(seqs.size());
        CAPTURE(seqs[0].context);
        check_attention(*this, c, seqs);
      }
    }
  }
  check_attention(*this, {6, 2, 256, 8, ops::KvType::f32, 64}, {{45, 1}, {40, 23}, {300, 1}});
  check_attention(*this, {64, 1, 64, 16, ops::KvType::f32, 64}, {{130, 3}, {9, 1}});
}

TEST_CASE_FIXTURE(DeviceTest, "split attention replayed: its ranges follow each step's context, one recording") {
  // One recorded decode step of 2 sequences on a table for 4096 keys (64 ranges of 64 keys would
  // be needed: the grid has 32, so long contexts widen them), replayed with contexts from 1 key
  // to the whole table, changed between replays only through the positions buffer. Each replay
  // matches the reference, and partials left over from a longer replay are never read.
  constexpr std::uint32_t kHeads = 8, kKvHeads = 2, kHd = 64, kBs = 16, kMaxBlocks = 256;
  constexpr std::uint32_t kv_dim = kKvHeads * kHd;
  for (auto type : kv_types(*this)) {
    CAPTURE(type == ops::KvType::f16);
    const bool f16 = type == ops::KvType::f16;
    platform::Device& dev = device();
    std::mt19937& gen = rng();
    ops::AttentionShape shape;
    shape.ntok = shape.nseq = 2;
    shape.n_heads = kHeads;
    shape.n_kv_heads = kKvHeads;
    shape.head_dim = kHd;
    shape.block_size = kBs;
    shape.max_blocks_per_seq = kMaxBlocks;
    shape.scale = 1.0f / std::sqrt(float(kHd));
    shape.kv_type = type;
    shape.split_keys = 64;
    const std::size_t pool_rows = std::size_t{2} * kMaxBlocks * kBs;
    auto kp = ref::random_floats(gen, pool_rows * kv_dim), vp = ref::random_floats(gen, pool_rows * kv_dim);
    if (f16) {
      for (float& x : kp) x = round_f16(x);
      for (float& x : vp) x = round_f16(x);
    }
    auto upload_pool = [&](const std::vector<float>& pool, const char* name) {
      if (!f16) return upload_floats(pool, name);
      std::vector<std::uint16_t> h(pool.size());
      for (std::size_t i = 0; i < pool.size(); ++i) h[i] = gguf::fp32_to_fp16(pool[i]);
      return upload_u16(dev, h, name);
    };
    auto dk = upload_pool(kp, "k_pool"), dv = upload_pool(vp, "v_pool");
    std::vector<std::uint32_t> table(2 * kMaxBlocks);
    std::iota(table.begin(), table.end(), 0u);
    std::shuffle(table.begin(), table.end(), gen);
    const std::vector<std::uint32_t> qs = {0, 1, 2};
    const auto q = ref::random_floats(gen, std::size_t{2} * kHeads * kHd, -3, 3);
    auto dq = upload_floats(q, "q");
    auto dtable = upload_u32(dev, table, "table"), dqs = upload_u32(dev, qs, "query_start");
    std::vector<std::uint32_t> pos = {0, 0};
    auto dpos = upload_u32(dev, pos, "positions");
    auto dout = poisoned_floats(q.size(), "out");
    auto dpart = poisoned_floats(ops::attention_partial_bytes(shape) / 4, "partials");
    auto dcount = upload_u32(dev, std::vector<std::uint32_t>(ops::attention_counter_bytes(shape) / 4), "counters");
    auto cs = dev.command_stream();
    cs.begin();
    ops::record_attention(kernels(), cs, shape, dq, dk, dv, dpos, dqs, dtable, dout, dpart, dcount);
    cs.end();
    for (const auto& p : std::vector<std::vector<std::uint32_t>>{
             {4095, 300}, {0, 0}, {63, 64}, {255, 1000}, {2047, 4095}, {1, 2}, {3000, 17}}) {
      CAPTURE(p[0]);
      CAPTURE(p[1]);
      pos = p;
      dev.upload(dpos, 0, std::as_bytes(std::span<const std::uint32_t>(pos)));
      cs.submit_and_wait();
      std::vector<float> expected(q.size());
      ref::paged_attention(shape, q, kp, vp, pos, qs, table, expected);
      CHECK(ref::nmse(download_floats(dout, q.size()), expected) < kAttention);
    }
  }
}

TEST_CASE("attention_split_keys: the fewest keys per range, 256 in whole key tiles, whatever the context") {
  CHECK(ops::attention_split_keys(128, 256) == 0);  // one range covers it
  CHECK(ops::attention_split_keys(128, 257) == 256);
  CHECK(ops::attention_split_keys(128, 4096) == 256);
  // A long configured context no longer widens every range: ranges follow the actual context.
  CHECK(ops::attention_split_keys(128, 131072) == 256);
  for (std::uint32_t hd : {6u, 64u, 128u, 256u, 512u}) {
    for (std::uint32_t ctx : {300u, 8191u, 100000u}) {
      const std::uint32_t keys = ops::attention_split_keys(hd, ctx);
      CAPTURE(hd);
      CAPTURE(ctx);
      CHECK(keys >= 256);
      CHECK(keys % 8 == 0);  // the smallest key tile (head_dim 512)
    }
  }
}

TEST_CASE_FIXTURE(DeviceTest, "attention and rope reject shapes they cannot run") {
  auto b = poisoned_floats(1 << 16, "b");
  auto cs = device().command_stream();
  cs.begin();
  ops::AttentionShape shape;
  shape.ntok = 1;
  shape.nseq = 1;
  shape.n_heads = 6;
  shape.n_kv_heads = 4;  // 6 % 4 != 0
  shape.head_dim = 64;
  shape.block_size = 16;
  shape.max_blocks_per_seq = 1;
  shape.scale = 0.125f;
  CHECK_THROWS_AS(ops::record_attention(kernels(), cs, shape, b, b, b, b, b, b, b),
                  std::logic_error);
  shape.n_kv_heads = 2;
  shape.head_dim = 63;
  CHECK_THROWS_AS(ops::record_attention(kernels(), cs, shape, b, b, b, b, b, b, b), Unsupported);
  CHECK_THROWS_AS(ops::record_rope(kernels(), cs, b, b, b, 1, 1, 63, ops::RopeStyle::normal),
                  Unsupported);
  shape.head_dim = 64;
  shape.ntok = 1 << 12;  // q would need 6 MiB
  CHECK_THROWS_AS(ops::record_attention(kernels(), cs, shape, b, b, b, b, b, b, b),
                  std::logic_error);
  cs.end();
}
