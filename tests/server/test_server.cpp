// The server without a model or a device: parse_request on every field and bad value, and the
// server's life cycle (a failed start, shutdown before start) leaving no thread behind that
// outlives its state (run under AddressSanitizer by scripts/test.sh).
#include <doctest/doctest.h>

#include <boost/asio.hpp>

#include <memory>
#include <string>
#include <vector>

#include "engine/grammar/matcher.hpp"
#include "server/http_server.hpp"
#include "server/access.hpp"
#include "server/openai.hpp"

using namespace vkllm;
using namespace vkllm::server;

namespace {

ParsedRequest chat(const std::string& extra, RequestLimits limits = {}) {
  return parse_request(R"({"messages":[{"role":"user","content":"hi"}])" + extra + "}", Endpoint::chat, limits);
}
ParsedRequest completion(const std::string& body, RequestLimits limits = {}) {
  return parse_request(body, Endpoint::completion, limits);
}

// The param a bad body is refused for (400), or "accepted".
std::string refused_param(const std::string& body, Endpoint ep = Endpoint::chat) {
  RequestLimits limits;
  limits.vocab_size = 1000;
  try {
    parse_request(body, ep, limits);
  } catch (const ApiException& e) {
    CHECK(e.error().status == 400);
    CHECK_FALSE(e.error().message.empty());
    return e.error().param;
  }
  return "accepted";
}

const std::string kMsgs = R"({"messages":[{"role":"user","content":"hi"}])";

}  // namespace

TEST_CASE("parse_request: chat fields reach the prompt and the parameters") {
  const ParsedRequest r = chat(R"(, "model":"m", "max_tokens":7, "temperature":0.5, "top_p":0.9, "top_k":3,
      "min_p":0.1, "presence_penalty":1, "frequency_penalty":-1, "repetition_penalty":1.2, "seed":42,
      "stop":["a","b"], "logit_bias":{"5":-100}, "logprobs":true, "top_logprobs":4, "stream":true,
      "stream_options":{"include_usage":true}, "user":"u", "ignore_eos":true,
      "chat_template_kwargs":{"enable_thinking":false}, "add_generation_prompt":true,
      "tools":[{"type":"function","function":{"name":"f"}}])");
  CHECK(r.model == "m");
  CHECK(r.max_tokens == 7u);
  CHECK(r.params.sampling.temperature == doctest::Approx(0.5));
  CHECK(r.params.sampling.top_p == doctest::Approx(0.9));
  CHECK(r.params.sampling.top_k == 3);
  CHECK(r.params.sampling.min_p == doctest::Approx(0.1));
  CHECK(r.params.sampling.presence_penalty == 1);
  CHECK(r.params.sampling.frequency_penalty == -1);
  CHECK(r.params.sampling.repetition_penalty == doctest::Approx(1.2));
  CHECK(r.params.sampling.seed == 42);
  CHECK(r.stop == std::vector<std::string>{"a", "b"});
  REQUIRE(r.params.logit_bias.size() == 1);
  CHECK(r.params.logit_bias[0].token == 5);
  CHECK(r.params.logprobs);
  CHECK(r.params.top_logprobs == 4);
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.user == "u");
  CHECK(r.params.ignore_eos);
  CHECK(r.prompt.kind == frontend::PromptInput::Kind::chat);
  CHECK(r.prompt.template_kwargs_json == R"({"enable_thinking":false})");
  CHECK(r.prompt.tools_json == R"([{"type":"function","function":{"name":"f"}}])");
  CHECK(r.tools.size() == 1);
  CHECK(r.tool_choice.mode == ToolChoice::Mode::automatic);
  // Defaults.
  const ParsedRequest d = chat("");
  CHECK_FALSE(d.max_tokens);
  CHECK(d.params.sampling.temperature == 1.0f);
  CHECK_FALSE(d.stream);
  CHECK(d.prompt.add_generation_prompt);
}

