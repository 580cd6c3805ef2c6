# Constrained decoding (pure C++): grammars over bytes (GBNF), JSON Schema to grammar, the parse
# state and the token masks it allows.
find_package(Boost 1.81 CONFIG REQUIRED COMPONENTS json)
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/grammar.cpp
  ${CMAKE_CURRENT_LIST_DIR}/matcher.cpp
  ${CMAKE_CURRENT_LIST_DIR}/json_schema.cpp
)
target_link_libraries(vkllm_core PUBLIC Boost::json)
