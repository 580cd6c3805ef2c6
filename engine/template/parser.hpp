// Owns building the syntax tree from tokens with jinja2's grammar and operator precedence.
// Must not know how the tree is evaluated, nor any filter, test or global by meaning.
#pragma once

#include <vector>

#include "engine/template/ast.hpp"
#include "engine/template/lexer.hpp"

namespace vkllm::tmpl {

// Throws TemplateError with the line of the offending token. Nesting deeper than
// kMaxParseDepth (expressions or blocks) is refused so a hostile template cannot blow the stack.
inline constexpr int kMaxParseDepth = 128;
Body parse_tokens(const std::vector<Token>& tokens);

}  // namespace vkllm::tmpl
