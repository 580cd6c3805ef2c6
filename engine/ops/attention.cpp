// Host side of shaders/rope.comp, kv_write.comp, attention.comp and the SiLU-mul / bias rows of
// elementwise.comp: shape checks, variant choice, tile sizes, grids. Knows no Vulkan, no models.
#include "engine/ops/attention.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.hpp"
#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {
namespace {

constexpr std::uint32_t kAttentionWorkgroup = 128;
constexpr std::uint32_t kMaxHeadDim = 512;

std::uint64_t kv_elem_bytes(KvType type) { return type == KvType::f16 ? 2 : 4; }
const char* kv_name(KvType type) { return type == KvType::f16 ? "f16" : "f32"; }

void require_fp16(const Kernels& k, KvType type, const char* op) {
  if (type == KvType::f16 && !k.caps().fp16_storage) {
    throw Unsupported(fmt::format("{} with an f16 KV cache needs 16-bit storage buffers", op));
  }
}

void require_range(const Kernels& k, std::uint64_t bytes, const char* op, const char* arg) {
  if (bytes > k.caps().max_storage_buffer_range) {
    throw std::logic_error(fmt::format("{}: {} binds {} bytes, over the device's {} per binding",
                                       op, arg, bytes, k.caps().max_storage_buffer_range));
  }
}

// Tile sizes of attention.comp for one head size, from a 28 KiB shared-memory budget (the Vulkan
// minimum is 32 KiB): Q tile ROWS x head_dim <= 2048 floats, K/V tile KEYS x head_dim <= 4096,
// scores ROWS x KEYS <= 1024. Powers of two, so ROWS divides the workgroup.
struct AttentionTiles {
  std::uint32_t rows;
  std::uint32_t keys;
  std::uint32_t shared_bytes;
};

AttentionTiles attention_tiles(std::uint32_t head_dim) {
  AttentionTiles t{};
  t.rows = std::min<std::uint32_t>(32, std::bit_floor(std::max<std::uint32_t>(2048 / head_dim, 1)));
  t.keys = std::min<std::uint32_t>(std::bit_floor(std::max<std::uint32_t>(4096 / head_dim, 1)),
                                   1024 / t.rows);
  const std::uint32_t stride = (head_dim / 2 + 1) * 8;  // padded row of pairs
  // Mirrors the shared declarations of attention.comp.
  t.shared_bytes = t.rows * stride + t.keys * stride + t.rows * t.keys * 4 +
                   2 * kAttentionWorkgroup * 4 + 3 * t.rows * 4 + t.keys * 4;
  return t;
}

// attention_tiled.comp's workgroup for one head size: Tuning::attn_* with the subgroups, then
// their rows, then the keys per invocation halved until the shared memory fits (mirrors the
// shader's declarations: Q rows of f32 pairs, the K/V tile as the pool stores it, the
// probabilities, a limit per row and a pool index per key). nullopt: the device has no fixed
// subgroup size, or nothing fits.
struct TiledAttention {
  std::uint32_t subgroup, subgroups, sg_rows, lane_keys;
  std::uint32_t rows() const { return subgroups * sg_rows; }
  std::uint32_t keys() const { return subgroup * lane_keys; }
};

std::optional<TiledAttention> tiled_attention(const Kernels& k, std::uint32_t head_dim,
                                              KvType kv_type) {
  const platform::Tuning& t = k.tuning();
  if (t.attn_subgroup == 0 || t.attn_subgroups == 0 || t.attn_sg_rows == 0 || t.attn_lane_keys == 0) {
    return std::nullopt;
  }
  TiledAttention a{t.attn_subgroup, t.attn_subgroups, t.attn_sg_rows, t.attn_lane_keys};
  const std::uint64_t stride = head_dim / 2 + 1;  // padded row of pairs
  const auto bytes = [&] {
    return a.rows() * stride * 8 + a.keys() * stride * (kv_type == KvType::f16 ? 4 : 8) +
           std::uint64_t{a.rows()} * a.keys() * 4 + a.rows() * 4 + a.keys() * 4;
  };
  const std::uint64_t limit = k.caps().shared_memory ? k.caps().shared_memory : 16384;
  while (bytes() > limit) {
    if (a.subgroups > 1) {
      a.subgroups /= 2;
    } else if (a.sg_rows > 1) {
      a.sg_rows /= 2;
    } else if (a.lane_keys > 1) {
      a.lane_keys /= 2;
    } else {
      return std::nullopt;
    }
  }
  return a;
}

// attention_coopmat.comp's workgroup for one head size: kCoopmatSubgroups subgroups of
// Tuning::coopmat_subgroup invocations, CM_M query rows each, key tiles of about 32 keys (FC
// matrices of CM_N), the subgroups then the key tile halved until the shared memory fits
// (mirrors the shader's declarations). nullopt: no usable matrices, a head size that is no
// multiple of them, or nothing fits. The sizes are a starting point: no GPU has measured them.
constexpr std::uint32_t kCoopmatSubgroups = 4;
struct CoopmatAttention {
  std::uint32_t subgroup, subgroups, m, n, k, fc;
  std::uint32_t rows() const { return subgroups * m; }
};

std::optional<CoopmatAttention> coopmat_attention(const Kernels& k, std::uint32_t head_dim) {
  const platform::Tuning& t = k.tuning();
  if (!coopmat_available(t) || t.coopmat_subgroup == 0) return std::nullopt;
  CoopmatAttention a{t.coopmat_subgroup, kCoopmatSubgroups, t.coopmat_m, t.coopmat_n, t.coopmat_k,
                     std::max<std::uint32_t>(1, 32 / t.coopmat_n)};
  // The shader: a softmax lane per row (m <= subgroup), whole matrices of outputs per lane.
  if (head_dim % a.k != 0 || head_dim % a.n != 0 || head_dim % 8 != 0 || a.m > a.subgroup ||
      (a.m * a.n) % a.subgroup != 0) {
    return std::nullopt;
  }
  const auto bytes = [&] {
    const std::uint64_t bc = a.fc * a.n, rows = a.rows(), hdp = head_dim + 8;
    return 2 * rows * hdp * 2 + 2 * bc * hdp * 2 + rows * (bc + 8) * 2 + rows * bc * 4 + rows * 12 + bc * 4;
  };
  const std::uint64_t limit = k.caps().shared_memory ? k.caps().shared_memory : 16384;
  while (bytes() > limit || (a.fc * a.n) % a.k != 0) {
    if (a.subgroups > 1) {
      a.subgroups /= 2;
    } else if (a.fc > 1 && (a.fc / 2 * a.n) % a.k == 0) {
      a.fc /= 2;
    } else {
      return std::nullopt;
    }
  }
  if (a.subgroups * a.subgroup > k.caps().props.max_workgroup_invocations) return std::nullopt;
  return a;
}

constexpr std::uint32_t kMaxSplits = 32;

// Row tiles of attention.comp's grid: sequence s owns tiles [qs[s] * group / rows + s, ...), so
// at most this many in all. Also the count of the split variant's arrival counters per KV head.
std::uint64_t row_tiles(const AttentionShape& sh) {
  return std::uint64_t{sh.ntok} * (sh.n_heads / sh.n_kv_heads) / attention_tiles(sh.head_dim).rows + sh.nseq;
}

// The K/V pools as the writing kernels bind them: whole rows of row_bytes, at most 2^32 - 1 of
// them (slot indices are 32-bit). Returns the slot count.
std::uint64_t bind_pools(const Kernels& k, BufferSpan& k_pool, BufferSpan& v_pool,
                         std::uint64_t row_bytes, const char* op) {
  require_bytes(k_pool, row_bytes, op, "k_pool");
  require_bytes(v_pool, row_bytes, op, "v_pool");
  const std::uint64_t slots = std::min({k_pool.resolved_size() / row_bytes,
                                        v_pool.resolved_size() / row_bytes,
                                        std::uint64_t{0xffffffffu}});
  k_pool.size = v_pool.size = slots * row_bytes;
  require_range(k, k_pool.size, op, "k_pool");
  return slots;
}

// Ranges in the grid: enough for the longest context the table holds at split_keys each, at
// most max_ranges and kMaxSplits (a sequence's ranges then grow past split_keys:
// split_range_keys).
std::uint32_t split_count(const AttentionShape& sh) {
  const std::uint64_t keys = std::uint64_t{sh.max_blocks_per_seq} * sh.block_size;
  const std::uint32_t cap = sh.max_ranges ? std::min(sh.max_ranges, kMaxSplits) : kMaxSplits;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(cap, (keys + sh.split_keys - 1) / sh.split_keys));
}

