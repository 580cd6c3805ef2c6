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

  vkllm::cli::TokenizeOptions tokenize;
  auto* tokenize_cmd = app.add_subcommand("tokenize", "Token ids of a text (JSON), or the reverse");
  tokenize_cmd->add_option("-m,--model", tokenize.model, "GGUF model file")->required();
  tokenize_cmd->add_option("--text", tokenize.text, "Text (or, with --detokenize, a JSON id array)")
      ->required();
  tokenize_cmd->add_flag("--detokenize", tokenize.detokenize, "Decode a JSON array of ids");
  tokenize_cmd->add_flag("--no-special", tokenize.no_special, "Do not add BOS/EOS");
  tokenize_cmd->add_flag("--parse-special", tokenize.parse_special,
                         "Recognise control tokens written in the text");
  tokenize_cmd->add_flag("--show-special", tokenize.show_special,
                         "With --detokenize: print control tokens");

  vkllm::cli::ChatTemplateOptions chat;
  auto* chat_cmd = app.add_subcommand(
      "chat-template", "Render a conversation with the model's chat template, exactly");
  chat_cmd->add_option("-m,--model", chat.model, "GGUF model (template, BOS, EOS)");
  chat_cmd->add_option("--template,--chat-template", chat.template_file,
                       "Jinja template file (overrides the model's)");
  chat_cmd->add_option("--messages", chat.messages_file, "JSON file: array of messages")->required();
  chat_cmd->add_option("--tools", chat.tools_file, "JSON file: array of tool definitions");
  chat_cmd->add_flag("--add-generation-prompt", chat.add_generation_prompt,
                     "End with the assistant's turn header");

  vkllm::cli::InfoOptions info;
  auto* info_cmd = app.add_subcommand("info", "A GGUF's metadata and tensor table");
  info_cmd->add_option("-m,--model", info.model, "GGUF model file")->required();
  info_cmd->add_flag("--full", info.full, "Print long arrays and strings whole");
  info_cmd->add_flag("--no-tensors", info.no_tensors, "Metadata only");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*devices_cmd) return vkllm::cli::run_devices(devices);
    if (*tokenize_cmd) return vkllm::cli::run_tokenize(tokenize);
    if (*chat_cmd) return vkllm::cli::run_chat_template(chat);
    if (*info_cmd) return vkllm::cli::run_info(info);
  } catch (const vkllm::Error& e) {
    fmt::print(stderr, "vkllm: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vkllm: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}
