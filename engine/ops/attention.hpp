// The transformer-block kernels around attention: RoPE, SiLU-mul, bias add, KV write through a
// slot mapping, and causal GQA attention over paged K/V. Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"

namespace vkllm::ops {

// normal: rotate adjacent pairs (x[2i], x[2i+1]) (llama; GGUF llama weights are permuted for it);
// neox: rotate (x[i], x[i + head_dim/2]) (qwen2, qwen3).
enum class RopeStyle { normal, neox };

// In place on x: [ntok, nheads, head_dim] f32. Pair i of token t turns by angle
// positions[t] * inv_freq[i]; inv_freq: head_dim/2 f32 (the host folds base and llama3 scaling
// into it). positions: ntok u32.
// rot_dims (partial rotary; 0: head_dim): only the first rot_dims elements of each head rotate,
// as a head of that size (pairs within them; inv_freq has rot_dims / 2 entries).
void record_rope(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan positions,
                 BufferSpan inv_freq, std::uint32_t ntok, std::uint32_t nheads,
                 std::uint32_t head_dim, RopeStyle style, std::uint32_t rot_dims = 0);

// out[i] = silu(gate[i]) * up[i], i < n. out may alias gate or up.
void record_silu_mul(Kernels& k, CommandStream& cs, BufferSpan gate, BufferSpan up, BufferSpan out,
                     std::uint32_t n);

// out[r, c] = x[r, c] + bias[c] over [nrows, ncols]. out may alias x.
void record_add_bias(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan bias, BufferSpan out,
                     std::uint32_t ncols, std::uint32_t nrows);

// K/V element type in the paged pools: f16 where the device has 16-bit storage, else f32.
enum class KvType { f32, f16 };

// Pools are [num_slots, kv_dim] of KvType, num_slots = num_blocks * block_size; slot s of block b
// is row b * block_size + s. k, v: [ntok, kv_dim] f32. Row t goes to row slot_mapping[t]
// (ntok u32) of both pools.
void record_kv_write(Kernels& k, CommandStream& cs, KvType type, BufferSpan k_new, BufferSpan v_new,
                     BufferSpan slot_mapping, BufferSpan k_pool, BufferSpan v_pool,
                     std::uint32_t ntok, std::uint32_t kv_dim);

// The fused input stage of attention (shaders/rope_kv.comp): qkv [ntok, (n_heads + 2 n_kv_heads)
// * head_dim] f32, the fused QKV matmul's output, heads in the order q, k, v. Q heads (QK-normed
// with q_norm when qk_norm, then roped) go to q_out [ntok, n_heads, head_dim]; K heads (QK-normed
// with k_norm, roped) and V heads go to row slot_mapping[t] of the pools. Equal to record_rms_norm
// (qk_norm) + record_rope on q and k + record_kv_write, in one dispatch.
struct RopeKvShape {
  std::uint32_t ntok = 0;
  std::uint32_t n_heads = 0;
  std::uint32_t n_kv_heads = 0;
  std::uint32_t head_dim = 0;
  RopeStyle style = RopeStyle::normal;
  KvType kv_type = KvType::f32;
  bool qk_norm = false;  // q_norm and k_norm: head_dim f32 each
  float eps = 0;
  std::uint32_t rot_dims = 0;  // partial rotary, as record_rope's (0: head_dim)
  float mscale = 1.f;          // the rotated pairs of Q and K times this (LongRoPE's attention factor)
};
void record_rope_kv(Kernels& k, CommandStream& cs, const RopeKvShape& shape, BufferSpan qkv,
                    BufferSpan positions, BufferSpan inv_freq, BufferSpan slot_mapping,
                    BufferSpan q_out, BufferSpan k_pool, BufferSpan v_pool,
                    BufferSpan q_norm = {}, BufferSpan k_norm = {});

// Which kernel computes attention. rows: attention.comp, ROWS query rows a workgroup, two
// shared-memory reads a product (and the flash-decoding split). tiled: attention_tiled.comp,
// register blocks per invocation over subgroups of a fixed size, for prompt chunks; where the
// device has such a size (Tuning::attn_subgroup) and the head fits its shared memory. The two
// differ in the last bits (their sums run in different orders); each is deterministic on its
// own. coopmat: attention_coopmat.comp, the tiled kernel's work with Q K^T and P V as f16 x f16
// -> f32 cooperative matrices (Tuning::coopmat_m/n/k), where the device has them and the head
// size is a multiple of the matrix sizes; K, V and P are rounded to f16 first, Q is split into
// two f16 parts (S takes two products). automatic:
// for unsplit steps whose sequences average half a tile of rows or more (prompt chunks),
// coopmat where the matmuls take matrix cores (their automatic choice does, or VKLLM_KERNELS
// forces coopmat), else tiled; rows otherwise.
enum class AttentionKernel { automatic, rows, tiled, coopmat };
const char* to_string(AttentionKernel k);  // "auto", "rows", "tiled", "coopmat"

struct AttentionShape {
  std::uint32_t ntok = 0;        // query tokens in the flat batch
  std::uint32_t nseq = 0;        // sequences
  std::uint32_t n_heads = 0;     // query heads
  std::uint32_t n_kv_heads = 0;  // divides n_heads (GQA group = n_heads / n_kv_heads)
  std::uint32_t head_dim = 0;
  std::uint32_t block_size = 0;          // tokens per KV block
  std::uint32_t max_blocks_per_seq = 0;  // row length of block_table
  float scale = 0;                       // usually 1/sqrt(head_dim)
  KvType kv_type = KvType::f32;
  // Sliding window (> 0): a query at position p attends keys p - window + 1 .. p only. Keys before
  // it may sit in blocks already given back: the kernels skip the key tiles before every row's
  // window and give the masked keys of a partial tile p = 0, so such a block-table entry may name
  // any block whose K/V are finite (the null block, or one reused). 0: every key up to p.
  std::uint32_t window = 0;
  // Attention-logit soft-capping (> 0, Gemma 2): each scaled score s becomes softcap *
  // tanh(s / softcap) before the softmax. 0: none.
  float softcap = 0;
  // Flash-decoding: > 0 splits each sequence's keys into ranges computed by separate workgroups
  // and combined, through `partials`, by the last of them to finish (`counters`). The grid has min(32, longest context /
  // split_keys) ranges; a sequence's ranges split the keys it attends this step (its last
  // token's context, read from `positions` on the device) evenly, at least split_keys each. So
  // a short context on a long-context shape spreads over the ranges, and a replayed recording
  // follows the context as it grows. A row's result depends on its own sequence's context,
  // split_keys and the number of ranges (max_ranges: from the step's sequence count).
  std::uint32_t split_keys = 0;
  // At most this many ranges (0: 32): as many as fill the device (Tuning::attention_workgroups),
  // since each range is a workgroup per (sequence, KV head) whether it has keys or not.
  std::uint32_t max_ranges = 0;
  AttentionKernel kernel = AttentionKernel::automatic;
};

// The kernel record_attention runs for `shape` (automatic resolved); throws Unsupported when
// shape.kernel is tiled or coopmat and the device cannot run it for this head size, or with a
// split.
AttentionKernel attention_kernel(const Kernels& k, const AttentionShape& shape);

// The fewest keys per flash-decoding range for contexts up to max_context: 256 rounded up to the
// kernel's key tile; 0 when one range would cover max_context.
std::uint32_t attention_split_keys(std::uint32_t head_dim, std::uint32_t max_context);

// Bytes of `partials` record_attention needs for a split shape (0 when split_keys is 0).
std::uint64_t attention_partial_bytes(const AttentionShape& shape);

// Bytes of `counters` record_attention needs for a split shape: a u32 per (row tile, KV head),
// zero before the first dispatch; every dispatch leaves them zero (replays need nothing else).
std::uint64_t attention_counter_bytes(const AttentionShape& shape);

// Causal attention over paged K/V. q, out: [ntok, n_heads, head_dim] f32.
// query_start: nseq + 1 u32; tokens [query_start[s], query_start[s+1]) belong to sequence s.
// positions: ntok u32; token t of sequence s attends keys at positions 0..positions[t] of s
// (positions[t] - window + 1..positions[t] with a sliding window),
// position p living in pool row block_table[s * max_blocks_per_seq + p / block_size] *
// block_size + p % block_size. K/V of the batch's own tokens are written (kv_write) before this.
// Query head h reads KV head h / (n_heads / n_kv_heads). When shape.split_keys > 0: partials,
// attention_partial_bytes(shape) of scratch, and counters, attention_counter_bytes(shape) of
// zeros; unused otherwise. sinks (gpt-oss's attention sinks; none without a buffer): n_heads
// f32, a logit per query head that joins each of its rows' softmax as a score whose value is
// zero: out = sum_p exp(s_p) v_p / (sum_p exp(s_p) + exp(sinks[h])). Neither scaled nor capped.
void record_attention(Kernels& k, CommandStream& cs, const AttentionShape& shape, BufferSpan q,
                      BufferSpan k_pool, BufferSpan v_pool, BufferSpan positions,
                      BufferSpan query_start, BufferSpan block_table, BufferSpan out,
                      BufferSpan partials = {}, BufferSpan counters = {}, BufferSpan sinks = {});

}  // namespace vkllm::ops
