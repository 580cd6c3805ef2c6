// Owns the public face of the chat template renderer: parse a tokenizer.chat_template once,
// render it many times the way transformers' apply_chat_template does. Must not know tokens or HTTP.
#include "engine/template/template.hpp"

#include "engine/template/lexer.hpp"
#include "engine/template/parser.hpp"

namespace vkllm::tmpl {

Template Template::parse(std::string_view source) {
  Template t;
  t.body_ = std::make_shared<const Body>(parse_tokens(tokenize(source)));
  return t;
}

std::string Template::render(const Value& context, const RenderOptions& options) const {
  if (!context.is_dict()) throw TemplateError("render context must be a dict");
  Interpreter interp(options);
  return interp.render(*body_, context.as_dict());
}

Value make_chat_context(const ChatInputs& inputs) {
  Dict d;
  d.set(Value::string("messages"), inputs.messages);
  d.set(Value::string("tools"), inputs.tools);
  d.set(Value::string("documents"), inputs.documents);
  d.set(Value::string("add_generation_prompt"), Value::boolean(inputs.add_generation_prompt));
  d.set(Value::string("bos_token"), Value::string(inputs.bos_token));
  d.set(Value::string("eos_token"), Value::string(inputs.eos_token));
  for (const auto& [k, v] : inputs.extra.entries()) d.set(k, v);
  return Value::dict(std::move(d));
}

}  // namespace vkllm::tmpl
