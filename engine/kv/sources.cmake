# KV block bookkeeping (pure C++): block pool with prefix cache.
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/block_pool.cpp
)
