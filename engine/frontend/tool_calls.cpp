// Tool-call syntaxes of the model families (tool_calls.hpp).
#include "engine/frontend/tool_calls.hpp"

#include <algorithm>
#include <optional>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace vkllm::frontend {

namespace json = boost::json;

namespace {

constexpr std::string_view kHarmonyEnds[] = {"<|end|>", "<|call|>", "<|return|>"};
constexpr std::string_view kHarmonyMarkers[] = {"<|channel|>", "<|message|>", "<|end|>", "<|start|>",
                                                "<|call|>",    "<|return|>",  "<|constrain|>"};

std::vector<std::string_view> start_markers(ToolFormat f) {
  switch (f) {
    case ToolFormat::hermes: return {"<tool_call>"};
    case ToolFormat::llama3: return {"<|python_tag|>"};
    case ToolFormat::mistral: return {"[TOOL_CALLS]"};
    case ToolFormat::harmony: return {"<|channel|>"};
    default: return {};
  }
}

// One past the JSON object or array that starts at s[i], or nullopt while it is unfinished.
std::optional<std::size_t> json_value_end(std::string_view s, std::size_t i) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t k = i; k < s.size(); ++k) {
    const char c = s[k];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') {
      if (--depth == 0) return k + 1;
    }
  }
  return std::nullopt;
}

std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  return i;
}

std::string_view trim(std::string_view s) {
  const std::size_t a = skip_ws(s, 0);
  std::size_t b = s.size();
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n' || s[b - 1] == '\r' || s[b - 1] == '\t')) --b;
  return s.substr(a, b - a);
}

// The longest suffix of `s` that is a proper prefix of one of `markers` (held back: it may
// still become one).
std::size_t held_suffix(std::string_view s, const std::vector<std::string_view>& markers) {
  std::size_t best = 0;
  for (std::string_view m : markers) {
    for (std::size_t n = std::min(s.size(), m.size() - 1); n > best; --n) {
      if (s.substr(s.size() - n) == m.substr(0, n)) {
        best = n;
        break;
      }
    }
  }
  return best;
}

// Arguments as a JSON object's text: an object, or a string holding one.
std::optional<std::string> arguments_text(const json::value& v) {
  if (v.is_object()) return json::serialize(v);
  if (v.is_string()) {
    json::error_code ec;
    const json::value inner = json::parse(v.get_string(), ec);
    if (!ec && inner.is_object()) return json::serialize(inner);
  }
  return std::nullopt;
}

}  // namespace

const char* to_string(ToolFormat f) {
  switch (f) {
    case ToolFormat::none: return "none";
    case ToolFormat::hermes: return "hermes";
    case ToolFormat::llama3: return "llama3";
    case ToolFormat::mistral: return "mistral";
    case ToolFormat::harmony: return "harmony";
    case ToolFormat::generic: return "generic";
  }
  return "?";
}

ToolFormat detect_tool_format(std::string_view src) {
  auto has = [&](std::string_view s) { return src.find(s) != std::string_view::npos; };
  if (!has("tools") && !has("tool_calls")) return ToolFormat::none;
  if (has("<|channel|>") && has("<|call|>")) return ToolFormat::harmony;
  if (has("[TOOL_CALLS]")) return ToolFormat::mistral;
  if (has("<tool_call>")) return ToolFormat::hermes;
  if (has("<|python_tag|>") || (has("<|start_header_id|>") && has("\"parameters\""))) return ToolFormat::llama3;
  return ToolFormat::generic;
}

std::vector<std::string> tool_markers(ToolFormat f) {
  switch (f) {
    case ToolFormat::llama3: return {"<|python_tag|>"};
    case ToolFormat::mistral: return {"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"};
    case ToolFormat::harmony: return std::vector<std::string>(std::begin(kHarmonyMarkers), std::end(kHarmonyMarkers));
    default: return {};
  }
}

ToolCallParser::ToolCallParser(ToolFormat format, std::string id_prefix, bool bare)
    : format_(format), id_prefix_(std::move(id_prefix)), bare_(bare) {}

ToolCall ToolCallParser::make_call(std::string name, std::string arguments) {
  after_call_ = true;
  return {fmt::format("{}{}", id_prefix_, next_index_++), std::move(name), std::move(arguments)};
}

