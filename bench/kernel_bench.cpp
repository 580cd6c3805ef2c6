// vkllm-bench-kernels: validates each kernel against its CPU reference, then times it with
// timestamp queries (median of repeats) and reports GB/s against the measured copy ceiling.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <random>

#include "engine/gguf/quant.hpp"
#include "common/error.hpp"
#include "engine/ops/attention.hpp"
#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/norm.hpp"
#include "engine/ops/sample.hpp"
#include "platform/device.hpp"
#include "tests/reference/attention_ref.hpp"
#include "tests/reference/quant_ref.hpp"
#include "tests/reference/reference.hpp"
#include "tests/reference/sample_ref.hpp"

using namespace vkllm;
using platform::Buffer;
using platform::MemoryIntent;

namespace {

struct Case {
  std::string name;
  std::string shape;
  std::uint64_t bytes;  // moved per run (read + written); matmul: the weight's bytes only
  double flops;         // per run, 0 where the kernel is not arithmetic-bound
  std::function<void(platform::CommandStream&)> record;     // one run
  std::function<double()> error;                            // NMSE against the reference
  double tolerance;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Times `reps` runs recorded back to back (each its own timed command) after one warm-up run,
// or after `warmup_ms` of runs: a GPU that idled (the reference check between cases) lowers its
// clocks, and a few milliseconds of work are over before they are raised again.
double time_ms(platform::Device& dev, const std::function<void(platform::CommandStream&)>& run,
               int reps, double warmup_ms = 0) {
  auto cs = dev.command_stream();
  const auto start = std::chrono::steady_clock::now();
  do {
    cs.begin();
    for (int i = 0; i < (warmup_ms > 0 ? std::max(reps, 1) : 1); ++i) run(cs);
    cs.end();
    cs.submit_and_wait();
  } while (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
               .count() < warmup_ms);
  cs.begin(/*profile=*/true);
  for (int i = 0; i < reps; ++i) run(cs);
  cs.end();
  cs.submit_and_wait();
  // A run may record several dispatches: each run's time is the sum of its own.
  const auto& timings = cs.timings();
  const std::size_t per_run = std::max<std::size_t>(timings.size() / reps, 1);
  std::vector<double> ms(timings.size() / per_run, 0.0);
  for (std::size_t i = 0; i < ms.size() * per_run; ++i) ms[i / per_run] += timings[i].ms;
  return median(ms);
}

Buffer upload(platform::Device& dev, const std::vector<float>& v, MemoryIntent intent,
              const char* name) {
  Buffer b = dev.create_buffer(v.size() * 4, intent, name);
  dev.upload(b, 0, std::as_bytes(std::span<const float>(v)));
  return b;
}

std::vector<float> download(platform::Device& dev, const Buffer& b, std::size_t n) {
  std::vector<float> v(n);
  dev.download(b, 0, std::as_writable_bytes(std::span<float>(v)));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vkllm kernel benchmark: validate, then time each kernel"};
  std::optional<std::size_t> device_index;
  int reps = 20;
  std::uint32_t rows = 4096, cols = 4096;
  app.add_option("--device", device_index, "Vulkan device index (see vkllm devices)");
  app.add_option("--reps", reps, "timed repetitions per kernel (median reported)")->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::uint32_t prefill = 64;
  std::uint32_t rotate_mib = 256;
  double warmup_ms = 0;
  app.add_option("--warmup-ms", warmup_ms,
                 "before timing each kernel, run it for this long (GPUs raise their clocks under "
                 "sustained load; 0: one run)");
  app.add_option("--rotate-mib", rotate_mib,
                 "matmul weights are uploaded in as many copies as fill this many MiB, and the "
                 "timed runs take them in turn: a weight smaller than the device's last-level "
                 "cache would otherwise be read from the cache, which a model's layers never are");
  std::vector<std::string> types;
  app.add_option("--types", types, "matmul weight types (default: f32,f16,q8_0,q4_0,q4_k,q6_k)")
      ->delimiter(',');
  app.add_option("--rows", rows, "matmul weight rows")->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--cols", cols, "matmul weight columns")->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--prefill", prefill, "tokens of the prefill matmul cases")->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::uint32_t> attn_contexts{1024, 4096};
  app.add_option("--attn-ctx", attn_contexts, "contexts of the decode attention cases")->delimiter(',');
  std::uint32_t attn_prefill = 512;
  app.add_option("--attn-prefill", attn_prefill, "tokens of the prefill attention case (0: none)");
  std::vector<std::uint32_t> attn_heads{32, 8, 128};
  app.add_option("--attn-heads", attn_heads, "query heads, KV heads, head dim of the prefill attention case")
      ->delimiter(',')
      ->expected(3);
  std::string only;
  app.add_option("--only", only, "run only the kernels whose name contains this");
  std::vector<std::string> tune;
  app.add_option("--tune", tune,
                 "override the device's Tuning for a sweep: name=value,... (matvec_workgroup, "
                 "matvec_rows, matmul_rows, matmul_tokens, tiled_rows, tiled_tokens, "
                 "tiled_thread_rows, tiled_thread_tokens, coopmat_rows, coopmat_tokens, "
                 "coopmat_sg_rows, coopmat_sg_tokens, attn_subgroups, attn_sg_rows, attn_lane_keys; "
                 "matvec_lane_rows=0|1)")
      ->delimiter(',');
  std::vector<std::string> sweep;
  app.add_option("--sweep", sweep,
                 "run the (--only) kernels once per tuning, each entry name=value,... on top of "
                 "--tune (entries separated by ';'; the coopmat and attention entries need shapes "
                 "the device accepts)")
      ->delimiter(';');
  CLI11_PARSE(app, argc, argv);