// The (x, z) grid of ntiles row tiles (x folded into z past the device's 1D limit), y = KV head.
std::array<std::uint32_t, 3> attention_grid(const Kernels& k, const AttentionShape& sh,
                                            std::uint64_t ntiles) {
  const auto& limits = k.caps().props.max_workgroup_count;
  const std::uint64_t gx = std::min<std::uint64_t>(ntiles, limits[0]);
  const std::uint64_t gz = (ntiles + gx - 1) / gx;
  if (gz > limits[2] || sh.n_kv_heads > limits[1] || ntiles > 0xffffffffull) {
    throw std::logic_error(fmt::format("attention: {} row tiles x {} KV heads exceed the grid",
                                       ntiles, sh.n_kv_heads));
  }
  return {static_cast<std::uint32_t>(gx), sh.n_kv_heads, static_cast<std::uint32_t>(gz)};
}

// One dispatch of a prompt-chunk kernel (tiled, coopmat): row tiles, no split.
void record_row_tiles(CommandStream& cs, const platform::Pipeline& p, const AttentionShape& sh,
                      std::uint32_t group, std::uint64_t kv_dim, std::uint64_t num_blocks,
                      std::uint64_t ntiles, std::array<std::uint32_t, 3> grid, BufferSpan q,
                      BufferSpan k_pool, BufferSpan v_pool, BufferSpan positions,
                      BufferSpan query_start, BufferSpan block_table, BufferSpan out,
                      BufferSpan sinks, std::uint32_t use_sinks, const char* kernel) {
  const PushAttention push{sh.ntok, sh.nseq, sh.n_heads, group, static_cast<std::uint32_t>(kv_dim),
                           sh.block_size, sh.max_blocks_per_seq, static_cast<std::uint32_t>(num_blocks),
                           static_cast<std::uint32_t>(ntiles), sh.scale, 0, 1, sh.window, sh.softcap,
                           use_sinks};
  cs.dispatch(p,
              {{q, Access::read}, {k_pool, Access::read}, {v_pool, Access::read},
               {positions, Access::read}, {query_start, Access::read},
               {block_table, Access::read}, {out, Access::write}, {sinks, Access::read}},
              push, grid,
              fmt::format("attention_{}_{} ntok={} nseq={} heads={}/{} hd={}", kernel,
                          kv_name(sh.kv_type), sh.ntok, sh.nseq, sh.n_heads, sh.n_kv_heads,
                          sh.head_dim));
}

}  // namespace

