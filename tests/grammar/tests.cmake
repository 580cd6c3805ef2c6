vkllm_add_test(NAME grammar SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grammar.cpp LIBS vkllm_core)
