# Tests of the gguf module (owned by that module): type table and quantization, reader and
# writer round trips plus the real files in ../shared, malformed inputs A1-A30, mutation fuzz.
vkllm_add_test(NAME gguf
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/test_quant.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_reader.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_malformed.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_fuzz.cpp
  LIBS vkllm_core)
