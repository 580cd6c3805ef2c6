# The include rules of docs/ARCHITECTURE.md "Rooms", checked over the source tree (ctest: layering).
#   - only platform/*.cpp include Vulkan headers;
#   - platform/ includes nothing of engine/, server/, shaders/, cli/;
#   - the core modules (engine/gguf, tokenizer, template, kv, sched, sample) include nothing of
#     platform/, shaders/, engine/ops, engine/model, server/;
#   - engine/ includes nothing of server/ or cli/;
#   - nothing but api/ includes the C API (api/, vkllm/vkllm.h).
file(GLOB_RECURSE sources RELATIVE ${ROOT}
  ${ROOT}/common/*.?pp ${ROOT}/platform/*.?pp ${ROOT}/engine/*.?pp ${ROOT}/server/*.?pp
  ${ROOT}/shaders/*.?pp ${ROOT}/cli/*.?pp ${ROOT}/api/*.?pp)
set(core_dirs "engine/gguf/|engine/tokenizer/|engine/template/|engine/kv/|engine/sched/|engine/sample/|engine/frontend/")
set(failures "")
foreach(f ${sources})
  file(STRINGS ${ROOT}/${f} includes REGEX "^[ \t]*#[ \t]*include")
  foreach(line ${includes})
    set(bad "")
    if(line MATCHES "[<\"]vulkan/" AND NOT f MATCHES "^platform/[^/]*\\.cpp$")
      set(bad "Vulkan header outside platform/*.cpp")
    elseif(f MATCHES "^platform/" AND line MATCHES "\"(engine|server|shaders|cli)/")
      set(bad "platform/ must not know the rooms above it")
    elseif(f MATCHES "^(${core_dirs})" AND
           line MATCHES "\"(platform/|shaders/|engine/ops/|engine/model/|server/|cli/)")
      set(bad "vkllm_core must stay free of Vulkan and the engine")
    elseif(f MATCHES "^(engine|common)/" AND line MATCHES "\"(server|cli)/")
      set(bad "engine/ must not know server/ or cli/")
    elseif(NOT f MATCHES "^api/" AND line MATCHES "[<\"](api/|vkllm/vkllm\\.h)")
      set(bad "only api/ implements the C API; the rooms below it must not know it")
    endif()
    if(bad)
      string(STRIP "${line}" line)
      list(APPEND failures "${f}: ${line} (${bad})")
    endif()
  endforeach()
endforeach()
list(LENGTH sources n)
if(failures)
  string(REPLACE ";" "\n  " failures "${failures}")
  message(FATAL_ERROR "layering violations:\n  ${failures}")
endif()
message(STATUS "layering: ${n} files follow the include rules")
