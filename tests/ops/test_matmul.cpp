// Products and row gathers with weights in every GGUF type the kernels read, against CPU
// references on the gguf::dequantize'd weights (so only the kernels' decoding and arithmetic are
// under test), with odd row counts, token counts that do not fill a tile, poisoned outputs, and
// weights split into several chunks. Runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/quant.hpp"
#include "engine/ops/matmul.hpp"
#include "tests/reference/quant_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using gguf::TensorType;
using test::DeviceTest;

namespace {

constexpr double kExact = 1e-7;   // gathers: the decoded values themselves
constexpr double kMatmul = 5e-4;  // products (docs/ARCHITECTURE.md "Tests"); the f32 sums land near 1e-12

constexpr const auto& kTypes = ref::kKernelTypes;

// Column counts per type: whole blocks, one power of two and one not. f32/f16/bf16 rows may have
// any length: 35 leaves a tail past the last decode unit and misaligns f16 rows.
std::vector<std::uint32_t> col_counts(TensorType type) {
  switch (gguf::traits(type).block_size) {
    case 1: return {35, 768};
    case 32: return {32, 96};
    default: return {256, 768};
  }
}

std::span<const std::byte> as_bytes(const std::vector<std::uint8_t>& v) {
  return std::as_bytes(std::span<const std::uint8_t>(v));
}

// The weight types with an integer-dot GEMV (shaders/CMakeLists.txt, matmul_intdot_*).
bool has_intdot(TensorType t) {
  return t == TensorType::kQ8_0 || t == TensorType::kQ4_0 || t == TensorType::kQ4_1 ||
         t == TensorType::kQ5_0 || t == TensorType::kQ5_1 || t == TensorType::kQ4_K ||
         t == TensorType::kQ5_K || t == TensorType::kQ6_K || t == TensorType::kQ2_K ||
         t == TensorType::kQ3_K;
}

// The values rounded to f16 and back (what the cooperative-matrix GEMM multiplies).
std::vector<float> to_f16(std::vector<float> v) {
  for (float& f : v) f = gguf::fp16_to_fp32(gguf::fp32_to_fp16(f));
  return v;
}

// Forces one matmul path on the shared kernels for a scope.
class ForceKernels {
 public:
  ForceKernels(ops::Kernels& k, ops::KernelChoice c) : k_(k), before_(k.choice()) { k.set_choice(c); }
  ~ForceKernels() { k_.set_choice(before_); }
  ForceKernels(const ForceKernels&) = delete;
  ForceKernels& operator=(const ForceKernels&) = delete;

 private:
  ops::Kernels& k_;
  ops::KernelChoice before_;
};

class WeightTest : public DeviceTest {
 public:
  ops::DeviceWeight upload_weight(TensorType type, const ref::QuantizedWeights& q,
                                  std::uint32_t ncols, std::uint32_t nrows,
                                  std::uint64_t max_chunk_bytes = 0) {
    return ops::DeviceWeight::upload(device(), type, ncols, nrows, as_bytes(q.bytes), "W",
                                     max_chunk_bytes);
  }

  // Runs record_matmul and returns the NMSE against ref::matmul. The cooperative-matrix GEMM
  // multiplies f16 inputs: its reference rounds the weights and activations to f16 first, so
  // what is under test is its arithmetic, not f16's (whose error on one short dot product of
  // cancelling terms alone can pass any NMSE bound).
  double matmul_nmse(const ops::WeightView& w, const std::vector<float>& values,
                     std::uint32_t ntok) {
    const auto x = ref::random_floats(rng(), std::size_t(ntok) * w.ncols);
    std::vector<float> expected(std::size_t(ntok) * w.nrows);
    const ops::MatmulPath path = ops::choose_matmul(kernels(), ntok);
    const bool q8 = ops::reads_q8(path) && has_intdot(w.type);
    if (path == ops::MatmulPath::coopmat) {
      ref::matmul(to_f16(values), to_f16(x), expected, w.ncols, w.nrows, ntok);
    } else if (q8) {
      ref::matmul(values, ref::q8_activations(x), expected, w.ncols, w.nrows, ntok);
    } else {
      ref::matmul(values, x, expected, w.ncols, w.nrows, ntok);
    }
    auto dx = upload_floats(x, "x");
    auto dy = poisoned_floats(expected.size(), "y");
    // The integer-dot GEMV reads x quantized once (the model quantizes each matmul input).
    platform::Buffer xq;
    ops::MatmulOut out;
    if (q8) {
      xq = device().create_buffer(ops::q8_activation_bytes(ntok, w.ncols),
                                  platform::MemoryIntent::activations, "xq");
      out.x_q8 = xq;
    }
    auto cs = device().command_stream();
    cs.begin();
    if (q8) ops::record_quantize_q8(kernels(), cs, dx, xq, ntok, w.ncols);
    ops::record_matmul(kernels(), cs, w, dx, dy, ntok, out);
    cs.end();
    cs.submit_and_wait();
    return ref::nmse(download_floats(dy, expected.size()), expected);
  }

