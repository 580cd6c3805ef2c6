# `vkllm tokenize`, `vkllm chat-template` and `vkllm info` end to end on real files from ../shared:
# exact ids, exact round trip, exact rendered prompts (the ChatML fallback and a model template).
# Run by ctest (cli_text) with -DVKLLM=<vkllm> -DSHARED=<../shared> -DWORK=<scratch dir>.
if(NOT IS_DIRECTORY "${SHARED}/models/stories260K")
  message(STATUS "SKIPPED: ../shared not found; vkllm tokenize/chat-template not checked")
  return()
endif()
set(model "${SHARED}/models/stories260K/stories260K.gguf")

function(run_ok out_var)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(expect name actual expected)
  if(NOT actual STREQUAL expected)
    message(FATAL_ERROR "${name}:\n  expected [${expected}]\n  got      [${actual}]")
  endif()
  message(STATUS "${name}: ok")
endfunction()

# ../shared/models/stories260K/EXPECTED.md gives these ids.
run_ok(ids ${VKLLM} tokenize -m ${model} --text "Once upon a time")
expect("tokenize" "${ids}" "[1,403,407,261,378]\n")
run_ok(text ${VKLLM} tokenize -m ${model} --detokenize --text "[1,403,407,261,378]")
expect("detokenize" "${text}" "Once upon a time")

file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/messages.json
  [=[[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, 世界"}]]=])
# stories260K has no template: the ChatML fallback, rendered exactly.
run_ok(chatml ${VKLLM} chat-template -m ${model} --messages ${WORK}/messages.json
  --add-generation-prompt)
expect("chat-template (ChatML fallback)" "${chatml}"
  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi, 世界<|im_end|>\n<|im_start|>assistant\n")
# A template file overrides; Qwen2.5's own template with its default system prompt logic.
run_ok(qwen ${VKLLM} chat-template --chat-template ${SHARED}/templates/Qwen-Qwen2.5-7B-Instruct.jinja
  --messages ${WORK}/messages.json)
expect("chat-template (Qwen2.5 template)" "${qwen}"
  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi, 世界<|im_end|>\n")

# `vkllm info`: header, metadata and tensor table of the real file.
run_ok(info ${VKLLM} info -m ${model})
foreach(fact "GGUF v3, alignment 32" "48 tensors, 292800 parameters" "llama.block_count"
        "= 5" "blk.4.ffn_up.weight" "[64, 172]")
  string(FIND "${info}" "${fact}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "vkllm info lacks '${fact}':\n${info}")
  endif()
endforeach()
message(STATUS "info: ok")

# Bad input is a clear error and a non-zero exit, not a crash.
file(WRITE ${WORK}/garbage.gguf "GGUF\x03garbage")
execute_process(COMMAND ${VKLLM} info -m ${WORK}/garbage.gguf RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "garbage.gguf")
  message(FATAL_ERROR "a malformed GGUF must exit 1 naming the file (rc ${rc}): ${err}")
endif()
message(STATUS "malformed GGUF: ${err}")
execute_process(COMMAND ${VKLLM} tokenize -m ${WORK}/missing.gguf --text x
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "missing.gguf")
  message(FATAL_ERROR "a missing model must fail naming the file (rc ${rc}): ${err}")
endif()
file(WRITE ${WORK}/bad.json "[{\"role\": ")
execute_process(COMMAND ${VKLLM} chat-template -m ${model} --messages ${WORK}/bad.json
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "malformed messages must exit 1 with a message (rc ${rc}): ${err}")
endif()
message(STATUS "bad input: ${err}")
