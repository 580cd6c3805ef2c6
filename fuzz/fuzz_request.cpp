// libFuzzer target: the OpenAI request parser on arbitrary bodies, without a device. Each input
// goes to both routes' parser (/v1/chat/completions and /v1/completions) and to the early
// prompt-size scan; a body is either parsed or refused with ApiException (400, naming the
// field); any other exception, crash or sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/error.hpp"
#include "server/openai.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)vkllm::server::scan_body(body);
  vkllm::server::RequestLimits limits;
  limits.vocab_size = 32000;
  for (const auto endpoint : {vkllm::server::Endpoint::chat, vkllm::server::Endpoint::completion}) {
    try {
      (void)vkllm::server::parse_request(body, endpoint, limits);
    } catch (const vkllm::server::ApiException&) {
    } catch (const vkllm::Error&) {
    }
  }
  return 0;
}
