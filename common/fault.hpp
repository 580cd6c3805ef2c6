// Injected faults for the reliability tests (docs/ARCHITECTURE.md "Injected faults"). One hook,
// compiled into every build and inert unless armed: VKLLM_FAULT=<point>:<n>[,<point>:<n>...]
// makes the n-th pass (from 1) through <point> fail as the real failure would. A point may be
// named more than once (two device losses). Points:
//   alloc            vkAllocateMemory returns VK_ERROR_OUT_OF_DEVICE_MEMORY (load or run time)
//   descriptor_pool  vkCreateDescriptorPool returns VK_ERROR_OUT_OF_DEVICE_MEMORY (recording)
//   step_submit      a model step's vkQueueSubmit returns VK_ERROR_DEVICE_LOST
//   step_wait        a model step's wait returns VK_ERROR_DEVICE_LOST (after the step ran)
// Unarmed, a pass costs one relaxed atomic load.
#pragma once

#include <cstdint>
#include <string_view>

namespace vkllm::fault {

// Arms the faults of `spec` (the VKLLM_FAULT syntax; empty disarms) and zeroes the counts.
// Throws InvalidRequest naming what is malformed or an unknown point.
void arm(std::string_view spec);
// Arms from VKLLM_FAULT when set (the CLI calls it first; a malformed value stops the process).
void arm_from_env();
// One pass through `point`: true when an armed fault fires here (logged as a warning).
bool hit(std::string_view point);
// Passes through `point` since arm() (counted only while something is armed): a test aims a
// fault at the next pass with arm("point:" + std::to_string(passes("point") + 1)).
std::uint64_t passes(std::string_view point);

}  // namespace vkllm::fault