// {"name", "arguments" | "parameters"}, or Qwen3-Coder's <function=NAME><parameter=P>v</parameter>.
bool ToolCallParser::take_call(std::string_view body, ToolDelta& out) {
  body = trim(body);
  if (body.rfind("<function=", 0) == 0) {
    const std::size_t close = body.find('>');
    if (close == std::string_view::npos) return false;
    std::string name(trim(body.substr(10, close - 10)));
    json::object args;
    std::size_t at = close + 1;
    for (;;) {
      const std::size_t p = body.find("<parameter=", at);
      if (p == std::string_view::npos) break;
      const std::size_t pc = body.find('>', p);
      const std::size_t end = body.find("</parameter>", pc == std::string_view::npos ? p : pc);
      if (pc == std::string_view::npos || end == std::string_view::npos) return false;
      const std::string key(trim(body.substr(p + 11, pc - p - 11)));
      std::string_view value = body.substr(pc + 1, end - pc - 1);
      if (!value.empty() && value.front() == '\n') value.remove_prefix(1);
      if (!value.empty() && value.back() == '\n') value.remove_suffix(1);
      json::error_code ec;
      json::value v = json::parse(value, ec);
      args[key] = ec ? json::value(value) : v;
      at = end + 12;
    }
    if (body.find("</function>", at) == std::string_view::npos || name.empty()) return false;
    out.calls.push_back(make_call(std::move(name), json::serialize(args)));
    return true;
  }
  return take_calls_json(body, out);
}

// A call object, a list of them, or {"tool_calls": [...]} / {"tool_call": {...}}: all or none.
bool ToolCallParser::take_calls_json(std::string_view text, ToolDelta& out) {
  json::error_code ec;
  const json::value v = json::parse(text, ec);
  if (ec) return false;
  std::vector<const json::value*> items;
  if (v.is_array()) {
    for (const json::value& e : v.get_array()) items.push_back(&e);
  } else if (v.is_object() && v.get_object().contains("tool_calls") && v.get_object().at("tool_calls").is_array()) {
    for (const json::value& e : v.get_object().at("tool_calls").get_array()) items.push_back(&e);
  } else if (v.is_object() && v.get_object().contains("tool_call")) {
    items.push_back(&v.get_object().at("tool_call"));
  } else {
    items.push_back(&v);
  }
  std::vector<std::pair<std::string, std::string>> calls;
  for (const json::value* e : items) {
    if (!e->is_object()) return false;
    const json::object& o = e->get_object();
    const json::value* name = o.if_contains("name");
    const json::value* args = o.if_contains("arguments");
    if (!args) args = o.if_contains("parameters");
    if (!name || !name->is_string() || name->get_string().empty() || !args) return false;
    auto a = arguments_text(*args);
    if (!a) return false;
    calls.emplace_back(std::string(name->get_string()), std::move(*a));
  }
  if (calls.empty()) return false;
  for (auto& [name, args] : calls) out.calls.push_back(make_call(std::move(name), std::move(args)));
  return true;
}

void ToolCallParser::emit_text(std::string_view text, ToolDelta& out) {
  if (after_call_ && trim(text).empty()) return;  // between or after calls: layout
  if (!text.empty()) after_call_ = false;
  if (format_ != ToolFormat::harmony) {
    out.content += text;
    return;
  }
  // Between harmony's messages: structure (<|start|>assistant), not text.
  std::string t(text);
  for (std::string_view m : kHarmonyMarkers) {
    for (std::size_t p; (p = t.find(m)) != std::string::npos;) t.erase(p, m.size());
  }
  if (t.rfind("assistant", 0) == 0) t.erase(0, 9);
  if (!trim(t).empty()) out.content += t;
}

