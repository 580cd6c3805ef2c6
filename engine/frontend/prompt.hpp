// A request's prompt before the engine sees it: the chat template rendered, the text tokenized,
// and the work bounded first (a prompt whose byte length alone proves it cannot fit is refused
// before any tokenizing). Synchronous and thread-safe: the server runs prepare() on its worker
// pool, never on the threads that serve sockets (docs/ARCHITECTURE.md "Threads").
#pragma once

#include "engine/frontend/tool_calls.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/template/template.hpp"
#include "engine/tokenizer/tokenizer.hpp"

namespace vkllm::frontend {

// A request the front end refuses, naming the field at fault and, where OpenAI has one, the
// error code (e.g. "context_length_exceeded").
class PromptError : public InvalidRequest {
 public:
  PromptError(const std::string& message, std::string param, std::string code = {})
      : InvalidRequest(message), param_(std::move(param)), code_(std::move(code)) {}
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  std::string param_, code_;
};

struct ChatSetup {
  tmpl::Template chat_template;
  std::string bos_token;
  std::string eos_token;
  bool reasoning = false;  // the template knows <think>...</think> (reasoning models)
  ToolFormat tool_format = ToolFormat::none;  // the call syntax its model writes (tool_calls.hpp)
};

// A model's chat setup: `template_source` when given (a --chat-template file, the C API's
// option), else the file's tokenizer.chat_template, else ChatML (`has_template` says which);
// BOS and EOS as text; reasoning and the tool-call format read from the template's source.
// Throws TemplateError for a template that does not parse.
ChatSetup chat_setup(const gguf::Reader& reader, const tok::Tokenizer& tokenizer,
                     const std::optional<std::string>& template_source, bool* has_template = nullptr);

// What to render and tokenize. Chat: messages (and tools, template kwargs) as JSON text.
struct PromptInput {
  enum class Kind { chat, text, tokens } kind = Kind::text;
  std::string messages_json;        // chat: the normalized message array
  std::string tools_json;           // chat: the tools array, or empty
  std::string template_kwargs_json; // chat: an object of extra template variables, or empty
  bool add_generation_prompt = true;
  bool continue_final_message = false;  // end the prompt inside the last (assistant) message
  std::string text;                 // text
  bool add_special = true;          // text: BOS/EOS as the model adds them
  std::vector<std::uint32_t> tokens;  // tokens
};

struct Prompt {
  std::vector<std::uint32_t> tokens;
  std::string text;                 // chat: the rendered prompt; text: the prompt text
  bool starts_in_reasoning = false; // chat: the generation prompt opened a <think>
};

class Preprocessor {
 public:
  // `max_model_len`: prompt plus generated tokens per request.
  Preprocessor(const tok::Tokenizer& tokenizer, ChatSetup chat, std::uint32_t max_model_len);

  // Bytes before tokens: throws PromptError (context_length_exceeded) when `bytes` of text
  // cannot be fewer than max_model_len tokens, since no token covers more than
  // max_piece_bytes() bytes of text. Cheap: call it before any other work on the prompt.
  void check_bytes(std::size_t bytes, const char* param) const;
  // Renders and tokenizes; throws PromptError (bad template input, too long for the context).
  Prompt prepare(const PromptInput& input) const;
  // The tool-call syntax of the template's model.
  ToolFormat tool_format() const { return chat_.tool_format; }
  // The max_tokens to run: `asked` when prompt + asked fits (else PromptError naming both
  // numbers), or min(default, what the context leaves).
  std::uint32_t max_tokens(std::size_t prompt_len, std::optional<std::uint32_t> asked,
                           std::uint32_t default_max_tokens) const;

  std::uint32_t max_model_len() const { return max_model_len_; }
  std::size_t max_piece_bytes() const { return max_piece_bytes_; }
  const tok::Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  std::string render(const PromptInput& input) const;

  const tok::Tokenizer& tokenizer_;
  ChatSetup chat_;
  std::uint32_t max_model_len_;
  std::size_t max_piece_bytes_ = 1;
};

}  // namespace vkllm::frontend
