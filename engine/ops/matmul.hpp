// Products with weights in any GGUF type: y = x W^T for a batch of token rows, dequantizing in
// registers with f32 accumulation; and row gathers (embedding lookup). Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"
#include "engine/ops/weight.hpp"

namespace vkllm::ops {

// Weight types the kernels read: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K,
// Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4.
bool weight_type_supported(const Kernels& k, gguf::TensorType type);

// What a matmul does with each sum s = sum_c W[n, c] * x[t, c] as it stores it (fused steps,
// docs/ARCHITECTURE.md).
enum class Epilogue : std::uint32_t {
  store = 0,       // y[t, n] = s
  accumulate = 1,  // y[t, n] += s: a residual add
  bias = 2,        // y[t, n] = s + bias[n], bias a row of y (with y0: y[t, y0 + n], bias[y0 + n])
  swiglu = 3,      // rows in (gate, up) pairs: y[t, i] = silu(s_2i) * s_2i+1; w.nrows even
  geglu = 4,       // as swiglu with GELU (tanh form) for silu (Gemma)
  // gpt-oss's: rows in (gate, up) pairs, each sum plus its row's bias (bias[n], a value per
  // weight row, interleaved as the rows are), then g = min(s_2i, 7), u = clamp(s_2i+1, -7, 7),
  // y[t, i] = g * sigmoid(1.702 g) * (u + 1).
  swiglu_oai = 5,
};

// swiglu, geglu and swiglu_oai: rows in (gate, up) pairs, half as many outputs.
inline bool paired(Epilogue e) {
  return e == Epilogue::swiglu || e == Epilogue::geglu || e == Epilogue::swiglu_oai;
}
const char* to_string(Epilogue e);  // "store", "+=", "+bias", "swiglu", "geglu", "swiglu_oai"

struct MatmulOut {
  Epilogue epilogue = Epilogue::store;
  BufferSpan bias;              // Epilogue::bias: y0 + w.nrows f32; swiglu_oai: w.nrows f32
  std::uint32_t y_stride = 0;   // elements between token rows of y; 0: the output width
  std::uint32_t y0 = 0;         // y's column of output 0 (a slice of a wider y)
  // x already quantized by record_quantize_q8 (q8_activation_bytes(ntok, w.ncols)): the
  // integer-dot GEMV reads it. Unset: the matmul takes another path (matmul_takes_q8 says when
  // the caller should quantize).
  BufferSpan x_q8;
};

// A MatmulOut of just an epilogue, y its own contiguous rows.
inline MatmulOut with_epilogue(Epilogue e) {
  MatmulOut out;
  out.epilogue = e;
  return out;
}

// The kernel a matmul of ntok tokens runs (docs/ARCHITECTURE.md, "Matmul paths"): the
// matrix-vector kernel (matmul.comp: one token, or tiles of 8 that reuse each decoded weight),
// the tiled GEMM (matmul_tiled.comp: shared-memory tiles of Tuning::tiled_rows x tiled_tokens)
// the cooperative-matrix GEMM (matmul_coopmat.comp: matrix cores, f16 inputs), the
// integer-dot GEMV (matmul.comp INTDOT: int8 activations from record_quantize_q8, legacy
// 32-block weight types and K-quants) or the integer-dot tiled GEMM (matmul_tiled.comp INTDOT,
// MMQ: the same activations and types, from tiled_min_tokens tokens). The one place that
// decides: the kernels' choice when forced (intdot: its GEMV or its tiled GEMM by the count as
// for gemv/tiled), else the token count against Tuning::intdot_max_tokens (where integer dot is
// accelerated), coopmat_min_tokens (where the device has a usable shape) and tiled_min_tokens.
// A weight type without an integer-dot variant, or a call without x_q8, takes the path the
// count gives without integer dot (matmul_fallback).
enum class MatmulPath { gemv, tiled, coopmat, intdot, intdot_tiled };
MatmulPath choose_matmul(const Kernels& k, std::uint32_t ntok);
MatmulPath choose_matmul(KernelChoice choice, const platform::Tuning& t, std::uint32_t ntok);
const char* to_string(MatmulPath p);
// The path of an intdot choice that cannot run: gemv below tiled_min_tokens, else tiled.
MatmulPath matmul_fallback(const platform::Tuning& t, std::uint32_t ntok);
// Whether a path reads x quantized (MatmulOut::x_q8): the two integer-dot ones.
inline bool reads_q8(MatmulPath p) { return p == MatmulPath::intdot || p == MatmulPath::intdot_tiled; }

// Whether matmuls of ntok tokens take the integer-dot path (the caller then quantizes their
// input once with record_quantize_q8 and passes it as MatmulOut::x_q8).
bool matmul_takes_q8(const Kernels& k, std::uint32_t ntok);
// Bytes of x [ntok, ncols] quantized for the integer-dot GEMV (ncols a multiple of 32): the
// int8 codes, then a (scale, scale * sum of codes) pair of f32 per 32 elements.
std::uint64_t q8_activation_bytes(std::uint32_t ntok, std::uint32_t ncols);
// xq = x [ntok, ncols] f32 quantized in blocks of 32 (shaders/quantize_q8.comp): code =
// roundEven(x / d), d = max |x| / 127 per block. ncols a multiple of 32.
void record_quantize_q8(Kernels& k, CommandStream& cs, BufferSpan x, BufferSpan xq,
                        std::uint32_t ntok, std::uint32_t ncols);

// Output columns of a matmul of `w` with epilogue `e`: w.nrows, or w.nrows / 2 when paired.
std::uint32_t matmul_out_cols(const WeightView& w, Epilogue e);

// y[t, y0 + n] = sum_c W[n, c] * x[t, c] for t < ntok, n < w.nrows, stored through `out`'s
// epilogue. x: [ntok, w.ncols] f32 (row stride w.ncols); y: f32 rows of out.y_stride.
// ntok == 1 is the decode (matrix-vector) case; every ntok uses the same entry point and the
// host picks the variant. Throws Unsupported for a type the device cannot read.
void record_matmul(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan x, BufferSpan y,
                   std::uint32_t ntok, const MatmulOut& out = {});

struct MoeRouteLayout;

// The grouped expert matmul of a Mixture-of-Experts layer (matmul.comp EXPERTS, docs/
// ARCHITECTURE.md "Mixture of experts"): `w` holds the experts one after another, expert_rows
// rows each (chunks of whole experts). For every pair p = t * n_used + j that `route` (written by
// record_moe_route for ntok tokens) gives expert e: y[p, n] = sum_c W_e[n, c] * x[p / x_div, c],
// stored through `epilogue` (not accumulate; the paired ones give expert_rows / 2 outputs; bias
// and swiglu_oai read `bias`: n_expert * expert_rows f32, expert e's from e * expert_rows). x_div:
// n_used where x holds the tokens, 1 where it holds the pairs. One dispatch per chunk; a
// decode step reads only the chosen experts' rows. The kernel: the tiled GEMM where
// choose_matmul picks the tiled or matrix-core path for ntok tokens, else the GEMV's.
void record_matmul_experts(Kernels& k, CommandStream& cs, const WeightView& w,
                           std::uint32_t expert_rows, const MoeRouteLayout& layout, BufferSpan route,
                           BufferSpan x, std::uint32_t x_div, BufferSpan y, std::uint32_t ntok,
                           Epilogue epilogue = Epilogue::store, BufferSpan bias = {});

// out[t, c] = W[ids[t], c] dequantized to f32, for t < ntok. ids: ntok u32, each < w.nrows
// (an id out of range writes zeros). out: [ntok, w.ncols] f32.
void record_get_rows(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan ids,
                     BufferSpan out, std::uint32_t ntok);

}  // namespace vkllm::ops
