// Writes the seed corpora that come from our own code into <out>/{gguf,request,http,template,grammar}/:
// the small GGUF of every value kind the reader's tests mutate, request bodies covering every
// field the parser reads (and the same as whole HTTP requests, with the other routes), and
// each chat template given on the command line framed the way
// fuzz_template.cpp splits its input (FuzzedDataProvider: messages and tools as
// backslash-terminated strings, the template, and a flag byte at the end).
// Usage: fuzz_seeds <out> [template.jinja ...]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar/json_schema.hpp"
#include "tests/support/gguf_fuzz.hpp"

namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, std::string_view bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// ConsumeRandomLengthString's framing: "\\" is one backslash, "\\" + another byte ends it.
std::string framed(std::string_view s) {
  std::string out;
  for (const char c : s) {
    out += c;
    if (c == '\\') out += '\\';
  }
  return out + "\\n";
}

constexpr std::string_view kMessages =
    R"([{"role":"system","content":"You are helpful."},{"role":"user","content":"Hi \u00e9 <b>"},)"
    R"({"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"f",)"
    R"("arguments":{"x":1}}}]},{"role":"tool","content":"42"},{"role":"user","content":[{"type":)"
    R"("text","text":"and?"}]}])";
constexpr std::string_view kTools =
    R"([{"type":"function","function":{"name":"f","description":"d","parameters":{"type":)"
    R"("object","properties":{"x":{"type":"integer"}},"required":["x"]}}}])";

constexpr std::string_view kRequests[] = {
    R"({"messages":[{"role":"user","content":"Hello"}]})",
    R"({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"t"}]}],"max_tokens":16,"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.05,"seed":7,"stop":["\n","END"],"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":5,"presence_penalty":0.5,"frequency_penalty":0.2,"repetition_penalty":1.1,"logit_bias":{"15":-100},"user":"u"})",
    R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":4,"chat_template_kwargs":{"enable_thinking":false},"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]})",
    R"({"prompt":"Once upon a time","max_tokens":8,"echo":true,"logprobs":2})",
    R"({"prompt":[1,2,3,4],"stream":true,"stop":"."})",
    R"({"prompt":"a","n":1,"best_of":1,"suffix":null,"temperature":0})",
    // Regression (CI stop 23): an assistant role was compared from freed memory after the
    // message object was rehashed (tests/server/test_server.cpp, "every role survives").
    R"({"messages":[{"role":"assistant","content":"Hello"}]})",
    R"({"messages":[{"role":"developer","content":"d"},{"role":"assistant"},{"role":"user","content":"u"}],"continue_final_message":false})",
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fuzz_seeds <out> [template.jinja ...]\n");
    return 2;
  }
  const fs::path out = argv[1];
  const auto gguf = vkllm::test::seed_file();
  write(out / "gguf" / "seed.gguf", std::string_view(reinterpret_cast<const char*>(gguf.data()), gguf.size()));
  int i = 0;
  for (const auto body : kRequests) write(out / "request" / ("seed" + std::to_string(i++) + ".json"), body);
  // fuzz_http: the same bodies as whole HTTP requests to their routes, and the other routes,
  // one request per connection, two pipelined, and a chunked body.
  auto http = [](std::string_view method, std::string_view target, std::string_view body,
                 std::string_view extra = {}) {
    return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
           "Authorization: Bearer k\r\n" + std::string(extra) +
           (body.empty() ? "" : "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n") +
           "\r\n" + std::string(body);
  };
  i = 0;
  for (const auto body : kRequests) {
    const bool chat = body.find("\"messages\"") != std::string_view::npos;
    write(out / "http" / ("seed" + std::to_string(i++) + ".txt"),
          http("POST", chat ? "/v1/chat/completions" : "/v1/completions", body));
  }
  const std::string gets = http("GET", "/health", "") + http("GET", "/v1/models", "") +
                           http("GET", "/metrics", "", "Connection: close\r\n");
  write(out / "http" / "gets.txt", gets);
  write(out / "http" / "tokenize.txt", http("POST", "/tokenize", R"({"content":"Hello world","with_pieces":true})") +
                                           http("POST", "/detokenize", R"({"tokens":[1,2,3]})"));
  write(out / "http" / "embeddings.txt",
        http("POST", "/v1/embeddings", R"({"input":["Hello world","ab"],"encoding_format":"base64","dimensions":2})") +
            http("POST", "/v1/embeddings", R"({"input":[[1,2,3]],"model":"m"})"));
  write(out / "http" / "chunked.txt",
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n"
        "Transfer-Encoding: chunked\r\n\r\n10\r\n{\"prompt\":\"ab\",\"\r\n"
        "f\r\nmax_tokens\":3} \r\n0\r\n\r\n");
  write(out / "http" / "options.txt", "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nOrigin: http://a\r\n\r\n");
  // fuzz_grammar: a GBNF, a schema and model output, each with bytes to feed.
  using namespace std::string_literals;
  write(out / "grammar" / "gbnf.txt", "\x00"s + vkllm::grammar::json_object_gbnf() + '\0' + R"({"a": [1, "x\u00e9"]})");
  write(out / "grammar" / "schema.txt",
        "\x01"s + R"({"type":"object","properties":{"n":{"type":"string","pattern":"^[A-Z]{2}-\\d{1,3}$"},"k":{"enum":[1,null]},"r":{"$ref":"#/$defs/r"}},"required":["n"],"$defs":{"r":{"type":"array","items":{"type":"integer","minimum":0},"maxItems":3}}})" +
            '\0' + R"({"n": "AB-12", "k": null})");
  write(out / "grammar" / "tools.txt",
        "\x02"s + "Sure.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>[TOOL_CALLS]g[ARGS]{}"
        "<|channel|>commentary to=functions.h <|constrain|>json<|message|>{}<|call|>");
  for (int a = 2; a < argc; ++a) {
    std::ifstream f(argv[a], std::ios::binary);
    const std::string source((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::string stem = fs::path(argv[a]).stem().string();
    write(out / "template" / (stem + ".tools"), framed(kMessages) + framed(kTools) + source + '\x01');
    write(out / "template" / (stem + ".plain"), framed(kMessages) + framed("") + source + '\x00');
  }
  return 0;
}