// Regression (fuzz_request finding, CI stop 23): the role was a view into the message object,
// and writing "content" into that object rehashes it; an "assistant" role (as long as
// "developer") was then compared from freed memory. Every role, with and without content,
// under ASan (scripts/test.sh).
TEST_CASE("parse_request: every role survives the message rewrite; developer becomes system") {
  const ParsedRequest r = parse_request(
      R"({"messages":[{"role":"developer","content":"d"},{"role":"system","content":"s"},)"
      R"({"role":"user","content":"u"},{"role":"assistant","content":"Hello"},)"
      R"({"role":"assistant"},{"role":"tool","content":[{"type":"text","text":"t"}]}]})",
      Endpoint::chat, RequestLimits{});
  const boost::json::array msgs = boost::json::parse(r.prompt.messages_json).as_array();
  REQUIRE(msgs.size() == 6);
  const char* roles[] = {"system", "system", "user", "assistant", "assistant", "tool"};
  const char* contents[] = {"d", "s", "u", "Hello", "", "t"};
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    CAPTURE(i);
    CHECK(msgs[i].at("role") == roles[i]);
    CHECK(msgs[i].at("content") == contents[i]);
  }
}

TEST_CASE("parse_request: completion prompts as text, ids, one-element lists; echo") {
  CHECK(completion(R"({"prompt":"abc"})").prompt.text == "abc");
  CHECK(completion(R"({"prompt":["abc"]})").prompt.text == "abc");
  CHECK(completion(R"({"prompt":[1,2,3]})").prompt.tokens == std::vector<std::uint32_t>{1, 2, 3});
  CHECK(completion(R"({"prompt":[[4,5]]})").prompt.tokens == std::vector<std::uint32_t>{4, 5});
  const ParsedRequest e = completion(R"({"prompt":"x","echo":true,"max_tokens":0})");
  CHECK(e.echo);
  CHECK(e.max_tokens == 0u);  // scoring a text: allowed with echo
  const ParsedRequest lp = completion(R"({"prompt":"x","logprobs":2})");
  CHECK(lp.logprobs);
  CHECK(lp.top_logprobs == 2u);
}

