// Owns turning template source into tokens exactly as jinja2's lexer does with trim_blocks and
// lstrip_blocks on (whitespace control, raw blocks, comments, string escapes). Must not know the AST.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vkllm::tmpl {

enum class TokenKind {
  kData,        // literal text (value)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,      // value is the decoded string
  kInteger,     // value is the digits (underscores removed; may carry 0x/0o/0b)
  kFloat,
  kOperator,    // value is the operator text
  kEof,
};

struct Token {
  TokenKind kind;
  std::string value;
  int line;
};

// Throws TemplateError with the line on unterminated tags, strings or bad characters.
std::vector<Token> tokenize(std::string_view source);

}  // namespace vkllm::tmpl
