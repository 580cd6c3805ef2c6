// OpenAI request validation and JSON shapes.
#include "server/openai.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <span>

#include <boost/json/basic_parser_impl.hpp>
#include <fmt/format.h>

#include "engine/grammar/grammar.hpp"
#include "engine/grammar/json_schema.hpp"

namespace vkllm::server {
namespace json = boost::json;

namespace {

[[noreturn]] void fail(const std::string& param, const std::string& message) {
  throw ApiException(ApiError{400, message, "invalid_request_error", param, ""});
}

const json::value* field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

// tool_choice required or a named function: the reply must be calls.
bool forces_calls(const ToolChoice& c) {
  return c.mode == ToolChoice::Mode::required || c.mode == ToolChoice::Mode::named;
}

double number(const json::value& v, const char* name) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  fail(name, fmt::format("'{}' must be a number", name));
}

std::int64_t integer(const json::value& v, const char* name) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v.get_uint64());
  }
  if (v.is_double() && std::floor(v.get_double()) == v.get_double() &&
      std::fabs(v.get_double()) < 9e15) {
    return static_cast<std::int64_t>(v.get_double());
  }
  fail(name, fmt::format("'{}' must be an integer", name));
}

bool boolean(const json::value& v, const char* name) {
  if (!v.is_bool()) fail(name, fmt::format("'{}' must be a boolean", name));
  return v.get_bool();
}

double ranged(const json::object& o, const char* name, double lo, double hi, double def) {
  const json::value* v = field(o, name);
  if (!v) return def;
  const double x = number(*v, name);
  if (!(x >= lo && x <= hi)) {
    fail(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  }
  return x;
}

std::vector<std::string> stop_list(const json::object& o, const RequestLimits& limits) {
  const json::value* v = field(o, "stop");
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.emplace_back(v->get_string());
  } else if (v->is_array()) {
    for (const json::value& s : v->get_array()) {
      if (!s.is_string()) fail("stop", "'stop' must be a string or an array of strings");
      out.emplace_back(s.get_string());
    }
  } else {
    fail("stop", "'stop' must be a string or an array of strings");
  }
  if (out.size() > limits.max_stop_strings) {
    fail("stop", fmt::format("'stop' holds {} strings; at most {}", out.size(), limits.max_stop_strings));
  }
  return out;
}

std::string content_text(const json::value& content, std::size_t index) {
  const std::string param = fmt::format("messages[{}].content", index);
  if (content.is_null()) return {};
  if (content.is_string()) return std::string(content.get_string());
  if (!content.is_array()) fail(param, fmt::format("'{}' must be a string or an array of parts", param));
  std::string text;
  for (const json::value& part : content.get_array()) {
    if (!part.is_object()) fail(param, fmt::format("'{}' parts must be objects", param));
    const json::object& p = part.get_object();
    const json::value* type = field(p, "type");
    if (!type || !type->is_string()) fail(param, fmt::format("'{}' parts need a 'type'", param));
    if (type->get_string() != "text") {
      fail(param, fmt::format("'{}': content parts of type '{}' are not supported (text only)", param,
                              std::string_view(type->get_string())));
    }
    const json::value* t = field(p, "text");
    if (!t || !t->is_string()) fail(param, fmt::format("'{}' text parts need a string 'text'", param));
    text += t->get_string();
  }
  return text;
}

}  // namespace

std::string error_body(const ApiError& e) {
  json::object err;
  err["message"] = e.message;
  err["type"] = e.type;
  err["param"] = e.param.empty() ? json::value(nullptr) : json::value(e.param);
  err["code"] = e.code.empty() ? json::value(nullptr) : json::value(e.code);
  json::object body;
  body["error"] = std::move(err);
  return json::serialize(body);
}

const char* finish_reason_name(serving::FinishReason f) {
  switch (f) {
    case serving::FinishReason::length: return "length";
    case serving::FinishReason::stop: return "stop";
    default: return nullptr;
  }
}

