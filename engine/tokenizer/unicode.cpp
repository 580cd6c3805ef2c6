// UTF-8 coding, GPT-2's byte<->unicode map and Unicode properties (ICU) for the tokenizers.
// Knows nothing of vocabularies or token ids.
#include "engine/tokenizer/unicode.hpp"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <array>
#include <vector>

namespace vkllm::tok {
namespace {

struct ByteMap {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};  // image is U+0021..U+0143
  ByteMap() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace


char32_t byte_to_unicode(uint8_t byte) noexcept { return byte_map().to_cp[byte]; }

int unicode_to_byte(char32_t cp) noexcept {
  return cp < byte_map().to_byte.size() ? byte_map().to_byte[cp] : -1;
}

std::string bytes_to_unicode_text(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) utf8_append(out, byte_to_unicode(static_cast<uint8_t>(c)));
  return out;
}

bool unicode_text_to_bytes(std::string_view text, std::string& out) {
  for (size_t pos = 0; pos < text.size();) {
    const int b = unicode_to_byte(utf8_next(text, pos));
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
  }
  return true;
}

bool is_whitespace(char32_t cp) noexcept {
  if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
  return u_charType(static_cast<UChar32>(cp)) == U_SPACE_SEPARATOR;
}

bool is_control(char32_t cp) noexcept {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  // Every "Other" category (Cc, Cf, Co, Cs, Cn), as BERT's normalizer treats them.
  const auto t = u_charType(static_cast<UChar32>(cp));
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_PRIVATE_USE_CHAR ||
         t == U_SURROGATE || t == U_UNASSIGNED;
}

bool is_bert_punct(char32_t cp) noexcept {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126)) {
    return true;
  }
  return u_ispunct(static_cast<UChar32>(cp));
}

bool is_cjk_ideograph(char32_t cp) noexcept {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_nonspacing_mark(char32_t cp) noexcept {
  return u_charType(static_cast<UChar32>(cp)) == U_NON_SPACING_MARK;
}

char32_t to_lower(char32_t cp) noexcept {
  return static_cast<char32_t>(u_tolower(static_cast<UChar32>(cp)));
}

std::string nfd(std::string_view text) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFDInstance(&err);
  if (U_FAILURE(err) || text.empty()) return std::string(text);
  // UTF-8 -> UTF-16 -> NFD -> UTF-8 (ICU's C API normalizes UTF-16).
  std::vector<UChar> src(text.size() + 1);
  int32_t src_len = 0;
  u_strFromUTF8WithSub(src.data(), static_cast<int32_t>(src.size()), &src_len, text.data(),
                       static_cast<int32_t>(text.size()), 0xFFFD, nullptr, &err);
  if (U_FAILURE(err)) return std::string(text);
  std::vector<UChar> dst(static_cast<size_t>(src_len) * 4 + 16);
  const int32_t dst_len = unorm2_normalize(norm, src.data(), src_len, dst.data(),
                                           static_cast<int32_t>(dst.size()), &err);
  if (U_FAILURE(err)) return std::string(text);
  std::string out(static_cast<size_t>(dst_len) * 3 + 4, '\0');
  int32_t out_len = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &out_len, dst.data(), dst_len, &err);
  if (U_FAILURE(err)) return std::string(text);
  out.resize(static_cast<size_t>(out_len));
  return out;
}

}  // namespace vkllm::tok
