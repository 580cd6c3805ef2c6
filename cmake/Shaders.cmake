# The one shader build path (docs/ARCHITECTURE.md, shaders):
#   glslang (with -D defines, depfile) -> spirv-val -> spirv-opt -O -> spirv-val -> embedded bytes
# plus configure-time probes for optional extensions, so a glslang that cannot compile one still
# builds everything else.

find_program(VKLLM_GLSLANG NAMES glslang glslangValidator
  HINTS ${VKLLM_TOOLCHAIN}/bin NO_DEFAULT_PATH)
find_program(VKLLM_GLSLANG NAMES glslang glslangValidator REQUIRED)
find_program(VKLLM_SPIRV_VAL NAMES spirv-val HINTS ${VKLLM_TOOLCHAIN}/bin NO_DEFAULT_PATH)
find_program(VKLLM_SPIRV_VAL NAMES spirv-val REQUIRED)
find_program(VKLLM_SPIRV_OPT NAMES spirv-opt HINTS ${VKLLM_TOOLCHAIN}/bin NO_DEFAULT_PATH)
find_program(VKLLM_SPIRV_OPT NAMES spirv-opt REQUIRED)

execute_process(COMMAND ${VKLLM_GLSLANG} --version OUTPUT_VARIABLE _gl_ver ERROR_QUIET)
string(REGEX MATCH "Glslang Version: [^\n]*" _gl_ver "${_gl_ver}")
execute_process(COMMAND ${VKLLM_SPIRV_VAL} --version OUTPUT_VARIABLE _sv_ver ERROR_QUIET)
string(REGEX MATCH "SPIRV-Tools v[^ \n]*" _sv_ver "${_sv_ver}")
message(STATUS "shaders: ${VKLLM_GLSLANG} (${_gl_ver}), ${VKLLM_SPIRV_VAL} (${_sv_ver})")

# SPIR-V target of every shader. Vulkan 1.2 is the floor (docs/ARCHITECTURE.md); probes of newer
# extensions target 1.3, which they need.
set(VKLLM_SHADER_ENV vulkan1.2)

# vkllm_probe_shader(<NAME> <description> <target-env> <glsl source>)
# Compiles and validates a tiny shader; sets VKLLM_SHADER_HAS_<NAME> and reports the outcome.
function(vkllm_probe_shader name description env source)
  set(dir ${CMAKE_BINARY_DIR}/shader_probes)
  file(MAKE_DIRECTORY ${dir})
  file(WRITE ${dir}/${name}.comp "${source}")
  execute_process(
    COMMAND ${VKLLM_GLSLANG} -V --target-env ${env} -o ${dir}/${name}.spv ${dir}/${name}.comp
    RESULT_VARIABLE compile_rc OUTPUT_VARIABLE compile_out ERROR_VARIABLE compile_out)
  set(ok FALSE)
  if(compile_rc EQUAL 0)
    execute_process(COMMAND ${VKLLM_SPIRV_VAL} --target-env ${env} ${dir}/${name}.spv
      RESULT_VARIABLE val_rc OUTPUT_VARIABLE val_out ERROR_VARIABLE val_out)
    if(val_rc EQUAL 0)
      set(ok TRUE)
      message(STATUS "shader probe: ${description}: compiles and validates")
    else()
      string(STRIP "${val_out}" val_out)
      message(STATUS "shader probe: ${description}: compiles, spirv-val rejects it (${val_out})")
    endif()
  else()
    string(REGEX MATCH "ERROR:[^\n]*" first_error "${compile_out}")
    message(STATUS "shader probe: ${description}: glslang rejects it (${first_error})")
  endif()
  set(VKLLM_SHADER_HAS_${name} ${ok} PARENT_SCOPE)
endfunction()

vkllm_probe_shader(FLOAT16 "float16 arithmetic (GL_EXT_shader_explicit_arithmetic_types_float16)"
  vulkan1.2 [=[
#version 450
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { float16_t v[]; };
void main() { v[gl_GlobalInvocationID.x] = v[gl_GlobalInvocationID.x] * float16_t(2.0); }
]=])

vkllm_probe_shader(INTEGER_DOT "integer dot product (GL_EXT_integer_dot_product)" vulkan1.3 [=[
#version 450
#extension GL_EXT_integer_dot_product : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
layout(local_size_x = 64) in;
layout(binding = 0) buffer B { int32_t a[]; };
void main() {
  uint i = gl_GlobalInvocationID.x;
  a[i] = dotPacked4x8AccSatEXT(a[i], a[i + 1], a[i + 2]);
}
]=])

