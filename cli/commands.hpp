// The subcommands of the vkllm CLI, one function each over the library.
// Knows every room's public headers; holds no logic of its own beyond argument plumbing.
#pragma once

namespace vkllm::cli {

struct DevicesOptions {
  bool json = false;
};
int run_devices(const DevicesOptions& options);

}  // namespace vkllm::cli