json::object usage_json(const Usage& u) {
  json::object o;
  o["prompt_tokens"] = u.prompt_tokens;
  o["completion_tokens"] = u.completion_tokens;
  o["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  json::object details;
  details["cached_tokens"] = u.cached_tokens;
  o["prompt_tokens_details"] = std::move(details);
  return o;
}

namespace {

// messages -> r.prompt (chat): roles checked, content parts joined, "developer" as "system".
void parse_messages(const json::object& o, ParsedRequest& r) {
  const json::value* msgs = field(o, "messages");
  if (!msgs) fail("messages", "'messages' is required");
  if (!msgs->is_array()) fail("messages", "'messages' must be an array");
  if (msgs->get_array().empty()) fail("messages", "'messages' must hold at least one message");
  json::array normalized;
  std::size_t i = 0;
  for (const json::value& m : msgs->get_array()) {
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) fail(param, fmt::format("'{}' must be an object", param));
    json::object msg = m.get_object();
    const json::value* role = field(msg, "role");
    if (!role || !role->is_string()) fail(param + ".role", fmt::format("'{}.role' must be a string", param));
    // A copy: inserting "content" below may rehash msg and free the string a view would point at.
    const std::string rs(role->get_string());
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool" && rs != "developer") {
      fail(param + ".role", fmt::format("'{}.role' is '{}'; expected system, developer, user, assistant or tool",
                                        param, rs));
    }
    const json::value* content = field(msg, "content");
    if (!content && rs != "assistant") fail(param + ".content", fmt::format("'{}.content' is required", param));
    msg["content"] = content_text(content ? *content : json::value(nullptr), i);
    if (rs == "developer") msg["role"] = "system";
    normalized.push_back(std::move(msg));
    ++i;
  }
  r.prompt.kind = frontend::PromptInput::Kind::chat;
  r.prompt.messages_json = json::serialize(normalized);
  if (const json::value* t = field(o, "tools")) {
    if (!t->is_array()) fail("tools", "'tools' must be an array");
    std::size_t k = 0;
    for (const json::value& tool : t->get_array()) {
      const std::string param = fmt::format("tools[{}]", k++);
      const json::value* fn = tool.is_object() ? field(tool.get_object(), "function") : nullptr;
      const json::value* name = fn && fn->is_object() ? field(fn->get_object(), "name") : nullptr;
      if (!name || !name->is_string() || name->get_string().empty()) {
        fail(param, fmt::format("'{}' must be {{\"type\": \"function\", \"function\": {{\"name\", \"parameters\"}}}}", param));
      }
      const json::value* params = field(fn->get_object(), "parameters");
      if (params && !params->is_object()) fail(param, fmt::format("'{}.function.parameters' must be an object", param));
    }
    r.tools = t->get_array();
    r.prompt.tools_json = json::serialize(*t);
  }
  if (const json::value* c = field(o, "tool_choice")) {
    if (c->is_string()) {
      const std::string_view m = c->get_string();
      if (m == "auto") r.tool_choice.mode = ToolChoice::Mode::automatic;
      else if (m == "none") r.tool_choice.mode = ToolChoice::Mode::none;
      else if (m == "required") r.tool_choice.mode = ToolChoice::Mode::required;
      else fail("tool_choice", fmt::format("'tool_choice' '{}' is not none, auto, required or a function", m));
    } else {
      const json::value* fn = c->is_object() ? field(c->get_object(), "function") : nullptr;
      const json::value* name = fn && fn->is_object() ? field(fn->get_object(), "name") : nullptr;
      if (!name || !name->is_string()) {
        fail("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\"}}");
      }
      r.tool_choice = {ToolChoice::Mode::named, std::string(name->get_string())};
    }
    if (forces_calls(r.tool_choice) && r.tools.empty()) fail("tool_choice", "'tool_choice' asks for a call but 'tools' is empty");
    if (r.tool_choice.mode == ToolChoice::Mode::named) {
      const bool known = std::any_of(r.tools.begin(), r.tools.end(), [&](const json::value& t) {
        return t.at("function").at("name").get_string() == r.tool_choice.name;
      });
      if (!known) fail("tool_choice", fmt::format("'tool_choice' names '{}', which is not in 'tools'", r.tool_choice.name));
    }
  }
  if (const json::value* v = field(o, "parallel_tool_calls")) r.parallel_tool_calls = boolean(*v, "parallel_tool_calls");
  if (const json::value* k = field(o, "chat_template_kwargs")) {
    if (!k->is_object()) fail("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.prompt.template_kwargs_json = json::serialize(*k);
  }
  if (const json::value* v = field(o, "add_generation_prompt")) {
    r.prompt.add_generation_prompt = boolean(*v, "add_generation_prompt");
  }
  if (const json::value* v = field(o, "continue_final_message")) {
    r.prompt.continue_final_message = boolean(*v, "continue_final_message");
  }
  if (r.prompt.continue_final_message) {
    if (field(o, "add_generation_prompt") && r.prompt.add_generation_prompt) {
      fail("continue_final_message", "'continue_final_message' and 'add_generation_prompt' cannot both be true");
    }
    const json::object& last = normalized.back().get_object();
    if (last.at("role") != "assistant") {
      fail("continue_final_message", "'continue_final_message' needs the last message to be the assistant's");
    }
  }
}

// prompt -> r.prompt (completion): a string, token ids, or a one-element list of either.
void parse_prompt(const json::object& o, const RequestLimits& limits, ParsedRequest& r) {
  const json::value* p = field(o, "prompt");
  if (!p) fail("prompt", "'prompt' is required");
  auto token_array = [&](const json::array& a) {
    std::vector<std::uint32_t> ids;
    for (const json::value& t : a) {
      const std::int64_t id = integer(t, "prompt");
      if (id < 0 || (limits.vocab_size && id >= limits.vocab_size)) {
        fail("prompt", fmt::format("token id {} is outside the vocabulary ({} tokens)", id, limits.vocab_size));
      }
      ids.push_back(static_cast<std::uint32_t>(id));
    }
    if (ids.empty()) fail("prompt", "'prompt' is empty");
    r.prompt.kind = frontend::PromptInput::Kind::tokens;
    r.prompt.tokens = std::move(ids);
  };
  auto text = [&](json::string_view s) {
    r.prompt.kind = frontend::PromptInput::Kind::text;
    r.prompt.text = std::string(s);
  };
  if (p->is_string()) {
    text(p->get_string());
  } else if (p->is_array()) {
    const json::array& a = p->get_array();
    if (a.empty()) fail("prompt", "'prompt' is empty");
    if (a[0].is_string() || a[0].is_array()) {
      if (a.size() != 1) fail("prompt", "a list of several prompts is not supported; send one per request");
      if (a[0].is_string()) {
        text(a[0].get_string());
      } else {
        token_array(a[0].get_array());
      }
    } else {
      token_array(a);
    }
  } else {
    fail("prompt", "'prompt' must be a string, an array of token ids, or a one-element list");
  }
  if (field(o, "suffix")) fail("suffix", "'suffix' (fill in the middle) is not supported");
  if (const json::value* e = field(o, "echo")) r.echo = boolean(*e, "echo");
  if (const json::value* lp = field(o, "logprobs")) {
    const std::int64_t n = integer(*lp, "logprobs");
    if (n < 0 || n > 5) fail("logprobs", "'logprobs' must be between 0 and 5");
    r.logprobs = true;
    r.top_logprobs = static_cast<std::uint32_t>(n);
  }
  // echo with logprobs: the prompt tokens' logprobs too, computed in the prompt's own steps.
  r.params.prompt_logprobs = r.echo && r.logprobs;
}

// The output's constraint (docs/ARCHITECTURE.md "Constrained decoding"): OpenAI's
// response_format (json_object, json_schema), llama-server's json_schema and grammar (GBNF).
// One at most; compiled here, on the worker pool, so a bad one is a 400 naming its problem.
void parse_constraint(const json::object& o, serving::RequestParams& sp) {
  std::string gbnf;
  const char* param = nullptr;
  auto take = [&](const char* name, auto&& make) {
    if (param) fail(name, fmt::format("'{}' and '{}' cannot both constrain the output", param, name));
    param = name;
    try {
      gbnf = make();
    } catch (const grammar::GrammarError& e) {
      fail(name, e.what());
    }
  };
  if (const json::value* rf = field(o, "response_format")) {
    if (!rf->is_object()) fail("response_format", "'response_format' must be an object");
    const json::object& f = rf->get_object();
    const json::value* type = field(f, "type");
    if (!type || !type->is_string()) fail("response_format", "'response_format.type' must be a string");
    const std::string_view t = type->get_string();
    if (t == "json_object") {
      // vLLM and llama-server also take a schema here.
      const json::value* schema = field(f, "schema");
      take("response_format", [&] { return schema ? grammar::json_schema_gbnf(*schema) : grammar::json_object_gbnf(); });
    } else if (t == "json_schema") {
      const json::value* js = field(f, "json_schema");
      if (!js || !js->is_object()) fail("response_format", "'response_format.json_schema' must be an object");
      const json::value* schema = field(js->get_object(), "schema");
      if (!schema) fail("response_format", "'response_format.json_schema.schema' is missing");
      take("response_format", [&] { return grammar::json_schema_gbnf(*schema); });
    } else if (t != "text") {
      fail("response_format", fmt::format("'response_format.type' '{}' is not text, json_object or json_schema", t));
    }
  }
  if (const json::value* js = field(o, "json_schema")) {
    take("json_schema", [&] { return grammar::json_schema_gbnf(*js); });
  }
  if (const json::value* g = field(o, "grammar")) {
    if (!g->is_string()) fail("grammar", "'grammar' must be a string (GBNF)");
    take("grammar", [&] { return std::string(g->get_string()); });
  }
  if (!param) return;
  try {
    sp.grammar = grammar::parse_shared(gbnf);
  } catch (const grammar::GrammarError& e) {
    fail(param, e.what());
  }
}

void parse_logit_bias(const json::object& o, const RequestLimits& limits, serving::RequestParams& sp) {
  const json::value* b = field(o, "logit_bias");
  if (!b) return;
  if (!b->is_object()) fail("logit_bias", "'logit_bias' must be an object of token id -> bias");
  if (b->get_object().size() > 300) fail("logit_bias", "'logit_bias' may name at most 300 tokens");
  for (const auto& kv : b->get_object()) {
    std::int64_t id = -1;
    try {
      std::size_t used = 0;
      id = std::stoll(std::string(kv.key()), &used);
      if (used != kv.key().size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || (limits.vocab_size && id >= limits.vocab_size)) {
      fail("logit_bias", fmt::format("'logit_bias' key '{}' is not a token id of this model",
                                     std::string_view(kv.key())));
    }
    const double bias = number(kv.value(), "logit_bias");
    if (!(bias >= -100 && bias <= 100)) fail("logit_bias", "'logit_bias' values must be between -100 and 100");
    sp.logit_bias.push_back({static_cast<std::uint32_t>(id), static_cast<float>(bias)});
  }
}

void parse_sampling(const json::object& o, const RequestLimits& limits, ParsedRequest& r) {
  serving::RequestParams& sp = r.params;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (const json::value* v = field(o, key)) {
      const std::int64_t n = integer(*v, key);
      const std::int64_t lo = r.echo ? 0 : 1;  // echo with 0: score the prompt, generate nothing
      if (n < lo) fail(key, fmt::format("'{}' must be at least {}, got {}", key, lo, n));
      if (n > (1 << 24)) fail(key, fmt::format("'{}' must be at most {}, got {}", key, 1 << 24, n));
      r.max_tokens = static_cast<std::uint32_t>(n);
    }
  }
  sp.sampling.temperature = static_cast<float>(ranged(o, "temperature", 0, 2, 1.0));
  sp.sampling.top_p = static_cast<float>(ranged(o, "top_p", 0, 1, 1.0));
  if (sp.sampling.top_p <= 0) fail("top_p", "'top_p' must be greater than 0");
  sp.sampling.min_p = static_cast<float>(ranged(o, "min_p", 0, 1, 0.0));
  sp.sampling.top_k = 0;
  if (const json::value* v = field(o, "top_k")) {
    const std::int64_t k = integer(*v, "top_k");
    if (k < -1) fail("top_k", "'top_k' must be -1 (off), 0 (off) or positive");
    sp.sampling.top_k = k > 0 ? static_cast<std::uint32_t>(std::min<std::int64_t>(k, 1 << 30)) : 0;
  }
  sp.sampling.presence_penalty = static_cast<float>(ranged(o, "presence_penalty", -2, 2, 0));
  sp.sampling.frequency_penalty = static_cast<float>(ranged(o, "frequency_penalty", -2, 2, 0));
  sp.sampling.repetition_penalty = static_cast<float>(ranged(o, "repetition_penalty", 0.01, 10, 1));
  if (const json::value* v = field(o, "seed")) {
    sp.sampling.seed = static_cast<std::uint64_t>(integer(*v, "seed"));
  } else {
    sp.sampling.seed = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
  }
  r.stop = stop_list(o, limits);
  parse_logit_bias(o, limits, sp);
  if (const json::value* v = field(o, "ignore_eos")) sp.ignore_eos = boolean(*v, "ignore_eos");
  parse_constraint(o, sp);
}

void parse_output_options(const json::object& o, ParsedRequest& r) {
  if (r.endpoint == Endpoint::chat) {
    if (const json::value* v = field(o, "logprobs")) r.logprobs = boolean(*v, "logprobs");
    if (const json::value* v = field(o, "top_logprobs")) {
      const std::int64_t n = integer(*v, "top_logprobs");
      if (n < 0 || n > 20) fail("top_logprobs", "'top_logprobs' must be between 0 and 20");
      if (!r.logprobs) fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      r.top_logprobs = static_cast<std::uint32_t>(n);
    }
  }
  r.params.logprobs = r.logprobs;
  r.params.top_logprobs = r.logprobs ? r.top_logprobs.value_or(0) : 0;
  if (const json::value* v = field(o, "stream")) r.stream = boolean(*v, "stream");
  if (const json::value* so = field(o, "stream_options")) {
    if (!so->is_object()) fail("stream_options", "'stream_options' must be an object");
    if (const json::value* iu = field(so->get_object(), "include_usage")) {
      r.include_usage = boolean(*iu, "stream_options.include_usage");
    }
  }
  if (const json::value* u = field(o, "user")) {
    if (!u->is_string()) fail("user", "'user' must be a string");
    r.user = std::string(u->get_string());
  }
}

}  // namespace

