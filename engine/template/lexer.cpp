// Owns turning template source into tokens exactly as jinja2's lexer does with trim_blocks and
// lstrip_blocks on (whitespace control, raw blocks, comments, string escapes). Must not know the AST.
#include "engine/template/lexer.hpp"
#include "common/utf8.hpp"

#include <cctype>

#include "engine/template/error.hpp"
#include "engine/template/text.hpp"

namespace vkllm::tmpl {

namespace {

// jinja2 normalizes \r\n and \r to \n and drops one trailing newline (keep_trailing_newline=False).
std::string normalize(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out.push_back(src[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Python's `\s` on str: whitespace code points. Returns the byte length of a whitespace run at pos.
std::size_t whitespace_run(std::string_view s, std::size_t pos) {
  std::size_t i = pos;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (!text::is_space(c)) break;
      ++i;
      continue;
    }
    // Multi-byte: decode one code point.
    const std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    const std::u32string cp = text::decode(s.substr(i, len));
    if (cp.size() != 1 || !text::is_space(cp[0])) break;
    i += len;
  }
  return i - pos;
}

bool all_space(std::string_view s) {
  for (char32_t c : text::decode(s)) {
    if (!text::is_space(c)) return false;
  }
  return true;
}

std::string rstrip_space(std::string_view s) { return text::strip(s, nullptr, false, true); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's "unicode-escape" decoding of a string literal body, as jinja2 applies it.
std::string unescape(std::string_view body, int line) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char e = body[++i];
    switch (e) {
      case '\n': break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x':
      case 'u':
      case 'U': {
        const std::size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        char32_t cp = 0;
        for (std::size_t k = 0; k < digits; ++k) {
          if (i + 1 >= body.size() || hex_value(body[i + 1]) < 0) {
            throw TemplateError("truncated \\" + std::string(1, e) + " escape in string literal", line);
          }
          cp = cp * 16 + static_cast<char32_t>(hex_value(body[++i]));
        }
        if (cp > 0x10FFFF) throw TemplateError("illegal Unicode character in string literal", line);
        utf8_append(out, cp);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          char32_t cp = static_cast<char32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k) {
            cp = cp * 8 + static_cast<char32_t>(body[++i] - '0');
          }
          utf8_append(out, cp);
        } else if (e == 'N') {
          throw TemplateError("\\N{...} escapes are not supported", line);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      const std::size_t tag = find_tag(pos_);
      if (tag == std::string::npos) {
        emit(TokenKind::kData, src_.substr(pos_));
        line_ += count_newlines(std::string_view(src_).substr(pos_));
        break;
      }
      const char kind = src_[tag + 1];  // '%', '{' or '#'
      const char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
      std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
      std::string data;
      if (sign == '-') {
        data = rstrip_space(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: drop spaces between the start of the line and a block or comment tag.
        const std::size_t nl = text.rfind('\n');
        const std::size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() && all_space(text.substr(l_pos))) {
          data = std::string(text.substr(0, l_pos));
        } else {
          data = std::string(text);
        }
      } else {
        data = std::string(text);
      }
      emit(TokenKind::kData, data);
      line_ += count_newlines(text);
      pos_ = tag + 2 + (sign ? 1 : 0);
      line_starting_ = false;
      if (kind == '#') {
        lex_comment();
      } else if (kind == '%' && try_raw()) {
        continue;
      } else {
        lex_tag(kind == '%');
      }
    }
    tokens_.push_back({TokenKind::kEof, "", line_});
    return std::move(tokens_);
  }

 private:
  std::size_t find_tag(std::size_t from) const {
    std::size_t p = from;
    while (true) {
      p = src_.find('{', p);
      if (p == std::string::npos || p + 1 >= src_.size()) return std::string::npos;
      const char c = src_[p + 1];
      if (c == '%' || c == '{' || c == '#') return p;
      ++p;
    }
  }

  void emit(TokenKind kind, std::string_view value) {
    if (kind == TokenKind::kData && value.empty()) return;
    tokens_.push_back({kind, std::string(value), line_});
  }

  // After an end marker: `-` eats all following whitespace, a plain block end eats one newline.
  void finish_tag(bool minus, bool trim_newline) {
    if (minus) {
      const std::size_t ws = whitespace_run(src_, pos_);
      line_ += count_newlines(std::string_view(src_).substr(pos_, ws));
      line_starting_ = ws > 0 && src_[pos_ + ws - 1] == '\n';
      pos_ += ws;
    } else if (trim_newline && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
      line_starting_ = true;
    } else {
      line_starting_ = false;
    }
  }

  void lex_comment() {
    const int start_line = line_;
    const std::size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) throw TemplateError("missing end of comment tag", start_line);
    const char sign = end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : 0;
    line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
    pos_ = end + 2;
    finish_tag(sign == '-', sign != '+');
  }

