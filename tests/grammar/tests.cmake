vkllm_add_test(NAME grammar SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grammar.cpp LIBS vkllm_core)
# The schemas the end-to-end test and the grammar benchmark use too.
target_compile_definitions(test_grammar PRIVATE VKLLM_SCHEMAS="${CMAKE_CURRENT_LIST_DIR}/schemas.json")
