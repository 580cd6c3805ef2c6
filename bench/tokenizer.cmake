# vkllm-bench-tokenizer: tokenizer encode/decode throughput on mixed text (prose, code, CJK).
# Boost.JSON is needed by the test fixture header that builds the Qwen2 GGUF from vocab.json.
find_package(Boost 1.81 CONFIG REQUIRED COMPONENTS json)
add_executable(vkllm-bench-tokenizer ${CMAKE_CURRENT_LIST_DIR}/tokenizer_bench.cpp)
target_link_libraries(vkllm-bench-tokenizer PRIVATE vkllm_core Boost::json CLI11::CLI11 fmt::fmt)

# vkllm-bench-grammar: constrained decoding's mask time per step over Qwen2's vocabulary.
add_executable(vkllm-bench-grammar ${CMAKE_CURRENT_LIST_DIR}/grammar_bench.cpp)
target_link_libraries(vkllm-bench-grammar PRIVATE vkllm_core Boost::json CLI11::CLI11 fmt::fmt)
