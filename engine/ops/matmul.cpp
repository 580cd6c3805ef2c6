// Host side of shaders/matmul.comp and shaders/get_rows.comp: variant by weight type, token
// tiling, one dispatch per weight chunk, shape checks. Knows no Vulkan, no models.
#include "engine/ops/matmul.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "common/error.hpp"
#include "engine/ops/moe.hpp"
#include "engine/ops/push_constants.hpp"

namespace vkllm::ops {
namespace {

using gguf::TensorType;
using shaders::ShaderId;

struct Variants {
  ShaderId matmul;
  ShaderId tiled;
  ShaderId get_rows;
};

// One matmul, one tiled matmul and one get_rows variant per weight type (shaders/CMakeLists.txt).
std::optional<Variants> variants(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return Variants{ShaderId::matmul_f32, ShaderId::matmul_tiled_f32, ShaderId::get_rows_f32};
    case TensorType::kF16:
      return Variants{ShaderId::matmul_f16, ShaderId::matmul_tiled_f16, ShaderId::get_rows_f16};
    case TensorType::kBF16:
      return Variants{ShaderId::matmul_bf16, ShaderId::matmul_tiled_bf16, ShaderId::get_rows_bf16};
    case TensorType::kQ8_0:
      return Variants{ShaderId::matmul_q8_0, ShaderId::matmul_tiled_q8_0, ShaderId::get_rows_q8_0};
    case TensorType::kQ4_0:
      return Variants{ShaderId::matmul_q4_0, ShaderId::matmul_tiled_q4_0, ShaderId::get_rows_q4_0};
    case TensorType::kQ4_1:
      return Variants{ShaderId::matmul_q4_1, ShaderId::matmul_tiled_q4_1, ShaderId::get_rows_q4_1};
    case TensorType::kQ5_0:
      return Variants{ShaderId::matmul_q5_0, ShaderId::matmul_tiled_q5_0, ShaderId::get_rows_q5_0};
    case TensorType::kQ5_1:
      return Variants{ShaderId::matmul_q5_1, ShaderId::matmul_tiled_q5_1, ShaderId::get_rows_q5_1};
    case TensorType::kQ4_K:
      return Variants{ShaderId::matmul_q4_k, ShaderId::matmul_tiled_q4_k, ShaderId::get_rows_q4_k};
    case TensorType::kQ5_K:
      return Variants{ShaderId::matmul_q5_k, ShaderId::matmul_tiled_q5_k, ShaderId::get_rows_q5_k};
    case TensorType::kQ6_K:
      return Variants{ShaderId::matmul_q6_k, ShaderId::matmul_tiled_q6_k, ShaderId::get_rows_q6_k};
    case TensorType::kQ2_K:
      return Variants{ShaderId::matmul_q2_k, ShaderId::matmul_tiled_q2_k, ShaderId::get_rows_q2_k};
    case TensorType::kQ3_K:
      return Variants{ShaderId::matmul_q3_k, ShaderId::matmul_tiled_q3_k, ShaderId::get_rows_q3_k};
    case TensorType::kIQ4_NL:
      return Variants{ShaderId::matmul_iq4_nl, ShaderId::matmul_tiled_iq4_nl, ShaderId::get_rows_iq4_nl};
    case TensorType::kIQ4_XS:
      return Variants{ShaderId::matmul_iq4_xs, ShaderId::matmul_tiled_iq4_xs, ShaderId::get_rows_iq4_xs};
    case TensorType::kMXFP4:
      return Variants{ShaderId::matmul_mxfp4, ShaderId::matmul_tiled_mxfp4, ShaderId::get_rows_mxfp4};
    default: return std::nullopt;
  }
}

Variants checked_variants(TensorType type, const char* op) {
  const auto v = variants(type);
  if (!v) {
    throw Unsupported(fmt::format("{}: no kernel reads weights of type {}", op,
                                  gguf::type_name(type)));
  }
  return *v;
}

// The view's chunks cover [0, nrows) in order, each holding its rows (and the shaders' padding).
void check_view(const WeightView& w, const char* op) {
  const std::uint64_t row_bytes = weight_row_bytes(w.type, w.ncols);
  const std::uint64_t pad = w.type == TensorType::kF32 ? 0 : 4;
  std::uint32_t next = 0;
  for (const WeightChunk& c : w.chunks) {
    if (c.row0 != next || c.nrows == 0) {
      throw std::logic_error(fmt::format("{}: weight chunk at row {} ({} rows) does not follow "
                                         "row {}", op, c.row0, c.nrows, next));
    }
    require_bytes(c.span, (c.nrows * row_bytes + 3) / 4 * 4 + pad, op, "weight chunk");
    next += c.nrows;
  }
  if (next != w.nrows || w.ncols == 0) {
    throw std::logic_error(fmt::format("{}: weight chunks cover {} of [{}, {}]", op, next, w.nrows,
                                       w.ncols));
  }
}

// Splits `groups` workgroups into x (at most the device's limit) and z.
std::array<std::uint32_t, 2> fold(const Kernels& k, std::uint64_t groups, int dim,
                                  const char* op) {
  const auto& lim = k.caps().props.max_workgroup_count;
  const std::uint64_t x = std::min<std::uint64_t>(groups, lim[dim]);
  const std::uint64_t z = (groups + x - 1) / x;
  if (z > lim[2]) {
    throw std::logic_error(fmt::format("{}: {} workgroups exceed the device's grid", op, groups));
  }
  return {static_cast<std::uint32_t>(x), static_cast<std::uint32_t>(z)};
}

std::uint32_t max_subgroups(const Kernels& k, std::uint32_t workgroup) {
  const std::uint32_t smallest = std::min(k.caps().min_subgroup_size, k.caps().subgroup_size);
  return std::max<std::uint32_t>(workgroup / std::max<std::uint32_t>(smallest, 1), 1);
}

// A GEMV or tiled-GEMM pipeline's specialization constants, and the output rows x tokens one of
// its workgroups covers.
struct KernelLayout {
  std::vector<std::uint32_t> spec;
  std::uint32_t group_rows = 0, tile = 0;
};

// BM x BN output tiles (matmul_tiled.comp); UNIFORM_TG when every subgroup the device may run
// lies inside one token group.
KernelLayout tiled_layout(const Kernels& k) {
  const platform::Tuning& t = k.tuning();
  const std::uint32_t bm = t.tiled_rows, bn = t.tiled_tokens;
  const std::uint32_t tm = t.tiled_thread_rows, tn = t.tiled_thread_tokens;
  if (tm == 0 || tm % 2 != 0 || tn == 0 || tn % 4 != 0 || bm % tm != 0 || bn % tn != 0) {
    throw std::logic_error(fmt::format("matmul: tiled tuning {}x{} tiles of {}x{} blocks", bm,
                                       bn, tm, tn));
  }
  const std::uint32_t row_groups = bm / tm;
  const std::uint32_t sg_max = std::max(k.caps().max_subgroup_size, k.caps().subgroup_size);
  const bool uniform_tg = sg_max > 0 && row_groups % sg_max == 0;
  return {{row_groups * (bn / tn), bm, bn, tm, tn, uniform_tg ? 1u : 0u}, bm, bn};
}

// The GEMV (matmul.comp) for ntok tokens. Decode: one token, a few rows per workgroup (split
// along K over its invocations), or on CPU devices a few whole rows per invocation
// (matvec_lane_rows: a workgroup then covers workgroup x rows rows; matmul.comp, LANE_ROWS). More
// tokens: tiles of 8, so that each decoded weight element serves the whole tile; a partial tile
// skips its missing tokens (a uniform branch), so smaller tiles would only save registers, at
// the cost of more pipelines. A paired epilogue keeps (gate, up) pairs whole.
KernelLayout gemv_layout(const Kernels& k, std::uint32_t ntok, Epilogue e) {
  const platform::Tuning& t = k.tuning();
  const std::uint32_t wg = t.matvec_workgroup;
  const std::uint32_t tile = ntok == 1 ? 1 : t.matmul_tokens;
  std::uint32_t rows = ntok == 1 ? t.matvec_rows : t.matmul_rows;
  if (paired(e)) rows = (rows + 1) / 2 * 2;
  const bool lane_rows = t.matvec_lane_rows;
  return {{wg, rows, tile, max_subgroups(k, wg), lane_rows ? 1u : 0u}, lane_rows ? wg * rows : rows, tile};
}

// A weight type's variant of a family built only where its toolchain probe passed
// (shaders/CMakeLists.txt: matmul_coopmat_<type>, matmul_intdot_<type>), found by name: the
// family's prefix and the type suffix of its GEMV variant (matmul_q4_k -> q4_k).
std::optional<shaders::ShaderBlob> optional_variant(std::string_view family, const Variants& v) {
  constexpr std::string_view kGemv = "matmul_";
  return shaders::find_shader(std::string(family) +
                              std::string(shaders::shader(v.matmul).name.substr(kGemv.size())));
}

// One dispatch per weight chunk of any matmul kernel: a grid of workgroups of bm rows (folded
// past the 1D limit) by workgroups of bn tokens.
template <typename Label>
void record_grid(Kernels& k, CommandStream& cs, const WeightView& w, const platform::Pipeline& p,
                  std::uint32_t bm, std::uint32_t bn, std::uint32_t ntok, std::uint32_t y_stride,
                  const MatmulOut& out, BufferSpan x, BufferSpan y, Access y_access,
                  BufferSpan aux, const Label& label, const char* path) {
  const std::uint32_t tiles = (ntok + bn - 1) / bn;
  if (tiles > k.caps().props.max_workgroup_count[1]) {
    throw std::logic_error(fmt::format("matmul: {} tokens exceed one dispatch", ntok));
  }
  for (std::size_t i = 0; i < w.chunks.size(); ++i) {
    const WeightChunk& c = w.chunks[i];
    const auto [gx, gz] = fold(k, (c.nrows + bm - 1) / bm, 0, "matmul");
    const PushMatmul push{w.ncols, c.nrows, c.row0, y_stride, ntok, out.y0,
                          static_cast<std::uint32_t>(out.epilogue)};
    cs.dispatch(p, {{c.span, Access::read}, {x, Access::read}, {y, y_access}, {aux, Access::read}},
                push, {gx, tiles, gz}, label(i, path));
  }
}

// The aux binding of a matmul: `floats` of the bias where the epilogue reads one (bias,
// swiglu_oai), else x again (one layout per variant, nothing read).
BufferSpan epilogue_aux(Epilogue e, BufferSpan bias, BufferSpan x, std::uint64_t floats, const char* op) {
  if (e != Epilogue::bias && e != Epilogue::swiglu_oai) return x;
  require_bytes(bias, floats * 4, op, "bias");
  bias.size = floats * 4;
  return bias;
}

// A dispatch label's epilogue: nothing for store, else " <name>".
std::string epilogue_label(Epilogue e) {
  return e == Epilogue::store ? std::string() : fmt::format(" {}", to_string(e));
}

// The integer-dot path for ntok tokens: its GEMV where the float GEMV would run, else its tiled
// GEMM (the threshold is matmul_fallback's).
MatmulPath intdot_path(const platform::Tuning& t, std::uint32_t ntok) {
  return matmul_fallback(t, ntok) == MatmulPath::tiled ? MatmulPath::intdot_tiled : MatmulPath::intdot;
}

}  // namespace