TEST_CASE("parse_request: every bad value names its field") {
  using E = Endpoint;
  CHECK(refused_param("{") == "");
  CHECK(refused_param("[1]") == "");
  CHECK(refused_param(R"({"messages":"hi"})") == "messages");
  CHECK(refused_param(R"({"messages":[]})") == "messages");
  CHECK(refused_param(R"({})") == "messages");
  CHECK(refused_param(R"({"messages":[{"role":"robot","content":"x"}]})") == "messages[0].role");
  CHECK(refused_param(R"({"messages":[{"role":"user"}]})") == "messages[0].content");
  CHECK(refused_param(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})") == "messages[0].content");
  CHECK(refused_param(kMsgs + R"(,"model":3})") == "model");
  CHECK(refused_param(kMsgs + R"(,"n":0})") == "n");
  CHECK(refused_param(kMsgs + R"(,"n":17})") == "n");
  CHECK(refused_param(kMsgs + R"(,"n":1.5})") == "n");
  CHECK(refused_param(kMsgs + R"(,"best_of":2})") == "best_of");
  CHECK(refused_param(kMsgs + R"(,"n":3,"best_of":4})") == "best_of");
  CHECK(refused_param(kMsgs + R"(,"max_tokens":0})") == "max_tokens");
  CHECK(refused_param(kMsgs + R"(,"max_tokens":"many"})") == "max_tokens");
  CHECK(refused_param(kMsgs + R"(,"max_completion_tokens":-1})") == "max_completion_tokens");
  CHECK(refused_param(kMsgs + R"(,"temperature":3})") == "temperature");
  CHECK(refused_param(kMsgs + R"(,"top_p":0})") == "top_p");
  CHECK(refused_param(kMsgs + R"(,"top_k":-2})") == "top_k");
  CHECK(refused_param(kMsgs + R"(,"min_p":2})") == "min_p");
  CHECK(refused_param(kMsgs + R"(,"presence_penalty":3})") == "presence_penalty");
  CHECK(refused_param(kMsgs + R"(,"frequency_penalty":"x"})") == "frequency_penalty");
  CHECK(refused_param(kMsgs + R"(,"repetition_penalty":0})") == "repetition_penalty");
  CHECK(refused_param(kMsgs + R"(,"seed":1.5})") == "seed");
  CHECK(refused_param(kMsgs + R"(,"stop":5})") == "stop");
  CHECK(refused_param(kMsgs + R"(,"stop":["a","b","c","d","e"]})") == "stop");
  CHECK(refused_param(kMsgs + R"(,"logit_bias":{"x":1}})") == "logit_bias");
  CHECK(refused_param(kMsgs + R"(,"logit_bias":{"5000":1}})") == "logit_bias");
  CHECK(refused_param(kMsgs + R"(,"logit_bias":{"5":101}})") == "logit_bias");
  CHECK(refused_param(kMsgs + R"(,"logprobs":1})") == "logprobs");
  CHECK(refused_param(kMsgs + R"(,"top_logprobs":3})") == "top_logprobs");
  CHECK(refused_param(kMsgs + R"(,"logprobs":true,"top_logprobs":21})") == "top_logprobs");
  CHECK(refused_param(kMsgs + R"(,"stream":"yes"})") == "stream");
  CHECK(refused_param(kMsgs + R"(,"stream_options":1})") == "stream_options");
  CHECK(refused_param(kMsgs + R"(,"user":1})") == "user");
  CHECK(refused_param(kMsgs + R"(,"tools":{}})") == "tools");
  CHECK(refused_param(kMsgs + R"(,"tools":[{"type":"function"}]})") == "tools[0]");
  CHECK(refused_param(kMsgs + R"(,"tools":[{"type":"function","function":{"name":"f","parameters":3}}]})") == "tools[0]");
  CHECK(refused_param(kMsgs + R"(,"tool_choice":"required"})") == "tool_choice");  // no tools
  CHECK(refused_param(kMsgs + R"(,"tool_choice":"sometimes","tools":[{"type":"function","function":{"name":"f"}}]})") == "tool_choice");
  CHECK(refused_param(kMsgs + R"(,"tool_choice":{"type":"function","function":{"name":"g"}},"tools":[{"type":"function","function":{"name":"f"}}]})") == "tool_choice");
  CHECK(refused_param(kMsgs + R"(,"response_format":{"type":"xml"}})") == "response_format");
  CHECK(refused_param(kMsgs + R"(,"response_format":{"type":"json_schema","json_schema":{"schema":{"not":{}}}}})") == "response_format");
  CHECK(refused_param(kMsgs + R"(,"grammar":"root ::= x"})") == "grammar");
  CHECK(refused_param(kMsgs + R"(,"grammar":"root ::= [a]","json_schema":{}})") == "grammar");
  CHECK(refused_param(kMsgs + R"(,"chat_template_kwargs":[]})") == "chat_template_kwargs");
  CHECK(refused_param(kMsgs + R"(,"continue_final_message":true})") == "continue_final_message");
  CHECK(refused_param(kMsgs + R"(,"ignore_eos":1})") == "ignore_eos");
  CHECK(refused_param(R"({"prompt":5})", E::completion) == "prompt");
  CHECK(refused_param(R"({})", E::completion) == "prompt");
  CHECK(refused_param(R"({"prompt":[]})", E::completion) == "prompt");
  CHECK(refused_param(R"({"prompt":["a","b"]})", E::completion) == "prompt");
  CHECK(refused_param(R"({"prompt":[1,1000]})", E::completion) == "prompt");
  CHECK(refused_param(R"({"prompt":[-1]})", E::completion) == "prompt");
  CHECK(refused_param(R"({"prompt":"a","suffix":"b"})", E::completion) == "suffix");
  CHECK(refused_param(R"({"prompt":"a","logprobs":6})", E::completion) == "logprobs");
  CHECK(refused_param(R"({"prompt":"a","echo":1})", E::completion) == "echo");
  CHECK(refused_param(R"({"prompt":"a","max_tokens":0})", E::completion) == "max_tokens");
}

