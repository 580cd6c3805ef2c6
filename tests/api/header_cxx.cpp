// include/vkllm/vkllm.h compiles as C++ (C++11 and the project's C++20, -Werror): built, not run.
#include <vkllm/vkllm.h>

int vkllm_header_cxx_check();
int vkllm_header_cxx_check() {
  vkllm_model_options o;
  vkllm_model_options_init(&o);
  return o.struct_size == sizeof o ? 0 : 1;
}
