// Stop strings over streamed text: matched across token boundaries and never emitted. Text that
// could still be the start of a stop string is held back until it cannot. Pure C++.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vkllm::sample {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string emit;      // text safe to send now
    bool stopped = false;  // a stop string matched; `emit` ends right before it
  };
  // Appends decoded text (valid UTF-8 chunks) and returns what can be emitted.
  Result push(std::string_view text);
  // End of stream: whatever is held back.
  std::string finish();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace vkllm::sample
