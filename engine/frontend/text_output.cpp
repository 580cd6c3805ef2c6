#include "engine/frontend/text_output.hpp"

#include <algorithm>

namespace vkllm::frontend {
namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
std::size_t partial_tag(std::string_view s, std::string_view tag) {
  for (std::size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n) {
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

TextDelta ReasoningSplitter::push(std::string_view text) {
  TextDelta out;
  held_ += text;
  for (;;) {
    if (thinking_) {
      const std::size_t at = held_.find(kClose);
      if (at == std::string::npos) {
        const std::size_t keep = partial_tag(held_, kClose);
        out.reasoning += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
      }
      out.reasoning += held_.substr(0, at);
      held_.erase(0, at + kClose.size());
      thinking_ = false;
      after_thinking_ = true;
      continue;
    }
    if (!seen_answer_) {
      // The answer conventionally follows the thinking after blank lines.
      if (after_thinking_) held_.erase(0, std::min(held_.find_first_not_of('\n'), held_.size()));
      const std::size_t pos = held_.find_first_not_of(" \n");
      if (pos == std::string::npos) return out;  // only whitespace yet: a <think> may follow
      const std::string_view rest = std::string_view(held_).substr(pos);
      if (!after_thinking_ && rest.starts_with(kOpen)) {
        held_.erase(0, pos + kOpen.size());
        thinking_ = true;
        continue;
      }
      if (!after_thinking_ && rest.size() < kOpen.size() && kOpen.starts_with(rest)) return out;
      seen_answer_ = true;
    }
    out.content += held_;
    held_.clear();
    return out;
  }
}

TextDelta ReasoningSplitter::finish() {
  TextDelta out;
  (thinking_ ? out.reasoning : out.content) = std::move(held_);
  held_.clear();
  return out;
}

TextOutput::TextOutput(const tok::Tokenizer& tokenizer, TextOutputOptions options)
    : decoder_(tokenizer, tok::DecodeOptions{.show_special = options.show_special}),
      stops_(std::move(options.stop)),
      reasoning_(options.reasoning),
      splitter_(options.starts_in_reasoning) {}

TextDelta TextOutput::split(std::string text) {
  if (!reasoning_) return TextDelta{std::move(text), {}};
  return splitter_.push(text);
}

TextDelta TextOutput::push(std::uint32_t token) {
  if (stopped_) return {};
  const sample::StopMatcher::Result r = stops_.push(decoder_.push(static_cast<tok::TokenId>(token)));
  stopped_ = r.stopped;
  return split(r.emit);
}

TextDelta TextOutput::finish() {
  std::string text;
  if (!stopped_) {
    const sample::StopMatcher::Result r = stops_.push(decoder_.finish());
    text = r.emit;
    stopped_ = r.stopped;
    if (!r.stopped) text += stops_.finish();
  }
  TextDelta out = split(std::move(text));
  if (reasoning_) {
    TextDelta rest = splitter_.finish();
    out.content += rest.content;
    out.reasoning += rest.reasoning;
  }
  return out;
}

}  // namespace vkllm::frontend
