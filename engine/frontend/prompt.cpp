#include "engine/frontend/prompt.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

namespace vkllm::frontend {
namespace {

[[noreturn]] void too_long(std::uint32_t max_model_len, std::size_t tokens, const char* what,
                           const char* param) {
  throw PromptError(fmt::format("This model's maximum context length is {} tokens. However, your "
                                "prompt has {} {}; at most {} fit with room for one generated token.",
                                max_model_len, tokens, what, max_model_len - 1),
                    param, "context_length_exceeded");
}

// Fault injection for the end-to-end tests: slow tokenizing, to prove it runs off the io
// threads (VKLLM_TEST_TOKENIZE_DELAY_MS).
void test_delay() {
  static const long ms = [] {
    const char* v = std::getenv("VKLLM_TEST_TOKENIZE_DELAY_MS");
    return v ? std::strtol(v, nullptr, 10) : 0L;
  }();
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

std::string special_text(const tok::Tokenizer& t, tok::TokenId id) {
  if (id < 0 || static_cast<std::size_t>(id) >= t.n_tokens()) return {};
  return std::string(t.token_to_piece(id, true));
}

}  // namespace

ChatSetup chat_setup(const gguf::Reader& reader, const tok::Tokenizer& tokenizer,
                     const std::optional<std::string>& template_source, bool* has_template) {
  std::string source(tmpl::kChatmlTemplate);
  const std::optional<std::string> own = reader.find_string("tokenizer.chat_template");
  if (has_template) *has_template = own.has_value();
  if (template_source) {
    source = *template_source;
  } else if (own) {
    source = *own;
  }
  ChatSetup chat{tmpl::Template::parse(source), special_text(tokenizer, tokenizer.bos()),
                 special_text(tokenizer, tokenizer.eos())};
  // Reasoning models' templates know the thinking block: split it into reasoning_content.
  chat.reasoning = source.find("</think>") != std::string::npos;
  chat.tool_format = detect_tool_format(source);
  return chat;
}

Preprocessor::Preprocessor(const tok::Tokenizer& tokenizer, ChatSetup chat, std::uint32_t max_model_len)
    : tokenizer_(tokenizer), chat_(std::move(chat)), max_model_len_(max_model_len) {
  // Special pieces count: a chat prompt's control tokens are parsed from their text.
  for (std::size_t id = 0; id < tokenizer.n_tokens(); ++id) {
    max_piece_bytes_ = std::max(max_piece_bytes_,
                                tokenizer.token_to_piece(static_cast<tok::TokenId>(id), true).size());
  }
}

void Preprocessor::check_bytes(std::size_t bytes, const char* param) const {
  const std::size_t min_tokens = (bytes + max_piece_bytes_ - 1) / max_piece_bytes_;
  if (min_tokens >= max_model_len_) {
    throw PromptError(fmt::format("This model's maximum context length is {} tokens. However, your "
                                  "prompt has {} bytes, at least {} tokens (no token spells more "
                                  "than {} bytes).",
                                  max_model_len_, bytes, min_tokens, max_piece_bytes_),
                      param, "context_length_exceeded");
  }
}

std::string Preprocessor::render(const PromptInput& in) const {
  tmpl::ChatInputs ci;
  try {
    ci.messages = tmpl::parse_json(in.messages_json);
    if (!in.tools_json.empty()) ci.tools = tmpl::parse_json(in.tools_json);
    if (!in.template_kwargs_json.empty()) {
      const tmpl::Value kwargs = tmpl::parse_json(in.template_kwargs_json);
      if (!kwargs.is_dict()) throw PromptError("'chat_template_kwargs' must be an object", "chat_template_kwargs");
      ci.extra = kwargs.as_dict();
    }
  } catch (const PromptError&) {
    throw;
  } catch (const Error& e) {
    throw PromptError(fmt::format("the messages cannot be given to the template: {}", e.what()), "messages");
  }
  ci.add_generation_prompt = in.add_generation_prompt && !in.continue_final_message;
  ci.bos_token = chat_.bos_token;
  ci.eos_token = chat_.eos_token;
  std::string text;
  try {
    text = chat_.chat_template.render(tmpl::make_chat_context(ci));
  } catch (const Error& e) {
    throw PromptError(fmt::format("the chat template failed: {}", e.what()), "messages");
  }
  if (in.continue_final_message) {
    // As transformers: cut what the template writes after the final message's content.
    const tmpl::Value& last = ci.messages.as_list().back();
    const tmpl::Value* content = last.is_dict() ? last.as_dict().find("content") : nullptr;
    const std::string c = content && content->is_string() ? content->as_string() : std::string();
    const std::size_t at = c.empty() ? std::string::npos : text.rfind(c);
    if (at == std::string::npos) {
      throw PromptError("continue_final_message: the rendered prompt does not hold the final "
                        "message's content", "messages");
    }
    text.resize(at + c.size());
  }
  return text;
}

Prompt Preprocessor::prepare(const PromptInput& in) const {
  Prompt p;
  const char* param = in.kind == PromptInput::Kind::chat ? "messages" : "prompt";
  if (in.kind == PromptInput::Kind::tokens) {
    p.tokens = in.tokens;
  } else {
    if (in.kind == PromptInput::Kind::chat) {
      p.text = render(in);
      const std::size_t open = p.text.rfind("<think>");
      p.starts_in_reasoning = chat_.reasoning && open != std::string::npos &&
                              p.text.find("</think>", open) == std::string::npos;
    } else {
      p.text = in.text;
    }
    check_bytes(p.text.size(), param);
    test_delay();
    std::vector<tok::TokenId> ids;
    if (in.kind == PromptInput::Kind::chat) {
      // Templates that write the BOS text themselves get no second BOS.
      const bool has_bos = !chat_.bos_token.empty() && p.text.starts_with(chat_.bos_token);
      ids = tokenizer_.encode(p.text, {.add_special = !has_bos, .parse_special = true});
    } else {
      ids = tokenizer_.encode(p.text, {.add_special = in.add_special, .parse_special = false});
    }
    p.tokens.assign(ids.begin(), ids.end());
  }
  if (p.tokens.empty()) throw PromptError("the prompt is empty", param);
  if (p.tokens.size() >= max_model_len_) too_long(max_model_len_, p.tokens.size(), "tokens", param);
  return p;
}

std::uint32_t Preprocessor::max_tokens(std::size_t prompt_len, std::optional<std::uint32_t> asked,
                                       std::uint32_t default_max_tokens) const {
  const std::uint32_t room = max_model_len_ - static_cast<std::uint32_t>(prompt_len);
  if (!asked) return std::max<std::uint32_t>(1, std::min(default_max_tokens, room));
  if (*asked > room) {
    throw PromptError(fmt::format("This model's maximum context length is {} tokens. However, you "
                                  "requested {} tokens ({} in the prompt, {} for the completion); "
                                  "max_tokens can be at most {} for this prompt.",
                                  max_model_len_, prompt_len + *asked, prompt_len, *asked, room),
                      "max_tokens", "context_length_exceeded");
  }
  return *asked;
}

}  // namespace vkllm::frontend