void ToolCallParser::step(ToolDelta& out, bool final) {
  for (;;) {
    switch (mode_) {
      case Mode::start: {
        const std::size_t i = skip_ws(buf_, 0);
        if (i == buf_.size()) {
          if (!final) return;
          mode_ = Mode::text;
          continue;
        }
        const bool object_reply = format_ == ToolFormat::llama3 || format_ == ToolFormat::generic;
        if ((buf_[i] == '{' && (object_reply || bare_)) || (buf_[i] == '[' && bare_)) {
          const auto end = json_value_end(buf_, i);
          if (!end) {
            if (!final) return;  // the call is still coming
            mode_ = Mode::text;
            continue;
          }
          ToolDelta calls;
          if (take_calls_json(std::string_view(buf_).substr(i, *end - i), calls)) {
            out.calls.insert(out.calls.end(), calls.calls.begin(), calls.calls.end());
            buf_.erase(0, *end);
          }
        }
        mode_ = Mode::text;
        continue;
      }
      case Mode::text: {
        const auto markers = start_markers(format_);
        std::size_t best = std::string::npos;
        std::string_view which;
        for (std::string_view m : markers) {
          const std::size_t p = buf_.find(m);
          if (p < best) {
            best = p;
            which = m;
          }
        }
        if (best == std::string::npos) {
          // Harmony's text between messages is structure (<|start|>assistant): held whole until
          // the next message or the end shows what it is.
          if (format_ == ToolFormat::harmony && !final) return;
          // Whitespace after a call: held until what follows shows whether it is text.
          if (after_call_ && !final && trim(buf_).empty()) return;
          const std::size_t hold = final ? 0 : held_suffix(buf_, markers);
          emit_text(std::string_view(buf_).substr(0, buf_.size() - hold), out);
          buf_.erase(0, buf_.size() - hold);
          return;
        }
        emit_text(std::string_view(buf_).substr(0, best), out);
        buf_.erase(0, best + which.size());
        marker_ = std::string(which);
        mode_ = format_ == ToolFormat::harmony ? Mode::harmony_header : Mode::call;
        continue;
      }
      case Mode::call: {
        std::optional<std::size_t> consumed;  // through the end of the call, when it is one
        bool valid = false;
        if (format_ == ToolFormat::hermes) {
          const std::size_t end = buf_.find("</tool_call>");
          if (end != std::string::npos) {
            valid = take_call(std::string_view(buf_).substr(0, end), out);
            consumed = end + 12;
          }
        } else if (format_ == ToolFormat::llama3) {
          const std::size_t i = skip_ws(buf_, 0);
          if (i < buf_.size() && buf_[i] != '{') {
            consumed = 0;  // builtin tools' python syntax: text
          } else if (auto end = i < buf_.size() ? json_value_end(buf_, i) : std::nullopt) {
            valid = take_calls_json(std::string_view(buf_).substr(i, *end - i), out);
            consumed = *end;
          }
        } else if (format_ == ToolFormat::mistral) {
          const std::size_t i = skip_ws(buf_, 0);
          if (i < buf_.size() && buf_[i] == '[') {
            if (auto end = json_value_end(buf_, i)) {
              valid = take_calls_json(std::string_view(buf_).substr(i, *end - i), out);
              consumed = *end;
            }
          } else if (const std::size_t args = buf_.find("[ARGS]"); args != std::string::npos) {
            const std::size_t j = skip_ws(buf_, args + 6);
            if (j < buf_.size() && buf_[j] != '{') {
              consumed = j;
            } else if (auto end = j < buf_.size() ? json_value_end(buf_, j) : std::nullopt) {
              json::error_code ec;
              const json::value a = json::parse(std::string_view(buf_).substr(j, *end - j), ec);
              const std::string name(trim(std::string_view(buf_).substr(0, args)));
              if (!ec && a.is_object() && !name.empty()) {
                out.calls.push_back(make_call(name, json::serialize(a)));
                valid = true;
              }
              consumed = *end;
            }
          }
        }
        if (!consumed) {
          if (!final) return;  // the call is still coming
          consumed = buf_.size();
        }
        if (!valid) emit_text(marker_ + buf_.substr(0, *consumed), out);  // not a call: text
        buf_.erase(0, *consumed);
        mode_ = Mode::text;
        continue;
      }
      case Mode::harmony_header: {
        const std::size_t p = buf_.find("<|message|>");
        if (p == std::string::npos) {
          if (!final) return;
          buf_.clear();
          return;
        }
        const std::string header = buf_.substr(0, p);
        buf_.erase(0, p + 11);
        const std::size_t space = header.find_first_of(" <");
        harmony_channel_ = std::string(trim(header.substr(0, space)));
        harmony_recipient_.clear();
        if (const std::size_t to = header.find("to="); to != std::string::npos) {
          std::size_t e = header.find_first_of(" <", to);
          if (e == std::string::npos) e = header.size();
          harmony_recipient_ = header.substr(to + 3, e - to - 3);
          if (harmony_recipient_.rfind("functions.", 0) == 0) harmony_recipient_.erase(0, 10);
        }
        mode_ = Mode::harmony_body;
        continue;
      }
      case Mode::harmony_body: {
        std::size_t end = std::string::npos, len = 0;
        for (std::string_view m : kHarmonyEnds) {
          const std::size_t p = buf_.find(m);
          if (p < end) {
            end = p;
            len = m.size();
          }
        }
        const bool found = end != std::string::npos;
        if (!harmony_recipient_.empty()) {  // a call: its whole message
          if (!found && !final) return;
          const std::string_view body = std::string_view(buf_).substr(0, found ? end : buf_.size());
          json::error_code ec;
          const json::value a = json::parse(body, ec);
          if (!ec && a.is_object()) {
            out.calls.push_back(make_call(harmony_recipient_, json::serialize(a)));
          } else {
            out.content += body;
          }
          buf_.erase(0, found ? end + len : buf_.size());
          mode_ = Mode::text;
          continue;
        }
        // Analysis is reasoning, anything else the answer; streamed as it comes.
        std::vector<std::string_view> ends(std::begin(kHarmonyEnds), std::end(kHarmonyEnds));
        const std::size_t upto = found ? end : buf_.size() - (final ? 0 : held_suffix(buf_, ends));
        (harmony_channel_ == "analysis" ? out.reasoning : out.content) += buf_.substr(0, upto);
        buf_.erase(0, found ? end + len : upto);
        if (found) {
          mode_ = Mode::text;
          continue;
        }
        return;
      }
    }
  }
}

ToolDelta ToolCallParser::push(std::string_view text) {
  ToolDelta out;
  buf_ += text;
  step(out, false);
  return out;
}

ToolDelta ToolCallParser::finish() {
  ToolDelta out;
  step(out, true);
  return out;
}

}  // namespace vkllm::frontend