  try {
    auto instance = platform::Instance::create({});
    const std::size_t index = instance.choose_device(device_index);
    auto dev = platform::Device::open(instance, index);
    ops::Kernels k(*dev);
    const auto& caps = dev->caps();
    // Tuning overrides: --tune for the whole run, each --sweep entry on top of it in turn.
    const auto apply = [](platform::Tuning& t, const std::vector<std::string>& kvs) {
      const std::pair<const char*, std::uint32_t platform::Tuning::*> fields[] = {
          {"matvec_workgroup", &platform::Tuning::matvec_workgroup},
          {"matvec_rows", &platform::Tuning::matvec_rows},
          {"matmul_rows", &platform::Tuning::matmul_rows},
          {"matmul_tokens", &platform::Tuning::matmul_tokens},
          {"tiled_rows", &platform::Tuning::tiled_rows},
          {"tiled_tokens", &platform::Tuning::tiled_tokens},
          {"tiled_thread_rows", &platform::Tuning::tiled_thread_rows},
          {"tiled_thread_tokens", &platform::Tuning::tiled_thread_tokens},
          {"coopmat_rows", &platform::Tuning::coopmat_rows},
          {"coopmat_tokens", &platform::Tuning::coopmat_tokens},
          {"coopmat_sg_rows", &platform::Tuning::coopmat_sg_rows},
          {"coopmat_sg_tokens", &platform::Tuning::coopmat_sg_tokens},
          {"attn_subgroups", &platform::Tuning::attn_subgroups},
          {"attn_sg_rows", &platform::Tuning::attn_sg_rows},
          {"attn_lane_keys", &platform::Tuning::attn_lane_keys}};
      for (const std::string& kv : kvs) {
        if (kv == "matvec_lane_rows=1" || kv == "matvec_lane_rows=0") {
          t.matvec_lane_rows = kv.back() == '1';
          continue;
        }
        const auto eq = kv.find('=');
        const auto f = std::find_if(std::begin(fields), std::end(fields), [&](const auto& e) {
          return eq != std::string::npos && kv.compare(0, eq, e.first) == 0 && std::strlen(e.first) == eq;
        });
        if (f == std::end(fields)) {
          throw InvalidRequest("--tune/--sweep: '" + kv +
                               "' is not name=value with a name listed in --help");
        }
        t.*(f->second) = static_cast<std::uint32_t>(std::stoul(kv.substr(eq + 1)));
      }
    };
    platform::Tuning base = caps.tuning;
    apply(base, tune);
    if (!tune.empty()) k.set_tuning(base);
    // Each sweep entry: its label and the tuning it runs with (one entry, the base, by default).
    std::vector<std::pair<std::string, platform::Tuning>> configs{{"", base}};
    if (!sweep.empty()) configs.clear();
    for (const std::string& entry : sweep) {
      std::vector<std::string> kvs;
      for (std::size_t from = 0; from <= entry.size();) {
        const std::size_t comma = std::min(entry.find(',', from), entry.size());
        if (comma > from) kvs.push_back(entry.substr(from, comma - from));
        from = comma + 1;
      }
      platform::Tuning t = base;
      apply(t, kvs);
      configs.emplace_back(" [" + entry + "]", t);
    }
    std::mt19937 rng(1234);

    // Ceiling: a large device-local copy (bytes read + bytes written).
    const std::uint64_t copy_bytes = std::min<std::uint64_t>(256ull << 20, caps.max_allocation);
    Buffer src = dev->create_buffer(copy_bytes, MemoryIntent::activations, "copy src");
    Buffer dst = dev->create_buffer(copy_bytes, MemoryIntent::activations, "copy dst");
    const double copy_ms =
        time_ms(*dev, [&](auto& cs) { cs.copy(src, dst, "copy"); }, reps, warmup_ms);
    const double ceiling = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;

    std::vector<Case> cases;
    // Products with weights in their GGUF block format: decode (one token, the matrix-vector
    // product that bounds generation speed) and prefill (a tile of tokens per weight read).
    // GB/s counts the weight's bytes: what decode speed depends on.
    struct MatmulWeight {
      gguf::TensorType type;
      ref::QuantizedWeights q;
      std::vector<ops::DeviceWeight> copies;  // equal contents; runs take them in turn
      mutable std::size_t next = 0;
      const ops::DeviceWeight& take() const { return copies[next++ % copies.size()]; }
    };
    std::vector<MatmulWeight> weights;
    for (auto type : {gguf::TensorType::kF32, gguf::TensorType::kF16, gguf::TensorType::kQ8_0,
                      gguf::TensorType::kQ4_0, gguf::TensorType::kQ4_K,
                      gguf::TensorType::kQ6_K}) {
      std::string name(gguf::type_name(type));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (!types.empty() && std::find(types.begin(), types.end(), name) == types.end()) continue;
      auto q = ref::random_quantized(rng, type, cols, rows);
      const std::uint64_t wbytes = std::max<std::uint64_t>(q.bytes.size(), 1);
      const std::uint64_t ncopies =
          std::clamp<std::uint64_t>(((std::uint64_t(rotate_mib) << 20) + wbytes - 1) / wbytes, 1, 64);
      MatmulWeight mw{type, std::move(q), {}};
      for (std::uint64_t i = 0; i < ncopies; ++i) {
        mw.copies.push_back(ops::DeviceWeight::upload(
            *dev, type, cols, rows, std::as_bytes(std::span<const std::uint8_t>(mw.q.bytes)), "W"));
      }
      weights.push_back(std::move(mw));
    }
    const std::uint32_t max_tok = std::max<std::uint32_t>(prefill, 1);
    const auto xv = ref::random_floats(rng, std::size_t(cols) * max_tok);
    Buffer x = upload(*dev, xv, MemoryIntent::activations, "x");
    Buffer y = dev->create_buffer(std::uint64_t(rows) * max_tok * 4, MemoryIntent::activations,
                                  "y");
    // Decode through the matrix-vector kernel; prefill through each path (ops::MatmulPath).
    struct MatmulRun {
      std::uint32_t ntok;
      ops::KernelChoice path;
    };
    std::vector<MatmulRun> runs{{1, ops::KernelChoice::gemv}};
    // The integer-dot GEMV: its time includes quantizing x (ops::record_quantize_q8).
    Buffer xq;
    if (ops::intdot_available(k.tuning())) {
      runs.push_back({1, ops::KernelChoice::intdot});
      xq = dev->create_buffer(ops::q8_activation_bytes(max_tok, cols), MemoryIntent::activations,
                              "xq");
    }
    if (prefill > 1) {
      runs.push_back({prefill, ops::KernelChoice::gemv});
      runs.push_back({prefill, ops::KernelChoice::tiled});
      if (ops::coopmat_available(k.tuning())) runs.push_back({prefill, ops::KernelChoice::coopmat});
      // The integer-dot GEMV's 8-token tiles, or from tiled_min_tokens its tiled GEMM (MMQ).
      if (ops::intdot_available(k.tuning())) runs.push_back({prefill, ops::KernelChoice::intdot});
    }
    for (const MatmulRun& run : runs) {
      const std::uint32_t ntok = run.ntok;
      for (const MatmulWeight& mw : weights) {
        if (ntok > 1 && mw.type == gguf::TensorType::kF32) continue;
        const bool q8 = run.path == ops::KernelChoice::intdot;
        if (q8 && (mw.type == gguf::TensorType::kF32 || mw.type == gguf::TensorType::kF16)) {
          continue;  // the types without integer codes would only repeat the gemv rows
        }
        const std::uint64_t wbytes = mw.q.bytes.size();
        cases.push_back(Case{
            fmt::format("matmul_{} {}", gguf::type_name(mw.type),
                        ops::to_string(ops::choose_matmul(run.path, k.tuning(), ntok))),
            fmt::format("{}x{} x {} tok", rows, cols, ntok), wbytes,
            2.0 * rows * cols * ntok,
            [&, ntok, q8, path = run.path](auto& cs) {
              const ops::KernelChoice before = k.choice();
              k.set_choice(path);
              ops::MatmulOut out;
              if (q8) {
                ops::record_quantize_q8(k, cs, x, xq, ntok, cols);
                out.x_q8 = xq;
              }
              ops::record_matmul(k, cs, mw.take().view(), x, y, ntok, out);
              k.set_choice(before);
            },
            [&, ntok] {
              // The first tokens only: the CPU reference of a 512-token product of an 8B
              // model's shapes would take longer than every timed run together (the tests
              // check all tokens at shapes that are no multiple of a tile).
              const std::uint32_t checked = std::min<std::uint32_t>(ntok, 16);
              std::vector<float> expected(std::size_t(rows) * checked);
              ref::matmul(mw.q.values,
                          std::span<const float>(xv).first(std::size_t(cols) * checked), expected,
                          cols, rows, checked);
              return ref::nmse(download(*dev, y, expected.size()), expected);
            },
            5e-4});
      }
    }
    // Elementwise and row ops on 16M floats / 4096 rows of 4096.
    const std::uint32_t n = 1u << 24;
    const auto av = ref::random_floats(rng, n), bv = ref::random_floats(rng, n);
    Buffer a = upload(*dev, av, MemoryIntent::activations, "a");
    Buffer b = upload(*dev, bv, MemoryIntent::activations, "b");
    Buffer o = dev->create_buffer(std::uint64_t(n) * 4, MemoryIntent::activations, "out");
    const auto wn = ref::random_floats(rng, 4096, 0.5f, 1.5f);
    Buffer wnorm = upload(*dev, wn, MemoryIntent::weights, "norm w");
    cases.push_back(Case{"add_f32", fmt::format("{}", n), 12ull * n, 0,
                         [&](auto& cs) { ops::record_add(k, cs, a, b, o, n); },
                         [&] {
                           std::vector<float> e(n);
                           ref::add(av, bv, e);
                           return ref::nmse(download(*dev, o, n), e);
                         },
                         1e-7});
    const std::uint32_t nrows = n / 4096;
    cases.push_back(Case{"rms_norm_f32", fmt::format("{}x4096", nrows), 8ull * n + 4096 * 4, 0,
                         [&](auto& cs) { ops::record_rms_norm(k, cs, a, wnorm, o, 4096, nrows, 1e-5f); },
                         [&] {
                           std::vector<float> e(n);
                           ref::rms_norm(av, wn, e, 4096, nrows, 1e-5f);
                           return ref::nmse(download(*dev, o, n), e);
                         },
                         1e-7});
    cases.push_back(Case{"softmax_f32", fmt::format("{}x4096", nrows), 12ull * n, 0,
                         [&](auto& cs) { ops::record_softmax(k, cs, a, o, 4096, nrows, 1.0f); },
                         [&] {
                           std::vector<float> e(n);
                           ref::softmax(av, e, 4096, nrows, 1.0f);
                           return ref::nmse(download(*dev, o, n), e);
                         },
                         1e-7});

    // Attention over one sequence of paged K/V (blocks shuffled). Decode: a llama3-8b layer (32
    // query heads on 8 KV heads of 128), one pass walking the context against flash-decoding
    // ranges; bytes: the K/V read. Prefill: a causal chunk of --attn-prefill tokens from position
    // 0 with the heads of --attn-heads; FLOPs: QK^T and PV over the keys each token attends.
    const ops::KvType kv_type = caps.fp16_storage ? ops::KvType::f16 : ops::KvType::f32;
    struct AttnData {
      ops::AttentionShape shape;
      std::vector<float> q, kp, vp, expected;
      std::vector<std::uint32_t> pos, qs, table;
      Buffer dq, dk, dv, dpos, dqs, dtable, dout, dpart, dcount;
    };
    std::vector<std::unique_ptr<AttnData>> attn;
    auto attention_case = [&](std::uint32_t ntok, std::uint32_t ctx, std::uint32_t heads,
                              std::uint32_t kv_heads, std::uint32_t hd, bool split,
                              ops::AttentionKernel kernel) {
      auto d = std::make_unique<AttnData>();
      ops::AttentionShape& sh = d->shape;
      sh.ntok = ntok;
      sh.nseq = 1;
      sh.n_heads = heads;
      sh.n_kv_heads = kv_heads;
      sh.head_dim = hd;
      sh.block_size = 16;
      sh.max_blocks_per_seq = (ctx + 15) / 16;
      sh.scale = 1.0f / std::sqrt(static_cast<float>(hd));
      sh.kv_type = kv_type;
      sh.split_keys = split ? ops::attention_split_keys(hd, ctx) : 0;
      sh.kernel = kernel;
      if (split && sh.split_keys == 0) return;
      const std::size_t pool = std::size_t{sh.max_blocks_per_seq} * 16 * kv_heads * hd;
      d->q = ref::random_floats(rng, std::size_t{ntok} * heads * hd, -3, 3);
      d->kp = ref::random_floats(rng, pool);
      d->vp = ref::random_floats(rng, pool);
      const bool f16 = kv_type == ops::KvType::f16;
      std::vector<std::uint16_t> kh(f16 ? pool : 0), vh(f16 ? pool : 0);
      for (std::size_t i = 0; f16 && i < pool; ++i) {
        kh[i] = gguf::fp32_to_fp16(d->kp[i]);
        vh[i] = gguf::fp32_to_fp16(d->vp[i]);
        d->kp[i] = gguf::fp16_to_fp32(kh[i]);
        d->vp[i] = gguf::fp16_to_fp32(vh[i]);
      }
      for (std::uint32_t t = 0; t < ntok; ++t) d->pos.push_back(ctx - ntok + t);
      d->qs = {0, ntok};
      d->table.resize(sh.max_blocks_per_seq);
      std::iota(d->table.begin(), d->table.end(), 0u);
      std::shuffle(d->table.begin(), d->table.end(), rng);
      d->expected.resize(d->q.size());
      ref::paged_attention(sh, d->q, d->kp, d->vp, d->pos, d->qs, d->table, d->expected);
      auto raw = [&](const void* p, std::size_t bytes, MemoryIntent intent, const char* name) {
        Buffer b = dev->create_buffer(std::max<std::size_t>(bytes, 4), intent, name);
        if (p) dev->upload(b, 0, std::span(static_cast<const std::byte*>(p), bytes));
        return b;
      };
      d->dq = upload(*dev, d->q, MemoryIntent::activations, "q");
      d->dk = f16 ? raw(kh.data(), pool * 2, MemoryIntent::activations, "k_pool")
                  : upload(*dev, d->kp, MemoryIntent::activations, "k_pool");
      d->dv = f16 ? raw(vh.data(), pool * 2, MemoryIntent::activations, "v_pool")
                  : upload(*dev, d->vp, MemoryIntent::activations, "v_pool");
      d->dpos = raw(d->pos.data(), d->pos.size() * 4, MemoryIntent::activations, "positions");
      d->dqs = raw(d->qs.data(), 8, MemoryIntent::activations, "query_start");
      d->dtable = raw(d->table.data(), d->table.size() * 4, MemoryIntent::activations, "table");
      d->dout = raw(nullptr, d->q.size() * 4, MemoryIntent::activations, "out");
      d->dpart = raw(nullptr, ops::attention_partial_bytes(sh), MemoryIntent::activations, "partials");
      const std::vector<std::uint32_t> zeros(ops::attention_counter_bytes(sh) / 4);
      d->dcount = raw(zeros.data(), zeros.size() * 4, MemoryIntent::activations, "counters");
      // Keys attended, summed over the query tokens (token t sees ctx - ntok + t + 1).
      const double attended = double(ntok) * (ctx - ntok) + double(ntok) * (ntok + 1) / 2;
      AttnData* a = d.get();
      const std::string kind =
          ntok == 1 ? std::string(split ? "attention_decode_split" : "attention_decode")
                    : fmt::format("attention_prefill {}", ops::to_string(kernel));
      cases.push_back(Case{
          kind,
          fmt::format("{}ctx {} {}/{} heads hd{} {}{}", ntok > 1 ? fmt::format("{} tok ", ntok) : "",
                      ctx, heads, kv_heads, hd, f16 ? "f16" : "f32",
                      split ? fmt::format(" {} ranges", std::min(32u, (ctx + sh.split_keys - 1) / sh.split_keys))
                            : std::string()),
          ntok > 1 ? 0 : 2ull * ctx * kv_heads * hd * (f16 ? 2 : 4), 4.0 * attended * heads * hd,
          [&k, a](auto& cs) {
            ops::record_attention(k, cs, a->shape, a->dq, a->dk, a->dv, a->dpos, a->dqs,
                                  a->dtable, a->dout, a->dpart, a->dcount);
          },
          [&dev, a] { return ref::nmse(download(*dev, a->dout, a->q.size()), a->expected); },
          kernel == ops::AttentionKernel::coopmat ? 2e-5 : 1e-6});  // coopmat: f16 inputs
      attn.push_back(std::move(d));
    };
    for (std::uint32_t ctx : attn_contexts) {
      for (bool split : {false, true}) attention_case(1, ctx, 32, 8, 128, split, ops::AttentionKernel::rows);
    }
    // Prefill through both kernels (ops::AttentionKernel), the tiled one where the device has it.
    for (auto kernel : {ops::AttentionKernel::rows, ops::AttentionKernel::tiled,
                        ops::AttentionKernel::coopmat}) {
      ops::AttentionShape probe;
      probe.head_dim = attn_heads[2];
      probe.kv_type = kv_type;
      probe.kernel = kernel;
      bool runs = attn_prefill > 1;
      try {
        if (runs) ops::attention_kernel(k, probe);
      } catch (const vkllm::Unsupported& e) {
        fmt::print("attention_prefill {}: {}\n", ops::to_string(kernel), e.what());
        runs = false;
      }
      if (runs) attention_case(attn_prefill, attn_prefill, attn_heads[0], attn_heads[1], attn_heads[2], false, kernel);
    }

    // The sampler over one row of Qwen2's vocabulary (151936): top-k 40, top-p 0.95, min-p 0.05
    // and temperature 0.8, as chat clients ask; temperature alone (OpenAI's defaults); top-p
    // alone. Checked: the reference draws the same id.
    const std::uint32_t vocab = 151936;
    const auto sample_logits = ref::random_floats(rng, vocab, -8, 8);
    Buffer s_logits = upload(*dev, sample_logits, MemoryIntent::activations, "logits");
    const ops::PenaltyEntry no_penalty{};
    Buffer s_pen = dev->create_buffer(sizeof(no_penalty), MemoryIntent::activations, "penalties");
    dev->upload(s_pen, 0, std::as_bytes(std::span<const ops::PenaltyEntry>(&no_penalty, 1)));
    Buffer s_scratch = dev->create_buffer(ops::sample_scratch_bytes(1, vocab), MemoryIntent::activations, "scratch");
    Buffer s_ids = dev->create_buffer(4, MemoryIntent::activations, "ids");
    Buffer s_lp = dev->create_buffer(4, MemoryIntent::activations, "logprobs");
    Buffer s_top = dev->create_buffer(ops::sample_top_bytes(1), MemoryIntent::activations, "top");
    struct SampleCase {
      const char* shape;
      ops::SamplingRow row;
      Buffer rows;
    };
    std::vector<std::unique_ptr<SampleCase>> sample_cases;
    auto sampling = [](float t, std::uint32_t top_k, float top_p, float min_p) {
      ops::SamplingRow r;
      r.temperature = t;
      r.top_k = top_k;
      r.top_p = top_p;
      r.min_p = min_p;
      r.seed_lo = 7;
      r.counter = 3;
      return r;
    };
    for (auto [shape, row] :
         {std::pair{"151936 vocab, top-k 40, top-p 0.95, min-p 0.05, T 0.8", sampling(0.8f, 40, 0.95f, 0.05f)},
          std::pair{"151936 vocab, T 1 alone", sampling(1.0f, 0, 1.0f, 0.0f)},
          std::pair{"151936 vocab, top-p 0.95 alone, T 0.8", sampling(0.8f, 0, 0.95f, 0.0f)}}) {
      auto sc = std::make_unique<SampleCase>(SampleCase{
          shape, row, dev->create_buffer(sizeof(row), MemoryIntent::activations, "rows")});
      dev->upload(sc->rows, 0, std::as_bytes(std::span<const ops::SamplingRow>(&sc->row, 1)));
      const SampleCase* c = sc.get();
      cases.push_back(Case{"sample", c->shape, 4ull * vocab, 0,
                           [&, c](auto& cs) {
                             ops::record_sample(k, cs, s_logits, c->rows, s_pen, s_scratch, s_ids, s_lp,
                                                s_top, 1, vocab);
                           },
                           [&, c] {
                             std::uint32_t id = 0;
                             dev->download(s_ids, 0, std::as_writable_bytes(std::span<std::uint32_t>(&id, 1)));
                             const ref::SampleResult want = ref::sample_row(sample_logits, c->row, {});
                             return want.ambiguous || want.id == id ? 0.0 : 1.0;
                           },
                           0.5});
      sample_cases.push_back(std::move(sc));
    }

    fmt::print("device: {} | driver {} {} | Vulkan {}\n", caps.props.name,
               caps.props.driver_name, caps.driver_version_string, caps.api_version_string);
    fmt::print("copy ceiling: {:.2f} GB/s ({} MiB device-local copy, median of {})\n\n", ceiling,
               copy_bytes >> 20, reps);
    fmt::print("| kernel | shape | NMSE vs reference | median ms | GB/s | of copy ceiling "
               "| GFLOP/s |\n");
    fmt::print("|---|---|---|---|---|---|---|\n");
    int failures = 0;
    // Validate first: a kernel proves it is right before it proves it is fast.
    const auto run_case = [&](const Case& c, const std::string& name) {
      auto cs = dev->command_stream();
      cs.begin();
      c.record(cs);
      cs.end();
      cs.submit_and_wait();
      const double err = c.error();
      if (!(err < c.tolerance)) {
        fmt::print("| {} | {} | {:.2e} FAILED (limit {:.0e}) | - | - | - | - |\n", name,
                   c.shape, err, c.tolerance);
        ++failures;
        return;
      }
      const double ms = time_ms(*dev, c.record, reps, warmup_ms);
      const double gbs = c.bytes / (ms * 1e-3) / 1e9;
      const std::string gflops =
          c.flops > 0 ? fmt::format("{:.1f}", c.flops / (ms * 1e-3) / 1e9) : std::string("-");
      // Bytes 0: an arithmetic-bound case whose traffic is not the point (prefill attention).
      const std::string bw = c.bytes > 0 ? fmt::format("{:.2f} | {:.0f}%", gbs, 100.0 * gbs / ceiling)
                                         : std::string("- | -");
      fmt::print("| {} | {} | {:.1e} | {:.3f} | {} | {} |\n", name, c.shape, err, ms, bw, gflops);
    };
    for (const auto& [label, tuning] : configs) {
      if (!sweep.empty()) k.set_tuning(tuning);
      for (const Case& c : cases) {
        if (!only.empty() && c.name.find(only) == std::string::npos) continue;
        try {
          run_case(c, c.name + label);
        } catch (const vkllm::Error& e) {
          // A sweep entry the device refuses (a tile past its limits) costs its row, not the run.
          fmt::print("| {}{} | {} | {} | - | - | - | - |\n", c.name, label, c.shape, e.what());
          ++failures;
        }
      }
    }
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vkllm-bench-kernels: {}\n", e.what());
    return 1;
  }
}
