// Owns the template module's error type: a bad or hostile template, or a request the template
// rejects (raise_exception), with the template line. Must not know the lexer, parser or interpreter.
#pragma once

#include <string>
#include <utility>

#include "common/error.hpp"

namespace vkllm::tmpl {

// Every failure of parsing or rendering a chat template. It is an InvalidRequest: the caller
// either sent a conversation the template rejects or is serving a model whose template is broken.
class TemplateError : public vkllm::InvalidRequest {
 public:
  // line 0: not yet known (the interpreter attaches the line of the expression that failed).
  explicit TemplateError(std::string detail, int line = 0, bool raised = false)
      : vkllm::InvalidRequest(format(detail, line, raised)), detail_(std::move(detail)), line_(line),
        raised_(raised) {}

  const std::string& detail() const noexcept { return detail_; }
  int line() const noexcept { return line_; }
  // True when the template itself called raise_exception(msg); detail() is then msg verbatim.
  bool raised() const noexcept { return raised_; }
  TemplateError with_line(int line) const { return TemplateError(detail_, line, raised_); }

 private:
  static std::string format(const std::string& detail, int line, bool raised) {
    std::string s = raised ? "chat template raised: " : "chat template: ";
    s += detail;
    if (line > 0) s += " (template line " + std::to_string(line) + ")";
    return s;
  }

  std::string detail_;
  int line_ = 0;
  bool raised_ = false;
};

}  // namespace vkllm::tmpl
