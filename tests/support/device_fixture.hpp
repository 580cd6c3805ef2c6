// The device fixture of GPU tests: one instance with the Khronos validation layer (and its
// synchronization validation) for the whole executable, one device, and a check that no
// validation message was raised during a test. Also: fresh-but-reproducible random inputs and
// poisoned buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/ops/kernels.hpp"
#include "platform/device.hpp"
#include "platform/instance.hpp"

namespace vkllm::test {

struct GpuEnv {
  platform::Instance instance;
  std::unique_ptr<platform::Device> device;
  std::unique_ptr<ops::Kernels> kernels;
};

// Created on first use; validation on. Throws if the instance cannot be created.
GpuEnv& gpu();
// Whether any Vulkan device exists (else GPU tests exit as skipped).
bool any_device_present();

// Validation messages (warnings and errors) seen so far, and their text.
std::size_t validation_message_count();
std::string validation_messages_since(std::size_t first);

// Whether the cooperative-matrix GEMM runs here (ops::coopmat_available). When it does not, says
// so in the test's output (CI runs those cases under scripts/lvp26), and fails the test instead
// where VKLLM_REQUIRE_COOPMAT=1.
bool coopmat_or_skip(const ops::Kernels& k);

// Seed for this run: $VKLLM_TEST_SEED or fresh from random_device; printed by the fixture.
std::uint32_t run_seed();

class DeviceTest {
 public:
  DeviceTest();
  ~DeviceTest();  // fails the test on any validation message raised during it

  platform::Device& device() { return *gpu().device; }
  ops::Kernels& kernels() { return *gpu().kernels; }
  std::mt19937& rng() { return rng_; }

  // A buffer holding `data`, or `n` floats of NaN (poisoned output).
  platform::Buffer upload_floats(std::span<const float> data, const char* name);
  platform::Buffer poisoned_floats(std::size_t n, const char* name);
  std::vector<float> download_floats(const platform::Buffer& b, std::size_t n);

 private:
  std::size_t first_message_;
  std::mt19937 rng_;
};

}  // namespace vkllm::test
