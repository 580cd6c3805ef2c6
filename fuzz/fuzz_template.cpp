// libFuzzer target: the Jinja chat-template engine on arbitrary templates and message JSON.
// The input is split by FuzzedDataProvider into a template, a messages document, a tools
// document and flags; rendering runs under step and output limits, so a
// template that loops forever or grows without bound must end in TemplateError, not a hang or
// an allocation failure (docs/ARCHITECTURE.md "Tests").
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "engine/template/template.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const bool add_generation_prompt = in.ConsumeBool();
  const std::string messages = in.ConsumeRandomLengthString(4096);
  const std::string tools = in.ConsumeRandomLengthString(1024);
  const std::string source = in.ConsumeRemainingBytesAsString();
  try {
    const auto t = vkllm::tmpl::Template::parse(source);
    vkllm::tmpl::ChatInputs ci;
    ci.messages = messages.empty() ? vkllm::tmpl::Value::list({})
                                   : vkllm::tmpl::parse_json(messages);
    if (!tools.empty()) ci.tools = vkllm::tmpl::parse_json(tools);
    ci.add_generation_prompt = add_generation_prompt;
    ci.bos_token = "<s>";
    ci.eos_token = "</s>";
    vkllm::tmpl::RenderOptions o;
    o.now = 0;  // strftime_now: reproducible
    // Smaller budgets than a server's, so that a runaway template ends within libFuzzer's
    // per-input timeout; the budget checks are the same code.
    o.limits.max_steps = 200'000;
    o.limits.max_output_bytes = 1u << 20;
    (void)t.render(vkllm::tmpl::make_chat_context(ci), o);
  } catch (const vkllm::Error&) {
  }
  return 0;
}
