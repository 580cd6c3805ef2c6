# Model description (pure C++): config from GGUF, synthetic model maker.
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/synthetic.cpp
)
