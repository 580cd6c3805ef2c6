// The subcommands of the vkllm CLI, one function each over the library.
// Knows every room's public headers; holds no logic of its own beyond argument plumbing.
#pragma once

#include <cstdint>
#include <string>

namespace vkllm::cli {

// "512 B", "1.5 KiB", "128.00 MiB", "23.47 GiB": sizes as the commands print them.
std::string format_bytes(std::uint64_t bytes);

struct DevicesOptions {
  bool json = false;
};
int run_devices(const DevicesOptions& options);

struct TokenizeOptions {
  std::string model;
  std::string text;
  bool detokenize = false;     // text is a JSON array of ids; print the decoded text
  bool no_special = false;     // do not add BOS/EOS
  bool parse_special = false;  // recognise control-token text such as <|eot_id|>
  bool show_special = false;   // --detokenize: print control tokens
};
int run_tokenize(const TokenizeOptions& options);

struct ChatTemplateOptions {
  std::string model;          // optional: template, BOS and EOS from its GGUF
  std::string template_file;  // overrides the model's template
  std::string messages_file;
  std::string tools_file;
  bool add_generation_prompt = false;
};
int run_chat_template(const ChatTemplateOptions& options);

struct InfoOptions {
  std::string model;
  bool full = false;        // print arrays and strings whole
  bool no_tensors = false;  // metadata only
};
int run_info(const InfoOptions& options);

}  // namespace vkllm::cli
