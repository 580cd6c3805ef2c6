// Owns the syntax tree of a parsed template: expression and statement nodes with their lines.
// Must not know how nodes are produced (parser) or evaluated (interpreter).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/template/value.hpp"

namespace vkllm::tmpl {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  kConst,     // value
  kName,      // name
  kList,      // items
  kTuple,     // items
  kDict,      // items: key0, value0, key1, value1, ...
  kGetAttr,   // a.name
  kGetItem,   // a[b]
  kSlice,     // a[b:c:d]; items = {start, stop, step}, each may be null
  kCall,      // a(items..., kwargs...)
  kFilter,    // a|name(items..., kwargs...); a is null inside {% filter %}
  kTest,      // a is name(items..., kwargs...); negated
  kNot,       // not a
  kNeg,       // -a
  kPos,       // +a
  kBinary,    // a op b (arithmetic, ~)
  kAnd,       // a and b
  kOr,        // a or b
  kCompare,   // a (ops[i] items[i])...
  kCondExpr,  // b if a else c (c may be null)
};

struct Expr {
  ExprKind kind;
  int line = 0;
  Value value;                 // kConst
  std::string name;            // kName, kGetAttr, kFilter, kTest; operator for kBinary
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;  // elements, call args, slice parts, compare operands
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr star_args;           // f(*args)
  ExprPtr star_kwargs;         // f(**kwargs)
  std::vector<std::string> ops;  // kCompare
  bool negated = false;          // kTest
};

// An assignment target: a name, ns.attr, or a (nested) tuple of names.
struct Target {
  std::string name;              // empty for a tuple
  std::string attr;              // ns.attr
  std::vector<Target> elements;  // tuple unpacking
};

enum class StmtKind {
  kText,        // text
  kOutput,      // {{ expr }}
  kIf,          // conditions[i] -> bodies[i], else_body
  kFor,         // target in expr [if cond] body else_body
  kSet,         // target = expr
  kSetBlock,    // {% set target %}body{% endset %}, expr = optional filter chain
  kMacro,       // name(params) body
  kCallBlock,   // {% call(params) expr %}body
  kFilterBlock, // {% filter expr %}body
  kBreak,
  kContinue,
  kGeneration,  // {% generation %}body (transformers' assistant mask marker; renders body)
};

struct Param {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;                 // kText; macro name
  ExprPtr expr;                     // output, for iterable, set value, call expr, filter chain
  ExprPtr cond;                     // for-loop filter
  Target target;
  std::vector<ExprPtr> conditions;  // kIf
  std::vector<Body> bodies;         // kIf
  Body body;
  Body else_body;
  std::vector<Param> params;        // macro / call block
  bool recursive = false;           // {% for ... recursive %}
};

}  // namespace vkllm::tmpl
