#include "engine/sample/stop.hpp"

#include <algorithm>

#include "common/utf8.hpp"

namespace vkllm::sample {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

StopMatcher::Result StopMatcher::push(std::string_view text) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  held_ += text;
  // The earliest complete match wins.
  std::size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    r.emit = held_.substr(0, first);
    r.stopped = stopped_ = true;
    held_.clear();
    return r;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  std::size_t keep = 0;
  for (const std::string& s : stops_) {
    for (std::size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::size_t cut = held_.size() - keep;
  // Never split a UTF-8 sequence (a stop string may begin mid-character only by bytes, which
  // cannot happen for valid text, but keep the emitted part whole anyway).
  cut = utf8_complete_prefix(std::string_view(held_).substr(0, cut));
  r.emit = held_.substr(0, cut);
  held_.erase(0, cut);
  return r;
}

std::string StopMatcher::finish() {
  std::string rest = stopped_ ? std::string() : std::move(held_);
  held_.clear();
  return rest;
}

}  // namespace vkllm::sample
