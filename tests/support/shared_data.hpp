// Locates ../shared (real models, vocabularies, templates) for tests that need it.
// Tests may read it when it exists and must skip with a visible message when it does not.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace vkllm::test {

// The shared data folder: $VKLLM_SHARED_DIR (set by ctest) if it exists, else none.
inline std::optional<std::filesystem::path> shared_dir() {
  if (const char* env = std::getenv("VKLLM_SHARED_DIR")) {
    std::filesystem::path p(env);
    if (std::filesystem::is_directory(p)) return std::filesystem::canonical(p);
  }
  return std::nullopt;
}

}  // namespace vkllm::test

// Use inside a TEST_CASE: yields the path, or prints a skip message and returns.
#define VKLLM_REQUIRE_SHARED(var)                                                   \
  auto var##_opt = ::vkllm::test::shared_dir();                                     \
  if (!var##_opt) {                                                                 \
    MESSAGE("SKIPPED: ../shared not found (set VKLLM_SHARED_DIR); test not run");   \
    return;                                                                         \
  }                                                                                 \
  const std::filesystem::path var = *var##_opt
