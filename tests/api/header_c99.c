/* include/vkllm/vkllm.h compiles as strict C99 (-std=c99 -pedantic-errors -Werror): built, not run. */
#include <vkllm/vkllm.h>

int vkllm_header_c99_check(void);
int vkllm_header_c99_check(void) {
  vkllm_request rq;
  vkllm_request_init(&rq);
  return rq.struct_size == sizeof rq ? 0 : 1;
}
