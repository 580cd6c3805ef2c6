// Owns the library a template can reach, second half: jinja2's builtin filters and tests with
// transformers' tojson (ensure_ascii=False). Must not know scopes, statements or parsing.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <optional>
#include <cstdlib>

#include "engine/template/builtins.hpp"
#include "engine/template/error.hpp"
#include "engine/template/interpreter.hpp"
#include "engine/template/text.hpp"

namespace vkllm::tmpl {

namespace {

[[noreturn]] void undefined_error(const Value& v) {
  throw TemplateError("'" + v.undefined_name() + "' is undefined");
}

bool is_intlike_value(const Value& v) { return v.is_int() || v.is_bool(); }

// jinja2's make_attrgetter: dotted path, integer parts index, each step is getitem.
Value attr_path(const Value& obj, const Value& attribute) {
  if (is_intlike_value(attribute)) return get_item(obj, attribute);
  const std::string path = to_str(attribute);
  Value cur = obj;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = get_item(cur, digits ? Value::integer(std::atoll(part.c_str())) : Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(text::lower(v.as_string()));
  return v;
}

List items_of(const Value& v) {
  if (v.is_undefined()) return {};
  if (!v.is_dict()) throw TemplateError("Can only get item pairs from a mapping.");
  List out;
  for (const auto& [k, val] : v.as_dict().entries()) out.push_back(Value::tuple({k, val}));
  return out;
}

std::string do_indent(const std::string& s_in, const Value& width, bool first, bool blank) {
  const std::string indention =
      width.is_string() ? width.as_string() : std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, checked_int(width, "indent"))), ' ');
  const std::string s = s_in + "\n";  // jinja2's quirk for splitlines
  std::vector<std::string> lines = text::splitlines(s);
  std::string rv;
  if (blank) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? std::string() : lines[0];
    if (lines.size() > 1) {
      rv += "\n";
      for (std::size_t i = 1; i < lines.size(); ++i) {
        if (i > 1) rv += "\n";
        if (!lines[i].empty()) rv += indention;
        rv += lines[i];
      }
    }
  }
  if (first) rv = indention + rv;
  return rv;
}

// jinja2's do_title: capitalize every chunk between runs of [-\s({\[<].
std::string do_title(const std::string& s) {
  std::u32string u = text::decode(s);
  auto is_sep = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || text::is_space(c); };
  bool start = true;
  for (char32_t& c : u) {
    if (is_sep(c)) {
      start = true;
      continue;
    }
    c = start ? text::to_upper(c) : text::to_lower(c);
    start = false;
  }
  return text::encode(u);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// Python int(str): optional sign, digits with single underscores, surrounding whitespace.
std::optional<std::int64_t> parse_py_int(const std::string& s_in, int base) {
  const std::string s = text::strip(s_in, nullptr, true, true);
  std::string digits;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && std::isalnum(static_cast<unsigned char>(s[i - 1])) &&
        std::isalnum(static_cast<unsigned char>(s[i + 1]))) {
      continue;
    }
    digits.push_back(s[i]);
  }
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || !end || *end != '\0' || std::isspace(static_cast<unsigned char>(digits[0]))) return std::nullopt;
  return v;
}

std::optional<double> parse_py_float(const std::string& s_in) {
  const std::string s = text::strip(s_in, nullptr, true, true);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (!end || *end != '\0') return std::nullopt;
  return d;
}

Value to_int(const Value& v, const Value& dflt, int base) {
  if (v.is_undefined()) undefined_error(v);
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    const double d = v.as_float();
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return dflt;
    return Value::integer(static_cast<std::int64_t>(d));
  }
  if (v.is_string()) {
    if (auto i = parse_py_int(v.as_string(), base)) return Value::integer(*i);
    if (auto d = parse_py_float(v.as_string()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18) {
      return Value::integer(static_cast<std::int64_t>(*d));
    }
  }
  return dflt;
}

Value round_value(const Value& v, std::int64_t precision, const std::string& method) {
  if (!v.is_number()) throw TemplateError("round() expects a number, got " + type_name(v));
  if (method != "common" && method != "ceil" && method != "floor") {
    throw TemplateError("method must be common, ceil or floor");
  }
  if (method == "common" && !v.is_float() && precision >= 0) return Value::integer(v.as_int());
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_float() * scale;
  double r;
  if (method == "ceil") r = std::ceil(x);
  else if (method == "floor") r = std::floor(x);
  else r = std::nearbyint(x);  // round half to even, as Python's round()
  return Value::floating(r / scale);
}

CallArgs rest_args(const CallArgs& args, std::size_t from) {
  CallArgs out;
  for (std::size_t i = from; i < args.positional.size(); ++i) out.positional.push_back(args.positional[i]);
  out.named = args.named;
  return out;
}

