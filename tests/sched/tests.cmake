vkllm_add_test(NAME scheduler SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scheduler.cpp LIBS vkllm_core)
