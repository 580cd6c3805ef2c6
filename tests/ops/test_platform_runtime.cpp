// The platform layer at run time: arenas, limits, barrier tracking, replay, timestamps, the
// pipeline cache and typed errors. Runs on lavapipe with validation on.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "common/error.hpp"
#include "engine/ops/elementwise.hpp"
#include "tests/reference/reference.hpp"
#include "tests/support/device_fixture.hpp"

using namespace vkllm;
using platform::MemoryIntent;
using test::DeviceTest;
using test::gpu;

TEST_CASE_FIXTURE(DeviceTest, "buffers are carved from few allocations and given back") {
  const auto before = device().memory_usage()[static_cast<int>(MemoryIntent::activations)];
  {
    std::vector<platform::Buffer> buffers;
    for (int i = 0; i < 64; ++i) {
      buffers.push_back(device().create_buffer(4096 + i, MemoryIntent::activations, "small"));
    }
    const auto during = device().memory_usage()[static_cast<int>(MemoryIntent::activations)];
    CHECK(during.allocations - before.allocations <= 1);
    CHECK(during.used >= before.used + 64 * 4096);
    // Distinct, non-overlapping ranges: write a pattern through each and read it back.
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      const std::vector<float> v(1024, float(i));
      device().upload(buffers[i], 0, std::as_bytes(std::span<const float>(v)));
    }
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      CHECK(download_floats(buffers[i], 1024) == std::vector<float>(1024, float(i)));
    }
  }
  const auto after = device().memory_usage()[static_cast<int>(MemoryIntent::activations)];
  CHECK(after.used == before.used);
  CHECK(after.allocations == before.allocations);
}

TEST_CASE_FIXTURE(DeviceTest, "limits are typed errors, not crashes") {
  const auto& caps = device().caps();
  CHECK_THROWS_AS(device().create_buffer(0, MemoryIntent::activations, "empty"), InvalidRequest);
  CHECK_THROWS_AS(device().create_buffer(caps.max_allocation + 1, MemoryIntent::weights, "huge"),
                  OutOfMemory);
  auto b = device().create_buffer(64, MemoryIntent::activations, "b");
  std::vector<std::byte> big(128);
  CHECK_THROWS_AS(device().upload(b, 0, big), InvalidRequest);
  CHECK_THROWS_AS(device().download(b, 32, std::span<std::byte>(big).first(64)), InvalidRequest);
  CHECK_THROWS_AS(gpu().instance.choose_device(gpu().instance.devices().size()), DeviceError);
}

TEST_CASE_FIXTURE(DeviceTest, "a binding over maxStorageBufferRange is refused") {
  const auto& caps = device().caps();
  if (caps.max_storage_buffer_range >= caps.max_allocation) {
    MESSAGE("device binds whole allocations; nothing to check");
    return;
  }
  const std::uint64_t n = caps.max_storage_buffer_range / 4 + 16;
  auto big = device().create_buffer(n * 4, MemoryIntent::activations, "big");
  auto cs = device().command_stream();
  cs.begin();
  CHECK_THROWS_AS(ops::record_add(kernels(), cs, big, big, big, static_cast<std::uint32_t>(n)),
                  std::logic_error);
  // Within the limit, by range, the same buffer is fine.
  platform::BufferSpan head(big, 0, 1 << 20);
  CHECK_NOTHROW(ops::record_add(kernels(), cs, head, head, head, (1 << 20) / 4));
  cs.end();
}

TEST_CASE_FIXTURE(DeviceTest, "barriers only where a command depends on an earlier one") {
  const std::uint32_t n = 1024;
  auto a = upload_floats(ref::random_floats(rng(), n), "a");
  auto b = upload_floats(ref::random_floats(rng(), n), "b");
  auto o1 = poisoned_floats(n, "o1"), o2 = poisoned_floats(n, "o2");
  auto halves = poisoned_floats(2 * n, "halves");
  auto cs = device().command_stream();
  cs.begin();
  ops::record_add(kernels(), cs, a, b, o1, n);  // writes o1
  ops::record_mul(kernels(), cs, a, b, o2, n);  // independent: no barrier
  CHECK(cs.barrier_count() == 0);
  // Two disjoint halves of one buffer: still independent.
  ops::record_add(kernels(), cs, a, b, platform::BufferSpan(halves, 0, n * 4), n);
  ops::record_add(kernels(), cs, a, b, platform::BufferSpan(halves, n * 4, n * 4), n);
  CHECK(cs.barrier_count() == 0);
  ops::record_add(kernels(), cs, o1, o2, a, n);  // reads o1, o2 (RAW) and writes a (WAR)
  CHECK(cs.barrier_count() == 1);
  ops::record_mul(kernels(), cs, b, b, o1, n);   // writes o1 that the last command read (WAR)
  CHECK(cs.barrier_count() == 2);
  cs.end();
  cs.submit_and_wait();
  CHECK(cs.command_count() == 6);
}

TEST_CASE_FIXTURE(DeviceTest, "a recording replays with new per-step values") {
  const std::uint32_t n = 33;
  auto a = device().create_buffer(n * 4, MemoryIntent::upload, "a (host-written each step)");
  auto b = upload_floats(ref::random_floats(rng(), n), "b");
  auto out = poisoned_floats(n, "out");
  const auto hb = download_floats(b, n);
  auto cs = device().command_stream();
  cs.begin();
  ops::record_add(kernels(), cs, a, b, out, n);
  cs.end();
  for (int step = 0; step < 3; ++step) {
    const auto ha = ref::random_floats(rng(), n);
    device().upload(a, 0, std::as_bytes(std::span<const float>(ha)));
    cs.submit_and_wait();
    std::vector<float> expected(n);
    ref::add(ha, hb, expected);
    CHECK(ref::nmse(download_floats(out, n), expected) < 1e-7);
  }
}