bool weight_type_supported(const Kernels& /*k*/, gguf::TensorType type) {
  // Every variant reads the weights as 32-bit words: no device feature is needed.
  return variants(type).has_value();
}

MatmulPath choose_matmul(KernelChoice choice, const platform::Tuning& t, std::uint32_t ntok) {
  switch (choice) {
    case KernelChoice::gemv: return MatmulPath::gemv;
    case KernelChoice::tiled: return MatmulPath::tiled;
    case KernelChoice::coopmat: return MatmulPath::coopmat;
    case KernelChoice::intdot: return intdot_path(t, ntok);
    case KernelChoice::automatic: break;
  }
  if (t.intdot_max_tokens != 0 && ntok <= t.intdot_max_tokens && intdot_available(t)) {
    return intdot_path(t, ntok);
  }
  if (t.coopmat_min_tokens != 0 && ntok >= t.coopmat_min_tokens && coopmat_available(t)) {
    return MatmulPath::coopmat;
  }
  return matmul_fallback(t, ntok);
}

MatmulPath matmul_fallback(const platform::Tuning& t, std::uint32_t ntok) {
  // A tile of tokens needs enough of them to fill it: below, the 8-token GEMV tiles read the
  // weights as often and waste nothing on empty tile columns.
  return ntok >= t.tiled_min_tokens ? MatmulPath::tiled : MatmulPath::gemv;
}