  // {% raw %}...{% endraw %}: the body is data, tags inside are not interpreted.
  bool try_raw() {
    std::size_t p = pos_ + whitespace_run(src_, pos_);
    if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && is_name_char(src_[p + 3]))) return false;
    p += 3;
    p += whitespace_run(src_, p);
    bool minus = false;
    if (src_.compare(p, 3, "-%}") == 0) {
      minus = true;
      p += 3;
    } else if (src_.compare(p, 2, "%}") == 0) {
      p += 2;
    } else {
      return false;
    }
    line_ += count_newlines(std::string_view(src_).substr(pos_, p - pos_));
    pos_ = p;
    finish_tag(minus, false);
    // Find {%[-+]? endraw (+%}|-%}\s*|%}\n?)
    std::size_t search = pos_;
    while (true) {
      const std::size_t tag = src_.find("{%", search);
      if (tag == std::string::npos) throw TemplateError("missing end of raw directive", line_);
      std::size_t q = tag + 2;
      const char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      if (sign) ++q;
      q += whitespace_run(src_, q);
      if (src_.compare(q, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      q += 6;
      q += whitespace_run(src_, q);
      char end_sign = 0;
      if (src_.compare(q, 3, "+%}") == 0 || src_.compare(q, 3, "-%}") == 0) {
        end_sign = src_[q];
        q += 3;
      } else if (src_.compare(q, 2, "%}") == 0) {
        q += 2;
      } else {
        search = tag + 2;
        continue;
      }
      std::string_view body = std::string_view(src_).substr(pos_, tag - pos_);
      emit(TokenKind::kData, sign == '-' ? rstrip_space(body) : std::string(body));
      line_ += count_newlines(std::string_view(src_).substr(pos_, q - pos_));
      pos_ = q;
      finish_tag(end_sign == '-', end_sign == 0);
      return true;
    }
  }

  void lex_tag(bool block) {
    const int start_line = line_;
    emit(block ? TokenKind::kBlockBegin : TokenKind::kVarBegin, block ? "{%" : "{{");
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) {
        throw TemplateError(std::string("unexpected end of template, expected '") + (block ? "%}" : "}}") + "'",
                            start_line);
      }
      if (balance.empty() && try_end(block)) return;
      const char c = src_[pos_];
      const std::size_t ws = whitespace_run(src_, pos_);
      if (ws > 0) {
        line_ += count_newlines(std::string_view(src_).substr(pos_, ws));
        pos_ += ws;
        continue;
      }
      if (is_digit(c)) {
        lex_number();
      } else if (is_name_start(c)) {
        std::size_t e = pos_;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        emit(TokenKind::kName, std::string_view(src_).substr(pos_, e - pos_));
        pos_ = e;
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        lex_operator(balance);
      }
    }
  }

  bool try_end(bool block) {
    if (block) {
      if (src_.compare(pos_, 3, "+%}") == 0 || src_.compare(pos_, 3, "-%}") == 0) {
        const bool minus = src_[pos_] == '-';
        pos_ += 3;
        emit(TokenKind::kBlockEnd, "%}");
        finish_tag(minus, false);
        return true;
      }
      if (src_.compare(pos_, 2, "%}") == 0) {
        pos_ += 2;
        emit(TokenKind::kBlockEnd, "%}");
        finish_tag(false, true);
        return true;
      }
      return false;
    }
    if (src_.compare(pos_, 3, "-}}") == 0) {
      pos_ += 3;
      emit(TokenKind::kVarEnd, "}}");
      finish_tag(true, false);
      return true;
    }
    if (src_.compare(pos_, 2, "}}") == 0) {
      pos_ += 2;
      emit(TokenKind::kVarEnd, "}}");
      finish_tag(false, false);
      return true;
    }
    return false;
  }

  void lex_number() {
    std::size_t p = pos_;
    auto digits = [&](std::size_t q) {
      // (\d+_)*\d+ : returns the end, or q when there is no digit.
      std::size_t e = q;
      while (e < src_.size() && (is_digit(src_[e]) || (src_[e] == '_' && e > q && e + 1 < src_.size() && is_digit(src_[e + 1])))) ++e;
      return e;
    };
    const bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    std::size_t e = digits(p);
    bool is_float = false;
    if (!after_dot) {
      std::size_t f = e;
      if (f < src_.size() && src_[f] == '.' && f + 1 < src_.size() && is_digit(src_[f + 1])) {
        f = digits(f + 1);
        is_float = true;
      }
      if (f < src_.size() && (src_[f] == 'e' || src_[f] == 'E')) {
        std::size_t g = f + 1;
        if (g < src_.size() && (src_[g] == '+' || src_[g] == '-')) ++g;
        const std::size_t h = digits(g);
        if (h > g) {
          f = h;
          is_float = true;
        }
      }
      if (is_float) e = f;
    }
    if (!is_float && src_[p] == '0' && p + 1 < src_.size() &&
        (src_[p + 1] == 'x' || src_[p + 1] == 'X' || src_[p + 1] == 'o' || src_[p + 1] == 'O' || src_[p + 1] == 'b' || src_[p + 1] == 'B')) {
      e = p + 2;
      while (e < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    }
    std::string value;
    for (std::size_t i = p; i < e; ++i) {
      if (src_[i] != '_') value.push_back(src_[i]);
    }
    emit(is_float ? TokenKind::kFloat : TokenKind::kInteger, value);
    pos_ = e;
  }

  void lex_string(char quote) {
    const int start_line = line_;
    std::size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      if (src_[p] == '\\') ++p;
      ++p;
    }
    if (p >= src_.size()) throw TemplateError("unterminated string literal", start_line);
    std::string_view body = std::string_view(src_).substr(pos_ + 1, p - pos_ - 1);
    emit(TokenKind::kString, unescape(body, start_line));
    line_ += count_newlines(body);
    pos_ = p + 1;
  }

  void lex_operator(std::vector<char>& balance) {
    static const char* kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
    for (const char* op : kTwo) {
      if (src_.compare(pos_, 2, op) == 0) {
        emit(TokenKind::kOperator, op);
        pos_ += 2;
        return;
      }
    }
    const char c = src_[pos_];
    static const std::string kOne = "+-/*%~[](){}<>=.:|,;";
    if (kOne.find(c) == std::string::npos) {
      throw TemplateError(std::string("unexpected char '") + c + "'", line_);
    }
    if (c == '(' || c == '[' || c == '{') {
      balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty() || balance.back() != c) throw TemplateError(std::string("unexpected '") + c + "'", line_);
      balance.pop_back();
    }
    emit(TokenKind::kOperator, std::string(1, c));
    ++pos_;
  }

  std::string src_;
  std::size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace vkllm::tmpl
