// vkllm: one thin main over the library (DESIGN.md): parses the command line, runs a
// subcommand, and turns typed errors into a message and an exit code.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <exception>

#include "cli/commands.hpp"
#include "common/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"vkllm: LLM inference engine and OpenAI-compatible server on Vulkan"};
  app.require_subcommand(1);

  vkllm::cli::DevicesOptions devices;
  auto* devices_cmd = app.add_subcommand("devices", "List Vulkan devices and their capabilities");
  devices_cmd->add_flag("--json", devices.json, "Print JSON instead of a table");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*devices_cmd) return vkllm::cli::run_devices(devices);
  } catch (const vkllm::Error& e) {
    fmt::print(stderr, "vkllm: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vkllm: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}