bool matmul_takes_q8(const Kernels& k, std::uint32_t ntok) {
  return reads_q8(choose_matmul(k, ntok));
}

std::uint64_t q8_activation_bytes(std::uint32_t ntok, std::uint32_t ncols) {
  const std::uint64_t n = std::uint64_t{ntok} * ncols;
  return n + n / 32 * 8;
}

void record_quantize_q8(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan xq,
                        std::uint32_t ntok, std::uint32_t ncols) {
  if (ncols % 32 != 0) {
    throw std::logic_error(fmt::format("quantize_q8: {} columns are not whole blocks of 32", ncols));
  }
  if (ntok == 0) return;
  const std::uint64_t n = std::uint64_t{ntok} * ncols;
  require_bytes(x, n * 4, "quantize_q8", "x");
  require_bytes(xq, q8_activation_bytes(ntok, ncols), "quantize_q8", "xq");
  x.size = n * 4;
  xq.size = q8_activation_bytes(ntok, ncols);
  const auto blob = shaders::find_shader("quantize_q8");
  if (!blob) throw Unsupported("quantize_q8: this build has no integer-dot shaders");
  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(blob->id, 2, sizeof(PushElementwise), {wg});
  const auto blocks = static_cast<std::uint32_t>(n / 32);
  cs.dispatch(p, {{x, Access::read}, {xq, Access::write}}, PushElementwise{blocks},
              {group_count(k, blocks, wg), 1, 1}, fmt::format("quantize_q8 [{}, {}]", ntok, ncols));
}

