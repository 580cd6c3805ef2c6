// vkllm-bench-kernels: validates each kernel against its CPU reference, then times it with
// timestamp queries (median of repeats) and reports GB/s against the measured copy ceiling.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <random>

#include "engine/gguf/quant.hpp"
#include "engine/ops/elementwise.hpp"
#include "engine/ops/matvec.hpp"
#include "engine/ops/norm.hpp"
#include "platform/device.hpp"
#include "tests/reference/reference.hpp"

using namespace vkllm;
using platform::Buffer;
using platform::MemoryIntent;

namespace {

struct Case {
  std::string name;
  std::string shape;
  std::uint64_t bytes;                                      // moved per run (read + written)
  std::function<void(platform::CommandStream&)> record;     // one run
  std::function<double()> error;                            // NMSE against the reference
  double tolerance;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Times `reps` runs recorded back to back (each its own timed command) after one warm-up run.
double time_ms(platform::Device& dev, const std::function<void(platform::CommandStream&)>& run,
               int reps) {
  auto cs = dev.command_stream();
  cs.begin();
  run(cs);
  cs.end();
  cs.submit_and_wait();
  cs.begin(/*profile=*/true);
  for (int i = 0; i < reps; ++i) run(cs);
  cs.end();
  cs.submit_and_wait();
  std::vector<double> ms;
  for (const auto& t : cs.timings()) ms.push_back(t.ms);
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
  app.add_option("--reps", reps, "timed repetitions per kernel (median reported)");
  app.add_option("--rows", rows, "matvec rows");
  app.add_option("--cols", cols, "matvec columns");
  CLI11_PARSE(app, argc, argv);

  try {
    auto instance = platform::Instance::create({});
    const std::size_t index = instance.choose_device(device_index);
    auto dev = platform::Device::open(instance, index);
    ops::Kernels k(*dev);
    const auto& caps = dev->caps();
    std::mt19937 rng(1234);

    // Ceiling: a large device-local copy (bytes read + bytes written).
    const std::uint64_t copy_bytes = std::min<std::uint64_t>(256ull << 20, caps.max_allocation);
    Buffer src = dev->create_buffer(copy_bytes, MemoryIntent::activations, "copy src");
    Buffer dst = dev->create_buffer(copy_bytes, MemoryIntent::activations, "copy dst");
    const double copy_ms = time_ms(*dev, [&](auto& cs) { cs.copy(src, dst, "copy"); }, reps);
    const double ceiling = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;

    std::vector<Case> cases;
    // Matrix-vector products: the decode-time workhorse.
    const auto wf = ref::random_floats(rng, std::size_t(rows) * cols);
    const auto xv = ref::random_floats(rng, cols);
    std::vector<std::uint16_t> wh(wf.size());
    std::vector<float> wf16(wf.size());
    for (std::size_t i = 0; i < wf.size(); ++i) {
      wh[i] = gguf::fp32_to_fp16(wf[i]);
      wf16[i] = gguf::fp16_to_fp32(wh[i]);
    }
    Buffer w32 = upload(*dev, wf, MemoryIntent::weights, "W f32");
    Buffer w16 = dev->create_buffer(wh.size() * 2, MemoryIntent::weights, "W f16");
    dev->upload(w16, 0, std::as_bytes(std::span<const std::uint16_t>(wh)));
    Buffer x = upload(*dev, xv, MemoryIntent::activations, "x");
    Buffer y = dev->create_buffer(rows * 4, MemoryIntent::activations, "y");
    for (auto type : {ops::WeightType::f16, ops::WeightType::f32}) {
      const bool f16 = type == ops::WeightType::f16;
      const std::uint64_t wbytes = std::uint64_t(rows) * cols * (f16 ? 2 : 4);
      cases.push_back(Case{
          f16 ? "matvec_f16" : "matvec_f32", fmt::format("{}x{}", rows, cols),
          wbytes + cols * 4ull + rows * 4ull,
          [&, type, f16](auto& cs) {
            ops::record_matvec(k, cs, type, f16 ? w16 : w32, x, y, cols, rows);
          },
          [&, f16] {
            std::vector<float> expected(rows);
            ref::matvec(f16 ? wf16 : wf, xv, expected, cols, rows);
            return ref::nmse(download(*dev, y, rows), expected);
          },
          5e-4});
    }
    // Elementwise and row ops on 16M floats / 4096 rows of 4096.
    const std::uint32_t n = 1u << 24;
    const auto av = ref::random_floats(rng, n), bv = ref::random_floats(rng, n);
    Buffer a = upload(*dev, av, MemoryIntent::activations, "a");
    Buffer b = upload(*dev, bv, MemoryIntent::activations, "b");
    Buffer o = dev->create_buffer(std::uint64_t(n) * 4, MemoryIntent::activations, "out");
    const auto wn = ref::random_floats(rng, 4096, 0.5f, 1.5f);
    Buffer wnorm = upload(*dev, wn, MemoryIntent::weights, "norm w");
    cases.push_back(Case{"add_f32", fmt::format("{}", n), 12ull * n,
                         [&](auto& cs) { ops::record_add(k, cs, a, b, o, n); },
                         [&] {
                           std::vector<float> e(n);
                           ref::add(av, bv, e);
                           return ref::nmse(download(*dev, o, n), e);
                         },
                         1e-7});
    const std::uint32_t nrows = n / 4096;
    cases.push_back(Case{"rms_norm_f32", fmt::format("{}x4096", nrows), 8ull * n + 4096 * 4,
                         [&](auto& cs) { ops::record_rms_norm(k, cs, a, wnorm, o, 4096, nrows, 1e-5f); },
                         [&] {
                           std::vector<float> e(n);
                           ref::rms_norm(av, wn, e, 4096, nrows, 1e-5f);
                           return ref::nmse(download(*dev, o, n), e);
                         },
                         1e-7});
    cases.push_back(Case{"softmax_f32", fmt::format("{}x4096", nrows), 12ull * n,
                         [&](auto& cs) { ops::record_softmax(k, cs, a, o, 4096, nrows, 1.0f); },
                         [&] {
                           std::vector<float> e(n);
                           ref::softmax(av, e, 4096, nrows, 1.0f);
                           return ref::nmse(download(*dev, o, n), e);
                         },
                         1e-7});

    fmt::print("device: {} | driver {} {} | Vulkan {}\n", caps.props.name,
               caps.props.driver_name, caps.driver_version_string, caps.api_version_string);
    fmt::print("copy ceiling: {:.2f} GB/s ({} MiB device-local copy, median of {})\n\n", ceiling,
               copy_bytes >> 20, reps);
    fmt::print("| kernel | shape | NMSE vs reference | median ms | GB/s | of copy ceiling |\n");
    fmt::print("|---|---|---|---|---|---|\n");
    int failures = 0;
    for (const Case& c : cases) {
      // Validate first: a kernel proves it is right before it proves it is fast.
      auto cs = dev->command_stream();
      cs.begin();
      c.record(cs);
      cs.end();
      cs.submit_and_wait();
      const double err = c.error();
      if (!(err < c.tolerance)) {
        fmt::print("| {} | {} | {:.2e} FAILED (limit {:.0e}) | - | - | - |\n", c.name, c.shape,
                   err, c.tolerance);
        ++failures;
        continue;
      }
      const double ms = time_ms(*dev, c.record, reps);
      const double gbs = c.bytes / (ms * 1e-3) / 1e9;
      fmt::print("| {} | {} | {:.1e} | {:.3f} | {:.2f} | {:.0f}% |\n", c.name, c.shape, err, ms,
                 gbs, 100.0 * gbs / ceiling);
    }
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vkllm-bench-kernels: {}\n", e.what());
    return 1;
  }
}
