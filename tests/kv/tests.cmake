vkllm_add_test(NAME block_pool SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_block_pool.cpp LIBS vkllm_core)