MatmulPath choose_matmul(const Kernels& k, std::uint32_t ntok) {
  return choose_matmul(k.choice(), k.tuning(), ntok);
}

const char* to_string(MatmulPath p) {
  switch (p) {
    case MatmulPath::gemv: return "gemv";
    case MatmulPath::tiled: return "tiled";
    case MatmulPath::coopmat: return "coopmat";
    case MatmulPath::intdot: return "intdot";
    case MatmulPath::intdot_tiled: return "intdot_tiled";
  }
  return "?";
}

const char* to_string(Epilogue e) {
  switch (e) {
    case Epilogue::store: return "store";
    case Epilogue::accumulate: return "+=";
    case Epilogue::bias: return "+bias";
    case Epilogue::swiglu: return "swiglu";
    case Epilogue::geglu: return "geglu";
    case Epilogue::swiglu_oai: return "swiglu_oai";
  }
  return "?";
}

std::uint32_t matmul_out_cols(const WeightView& w, Epilogue e) {
  return paired(e) ? w.nrows / 2 : w.nrows;
}

void record_matmul(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan x, BufferSpan y,
                   std::uint32_t ntok, const MatmulOut& out) {
  const Variants v = checked_variants(w.type, "matmul");
  check_view(w, "matmul");
  if (paired(out.epilogue)) {
    for (const WeightChunk& c : w.chunks) {
      if (c.row0 % 2 != 0 || c.nrows % 2 != 0) {
        throw std::logic_error(fmt::format("matmul {}: chunk at row {} ({} rows) splits a "
                                           "(gate, up) pair",
                                           to_string(out.epilogue), c.row0, c.nrows));
      }
    }
  }
  if (ntok == 0) return;
  const std::uint32_t cols = matmul_out_cols(w, out.epilogue);
  const std::uint32_t y_stride = out.y_stride ? out.y_stride : cols;
  if (std::uint64_t{out.y0} + cols > y_stride) {
    throw std::logic_error(fmt::format("matmul: columns [{}, {}) exceed y's row of {}", out.y0,
                                       out.y0 + cols, y_stride));
  }
  const std::uint64_t xbytes = std::uint64_t{ntok} * w.ncols * 4;
  const std::uint64_t ybytes = (std::uint64_t{ntok - 1} * y_stride + out.y0 + cols) * 4;
  require_bytes(x, xbytes, "matmul", "x");
  require_bytes(y, ybytes, "matmul", "y");
  x.size = xbytes;
  y.size = ybytes;
  // bias: a row of y (from y0); swiglu_oai: a value per weight row.
  const BufferSpan aux = epilogue_aux(out.epilogue, out.bias, x,
                                      (out.epilogue == Epilogue::bias ? std::uint64_t{out.y0} : 0) + w.nrows,
                                      "matmul");

  const Access y_access = out.epilogue == Epilogue::accumulate ? Access::read_write : Access::write;
  const auto label = [&](std::size_t i, const char* path) {
    return fmt::format("matmul{}_{} [{}, {}] x {} tok{}{}", path, gguf::type_name(w.type), w.nrows,
                       w.ncols, ntok, epilogue_label(out.epilogue),
                       w.chunks.size() > 1 ? fmt::format(" chunk {}", i) : std::string());
  };
  const platform::Tuning& t = k.tuning();
  MatmulPath path = choose_matmul(k, ntok);
  // The integer-dot variant of this weight type, where x arrived quantized.
  std::optional<shaders::ShaderBlob> intdot;
  if (reads_q8(path)) {
    if (out.x_q8.buffer != nullptr && intdot_available(t)) {
      intdot = optional_variant(path == MatmulPath::intdot ? "matmul_intdot_" : "matmul_intdot_tiled_", v);
    }
    if (!intdot) path = matmul_fallback(t, ntok);
  }
  // x quantized (both integer-dot paths read it in place of x).
  BufferSpan xin = x;
  if (intdot) {
    const std::uint64_t qbytes = q8_activation_bytes(ntok, w.ncols);
    require_bytes(out.x_q8, qbytes, "matmul", "x_q8");
    xin = out.x_q8;
    xin.size = qbytes;
  }
  if (path == MatmulPath::coopmat) {
    // BM x BN output tiles of SG_M x SG_N subgroups (matmul_coopmat.comp), each subgroup of
    // exactly coopmat_subgroup invocations.
    if (!coopmat_available(t)) {
      throw Unsupported(fmt::format("matmul: {} has no cooperative-matrix GEMM",
                                    k.caps().props.name));
    }
    const std::uint32_t bm = t.coopmat_rows, bn = t.coopmat_tokens;
    const std::uint32_t sgm = t.coopmat_sg_rows, sgn = t.coopmat_sg_tokens;
    if (sgm == 0 || sgn == 0 || bm % (sgm * t.coopmat_m) != 0 || bn % (sgn * t.coopmat_n) != 0 ||
        t.coopmat_m % 2 != 0 || 32 % t.coopmat_k != 0) {
      throw std::logic_error(fmt::format("matmul: coopmat tuning {}x{} tiles, {}x{} subgroups, "
                                         "{}x{}x{} matrices", bm, bn, sgm, sgn, t.coopmat_m,
                                         t.coopmat_n, t.coopmat_k));
    }
    const std::uint32_t wg = sgm * sgn * t.coopmat_subgroup;
    const auto blob = optional_variant("matmul_coopmat_", v);
    if (!blob) {
      throw std::logic_error(fmt::format("matmul: no coopmat variant for {}",
                                         gguf::type_name(w.type)));
    }
    const auto& p = k.pipeline(blob->id, 4, sizeof(PushMatmul),
                               {wg, bm, bn, t.coopmat_m, t.coopmat_n, t.coopmat_k, sgm, sgn},
                               t.coopmat_require_subgroup ? t.coopmat_subgroup : 0);
    record_grid(k, cs, w, p, bm, bn, ntok, y_stride, out, x, y, y_access, aux, label, "_coopmat");
    return;
  }
  if (path == MatmulPath::tiled || path == MatmulPath::intdot_tiled) {
    // The integer-dot tiled GEMM is the same kernel over int8 codes (matmul_tiled.comp INTDOT).
    const KernelLayout l = tiled_layout(k);
    const auto& p = k.pipeline(intdot ? intdot->id : v.tiled, 4, sizeof(PushMatmul), l.spec);
    record_grid(k, cs, w, p, l.group_rows, l.tile, ntok, y_stride, out, xin, y, y_access, aux, label,
                intdot ? "_intdot_tiled" : "_tiled");
    return;
  }

  // The integer-dot variant is the same kernel over int8 activations (matmul.comp INTDOT).
  const KernelLayout l = gemv_layout(k, ntok, out.epilogue);
  const auto& p = k.pipeline(intdot ? intdot->id : v.matmul, 4, sizeof(PushMatmul), l.spec);
  record_grid(k, cs, w, p, l.group_rows, l.tile, ntok, y_stride, out, xin, y, y_access, aux, label,
              intdot ? "_intdot" : "");
}

