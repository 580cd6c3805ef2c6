// GGUF metadata values: construction, typed views and human-readable formatting.
// Knows nothing of files or parsing; the reader and writer build and consume these.
#include <fmt/format.h>

#include <limits>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"

namespace vkllm::gguf {
namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

template <class T>
constexpr ValueType element_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return ValueType::kU8;
  if constexpr (std::is_same_v<T, int8_t>) return ValueType::kI8;
  if constexpr (std::is_same_v<T, uint16_t>) return ValueType::kU16;
  if constexpr (std::is_same_v<T, int16_t>) return ValueType::kI16;
  if constexpr (std::is_same_v<T, uint32_t>) return ValueType::kU32;
  if constexpr (std::is_same_v<T, int32_t>) return ValueType::kI32;
  if constexpr (std::is_same_v<T, float>) return ValueType::kF32;
  if constexpr (std::is_same_v<T, uint64_t>) return ValueType::kU64;
  if constexpr (std::is_same_v<T, int64_t>) return ValueType::kI64;
  if constexpr (std::is_same_v<T, double>) return ValueType::kF64;
  return ValueType::kArray;
}

std::string quoted(const std::string& s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (n++ >= max_chars) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

std::string_view value_type_name(ValueType type) noexcept {
  switch (type) {
    case ValueType::kU8: return "u8";
    case ValueType::kI8: return "i8";
    case ValueType::kU16: return "u16";
    case ValueType::kI16: return "i16";
    case ValueType::kU32: return "u32";
    case ValueType::kI32: return "i32";
    case ValueType::kF32: return "f32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kU64: return "u64";
    case ValueType::kI64: return "i64";
    case ValueType::kF64: return "f64";
  }
  return "unknown";
}

Value::Value(ValueType type, ValueType elem_type) : type_(type), elem_type_(elem_type) {}

// Built in place (emplace) rather than by moving variants around: GCC 12 with sanitizers
// reports false -Wmaybe-uninitialized on std::variant<..., std::string> moves.
template <class S>
Value Value::make_scalar(ValueType type, S v) {
  Value out(type, ValueType::kU8);
  out.scalar_.emplace<S>(std::move(v));
  return out;
}

template <class E>
Value Value::make_array(ValueType elem_type, std::vector<E> v) {
  Value out(ValueType::kArray, elem_type);
  out.elements_.emplace<std::vector<E>>(std::move(v));
  return out;
}

Value Value::u8(uint8_t v) { return make_scalar(ValueType::kU8, uint64_t{v}); }
Value Value::i8(int8_t v) { return make_scalar(ValueType::kI8, int64_t{v}); }
Value Value::u16(uint16_t v) { return make_scalar(ValueType::kU16, uint64_t{v}); }
Value Value::i16(int16_t v) { return make_scalar(ValueType::kI16, int64_t{v}); }
Value Value::u32(uint32_t v) { return make_scalar(ValueType::kU32, uint64_t{v}); }
Value Value::i32(int32_t v) { return make_scalar(ValueType::kI32, int64_t{v}); }
Value Value::f32(float v) { return make_scalar(ValueType::kF32, double{v}); }
Value Value::boolean(bool v) { return make_scalar(ValueType::kBool, v); }
Value Value::string(std::string v) { return make_scalar(ValueType::kString, std::move(v)); }
Value Value::u64(uint64_t v) { return make_scalar(ValueType::kU64, v); }
Value Value::i64(int64_t v) { return make_scalar(ValueType::kI64, v); }
Value Value::f64(double v) { return make_scalar(ValueType::kF64, v); }

Value Value::u8_array(std::vector<uint8_t> v) { return make_array(ValueType::kU8, std::move(v)); }
Value Value::i8_array(std::vector<int8_t> v) { return make_array(ValueType::kI8, std::move(v)); }
Value Value::u16_array(std::vector<uint16_t> v) { return make_array(ValueType::kU16, std::move(v)); }
Value Value::i16_array(std::vector<int16_t> v) { return make_array(ValueType::kI16, std::move(v)); }
Value Value::u32_array(std::vector<uint32_t> v) { return make_array(ValueType::kU32, std::move(v)); }
Value Value::i32_array(std::vector<int32_t> v) { return make_array(ValueType::kI32, std::move(v)); }
Value Value::f32_array(std::vector<float> v) { return make_array(ValueType::kF32, std::move(v)); }
Value Value::bool_array(std::vector<uint8_t> v) {
  for (uint8_t& b : v) b = b != 0;
  return make_array(ValueType::kBool, std::move(v));
}
Value Value::string_array(std::vector<std::string> v) {
  return make_array(ValueType::kString, std::move(v));
}
Value Value::u64_array(std::vector<uint64_t> v) { return make_array(ValueType::kU64, std::move(v)); }
Value Value::i64_array(std::vector<int64_t> v) { return make_array(ValueType::kI64, std::move(v)); }
Value Value::f64_array(std::vector<double> v) { return make_array(ValueType::kF64, std::move(v)); }
Value Value::array_array(std::vector<Value> v) {
  for (const Value& e : v) {
    if (!e.is_array()) throw InvalidRequest("gguf: Value::array_array elements must be arrays");
  }
  return make_array(ValueType::kArray, std::move(v));
}

uint64_t Value::array_size() const noexcept {
  return std::visit(
      [](const auto& v) -> uint64_t {
        if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::monostate>) {
          return 0;
        } else {
          return v.size();
        }
      },
      elements_);
}