const char* to_string(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::automatic: return "auto";
    case AttentionKernel::rows: return "rows";
    case AttentionKernel::tiled: return "tiled";
    case AttentionKernel::coopmat: return "coopmat";
  }
  return "?";
}

AttentionKernel attention_kernel(const Kernels& k, const AttentionShape& sh) {
  if (sh.kernel == AttentionKernel::rows) return AttentionKernel::rows;
  const auto coopmat = coopmat_attention(k, sh.head_dim);
  if (sh.kernel == AttentionKernel::coopmat) {
    if (sh.split_keys > 0) {
      throw Unsupported("attention: the cooperative-matrix kernel has no flash-decoding split");
    }
    if (!coopmat) {
      throw Unsupported(fmt::format(
          "attention: {} has no cooperative-matrix attention for head_dim {} (it needs f16 "
          "matrices whose sizes divide the head, and the shaders in the build)",
          k.caps().props.name, sh.head_dim));
    }
    return AttentionKernel::coopmat;
  }
  const auto tiled = tiled_attention(k, sh.head_dim, sh.kv_type);
  if (sh.kernel == AttentionKernel::tiled) {
    if (sh.split_keys > 0) {
      throw Unsupported("attention: the tiled kernel has no flash-decoding split");
    }
    if (!tiled) {
      throw Unsupported(fmt::format("attention: the tiled kernel needs a subgroup size the device "
                                    "fixes or lets a pipeline require, and head_dim {} within its "
                                    "{} bytes of shared memory", sh.head_dim, k.caps().shared_memory));
    }
    return AttentionKernel::tiled;
  }
  // Half a tile of rows per sequence on average: prompt chunks, not decode steps.
  const std::uint64_t rows = std::uint64_t{sh.ntok} * (sh.n_heads / std::max(sh.n_kv_heads, 1u));
  // Matrix cores where the matmuls take them: their automatic choice does on this device, or
  // they are forced.
  const platform::Tuning& t = k.tuning();
  const bool matrix_cores = k.choice() == KernelChoice::coopmat ||
                            (k.choice() == KernelChoice::automatic && t.coopmat_min_tokens != 0);
  if (sh.split_keys == 0 && coopmat && matrix_cores &&
      2 * rows >= std::uint64_t{coopmat->rows()} * sh.nseq) {
    return AttentionKernel::coopmat;
  }
  const bool pays = tiled && 2 * rows >= std::uint64_t{tiled->rows()} * sh.nseq;
  return sh.split_keys == 0 && pays ? AttentionKernel::tiled : AttentionKernel::rows;
}