void record_matmul_experts(Kernels& k, CommandStream& cs, const WeightView& w,
                           std::uint32_t expert_rows, const MoeRouteLayout& layout, BufferSpan route,
                           BufferSpan x, std::uint32_t x_div, BufferSpan y, std::uint32_t ntok,
                           Epilogue epilogue, BufferSpan bias) {
  const Variants v = checked_variants(w.type, "matmul_experts");
  check_view(w, "matmul_experts");
  if (epilogue == Epilogue::accumulate) {
    throw std::logic_error("matmul_experts: every pair has its own y row: no accumulate epilogue");
  }
  if (expert_rows == 0 || w.nrows != expert_rows * layout.n_expert ||
      (paired(epilogue) && expert_rows % 2 != 0)) {
    throw std::logic_error(fmt::format("matmul_experts: {} rows are not {} experts of {}", w.nrows,
                                       layout.n_expert, expert_rows));
  }
  for (const WeightChunk& c : w.chunks) {
    if (c.row0 % expert_rows != 0 || c.nrows % expert_rows != 0) {
      throw std::logic_error(fmt::format("matmul_experts: chunk at row {} ({} rows) splits an expert of {}",
                                         c.row0, c.nrows, expert_rows));
    }
  }
  if (x_div != 1 && x_div != layout.n_used) {
    throw std::logic_error(fmt::format("matmul_experts: x rows of {} pairs (1 or {})", x_div, layout.n_used));
  }
  if (ntok == 0) return;
  if (ntok > layout.max_tokens) {
    throw std::logic_error(fmt::format("matmul_experts: {} tokens, the route holds {}", ntok, layout.max_tokens));
  }
  const std::uint32_t pairs = ntok * layout.n_used;
  const std::uint32_t cols = paired(epilogue) ? expert_rows / 2 : expert_rows;
  const std::uint64_t xbytes = std::uint64_t{pairs / x_div} * w.ncols * 4;
  const std::uint64_t ybytes = std::uint64_t{pairs} * cols * 4;
  require_bytes(x, xbytes, "matmul_experts", "x");
  require_bytes(y, ybytes, "matmul_experts", "y");
  require_bytes(route, layout.bytes, "matmul_experts", "route");
  x.size = xbytes;
  y.size = ybytes;
  route.size = layout.bytes;
  // Every expert's bias, expert after expert.
  const BufferSpan aux = epilogue_aux(epilogue, bias, x, w.nrows, "matmul_experts");
  // Many pairs an expert (the path record_matmul would take for that many tokens is a tiled or
  // matrix-core GEMM): the tiled GEMM over each expert's pairs; else the GEMV's layout
  // (record_matmul's decode and 8-token tiles). The choice goes by an expert's expected pairs,
  // pairs / n_expert, not by the step's tokens: a tile holds one expert's pairs, and a prompt of
  // 32 tokens gives gpt-oss-20b's 32 experts about 4 each, which a tile of 64 or 128 tokens
  // computes 16 or 32 times over (2.6x slower prompts on lavapipe, bench/RESULTS.md). An expert
  // has at most one pair per token, so ntok bounds its tiles either way.
  const MatmulPath path = choose_matmul(k, std::max(1u, (pairs + layout.n_expert - 1) / layout.n_expert));
  const bool tiled = path == MatmulPath::tiled || path == MatmulPath::coopmat || path == MatmulPath::intdot_tiled;
  const auto blob = optional_variant(tiled ? "matmul_tiled_experts_" : "matmul_experts_", v);
  if (!blob) {
    throw std::logic_error(fmt::format("matmul_experts: no variant for {}", gguf::type_name(w.type)));
  }
  const KernelLayout l = tiled ? tiled_layout(k) : gemv_layout(k, ntok, epilogue);
  const auto& p = k.pipeline(blob->id, 5, sizeof(PushMatmulExperts), l.spec);
  const auto& lim = k.caps().props.max_workgroup_count;
  const std::uint32_t gx = (expert_rows + l.group_rows - 1) / l.group_rows;
  const std::uint32_t gy = (ntok + l.tile - 1) / l.tile;
  for (std::size_t i = 0; i < w.chunks.size(); ++i) {
    const WeightChunk& c = w.chunks[i];
    // z: the step's active experts (at most one per pair), each workgroup finding its own and
    // returning when it is another chunk's.
    const std::uint32_t chunk_experts = c.nrows / expert_rows;
    const std::uint32_t gz = std::min(layout.n_expert, pairs);
    if (gx > lim[0] || gy > lim[1] || gz > lim[2]) {
      throw std::logic_error(fmt::format("matmul_experts: a grid of {} x {} x {} exceeds the device's", gx, gy, gz));
    }
    const PushMatmulExperts push{w.ncols,         expert_rows, 0, cols, pairs, 0,
                                 static_cast<std::uint32_t>(epilogue), x_div,
                                 c.row0 / expert_rows, layout.counts, layout.offsets, layout.entries,
                                 layout.active_experts, layout.n_active, chunk_experts};
    cs.dispatch(p,
                {{c.span, Access::read}, {x, Access::read}, {y, Access::write}, {aux, Access::read},
                 {route, Access::read}},
                push, {gx, gy, gz},
                fmt::format("matmul{}_experts_{} [{} x {}, {}] x {} tok, top {}{}{}", tiled ? "_tiled" : "",
                            gguf::type_name(w.type), layout.n_expert, expert_rows, w.ncols, ntok, layout.n_used,
                            epilogue_label(epilogue),
                            w.chunks.size() > 1 ? fmt::format(" chunk {}", i) : std::string()));
  }
}

