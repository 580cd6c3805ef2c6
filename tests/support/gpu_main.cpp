// doctest's main for GPU tests: exits as skipped (77) only where no Vulkan device exists at all.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "tests/support/device_fixture.hpp"

int main(int argc, char** argv) {
  if (!vkllm::test::any_device_present()) {
    std::printf("SKIPPED: no Vulkan device on this machine; GPU tests not run\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