Value select_like(Interpreter& interp, const std::string& name, const Value& input, CallArgs& args) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep = name == "select" || name == "selectattr";
  std::size_t next = 0;
  Value attribute;
  if (by_attr) {
    if (args.positional.empty()) throw TemplateError(name + "() requires an attribute name");
    attribute = args.positional[next++];
  }
  std::string test;
  if (args.positional.size() > next) test = to_str(args.positional[next++]);
  CallArgs test_args = rest_args(args, next);
  List out;
  for (const Value& item : iterate(input)) {
    interp.step();
    const Value subject = by_attr ? attr_path(item, attribute) : item;
    CallArgs a = test_args;
    const bool pass = test.empty() ? truthy(subject) : apply_test(interp, test, subject, a);
    if (pass == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value map_filter(Interpreter& interp, const Value& input, CallArgs& args) {
  List out;
  const List items = iterate(input);
  interp.step(items.size());
  if (args.positional.empty()) {
    ArgReader r("map", args, {"attribute", "default"});
    if (!r.get(0)) throw TemplateError("map() requires a filter name or attribute=");
    for (const Value& item : items) {
      Value v = attr_path(item, *r.get(0));
      if (v.is_undefined() && r.get(1)) v = *r.get(1);
      out.push_back(std::move(v));
    }
    return Value::list(std::move(out));
  }
  const std::string filter = to_str(args.positional[0]);
  CallArgs filter_args = rest_args(args, 1);
  for (const Value& item : items) {
    CallArgs a = filter_args;
    out.push_back(apply_filter(interp, filter, item, a));
  }
  return Value::list(std::move(out));
}

// sort / unique / min / max key: attribute path(s) then case folding.
Value key_of(const Value& item, const Value* attribute, bool case_sensitive) {
  if (!attribute || attribute->is_none()) return sort_key(item, case_sensitive);
  if (attribute->is_string() && attribute->as_string().find(',') != std::string::npos) {
    // "a,b": a tuple key of several attribute paths.
    List parts;
    const std::string sep = ",";
    for (const auto& piece : text::split(attribute->as_string(), &sep, -1)) {
      parts.push_back(sort_key(attr_path(item, Value::string(piece)), case_sensitive));
    }
    return Value::tuple(std::move(parts));
  }
  return sort_key(attr_path(item, *attribute), case_sensitive);
}

}  // namespace

Value apply_filter(Interpreter& interp, const std::string& name, const Value& input, CallArgs& args) {
  interp.step();
  const std::string& n = name;
  if (n == "tojson") {
    ArgReader r(n, args, {"ensure_ascii", "indent", "separators", "sort_keys"});
    if ((r.get(0) && truthy(*r.get(0))) || (r.get(2) && !r.get(2)->is_none()) || (r.get(3) && truthy(*r.get(3)))) {
      throw TemplateError("tojson: only the indent argument is supported");
    }
    std::string out = to_json(input, r.get_or(1, Value::none()));
    interp.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (n == "length" || n == "count") {
    ArgReader r(n, args, {});
    return Value::integer(length(input));
  }
  if (n == "string") return Value::string(to_str(input));
  if (n == "safe") return input.is_string() ? input : Value::string(to_str(input));
  if (n == "upper" || n == "lower" || n == "capitalize" || n == "title" || n == "e" || n == "escape" || n == "wordcount") {
    ArgReader r(n, args, {});
    const std::string s = to_str(input);
    if (n == "upper") return Value::string(text::upper(s));
    if (n == "lower") return Value::string(text::lower(s));
    if (n == "capitalize") return Value::string(text::capitalize(s));
    if (n == "title") return Value::string(do_title(s));
    if (n == "wordcount") {
      std::int64_t words = 0;
      bool in_word = false;
      for (char32_t c : text::decode(s)) {
        const bool w = text::is_word(c);
        if (w && !in_word) ++words;
        in_word = w;
      }
      return Value::integer(words);
    }
    return Value::string(html_escape(s));
  }
  if (n == "trim") {
    ArgReader r(n, args, {"chars"});
    const Value* chars = r.get(0);
    const std::string c = chars && !chars->is_none() ? to_str(*chars) : std::string();
    return Value::string(text::strip(to_str(input), chars && !chars->is_none() ? &c : nullptr, true, true));
  }
  if (n == "replace") {
    ArgReader r(n, args, {"old", "new", "count"});
    if (!r.get(0) || !r.get(1)) throw TemplateError("replace() takes at least 2 arguments");
    const Value count = r.get_or(2, Value::none());
    std::string out = text::replace(to_str(input), to_str(*r.get(0)), to_str(*r.get(1)),
                                    count.is_none() ? -1 : checked_int(count, "replace"));
    interp.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (n == "items") {
    ArgReader r(n, args, {});
    return Value::list(items_of(input));
  }
  if (n == "join") {
    ArgReader r(n, args, {"d", "attribute"});
    const std::string sep = r.get(0) ? to_str(*r.get(0)) : std::string();
    std::string out;
    bool first = true;
    for (const Value& item : iterate(input)) {
      interp.step();
      if (!first) out += sep;
      first = false;
      out += to_str(r.get(1) && !r.get(1)->is_none() ? attr_path(item, *r.get(1)) : item);
      interp.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  if (n == "default" || n == "d") {
    ArgReader r(n, args, {"default_value", "boolean"});
    const bool boolean = r.get(1) && truthy(*r.get(1));
    if (input.is_undefined() || (boolean && !truthy(input))) return r.get_or(0, Value::string(""));
    return input;
  }
  if (n == "first" || n == "last") {
    ArgReader r(n, args, {});
    const List items = iterate(input);
    if (items.empty()) return Value::undefined("No " + n + " item, sequence was empty.");
    return n == "first" ? items.front() : items.back();
  }
  if (n == "list") return Value::list(iterate(input));
  if (n == "reverse") {
    if (input.is_string()) {
      std::u32string u = text::decode(input.as_string());
      std::reverse(u.begin(), u.end());
      return Value::string(text::encode(u));
    }
    List items = iterate(input);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (n == "int") {
    ArgReader r(n, args, {"default", "base"});
    const Value base = r.get_or(1, Value::integer(10));
    return to_int(input, r.get_or(0, Value::integer(0)), static_cast<int>(checked_int(base, "int")));
  }
  if (n == "float") {
    ArgReader r(n, args, {"default"});
    if (input.is_undefined()) undefined_error(input);
    if (input.is_number()) return Value::floating(input.as_float());
    if (input.is_string()) {
      if (auto d = parse_py_float(input.as_string())) return Value::floating(*d);
    }
    return r.get_or(0, Value::floating(0.0));
  }
  if (n == "abs") {
    if (input.is_float()) return Value::floating(std::fabs(input.as_float()));
    if (input.is_int() || input.is_bool()) return Value::integer(std::llabs(input.as_int()));
    throw TemplateError("bad operand type for abs(): '" + type_name(input) + "'");
  }
  if (n == "round") {
    ArgReader r(n, args, {"precision", "method"});
    return round_value(input, checked_int(r.get_or(0, Value::integer(0)), "round"),
                       to_str(r.get_or(1, Value::string("common"))));
  }
  if (n == "map") return map_filter(interp, input, args);
  if (n == "select" || n == "reject" || n == "selectattr" || n == "rejectattr") return select_like(interp, n, input, args);
  if (n == "attr") {
    ArgReader r(n, args, {"name"});
    if (!r.get(0)) throw TemplateError("attr() requires a name");
    return get_attr(input, to_str(*r.get(0)));
  }
  if (n == "unique") {
    ArgReader r(n, args, {"case_sensitive", "attribute"});
    const bool cs = r.get(0) && truthy(*r.get(0));
    List out, seen;
    for (const Value& item : iterate(input)) {
      interp.step(seen.size() + 1);
      Value key = key_of(item, r.get(1), cs);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
        seen.push_back(std::move(key));
        out.push_back(item);
      }
    }
    return Value::list(std::move(out));
  }
  if (n == "sort") {
    ArgReader r(n, args, {"reverse", "case_sensitive", "attribute"});
    const bool rev = r.get(0) && truthy(*r.get(0));
    const bool cs = r.get(1) && truthy(*r.get(1));
    List items = iterate(input);
    interp.step(items.size() * 8);
    std::vector<std::pair<Value, Value>> keyed;
    for (Value& item : items) keyed.emplace_back(key_of(item, r.get(2), cs), std::move(item));
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
      return rev ? compare(b.first, a.first) < 0 : compare(a.first, b.first) < 0;
    });
    List out;
    for (auto& [k, v] : keyed) out.push_back(std::move(v));
    return Value::list(std::move(out));
  }
  if (n == "dictsort") {
    ArgReader r(n, args, {"case_sensitive", "by", "reverse"});
    const bool cs = r.get(0) && truthy(*r.get(0));
    const std::string by = to_str(r.get_or(1, Value::string("key")));
    if (by != "key" && by != "value") throw TemplateError("You can only sort by either \"key\" or \"value\"");
    const bool rev = r.get(2) && truthy(*r.get(2));
    List items = items_of(input);
    interp.step(items.size() * 8);
    const std::size_t pos = by == "key" ? 0 : 1;
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
      const Value ka = sort_key(a.as_list()[pos], cs), kb = sort_key(b.as_list()[pos], cs);
      return rev ? compare(kb, ka) < 0 : compare(ka, kb) < 0;
    });
    return Value::list(std::move(items));
  }
  if (n == "indent") {
    ArgReader r(n, args, {"width", "first", "blank"});
    std::string out = do_indent(to_str(input), r.get_or(0, Value::integer(4)), r.get(1) && truthy(*r.get(1)),
                                r.get(2) && truthy(*r.get(2)));
    interp.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (n == "batch") {
    ArgReader r(n, args, {"linecount", "fill_with"});
    const std::int64_t count = checked_int(r.get_or(0, Value::none()), "batch");
    if (count <= 0) throw TemplateError("batch(): linecount must be positive");
    List out, cur;
    for (const Value& item : iterate(input)) {
      if (static_cast<std::int64_t>(cur.size()) == count) {
        out.push_back(Value::list(std::move(cur)));
        cur.clear();
      }
      cur.push_back(item);
    }
    if (!cur.empty()) {
      if (r.get(1) && !r.get(1)->is_none()) {
        while (static_cast<std::int64_t>(cur.size()) < count) cur.push_back(*r.get(1));
      }
      out.push_back(Value::list(std::move(cur)));
    }
    return Value::list(std::move(out));
  }
  if (n == "sum") {
    ArgReader r(n, args, {"attribute", "start"});
    Value total = r.get_or(1, Value::integer(0));
    for (const Value& item : iterate(input)) {
      total = binary_op(interp, "+", total, r.get(0) && !r.get(0)->is_none() ? attr_path(item, *r.get(0)) : item);
    }
    return total;
  }
  if (n == "min" || n == "max") {
    ArgReader r(n, args, {"case_sensitive", "attribute"});
    const bool cs = r.get(0) && truthy(*r.get(0));
    const List items = iterate(input);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    std::size_t best = 0;
    Value best_key = key_of(items[0], r.get(1), cs);
    for (std::size_t i = 1; i < items.size(); ++i) {
      Value k = key_of(items[i], r.get(1), cs);
      const int c = compare(k, best_key);
      if (n == "min" ? c < 0 : c > 0) {
        best = i;
        best_key = std::move(k);
      }
    }
    return items[best];
  }
  throw TemplateError("no filter named '" + name + "'");
}

bool apply_test(Interpreter& interp, const std::string& name, const Value& v, CallArgs& args) {
  interp.step();
  const std::string& n = name;
  auto arg0 = [&]() -> const Value& {
    if (args.positional.empty()) throw TemplateError("test '" + n + "' requires an argument");
    return args.positional[0];
  };
  if (n == "defined") return !v.is_undefined();
  if (n == "undefined") return v.is_undefined();
  if (n == "none") return v.is_none();
  if (n == "boolean") return v.is_bool();
  if (n == "true") return v.is_bool() && v.as_bool();
  if (n == "false") return v.is_bool() && !v.as_bool();
  if (n == "integer") return v.is_int();
  if (n == "float") return v.is_float();
  if (n == "number") return v.is_number();
  if (n == "string") return v.is_string();
  if (n == "mapping") return v.is_dict();
  // Python's iter() succeeds for str, list, tuple, dict and jinja's Undefined.
  if (n == "iterable") return v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined();
  // len() and __getitem__: the same set.
  if (n == "sequence") return v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined();
  if (n == "callable") return v.is_callable();
  if (n == "escaped") return false;
  if (n == "sameas") {
    const Value& o = arg0();
    if (v.identity() || o.identity()) return v.identity() == o.identity();
    if (v.kind() != o.kind()) return false;
    return v.is_none() || v.is_undefined() || equals(v, o);
  }
  if (n == "in") return contains(arg0(), v);
  if (n == "eq" || n == "equalto" || n == "==") return equals(v, arg0());
  if (n == "ne" || n == "!=") return !equals(v, arg0());
  if (n == "lt" || n == "lessthan" || n == "<") return compare(v, arg0()) < 0;
  if (n == "le" || n == "<=") return compare(v, arg0()) <= 0;
  if (n == "gt" || n == "greaterthan" || n == ">") return compare(v, arg0()) > 0;
  if (n == "ge" || n == ">=") return compare(v, arg0()) >= 0;
  if (n == "odd" || n == "even") {
    const std::int64_t i = checked_int(v, n);
    return (((i % 2) + 2) % 2 == 1) == (n == "odd");
  }
  if (n == "divisibleby") {
    const std::int64_t d = checked_int(arg0(), n);
    if (d == 0) throw TemplateError("integer division or modulo by zero");
    return checked_int(v, n) % d == 0;
  }
  if (n == "lower" || n == "upper") {
    CallArgs none;
    Value m = get_attr(Value::string(to_str(v)), n == "lower" ? "islower" : "isupper");
    return truthy(interp.call(m, none));
  }
  throw TemplateError("no test named '" + name + "'");
}

}  // namespace vkllm::tmpl
