// Owns the library a template can reach, first half: operators, attribute and item access with
// the sandbox's method whitelist, slicing and globals. Must not know scopes, statements or parsing.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>

#include "engine/template/builtins.hpp"
#include "engine/template/error.hpp"
#include "engine/template/interpreter.hpp"
#include "engine/template/text.hpp"

namespace vkllm::tmpl {

namespace {

// jinja2.sandbox.MAX_RANGE: the sandbox refuses larger ranges.
constexpr std::int64_t kMaxRange = 100000;

[[noreturn]] void undefined_error(const Value& v) {
  const std::string& name = v.undefined_name();
  throw TemplateError(name.empty() ? std::string("value is undefined") : "'" + name + "' is undefined");
}

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  throw TemplateError("unsupported operand type(s) for " + std::string(op) + ": '" + type_name(a) + "' and '" +
                      type_name(b) + "'");
}

bool is_intlike(const Value& v) { return v.is_int() || v.is_bool(); }

const std::string* opt_string(const ArgReader& r, std::size_t i, std::string_view fn) {
  const Value* v = r.get(i);
  if (!v || v->is_none()) return nullptr;
  if (!v->is_string()) throw TemplateError(std::string(fn) + "() argument must be str or None, not " + type_name(*v));
  return &v->as_string();
}

std::int64_t opt_int(const ArgReader& r, std::size_t i, std::int64_t fallback, std::string_view fn) {
  const Value* v = r.get(i);
  if (!v || v->is_none()) return fallback;
  if (!is_intlike(*v)) throw TemplateError(std::string(fn) + "(): expected an integer, got " + type_name(*v));
  return v->as_int();
}

// Code-point index <-> byte offset for str methods taking positions.
std::size_t byte_offset(std::string_view s, std::int64_t cp_index) {
  const auto n = static_cast<std::int64_t>(text::length(s));
  if (cp_index < 0) cp_index = std::max<std::int64_t>(0, n + cp_index);
  if (cp_index >= n) return s.size();
  std::size_t b = 0;
  for (std::int64_t k = 0; k < cp_index; ++k) {
    ++b;
    while (b < s.size() && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) ++b;
  }
  return b;
}

Value str_format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  std::size_t auto_index = 0;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
    } else if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out.push_back('}');
      ++i;
    } else if (c == '{') {
      const std::size_t close = fmt.find('}', i);
      if (close == std::string::npos) throw TemplateError("Single '{' encountered in format string");
      const std::string field = fmt.substr(i + 1, close - i - 1);
      if (field.find_first_of(":!.[") != std::string::npos) {
        throw TemplateError("str.format: format specs and conversions are not supported");
      }
      const Value* arg = nullptr;
      if (field.empty() || std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
        const std::size_t idx = field.empty() ? auto_index++ : std::stoul(field);
        if (idx >= args.positional.size()) throw TemplateError("Replacement index " + std::to_string(idx) + " out of range");
        arg = &args.positional[idx];
      } else {
        for (const auto& [k, v] : args.named) {
          if (k == field) arg = &v;
        }
        if (!arg) throw TemplateError("str.format: missing key '" + field + "'");
      }
      out += to_str(*arg);
      i = close;
    } else if (c == '}') {
      throw TemplateError("Single '}' encountered in format string");
    } else {
      out.push_back(c);
    }
  }
  return Value::string(std::move(out));
}

bool all_cp(std::string_view s, bool (*pred)(char32_t)) {
  if (s.empty()) return false;
  for (char32_t c : text::decode(s)) {
    if (!pred(c)) return false;
  }
  return true;
}

Value list_of_strings(std::vector<std::string> parts) {
  List out;
  out.reserve(parts.size());
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return Value::list(std::move(out));
}

