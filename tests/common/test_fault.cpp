// The fault hook's spec and counting (docs/ARCHITECTURE.md "Injected faults"): the n-th pass
// fires, a point may fire twice, counts start at arm(), an empty spec disarms, and a malformed
// spec is refused naming the item.
#include <doctest/doctest.h>

#include <string>

#include "common/error.hpp"
#include "common/fault.hpp"

using namespace vkllm;

TEST_CASE("VKLLM_FAULT: the n-th pass of a point fails, each listed pass once") {
  fault::arm("step_wait:2, alloc:1,step_wait:4");
  std::string fired;
  for (int i = 0; i < 6; ++i) fired += fault::hit("step_wait") ? '1' : '0';
  CHECK(fired == "010100");
  CHECK(fault::passes("step_wait") == 6);
  CHECK(fault::hit("alloc"));
  CHECK_FALSE(fault::hit("alloc"));
  CHECK_FALSE(fault::hit("descriptor_pool"));
  fault::arm("step_submit:1");  // counts start again
  CHECK(fault::passes("step_wait") == 0);
  CHECK(fault::hit("step_submit"));
  fault::arm("");
  CHECK_FALSE(fault::hit("step_submit"));
  CHECK(fault::passes("step_submit") == 0);  // not counted while disarmed
}

TEST_CASE("VKLLM_FAULT: a malformed spec is refused naming the item") {
  for (const char* bad : {"nowhere:1", "alloc", "alloc:0", "alloc:-1", "alloc:1x", "alloc:", "alloc:1,,:2"}) {
    CAPTURE(bad);
    try {
      fault::arm(bad);
      FAIL("accepted");
    } catch (const InvalidRequest& e) {
      CHECK(std::string(e.what()).find("VKLLM_FAULT") != std::string::npos);
    }
  }
  CHECK_FALSE(fault::hit("alloc"));  // a refused spec arms nothing
  CHECK_THROWS_AS(fault::passes("nowhere"), std::logic_error);
}