  // `base` with the tiled GEMMs' GPU register blocks: 64-row tiles of thread_rows x 4 blocks
  // (4: 64 x 64 tiles as GPUs take; 16: 64 x 32, where a subgroup of 8 spans two token groups).
  static platform::Tuning gpu_tiles(platform::Tuning base, std::uint32_t thread_rows) {
    base.tiled_rows = 64;
    base.tiled_tokens = thread_rows == 4 ? 64 : 32;
    base.tiled_thread_rows = thread_rows;
    base.tiled_thread_tokens = 4;
    return base;
  }

  // matmul_nmse checked against `bound`, the case named where it fails.
  double checked_nmse(const ops::WeightView& w, const std::vector<float>& values, std::uint32_t ntok,
                      double bound) {
    CAPTURE(gguf::type_name(w.type));
    CAPTURE(w.ncols);
    CAPTURE(w.nrows);
    CAPTURE(ntok);
    const double e = matmul_nmse(w, values, ntok);
    CHECK(e < bound);
    return e;
  }

  // matmul_nmse for every type (or these), its col_counts and these row and token counts.
  void every_type(std::initializer_list<std::uint32_t> row_counts,
                  std::initializer_list<std::uint32_t> token_counts,
                  std::span<const TensorType> types = kTypes) {
    double worst = 0;
    for (TensorType type : types) {
      for (std::uint32_t ncols : col_counts(type)) {
        for (std::uint32_t nrows : row_counts) {
          const auto q = ref::random_quantized(rng(), type, ncols, nrows);
          const auto w = upload_weight(type, q, ncols, nrows);
          REQUIRE(w.view().chunks.size() == 1);
          for (std::uint32_t ntok : token_counts) {
            worst = std::max(worst, checked_nmse(w.view(), q.values, ntok, kMatmul));
          }
        }
      }
    }
    MESSAGE("worst matmul NMSE " << worst << " (kernels: "
                                 << std::string(ops::to_string(kernels().choice())) << ")");
  }

  // matmul_nmse of weights of these types, ncols (0: the type's longer col_counts) x nrows,
  // with these token counts.
  void check_types(std::initializer_list<TensorType> types, std::uint32_t ncols_or_0,
                   std::uint32_t nrows, std::initializer_list<std::uint32_t> token_counts) {
    for (TensorType type : types) {
      const std::uint32_t ncols = ncols_or_0 ? ncols_or_0 : col_counts(type).back();
      const auto q = ref::random_quantized(rng(), type, ncols, nrows);
      const auto w = upload_weight(type, q, ncols, nrows);
      for (std::uint32_t ntok : token_counts) {
        CAPTURE(gguf::type_name(type));
        CAPTURE(ntok);
        CHECK(matmul_nmse(w.view(), q.values, ntok) < kMatmul);
      }
    }
  }

  // Runs record_get_rows; returns the NMSE against ref::get_rows and counts differing bits.
  double get_rows_nmse(const ops::WeightView& w, const std::vector<float>& values,
                       const std::vector<std::uint32_t>& ids, std::size_t* mismatches) {
    const auto n = static_cast<std::uint32_t>(ids.size());
    std::vector<float> expected(std::size_t(n) * w.ncols);
    ref::get_rows(values, ids, expected, w.ncols, w.nrows);
    auto dids = device().create_buffer(ids.size() * 4, platform::MemoryIntent::activations, "ids");
    device().upload(dids, 0, std::as_bytes(std::span<const std::uint32_t>(ids)));
    auto dout = poisoned_floats(expected.size(), "out");
    auto cs = device().command_stream();
    cs.begin();
    ops::record_get_rows(kernels(), cs, w, dids, dout, n);
    cs.end();
    cs.submit_and_wait();
    const auto got = download_floats(dout, expected.size());
    *mismatches = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      *mismatches += std::memcmp(&got[i], &expected[i], 4) != 0;
    }
    return ref::nmse(got, expected);
  }
};

}  // namespace

TEST_CASE_FIXTURE(WeightTest, "matmul matches the reference for every weight type") {
  every_type({1u, 33u, 67u}, {1u, 3u, 17u});
}

TEST_CASE_FIXTURE(WeightTest, "matmul: long rows (units past the workgroup) and prefill tiles") {
  check_types({TensorType::kF16, TensorType::kQ4_0, TensorType::kQ4_K, TensorType::kQ6_K}, 4096,
              19, {1u, 2u, 64u});
}

