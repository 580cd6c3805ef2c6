# Tests of the template module (owned by that module). The reference test runs the original
# Jinja (Debian's python3-jinja2, installed by scripts/install-deps.sh) as an oracle; a missing
# python3-jinja2 fails the test rather than skipping it.
set(VKLLM_TEMPLATE_PYTHON /usr/bin/python3 CACHE FILEPATH "python3 that has jinja2 (template test oracle)")
vkllm_add_test(NAME template
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_template.cpp
          ${CMAKE_CURRENT_LIST_DIR}/test_template_reference.cpp
  LIBS vkllm_core)
target_compile_definitions(test_template PRIVATE
  VKLLM_TEMPLATE_PYTHON="${VKLLM_TEMPLATE_PYTHON}"
  VKLLM_TEMPLATE_TEST_DIR="${CMAKE_CURRENT_LIST_DIR}")
