# Continuous batching policy (pure C++).
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/scheduler.cpp
)
