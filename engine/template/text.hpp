// Owns the Python str semantics the template runtime needs on UTF-8 bytes: code-point counting,
// slicing, whitespace, case mapping, splitlines and repr escaping. Must not know about Values or Jinja.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vkllm::tmpl::text {

// Decodes UTF-8 leniently: an invalid byte becomes U+FFFD (templates see validated input anyway).
std::u32string decode(std::string_view s);
std::string encode(std::u32string_view s);

// Number of code points (Python len(str)).
std::size_t length(std::string_view s);
bool is_ascii(std::string_view s);

// Python str.isspace() for one code point.
bool is_space(char32_t cp);
// Python's \w for one code point, approximated: ASCII alnum/_ and every non-ASCII letter-like cp.
bool is_word(char32_t cp);

// str.strip/lstrip/rstrip; chars == nullptr means Python whitespace.
std::string strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit) / str.split() on whitespace runs when sep == nullptr; rsplit likewise.
std::vector<std::string> split(std::string_view s, const std::string* sep, long long maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long long maxsplit);
// str.splitlines(keepends=False).
std::vector<std::string> splitlines(std::string_view s);
// str.replace(old, new, count) with count < 0 meaning all.
std::string replace(std::string_view s, std::string_view from, std::string_view to, long long count);

// Case mapping: ASCII plus Latin-1, Greek and Cyrillic basic ranges.
char32_t to_upper(char32_t cp);
char32_t to_lower(char32_t cp);
bool is_alpha(char32_t cp);
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string title(std::string_view s);       // Python str.title()
std::string capitalize(std::string_view s);  // Python str.capitalize()

// Python repr() of a str, quotes included.
std::string repr(std::string_view s);

}  // namespace vkllm::tmpl::text
