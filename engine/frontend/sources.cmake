# The request front end's text work (pure C++): prompt rendering and tokenizing, and generated
# text (detokenizing, stop strings, reasoning split).
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/prompt.cpp
  ${CMAKE_CURRENT_LIST_DIR}/text_output.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tool_calls.cpp
)
