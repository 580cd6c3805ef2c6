// The GPU test fixture: validation-on instance, message capture, seeded inputs, poisoning.
#include "tests/support/device_fixture.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

#include <doctest/doctest.h>

namespace vkllm::test {
namespace {

std::mutex g_mutex;
std::vector<std::string> g_messages;

}  // namespace

bool any_device_present() {
  try {
    return !platform::Instance::create({}).devices().empty();
  } catch (const std::exception&) {
    return false;
  }
}

GpuEnv& gpu() {
  // Never destroyed: tearing Vulkan down during static destruction races the validation
  // layer's own statics. The process exit reclaims it.
  static GpuEnv* env = [] {
    platform::InstanceOptions opts;
    opts.validation = true;
    opts.sync_validation = true;
    opts.on_validation_message = [](platform::MessageSeverity s, std::string_view text) {
      if (s == platform::MessageSeverity::info) return;
      std::lock_guard lock(g_mutex);
      g_messages.emplace_back(text);
    };
    auto instance = platform::Instance::create(opts);
    const std::size_t index = instance.choose_device();
    platform::DeviceOptions dopts;
    dopts.pipeline_cache = false;  // tests compile every pipeline fresh
    auto device = platform::Device::open(instance, index, dopts);
    auto kernels = std::make_unique<ops::Kernels>(*device);
    return new GpuEnv{std::move(instance), std::move(device), std::move(kernels)};
  }();
  return *env;
}

std::size_t validation_message_count() {
  std::lock_guard lock(g_mutex);
  return g_messages.size();
}

std::string validation_messages_since(std::size_t first) {
  std::lock_guard lock(g_mutex);
  std::string all;
  for (std::size_t i = first; i < g_messages.size(); ++i) all += g_messages[i] + "\n";
  return all;
}

std::uint32_t run_seed() {
  static const std::uint32_t seed = [] {
    if (const char* s = std::getenv("VKLLM_TEST_SEED"); s && *s) {
      return static_cast<std::uint32_t>(std::strtoul(s, nullptr, 10));
    }
    return std::random_device{}();
  }();
  return seed;
}

DeviceTest::DeviceTest() : first_message_(validation_message_count()), rng_(run_seed()) {
  gpu();
  MESSAGE("seed " << run_seed() << " (VKLLM_TEST_SEED=" << run_seed() << " repeats it) on "
                  << gpu().device->name());
}

DeviceTest::~DeviceTest() {
  const std::size_t n = validation_message_count() - first_message_;
  CHECK_MESSAGE(n == 0, "validation layer messages:\n" << validation_messages_since(first_message_));
}

platform::Buffer DeviceTest::upload_floats(std::span<const float> data, const char* name) {
  auto b = device().create_buffer(std::max<std::size_t>(data.size(), 1) * 4,
                                  platform::MemoryIntent::activations, name);
  device().upload(b, 0, std::as_bytes(data));
  return b;
}

platform::Buffer DeviceTest::poisoned_floats(std::size_t n, const char* name) {
  std::vector<float> nan(std::max<std::size_t>(n, 1), std::numeric_limits<float>::quiet_NaN());
  return upload_floats(nan, name);
}

std::vector<float> DeviceTest::download_floats(const platform::Buffer& b, std::size_t n) {
  std::vector<float> out(n);
  device().download(b, 0, std::as_writable_bytes(std::span<float>(out)));
  return out;
}

bool coopmat_or_skip(const ops::Kernels& k) {
  if (ops::coopmat_available(k.tuning())) return true;
  const char* require = std::getenv("VKLLM_REQUIRE_COOPMAT");
  if (require && std::string(require) == "1") {
    FAIL_CHECK("VKLLM_REQUIRE_COOPMAT=1 but " << k.caps().props.name
                                              << " offers no cooperative-matrix GEMM");
    return false;
  }
  MESSAGE("SKIPPED: cooperative-matrix cases: " << k.caps().props.name
                                                << " has no usable f16 cooperative matrix"
                                                << std::string(ops::coopmat_shaders_built()
                                                                   ? ""
                                                                   : " and this build lacks the shaders")
                                                << " (scripts/lvp26 runs them)");
  return false;
}

}  // namespace vkllm::test
