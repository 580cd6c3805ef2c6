// Owns evaluating a parsed template against a context inside the sandbox: scopes, loops, macros,
// the step / output / call-depth budgets. Must not know how filters, tests or methods work inside.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/template/ast.hpp"
#include "engine/template/value.hpp"

namespace vkllm::tmpl {

// Budgets of one render. A template that exceeds one fails with TemplateError; none is reachable
// by the real chat templates on a conversation that fits a model's context.
struct Limits {
  std::uint64_t max_steps = 10'000'000;         // expression + statement evaluations
  std::size_t max_output_bytes = 32u << 20;     // rendered text, and any one string built
  int max_call_depth = 64;                      // nested macro / callable calls
};

struct RenderOptions {
  Limits limits;
  // Time used by strftime_now (local time). Unset: the current time.
  std::optional<std::time_t> now;
};

// A variable scope. Loop iterations, macro calls and call blocks open a child; {% set %} writes
// into the innermost scope; lookups walk outward (macros capture the scope they are defined in).
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value value);
  void clear() { vars_.clear(); }

 private:
  std::shared_ptr<Scope> parent_;
  std::vector<std::pair<std::string, Value>> vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  explicit Interpreter(const RenderOptions& options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Body& body, const Dict& context);

  // For filters, tests, methods and callables.
  void step(std::uint64_t n = 1);
  void check_size(std::size_t bytes) const;
  std::time_t now() const;
  Value call(const Value& callee, CallArgs& args);
  Value make_namespace(Dict attrs);
  // Runs a macro body: used by the Macro callable.
  Value run_macro(const Stmt& macro, const ScopePtr& closure, CallArgs& args, const Value& caller);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow exec_body(const Body& body, const ScopePtr& scope, std::string& out);
  Flow exec(const Stmt& s, const ScopePtr& scope, std::string& out);
  void exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
  void assign(const Target& t, Value v, const ScopePtr& scope);
  void append(std::string& out, std::string_view text) const;

  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_inner(const Expr& e, const ScopePtr& scope);
  Value lookup(const std::string& name, const ScopePtr& scope) const;
  CallArgs eval_args(const Expr& e, const ScopePtr& scope, bool skip_first_item);
  Value eval_compare(const Expr& e, const ScopePtr& scope);
  Value apply_filter_chain(const Expr& e, Value input, const ScopePtr& scope);
  Value make_macro(const Stmt& def, const ScopePtr& scope);

  RenderOptions options_;
  std::uint64_t steps_ = 0;
  int call_depth_ = 0;
  // Every namespace and scope made during a render, cleared at the end so that cycles
  // (a namespace holding itself, a macro stored in its own scope) do not leak.
  std::vector<std::weak_ptr<Namespace>> namespaces_;
  std::vector<std::weak_ptr<Scope>> scopes_;
};

}  // namespace vkllm::tmpl
