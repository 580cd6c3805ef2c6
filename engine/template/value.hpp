// Owns the template runtime's value model: Python-like None, bool, int, float, str, list, tuple,
// dict, namespace, callables and jinja's Undefined, with Python truthiness, ==, <, str() and repr().
// Must not know the parser, the interpreter's scopes, or where a context comes from.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace vkllm::tmpl {

class Interpreter;
class Value;

using List = std::vector<Value>;

// Insertion-ordered dict with Python key equality (1 == 1.0 == True). Chat dicts are small, so
// lookup is a linear scan; the step and size limits of a render bound the total work.
class Dict {
 public:
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);  // replaces in place or appends
  // Appends without the duplicate check: the caller knows the key is new (hot paths).
  void append_new(Value key, Value value);
  // Defined after Value: std::pair<Value, Value> needs it complete (clang with libstdc++).
  std::size_t size() const noexcept;
  bool empty() const noexcept;
  const std::vector<std::pair<Value, Value>>& entries() const noexcept { return entries_; }

 private:
  std::vector<std::pair<Value, Value>> entries_;
};

// The one mutable object: jinja's namespace(), assigned with {% set ns.attr = v %}.
struct Namespace {
  Dict attrs;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};

// Macros, builtins and bound methods.
class Callable {
 public:
  virtual ~Callable() = default;
  virtual Value call(Interpreter& interp, CallArgs& args) const = 0;
  virtual std::string name() const = 0;
};

class Value {
 public:
  enum class Kind : std::uint8_t {
    kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kTuple, kDict, kNamespace, kCallable
  };

  Value() : kind_(Kind::kUndefined), data_(std::string()) {}
  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(std::int64_t i);
  static Value floating(double d);
  static Value string(std::string s);
  static Value list(List items);
  static Value tuple(List items);
  static Value dict(Dict d);
  static Value make_namespace(Dict attrs);
  static Value callable(std::shared_ptr<const Callable> c);

  Kind kind() const noexcept { return kind_; }
  bool is_undefined() const noexcept { return kind_ == Kind::kUndefined; }
  bool is_none() const noexcept { return kind_ == Kind::kNone; }
  bool is_bool() const noexcept { return kind_ == Kind::kBool; }
  bool is_int() const noexcept { return kind_ == Kind::kInt; }
  bool is_float() const noexcept { return kind_ == Kind::kFloat; }
  bool is_number() const noexcept { return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const noexcept { return kind_ == Kind::kString; }
  bool is_list() const noexcept { return kind_ == Kind::kList; }
  bool is_tuple() const noexcept { return kind_ == Kind::kTuple; }
  bool is_sequence() const noexcept { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const noexcept { return kind_ == Kind::kDict; }
  bool is_namespace() const noexcept { return kind_ == Kind::kNamespace; }
  bool is_callable() const noexcept { return kind_ == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(data_); }
  std::int64_t as_int() const;  // bool or int
  double as_float() const;      // bool, int or float
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const std::string& undefined_name() const { return std::get<std::string>(data_); }
  const List& as_list() const { return *std::get<std::shared_ptr<const List>>(data_); }  // list or tuple
  const Dict& as_dict() const { return *std::get<std::shared_ptr<const Dict>>(data_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(data_); }
  const std::shared_ptr<Namespace>& namespace_ptr() const { return std::get<std::shared_ptr<Namespace>>(data_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(data_); }
  const void* identity() const;  // for `is sameas` and namespace/callable equality

 private:
  using Data = std::variant<bool, std::int64_t, double, std::string, std::shared_ptr<const List>,
                            std::shared_ptr<const Dict>, std::shared_ptr<Namespace>,
                            std::shared_ptr<const Callable>>;
  Value(Kind kind, Data data) : kind_(kind), data_(std::move(data)) {}

  Kind kind_;
  Data data_;
};

inline std::size_t Dict::size() const noexcept { return entries_.size(); }
inline bool Dict::empty() const noexcept { return entries_.empty(); }

// Python semantics. Errors are TemplateError without a line (the interpreter adds it).
bool truthy(const Value& v);
std::string type_name(const Value& v);  // Python type name for messages: 'str', 'int', 'dict'...
std::string to_str(const Value& v);     // Python str(); Undefined is ""
std::string repr(const Value& v);       // Python repr()
std::string float_repr(double d);       // Python repr(float)
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // <0, 0, >0; throws when Python's < would
// len() of str (code points), list, tuple, dict, namespace-less; Undefined is 0. Throws otherwise.
std::int64_t length(const Value& v);
// Iteration as Python's iter(): list/tuple items, dict keys, str code points, Undefined empty.
List iterate(const Value& v);

// json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson filter calls it.
// indent: none for compact (", " / ": "), an int or a string for pretty.
std::string to_json(const Value& v, const Value& indent = Value::none());
// Parses JSON text into a Value (objects keep key order). Throws TemplateError on bad input.
Value parse_json(std::string_view text);

}  // namespace vkllm::tmpl
