// UTF-8 coding shared by every room that handles text (tokenizers, chat templates, the server's
// streams): strict decoding, encoding, validity and the incomplete-tail test. Knows nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vkllm {

using std::size_t;
using std::uint8_t;

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for a stray continuation
// byte or an invalid lead, so that a scan always advances).
size_t utf8_seq_len(uint8_t lead) noexcept;

// Decodes the code point at text[pos] and advances pos. An invalid or truncated sequence
// yields kReplacementChar and advances by one byte.
char32_t utf8_next(std::string_view text, size_t& pos) noexcept;

// Appends the UTF-8 encoding of `cp` (U+FFFD for surrogates and values above U+10FFFF).
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(char32_t cp);

// Length of the longest prefix of `text` that does not end inside an incomplete (but so far
// valid) UTF-8 sequence. Bytes that can never become valid are not held back: the streaming
// decoder must not stall forever on garbage.
size_t utf8_complete_prefix(std::string_view text) noexcept;

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool utf8_is_valid(std::string_view text) noexcept;

// `text` with every ill-formed sequence replaced by U+FFFD.
std::string utf8_sanitize(std::string_view text);

}  // namespace vkllm