Value call_str_method(Interpreter& interp, const std::string& s, const std::string& m, const CallArgs& args) {
  if (m == "format") return str_format(s, args);
  if (m == "startswith" || m == "endswith") {
    ArgReader r(m, args, {"prefix", "start", "end"});
    if (!r.get(0)) throw TemplateError(m + "() takes at least 1 argument");
    std::string_view view = s;
    const std::size_t b = byte_offset(s, opt_int(r, 1, 0, m));
    const std::size_t e = r.get(2) && !r.get(2)->is_none() ? byte_offset(s, opt_int(r, 2, 0, m)) : s.size();
    view = b <= e ? view.substr(b, e - b) : std::string_view();
    List candidates = r.get(0)->is_tuple() ? r.get(0)->as_list() : List{*r.get(0)};
    for (const Value& c : candidates) {
      if (!c.is_string()) throw TemplateError(m + " first arg must be str or a tuple of str, not " + type_name(c));
      const std::string& p = c.as_string();
      if (m == "startswith" ? view.substr(0, p.size()) == p
                            : (view.size() >= p.size() && view.substr(view.size() - p.size()) == p)) {
        return Value::boolean(true);
      }
    }
    return Value::boolean(false);
  }
  if (m == "split" || m == "rsplit") {
    ArgReader r(m, args, {"sep", "maxsplit"});
    const std::string* sep = opt_string(r, 0, m);
    if (sep && sep->empty()) throw TemplateError("empty separator");
    const std::int64_t maxsplit = opt_int(r, 1, -1, m);
    interp.step(s.size() / 64);
    return list_of_strings(m == "split" ? text::split(s, sep, maxsplit) : text::rsplit(s, sep, maxsplit));
  }
  if (m == "strip" || m == "lstrip" || m == "rstrip") {
    ArgReader r(m, args, {"chars"});
    return Value::string(text::strip(s, opt_string(r, 0, m), m != "rstrip", m != "lstrip"));
  }
  if (m == "upper" || m == "lower" || m == "title" || m == "capitalize" || m == "splitlines" || m == "isdigit" ||
      m == "isalpha" || m == "isalnum" || m == "isspace" || m == "islower" || m == "isupper") {
    ArgReader r(m, args, {});
    if (m == "upper") return Value::string(text::upper(s));
    if (m == "lower") return Value::string(text::lower(s));
    if (m == "title") return Value::string(text::title(s));
    if (m == "capitalize") return Value::string(text::capitalize(s));
    if (m == "splitlines") return list_of_strings(text::splitlines(s));
    if (m == "isdigit") return Value::boolean(all_cp(s, [](char32_t c) { return c >= '0' && c <= '9'; }));
    if (m == "isalpha") return Value::boolean(all_cp(s, text::is_alpha));
    if (m == "isalnum") return Value::boolean(all_cp(s, [](char32_t c) { return text::is_alpha(c) || (c >= '0' && c <= '9'); }));
    if (m == "isspace") return Value::boolean(all_cp(s, text::is_space));
    const bool want_lower = m == "islower";
    bool cased = false;
    for (char32_t c : text::decode(s)) {
      if (text::to_upper(c) != c) {  // a lowercase letter
        if (!want_lower) return Value::boolean(false);
        cased = true;
      } else if (text::to_lower(c) != c) {  // an uppercase letter
        if (want_lower) return Value::boolean(false);
        cased = true;
      }
    }
    return Value::boolean(cased);
  }
  if (m == "replace") {
    ArgReader r(m, args, {"old", "new", "count"});
    const std::string* from = opt_string(r, 0, m);
    const std::string* to = opt_string(r, 1, m);
    if (!from || !to) throw TemplateError("replace() takes at least 2 arguments");
    std::string out = text::replace(s, *from, *to, opt_int(r, 2, -1, m));
    interp.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (m == "find" || m == "rfind" || m == "index" || m == "rindex" || m == "count") {
    ArgReader r(m, args, {"sub", "start", "end"});
    const std::string* sub = opt_string(r, 0, m);
    if (!sub) throw TemplateError(m + "() takes at least 1 argument");
    const std::size_t b = byte_offset(s, opt_int(r, 1, 0, m));
    const std::size_t e = r.get(2) && !r.get(2)->is_none() ? byte_offset(s, opt_int(r, 2, 0, m)) : s.size();
    const std::string_view view = b <= e ? std::string_view(s).substr(b, e - b) : std::string_view();
    if (m == "count") {
      if (sub->empty()) return Value::integer(static_cast<std::int64_t>(text::length(view)) + 1);
      std::int64_t n = 0;
      for (std::size_t p = view.find(*sub); p != std::string_view::npos; p = view.find(*sub, p + sub->size())) ++n;
      return Value::integer(n);
    }
    const std::size_t hit = (m == "find" || m == "index") ? view.find(*sub) : view.rfind(*sub);
    if (hit == std::string_view::npos) {
      if (m == "index" || m == "rindex") throw TemplateError("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(static_cast<std::int64_t>(text::length(std::string_view(s).substr(0, b + hit))));
  }
  if (m == "join") {
    ArgReader r(m, args, {"iterable"});
    if (!r.get(0)) throw TemplateError("join() takes exactly one argument");
    std::string out;
    const List items = iterate(*r.get(0));
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        throw TemplateError("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(items[i]) + " found");
      }
      if (i) out += s;
      out += items[i].as_string();
      interp.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  throw TemplateError("'str' object has no attribute '" + m + "'");
}

Value call_dict_method(const Dict& d, const std::string& m, const CallArgs& args) {
  if (m == "get") {
    ArgReader r(m, args, {"key", "default"});
    if (!r.get(0)) throw TemplateError("get expected at least 1 argument");
    const Value* v = d.find(*r.get(0));
    return v ? *v : r.get_or(1, Value::none());
  }
  ArgReader r(m, args, {});
  List out;
  out.reserve(d.size());
  for (const auto& [k, v] : d.entries()) {
    if (m == "items") out.push_back(Value::tuple({k, v}));
    else if (m == "keys") out.push_back(k);
    else out.push_back(v);
  }
  return Value::list(std::move(out));
}

Value call_list_method(const Value& self, const std::string& m, const CallArgs& args) {
  ArgReader r(m, args, {"value"});
  if (!r.get(0)) throw TemplateError(m + "() takes exactly one argument");
  const List& items = self.as_list();
  std::int64_t count = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (equals(items[i], *r.get(0))) {
      if (m == "index") return Value::integer(static_cast<std::int64_t>(i));
      ++count;
    }
  }
  if (m == "index") throw TemplateError(repr(*r.get(0)) + " is not in list");
  return Value::integer(count);
}

class BoundMethod final : public Callable {
 public:
  BoundMethod(Value self, std::string method) : self_(std::move(self)), method_(std::move(method)) {}
  Value call(Interpreter& interp, CallArgs& args) const override {
    if (self_.is_string()) return call_str_method(interp, self_.as_string(), method_, args);
    if (method_ == "copy") return self_;
    if (self_.is_dict()) return call_dict_method(self_.as_dict(), method_, args);
    return call_list_method(self_, method_, args);
  }
  std::string name() const override { return type_name(self_) + "." + method_; }

 private:
  Value self_;
  std::string method_;
};

bool is_one_of(const std::string& s, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), s) != names.end();
}

// Methods that mutate: ImmutableSandboxedEnvironment refuses them (attribute is unsafe).
bool is_mutating_method(const Value& obj, const std::string& name) {
  if (obj.is_dict()) return is_one_of(name, {"pop", "popitem", "setdefault", "update", "clear"});
  if (obj.is_list()) return is_one_of(name, {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"});
  return false;
}

std::optional<Value> method_of(const Value& obj, const std::string& name) {
  bool known = false;
  if (obj.is_string()) {
    known = is_one_of(name, {"startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "upper",
                             "lower", "title", "capitalize", "replace", "find", "rfind", "index", "rindex", "count",
                             "join", "splitlines", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper",
                             "format"});
  } else if (obj.is_dict()) {
    known = is_one_of(name, {"items", "keys", "values", "get", "copy"});
  } else if (obj.is_sequence()) {
    known = is_one_of(name, {"index", "count"}) || (obj.is_list() && name == "copy");
  }
  if (known) return Value::callable(std::make_shared<BoundMethod>(obj, name));
  if (is_mutating_method(obj, name)) {
    return Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) +
                            "' object is unsafe in the sandbox; calling it");
  }
  return std::nullopt;
}

// ---- globals ----

using BuiltinFn = Value (*)(Interpreter&, CallArgs&);

class Builtin final : public Callable {
 public:
  Builtin(std::string name, BuiltinFn fn) : name_(std::move(name)), fn_(fn) {}
  Value call(Interpreter& interp, CallArgs& args) const override { return fn_(interp, args); }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  BuiltinFn fn_;
};

Value global_range(Interpreter& interp, CallArgs& args) {
  if (!args.named.empty()) throw TemplateError("range() takes no keyword arguments");
  std::vector<std::int64_t> a;
  for (const Value& v : args.positional) a.push_back(checked_int(v, "range"));
  std::int64_t start = 0, stop = 0, step = 1;
  if (a.size() == 1) stop = a[0];
  else if (a.size() == 2) start = a[0], stop = a[1];
  else if (a.size() == 3) start = a[0], stop = a[1], step = a[2];
  else throw TemplateError("range expected 1 to 3 arguments, got " + std::to_string(a.size()));
  if (step == 0) throw TemplateError("range() arg 3 must not be zero");
  const std::int64_t span = step > 0 ? stop - start : start - stop;
  const std::int64_t n = span <= 0 ? 0 : (span + std::abs(step) - 1) / std::abs(step);
  if (n > kMaxRange) {
    throw TemplateError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  interp.step(static_cast<std::uint64_t>(n));
  List out;
  out.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) out.push_back(Value::integer(start + i * step));
  return Value::list(std::move(out));
}

Dict kwargs_dict(const CallArgs& args, std::string_view fn) {
  Dict d;
  if (args.positional.size() > 1) throw TemplateError(std::string(fn) + " expected at most 1 positional argument");
  if (!args.positional.empty()) {
    const Value& init = args.positional[0];
    if (init.is_dict()) {
      for (const auto& [k, v] : init.as_dict().entries()) d.set(k, v);
    } else if (init.is_namespace()) {
      for (const auto& [k, v] : init.as_namespace().attrs.entries()) d.set(k, v);
    } else {
      for (const Value& pair : iterate(init)) {
        if (!pair.is_sequence() || pair.as_list().size() != 2) {
          throw TemplateError(std::string(fn) + ": sequence elements must be pairs");
        }
        d.set(pair.as_list()[0], pair.as_list()[1]);
      }
    }
  }
  for (const auto& [k, v] : args.named) d.set(Value::string(k), v);
  return d;
}

Value global_dict(Interpreter&, CallArgs& args) { return Value::dict(kwargs_dict(args, "dict")); }
Value global_namespace(Interpreter& interp, CallArgs& args) { return interp.make_namespace(kwargs_dict(args, "namespace")); }

Value global_raise(Interpreter&, CallArgs& args) {
  ArgReader r("raise_exception", args, {"message"});
  throw TemplateError(r.get(0) ? to_str(*r.get(0)) : std::string(), 0, true);
}

Value global_strftime(Interpreter& interp, CallArgs& args) {
  ArgReader r("strftime_now", args, {"format"});
  if (!r.get(0) || !r.get(0)->is_string()) throw TemplateError("strftime_now() expects a format string");
  const std::time_t t = interp.now();
  std::tm tm{};
  localtime_r(&t, &tm);
  const std::string& fmt = r.get(0)->as_string();
  if (fmt.empty()) return Value::string("");
  std::string buf(256 + fmt.size() * 8, '\0');
  const std::size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
  buf.resize(n);
  return Value::string(std::move(buf));
}

class Joiner final : public Callable {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  Value call(Interpreter&, CallArgs&) const override {
    if (!used_) {
      used_ = true;
      return Value::string("");
    }
    return Value::string(sep_);
  }
  std::string name() const override { return "joiner"; }

 private:
  std::string sep_;
  mutable bool used_ = false;
};

Value global_joiner(Interpreter&, CallArgs& args) {
  ArgReader r("joiner", args, {"sep"});
  return Value::callable(std::make_shared<Joiner>(r.get(0) ? to_str(*r.get(0)) : std::string(", ")));
}

}  // namespace