TEST_CASE("parse_request: max_tokens above 2^24 is refused with the bound, not 'at least 1'") {
  try {
    chat(R"(, "max_tokens": 99999999)");
    FAIL("accepted");
  } catch (const ApiException& e) {
    CHECK(e.error().param == "max_tokens");
    CHECK(e.error().message.find("at most 16777216") != std::string::npos);
  }
}

TEST_CASE("tool_choice: required and named constrain the reply; auto is a lazy grammar where a call has a marker") {
  // A vocabulary of the 256 bytes: the matcher here takes bytes, not tokens.
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  auto trie = std::make_shared<const grammar::TokenTrie>(bytes, std::vector<std::uint32_t>{});
  const std::string tools = R"(, "tools":[{"type":"function","function":{"name":"get_weather",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])";
  auto prepared = [&](const std::string& extra, frontend::ToolFormat format) {
    ParsedRequest r = chat(tools + extra);
    apply_tool_choice(r, format);
    return r;
  };
  auto accepts = [&](const ParsedRequest& r, std::string_view text) {
    grammar::Matcher m(r.params.grammar, trie);
    return m.accept_bytes(text) && m.can_end();
  };
  using F = frontend::ToolFormat;
  const ParsedRequest hermes = prepared("", F::hermes);  // auto: the default with tools
  REQUIRE(hermes.params.grammar);
  REQUIRE(hermes.params.grammar_triggers.size() == 1);
  CHECK(hermes.params.grammar_triggers[0].text == "<tool_call>");
  CHECK_FALSE(hermes.params.grammar_triggers[0].after);
  CHECK(accepts(hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
  CHECK_FALSE(accepts(hermes, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
  const ParsedRequest llama3 = prepared(R"(, "tool_choice":"auto")", F::llama3);
  REQUIRE(llama3.params.grammar_triggers.size() == 3);
  CHECK(llama3.params.grammar_triggers[0].after);    // <|python_tag|>: the call follows it
  CHECK(llama3.params.grammar_triggers[1].at_start); // {"name": the reply is the call
  CHECK(accepts(llama3, R"({"name": "get_weather", "parameters": {"city": "Oslo"}})"));
  const ParsedRequest mistral = prepared("", F::mistral);
  REQUIRE(mistral.params.grammar_triggers.size() == 1);
  CHECK(mistral.params.grammar_triggers[0].text == "[TOOL_CALLS]");
  CHECK(accepts(mistral, R"([{"name": "get_weather", "arguments": {"city": "Rome"}}])"));
  // No marker to start from: calls are parsed from the free reply.
  CHECK_FALSE(prepared("", F::harmony).params.grammar);
  CHECK_FALSE(prepared("", F::generic).params.grammar);
  CHECK_FALSE(prepared(R"(, "tool_choice":"none")", F::hermes).params.grammar);
  // Another constraint keeps the reply; auto adds nothing to it.
  const ParsedRequest json = prepared(R"(, "response_format":{"type":"json_object"})", F::hermes);
  REQUIRE(json.params.grammar);
  CHECK(json.params.grammar_triggers.empty());
  // required: the same grammar from the reply's first byte, no triggers.
  const ParsedRequest required = prepared(R"(, "tool_choice":"required")", F::hermes);
  CHECK(required.params.grammar_triggers.empty());
  CHECK(accepts(required, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
  CHECK_FALSE(accepts(required, "Sure."));
  // Parameters no grammar can hold: auto parses calls unconstrained; required is a 400.
  const std::string odd = R"(, "tools":[{"type":"function","function":{"name":"f",
      "parameters":{"type":"object","properties":{"n":{"type":"number","multipleOf":3}}}}}])";
  ParsedRequest r = chat(odd);
  apply_tool_choice(r, F::hermes);
  CHECK_FALSE(r.params.grammar);
  r = chat(odd + R"(, "tool_choice":"required")");
  try {
    apply_tool_choice(r, F::hermes);
    FAIL("required with parameters no grammar holds was accepted");
  } catch (const ApiException& e) {
    CHECK(e.error().param == "tools");
    CHECK(e.error().message.find("multipleOf") != std::string::npos);
  }
}

TEST_CASE("a server whose start failed shuts down and goes away without a thread left behind") {
  // Hold a port, then start a server on it: start() throws; shutdown() and the destructor must
  // not leave the shutdown thread running on freed state (AddressSanitizer catches it).
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor holder(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  for (int i = 0; i < 20; ++i) {
    ServerConfig c;
    c.port = holder.local_endpoint().port();
    auto s = std::make_unique<Server>(c);
    CHECK_THROWS_AS(s->start(), Error);
    s->shutdown();
    s.reset();
  }
  // Shutdown and wait without a start, and a started server with no model.
  Server idle{ServerConfig{}};
  idle.shutdown();
  idle.wait();
  ServerConfig c;
  c.port = 0;
  Server started(c);
  started.start();
  CHECK(started.port() != 0);
  started.shutdown();
  started.wait();
}

TEST_CASE("Host check (DNS rebinding): loopback names pass, every other name and an empty one do not") {
  using server::HostVerdict;
  const std::vector<std::string> none, lan = {"box.lan"}, any = {"*"};
  for (const char* h : {"localhost", "localhost:8080", "LocalHost:1", "127.0.0.1", "127.0.0.1:8080",
                        "127.8.9.10:80", "[::1]", "[::1]:8080", "::1"}) {
    CAPTURE(h);
    CHECK(server::check_host(true, h, none) == HostVerdict::allowed);
  }
  for (const char* h : {"evil.example", "evil.example:8080", ":8080", "", "[::1]x", "[::1", "127.0.0.1.nip.io",
                        "0.0.0.0:8080", "192.168.1.2", "box.lan"}) {
    CAPTURE(h);
    CHECK(server::check_host(true, h, none) == HostVerdict::forbidden);
  }
  CHECK(server::check_host(false, "", none) == HostVerdict::missing);
  CHECK(server::check_host(true, "BOX.lan:9", lan) == HostVerdict::allowed);
  CHECK(server::check_host(true, "other.lan", lan) == HostVerdict::forbidden);
  CHECK(server::check_host(true, "anything:1", any) == HostVerdict::allowed);
  CHECK(server::check_host(true, ":1", any) == HostVerdict::forbidden);  // no name at all
  CHECK(server::check_host(true, ":1", {""}) == HostVerdict::forbidden);
  CHECK(server::is_loopback_address("127.0.0.1"));
  CHECK(server::is_loopback_address("::1"));
  CHECK_FALSE(server::is_loopback_address("0.0.0.0"));
  CHECK_FALSE(server::is_loopback_address("localhost"));  // a bind address, not a name
}

TEST_CASE("API key comparison: equal only when equal, whatever the lengths") {
  CHECK(server::constant_time_equal("Bearer k", "Bearer k"));
  CHECK_FALSE(server::constant_time_equal("Bearer k", "Bearer x"));
  CHECK_FALSE(server::constant_time_equal("Bearer k", "Bearer kk"));
  CHECK_FALSE(server::constant_time_equal("", "x"));
  CHECK(server::constant_time_equal("", ""));
  CHECK_FALSE(server::constant_time_equal(std::string_view("a\0b", 3), std::string_view("a", 1)));
}