vkllm_probe_shader(COOPMAT "cooperative matrix (GL_KHR_cooperative_matrix)" vulkan1.3 [=[
#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(local_size_x = 32) in;
layout(binding = 0) buffer A { float16_t a[]; };
layout(binding = 1) buffer C { float c[]; };
void main() {
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> ma;
  coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> mb;
  coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
  coopMatLoad(ma, a, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
  coopMatLoad(mb, a, 256, 16, gl_CooperativeMatrixLayoutRowMajor);
  acc = coopMatMulAdd(ma, mb, acc);
  coopMatStore(acc, c, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
}
]=])

# vkllm_shader(VARIANT name SOURCE file.comp [DEFINES A=1 B] [REQUIRES PROBE] WHY "reason")
# One row of the variant table: compiles SOURCE with the defines into an embedded blob named
# VARIANT. A row whose probe failed is left out of the build (and out of the registry).
set_property(GLOBAL PROPERTY VKLLM_SHADER_VARIANTS "")
set_property(GLOBAL PROPERTY VKLLM_SHADER_SPVS "")
function(vkllm_shader)
  cmake_parse_arguments(S "" "VARIANT;SOURCE;WHY;ENV" "DEFINES;REQUIRES" ${ARGN})
  if(NOT S_WHY)
    message(FATAL_ERROR "shader variant ${S_VARIANT}: every row says WHY it exists")
  endif()
  foreach(req ${S_REQUIRES})
    if(NOT VKLLM_SHADER_HAS_${req})
      message(STATUS "shader ${S_VARIANT}: skipped, toolchain lacks ${req}")
      return()
    endif()
  endforeach()
  if(NOT S_ENV)
    set(S_ENV ${VKLLM_SHADER_ENV})
  endif()
  set(out ${CMAKE_BINARY_DIR}/spirv)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${S_SOURCE})
  set(defs "")
  foreach(d ${S_DEFINES})
    list(APPEND defs -D${d})
  endforeach()
  add_custom_command(
    OUTPUT ${out}/${S_VARIANT}.spv
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
    COMMAND ${VKLLM_GLSLANG} -V --quiet --target-env ${S_ENV} -S comp ${defs}
            -I${CMAKE_CURRENT_SOURCE_DIR}/include --depfile ${out}/${S_VARIANT}.d
            -o ${out}/${S_VARIANT}.raw.spv ${src}
    COMMAND ${VKLLM_SPIRV_VAL} --target-env ${S_ENV} ${out}/${S_VARIANT}.raw.spv
    COMMAND ${VKLLM_SPIRV_OPT} -O --target-env=${S_ENV} ${out}/${S_VARIANT}.raw.spv
            -o ${out}/${S_VARIANT}.spv
    COMMAND ${VKLLM_SPIRV_VAL} --target-env ${S_ENV} ${out}/${S_VARIANT}.spv
    DEPENDS ${src}
    DEPFILE ${out}/${S_VARIANT}.d
    COMMENT "shader ${S_VARIANT}: glslang -> spirv-val -> spirv-opt"
    VERBATIM)
  set_property(GLOBAL APPEND PROPERTY VKLLM_SHADER_VARIANTS ${S_VARIANT})
  set_property(GLOBAL APPEND PROPERTY VKLLM_SHADER_SPVS ${out}/${S_VARIANT}.spv)
endfunction()

# vkllm_embed_shaders(<target>): after all rows, generates the registry (enum + bytes) and a
# static library <target> that holds it.
function(vkllm_embed_shaders target)
  get_property(variants GLOBAL PROPERTY VKLLM_SHADER_VARIANTS)
  get_property(spvs GLOBAL PROPERTY VKLLM_SHADER_SPVS)
  set(gen ${CMAKE_BINARY_DIR}/generated/shaders)
  add_custom_command(
    OUTPUT ${gen}/shader_blobs.cpp ${gen}/shader_ids.hpp
    COMMAND ${CMAKE_COMMAND} -DOUT_DIR=${gen} -DSPIRV_DIR=${CMAKE_BINARY_DIR}/spirv
            "-DVARIANTS=${variants}" -P ${PROJECT_SOURCE_DIR}/cmake/embed_spirv.cmake
    DEPENDS ${spvs} ${PROJECT_SOURCE_DIR}/cmake/embed_spirv.cmake
    COMMENT "embedding the SPIR-V of the shader variants"
    VERBATIM)
  add_library(${target} STATIC ${gen}/shader_blobs.cpp registry.cpp)
  target_include_directories(${target} PUBLIC ${CMAKE_BINARY_DIR}/generated ${PROJECT_SOURCE_DIR})
endfunction()