TEST_CASE_FIXTURE(WeightTest, "GEMV in both layouts: split along K (GPUs) and whole rows per invocation (CPUs)") {
  // The device's own layout ran above; here the other one and odd shapes of each: LANE_ROWS with
  // 3 rows an invocation (a workgroup's rows past the chunk read the last row again), and the
  // split layout with 64 and 32 invocations (a row's units past the workgroup). Every type in
  // the GPUs' default layout (64 invocations, 2 rows); the other shapes at a float type (its tail
  // columns), a 32-block and a 256-block type: the decoding is the same function in all of them,
  // and each type and shape is two pipelines for lavapipe to compile (3 s each).
  constexpr TensorType kFew[] = {TensorType::kF32, TensorType::kQ4_0, TensorType::kQ4_K};
  const ForceKernels gemv(kernels(), ops::KernelChoice::gemv);
  struct Layout {
    bool lane_rows;
    std::uint32_t workgroup, rows, prefill_rows;
  };
  for (const Layout& l : {Layout{false, 64, 2, 2}, Layout{false, 32, 4, 8}, Layout{true, 8, 3, 1},
                          Layout{true, 4, 2, 4}}) {
    platform::Tuning t = kernels().tuning();
    t.matvec_lane_rows = l.lane_rows;
    t.matvec_workgroup = l.workgroup;
    t.matvec_rows = l.rows;
    t.matmul_rows = l.prefill_rows;
    kernels().set_tuning(t);
    CAPTURE(l.lane_rows);
    CAPTURE(l.workgroup);
    CAPTURE(l.rows);
    const bool gpu_default = !l.lane_rows && l.workgroup == 64;
    every_type({1u, 7u, 33u}, {1u, 9u}, gpu_default ? std::span<const TensorType>(kTypes) : kFew);
  }
  kernels().set_tuning(std::nullopt);
}

TEST_CASE_FIXTURE(WeightTest, "subgroup sizes: the kernels that reduce or share work across a subgroup, at a few types") {
  // What scripts/test.sh runs again at lavapipe's other subgroup sizes (4 and 16): the split
  // GEMV's subgroup sums (plain, with the swiglu epilogue's row pairs, and integer-dot), and the
  // tiled GEMMs' token groups with and without UNIFORM_TG (f32 and integer-dot), on a legacy and
  // a K-quant type. Few
  // pipelines: at subgroup 16 lavapipe takes about 10 s to compile each.
  const std::initializer_list<TensorType> types = {TensorType::kQ4_0, TensorType::kQ4_K};
  platform::Tuning split = kernels().tuning();
  split.matvec_lane_rows = false;
  split.matvec_workgroup = 64;
  kernels().set_tuning(split);
  {
    const ForceKernels gemv(kernels(), ops::KernelChoice::gemv);
    check_types(types, 0, 33, {1u, 9u});
    // gate/up pairs: y[t, i] = silu(row 2i) * row 2i + 1.
    const std::uint32_t ncols = 256, ffn = 17;
    const auto q = ref::random_quantized(rng(), TensorType::kQ4_K, ncols, 2 * ffn);
    const auto w = ops::DeviceWeight::upload(device(), TensorType::kQ4_K, ncols, 2 * ffn,
                                             as_bytes(q.bytes), "gate+up", 0, 2);
    for (std::uint32_t ntok : {1u, 9u}) {
      CAPTURE(ntok);
      const auto x = ref::random_floats(rng(), std::size_t(ntok) * ncols);
      std::vector<float> rows(std::size_t(ntok) * 2 * ffn), expected(std::size_t(ntok) * ffn);
      ref::matmul(q.values, x, rows, ncols, 2 * ffn, ntok);
      for (std::size_t i = 0; i < expected.size(); ++i) {
        const float g = rows[2 * i], u = rows[2 * i + 1];
        expected[i] = g / (1.0f + std::exp(-g)) * u;
      }
      auto dx = upload_floats(x, "x");
      auto dy = poisoned_floats(expected.size(), "y");
      auto cs = device().command_stream();
      cs.begin();
      ops::record_matmul(kernels(), cs, w.view(), dx, dy, ntok, ops::with_epilogue(ops::Epilogue::swiglu));
      cs.end();
      cs.submit_and_wait();
      CHECK(ref::nmse(download_floats(dy, expected.size()), expected) < kMatmul);
    }
  }
  if (ops::intdot_available(kernels().tuning())) {
    const ForceKernels intdot(kernels(), ops::KernelChoice::intdot);
    check_types({TensorType::kQ4_K}, 0, 33, {1u, 9u});
  }
  const ForceKernels tiled(kernels(), ops::KernelChoice::tiled);
  for (std::uint32_t thread_rows : {4u, 16u}) {  // 16: a subgroup of 8 spans two token groups
    kernels().set_tuning(gpu_tiles(kernels().caps().tuning, thread_rows));
    CAPTURE(thread_rows);
    check_types({TensorType::kQ4_0}, 0, 100, {33u});
    if (ops::intdot_available(kernels().tuning())) {  // the integer-dot tiled GEMM's token groups
      const ForceKernels mmq(kernels(), ops::KernelChoice::intdot);
      check_types({TensorType::kQ2_K}, 0, 100, {33u});
    }
  }
  kernels().set_tuning(std::nullopt);
}