std::uint32_t attention_split_keys(std::uint32_t head_dim, std::uint32_t max_context) {
  constexpr std::uint32_t kMinKeys = 256;
  const std::uint32_t tile = attention_tiles(std::clamp<std::uint32_t>(head_dim, 2, kMaxHeadDim)).keys;
  const std::uint32_t keys = (kMinKeys + tile - 1) / tile * tile;
  return keys >= max_context ? 0 : keys;
}

std::uint64_t attention_partial_bytes(const AttentionShape& sh) {
  if (sh.split_keys == 0) return 0;
  // O rows of head_dim floats, then one (m, l) pair per (token, head, range).
  return std::uint64_t{sh.ntok} * sh.n_heads * split_count(sh) * (sh.head_dim + 2) * 4;
}

std::uint64_t attention_counter_bytes(const AttentionShape& sh) {
  if (sh.split_keys == 0 || sh.n_kv_heads == 0) return 0;
  return row_tiles(sh) * sh.n_kv_heads * 4;
}

void record_rope(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan positions,
                 BufferSpan inv_freq, std::uint32_t ntok, std::uint32_t nheads,
                 std::uint32_t head_dim, RopeStyle style, std::uint32_t rot_dims) {
  if (head_dim == 0 || head_dim % 2 != 0) {
    throw Unsupported(fmt::format("rope: head_dim {} is not a positive even number", head_dim));
  }
  if (rot_dims == 0) rot_dims = head_dim;
  if (rot_dims % 2 != 0 || rot_dims > head_dim) {
    throw Unsupported(fmt::format("rope: {} rotary dims of a head of {}", rot_dims, head_dim));
  }
  const std::uint64_t pairs = std::uint64_t{ntok} * nheads * (head_dim / 2);
  if (pairs > 0xffffffffu) {
    throw std::logic_error(fmt::format("rope: [{}, {}, {}] exceeds 2^32 pairs", ntok, nheads,
                                       head_dim));
  }
  if (pairs == 0) return;
  const std::uint64_t xbytes = pairs * 8;
  require_bytes(x, xbytes, "rope", "x");
  require_bytes(positions, std::uint64_t{ntok} * 4, "rope", "positions");
  require_bytes(inv_freq, std::uint64_t{rot_dims / 2} * 4, "rope", "inv_freq");
  x.size = xbytes;
  positions.size = std::uint64_t{ntok} * 4;
  inv_freq.size = std::uint64_t{rot_dims / 2} * 4;
  const bool neox = style == RopeStyle::neox;
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(neox ? shaders::ShaderId::rope_neox_f32
                                  : shaders::ShaderId::rope_normal_f32,
                             3, sizeof(PushRope), {wg});
  const PushRope push{ntok, nheads, head_dim / 2, rot_dims / 2};
  cs.dispatch(p, {{x, Access::read_write}, {positions, Access::read}, {inv_freq, Access::read}},
              push, {group_count(k, pairs, wg), 1, 1},
              fmt::format("rope_{} [{}, {}, {}]", neox ? "neox" : "normal", ntok, nheads,
                          head_dim));
}

void record_silu_mul(Kernels& k, CommandStream& cs, BufferSpan gate, BufferSpan up, BufferSpan out,
                     std::uint32_t n) {
  if (n == 0) return;
  const std::uint64_t bytes = std::uint64_t{n} * 4;
  require_bytes(gate, bytes, "silu_mul", "gate");
  require_bytes(up, bytes, "silu_mul", "up");
  require_bytes(out, bytes, "silu_mul", "out");
  gate.size = up.size = out.size = bytes;
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::silu_mul_f32, 3, sizeof(PushElementwise), {wg});
  const PushElementwise push{n};
  cs.dispatch(p, {{gate, Access::read}, {up, Access::read}, {out, Access::write}}, push,
              {group_count(k, n, wg), 1, 1}, fmt::format("silu_mul_f32 n={}", n));
}

