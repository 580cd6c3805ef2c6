// UTF-8 coding, GPT-2's byte<->unicode map and the few Unicode properties the tokenizers need.
// Knows nothing of vocabularies or token ids: text in, text or code points out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/utf8.hpp"

namespace vkllm::tok {

// UTF-8 coding (utf8_next, utf8_append, utf8_complete_prefix, ...) lives in common/utf8.hpp,
// in namespace vkllm, so it is found here unqualified.

// GPT-2's reversible byte -> printable code point map (bytes_to_unicode): printable Latin-1
// bytes map to themselves, the other 68 to U+0100..U+0143 in byte order. Byte-level BPE
// vocabularies store token text in this alphabet.
char32_t byte_to_unicode(uint8_t byte) noexcept;
// The inverse; -1 for code points outside the map's image.
int unicode_to_byte(char32_t cp) noexcept;
// Maps every byte of `raw` through byte_to_unicode (the result is UTF-8).
std::string bytes_to_unicode_text(std::string_view raw);
// Inverse of bytes_to_unicode_text; false when some code point is outside the map's image
// (the caller keeps its raw text then).
bool unicode_text_to_bytes(std::string_view text, std::string& out);

// Properties for BERT's normalizer and pre-tokenizer (backed by ICU).
bool is_whitespace(char32_t cp) noexcept;   // White_Space, as BERT's normalizer sees it
bool is_control(char32_t cp) noexcept;      // category C* except \t \n \r
bool is_bert_punct(char32_t cp) noexcept;   // ASCII punctuation/symbols or Unicode P*
bool is_cjk_ideograph(char32_t cp) noexcept;  // BERT's _is_chinese_char ranges
bool is_nonspacing_mark(char32_t cp) noexcept;  // general category Mn
char32_t to_lower(char32_t cp) noexcept;    // simple lowercase mapping
// Canonical decomposition (NFD) of UTF-8 text.
std::string nfd(std::string_view text);

}  // namespace vkllm::tok