TEST_CASE_FIXTURE(WeightTest, "tiled GEMM matches the reference: every type, shapes that fill no tile") {
  // Rows and tokens from {1, 7, 33, 100}: none a multiple of a tile (64 or 128; rows in pairs),
  // and a tile's rows past the chunk's end. Columns: col_counts (a float tail at 35).
  const ForceKernels tiled(kernels(), ops::KernelChoice::tiled);
  every_type({1u, 7u, 33u, 100u}, {1u, 7u, 33u, 100u});
}

TEST_CASE_FIXTURE(WeightTest, "tiled GEMM with other device classes' tile shapes") {
  // The GPU default (64 x 64 tiles of 4 x 4, 256 invocations), and blocks of 2 rows and of 16
  // rows: with 4 row groups a subgroup of 8 spans two token groups (no UNIFORM_TG).
  const ForceKernels tiled(kernels(), ops::KernelChoice::tiled);
  struct Shape {
    std::uint32_t rows, tokens, thread_rows, thread_tokens;
  };
  for (const Shape& sh : {Shape{64, 64, 4, 4}, Shape{32, 32, 2, 8}, Shape{64, 32, 16, 4}}) {
    platform::Tuning t = kernels().tuning();
    t.tiled_rows = sh.rows;
    t.tiled_tokens = sh.tokens;
    t.tiled_thread_rows = sh.thread_rows;
    t.tiled_thread_tokens = sh.thread_tokens;
    kernels().set_tuning(t);
    CAPTURE(sh.rows);
    CAPTURE(sh.thread_rows);
    check_types({TensorType::kF16, TensorType::kQ4_0, TensorType::kQ4_K}, 0, 100, {1u, 33u, 100u});
  }
  kernels().set_tuning(std::nullopt);
}

TEST_CASE_FIXTURE(WeightTest, "tiled GEMM: 513 and 257 tokens, long rows, several chunks") {
  const ForceKernels tiled(kernels(), ops::KernelChoice::tiled);
  for (TensorType type : {TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_K,
                          TensorType::kQ6_K}) {
    const std::uint32_t ncols = 1024, nrows = 257;
    const std::uint64_t row_bytes = ops::weight_row_bytes(type, ncols);
    const auto q = ref::random_quantized(rng(), type, ncols, nrows);
    const auto w = upload_weight(type, q, ncols, nrows, 100 * row_bytes);  // chunks of 100 rows
    REQUIRE(w.view().chunks.size() == 3);
    for (std::uint32_t ntok : {257u, 513u}) {
      CAPTURE(gguf::type_name(type));
      CAPTURE(ntok);
      CHECK(matmul_nmse(w.view(), q.values, ntok) < kMatmul);
    }
  }
}

TEST_CASE_FIXTURE(WeightTest, "4128 rows or columns and 7, 8, 9 tokens: GEMV and tiled, every type") {
  // The large size of the shape list (docs/ARCHITECTURE.md "Tests"): 4128 rows (64 x 64 + 32: a
  // part tile past whole ones), and 4128 columns where the block size divides it (32-wide
  // blocks and the float types; K-quant rows are whole 256-wide superblocks, so 4352 there). Token
  // counts about 8, the most GEMV takes at once.
  for (ops::KernelChoice path : {ops::KernelChoice::gemv, ops::KernelChoice::tiled}) {
    const ForceKernels forced(kernels(), path);
    for (TensorType type : kTypes) {
      const std::uint32_t block = gguf::traits(type).block_size;
      const std::uint32_t wide = block == 256 ? 4352 : 4128;
      struct Size {
        std::uint32_t ncols, nrows;
      };
      for (const Size& sz : {Size{col_counts(type).front(), 4128}, Size{wide, 7}}) {
        const auto q = ref::random_quantized(rng(), type, sz.ncols, sz.nrows);
        const auto w = upload_weight(type, q, sz.ncols, sz.nrows);
        for (std::uint32_t ntok : {7u, 8u, 9u}) {
          CAPTURE(ops::to_string(path));
          CAPTURE(gguf::type_name(type));
          CAPTURE(sz.ncols);
          CAPTURE(sz.nrows);
          CAPTURE(ntok);
          CHECK(matmul_nmse(w.view(), q.values, ntok) < kMatmul);
        }
      }
    }
  }
}