ArgReader::ArgReader(std::string_view function, const CallArgs& args, std::initializer_list<std::string_view> params)
    : bound_(params.size(), nullptr), positional_(args.positional.size()) {
  if (args.positional.size() > params.size()) {
    throw TemplateError(std::string(function) + "() takes at most " + std::to_string(params.size()) +
                        " arguments (" + std::to_string(args.positional.size()) + " given)");
  }
  for (std::size_t i = 0; i < args.positional.size(); ++i) bound_[i] = &args.positional[i];
  for (const auto& [name, value] : args.named) {
    const auto it = std::find(params.begin(), params.end(), name);
    if (it == params.end()) {
      throw TemplateError(std::string(function) + "() got an unexpected keyword argument '" + name + "'");
    }
    const auto idx = static_cast<std::size_t>(it - params.begin());
    if (bound_[idx]) throw TemplateError(std::string(function) + "() got multiple values for argument '" + name + "'");
    bound_[idx] = &value;
  }
}

std::int64_t checked_int(const Value& v, std::string_view what) {
  if (is_intlike(v)) return v.as_int();
  if (v.is_undefined()) undefined_error(v);
  throw TemplateError("'" + type_name(v) + "' object cannot be interpreted as an integer (" + std::string(what) + ")");
}

Value binary_op(Interpreter& interp, std::string_view op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = to_str(a);
    s += to_str(b);
    interp.check_size(s.size());
    return Value::string(std::move(s));
  }
  const bool nums = a.is_number() && b.is_number();
  const bool floats = nums && (a.is_float() || b.is_float());
  if (op == "+" || op == "-" || op == "*") {
    if (nums && floats) {
      const double x = a.as_float(), y = b.as_float();
      return Value::floating(op == "+" ? x + y : op == "-" ? x - y : x * y);
    }
    if (nums) {
      std::int64_t r = 0;
      const bool overflow = op == "+"   ? __builtin_add_overflow(a.as_int(), b.as_int(), &r)
                            : op == "-" ? __builtin_sub_overflow(a.as_int(), b.as_int(), &r)
                                        : __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
      if (overflow) throw TemplateError("integer overflow in '" + std::string(op) + "'");
      return Value::integer(r);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        interp.check_size(a.as_string().size() + b.as_string().size());
        return Value::string(a.as_string() + b.as_string());
      }
      if (a.is_sequence() && a.kind() == b.kind()) {
        interp.check_size((a.as_list().size() + b.as_list().size()) * sizeof(Value));
        interp.step(a.as_list().size() + b.as_list().size());
        List out = a.as_list();
        out.insert(out.end(), b.as_list().begin(), b.as_list().end());
        return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
      if (a.is_string() && !b.is_undefined()) {
        throw TemplateError("can only concatenate str (not \"" + type_name(b) + "\") to str");
      }
      if (a.is_list() && !b.is_undefined()) {
        throw TemplateError("can only concatenate list (not \"" + type_name(b) + "\") to list");
      }
    }
    if (op == "*" && (is_intlike(a) || is_intlike(b)) && (a.is_string() || b.is_string() || a.is_sequence() || b.is_sequence())) {
      const Value& seq = is_intlike(a) ? b : a;
      const std::int64_t n = std::max<std::int64_t>(0, (is_intlike(a) ? a : b).as_int());
      const std::size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size() * sizeof(Value);
      if (n > 0 && unit > 0) interp.check_size(unit * static_cast<std::size_t>(std::min<std::int64_t>(n, 1LL << 40)));
      if (unit > 0 && static_cast<std::uint64_t>(n) * unit > (1ULL << 40)) throw TemplateError("repetition too large");
      if (seq.is_string()) {
        std::string out;
        for (std::int64_t i = 0; i < n; ++i) out += seq.as_string();
        return Value::string(std::move(out));
      }
      List out;
      for (std::int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
      return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
    }
    unsupported(op, a, b);
  }
  if (!nums) {
    if (op == "%" && a.is_string()) throw TemplateError("printf-style '%' string formatting is not supported");
    unsupported(op, a, b);
  }
  if (op == "/") {
    if (b.as_float() == 0.0) throw TemplateError("division by zero");
    return Value::floating(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (floats) {
      const double x = a.as_float(), y = b.as_float();
      if (y == 0.0) throw TemplateError("float division by zero");
      // CPython's float_divmod.
      double mod = std::fmod(x, y);
      double div = (x - mod) / y;
      if (mod != 0.0 && ((mod < 0) != (y < 0))) {
        mod += y;
        div -= 1.0;
      }
      double floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
      return Value::floating(op == "%" ? mod : floordiv);
    }
    const std::int64_t x = a.as_int(), y = b.as_int();
    if (y == 0) throw TemplateError("integer division or modulo by zero");
    if (x == std::numeric_limits<std::int64_t>::min() && y == -1) throw TemplateError("integer overflow");
    std::int64_t q = x / y, r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) {
      --q;
      r += y;
    }
    return Value::integer(op == "%" ? r : q);
  }
  if (op == "**") {
    if (!floats && b.as_int() >= 0) {
      std::int64_t result = 1, base = a.as_int();
      for (std::int64_t e = b.as_int(); e > 0; --e) {
        if (__builtin_mul_overflow(result, base, &result)) throw TemplateError("integer overflow in '**'");
        if (result == 0 || result == 1) break;
        interp.step();
      }
      return Value::integer(result);
    }
    return Value::floating(std::pow(a.as_float(), b.as_float()));
  }
  throw TemplateError("unknown operator '" + std::string(op) + "'");
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        if (item.is_undefined()) undefined_error(item);
        throw TemplateError("'in <string>' requires string as left operand, not " + type_name(item));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      for (const Value& v : container.as_list()) {
        if (equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict: return container.as_dict().find(item) != nullptr;
    default: throw TemplateError("argument of type '" + type_name(container) + "' is not iterable");
  }
}

Value get_attr(const Value& obj, const std::string& name) {
  if (!name.empty() && name[0] == '_') {
    throw TemplateError("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe");
  }
  if (obj.is_undefined()) undefined_error(obj);
  if (auto m = method_of(obj, name)) return *m;
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(std::string_view(name))) return *v;
  } else if (obj.is_namespace()) {
    if (const Value* v = obj.as_namespace().attrs.find(std::string_view(name))) return *v;
  }
  return Value::undefined(name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(key)) return *v;
  } else if ((obj.is_sequence() || obj.is_string()) && is_intlike(key)) {
    const std::int64_t n = obj.is_string() ? static_cast<std::int64_t>(text::length(obj.as_string()))
                                           : static_cast<std::int64_t>(obj.as_list().size());
    std::int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined(repr(key));
    if (obj.is_sequence()) return obj.as_list()[static_cast<std::size_t>(i)];
    const std::size_t b = byte_offset(obj.as_string(), i);
    const std::size_t e = byte_offset(obj.as_string(), i + 1);
    return Value::string(obj.as_string().substr(b, e - b));
  }
  if (key.is_string()) {
    const std::string& name = key.as_string();
    if (!name.empty() && name[0] == '_') return Value::undefined(name);
    if (obj.is_namespace()) return get_attr(obj, name);
    if (auto m = method_of(obj, name)) return *m;
  }
  return Value::undefined(key.is_string() ? key.as_string() : repr(key));
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) undefined_error(obj);
  if (!obj.is_sequence() && !obj.is_string()) throw TemplateError("'" + type_name(obj) + "' object is not subscriptable");
  auto opt = [](const Value& v) -> std::optional<std::int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (!is_intlike(v)) throw TemplateError("slice indices must be integers or None");
    return v.as_int();
  };
  const std::int64_t st = opt(step).value_or(1);
  if (st == 0) throw TemplateError("slice step cannot be zero");
  std::u32string chars;
  if (obj.is_string()) chars = text::decode(obj.as_string());
  const std::int64_t n = obj.is_string() ? static_cast<std::int64_t>(chars.size())
                                         : static_cast<std::int64_t>(obj.as_list().size());
  auto clamp = [&](std::optional<std::int64_t> v, std::int64_t dflt) {
    if (!v) return dflt;
    std::int64_t i = *v;
    if (i < 0) i += n;
    if (st > 0) return std::clamp<std::int64_t>(i, 0, n);
    return std::clamp<std::int64_t>(i, -1, n - 1);
  };
  const std::int64_t b = clamp(opt(start), st > 0 ? 0 : n - 1);
  const std::int64_t e = clamp(opt(stop), st > 0 ? n : -1);
  std::vector<std::size_t> idx;
  for (std::int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(static_cast<std::size_t>(i));
  if (obj.is_string()) {
    std::u32string out;
    for (std::size_t i : idx) out.push_back(chars[i]);
    return Value::string(text::encode(out));
  }
  List out;
  out.reserve(idx.size());
  for (std::size_t i : idx) out.push_back(obj.as_list()[i]);
  return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

Value lookup_global(std::string_view name) {
  static const std::pair<std::string_view, BuiltinFn> kGlobals[] = {
      {"range", global_range},         {"dict", global_dict},
      {"namespace", global_namespace}, {"raise_exception", global_raise},
      {"strftime_now", global_strftime}, {"joiner", global_joiner},
  };
  for (const auto& [n, fn] : kGlobals) {
    if (n == name) {
      // joiner is stateful per call, the others are shared.
      return Value::callable(std::make_shared<Builtin>(std::string(n), fn));
    }
  }
  return Value::undefined(std::string(name));
}

}  // namespace vkllm::tmpl
