# ctest capi: the C API as an app uses it (docs/ARCHITECTURE.md "The C API").
#   1. `cmake --install` of the library and its development files into WORK/prefix;
#   2. libvkllm.so's dynamic symbols are vkllm_* only, and its SONAME is libvkllm.so.<major>;
#   3. test_capi.c compiled as C99 with `pkg-config --cflags --libs vkllm` and run (with VALIDATION:
#      the Khronos layer on, any message a failure);
#   4. with STATIC: the same program linked against libvkllm.a with `pkg-config --static`, run;
#   5. with STATIC: examples/ built on their own against the installed CMake package.
# Inputs: BUILD, SOURCE, EXAMPLES, WORK, CC, FLAGS (a list), STATIC, VALIDATION (0/1), SHARED.
if(DEFINED ENV{VKLLM_SHARED_DIR})
  set(SHARED $ENV{VKLLM_SHARED_DIR})
endif()
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
set(components lib dev)
if(STATIC)
  list(APPEND components static)
endif()
foreach(c ${components})
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix} --component ${c}
                  RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cmake --install --component ${c} failed (${rc})")
  endif()
endforeach()
file(GLOB_RECURSE pcs ${prefix}/*/vkllm.pc)
list(LENGTH pcs n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected one installed vkllm.pc, found: ${pcs}")
endif()
get_filename_component(pcdir ${pcs} DIRECTORY)
get_filename_component(libdir ${pcdir} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pcdir})
foreach(f ${prefix}/include/vkllm/vkllm.h ${libdir}/cmake/vkllm/vkllm-config.cmake)
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# 2. Exports and SONAME.
set(so ${libdir}/libvkllm.so)
execute_process(COMMAND nm -D --defined-only ${so} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm -D ${so} failed")
endif()
string(REPLACE "\n" ";" lines "${syms}")
set(api 0)
set(foreign "")
foreach(line ${lines})
  if(line MATCHES "^[0-9a-f]* ([A-Za-z]) (.*)$")
    set(kind ${CMAKE_MATCH_1})
    set(name ${CMAKE_MATCH_2})
    if(name MATCHES "^vkllm_")
      math(EXPR api "${api} + 1")
    elseif(NOT (kind STREQUAL "A" AND name MATCHES "^VKLLM_[0-9]+$"))  # the version node
      list(APPEND foreign ${name})
    endif()
  endif()
endforeach()
if(foreign)
  list(LENGTH foreign nf)
  list(SUBLIST foreign 0 20 shown)
  message(FATAL_ERROR "libvkllm.so exports ${nf} symbols besides vkllm_*: ${shown}")
endif()
if(api LESS 20)
  message(FATAL_ERROR "libvkllm.so exports only ${api} vkllm_* symbols")
endif()
execute_process(COMMAND objdump -p ${so} OUTPUT_VARIABLE dyn)
if(NOT dyn MATCHES "SONAME +libvkllm\\.so\\.[0-9]+\n")
  message(FATAL_ERROR "libvkllm.so has no versioned SONAME")
endif()
message(STATUS "libvkllm.so: ${api} symbols, all vkllm_*; versioned SONAME")

# 3. The C program through pkg-config.
execute_process(COMMAND pkg-config --cflags --libs vkllm OUTPUT_VARIABLE pc RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs vkllm failed")
endif()
separate_arguments(pc UNIX_COMMAND "${pc}")
set(cflags -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pthread ${FLAGS})
execute_process(COMMAND ${CC} ${cflags} ${SOURCE} ${pc} -o ${WORK}/test_capi
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling test_capi.c against the installed library failed:\n${err}")
endif()
set(ENV{LD_LIBRARY_PATH} ${libdir})
set(ENV{VKLLM_VALIDATION} ${VALIDATION})
execute_process(COMMAND ${WORK}/test_capi ${SHARED} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("${out}${err}")
if(rc EQUAL 77)
  message("SKIP: stories260K is not there")
  return()
elseif(NOT rc EQUAL 0)
  message(FATAL_ERROR "test_capi failed (${rc})")
endif()

# 4. The static archive: everything the program needs comes from it and pkg-config --static.
if(STATIC)
  execute_process(COMMAND pkg-config --static --cflags --libs vkllm OUTPUT_VARIABLE pcs
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  string(REPLACE "-lvkllm" "${libdir}/libvkllm.a" pcs "${pcs}")
  separate_arguments(pcs UNIX_COMMAND "${pcs}")
  execute_process(COMMAND ${CC} ${cflags} ${SOURCE} ${pcs} -o ${WORK}/test_capi_static
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "linking test_capi.c against libvkllm.a failed:\n${err}")
  endif()
  execute_process(COMMAND ldd ${WORK}/test_capi_static OUTPUT_VARIABLE deps)
  if(deps MATCHES "libvkllm")
    message(FATAL_ERROR "test_capi_static still loads libvkllm.so:\n${deps}")
  endif()
  execute_process(COMMAND ${WORK}/test_capi_static ${SHARED} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "test_capi linked statically failed (${rc}):\n${out}${err}")
  endif()
  message(STATUS "libvkllm.a: test_capi linked statically passes too")
endif()

# 5. examples/ on their own against the installed package (find_package(vkllm)), as an app's
# build would use it.
if(STATIC)
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${EXAMPLES} -B ${WORK}/examples
                  -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK}/examples
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  endif()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "examples/ against the installed package failed:\n${out}${err}")
  endif()
  message(STATUS "examples/: built against the installed CMake package")
endif()