TEST_CASE_FIXTURE(WeightTest, "coopmat GEMM matches the reference: every type, shapes that fill no tile") {
  if (!test::coopmat_or_skip(kernels())) return;
  const ForceKernels coopmat(kernels(), ops::KernelChoice::coopmat);
  const platform::Tuning& t = kernels().tuning();
  MESSAGE("coopmat: " << t.coopmat_m << "x" << t.coopmat_n << "x" << t.coopmat_k << " matrices, "
                      << t.coopmat_rows << "x" << t.coopmat_tokens << " tiles");
  every_type({1u, 7u, 33u, 100u}, {1u, 7u, 8u, 9u, 17u, 100u});
}

TEST_CASE_FIXTURE(WeightTest, "coopmat GEMM: 257 and 513 tokens, 4128 rows or columns, several chunks") {
  if (!test::coopmat_or_skip(kernels())) return;
  const ForceKernels coopmat(kernels(), ops::KernelChoice::coopmat);
  for (TensorType type : kTypes) {
    const std::uint32_t wide = gguf::traits(type).block_size == 256 ? 4352 : 4128;
    struct Size {
      std::uint32_t ncols, nrows, ntok;
      std::uint64_t chunk_rows;
    };
    for (const Size& sz : {Size{col_counts(type).front(), 4128, 9, 0}, Size{wide, 7, 17, 0},
                           Size{col_counts(type).back(), 257, 513, 100}}) {
      const auto q = ref::random_quantized(rng(), type, sz.ncols, sz.nrows);
      const auto w = upload_weight(type, q, sz.ncols, sz.nrows,
                                   sz.chunk_rows * ops::weight_row_bytes(type, sz.ncols));
      CAPTURE(gguf::type_name(type));
      CAPTURE(sz.ncols);
      CAPTURE(sz.nrows);
      CAPTURE(sz.ntok);
      CHECK(matmul_nmse(w.view(), q.values, sz.ntok) < kMatmul);
    }
  }
}

TEST_CASE_FIXTURE(WeightTest, "coopmat GEMM with other tiles: one matrix a subgroup, several, one subgroup, 4 x 1") {
  if (!test::coopmat_or_skip(kernels())) return;
  const ForceKernels coopmat(kernels(), ops::KernelChoice::coopmat);
  const platform::Tuning base = kernels().tuning();
  struct Shape {
    std::uint32_t rows, tokens, sg_rows, sg_tokens;
  };
  for (const Shape& sh : {Shape{16, 16, 2, 2}, Shape{128, 64, 2, 2}, Shape{32, 32, 1, 1}, Shape{64, 32, 4, 1}}) {
    platform::Tuning t = base;
    t.coopmat_rows = sh.rows;
    t.coopmat_tokens = sh.tokens;
    t.coopmat_sg_rows = sh.sg_rows;
    t.coopmat_sg_tokens = sh.sg_tokens;
    if ((sh.rows / sh.sg_rows) % t.coopmat_m != 0 || (sh.tokens / sh.sg_tokens) % t.coopmat_n != 0) {
      continue;  // this device's matrices do not tile that block
    }
    kernels().set_tuning(t);
    CAPTURE(sh.rows);
    CAPTURE(sh.tokens);
    CAPTURE(sh.sg_rows);
    check_types({TensorType::kF16, TensorType::kQ4_0, TensorType::kQ4_K}, 0, 100, {1u, 33u, 100u});
  }
  kernels().set_tuning(std::nullopt);
}

// The integer-dot paths against the f32 reference on the activations the shader quantizes
// (ref::q8_activations): a fallback to the f32 kernels would miss the bound by orders of
// magnitude. The types without integer codes take their usual path; forcing keeps them working.
class IntdotTest : public WeightTest {
 public:
  static constexpr double kIntdot = 1e-9;
  // False (with a message) where the device has no integer dot product.
  bool available() {
    if (ops::intdot_available(kernels().tuning())) return true;
    MESSAGE("SKIPPED: " << kernels().caps().props.name << " has no integer dot product");
    return false;
  }
  // A random weight of `type` (ncols rounded up to whole blocks: K-quant rows of 256, 768,
  // 4352 columns) at each token count, forced to intdot.
  void check(TensorType type, std::uint32_t ncols, std::uint32_t nrows,
             std::span<const std::uint32_t> tokens) {
    const ForceKernels intdot(kernels(), ops::KernelChoice::intdot);
    const std::uint32_t block = static_cast<std::uint32_t>(gguf::traits(type).block_size);
    ncols = (ncols + block - 1) / block * block;
    const auto q = ref::random_quantized(rng(), type, ncols, nrows);
    const auto w = upload_weight(type, q, ncols, nrows);
    for (std::uint32_t ntok : tokens) worst = std::max(worst, checked_nmse(w.view(), q.values, ntok, kIntdot));
  }
  void check(TensorType type, std::uint32_t ncols, std::uint32_t nrows,
             std::initializer_list<std::uint32_t> tokens) {
    check(type, ncols, nrows, std::span<const std::uint32_t>(tokens.begin(), tokens.size()));
  }
  double worst = 0;
};

