// JSON Schema to GBNF (json_schema.hpp).
#include "engine/grammar/json_schema.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace vkllm::grammar {

namespace json = boost::json;

namespace {

// The pieces every JSON grammar uses. Whitespace is bounded (a model that emits only spaces
// must still finish), numbers have at most 16 digits a part.
constexpr const char* kCommon = R"(ws ::= ( " " | "\n" [ \t]{0,8} )?
json-char ::= [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
json-string ::= "\"" json-char* "\""
json-int ::= "-"? ( "0" | [1-9] [0-9]{0,15} )
json-number ::= json-int ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
json-bool ::= "true" | "false"
json-null ::= "null"
json-value ::= json-object | json-array | json-string | json-number | json-bool | json-null
json-object ::= "{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}"
json-array ::= "[" ws ( json-value ws ( "," ws json-value ws )* )? "]"
)";

// A literal of GBNF for `text` (a JSON text: the bytes a value serializes to).
std::string literal(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\x{:02X}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A regular expression (JSON Schema's `pattern`, a simple subset) as a GBNF expression of the
// string's characters. Characters a JSON string would have to escape (" \ and controls) are
// left out of what it matches, so every match is a plain string body.
class PatternConverter {
 public:
  explicit PatternConverter(std::string_view re) : re_(re) {}

  std::string convert() {
    // Anchors: a pattern matches anywhere unless anchored; only anchored ones are taken.
    if (re_.empty() || re_.front() != '^' || re_.back() != '$' || re_.size() < 2 ||
        (re_.size() >= 3 && re_[re_.size() - 2] == '\\')) {
      throw GrammarError(fmt::format("json_schema: pattern '{}' is not anchored with ^...$ (not supported)", re_));
    }
    pos_ = 1;
    end_ = re_.size() - 1;
    std::string out = alternation();
    if (pos_ != end_) fail("unexpected ')'");
    return "(" + out + ")";
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    throw GrammarError(fmt::format("json_schema: pattern '{}': {} (not supported) at {}", re_, what, pos_));
  }
  bool at_end() const { return pos_ >= end_; }

  std::string alternation() {
    std::string out = sequence();
    while (!at_end() && re_[pos_] == '|') {
      ++pos_;
      out += " | " + sequence();
    }
    return out;
  }
  std::string sequence() {
    std::string out;
    while (!at_end() && re_[pos_] != '|' && re_[pos_] != ')') {
      std::string atom = this->atom();
      if (!at_end()) {
        const char q = re_[pos_];
        if (q == '*' || q == '+' || q == '?') {
          ++pos_;
          atom = "(" + atom + ")" + q;
        } else if (q == '{') {
          const std::size_t close = re_.find('}', pos_);
          if (close == std::string_view::npos || close >= end_) fail("unterminated {}");
          const std::string_view body = re_.substr(pos_ + 1, close - pos_ - 1);
          if (body.empty() || body.find_first_not_of("0123456789,") != std::string_view::npos) fail("a bad {m,n}");
          atom = "(" + atom + "){" + std::string(body) + "}";
          pos_ = close + 1;
        }
        if (!at_end() && (re_[pos_] == '?' || re_[pos_] == '+')) fail("lazy or possessive quantifiers");
      }
      out += (out.empty() ? "" : " ") + atom;
    }
    return out.empty() ? "\"\"" : out;
  }
  // A class body's text for GBNF, with JSON's forbidden characters out of it.
  static std::string class_char(std::uint32_t c) {
    if (c == ']' || c == '[' || c == '\\' || c == '^' || c == '-' || c == '"') return std::string("\\") + static_cast<char>(c);
    if (c < 0x20 || c == 0x7F) return fmt::format("\\x{:02X}", c);
    return std::string(1, static_cast<char>(c));
  }
  std::string escape_class(char e) {
    switch (e) {
      case 'd': return "0-9";
      case 'w': return "a-zA-Z0-9_";
      case 's': return " \\t";  // no newlines: a JSON string would escape them
      default: return {};
    }
  }
  std::string atom() {
    const char c = re_[pos_++];
    switch (c) {
      case '(': {
        if (!at_end() && re_[pos_] == '?') {
          if (pos_ + 1 < end_ && re_[pos_ + 1] == ':') {
            pos_ += 2;
          } else {
            fail("lookaround or named groups");
          }
        }
        std::string inner = alternation();
        if (at_end() || re_[pos_] != ')') fail("unbalanced '('");
        ++pos_;
        return "(" + inner + ")";
      }
      case '.': return "[^\"\\\\\\x7F\\x00-\\x1F]";
      case '[': return char_class();
      case '\\': {
        if (at_end()) fail("a trailing backslash");
        const char e = re_[pos_++];
        if (e == 'd' || e == 'w' || e == 's') return "[" + escape_class(e) + "]";
        if (e == 'D' || e == 'W' || e == 'S') {
          return "[^" + escape_class(static_cast<char>(e + 32)) + "\"\\\\\\x7F\\x00-\\x1F]";
        }
        if (e == '\\') fail("a backslash in a string");
        if (std::string_view(".^$|?*+()[]{}/-").find(e) != std::string_view::npos) return literal(std::string(1, e));
        fail(fmt::format("the escape \\{}", e));
      }
      case '^':
      case '$': fail("anchors inside the pattern");
      case '*':
      case '+':
      case '?':
      case '{': fail("a quantifier with nothing before it");
      default:
        if (c == '"') fail("a quote in a string");
        return literal(std::string(1, c));
    }
  }
  std::string char_class() {
    std::string out = "[";
    bool negated = false;
    if (!at_end() && re_[pos_] == '^') {
      negated = true;
      ++pos_;
      out += "^";
    }
    bool first = true;
    while (!at_end() && (re_[pos_] != ']' || first)) {
      first = false;
      char c = re_[pos_++];
      if (c == '\\') {
        if (at_end()) fail("a trailing backslash");
        const char e = re_[pos_++];
        if (e == 'd' || e == 'w' || e == 's') {
          out += escape_class(e);
          continue;
        }
        if (e == 'n' || e == 't' || e == 'r') fail("control characters in a string");
        c = e;
      }
      if (c == '"' || c == '\\') {
        if (!negated) continue;  // never in a plain string body
      }
      out += class_char(static_cast<unsigned char>(c));
      if (!at_end() && re_[pos_] == '-' && pos_ + 1 < end_ && re_[pos_ + 1] != ']') {
        ++pos_;
        char h = re_[pos_++];
        if (h == '\\') {
          if (at_end()) fail("a trailing backslash");
          h = re_[pos_++];
        }
        out += "-" + class_char(static_cast<unsigned char>(h));
      }
    }
    if (at_end()) fail("unterminated class");
    ++pos_;
    if (negated) out += "\"\\\\\\x7F\\x00-\\x1F";
    return out + "]";
  }

  std::string_view re_;
  std::size_t pos_ = 0, end_ = 0;
};

class SchemaConverter {
 public:
  explicit SchemaConverter(const json::value& root) : root_(root) {}

  std::string convert() {
    const std::string top = visit(root_, "root-value", "");
    std::string out = "root ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out + kCommon;
  }

 private:
  [[noreturn]] static void fail(const std::string& path, const std::string& what) {
    throw GrammarError(fmt::format("json_schema{}: {}", path.empty() ? "" : " at " + path, what));
  }

  // A hint (property names, paths) as a GBNF rule name: letters, digits and dashes.
  static std::string rule_name(std::string_view hint) {
    std::string name;
    for (char c : hint) name += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
    return name.empty() ? "r" : name;
  }

  std::string add_rule(const std::string& hint, const std::string& body) {
    const std::string name = "s-" + rule_name(hint);
    std::string unique = name;
    for (int i = 2; rules_.count(unique) && rules_[unique] != body; ++i) unique = fmt::format("{}{}", name, i);
    rules_[unique] = body;
    return unique;
  }

  static std::uint64_t count(const json::object& o, const char* key, const std::string& path) {
    const json::value* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
    if (v->is_double() && v->get_double() >= 0 && std::floor(v->get_double()) == v->get_double()) {
      // A count too large for 64 bits (1e93: JSON has no limit) is the largest one: converting
      // it would be undefined behaviour.
      if (v->get_double() >= 0x1p64) return std::numeric_limits<std::uint64_t>::max();
      return static_cast<std::uint64_t>(v->get_double());
    }
    fail(path, fmt::format("'{}' must be a non-negative integer", key));
  }

  // GBNF for x repeated min..max times (max empty: unbounded), items joined by `sep`.
  static std::string repeat(const std::string& x, std::uint64_t min, std::optional<std::uint64_t> max,
                            const std::string& sep) {
    if (max && *max == 0) return "\"\"";
    const std::string more = "( " + sep + " " + x + " )";
    std::string rest;
    if (!max) {
      rest = more + (min <= 1 ? "*" : fmt::format("{{{},}}", min - 1));
    } else {
      const std::uint64_t lo = min == 0 ? 0 : min - 1;
      rest = *max - 1 == 0 ? "" : fmt::format("{}{{{},{}}}", more, lo, *max - 1);
    }
    const std::string body = x + (rest.empty() ? "" : " " + rest);
    return min == 0 ? "( " + body + " )?" : "( " + body + " )";
  }

  std::string visit(const json::value& schema, const std::string& hint, const std::string& path) {
    if (schema.is_bool()) {
      if (schema.get_bool()) return "json-value";
      fail(path, "the schema 'false' accepts nothing");
    }
    if (!schema.is_object()) fail(path, "a schema must be an object or a boolean");
    const json::object& o = schema.get_object();
    static const std::set<std::string, std::less<>> annotations = {
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
        "readOnly", "writeOnly", "$defs", "definitions", "strict", "name"};
    static const std::set<std::string, std::less<>> supported = {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
        "maxItems", "enum", "const", "anyOf", "oneOf", "$ref", "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties", "propertyNames"};
    for (const auto& kv : o) {
      if (!annotations.count(kv.key()) && !supported.count(kv.key())) {
        fail(path, fmt::format("the keyword '{}' is not supported", std::string_view(kv.key())));
      }
    }
    if (const json::value* ref = o.if_contains("$ref")) return visit_ref(*ref, path);
    if (const json::value* c = o.if_contains("const")) return literal(json::serialize(*c));
    if (const json::value* e = o.if_contains("enum")) {
      if (!e->is_array() || e->get_array().empty()) fail(path, "'enum' must be a non-empty array");
      std::string alts;
      for (const json::value& v : e->get_array()) alts += (alts.empty() ? "" : " | ") + literal(json::serialize(v));
      return "( " + alts + " )";
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (const json::value* any = o.if_contains(key)) {
        if (!any->is_array() || any->get_array().empty()) fail(path, fmt::format("'{}' must be a non-empty array", key));
        std::string alts;
        std::size_t i = 0;
        for (const json::value& v : any->get_array()) {
          alts += (alts.empty() ? "" : " | ") + visit(v, fmt::format("{}-{}", hint, i), fmt::format("{}/{}/{}", path, key, i));
          ++i;
        }
        return add_rule(hint, alts);
      }
    }
    const json::value* type = o.if_contains("type");
    if (type && type->is_array()) {
      std::string alts;
      for (const json::value& t : type->get_array()) {
        if (!t.is_string()) fail(path, "'type' entries must be strings");
        alts += (alts.empty() ? "" : " | ") + visit_type(std::string(t.get_string()), o, hint + "-" + std::string(t.get_string()), path);
      }
      if (alts.empty()) fail(path, "'type' is an empty list");
      return add_rule(hint, alts);
    }
    if (type && !type->is_string()) fail(path, "'type' must be a string or a list of strings");
    std::string t = type ? std::string(type->get_string()) : std::string();
    if (t.empty()) {  // inferred from the keywords, as validators apply them
      if (o.contains("properties") || o.contains("additionalProperties") || o.contains("required")) t = "object";
      else if (o.contains("items") || o.contains("prefixItems")) t = "array";
      else if (o.contains("pattern") || o.contains("minLength") || o.contains("maxLength") || o.contains("format")) t = "string";
      else return "json-value";
    }
    return visit_type(t, o, hint, path);
  }

  std::string visit_ref(const json::value& ref, const std::string& path) {
    if (!ref.is_string()) fail(path, "'$ref' must be a string");
    const std::string r(ref.get_string());
    if (auto it = refs_.find(r); it != refs_.end()) return it->second;
    std::string_view name;
    const json::value* defs = nullptr;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      if (r.rfind(prefix, 0) == 0) {
        name = std::string_view(r).substr(std::string_view(prefix).size());
        if (root_.is_object()) defs = root_.get_object().if_contains(std::string_view(prefix).substr(2, std::string_view(prefix).size() - 3));
      }
    }
    if (name.empty() || name.find('/') != std::string_view::npos) {
      fail(path, fmt::format("'$ref' '{}' is not supported (only #/$defs/NAME and #/definitions/NAME)", r));
    }
    if (!defs || !defs->is_object() || !defs->get_object().contains(name)) fail(path, fmt::format("'$ref' '{}' names no definition", r));
    const std::string hint = rule_name("ref-" + std::string(name));
    const std::string rule = fmt::format("s-{}-{}", hint, refs_.size());
    refs_[r] = rule;
    rules_[rule] = "\"\"";  // a placeholder while it is built (recursive schemas refer to it)
    rules_[rule] = visit(defs->get_object().at(name), hint, r.substr(1));
    return rule;
  }

  std::string visit_type(const std::string& t, const json::object& o, const std::string& hint, const std::string& path) {
    if (t == "null") return "json-null";
    if (t == "boolean") return "json-bool";
    if (t == "string") return visit_string(o, hint, path);
    if (t == "integer") return visit_integer(o, hint, path);
    if (t == "number") {
      for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
        if (o.contains(k)) fail(path, fmt::format("'{}' on a number is not supported (on an integer it is)", k));
      }
      return "json-number";
    }
    if (t == "array") return visit_array(o, hint, path);
    if (t == "object") return visit_object(o, hint, path);
    fail(path, fmt::format("'type' '{}' is not a JSON Schema type", t));
  }

  std::string visit_string(const json::object& o, const std::string& hint, const std::string& path) {
    if (const json::value* f = o.if_contains("format")) {
      if (!f->is_string()) fail(path, "'format' must be a string");
      const std::string_view fmt_name = f->get_string();
      const std::string date = R"([0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ))";
      const std::string time = R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))";
      std::string body;
      if (fmt_name == "date") body = date;
      else if (fmt_name == "time") body = time;
      else if (fmt_name == "date-time") body = date + " \"T\" " + time;
      else if (fmt_name == "uuid") body = R"([0-9a-f]{8} "-" [0-9a-f]{4} "-" [1-8] [0-9a-f]{3} "-" [89ab] [0-9a-f]{3} "-" [0-9a-f]{12})";
      else fail(path, fmt::format("'format' '{}' is not supported (date, time, date-time, uuid are)", fmt_name));
      if (o.contains("pattern") || o.contains("minLength") || o.contains("maxLength")) {
        fail(path, "'format' with 'pattern' or lengths is not supported");
      }
      return add_rule(hint, "\"\\\"\" " + body + " \"\\\"\"");
    }
    if (const json::value* p = o.if_contains("pattern")) {
      if (!p->is_string()) fail(path, "'pattern' must be a string");
      if (o.contains("minLength") || o.contains("maxLength")) fail(path, "'pattern' with 'minLength' or 'maxLength' is not supported");
      return add_rule(hint, "\"\\\"\" " + PatternConverter(p->get_string()).convert() + " \"\\\"\"");
    }
    const std::uint64_t min = count(o, "minLength", path);
    std::optional<std::uint64_t> max;
    if (o.contains("maxLength")) max = count(o, "maxLength", path);
    if (max && *max < min) fail(path, "'maxLength' is below 'minLength'");
    if (min > 10000 || (max && *max > 10000)) fail(path, "string lengths past 10000 are not supported");
    if (min == 0 && !max) return "json-string";
    const std::string reps = max ? fmt::format("{{{},{}}}", min, *max) : fmt::format("{{{},}}", min);
    return add_rule(hint, "\"\\\"\" json-char" + reps + " \"\\\"\"");
  }

  std::string visit_integer(const json::object& o, const std::string& hint, const std::string& path) {
    auto number = [&](const char* key) -> std::optional<double> {
      const json::value* v = o.if_contains(key);
      if (!v) return std::nullopt;
      if (!v->is_number()) fail(path, fmt::format("'{}' must be a number", key));
      return v->to_number<double>();
    };
    std::optional<double> lo = number("minimum"), hi = number("maximum");
    if (auto x = number("exclusiveMinimum")) lo = std::max(lo.value_or(-1e300), std::floor(*x) + 1);
    if (auto x = number("exclusiveMaximum")) hi = std::min(hi.value_or(1e300), std::ceil(*x) - 1);
    if (!lo && !hi) return "json-int";
    if (lo) lo = std::ceil(*lo);
    if (hi) hi = std::floor(*hi);
    if (lo && hi) {
      if (*hi < *lo) fail(path, "the integer range is empty");
      if (*hi - *lo <= 1000) {  // small ranges: every value
        std::string alts;
        for (auto v = static_cast<std::int64_t>(*lo); v <= static_cast<std::int64_t>(*hi); ++v) {
          alts += (alts.empty() ? "" : " | ") + literal(std::to_string(v));
        }
        return add_rule(hint, alts);
      }
    }
    if (lo && !hi && (*lo == 0 || *lo == 1)) return add_rule(hint, *lo == 0 ? R"("0" | [1-9] [0-9]{0,15})" : R"([1-9] [0-9]{0,15})");
    fail(path, "integer bounds are supported as minimum 0 or 1 alone, or ranges of at most 1000 values");
  }

  std::string visit_array(const json::object& o, const std::string& hint, const std::string& path) {
    const std::uint64_t min = count(o, "minItems", path);
    std::optional<std::uint64_t> max;
    if (o.contains("maxItems")) max = count(o, "maxItems", path);
    if (max && *max < min) fail(path, "'maxItems' is below 'minItems'");
    if (min > 1000 || (max && *max > 1000)) fail(path, "array bounds past 1000 are not supported");
    if (const json::value* prefix = o.if_contains("prefixItems")) {
      if (!prefix->is_array()) fail(path, "'prefixItems' must be an array");
      if (o.contains("minItems") || o.contains("maxItems")) fail(path, "'prefixItems' with 'minItems' or 'maxItems' is not supported");
      const json::value* items = o.if_contains("items");
      if (items && !(items->is_bool() && !items->get_bool())) fail(path, "'prefixItems' with 'items' other than false is not supported");
      std::string body;
      std::size_t i = 0;
      for (const json::value& v : prefix->get_array()) {
        if (i > 0) body += " \",\" ws ";
        body += visit(v, fmt::format("{}-{}", hint, i), fmt::format("{}/prefixItems/{}", path, i)) + " ws";
        ++i;
      }
      return add_rule(hint, "\"[\" ws " + body + " \"]\"");
    }
    std::string item = "json-value";
    if (const json::value* items = o.if_contains("items")) item = visit(*items, hint + "-item", path + "/items");
    return add_rule(hint, "\"[\" ws " + repeat(item + " ws", min, max, "\",\" ws") + " \"]\"");
  }

  std::string visit_object(const json::object& o, const std::string& hint, const std::string& path) {
    const json::value* props = o.if_contains("properties");
    if (props && !props->is_object()) fail(path, "'properties' must be an object");
    std::set<std::string, std::less<>> required;
    if (const json::value* req = o.if_contains("required")) {
      if (!req->is_array()) fail(path, "'required' must be an array");
      for (const json::value& r : req->get_array()) {
        if (!r.is_string()) fail(path, "'required' entries must be strings");
        required.emplace(r.get_string());
      }
    }
    const json::value* extra = o.if_contains("additionalProperties");
    if (!props || props->get_object().empty()) {
      if (!required.empty()) fail(path, "'required' names properties that 'properties' does not define");
      if (extra && extra->is_bool() && !extra->get_bool()) return add_rule(hint, R"("{" ws "}")");
      const bool counted = o.contains("minProperties") || o.contains("maxProperties") || o.contains("propertyNames");
      if ((!extra || extra->is_bool()) && !counted) return "json-object";
      // A map: any keys, values of one schema, minProperties..maxProperties of them.
      const std::string value = extra && !extra->is_bool() ? visit(*extra, hint + "-value", path + "/additionalProperties") : "json-value";
      std::string key = "json-string";
      if (const json::value* names = o.if_contains("propertyNames")) {  // a schema of strings
        if (!names->is_object()) fail(path, "'propertyNames' must be an object");
        json::object as_string = names->get_object();
        if (const json::value* t = as_string.if_contains("type"); t && !(t->is_string() && t->get_string() == "string")) {
          fail(path, "'propertyNames' must be a schema of strings");
        }
        if (!as_string.contains("enum") && !as_string.contains("const")) as_string["type"] = "string";
        key = visit(as_string, hint + "-key", path + "/propertyNames");
      }
      const std::string member = key + " ws \":\" ws " + value + " ws";
      const std::uint64_t min = count(o, "minProperties", path);
      std::optional<std::uint64_t> max;
      if (o.contains("maxProperties")) max = count(o, "maxProperties", path);
      if (max && *max < min) fail(path, "'maxProperties' is below 'minProperties'");
      if (min > 1000 || (max && *max > 1000)) fail(path, "property counts past 1000 are not supported");
      return add_rule(hint, "\"{\" ws " + repeat(member, min, max, "\",\" ws") + " \"}\"");
    }
    if (o.contains("minProperties") || o.contains("maxProperties") || o.contains("propertyNames")) {
      fail(path, "'minProperties', 'maxProperties' and 'propertyNames' are supported on maps (additionalProperties without properties) only");
    }
    // Declared properties in their order: required ones always, the others optional. Extra
    // properties are never generated (a subset of what the schema allows).
    std::vector<std::pair<std::string, bool>> members;  // (rule of "key": value, required)
    for (const auto& kv : props->get_object()) {
      const std::string key(kv.key());
      const std::string value = visit(kv.value(), hint + "-" + key, path + "/properties/" + key);
      members.emplace_back(literal(json::serialize(json::value(key))) + " ws \":\" ws " + value + " ws", required.count(key) > 0);
    }
    for (const std::string& r : required) {
      if (!props->get_object().contains(r)) fail(path, fmt::format("'required' names '{}' that 'properties' does not define", r));
    }
    // body(i, first): members i.. where `first` says no member came before (no comma yet).
    std::map<std::pair<std::size_t, bool>, std::string> memo;
    std::function<std::string(std::size_t, bool)> body = [&](std::size_t i, bool first) -> std::string {
      if (i == members.size()) return "";
      auto key = std::make_pair(i, first);
      if (auto it = memo.find(key); it != memo.end()) return it->second;
      const std::string item = (first ? "" : "\",\" ws ") + members[i].first;
      const std::string with = body(i + 1, false);
      std::string out;
      if (members[i].second) {
        out = item + (with.empty() ? "" : " " + with);
      } else {
        const std::string without = body(i + 1, first);
        const std::string a = item + (with.empty() ? "" : " " + with);
        out = add_rule(fmt::format("{}-m{}{}", hint, i, first ? "f" : ""), without.empty() ? "( " + a + " )?" : a + " | " + without);
      }
      memo[key] = out;
      return out;
    };
    return add_rule(hint, "\"{\" ws " + body(0, true) + " \"}\"");
  }

  const json::value& root_;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> refs_;
};

}  // namespace

std::string json_object_gbnf() {
  return std::string("root ::= json-object\n") + kCommon;
}

std::string json_schema_gbnf(const json::value& schema) {
  return SchemaConverter(schema).convert();
}

}  // namespace vkllm::grammar
