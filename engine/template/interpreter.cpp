// Owns evaluating a parsed template against a context inside the sandbox: scopes, loops, macros,
// the step / output / call-depth budgets. Must not know how filters, tests or methods work inside.
#include "engine/template/interpreter.hpp"

#include <cmath>
#include <limits>

#include "engine/template/builtins.hpp"
#include "engine/template/error.hpp"

namespace vkllm::tmpl {

namespace {

// A {% macro %} or the body of a {% call %} block, closed over the scope it was defined in.
class Macro final : public Callable {
 public:
  Macro(const Stmt& def, ScopePtr closure) : def_(def), closure_(std::move(closure)) {}
  Value call(Interpreter& interp, CallArgs& args) const override {
    return interp.run_macro(def_, closure_, args, Value::undefined("caller"));
  }
  std::string name() const override { return def_.kind == StmtKind::kMacro ? def_.text : "caller"; }

 private:
  const Stmt& def_;
  ScopePtr closure_;
};

// loop.cycle(a, b, ...): the argument at loop.index0 modulo the count.
class LoopCycle final : public Callable {
 public:
  explicit LoopCycle(std::size_t index0) : index0_(index0) {}
  Value call(Interpreter&, CallArgs& args) const override {
    if (args.positional.empty()) throw TemplateError("no items for cycling given");
    return args.positional[index0_ % args.positional.size()];
  }
  std::string name() const override { return "loop.cycle"; }