std::optional<uint64_t> Value::to_u64() const noexcept {
  if (const auto* u = std::get_if<uint64_t>(&scalar_)) return *u;
  if (const auto* i = std::get_if<int64_t>(&scalar_); i && *i >= 0) return static_cast<uint64_t>(*i);
  return std::nullopt;
}

std::optional<int64_t> Value::to_i64() const noexcept {
  if (const auto* i = std::get_if<int64_t>(&scalar_)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&scalar_); u && *u <= kInt64Max) return static_cast<int64_t>(*u);
  return std::nullopt;
}

std::optional<double> Value::to_f64() const noexcept {
  if (const auto* d = std::get_if<double>(&scalar_)) return *d;
  return std::nullopt;
}

std::optional<bool> Value::to_bool() const noexcept {
  if (const auto* b = std::get_if<bool>(&scalar_)) return *b;
  return std::nullopt;
}

const std::string* Value::to_string() const noexcept { return std::get_if<std::string>(&scalar_); }

template <class T>
const std::vector<T>* Value::elements() const noexcept {
  if (!is_array() || elem_type_ != element_type_of<T>()) return nullptr;
  return std::get_if<std::vector<T>>(&elements_);
}
template const std::vector<uint8_t>* Value::elements() const noexcept;
template const std::vector<int8_t>* Value::elements() const noexcept;
template const std::vector<uint16_t>* Value::elements() const noexcept;
template const std::vector<int16_t>* Value::elements() const noexcept;
template const std::vector<uint32_t>* Value::elements() const noexcept;
template const std::vector<int32_t>* Value::elements() const noexcept;
template const std::vector<float>* Value::elements() const noexcept;
template const std::vector<uint64_t>* Value::elements() const noexcept;
template const std::vector<int64_t>* Value::elements() const noexcept;
template const std::vector<double>* Value::elements() const noexcept;

const std::vector<uint8_t>* Value::bool_elements() const noexcept {
  if (!is_array() || elem_type_ != ValueType::kBool) return nullptr;
  return std::get_if<std::vector<uint8_t>>(&elements_);
}

const std::vector<std::string>* Value::string_elements() const noexcept {
  if (!is_array() || elem_type_ != ValueType::kString) return nullptr;
  return std::get_if<std::vector<std::string>>(&elements_);
}

const std::vector<Value>* Value::array_elements() const noexcept {
  if (!is_array() || elem_type_ != ValueType::kArray) return nullptr;
  return std::get_if<std::vector<Value>>(&elements_);
}

std::optional<int64_t> Value::int_element(uint64_t i) const noexcept {
  if (!is_array() || i >= array_size()) return std::nullopt;
  return std::visit(
      [&](const auto& v) -> std::optional<int64_t> {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::monostate> || std::is_same_v<V, std::vector<float>> ||
                      std::is_same_v<V, std::vector<double>> ||
                      std::is_same_v<V, std::vector<std::string>> ||
                      std::is_same_v<V, std::vector<Value>>) {
          return std::nullopt;
        } else if constexpr (std::is_same_v<V, std::vector<uint64_t>>) {
          if (v[i] > kInt64Max) return std::nullopt;
          return static_cast<int64_t>(v[i]);
        } else {
          if (elem_type_ == ValueType::kBool) return std::nullopt;
          return static_cast<int64_t>(v[i]);
        }
      },
      elements_);
}

std::string Value::format(size_t max_items, size_t max_chars) const {
  if (!is_array()) {
    if (const auto* s = to_string()) return quoted(*s, max_chars);
    if (auto b = to_bool()) return *b ? "true" : "false";
    if (auto d = to_f64()) return fmt::format("{}", type_ == ValueType::kF32 ? static_cast<float>(*d) : *d);
    if (auto i = to_i64()) return fmt::format("{}", *i);
    if (auto u = to_u64()) return fmt::format("{}", *u);
    return "?";
  }
  const uint64_t n = array_size();
  std::string out = fmt::format("[{}; {}] [", value_type_name(elem_type_), n);
  const uint64_t shown = std::min<uint64_t>(n, max_items);
  for (uint64_t i = 0; i < shown; ++i) {
    if (i) out += ", ";
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::monostate>) {
          } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
            out += quoted(v[i], max_chars);
          } else if constexpr (std::is_same_v<V, std::vector<Value>>) {
            out += v[i].format(max_items, max_chars);
          } else if constexpr (std::is_same_v<V, std::vector<uint8_t>>) {
            out += elem_type_ == ValueType::kBool ? (v[i] ? "true" : "false") : fmt::format("{}", v[i]);
          } else if constexpr (std::is_same_v<V, std::vector<int8_t>>) {
            out += fmt::format("{}", int{v[i]});
          } else {
            out += fmt::format("{}", v[i]);
          }
        },
        elements_);
  }
  if (shown < n) out += ", ...";
  return out + "]";
}

bool Value::operator==(const Value& other) const {
  return type_ == other.type_ && (!is_array() || elem_type_ == other.elem_type_) &&
         scalar_ == other.scalar_ && elements_ == other.elements_;
}

}  // namespace vkllm::gguf