TEST_CASE_FIXTURE(IntdotTest, "intdot GEMV matches the reference on int8 activations: both layouts, shapes that fill no tile") {
  if (!available()) return;
  const platform::Tuning base = kernels().tuning();
  // Every type in the split layout (GPUs, where intdot is chosen); in whole rows per invocation
  // (CPU devices, where it is only forced) one of each formula: one pair a block, signed codes
  // with a scale per 16, a scale and an offset per 16. Up to 15 tokens: from 16 the tiled GEMM
  // runs (its own test below; its pipelines compile there only).
  for (bool lane_rows : {false, true}) {
    platform::Tuning t = base;
    t.matvec_lane_rows = lane_rows;
    t.matvec_workgroup = lane_rows ? 8 : 64;
    kernels().set_tuning(t);
    CAPTURE(lane_rows);
    for (TensorType type : kTypes) {
      if (!has_intdot(type)) continue;
      if (lane_rows && type != TensorType::kQ4_0 && type != TensorType::kQ6_K &&
          type != TensorType::kQ2_K) {
        continue;
      }
      struct Size {
        std::uint32_t ncols, nrows;
      };
      for (Size sz : {Size{32, 1}, Size{96, 7}, Size{96, 33}, Size{4128, 100}, Size{256, 4128}}) {
        const bool large = sz.ncols > 1024 || sz.nrows > 1024;
        if (large && lane_rows != base.matvec_lane_rows) continue;  // the device's layout only
        const std::vector<std::uint32_t> tokens =
            large ? std::vector<std::uint32_t>{1u, 9u} : std::vector<std::uint32_t>{1u, 7u, 8u, 9u, 15u};
        check(type, sz.ncols, sz.nrows, tokens);
      }
    }
  }
  kernels().set_tuning(std::nullopt);
  MESSAGE("intdot: worst NMSE " << worst << " against the reference on int8 activations");
  const ForceKernels intdot(kernels(), ops::KernelChoice::intdot);
  check_types({TensorType::kF16, TensorType::kIQ4_XS}, 0, 33, {1u, 17u});
}

TEST_CASE_FIXTURE(IntdotTest, "intdot tiled GEMM (MMQ) matches the reference on int8 activations: every type, partial tiles, register blocks") {
  // Prompt-sized steps forced to intdot take the tiled integer-dot GEMM (matmul_tiled.comp
  // INTDOT): the products are exact integers, only the scaling's rounding differs.
  if (!available()) return;
  REQUIRE(ops::choose_matmul(ops::KernelChoice::intdot, kernels().tuning(), 17) ==
          ops::MatmulPath::intdot_tiled);
  // Every type with integer codes: rows and tokens that fill no tile (the device's tuning), an
  // odd number of 32-blocks (a K slice holds two).
  for (TensorType type : kTypes) {
    if (!has_intdot(type)) continue;
    check(type, 96, 7, {17u, 33u});
    check(type, 32, 33, {17u});
    check(type, 4128, 100, {17u});
  }
  // Long and tall shapes, and the register blocks of GPUs (4 x 4 in 64 x 64 tiles; 16 rows: a
  // subgroup of 8 spans two token groups), at one type of each formula.
  check(TensorType::kQ4_0, 257, 257, {513u});
  check(TensorType::kQ8_0, 33, 4128, {100u});
  const platform::Tuning base = kernels().tuning();
  for (std::uint32_t thread_rows : {4u, 16u}) {
    kernels().set_tuning(gpu_tiles(base, thread_rows));
    CAPTURE(thread_rows);
    for (TensorType type : {TensorType::kQ4_0, TensorType::kQ6_K, TensorType::kQ2_K}) {
      check(type, 256, 100, {17u, 100u});
    }
  }
  kernels().set_tuning(std::nullopt);
  MESSAGE("intdot tiled: worst NMSE " << worst << " against the reference on int8 activations");
  // The other types, forced to intdot at prompt sizes, take the f32 tiled GEMM.
  const ForceKernels intdot(kernels(), ops::KernelChoice::intdot);
  check_types({TensorType::kF16, TensorType::kIQ4_XS}, 0, 33, {100u});
}

TEST_CASE_FIXTURE(WeightTest, "forcing coopmat where the device has no matrices names the device") {
  if (ops::coopmat_available(kernels().tuning())) {
    platform::Tuning t = kernels().tuning();
    t.coopmat_m = 0;
    kernels().set_tuning(t);
  }
  CHECK_THROWS_AS(kernels().set_choice(ops::KernelChoice::coopmat), Unsupported);
  CHECK(kernels().choice() != ops::KernelChoice::coopmat);
  kernels().set_tuning(std::nullopt);
}