TEST_CASE_FIXTURE(DeviceTest, "timestamps time every command") {
  if (!device().caps().timestamps) {
    MESSAGE("device has no timestamps");
    return;
  }
  const std::uint32_t n = 1 << 16;
  auto a = upload_floats(ref::random_floats(rng(), n), "a");
  auto out = poisoned_floats(n, "out");
  auto cs = device().command_stream();
  cs.begin(/*profile=*/true);
  ops::record_add(kernels(), cs, a, a, out, n);
  cs.copy(out, a, "copy out->a");
  cs.end();
  cs.submit_and_wait();
  const auto t = cs.timings();
  REQUIRE(t.size() == 2);
  CHECK(t[0].label == "add_f32 n=65536");
  CHECK(t[1].label == "copy out->a");
  CHECK(t[0].ms > 0);
  CHECK(t[0].ms < 10'000);
}

TEST_CASE_FIXTURE(DeviceTest, "B16: the pipeline cache is written and read back per device; write faults are typed errors") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("vkllm-test-cache-" + std::to_string(test::run_seed()));
  std::filesystem::remove_all(dir);
  platform::DeviceOptions opts;
  opts.cache_dir = dir;
  const std::size_t index = gpu().instance.choose_device();
  // Compiles one pipeline (add or mul) on `dev` and runs it.
  auto run_one = [](platform::Device& dev, bool mul) {
    ops::Kernels k(dev);
    auto x = dev.create_buffer(64, MemoryIntent::activations, "x");
    auto cs = dev.command_stream();
    cs.begin();
    if (mul) ops::record_mul(k, cs, x, x, x, 16); else ops::record_add(k, cs, x, x, x, 16);
    cs.end();
    cs.submit_and_wait();
  };
  std::filesystem::path path;
  {
    auto dev = platform::Device::open(gpu().instance, index, opts);
    run_one(*dev, false);
    CHECK(dev->pipeline_count() == 1);
    dev->save_pipeline_cache();
    path = dev->pipeline_cache_path();
  }
  REQUIRE(std::filesystem::exists(path));
  CHECK(std::filesystem::file_size(path) > 16);
  // A second open reads it (a corrupt cache would be ignored, not handed to the driver).
  { auto again = platform::Device::open(gpu().instance, index, opts); }
  std::filesystem::resize_file(path, 8);
  { auto truncated = platform::Device::open(gpu().instance, index, opts); }

  // A full disk while saving (the temporary file is /dev/full): a typed error, and the cache
  // already there is left as it was.
  if (std::filesystem::exists("/dev/full")) {
    auto dev = platform::Device::open(gpu().instance, index, opts);
    run_one(*dev, true);
    const auto before = std::filesystem::file_size(path);
    const std::filesystem::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
    std::filesystem::create_symlink("/dev/full", tmp);
    CHECK_THROWS_AS(dev->save_pipeline_cache(), DeviceError);
    CHECK_FALSE(std::filesystem::is_symlink(tmp));
    CHECK(std::filesystem::file_size(path) == before);
  } else {
    MESSAGE("SKIPPED the full-disk case: no /dev/full");
  }
  // A cache folder that cannot be made (a file stands there): opening and closing the device
  // still work; an explicit save says why it failed, the one at close only warns.
  std::filesystem::remove_all(dir);
  { std::ofstream(dir) << "not a folder"; }
  {
    auto dev = platform::Device::open(gpu().instance, index, opts);
    run_one(*dev, false);
    CHECK_THROWS_AS(dev->save_pipeline_cache(), DeviceError);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("B12: VK_EXT_device_fault's report names the fault, its addresses and vendor records") {
  platform::DeviceFaultInfo f;
  f.description = "page fault in a compute shader";
  f.addresses = {{"invalid read", 0x12345678, 0x1000}, {"instruction pointer (fault)", 0xabc, 0}};
  f.vendors = {{std::string(256, 'x'), 0x2a, 7}};
  f.binary_bytes = 4096;
  CHECK(platform::format_device_fault(f) ==
        "device fault: page fault in a compute shader\n"
        "  address invalid read: 0x12345678 (within [0x12345000, 0x12345fff])\n"
        "  address instruction pointer (fault): 0xabc (within [0xabc, 0xabc])\n"
        "  vendor: " + std::string(256, 'x') + " (code 0x2a, data 0x7)\n"
        "  vendor binary dump: 4096 bytes (not kept)");
  f.addresses.clear();
  f.vendors.clear();
  f.binary_bytes = 0;
  CHECK(platform::format_device_fault(f) == "device fault: page fault in a compute shader");
}

TEST_CASE_FIXTURE(DeviceTest, "B12: a device without VK_EXT_device_fault says so in its fault report") {
  // lavapipe has no VK_EXT_device_fault; a GPU that has it is asked (nothing is lost: no records).
  const std::string r = device().fault_report();
  if (device().name().starts_with("llvmpipe")) {
    CHECK(r == "device fault: no details (the device does not offer VK_EXT_device_fault)");
  } else {
    CHECK(r.starts_with("device fault:"));
  }
}
