vkllm_add_test(NAME common SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_fault.cpp LIBS vkllm_common)
