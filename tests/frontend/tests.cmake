# Tests of the request front end's text work (pure C++, no device).
vkllm_add_test(NAME frontend SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_frontend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_tool_calls.cpp LIBS vkllm_core)
