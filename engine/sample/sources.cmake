# Sampling-side text logic (pure C++): stop strings.
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/stop.cpp
)