namespace {

// SAX handler of scan_body: the byte length of the top-level "prompt" string (or of the strings
// of a top-level "prompt" array), without storing any of it; the top-level "model" string.
struct PromptBytes {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  int depth = 0;         // 1: inside the top-level object
  bool in_prompt = false;  // the value of the top-level "prompt" key (and what it holds)
  bool at_model = false;   // the value of the top-level "model" key comes next
  std::string model;
  int prompt_depth = 0;
  std::string key;
  std::size_t bytes = 0, best = 0;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  void value_done() {
    at_model = false;
    if (in_prompt && depth == prompt_depth) {
      in_prompt = false;
      best = std::max(best, bytes);
    }
  }
  bool on_object_begin(json::error_code&) { ++depth; at_model = false; return true; }
  bool on_object_end(std::size_t, json::error_code&) { --depth; value_done(); return true; }
  bool on_array_begin(json::error_code&) { ++depth; at_model = false; return true; }
  bool on_array_end(std::size_t, json::error_code&) { --depth; value_done(); return true; }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) { key.append(s); return true; }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key.append(s);
    if (depth == 1 && key == "prompt") {
      in_prompt = true;
      prompt_depth = 1;
      bytes = 0;
    }
    at_model = depth == 1 && key == "model";
    key.clear();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    if (in_prompt) bytes += s.size();
    if (at_model && model.size() < 4096) model.append(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    if (in_prompt) bytes += s.size();
    if (at_model && model.size() < 4096) model.append(s);
    at_model = false;
    value_done();
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, json::error_code&) { value_done(); return true; }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { value_done(); return true; }
  bool on_double(double, json::string_view, json::error_code&) { value_done(); return true; }
  bool on_bool(bool, json::error_code&) { value_done(); return true; }
  bool on_null(json::error_code&) { value_done(); return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

}  // namespace

bool parses_tool_calls(const ParsedRequest& pr, frontend::ToolFormat format) {
  if (pr.endpoint != Endpoint::chat || format == frontend::ToolFormat::none) return false;
  if (format == frontend::ToolFormat::harmony) return true;
  return !pr.tools.empty() && pr.tool_choice.mode != ToolChoice::Mode::none;
}

bool bare_tool_calls(const ParsedRequest& pr, frontend::ToolFormat format) {
  return forces_calls(pr.tool_choice) && (format == frontend::ToolFormat::mistral || format == frontend::ToolFormat::harmony);
}

namespace {

// The grammar of the calls a reply may hold in `format`'s syntax: {"name": <a tool's name>,
// "arguments" (Llama 3: "parameters"): <its parameters>}, wrapped in the format's markers (bare
// where they are control tokens, which a forced reply omits and a lazy grammar starts after);
// with parallel_tool_calls, up to 8 calls. Throws GrammarError when a function's parameters
// cannot constrain a call.
std::string tool_call_gbnf(const ParsedRequest& pr, frontend::ToolFormat format) {
  const char* args_key = format == frontend::ToolFormat::llama3 ? "parameters" : "arguments";
  json::array alternatives;
  for (const json::value& t : pr.tools) {
    const json::object& fn = t.at("function").as_object();
    const std::string_view name = fn.at("name").as_string();
    if (pr.tool_choice.mode == ToolChoice::Mode::named && name != pr.tool_choice.name) continue;
    const json::value* params = field(fn, "parameters");
    json::object props;
    props["name"] = json::object{{"const", name}};
    props[args_key] = params ? *params : json::value(json::object{{"type", "object"}});
    json::object call{{"type", "object"}, {"properties", std::move(props)},
                      {"required", json::array{"name", args_key}}, {"additionalProperties", false}};
    // A parameters schema's $defs stay reachable from the call's root.
    if (params && params->is_object()) {
      for (const char* defs : {"$defs", "definitions"}) {
        if (const json::value* d = field(params->get_object(), defs)) call[defs] = *d;
      }
    }
    alternatives.push_back(std::move(call));
  }
  const json::value schema = alternatives.size() == 1 ? alternatives[0] : json::value(json::object{{"anyOf", alternatives}});
  std::string calls = grammar::json_schema_gbnf(schema);
  // The call's rules under the name tool-call, then the syntax around it.
  calls.replace(calls.find("root ::="), 8, "tool-call ::=");
  const bool many = pr.parallel_tool_calls;
  std::string root;
  switch (format) {
    case frontend::ToolFormat::hermes:
      root = many ? R"(root ::= "<tool_call>\n" tool-call "\n</tool_call>" ( "\n<tool_call>\n" tool-call "\n</tool_call>" ){0,7})"
                  : R"(root ::= "<tool_call>\n" tool-call "\n</tool_call>")";
      break;
    case frontend::ToolFormat::mistral:  // [TOOL_CALLS] is a control token: the list bare
      root = many ? R"(root ::= "[" tool-call ( ", " tool-call ){0,7} "]")" : R"(root ::= "[" tool-call "]")";
      break;
    case frontend::ToolFormat::generic:
      root = many ? R"(root ::= "{\"tool_calls\": [" tool-call ( ", " tool-call ){0,7} "]}")" : "root ::= tool-call";
      break;
    default:  // Llama 3 (its reply is the call), harmony (its markers are control tokens: bare)
      root = "root ::= tool-call";
      break;
  }
  return root + "\n" + calls;
}

// Where a call begins in each format's output, for tool_choice auto's lazy grammar. None for
// harmony (calls live in its channel structure, which the grammar does not model) and the
// generic format (no marker tells a call from a JSON answer).
std::vector<grammar::Trigger> tool_call_triggers(frontend::ToolFormat format) {
  switch (format) {
    case frontend::ToolFormat::hermes: return {{"<tool_call>", false, false}};
    case frontend::ToolFormat::llama3:
      return {{"<|python_tag|>", false, true}, {R"({"name")", true, false}, {R"({ "name")", true, false}};
    case frontend::ToolFormat::mistral: return {{"[TOOL_CALLS]", false, true}};
    default: return {};
  }
}

}  // namespace

void apply_tool_choice(ParsedRequest& pr, frontend::ToolFormat format) {
  if (pr.endpoint != Endpoint::chat || pr.tools.empty()) return;
  if (pr.tool_choice.mode == ToolChoice::Mode::automatic) {
    // A lazy grammar: the reply runs free until a call begins. Not with another constraint,
    // and not where a function's parameters cannot be compiled: its calls are parsed, as without.
    std::vector<grammar::Trigger> triggers = tool_call_triggers(format);
    if (triggers.empty() || pr.params.grammar) return;
    try {
      pr.params.grammar = grammar::parse_shared(tool_call_gbnf(pr, format));
      pr.params.grammar_triggers = std::move(triggers);
    } catch (const grammar::GrammarError&) {
    }
    return;
  }
  if (!forces_calls(pr.tool_choice)) return;
  if (pr.params.grammar) fail("tool_choice", "'tool_choice' required or named cannot be combined with another output constraint");
  if (format == frontend::ToolFormat::none) {
    fail("tool_choice", "this model's chat template renders no tools: 'tool_choice' cannot require a call");
  }
  try {
    pr.params.grammar = grammar::parse_shared(tool_call_gbnf(pr, format));
  } catch (const grammar::GrammarError& e) {
    fail("tools", fmt::format("a function's parameters cannot constrain a call: {}", e.what()));
  }
}

EmbeddingRequest parse_embedding_request(std::string_view body, const RequestLimits& limits) {
  json::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec || !doc.is_object()) fail("", "the body must be a JSON object");
  const json::object& o = doc.get_object();
  EmbeddingRequest r;
  if (const json::value* m = field(o, "model")) {
    if (!m->is_string()) fail("model", "'model' must be a string");
    r.model = std::string(m->get_string());
  }
  const json::value* in = field(o, "input");
  if (!in) in = field(o, "content");  // llama-server's name
  if (!in) fail("input", "'input' is required");
  auto text = [&](const json::value& v) {
    frontend::PromptInput p;
    p.kind = frontend::PromptInput::Kind::text;
    p.text = std::string(v.get_string());
    if (p.text.empty()) fail("input", fmt::format("input {} is an empty string", r.inputs.size()));
    r.inputs.push_back(std::move(p));
  };
  auto tokens = [&](const json::array& a) {
    frontend::PromptInput p;
    p.kind = frontend::PromptInput::Kind::tokens;
    for (const json::value& t : a) {
      const std::int64_t id = integer(t, "input");
      if (id < 0 || (limits.vocab_size && id >= limits.vocab_size)) {
        fail("input", fmt::format("token id {} of input {} is outside the vocabulary ({} tokens)", id,
                                  r.inputs.size(), limits.vocab_size));
      }
      p.tokens.push_back(static_cast<std::uint32_t>(id));
    }
    if (p.tokens.empty()) fail("input", fmt::format("input {} is an empty token array", r.inputs.size()));
    r.inputs.push_back(std::move(p));
  };
  if (in->is_string()) {
    text(*in);
  } else if (in->is_array() && !in->get_array().empty() &&
             (in->get_array()[0].is_string() || in->get_array()[0].is_array())) {
    const json::array& a = in->get_array();
    if (a.size() > kMaxEmbeddingInputs) {
      fail("input", fmt::format("'input' holds {} inputs; at most {}", a.size(), kMaxEmbeddingInputs));
    }
    for (const json::value& v : a) {
      if (v.is_string()) {
        text(v);
      } else if (v.is_array()) {
        tokens(v.get_array());
      } else {
        fail("input", "each element of 'input' must be a string or an array of token ids");
      }
    }
  } else if (in->is_array() && !in->get_array().empty()) {
    tokens(in->get_array());
  } else {
    fail("input", "'input' must be a non-empty string, array of strings, array of token ids, or "
                  "array of token-id arrays");
  }
  if (const json::value* f = field(o, "encoding_format")) {
    if (!f->is_string() || (f->get_string() != "float" && f->get_string() != "base64")) {
      fail("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    }
    r.base64 = f->get_string() == "base64";
  }
  if (const json::value* d = field(o, "dimensions")) {
    const std::int64_t n = integer(*d, "dimensions");
    if (n < 1 || n > (1 << 20)) fail("dimensions", "'dimensions' must be a positive integer");
    r.dimensions = static_cast<std::uint32_t>(n);
  }
  if (const json::value* p = field(o, "pooling")) {
    const auto pooling = p->is_string() ? model::parse_pooling(std::string_view(p->get_string()))
                                        : std::nullopt;
    if (!pooling) fail("pooling", "'pooling' must be \"mean\", \"cls\" or \"last\"");
    r.pooling = pooling;
  }
  return r;
}

namespace {

// RFC 4648 base64 with padding.
std::string base64(std::span<const std::byte> bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t v = 0;
    for (std::size_t j = 0; j < 3; ++j) v = v << 8 | (j < n ? std::to_integer<std::uint32_t>(bytes[i + j]) : 0);
    for (std::size_t j = 0; j < 4; ++j) out += j <= n ? kAlphabet[(v >> (18 - 6 * j)) & 63] : '=';
  }
  return out;
}

}  // namespace

std::string embeddings_json(const std::vector<std::vector<float>>& embeddings, bool base64_out,
                            const std::string& model, std::uint32_t prompt_tokens) {
  json::array data;
  for (std::size_t i = 0; i < embeddings.size(); ++i) {
    json::object e;
    e["object"] = "embedding";
    e["index"] = i;
    if (base64_out) {  // the bytes of little-endian f32 (every platform vkllm builds for)
      e["embedding"] = base64(std::as_bytes(std::span<const float>(embeddings[i])));
    } else {
      e["embedding"] = json::array(embeddings[i].begin(), embeddings[i].end());
    }
    data.push_back(std::move(e));
  }
  json::object o;
  o["object"] = "list";
  o["data"] = std::move(data);
  o["model"] = model;
  json::object usage;
  usage["prompt_tokens"] = prompt_tokens;
  usage["total_tokens"] = prompt_tokens;
  o["usage"] = std::move(usage);
  return json::serialize(o);
}

BodyScan scan_body(std::string_view body) {
  json::basic_parser<PromptBytes> p{json::parse_options{}};
  json::error_code ec;
  p.write_some(false, body.data(), body.size(), ec);
  if (ec) return {};
  return {p.handler().best, std::move(p.handler().model)};
}

ParsedRequest parse_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits) {
  json::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec) fail("", fmt::format("the body is not valid JSON: {}", ec.message()));
  if (!root.is_object()) fail("", "the body must be a JSON object");
  const json::object& o = root.get_object();
  ParsedRequest r;
  r.endpoint = endpoint;
  if (const json::value* m = field(o, "model")) {
    if (!m->is_string()) fail("model", "'model' must be a string");
    r.model = std::string(m->get_string());
  }
  if (const json::value* v = field(o, "n")) {
    const std::int64_t n = integer(*v, "n");
    if (n < 1 || n > kMaxChoices) fail("n", fmt::format("'n' must be between 1 and {}, got {}", kMaxChoices, n));
    r.n = static_cast<std::uint32_t>(n);
  }
  // best_of = n is n; more (choosing the best by logprob) is not done.
  if (const json::value* b = field(o, "best_of"); b && integer(*b, "best_of") != r.n) {
    fail("best_of", "only best_of = n is supported");
  }
  if (endpoint == Endpoint::chat) {
    parse_messages(o, r);
  } else {
    parse_prompt(o, limits, r);
  }
  parse_sampling(o, limits, r);
  parse_output_options(o, r);
  return r;
}


}  // namespace vkllm::server
