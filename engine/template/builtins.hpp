// Owns the library a template can reach: operators, attribute/item access with the sandbox's
// whitelist of methods, filters, tests and globals. Must not know scopes, statements or parsing.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "engine/template/value.hpp"

namespace vkllm::tmpl {

class Interpreter;

// Binds a call's positional and keyword arguments to named parameters, Python style.
class ArgReader {
 public:
  ArgReader(std::string_view function, const CallArgs& args, std::initializer_list<std::string_view> params);
  // Parameter i by position or name; nullptr when not passed.
  const Value* get(std::size_t i) const { return bound_[i]; }
  Value get_or(std::size_t i, Value fallback) const { return bound_[i] ? *bound_[i] : std::move(fallback); }
  std::size_t positional_count() const { return positional_; }

 private:
  std::vector<const Value*> bound_;
  std::size_t positional_ = 0;
};

// a op b for + - * / // % ** ~ with Python semantics (int overflow is an error, not a bignum).
Value binary_op(Interpreter& interp, std::string_view op, const Value& a, const Value& b);
// Python `item in container`.
bool contains(const Value& container, const Value& item);
// jinja2 sandbox getattr: methods of str/dict/list first, then the item; names starting with
// '_' are refused. Missing -> Undefined; attribute of Undefined -> error.
Value get_attr(const Value& obj, const std::string& name);
// jinja2 getitem: the item first, then (for a str key) the attribute.
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// range, dict, namespace, raise_exception, strftime_now, joiner, cycler; Undefined if unknown.
Value lookup_global(std::string_view name);

Value apply_filter(Interpreter& interp, const std::string& name, const Value& input, CallArgs& args);
bool apply_test(Interpreter& interp, const std::string& name, const Value& input, CallArgs& args);

// Python int()/float() conversions used by filters and globals.
std::int64_t checked_int(const Value& v, std::string_view what);

}  // namespace vkllm::tmpl
