# Tests of the tokenizer module (owned by that module).
# Boost.JSON reads Qwen2's vocab.json when the test builds its GGUF fixture.
find_package(Boost 1.81 CONFIG REQUIRED COMPONENTS json)
vkllm_add_test(NAME tokenizer
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/test_tokenizer.cpp
    ${CMAKE_CURRENT_LIST_DIR}/test_vocab_vectors.cpp
  LIBS vkllm_core Boost::json
  TIMEOUT 600)