void record_add_bias(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan bias, BufferSpan out,
                     std::uint32_t ncols, std::uint32_t nrows) {
  const std::uint64_t n = std::uint64_t{ncols} * nrows;
  if (n > 0xffffffffu) {
    throw std::logic_error(fmt::format("add_bias: [{}, {}] exceeds 2^32 elements", nrows, ncols));
  }
  if (n == 0) return;
  require_bytes(x, n * 4, "add_bias", "x");
  require_bytes(bias, std::uint64_t{ncols} * 4, "add_bias", "bias");
  require_bytes(out, n * 4, "add_bias", "out");
  x.size = out.size = n * 4;
  bias.size = std::uint64_t{ncols} * 4;
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(shaders::ShaderId::add_bias_f32, 3, sizeof(PushBias), {wg});
  const PushBias push{static_cast<std::uint32_t>(n), ncols};
  cs.dispatch(p, {{x, Access::read}, {bias, Access::read}, {out, Access::write}}, push,
              {group_count(k, n, wg), 1, 1}, fmt::format("add_bias_f32 [{}, {}]", nrows, ncols));
}

void record_kv_write(Kernels& k, CommandStream& cs, KvType type, BufferSpan k_new, BufferSpan v_new,
                     BufferSpan slot_mapping, BufferSpan k_pool, BufferSpan v_pool,
                     std::uint32_t ntok, std::uint32_t kv_dim) {
  require_fp16(k, type, "kv_write");
  const std::uint64_t n = std::uint64_t{ntok} * kv_dim;
  if (n > 0xffffffffu) {
    throw std::logic_error(fmt::format("kv_write: [{}, {}] exceeds 2^32 elements", ntok, kv_dim));
  }
  if (n == 0) return;
  const std::uint64_t row_bytes = std::uint64_t{kv_dim} * kv_elem_bytes(type);
  require_bytes(k_new, n * 4, "kv_write", "k");
  require_bytes(v_new, n * 4, "kv_write", "v");
  require_bytes(slot_mapping, std::uint64_t{ntok} * 4, "kv_write", "slot_mapping");
  const std::uint64_t slots = bind_pools(k, k_pool, v_pool, row_bytes, "kv_write");
  k_new.size = v_new.size = n * 4;
  slot_mapping.size = std::uint64_t{ntok} * 4;
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto id = type == KvType::f16 ? shaders::ShaderId::kv_write_f16
                                      : shaders::ShaderId::kv_write_f32;
  const auto& p = k.pipeline(id, 5, sizeof(PushKvWrite), {wg});
  const PushKvWrite push{ntok, kv_dim, static_cast<std::uint32_t>(slots)};
  // The pools are written at ntok rows only; the tracker sees the whole range, which orders the
  // write before any later attention read of the pool.
  cs.dispatch(p,
              {{k_new, Access::read},
               {v_new, Access::read},
               {slot_mapping, Access::read},
               {k_pool, Access::write},
               {v_pool, Access::write}},
              push, {group_count(k, n, wg), 1, 1},
              fmt::format("kv_write_{} [{}, {}]", kv_name(type), ntok, kv_dim));
}

