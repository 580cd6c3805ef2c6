# Sources of the tokenizer module (owned by that module).
# PCRE2 (UTF + Unicode properties) runs the BPE pre-tokenizer regexes; ICU (icu-uc) gives
# WordPiece its NFD, lowercase and category data. Both are Debian packages (libpcre2-dev,
# libicu-dev).
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(ICU_UC REQUIRED IMPORTED_TARGET icu-uc)
target_sources(vkllm_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/unicode.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pretokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/vocab.cpp
  ${CMAKE_CURRENT_LIST_DIR}/vocab_gguf.cpp
  ${CMAKE_CURRENT_LIST_DIR}/spm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bpe.cpp
  ${CMAKE_CURRENT_LIST_DIR}/wpm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp
)
target_link_libraries(vkllm_core PUBLIC PkgConfig::PCRE2 PRIVATE PkgConfig::ICU_UC)