TEST_CASE("the matmul path: automatic by token count, forced by VKLLM_KERNELS' values") {
  CHECK(ops::parse_kernel_choice("auto") == ops::KernelChoice::automatic);
  CHECK(ops::parse_kernel_choice("gemv") == ops::KernelChoice::gemv);
  CHECK(ops::parse_kernel_choice("tiled") == ops::KernelChoice::tiled);
  CHECK(ops::parse_kernel_choice("coopmat") == ops::KernelChoice::coopmat);
  CHECK(ops::parse_kernel_choice("intdot") == ops::KernelChoice::intdot);
  CHECK_THROWS_WITH_AS(ops::parse_kernel_choice("fast"),
                       "kernels 'fast': expected auto, gemv, tiled, coopmat or intdot",
                       InvalidRequest);
}

TEST_CASE_FIXTURE(WeightTest, "choose_matmul: the token count against tiled_min_tokens, or forced") {
  // The float paths (integer dot below; matrix cores, where a GPU has them, in their own tests).
  platform::Tuning t = kernels().tuning();
  t.intdot_max_tokens = 0;
  t.coopmat_min_tokens = 0;
  kernels().set_tuning(t);
  const std::uint32_t min = t.tiled_min_tokens;
  CHECK(ops::choose_matmul(kernels(), 1) == ops::MatmulPath::gemv);
  CHECK(ops::choose_matmul(kernels(), min - 1) == ops::MatmulPath::gemv);
  CHECK(ops::choose_matmul(kernels(), min) == ops::MatmulPath::tiled);
  {
    const ForceKernels gemv(kernels(), ops::KernelChoice::gemv);
    CHECK(ops::choose_matmul(kernels(), 512) == ops::MatmulPath::gemv);
  }
  {
    const ForceKernels tiled(kernels(), ops::KernelChoice::tiled);
    CHECK(ops::choose_matmul(kernels(), 1) == ops::MatmulPath::tiled);
  }
  kernels().set_tuning(std::nullopt);
}

TEST_CASE("choose_matmul: integer dot's GEMV below tiled_min_tokens, its tiled GEMM from there") {
  if (!ops::intdot_shaders_built()) {
    MESSAGE("SKIP: this build has no integer-dot shaders");
    return;
  }
  platform::Tuning t;
  t.intdot = true;
  const std::uint32_t min = t.tiled_min_tokens;
  // Forced: by the count, as gemv/tiled.
  CHECK(ops::choose_matmul(ops::KernelChoice::intdot, t, 1) == ops::MatmulPath::intdot);
  CHECK(ops::choose_matmul(ops::KernelChoice::intdot, t, min - 1) == ops::MatmulPath::intdot);
  CHECK(ops::choose_matmul(ops::KernelChoice::intdot, t, min) == ops::MatmulPath::intdot_tiled);
  // Automatic, not accelerated (intdot_max_tokens 0): never.
  CHECK(ops::choose_matmul(ops::KernelChoice::automatic, t, 1) == ops::MatmulPath::gemv);
  CHECK(ops::choose_matmul(ops::KernelChoice::automatic, t, 512) == ops::MatmulPath::tiled);
  // Decode only (prompts on matrix cores).
  t.intdot_max_tokens = min - 1;
  CHECK(ops::choose_matmul(ops::KernelChoice::automatic, t, min - 1) == ops::MatmulPath::intdot);
  CHECK(ops::choose_matmul(ops::KernelChoice::automatic, t, min) == ops::MatmulPath::tiled);
  // Every count (no matrix cores).
  t.intdot_max_tokens = UINT32_MAX;
  CHECK(ops::choose_matmul(ops::KernelChoice::automatic, t, 1) == ops::MatmulPath::intdot);
  CHECK(ops::choose_matmul(ops::KernelChoice::automatic, t, 512) == ops::MatmulPath::intdot_tiled);
  CHECK(ops::reads_q8(ops::MatmulPath::intdot_tiled));
  CHECK_FALSE(ops::reads_q8(ops::MatmulPath::tiled));
}

TEST_CASE_FIXTURE(WeightTest, "get_rows decodes every type exactly; out-of-range ids give zeros") {
  std::size_t total_mismatches = 0;
  for (TensorType type : kTypes) {
    for (std::uint32_t ncols : col_counts(type)) {
      const std::uint32_t nrows = 67;
      CAPTURE(gguf::type_name(type));
      CAPTURE(ncols);
      const auto q = ref::random_quantized(rng(), type, ncols, nrows);
      const auto w = upload_weight(type, q, ncols, nrows);
      const std::vector<std::uint32_t> ids = {0,  66, 5, 5,      nrows, 31,
                                              40, 1,  nrows + 7, 0xFFFFFFFFu, 65};
      std::size_t mismatches = 0;
      CHECK(get_rows_nmse(w.view(), q.values, ids, &mismatches) < kExact);
      total_mismatches += mismatches;
    }
  }
  // Bit-exact where the device rounds like the CPU (no fused multiply-add in the decode).
  MESSAGE("get_rows: " << total_mismatches << " values differ in any bit from gguf::dequantize");
}

