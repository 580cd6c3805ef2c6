// Owns the public face of the chat template renderer: parse a tokenizer.chat_template once,
// render it many times the way transformers' apply_chat_template does. Must not know tokens or HTTP.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engine/template/ast.hpp"
#include "engine/template/error.hpp"
#include "engine/template/interpreter.hpp"
#include "engine/template/value.hpp"

namespace vkllm::tmpl {

// Models without a chat template get ChatML (transformers' historical default template).
inline constexpr std::string_view kChatmlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// A parsed template: immutable, cheap to copy, safe to render from several threads at once.
class Template {
 public:
  // Throws TemplateError (line numbered) on a syntax error.
  static Template parse(std::string_view source);

  // context: a dict of variables. Throws TemplateError on a runtime error, a raise_exception()
  // of the template (TemplateError::raised()), or an exhausted budget of options.limits.
  std::string render(const Value& context, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const Body> body_;
};

// What transformers passes to a chat template. It always passes tools and documents (None when
// absent), so templates see them as defined.
struct ChatInputs {
  Value messages = Value::list({});
  Value tools = Value::none();
  Value documents = Value::none();
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
  Dict extra;  // template kwargs: enable_thinking, reasoning_effort, builtin_tools...
};

Value make_chat_context(const ChatInputs& inputs);

}  // namespace vkllm::tmpl
