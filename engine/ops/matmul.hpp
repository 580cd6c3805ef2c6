// Products with weights in any GGUF type: y = x W^T for a batch of token rows, dequantizing in
// registers with f32 accumulation; and row gathers (embedding lookup). Knows no Vulkan, no models.
#pragma once

#include "engine/ops/kernels.hpp"
#include "engine/ops/weight.hpp"

namespace vkllm::ops {

// Weight types the kernels read: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K,
// Q5_K, Q6_K, IQ4_NL, IQ4_XS.
bool weight_type_supported(const Kernels& k, gguf::TensorType type);

// What a matmul does with each sum s = sum_c W[n, c] * x[t, c] as it stores it (fused steps,
// docs/ARCHITECTURE.md).
enum class Epilogue : std::uint32_t {
  store = 0,       // y[t, n] = s
  accumulate = 1,  // y[t, n] += s: a residual add
  bias = 2,        // y[t, n] = s + bias[n], bias a row of y (with y0: y[t, y0 + n], bias[y0 + n])
  swiglu = 3,      // rows in (gate, up) pairs: y[t, i] = silu(s_2i) * s_2i+1; w.nrows even
};

struct MatmulOut {
  Epilogue epilogue = Epilogue::store;
  BufferSpan bias;              // Epilogue::bias: y0 + w.nrows f32
  std::uint32_t y_stride = 0;   // elements between token rows of y; 0: the output width
  std::uint32_t y0 = 0;         // y's column of output 0 (a slice of a wider y)
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
// or the cooperative-matrix GEMM (matmul_coopmat.comp: matrix cores, f16 inputs). The one place
// that decides: the kernels' choice when forced, else the token count against
// Tuning::coopmat_min_tokens (where the device has a usable shape) and tiled_min_tokens.
enum class MatmulPath { gemv, tiled, coopmat };
MatmulPath choose_matmul(const Kernels& k, std::uint32_t ntok);
MatmulPath choose_matmul(KernelChoice choice, const platform::Tuning& t, std::uint32_t ntok);
const char* to_string(MatmulPath p);

// Output columns of a matmul of `w` with epilogue `e`: w.nrows, or w.nrows / 2 for swiglu.
std::uint32_t matmul_out_cols(const WeightView& w, Epilogue e);

// y[t, y0 + n] = sum_c W[n, c] * x[t, c] for t < ntok, n < w.nrows, stored through `out`'s
// epilogue. x: [ntok, w.ncols] f32 (row stride w.ncols); y: f32 rows of out.y_stride.
// ntok == 1 is the decode (matrix-vector) case; every ntok uses the same entry point and the
// host picks the variant. Throws Unsupported for a type the device cannot read.
void record_matmul(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan x, BufferSpan y,
                   std::uint32_t ntok, const MatmulOut& out = {});

// out[t, c] = W[ids[t], c] dequantized to f32, for t < ntok. ids: ntok u32, each < w.nrows
// (an id out of range writes zeros). out: [ntok, w.ncols] f32.
void record_get_rows(Kernels& k, CommandStream& cs, const WeightView& w, BufferSpan ids,
                     BufferSpan out, std::uint32_t ntok);

}  // namespace vkllm::ops