void record_get_rows(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan ids,
                     BufferSpan out, std::uint32_t ntok) {
  const Variants v = checked_variants(w.type, "get_rows");
  check_view(w, "get_rows");
  if (ntok == 0) return;
  const std::uint64_t obytes = std::uint64_t{ntok} * w.ncols * 4;
  require_bytes(ids, std::uint64_t{ntok} * 4, "get_rows", "ids");
  require_bytes(out, obytes, "get_rows", "out");
  ids.size = std::uint64_t{ntok} * 4;
  out.size = obytes;

  const std::uint32_t wg = k.tuning().elementwise_workgroup;
  const auto& p = k.pipeline(v.get_rows, 3, sizeof(PushGetRows), {wg});
  // x: one invocation per decode unit (16 elements of a quantized row, 4 or more of a float one;
  // the shader strides over the rest).
  const std::uint32_t unit = gguf::traits(w.type).block_size == 1 ? 4 : 16;
  const std::uint32_t gx = group_count(k, (w.ncols + unit - 1) / unit, wg);
  const auto [gy, gz] = fold(k, ntok, 1, "get_rows");
  for (std::size_t i = 0; i < w.chunks.size(); ++i) {
    const WeightChunk& c = w.chunks[i];
    const PushGetRows push{w.ncols, c.nrows, c.row0, w.nrows, ntok};
    cs.dispatch(p, {{c.span, Access::read}, {ids, Access::read}, {out, Access::write}}, push,
                {gx, gy, gz},
                fmt::format("get_rows_{} [{}, {}] x {} tok{}", gguf::type_name(w.type), w.nrows,
                            w.ncols, ntok,
                            w.chunks.size() > 1 ? fmt::format(" chunk {}", i) : std::string()));
  }
}

}  // namespace vkllm::ops
