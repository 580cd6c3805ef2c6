// The build's identity, for `vkllm --version` and `vkllm version` (generated: cmake/Version.cmake).
#pragma once

namespace vkllm::cli {
extern const char* const kVersion;    // the project's version (CMakeLists.txt)
extern const char* const kCommit;     // git commit, "-dirty" with uncommitted changes
extern const char* const kBuildType;  // Release, Debug, ...
}  // namespace vkllm::cli
