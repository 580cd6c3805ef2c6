// Owns JSON in and out of template Values: json.dumps(ensure_ascii=False, indent) byte for byte
// as transformers' tojson filter, and a strict JSON reader for contexts. Must not know Jinja syntax.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "common/utf8.hpp"
#include "engine/template/error.hpp"
#include "engine/template/text.hpp"
#include "engine/template/value.hpp"

namespace vkllm::tmpl {

namespace {

constexpr int kMaxJsonDepth = 200;

void dump_string(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

std::string float_json(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return float_repr(d);
}

struct Dumper {
  std::optional<std::string> indent;  // none: compact
  std::string out;

  void newline(int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out += *indent;
  }

  void quoted(const std::string& s) {
    out.push_back('"');
    out += s;
    out.push_back('"');
  }

  void key(const Value& k) {
    switch (k.kind()) {
      case Value::Kind::kString: dump_string(out, k.as_string()); return;
      case Value::Kind::kInt: quoted(std::to_string(k.as_int())); return;
      case Value::Kind::kFloat: quoted(float_json(k.as_float())); return;
      case Value::Kind::kBool: out += k.as_bool() ? "\"true\"" : "\"false\""; return;
      case Value::Kind::kNone: out += "\"null\""; return;
      default:
        throw TemplateError("keys must be str, int, float, bool or None, not " + type_name(k));
    }
  }

  void dump(const Value& v, int level) {
    if (level > kMaxJsonDepth) throw TemplateError("tojson: nesting too deep");
    switch (v.kind()) {
      case Value::Kind::kNone: out += "null"; return;
      case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; return;
      case Value::Kind::kInt: out += std::to_string(v.as_int()); return;
      case Value::Kind::kFloat: out += float_json(v.as_float()); return;
      case Value::Kind::kString: dump_string(out, v.as_string()); return;
      case Value::Kind::kList:
      case Value::Kind::kTuple: {
        const List& items = v.as_list();
        if (items.empty()) {
          out += "[]";
          return;
        }
        out.push_back('[');
        for (std::size_t i = 0; i < items.size(); ++i) {
          if (i) out += indent ? "," : ", ";
          if (indent) newline(level + 1);
          dump(items[i], level + 1);
        }
        if (indent) newline(level);
        out.push_back(']');
        return;
      }
      case Value::Kind::kDict: {
        const Dict& d = v.as_dict();
        if (d.empty()) {
          out += "{}";
          return;
        }
        out.push_back('{');
        bool first = true;
        for (const auto& [k, val] : d.entries()) {
          if (!first) out += indent ? "," : ", ";
          first = false;
          if (indent) newline(level + 1);
          key(k);
          out += ": ";
          dump(val, level + 1);
        }
        if (indent) newline(level);
        out.push_back('}');
        return;
      }
      default:
        throw TemplateError("Object of type " + type_name(v) + " is not JSON serializable");
    }
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  Value read_document() {
    Value v = read(0);
    skip_ws();
    if (pos_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw TemplateError("invalid JSON at offset " + std::to_string(pos_) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(std::string_view word) {
    if (s_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  Value read(int depth) {
    if (depth > kMaxJsonDepth) fail("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) fail("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return read_object(depth);
    if (c == '[') return read_array(depth);
    if (c == '"') return Value::string(read_string());
    if (consume("true")) return Value::boolean(true);
    if (consume("false")) return Value::boolean(false);
    if (consume("null")) return Value::none();
    if (consume("NaN")) return Value::floating(std::numeric_limits<double>::quiet_NaN());
    if (consume("Infinity")) return Value::floating(std::numeric_limits<double>::infinity());
    if (consume("-Infinity")) return Value::floating(-std::numeric_limits<double>::infinity());
    return read_number();
  }

  Value read_object(int depth) {
    ++pos_;
    Dict d;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Value::dict(std::move(d));
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected key");
      std::string key = read_string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("expected ':'");
      ++pos_;
      d.set(Value::string(std::move(key)), read(depth + 1));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return Value::dict(std::move(d));
      }
      fail("expected ',' or '}'");
    }
  }

  Value read_array(int depth) {
    ++pos_;
    List items;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Value::list(std::move(items));
    }
    while (true) {
      items.push_back(read(depth + 1));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return Value::list(std::move(items));
      }
      fail("expected ',' or ']'");
    }
  }

  unsigned read_hex4() {
    if (pos_ + 4 > s_.size()) fail("short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }

  std::string read_string() {
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          unsigned cp = read_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(pos_, 2) == "\\u") {
            const std::size_t save = pos_;
            pos_ += 2;
            const unsigned lo = read_hex4();
            if (lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              pos_ = save;
            }
          }
          utf8_append(out, static_cast<char32_t>(cp));
          break;
        }
        default: fail("bad escape");
      }
    }
  }

  Value read_number() {
    const std::size_t start = pos_;
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    bool is_float = false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c >= '0' && c <= '9') {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        is_float = true;
        ++pos_;
      } else {
        break;
      }
    }
    const std::string num(s_.substr(start, pos_ - start));
    if (num.empty() || num == "-") fail("unexpected character");
    char* end = nullptr;
    if (!is_float) {
      errno = 0;
      const long long v = std::strtoll(num.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') return Value::integer(v);
    }
    const double d = std::strtod(num.c_str(), &end);
    if (!end || *end != '\0') fail("bad number");
    return Value::floating(d);
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string to_json(const Value& v, const Value& indent) {
  Dumper d;
  if (indent.is_string()) {
    d.indent = indent.as_string();
  } else if (indent.is_int() || indent.is_bool()) {
    d.indent = std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, indent.as_int())), ' ');
  } else if (!indent.is_none() && !indent.is_undefined()) {
    throw TemplateError("tojson: indent must be an int or a string");
  }
  d.dump(v, 0);
  return std::move(d.out);
}

Value parse_json(std::string_view text) { return JsonReader(text).read_document(); }

}  // namespace vkllm::tmpl