void record_rope_kv(Kernels& k, CommandStream& cs, const RopeKvShape& sh, BufferSpan qkv,
                    BufferSpan positions, BufferSpan inv_freq, BufferSpan slot_mapping,
                    BufferSpan q_out, BufferSpan k_pool, BufferSpan v_pool, BufferSpan q_norm,
                    BufferSpan k_norm) {
  require_fp16(k, sh.kv_type, "rope_kv");
  if (sh.head_dim == 0 || sh.head_dim % 2 != 0) {
    throw Unsupported(fmt::format("rope_kv: head_dim {} is not a positive even number", sh.head_dim));
  }
  const std::uint32_t rot_dims = sh.rot_dims ? sh.rot_dims : sh.head_dim;
  if (rot_dims % 2 != 0 || rot_dims > sh.head_dim) {
    throw Unsupported(fmt::format("rope_kv: {} rotary dims of a head of {}", rot_dims, sh.head_dim));
  }
  const std::uint64_t heads = std::uint64_t{sh.n_heads} + 2ull * sh.n_kv_heads;
  const std::uint64_t stride = heads * sh.head_dim;
  const std::uint64_t kv_dim = std::uint64_t{sh.n_kv_heads} * sh.head_dim;
  const auto& limits = k.caps().props.max_workgroup_count;
  if (sh.n_kv_heads == 0 || heads > limits[0] || sh.ntok > limits[1] ||
      std::uint64_t{sh.ntok} * stride > 0xffffffffu) {
    throw std::logic_error(fmt::format("rope_kv: [{} tokens, {} heads of {}] exceeds the grid",
                                       sh.ntok, heads, sh.head_dim));
  }
  if (sh.ntok == 0) return;
  const std::uint64_t row_bytes = kv_dim * kv_elem_bytes(sh.kv_type);
  const std::uint64_t qbytes = std::uint64_t{sh.ntok} * sh.n_heads * sh.head_dim * 4;
  require_bytes(qkv, std::uint64_t{sh.ntok} * stride * 4, "rope_kv", "qkv");
  require_bytes(positions, std::uint64_t{sh.ntok} * 4, "rope_kv", "positions");
  require_bytes(inv_freq, std::uint64_t{rot_dims / 2} * 4, "rope_kv", "inv_freq");
  require_bytes(slot_mapping, std::uint64_t{sh.ntok} * 4, "rope_kv", "slot_mapping");
  require_bytes(q_out, qbytes, "rope_kv", "q_out");
  const std::uint64_t slots = bind_pools(k, k_pool, v_pool, row_bytes, "rope_kv");
  qkv.size = std::uint64_t{sh.ntok} * stride * 4;
  positions.size = slot_mapping.size = std::uint64_t{sh.ntok} * 4;
  inv_freq.size = std::uint64_t{rot_dims / 2} * 4;
  q_out.size = qbytes;
  if (sh.qk_norm) {
    require_bytes(q_norm, std::uint64_t{sh.head_dim} * 4, "rope_kv", "q_norm");
    require_bytes(k_norm, std::uint64_t{sh.head_dim} * 4, "rope_kv", "k_norm");
    q_norm.size = k_norm.size = std::uint64_t{sh.head_dim} * 4;
  } else {
    q_norm = k_norm = inv_freq;  // unread: one binding layout for both
  }
  const bool neox = sh.style == RopeStyle::neox;
  const bool f16 = sh.kv_type == KvType::f16;
  using shaders::ShaderId;
  const ShaderId id = neox ? (f16 ? ShaderId::rope_kv_neox_f16 : ShaderId::rope_kv_neox_f32)
                           : (f16 ? ShaderId::rope_kv_normal_f16 : ShaderId::rope_kv_normal_f32);
  // Heads share a workgroup when they are small (rope_kv.comp: HPW heads of LANES invocations).
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const std::uint32_t hpw = std::max<std::uint32_t>(1, wg / (sh.head_dim / 2));
  const auto& p = k.pipeline(id, 9, sizeof(PushRopeKv), {wg, sh.qk_norm ? 1u : 0u});
  const PushRopeKv push{sh.ntok,     sh.n_heads, sh.n_kv_heads, sh.head_dim / 2,
                        static_cast<std::uint32_t>(stride), static_cast<std::uint32_t>(slots),
                        sh.eps,     rot_dims / 2, sh.mscale};
  cs.dispatch(p,
              {{qkv, Access::read},
               {positions, Access::read},
               {inv_freq, Access::read},
               {slot_mapping, Access::read},
               {q_out, Access::write},
               {k_pool, Access::write},
               {v_pool, Access::write},
               {q_norm, Access::read},
               {k_norm, Access::read}},
              push, {static_cast<std::uint32_t>((heads + hpw - 1) / hpw), sh.ntok, 1},
              fmt::format("rope_kv_{}_{}{} [{}, {}+{}+{}, {}]", neox ? "neox" : "normal",
                          kv_name(sh.kv_type), sh.qk_norm ? " qk_norm" : "", sh.ntok, sh.n_heads,
                          sh.n_kv_heads, sh.n_kv_heads, sh.head_dim));
}

