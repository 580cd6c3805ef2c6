# Sampling-side logic (pure C++): parameters, penalty lists, stop strings.
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/stop.cpp
  ${CMAKE_CURRENT_LIST_DIR}/penalties.cpp
)