 private:
  std::size_t index0_;
};

class DepthGuard {
 public:
  DepthGuard(int& depth, int limit) : depth_(depth) {
    if (++depth_ > limit) {
      --depth_;
      throw TemplateError("maximum call depth (" + std::to_string(limit) + ") exceeded");
    }
  }
  ~DepthGuard() { --depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  int& depth_;
};

Value loop_object(const List& items, std::size_t i) {
  const auto n = static_cast<std::int64_t>(items.size());
  const auto idx = static_cast<std::int64_t>(i);
  Dict d;
  auto put = [&d](const char* key, Value v) { d.append_new(Value::string(key), std::move(v)); };
  put("index", Value::integer(idx + 1));
  put("index0", Value::integer(idx));
  put("revindex", Value::integer(n - idx));
  put("revindex0", Value::integer(n - idx - 1));
  put("first", Value::boolean(i == 0));
  put("last", Value::boolean(idx == n - 1));
  put("length", Value::integer(n));
  put("depth", Value::integer(1));
  put("depth0", Value::integer(0));
  if (i > 0) put("previtem", items[i - 1]);
  if (idx + 1 < n) put("nextitem", items[i + 1]);
  put("cycle", Value::callable(std::make_shared<LoopCycle>(i)));
  return Value::dict(std::move(d));
}

}  // namespace

const Value* Scope::find(std::string_view name) const {
  for (const Scope* s = this; s; s = s->parent_.get()) {
    for (auto it = s->vars_.rbegin(); it != s->vars_.rend(); ++it) {
      if (it->first == name) return &it->second;
    }
  }
  return nullptr;
}

void Scope::set(std::string_view name, Value value) {
  for (auto& [k, v] : vars_) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  vars_.emplace_back(std::string(name), std::move(value));
}

Interpreter::Interpreter(const RenderOptions& options) : options_(options) {}

Interpreter::~Interpreter() {
  // Break reference cycles (namespace holding itself, macro stored in its own closure).
  for (auto& w : namespaces_) {
    if (auto ns = w.lock()) ns->attrs = Dict();
  }
  for (auto& w : scopes_) {
    if (auto sc = w.lock()) sc->clear();
  }
}

std::string Interpreter::render(const Body& body, const Dict& context) {
  auto root = std::make_shared<Scope>(nullptr);
  scopes_.push_back(root);
  for (const auto& [k, v] : context.entries()) {
    if (!k.is_string()) throw TemplateError("context keys must be strings");
    root->set(k.as_string(), v);
  }
  std::string out;
  exec_body(body, root, out);
  return out;
}

void Interpreter::step(std::uint64_t n) {
  steps_ += n;
  if (steps_ > options_.limits.max_steps) {
    throw TemplateError("template exceeded its budget of " + std::to_string(options_.limits.max_steps) + " steps");
  }
}

void Interpreter::check_size(std::size_t bytes) const {
  if (bytes > options_.limits.max_output_bytes) {
    throw TemplateError("template output exceeds " + std::to_string(options_.limits.max_output_bytes) + " bytes");
  }
}

std::time_t Interpreter::now() const { return options_.now ? *options_.now : std::time(nullptr); }

Value Interpreter::make_namespace(Dict attrs) {
  Value v = Value::make_namespace(std::move(attrs));
  namespaces_.push_back(v.namespace_ptr());
  return v;
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (!callee.is_callable()) {
    if (callee.is_undefined()) throw TemplateError("'" + callee.undefined_name() + "' is undefined");
    throw TemplateError("'" + type_name(callee) + "' object is not callable");
  }
  DepthGuard guard(call_depth_, options_.limits.max_call_depth);
  step();
  return callee.as_callable().call(*this, args);
}

Value Interpreter::make_macro(const Stmt& def, const ScopePtr& scope) {
  scopes_.push_back(scope);
  return Value::callable(std::make_shared<Macro>(def, scope));
}

Value Interpreter::run_macro(const Stmt& macro, const ScopePtr& closure, CallArgs& args, const Value& caller) {
  auto scope = std::make_shared<Scope>(closure);
  const auto& params = macro.params;
  List varargs;
  for (std::size_t i = 0; i < args.positional.size(); ++i) {
    if (i < params.size()) scope->set(params[i].name, args.positional[i]);
    else varargs.push_back(args.positional[i]);
  }
  Dict kwargs;
  Value caller_value = caller;
  for (auto& [name, value] : args.named) {
    bool is_param = false;
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (params[i].name == name) {
        if (i < args.positional.size()) {
          throw TemplateError("macro '" + macro.text + "' got multiple values for argument '" + name + "'");
        }
        scope->set(name, value);
        is_param = true;
      }
    }
    if (is_param) continue;
    if (name == "caller") caller_value = value;
    else kwargs.set(Value::string(name), value);
  }
  for (std::size_t i = args.positional.size(); i < params.size(); ++i) {
    bool passed = false;
    for (const auto& [name, value] : args.named) passed = passed || name == params[i].name;
    if (passed) continue;
    scope->set(params[i].name, params[i].default_value ? eval(*params[i].default_value, scope)
                                                       : Value::undefined(params[i].name));
  }
  scope->set("varargs", Value::tuple(std::move(varargs)));
  scope->set("kwargs", Value::dict(std::move(kwargs)));
  if (!caller_value.is_undefined()) scope->set("caller", caller_value);
  std::string out;
  exec_body(macro.body, scope, out);
  return Value::string(std::move(out));
}

void Interpreter::append(std::string& out, std::string_view text) const {
  out += text;
  check_size(out.size());
}

Interpreter::Flow Interpreter::exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
  for (const StmtPtr& s : body) {
    const Flow f = exec(*s, scope, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
  step();
  try {
    switch (s.kind) {
      case StmtKind::kText: append(out, s.text); return Flow::kNormal;
      case StmtKind::kOutput: append(out, to_str(eval(*s.expr, scope))); return Flow::kNormal;
      case StmtKind::kIf:
        for (std::size_t i = 0; i < s.conditions.size(); ++i) {
          if (truthy(eval(*s.conditions[i], scope))) return exec_body(s.bodies[i], scope, out);
        }
        return exec_body(s.else_body, scope, out);
      case StmtKind::kFor: exec_for(s, scope, out); return Flow::kNormal;
      case StmtKind::kSet: assign(s.target, eval(*s.expr, scope), scope); return Flow::kNormal;
      case StmtKind::kSetBlock: {
        std::string captured;
        exec_body(s.body, std::make_shared<Scope>(scope), captured);
        Value v = Value::string(std::move(captured));
        if (s.expr) v = apply_filter_chain(*s.expr, std::move(v), scope);
        assign(s.target, std::move(v), scope);
        return Flow::kNormal;
      }
      case StmtKind::kMacro: scope->set(s.text, make_macro(s, scope)); return Flow::kNormal;
      case StmtKind::kCallBlock: {
        const Expr& call = *s.expr;
        Value callee = eval(*call.a, scope);
        CallArgs args = eval_args(call, scope, false);
        args.named.emplace_back("caller", make_macro(s, scope));
        append(out, to_str(this->call(callee, args)));
        return Flow::kNormal;
      }
      case StmtKind::kFilterBlock: {
        std::string captured;
        exec_body(s.body, std::make_shared<Scope>(scope), captured);
        append(out, to_str(apply_filter_chain(*s.expr, Value::string(std::move(captured)), scope)));
        return Flow::kNormal;
      }
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
      case StmtKind::kGeneration: exec_body(s.body, std::make_shared<Scope>(scope), out); return Flow::kNormal;
    }
  } catch (const TemplateError& e) {
    if (e.line() == 0) throw e.with_line(s.line);
    throw;
  }
  return Flow::kNormal;
}

void Interpreter::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
  const Value iterable = eval(*s.expr, scope);
  if (iterable.is_none()) throw TemplateError("'NoneType' object is not iterable");
  List items = iterate(iterable);
  step(items.size());
  if (s.cond) {
    // The loop filter sees the loop variables but not `loop` (jinja2 evaluates it before the body).
    List kept;
    for (Value& item : items) {
      auto probe = std::make_shared<Scope>(scope);
      assign(s.target, item, probe);
      if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec_body(s.else_body, std::make_shared<Scope>(scope), out);
    return;
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    // A fresh scope per iteration: {% set %} in the body never outlives its iteration (as jinja2).
    auto iter_scope = std::make_shared<Scope>(scope);
    assign(s.target, items[i], iter_scope);
    iter_scope->set("loop", loop_object(items, i));
    if (exec_body(s.body, iter_scope, out) == Flow::kBreak) break;
  }
}

void Interpreter::assign(const Target& t, Value v, const ScopePtr& scope) {
  if (!t.attr.empty()) {
    const Value* ns = scope->find(t.name);
    if (!ns || !ns->is_namespace()) throw TemplateError("cannot assign attribute on non-namespace object");
    ns->as_namespace().attrs.set(Value::string(t.attr), std::move(v));
    return;
  }
  if (t.elements.empty()) {
    scope->set(t.name, std::move(v));
    return;
  }
  const List items = iterate(v);
  if (items.size() != t.elements.size()) {
    throw TemplateError(items.size() > t.elements.size()
                            ? "too many values to unpack (expected " + std::to_string(t.elements.size()) + ")"
                            : "not enough values to unpack (expected " + std::to_string(t.elements.size()) + ", got " +
                                  std::to_string(items.size()) + ")");
  }
  for (std::size_t i = 0; i < items.size(); ++i) assign(t.elements[i], items[i], scope);
}

Value Interpreter::lookup(const std::string& name, const ScopePtr& scope) const {
  if (const Value* v = scope->find(name)) return *v;
  return lookup_global(name);
}

CallArgs Interpreter::eval_args(const Expr& e, const ScopePtr& scope, bool skip_first_item) {
  CallArgs args;
  for (std::size_t i = skip_first_item ? 1 : 0; i < e.items.size(); ++i) args.positional.push_back(eval(*e.items[i], scope));
  if (e.star_args) {
    for (Value& v : iterate(eval(*e.star_args, scope))) args.positional.push_back(std::move(v));
  }
  for (const auto& [k, x] : e.kwargs) args.named.emplace_back(k, eval(*x, scope));
  if (e.star_kwargs) {
    const Value d = eval(*e.star_kwargs, scope);
    if (!d.is_dict()) throw TemplateError("argument after ** must be a mapping, not " + type_name(d));
    for (const auto& [k, v] : d.as_dict().entries()) {
      if (!k.is_string()) throw TemplateError("keywords must be strings");
      args.named.emplace_back(k.as_string(), v);
    }
  }
  return args;
}

Value Interpreter::apply_filter_chain(const Expr& e, Value input, const ScopePtr& scope) {
  Value in = e.a ? apply_filter_chain(*e.a, std::move(input), scope) : std::move(input);
  CallArgs args = eval_args(e, scope, false);
  return apply_filter(*this, e.name, in, args);
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
  step();
  try {
    return eval_inner(e, scope);
  } catch (const TemplateError& err) {
    if (err.line() == 0) throw err.with_line(e.line);
    throw;
  }
}

Value Interpreter::eval_compare(const Expr& e, const ScopePtr& scope) {
  Value left = eval(*e.a, scope);
  for (std::size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.items[i], scope);
    const std::string& op = e.ops[i];
    bool ok;
    if (op == "==") ok = equals(left, right);
    else if (op == "!=") ok = !equals(left, right);
    else if (op == "in") ok = contains(right, left);
    else if (op == "notin") ok = !contains(right, left);
    else {
      const int c = compare(left, right);
      ok = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval_inner(const Expr& e, const ScopePtr& scope) {
  switch (e.kind) {
    case ExprKind::kConst: return e.value;
    case ExprKind::kName: return lookup(e.name, scope);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      List items;
      items.reserve(e.items.size());
      for (const ExprPtr& x : e.items) items.push_back(eval(*x, scope));
      return e.kind == ExprKind::kList ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprKind::kDict: {
      Dict d;
      for (std::size_t i = 0; i + 1 < e.items.size(); i += 2) d.set(eval(*e.items[i], scope), eval(*e.items[i + 1], scope));
      return Value::dict(std::move(d));
    }
    case ExprKind::kGetAttr: return get_attr(eval(*e.a, scope), e.name);
    case ExprKind::kGetItem: return get_item(eval(*e.a, scope), eval(*e.b, scope));
    case ExprKind::kSlice: {
      auto part = [&](std::size_t i) { return e.items[i] ? eval(*e.items[i], scope) : Value::none(); };
      return slice(eval(*e.a, scope), part(0), part(1), part(2));
    }
    case ExprKind::kCall: {
      Value callee = eval(*e.a, scope);
      CallArgs args = eval_args(e, scope, false);
      return call(callee, args);
    }
    case ExprKind::kFilter: {
      Value input = eval(*e.a, scope);
      CallArgs args = eval_args(e, scope, false);
      return apply_filter(*this, e.name, input, args);
    }
    case ExprKind::kTest: {
      Value input = eval(*e.a, scope);
      CallArgs args = eval_args(e, scope, false);
      return Value::boolean(apply_test(*this, e.name, input, args) != e.negated);
    }
    case ExprKind::kNot: return Value::boolean(!truthy(eval(*e.a, scope)));
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      Value v = eval(*e.a, scope);
      if (v.is_undefined()) throw TemplateError("'" + v.undefined_name() + "' is undefined");
      if (!v.is_number()) {
        throw TemplateError(std::string("bad operand type for unary ") + (e.kind == ExprKind::kNeg ? "-" : "+") +
                            ": '" + type_name(v) + "'");
      }
      if (e.kind == ExprKind::kPos) return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::floating(-v.as_float());
      if (v.as_int() == std::numeric_limits<std::int64_t>::min()) throw TemplateError("integer overflow");
      return Value::integer(-v.as_int());
    }
    case ExprKind::kBinary: {
      Value a = eval(*e.a, scope);
      Value b = eval(*e.b, scope);
      return binary_op(*this, e.name, a, b);
    }
    case ExprKind::kAnd: {
      Value a = eval(*e.a, scope);
      return truthy(a) ? eval(*e.b, scope) : a;
    }
    case ExprKind::kOr: {
      Value a = eval(*e.a, scope);
      return truthy(a) ? a : eval(*e.b, scope);
    }
    case ExprKind::kCompare: return eval_compare(e, scope);
    case ExprKind::kCondExpr:
      if (truthy(eval(*e.a, scope))) return eval(*e.b, scope);
      return e.c ? eval(*e.c, scope) : Value::undefined("conditional expression");
  }
  throw TemplateError("internal: unknown expression kind");
}

}  // namespace vkllm::tmpl
