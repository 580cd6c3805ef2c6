// Owns building the syntax tree from tokens with jinja2's grammar and operator precedence.
// Must not know how the tree is evaluated, nor any filter, test or global by meaning.
#include "engine/template/parser.hpp"

#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "engine/template/error.hpp"

namespace vkllm::tmpl {

namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : toks_(tokens) {}

  Body parse_all() {
    Body body = subparse({});
    if (cur().kind != TokenKind::kEof) fail("unexpected '" + cur().value + "'");
    return body;
  }

 private:
  // RAII depth guard for recursive descent.
  struct Deeper {
    explicit Deeper(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxParseDepth) p_.fail("template nesting too deep");
    }
    ~Deeper() { --p_.depth_; }
    Parser& p_;
  };

  const Token& cur() const { return toks_[pos_]; }
  const Token& look(std::size_t ahead = 1) const {
    const std::size_t i = pos_ + ahead;
    return i < toks_.size() ? toks_[i] : toks_.back();
  }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  [[noreturn]] void fail(const std::string& msg) const { throw TemplateError(msg, cur().line); }

  bool at_op(std::string_view op) const { return cur().kind == TokenKind::kOperator && cur().value == op; }
  bool at_name(std::string_view name) const { return cur().kind == TokenKind::kName && cur().value == name; }
  bool at_any_name(std::initializer_list<std::string_view> names) const {
    for (auto n : names) {
      if (at_name(n)) return true;
    }
    return false;
  }
  void expect_op(std::string_view op) {
    if (!at_op(op)) fail("expected '" + std::string(op) + "', got " + describe());
    advance();
  }
  std::string expect_name() {
    if (cur().kind != TokenKind::kName) fail("expected name, got " + describe());
    std::string v = cur().value;
    advance();
    return v;
  }
  void expect_name(std::string_view name) {
    if (!at_name(name)) fail("expected '" + std::string(name) + "', got " + describe());
    advance();
  }
  void expect_block_end() {
    if (cur().kind != TokenKind::kBlockEnd) fail("expected end of statement block, got " + describe());
    advance();
  }
  std::string describe() const {
    switch (cur().kind) {
      case TokenKind::kEof: return "end of template";
      case TokenKind::kBlockEnd: return "end of statement block";
      case TokenKind::kVarEnd: return "end of print statement";
      case TokenKind::kData: return "template data";
      default: return "'" + cur().value + "'";
    }
  }

  ExprPtr node(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements ----

  Body subparse(std::initializer_list<std::string_view> end_names) {
    Deeper guard(*this);
    Body body;
    while (cur().kind != TokenKind::kEof) {
      const Token& t = cur();
      if (t.kind == TokenKind::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->line = t.line;
        s->text = t.value;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == TokenKind::kVarBegin) {
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = cur().line;
        s->expr = parse_tuple(true, false, {});
        if (cur().kind != TokenKind::kVarEnd) fail("expected end of print statement, got " + describe());
        advance();
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        advance();
        for (auto n : end_names) {
          if (at_name(n)) return body;
        }
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe());
      }
    }
    if (end_names.size() > 0) {
      fail("unexpected end of template, expected '" + std::string(*end_names.begin()) + "'");
    }
    return body;
  }

  // Expects the end of the opening tag, parses the body up to one of end_names.
  Body parse_statements(std::initializer_list<std::string_view> end_names, bool drop_needle) {
    if (at_op(":")) advance();
    expect_block_end();
    Body body = subparse(end_names);
    if (drop_needle) advance();
    return body;
  }

  StmtPtr make_stmt(StmtKind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  StmtPtr parse_statement() {
    if (cur().kind != TokenKind::kName) fail("tag name expected");
    const std::string tag = cur().value;
    const int line = cur().line;
    advance();
    if (tag == "for") return parse_for(line);
    if (tag == "if") return parse_if(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "call") return parse_call_block(line);
    if (tag == "filter") return parse_filter_block(line);
    if (tag == "generation") {
      auto s = make_stmt(StmtKind::kGeneration, line);
      s->body = parse_statements({"endgeneration"}, true);
      expect_block_end();
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail("'" + tag + "' outside of a loop");
      auto s = make_stmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
      expect_block_end();
      return s;
    }
    fail("encountered unknown or unsupported tag '" + tag + "'");
  }

  StmtPtr parse_for(int line) {
    auto s = make_stmt(StmtKind::kFor, line);
    s->target = parse_target(true);
    expect_name("in");
    s->expr = parse_tuple(false, false, {"recursive"});
    if (at_name("if")) {
      advance();
      s->cond = parse_expression(true);
    }
    if (at_name("recursive")) fail("recursive loops are not supported");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (at_name("else")) {
      advance();
      s->else_body = parse_statements({"endfor"}, true);
    } else {
      advance();
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_if(int line) {
    auto s = make_stmt(StmtKind::kIf, line);
    s->conditions.push_back(parse_tuple(true, false, {}));
    s->bodies.push_back(parse_statements({"elif", "else", "endif"}, false));
    while (true) {
      if (at_name("elif")) {
        advance();
        s->conditions.push_back(parse_tuple(true, false, {}));
        s->bodies.push_back(parse_statements({"elif", "else", "endif"}, false));
      } else if (at_name("else")) {
        advance();
        s->else_body = parse_statements({"endif"}, true);
        break;
      } else {
        advance();  // endif
        break;
      }
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_set(int line) {
    Target target;
    if (cur().kind == TokenKind::kName && look().kind == TokenKind::kOperator && look().value == ".") {
      target.name = expect_name();
      advance();
      target.attr = expect_name();
    } else {
      target = parse_target(true);
    }
    if (at_op("=")) {
      advance();
      auto s = make_stmt(StmtKind::kSet, line);
      s->target = std::move(target);
      s->expr = parse_tuple(true, false, {});
      expect_block_end();
      return s;
    }
    auto s = make_stmt(StmtKind::kSetBlock, line);
    if (!target.elements.empty()) fail("block set needs a single name");
    s->target = std::move(target);
    if (at_op("|")) s->expr = parse_filter(nullptr);
    s->body = parse_statements({"endset"}, true);
    expect_block_end();
    return s;
  }

  void parse_params(std::vector<Param>& params) {
    expect_op("(");
    while (!at_op(")")) {
      if (!params.empty()) expect_op(",");
      if (at_op(")")) break;
      Param p;
      p.name = expect_name();
      if (at_op("=")) {
        advance();
        p.default_value = parse_expression(true);
      } else if (!params.empty() && params.back().default_value) {
        fail("non-default argument follows default argument");
      }
      params.push_back(std::move(p));
    }
    advance();
  }

  StmtPtr parse_macro(int line) {
    auto s = make_stmt(StmtKind::kMacro, line);
    s->text = expect_name();
    parse_params(s->params);
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved;
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block(int line) {
    auto s = make_stmt(StmtKind::kCallBlock, line);
    if (at_op("(")) parse_params(s->params);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::kCall) fail("expected call");
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endcall"}, true);
    loop_depth_ = saved;
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block(int line) {
    auto s = make_stmt(StmtKind::kFilterBlock, line);
    s->expr = parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true);
    expect_block_end();
    return s;
  }

  // name | (target, ...) | target, target...
  Target parse_target(bool with_tuple) {
    Target first = parse_target_primary();
    if (!with_tuple || !at_op(",")) return first;
    Target tuple;
    tuple.elements.push_back(std::move(first));
    while (at_op(",")) {
      advance();
      if (at_name("in") || at_op("=") || cur().kind == TokenKind::kBlockEnd) break;
      tuple.elements.push_back(parse_target_primary());
    }
    return tuple;
  }

  Target parse_target_primary() {
    if (at_op("(")) {
      advance();
      Target t = parse_target(true);
      expect_op(")");
      if (t.elements.empty() && !t.name.empty()) return t;
      return t;
    }
    Target t;
    t.name = expect_name();
    if (t.name == "true" || t.name == "false" || t.name == "none" || t.name == "True" || t.name == "False" ||
        t.name == "None") {
      fail("cannot assign to '" + t.name + "'");
    }
    return t;
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra) const {
    const auto k = cur().kind;
    if (k == TokenKind::kVarEnd || k == TokenKind::kBlockEnd || k == TokenKind::kEof || at_op(")")) return true;
    for (auto n : extra) {
      if (at_name(n)) return true;
    }
    return false;
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens, std::initializer_list<std::string_view> extra) {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra)) break;
      args.push_back(parse_expression(with_condexpr));
      if (at_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) fail("expected an expression, got " + describe());
    }
    auto t = node(ExprKind::kTuple, line);
    t->items = std::move(args);
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Deeper guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    const int line = cur().line;
    ExprPtr expr1 = parse_or();
    while (at_name("if")) {
      advance();
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (at_name("else")) {
        advance();
        expr3 = parse_condexpr();
      }
      auto n = node(ExprKind::kCondExpr, line);
      n->a = std::move(expr2);
      n->b = std::move(expr1);
      n->c = std::move(expr3);
      expr1 = std::move(n);
    }
    return expr1;
  }

  ExprPtr binary(ExprKind kind, ExprPtr l, ExprPtr r, int line, std::string op = {}) {
    auto n = node(kind, line);
    n->a = std::move(l);
    n->b = std::move(r);
    n->name = std::move(op);
    return n;
  }

  ExprPtr parse_or() {
    const int line = cur().line;
    ExprPtr left = parse_and();
    while (at_name("or")) {
      advance();
      left = binary(ExprKind::kOr, std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    const int line = cur().line;
    ExprPtr left = parse_not();
    while (at_name("and")) {
      advance();
      left = binary(ExprKind::kAnd, std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      Deeper guard(*this);
      const int line = cur().line;
      advance();
      auto n = node(ExprKind::kNot, line);
      n->a = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr expr = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      if (cur().kind == TokenKind::kOperator &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == "<=" ||
           cur().value == ">" || cur().value == ">=")) {
        ops.push_back(cur().value);
        advance();
      } else if (at_name("in")) {
        ops.push_back("in");
        advance();
      } else if (at_name("not") && look().kind == TokenKind::kName && look().value == "in") {
        ops.push_back("notin");
        advance();
        advance();
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return expr;
    auto n = node(ExprKind::kCompare, line);
    n->a = std::move(expr);
    n->ops = std::move(ops);
    n->items = std::move(operands);
    return n;
  }

  ExprPtr parse_math1() {
    const int line = cur().line;
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      std::string op = cur().value;
      advance();
      left = binary(ExprKind::kBinary, std::move(left), parse_concat(), line, op);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr left = parse_math2();
    while (at_op("~")) {
      advance();
      left = binary(ExprKind::kBinary, std::move(left), parse_math2(), line, "~");
    }
    return left;
  }

  ExprPtr parse_math2() {
    const int line = cur().line;
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      std::string op = cur().value;
      advance();
      left = binary(ExprKind::kBinary, std::move(left), parse_pow(), line, op);
    }
    return left;
  }

  ExprPtr parse_pow() {
    const int line = cur().line;
    ExprPtr left = parse_unary(true);
    while (at_op("**")) {
      advance();
      left = binary(ExprKind::kBinary, std::move(left), parse_unary(true), line, "**");
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Deeper guard(*this);
    const int line = cur().line;
    ExprPtr n;
    if (at_op("-") || at_op("+")) {
      const bool neg = at_op("-");
      advance();
      n = node(neg ? ExprKind::kNeg : ExprKind::kPos, line);
      n->a = parse_unary(false);
    } else {
      n = parse_primary();
    }
    n = parse_postfix(std::move(n));
    if (with_filter) n = parse_filter_expr(std::move(n));
    return n;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    if (t.kind == TokenKind::kName) {
      ExprPtr n;
      if (t.value == "true" || t.value == "True" || t.value == "false" || t.value == "False") {
        n = node(ExprKind::kConst, line);
        n->value = Value::boolean(t.value == "true" || t.value == "True");
      } else if (t.value == "none" || t.value == "None") {
        n = node(ExprKind::kConst, line);
        n->value = Value::none();
      } else {
        n = node(ExprKind::kName, line);
        n->name = t.value;
      }
      advance();
      return n;
    }
    if (t.kind == TokenKind::kString) {
      std::string s;
      while (cur().kind == TokenKind::kString) {
        s += cur().value;
        advance();
      }
      auto n = node(ExprKind::kConst, line);
      n->value = Value::string(std::move(s));
      return n;
    }
    if (t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat) {
      auto n = node(ExprKind::kConst, line);
      n->value = t.kind == TokenKind::kFloat ? Value::floating(std::strtod(t.value.c_str(), nullptr))
                                             : Value::integer(parse_int(t.value));
      advance();
      return n;
    }
    if (at_op("(")) {
      advance();
      ExprPtr n = parse_tuple(true, true, {});
      expect_op(")");
      return n;
    }
    if (at_op("[")) {
      advance();
      auto n = node(ExprKind::kList, line);
      while (!at_op("]")) {
        if (!n->items.empty()) expect_op(",");
        if (at_op("]")) break;
        n->items.push_back(parse_expression(true));
      }
      advance();
      return n;
    }
    if (at_op("{")) {
      advance();
      auto n = node(ExprKind::kDict, line);
      while (!at_op("}")) {
        if (!n->items.empty()) expect_op(",");
        if (at_op("}")) break;
        n->items.push_back(parse_expression(true));
        expect_op(":");
        n->items.push_back(parse_expression(true));
      }
      advance();
      return n;
    }
    fail("unexpected " + describe());
  }

  std::int64_t parse_int(const std::string& digits) {
    int base = 10;
    std::size_t skip = 0;
    if (digits.size() > 1 && digits[0] == '0') {
      const char p = static_cast<char>(digits[1] | 0x20);
      if (p == 'x') base = 16, skip = 2;
      if (p == 'o') base = 8, skip = 2;
      if (p == 'b') base = 2, skip = 2;
    }
    errno = 0;
    const long long v = std::strtoll(digits.c_str() + skip, nullptr, base);
    if (errno == ERANGE) fail("integer literal out of range");
    return v;
  }

  ExprPtr parse_postfix(ExprPtr n) {
    while (true) {
      if (at_op(".") || at_op("[")) {
        n = parse_subscript(std::move(n));
      } else if (at_op("(")) {
        n = parse_call(std::move(n));
      } else {
        return n;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr n) {
    while (true) {
      if (at_op("|")) {
        n = parse_filter(std::move(n));
      } else if (at_name("is")) {
        n = parse_test(std::move(n));
      } else if (at_op("(")) {
        n = parse_call(std::move(n));
      } else {
        return n;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target) {
    const int line = cur().line;
    if (at_op(".")) {
      advance();
      if (cur().kind == TokenKind::kName) {
        auto n = node(ExprKind::kGetAttr, line);
        n->a = std::move(target);
        n->name = cur().value;
        advance();
        return n;
      }
      if (cur().kind == TokenKind::kInteger) {
        auto n = node(ExprKind::kGetItem, line);
        n->a = std::move(target);
        n->b = node(ExprKind::kConst, line);
        n->b->value = Value::integer(parse_int(cur().value));
        advance();
        return n;
      }
      fail("expected name or number after '.'");
    }
    advance();  // [
    std::vector<ExprPtr> args;
    while (!at_op("]")) {
      if (!args.empty()) {
        expect_op(",");
        if (at_op("]")) break;
      }
      args.push_back(parse_subscribed());
    }
    advance();
    ExprPtr arg;
    if (args.size() == 1) {
      arg = std::move(args[0]);
    } else {
      // A slice is a subscript of its own: `x[1:2, 3]` would index with a tuple holding a slice,
      // which no list, string or dict accepts (and the slice node has no target to slice).
      for (const ExprPtr& a : args) {
        if (a->kind == ExprKind::kSlice) fail("a slice cannot be one of several subscripts");
      }
      arg = node(ExprKind::kTuple, line);
      arg->items = std::move(args);
    }
    if (arg->kind == ExprKind::kSlice) {
      arg->a = std::move(target);
      return arg;
    }
    auto n = node(ExprKind::kGetItem, line);
    n->a = std::move(target);
    n->b = std::move(arg);
    return n;
  }

  ExprPtr parse_subscribed() {
    const int line = cur().line;
    std::vector<ExprPtr> parts;
    if (at_op(":")) {
      advance();
      parts.push_back(nullptr);
    } else {
      ExprPtr e = parse_expression(true);
      if (!at_op(":")) return e;
      advance();
      parts.push_back(std::move(e));
    }
    if (at_op(":") || at_op("]") || at_op(",")) {
      parts.push_back(nullptr);
    } else {
      parts.push_back(parse_expression(true));
    }
    if (at_op(":")) {
      advance();
      parts.push_back(at_op("]") || at_op(",") ? nullptr : parse_expression(true));
    } else {
      parts.push_back(nullptr);
    }
    auto n = node(ExprKind::kSlice, line);
    n->items = std::move(parts);
    return n;
  }

  void parse_call_args(Expr& n) {
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) {
        expect_op(",");
        if (at_op(")")) break;
      }
      first = false;
      if (at_op("*")) {
        advance();
        n.star_args = parse_expression(true);
      } else if (at_op("**")) {
        advance();
        n.star_kwargs = parse_expression(true);
      } else if (cur().kind == TokenKind::kName && look().kind == TokenKind::kOperator && look().value == "=") {
        std::string key = cur().value;
        advance();
        advance();
        n.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!n.kwargs.empty()) fail("positional argument follows keyword argument");
        n.items.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr target) {
    auto n = node(ExprKind::kCall, cur().line);
    n->a = std::move(target);
    parse_call_args(*n);
    return n;
  }

  ExprPtr parse_filter(ExprPtr target, bool start_inline = false) {
    while (at_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      auto n = node(ExprKind::kFilter, cur().line);
      n->name = expect_name();
      while (at_op(".")) {
        advance();
        n->name += '.';  // two appends: GCC 12 warns falsely (-Wrestrict) on "." + string
      n->name += expect_name();
      }
      if (at_op("(")) parse_call_args(*n);
      n->a = std::move(target);
      target = std::move(n);
    }
    return target;
  }

  ExprPtr parse_test(ExprPtr target) {
    auto n = node(ExprKind::kTest, cur().line);
    advance();  // is
    if (at_name("not")) {
      advance();
      n->negated = true;
    }
    n->name = expect_name();
    while (at_op(".")) {
      advance();
      n->name += '.';  // two appends: GCC 12 warns falsely (-Wrestrict) on "." + string
      n->name += expect_name();
    }
    const auto k = cur().kind;
    if (at_op("(")) {
      parse_call_args(*n);
    } else if ((k == TokenKind::kName || k == TokenKind::kString || k == TokenKind::kInteger ||
                k == TokenKind::kFloat || at_op("[") || at_op("{")) &&
               !at_any_name({"else", "or", "and"})) {
      if (at_name("is")) fail("you cannot chain multiple tests with 'is'");
      n->items.push_back(parse_postfix(parse_primary()));
    }
    n->a = std::move(target);
    return n;
  }

  const std::vector<Token>& toks_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse_tokens(const std::vector<Token>& tokens) { return Parser(tokens).parse_all(); }

}  // namespace vkllm::tmpl