TEST_CASE_FIXTURE(WeightTest, "chunked weights: matmul and get_rows across 3+ chunks") {
  for (TensorType type : {TensorType::kF16, TensorType::kQ4_0, TensorType::kQ5_1,
                          TensorType::kQ6_K}) {
    const std::uint32_t ncols = type == TensorType::kQ6_K ? 512 : 96, nrows = 67;
    CAPTURE(gguf::type_name(type));
    const std::uint64_t row_bytes = ops::weight_row_bytes(type, ncols);
    const std::uint64_t max_chunk = 20 * row_bytes + row_bytes / 2;  // 20 rows a chunk
    const auto q = ref::random_quantized(rng(), type, ncols, nrows);
    const auto w = upload_weight(type, q, ncols, nrows, max_chunk);
    const auto& view = w.view();
    REQUIRE(view.chunks.size() == 4);
    std::uint32_t next = 0;
    for (const auto& c : view.chunks) {
      CHECK(c.row0 == next);
      CHECK(std::uint64_t{c.nrows} * row_bytes <= max_chunk);
      next += c.nrows;
    }
    CHECK(next == nrows);
    CHECK(w.bytes() >= nrows * row_bytes);
    for (std::uint32_t ntok : {1u, 17u}) {
      CAPTURE(ntok);
      CHECK(matmul_nmse(view, q.values, ntok) < kMatmul);
    }
    // Ids in every chunk, at chunk edges, repeated, and out of range.
    const std::vector<std::uint32_t> ids = {66, 0, 19, 20, 39, 40, 59, 60, 67, 3, 1000, 60, 45};
    std::size_t mismatches = 0;
    CHECK(get_rows_nmse(view, q.values, ids, &mismatches) < kExact);
  }
}

TEST_CASE_FIXTURE(WeightTest, "get_rows gathers f32 activation rows through f32_view") {
  const std::uint32_t ncols = 37, nrows = 9;
  const auto a = ref::random_floats(rng(), std::size_t(ncols) * nrows);
  auto da = upload_floats(a, "activations");
  const std::vector<std::uint32_t> ids = {8, 0, 4, 4, 9};
  std::size_t mismatches = 0;
  CHECK(get_rows_nmse(ops::f32_view(da, ncols, nrows), a, ids, &mismatches) < kExact);
  CHECK(mismatches == 0);  // a copy: nothing to round
}

TEST_CASE_FIXTURE(WeightTest, "weights: sizes, limits and unsupported types are errors") {
  CHECK(ops::weight_row_bytes(TensorType::kQ4_0, 64) == 36);
  CHECK(ops::weight_row_bytes(TensorType::kQ6_K, 512) == 420);
  CHECK(ops::weight_row_bytes(TensorType::kF16, 7) == 14);
  CHECK_THROWS_AS(ops::weight_row_bytes(TensorType::kQ4_K, 96), InvalidModel);
  for (TensorType type : kTypes) CHECK(ops::weight_type_supported(kernels(), type));
  CHECK_FALSE(ops::weight_type_supported(kernels(), TensorType::kIQ3_S));
  CHECK_FALSE(ops::weight_type_supported(kernels(), TensorType::kIQ2_XXS));

  const auto q = ref::random_quantized(rng(), TensorType::kQ8_0, 64, 3);
  // Too few bytes for the shape.
  CHECK_THROWS_AS(ops::DeviceWeight::upload(device(), TensorType::kQ8_0, 64, 4,
                                            as_bytes(q.bytes), "W"),
                  InvalidModel);
  // A chunk limit below one row.
  CHECK_THROWS_AS(ops::DeviceWeight::upload(device(), TensorType::kQ8_0, 64, 3,
                                            as_bytes(q.bytes), "W", 60),
                  Unsupported);
  // A view of a type no kernel reads.
  const auto w = upload_weight(TensorType::kQ8_0, q, 64, 3);
  ops::WeightView view = w.view();
  view.type = TensorType::kTQ2_0;
  view.ncols = 256;  // one block of 66 bytes: the chunk's bytes fit, the type does not
  auto dx = poisoned_floats(64, "x");
  auto dy = poisoned_floats(3, "y");
  auto cs = device().command_stream();
  cs.begin();
  CHECK_THROWS_AS(ops::record_matmul(kernels(), cs, view, dx, dy, 1), Unsupported);
  cs.end();
}