void record_attention(Kernels& k, CommandStream& cs, const AttentionShape& shape, BufferSpan q,
                      BufferSpan k_pool, BufferSpan v_pool, BufferSpan positions,
                      BufferSpan query_start, BufferSpan block_table, BufferSpan out,
                      BufferSpan partials, BufferSpan counters, BufferSpan sinks) {
  const AttentionShape& sh = shape;
  require_fp16(k, sh.kv_type, "attention");
  if (sh.head_dim == 0 || sh.head_dim % 2 != 0 || sh.head_dim > kMaxHeadDim) {
    throw Unsupported(fmt::format("attention: head_dim {} (needs an even size up to {})",
                                  sh.head_dim, kMaxHeadDim));
  }
  if (sh.n_kv_heads == 0 || sh.n_heads % sh.n_kv_heads != 0) {
    throw std::logic_error(fmt::format("attention: {} query heads are not a multiple of {} KV heads",
                                       sh.n_heads, sh.n_kv_heads));
  }
  if (sh.block_size == 0 || sh.max_blocks_per_seq == 0) {
    throw std::logic_error(fmt::format("attention: block_size {} and max_blocks_per_seq {}",
                                       sh.block_size, sh.max_blocks_per_seq));
  }
  const std::uint32_t key_tile = attention_tiles(sh.head_dim).keys;
  if (sh.split_keys % key_tile != 0) {
    throw std::logic_error(fmt::format("attention: split_keys {} is not a multiple of the key "
                                       "tile {}", sh.split_keys, key_tile));
  }
  if (sh.ntok == 0 || sh.nseq == 0) return;

  const std::uint32_t group = sh.n_heads / sh.n_kv_heads;
  const std::uint64_t kv_dim = std::uint64_t{sh.n_kv_heads} * sh.head_dim;
  const std::uint64_t qbytes = std::uint64_t{sh.ntok} * sh.n_heads * sh.head_dim * 4;
  const std::uint64_t block_bytes = std::uint64_t{sh.block_size} * kv_dim * kv_elem_bytes(sh.kv_type);
  const std::uint64_t table_bytes = std::uint64_t{sh.nseq} * sh.max_blocks_per_seq * 4;
  require_bytes(q, qbytes, "attention", "q");
  require_bytes(out, qbytes, "attention", "out");
  require_bytes(k_pool, block_bytes, "attention", "k_pool");
  require_bytes(v_pool, block_bytes, "attention", "v_pool");
  require_bytes(positions, std::uint64_t{sh.ntok} * 4, "attention", "positions");
  require_bytes(query_start, std::uint64_t{sh.nseq + 1} * 4, "attention", "query_start");
  require_bytes(block_table, table_bytes, "attention", "block_table");
  const std::uint32_t use_sinks = sinks.buffer ? 1u : 0u;
  if (sinks.buffer) {
    require_bytes(sinks, std::uint64_t{sh.n_heads} * 4, "attention", "sinks");
    sinks.size = std::uint64_t{sh.n_heads} * 4;
  }
  const std::uint64_t num_blocks =
      std::min(k_pool.resolved_size(), v_pool.resolved_size()) / block_bytes;
  q.size = out.size = qbytes;
  if (!use_sinks) sinks = q;  // the binding must name a buffer; the kernels do not read it
  k_pool.size = v_pool.size = num_blocks * block_bytes;
  positions.size = std::uint64_t{sh.ntok} * 4;
  query_start.size = std::uint64_t{sh.nseq + 1} * 4;
  block_table.size = table_bytes;
  require_range(k, k_pool.size, "attention", "k_pool");
  if (num_blocks * sh.block_size * kv_dim > 0xffffffffull ||
      std::uint64_t{sh.max_blocks_per_seq} * sh.block_size > 0xffffffffull) {
    throw std::logic_error("attention: pool or block table indices exceed 32 bits");
  }

  const AttentionKernel kernel = attention_kernel(k, sh);
  if (kernel == AttentionKernel::coopmat) {
    const CoopmatAttention a = *coopmat_attention(k, sh.head_dim);
    const std::uint64_t ntiles = std::uint64_t{sh.ntok} * group / a.rows() + sh.nseq;
    const auto grid = attention_grid(k, sh, ntiles);
    const auto blob = shaders::find_shader(sh.kv_type == KvType::f16 ? "attention_coopmat_f16"
                                                                     : "attention_coopmat_f32");
    if (!blob) throw std::logic_error("attention: the build has no cooperative-matrix variant");
    const auto& p = k.pipeline(blob->id, 8, sizeof(PushAttention),
                               {a.subgroups * a.subgroup, sh.head_dim, a.subgroup, a.m, a.n, a.k, a.fc},
                               k.tuning().coopmat_require_subgroup ? a.subgroup : 0);
    record_row_tiles(cs, p, sh, group, kv_dim, num_blocks, ntiles, grid, q, k_pool, v_pool,
                     positions, query_start, block_table, out, sinks, use_sinks, "coopmat");
    return;
  }
  if (kernel == AttentionKernel::tiled) {
    const TiledAttention a = *tiled_attention(k, sh.head_dim, sh.kv_type);
    const std::uint64_t ntiles = std::uint64_t{sh.ntok} * group / a.rows() + sh.nseq;
    const auto grid = attention_grid(k, sh, ntiles);
    const auto& p = k.pipeline(sh.kv_type == KvType::f16 ? shaders::ShaderId::attention_tiled_f16
                                                         : shaders::ShaderId::attention_tiled_f32,
                               8, sizeof(PushAttention),
                               {a.subgroups * a.subgroup, sh.head_dim, a.subgroup, a.sg_rows, a.lane_keys},
                               k.tuning().attn_require_subgroup ? a.subgroup : 0);
    record_row_tiles(cs, p, sh, group, kv_dim, num_blocks, ntiles, grid, q, k_pool, v_pool,
                     positions, query_start, block_table, out, sinks, use_sinks, "tiled");
    return;
  }

  const AttentionTiles tiles = attention_tiles(sh.head_dim);
  if (tiles.shared_bytes > k.caps().shared_memory) {
    throw Unsupported(fmt::format("attention: head_dim {} needs {} bytes of shared memory, the "
                                  "device has {}", sh.head_dim, tiles.shared_bytes,
                                  k.caps().shared_memory));
  }
  const std::uint64_t ntiles = row_tiles(sh);
  const auto& limits = k.caps().props.max_workgroup_count;
  const std::uint64_t gx = std::min<std::uint64_t>(ntiles, limits[0]);
  const std::uint64_t gz = (ntiles + gx - 1) / gx;
  const bool split = sh.split_keys > 0;
  const std::uint32_t nsplit = split ? split_count(sh) : 1;
  if (gz > limits[2] || std::uint64_t{sh.n_kv_heads} * nsplit > limits[1] ||
      ntiles > 0xffffffffull) {
    throw std::logic_error(fmt::format("attention: {} row tiles x {} KV heads x {} ranges exceed "
                                       "the grid", ntiles, sh.n_kv_heads, nsplit));
  }
  if (split) {
    require_bytes(partials, attention_partial_bytes(sh), "attention", "partials");
    partials.size = attention_partial_bytes(sh);
    require_range(k, partials.size, "attention", "partials");
    require_bytes(counters, attention_counter_bytes(sh), "attention", "counters");
    counters.size = attention_counter_bytes(sh);
  }

  const auto id = split ? (sh.kv_type == KvType::f16 ? shaders::ShaderId::attention_split_f16
                                                     : shaders::ShaderId::attention_split_f32)
                        : (sh.kv_type == KvType::f16 ? shaders::ShaderId::attention_f16
                                                     : shaders::ShaderId::attention_f32);
  const auto& p = k.pipeline(id, split ? 10 : 8, sizeof(PushAttention),
                             {kAttentionWorkgroup, sh.head_dim, tiles.rows, tiles.keys});
  const PushAttention push{sh.ntok,
                           sh.nseq,
                           sh.n_heads,
                           group,
                           static_cast<std::uint32_t>(kv_dim),
                           sh.block_size,
                           sh.max_blocks_per_seq,
                           static_cast<std::uint32_t>(num_blocks),
                           static_cast<std::uint32_t>(ntiles),
                           sh.scale,
                           sh.split_keys,
                           nsplit,
                           sh.window,
                           sh.softcap,
                           use_sinks};
  std::vector<platform::Binding> bindings{{q, Access::read},           {k_pool, Access::read},
                                          {v_pool, Access::read},      {positions, Access::read},
                                          {query_start, Access::read}, {block_table, Access::read},
                                          {out, Access::write},         {sinks, Access::read}};
  if (split) {
    bindings.push_back({partials, Access::read_write});
    bindings.push_back({counters, Access::read_write});
  }
  cs.dispatch(p, bindings, std::as_bytes(std::span<const PushAttention>(&push, 1)),
              {static_cast<std::uint32_t>(gx), sh.n_kv_heads * nsplit, static_cast<std::uint32_t>(gz)},
              fmt::format("attention_{}{} ntok={} nseq={} heads={}/{} hd={}{}", split ? "split_" : "",
                          kv_name(sh.kv_type), sh.ntok, sh.nseq, sh.n_heads, sh.n_kv_heads,
                          sh.head_dim, split ? fmt::format(" ranges={}", nsplit) : std::string()));
}

}  // namespace vkllm::ops
