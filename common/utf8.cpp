// UTF-8 coding (see utf8.hpp), checked against Unicode Table 3-7: overlongs, surrogates and
// values above U+10FFFF are ill-formed. Knows nothing of tokens or templates.
#include "common/utf8.hpp"

namespace vkllm {
namespace {

// Valid range of the second byte for a given lead byte (Unicode Table 3-7), so that
// overlongs, surrogates and values above U+10FFFF are rejected at the first wrong byte.
struct SecondRange {
  uint8_t lo;
  uint8_t hi;
};
SecondRange second_range(uint8_t lead) noexcept {
  if (lead == 0xE0) return {0xA0, 0xBF};
  if (lead == 0xED) return {0x80, 0x9F};
  if (lead == 0xF0) return {0x90, 0xBF};
  if (lead == 0xF4) return {0x80, 0x8F};
  return {0x80, 0xBF};
}

// Expected length for a lead byte; 0 when the byte can never start a sequence.
size_t lead_len(uint8_t b) noexcept {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Number of bytes of a valid sequence starting at text[pos] that are present, and whether
// the sequence is complete. valid_prefix == 0 means text[pos] is not a valid start.
struct SeqCheck {
  size_t need;          // full length (0 if invalid lead)
  size_t valid_prefix;  // bytes that are consistent with a valid sequence
};
SeqCheck check_seq(std::string_view text, size_t pos) noexcept {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t need = lead_len(lead);
  if (need == 0) return {0, 0};
  size_t ok = 1;
  for (size_t k = 1; k < need && pos + k < text.size(); ++k) {
    const auto b = static_cast<uint8_t>(text[pos + k]);
    const SecondRange r = k == 1 ? second_range(lead) : SecondRange{0x80, 0xBF};
    if (b < r.lo || b > r.hi) break;
    ++ok;
  }
  return {need, ok};
}

}  // namespace

size_t utf8_seq_len(uint8_t lead) noexcept {
  const size_t n = lead_len(lead);
  return n == 0 ? 1 : n;
}

char32_t utf8_next(std::string_view text, size_t& pos) noexcept {
  const SeqCheck c = check_seq(text, pos);
  if (c.need == 0 || c.valid_prefix < c.need) {
    ++pos;
    return kReplacementChar;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(text.data() + pos);
  char32_t cp = 0;
  switch (c.need) {
    case 1: cp = p[0]; break;
    case 2: cp = (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F); break;
    case 3: cp = (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F); break;
    default:
      cp = (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
           (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
  pos += c.need;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = kReplacementChar;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(char32_t cp) {
  std::string s;
  utf8_append(s, cp);
  return s;
}

size_t utf8_complete_prefix(std::string_view text) noexcept {
  // Only the last 3 bytes can belong to an unfinished sequence.
  const size_t n = text.size();
  const size_t from = n > 3 ? n - 3 : 0;
  for (size_t i = n; i-- > from;) {
    const auto b = static_cast<uint8_t>(text[i]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const SeqCheck c = check_seq(text, i);
    // Hold back only a sequence that is valid so far and still short of its length.
    if (c.need > 1 && i + c.need > n && c.valid_prefix == n - i) return i;
    return n;
  }
  return n;
}

bool utf8_is_valid(std::string_view text) noexcept {
  for (size_t pos = 0; pos < text.size();) {
    const SeqCheck c = check_seq(text, pos);
    if (c.need == 0 || c.valid_prefix < c.need) return false;
    pos += c.need;
  }
  return true;
}

std::string utf8_sanitize(std::string_view text) {
  if (utf8_is_valid(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t pos = 0; pos < text.size();) utf8_append(out, utf8_next(text, pos));
  return out;
}

}  // namespace vkllm
