// GGUF reader: maps the file, validates every field (hostile-file cases A1-A26, tests/gguf/test_malformed.cpp), serves views.
// Knows nothing of model architectures or tokenizers; only the file format and its limits.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "common/error.hpp"
#include "engine/gguf/gguf.hpp"

namespace vkllm::gguf {

// The file's bytes: a read-only private mapping, or a buffer owned in memory.
class Mapping {
 public:
  explicit Mapping(std::vector<uint8_t> bytes) : owned_(std::move(bytes)) {
    data_ = owned_.data();
    size_ = owned_.size();
  }
  Mapping(const uint8_t* data, size_t size) : data_(data), size_(size), mapped_(true) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (mapped_ && size_ > 0) munmap(const_cast<uint8_t*>(data_), size_);
  }
  std::span<const uint8_t> bytes() const noexcept { return {data_, size_}; }

 private:
  std::vector<uint8_t> owned_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMinVersion = 2;
constexpr uint32_t kMaxVersion = 3;
constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
// Smallest possible encodings, used to bound counts by the bytes left before allocating:
// a KV is key length (8) + key (>= 1) + type (4) + value (>= 1); a tensor info is name length
// (8) + name (>= 1) + n_dims (4) + type (4) + offset (8).
constexpr uint64_t kMinKvBytes = 14;
constexpr uint64_t kMinTensorInfoBytes = 25;

// Bytes of one encoded array element, at least (strings: their u64 length; arrays: type + count).
uint64_t min_element_bytes(ValueType t) {
  switch (t) {
    case ValueType::kU8: case ValueType::kI8: case ValueType::kBool: return 1;
    case ValueType::kU16: case ValueType::kI16: return 2;
    case ValueType::kU32: case ValueType::kI32: case ValueType::kF32: return 4;
    case ValueType::kU64: case ValueType::kI64: case ValueType::kF64: case ValueType::kString: return 8;
    case ValueType::kArray: return 12;
  }
  return 1;
}

}  // namespace

// Reads the header, metadata and tensor infos out of the bytes, with a cursor that refuses
// to move past the end. Every failure names the file and the offset or item at fault.
class Parser {
 public:
  Parser(std::span<const uint8_t> bytes, const std::string& name, const ReaderLimits& limits)
      : bytes_(bytes), name_(name), limits_(limits) {}

  void parse(Reader& r);

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InvalidModel(fmt::format("{}: {}", name_, what));
  }
  [[noreturn]] void unsupported(const std::string& what) const {
    throw Unsupported(fmt::format("{}: {}", name_, what));
  }
  uint64_t left() const { return bytes_.size() - pos_; }
  const uint8_t* take(uint64_t n, std::string_view what) {
    if (n > left()) {
      fail(fmt::format("truncated: {} needs {} bytes at offset {}, only {} left", what, n, pos_, left()));
    }
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  template <class T>
  T read(std::string_view what) {
    const uint8_t* p = take(sizeof(T), what);
    T v;
    std::memcpy(&v, p, sizeof(T));  // host is little-endian (checked at compile time below)
    return v;
  }
  std::string read_string(uint64_t max_bytes, std::string_view what);
  Value read_value(ValueType type, uint32_t depth, const std::string& key);
  Value read_array(uint32_t depth, const std::string& key);
  void read_header(Reader& r, uint64_t& n_tensors, uint64_t& n_kv);
  void read_kv(Reader& r);
  void read_tensor_info(Reader& r);
  void place_tensors(Reader& r);

  std::span<const uint8_t> bytes_;
  const std::string& name_;
  const ReaderLimits& limits_;
  uint64_t pos_ = 0;
};

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

std::string Parser::read_string(uint64_t max_bytes, std::string_view what) {
  const uint64_t at = pos_;
  const uint64_t len = read<uint64_t>(what);
  if (len > max_bytes) fail(fmt::format("{} at offset {} has length {} (limit {})", what, at, len, max_bytes));
  if (len > left()) {
    fail(fmt::format("{} at offset {} has length {} but only {} bytes are left", what, at, len, left()));
  }
  const uint8_t* p = take(len, what);
  return std::string(reinterpret_cast<const char*>(p), len);
}

Value Parser::read_value(ValueType type, uint32_t depth, const std::string& key) {
  const std::string what = "value of key '" + key + "'";
  switch (type) {
    case ValueType::kU8: return Value::u8(read<uint8_t>(what));
    case ValueType::kI8: return Value::i8(read<int8_t>(what));
    case ValueType::kU16: return Value::u16(read<uint16_t>(what));
    case ValueType::kI16: return Value::i16(read<int16_t>(what));
    case ValueType::kU32: return Value::u32(read<uint32_t>(what));
    case ValueType::kI32: return Value::i32(read<int32_t>(what));
    case ValueType::kF32: return Value::f32(read<float>(what));
    case ValueType::kU64: return Value::u64(read<uint64_t>(what));
    case ValueType::kI64: return Value::i64(read<int64_t>(what));
    case ValueType::kF64: return Value::f64(read<double>(what));
    case ValueType::kBool: {
      const uint64_t at = pos_;
      const uint8_t b = read<uint8_t>(what);
      if (b > 1) fail(fmt::format("key '{}': bool at offset {} has byte value {}", key, at, b));
      return Value::boolean(b != 0);
    }
    case ValueType::kString: return Value::string(read_string(limits_.max_string_bytes, what));
    case ValueType::kArray: return read_array(depth + 1, key);
  }
  fail(fmt::format("key '{}': unknown value type {}", key, static_cast<uint32_t>(type)));
}

Value Parser::read_array(uint32_t depth, const std::string& key) {
  const uint64_t at = pos_;
  const std::string what = "array of key '" + key + "'";
  if (depth > limits_.max_array_depth) {
    fail(fmt::format("key '{}': arrays nested {} deep at offset {} (limit {})", key, depth, at,
                     limits_.max_array_depth));
  }
  const uint32_t elem_raw = read<uint32_t>(what);
  if (elem_raw >= kValueTypeCount) {
    fail(fmt::format("key '{}': array element type {} at offset {} is not a GGUF type", key, elem_raw, at));
  }
  const auto elem = static_cast<ValueType>(elem_raw);
  const uint64_t n = read<uint64_t>(what);
  if (n > limits_.max_array_elements) {
    fail(fmt::format("key '{}': array at offset {} has {} elements (limit {})", key, at, n,
                     limits_.max_array_elements));
  }
  // Bound the count by the bytes left before allocating anything (Ollama #17042, PR #19856).
  const auto need = checked_mul(n, min_element_bytes(elem));
  if (!need || *need > left()) {
    fail(fmt::format("key '{}': array at offset {} claims {} {} elements but only {} bytes are left",
                     key, at, n, value_type_name(elem), left()));
  }
  auto fixed = [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), take(n * sizeof(T), what), n * sizeof(T));
    return v;
  };
  switch (elem) {
    case ValueType::kU8: return Value::u8_array(fixed(uint8_t{}));
    case ValueType::kI8: return Value::i8_array(fixed(int8_t{}));
    case ValueType::kU16: return Value::u16_array(fixed(uint16_t{}));
    case ValueType::kI16: return Value::i16_array(fixed(int16_t{}));
    case ValueType::kU32: return Value::u32_array(fixed(uint32_t{}));
    case ValueType::kI32: return Value::i32_array(fixed(int32_t{}));
    case ValueType::kF32: return Value::f32_array(fixed(float{}));
    case ValueType::kU64: return Value::u64_array(fixed(uint64_t{}));
    case ValueType::kI64: return Value::i64_array(fixed(int64_t{}));
    case ValueType::kF64: return Value::f64_array(fixed(double{}));
    case ValueType::kBool: {
      std::vector<uint8_t> v = fixed(uint8_t{});
      for (uint64_t i = 0; i < n; ++i) {
        if (v[i] > 1) fail(fmt::format("key '{}': bool array element {} has byte value {}", key, i, v[i]));
      }
      return Value::bool_array(std::move(v));
    }
    case ValueType::kString: {
      std::vector<std::string> v;
      v.reserve(n);
      for (uint64_t i = 0; i < n; ++i) v.push_back(read_string(limits_.max_string_bytes, what));
      return Value::string_array(std::move(v));
    }
    case ValueType::kArray: {
      std::vector<Value> v;
      v.reserve(n);
      for (uint64_t i = 0; i < n; ++i) v.push_back(read_array(depth + 1, key));
      return Value::array_array(std::move(v));
    }
  }
  fail(fmt::format("key '{}': unknown array element type {}", key, elem_raw));
}

void Parser::read_header(Reader& r, uint64_t& n_tensors, uint64_t& n_kv) {
  if (bytes_.size() < 4) fail(fmt::format("file is {} bytes, too short for a GGUF header", bytes_.size()));
  const uint32_t magic = read<uint32_t>("magic");
  if (magic != kMagic) {
    const uint8_t* m = bytes_.data();
    fail(fmt::format("bad magic {:02x} {:02x} {:02x} {:02x} (expected \"GGUF\"): not a GGUF file",
                     m[0], m[1], m[2], m[3]));
  }
  const uint32_t version = read<uint32_t>("version");
  if (version == 0) fail("GGUF version 0 is invalid");
  if ((version & 0xffffu) == 0) {
    unsupported(fmt::format(
        "GGUF version field reads 0x{:08x}: the file is big-endian (byte-swapped), and only "
        "little-endian GGUF is supported",
        version));
  }
  if (version == 1) unsupported("GGUF version 1 is not supported (re-convert the model to GGUF v3)");
  if (version > kMaxVersion) {
    unsupported(fmt::format("GGUF version {} is newer than this reader (supports {}-{})", version,
                            kMinVersion, kMaxVersion));
  }
  r.version_ = version;
  n_tensors = read<uint64_t>("tensor count");
  n_kv = read<uint64_t>("metadata count");
  // Counts bounded by the bytes left (CVE-2024-23605, the 44-byte "100M KV" PoC).
  const auto kv_min = checked_mul(n_kv, kMinKvBytes);
  const auto ti_min = checked_mul(n_tensors, kMinTensorInfoBytes);
  const auto total = kv_min && ti_min ? checked_add(*kv_min, *ti_min) : std::nullopt;
  if (!total || *total > left()) {
    fail(fmt::format("header claims {} metadata entries and {} tensors, more than the {} bytes "
                     "left can hold",
                     n_kv, n_tensors, left()));
  }
}

void Parser::read_kv(Reader& r) {
  const uint64_t at = pos_;
  std::string key = read_string(limits_.max_key_bytes, "metadata key");
  if (key.empty()) fail(fmt::format("empty metadata key at offset {}", at));
  for (unsigned char c : key) {
    if (c < 0x20 || c > 0x7e) {
      fail(fmt::format("metadata key at offset {} has a non-printable or non-ASCII byte 0x{:02x}", at, c));
    }
  }
  if (r.kv_index_.count(key)) fail(fmt::format("duplicate metadata key '{}' at offset {}", key, at));
  const uint64_t type_at = pos_;
  const uint32_t type_raw = read<uint32_t>("value type of key '" + key + "'");
  if (type_raw >= kValueTypeCount) {
    fail(fmt::format("key '{}': value type {} at offset {} is not a GGUF type", key, type_raw, type_at));
  }
  Value value = read_value(static_cast<ValueType>(type_raw), 0, key);
  r.kv_index_.emplace(key, r.kvs_.size());
  r.kvs_.push_back({std::move(key), std::move(value)});
}

void Parser::read_tensor_info(Reader& r) {
  const uint64_t at = pos_;
  const size_t index = r.tensors_.size();
  TensorInfo t;
  t.name = read_string(limits_.max_tensor_name_bytes, fmt::format("name of tensor #{}", index));
  if (t.name.empty()) fail(fmt::format("tensor #{} at offset {} has an empty name", index, at));
  if (r.tensor_index_.count(t.name)) fail(fmt::format("duplicate tensor name '{}' at offset {}", t.name, at));
  const std::string what = "tensor '" + t.name + "'";
  t.n_dims = read<uint32_t>(what + " n_dims");
  if (t.n_dims > kMaxDims) fail(fmt::format("{}: n_dims is {} (at most {})", what, t.n_dims, kMaxDims));
  uint64_t n_elements = 1;
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    const uint64_t dim = read<uint64_t>(what + " dims");
    if (dim > kInt64Max) {
      fail(fmt::format("{}: dimension {} is negative ({})", what, d, static_cast<int64_t>(dim)));
    }
    // Zero dims are refused (a zero-element weight is never meaningful here, and it keeps
    // every later division safe; upstream accepts them: hostile-file case A16).
    if (dim == 0) fail(fmt::format("{}: dimension {} is zero", what, d));
    const auto product = checked_mul(n_elements, dim);
    if (!product || *product > kInt64Max) {
      fail(fmt::format("{}: element count overflows at dimension {} ({})", what, d, dim));
    }
    n_elements = *product;
    t.dims[d] = dim;
  }
  t.n_elements = n_elements;
  const uint32_t type_raw = read<uint32_t>(what + " type");
  if (is_removed_type(type_raw)) {
    fail(fmt::format("{}: ggml type id {} belongs to a format ggml removed", what, type_raw));
  }
  const auto traits = type_traits(type_raw);
  if (!traits) {
    if (type_raw > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      fail(fmt::format("{}: ggml type id {} is negative", what, static_cast<int32_t>(type_raw)));
    }
    unsupported(fmt::format("{}: ggml type id {} is not known to this build", what, type_raw));
  }
  t.type = traits->type;
  if (t.dims[0] % traits->block_size != 0) {
    fail(fmt::format("{}: row length {} is not a multiple of the {} block size {}", what, t.dims[0],
                     traits->name, traits->block_size));
  }
  const auto n_bytes = tensor_bytes(t.type, t.dims[0], n_elements);
  if (!n_bytes) fail(fmt::format("{}: byte size of {} {} elements overflows", what, n_elements, traits->name));
  t.n_bytes = *n_bytes;
  t.offset = read<uint64_t>(what + " offset");
  r.tensor_index_.emplace(t.name, index);
  r.tensors_.push_back(std::move(t));
}

// Tensors must follow one another in file order, each at the padded end of the previous one
// (as ggml's gguf.cpp demands), so they are aligned, ordered and never overlap; each must lie
// inside the file (CVE-2026-7482) and no sum may wrap (CVE-2025-53630, CVE-2026-27940).
void Parser::place_tensors(Reader& r) {
  const auto data_offset = checked_align_up(pos_, r.alignment_);
  if (!data_offset) fail(fmt::format("data section offset overflows (tensor infos end at {})", pos_));
  if (r.tensors_.empty()) {
    r.data_offset_ = std::min<uint64_t>(*data_offset, bytes_.size());
    return;
  }
  if (*data_offset > bytes_.size()) {
    fail(fmt::format("data section starts at {} (aligned to {}) past the end of the {}-byte file",
                     *data_offset, r.alignment_, bytes_.size()));
  }
  r.data_offset_ = *data_offset;
  const uint64_t data_bytes = bytes_.size() - *data_offset;
  uint64_t expected = 0;
  for (TensorInfo& t : r.tensors_) {
    if (t.offset % r.alignment_ != 0) {
      fail(fmt::format("tensor '{}': offset {} is not a multiple of the alignment {}", t.name, t.offset,
                       r.alignment_));
    }
    if (t.offset != expected) {
      fail(fmt::format("tensor '{}': offset {} but the previous tensors end at {} (tensors must be "
                       "contiguous, in order and not overlap)",
                       t.name, t.offset, expected));
    }
    const auto end = checked_add(t.offset, t.n_bytes);
    if (!end || *end > data_bytes) {
      fail(fmt::format("tensor '{}': data [{}, +{}) past the end of the data section ({} bytes)", t.name,
                       t.offset, t.n_bytes, data_bytes));
    }
    t.file_offset = *data_offset + t.offset;
    const auto next = checked_align_up(*end, r.alignment_);
    if (!next) fail(fmt::format("tensor '{}': padded end overflows", t.name));
    expected = *next;
  }
}

void Parser::parse(Reader& r) {
  uint64_t n_tensors = 0, n_kv = 0;
  read_header(r, n_tensors, n_kv);
  r.kvs_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) read_kv(r);

  if (const Value* a = r.find("general.alignment")) {
    if (a->type() != ValueType::kU32) {
      fail(fmt::format("key 'general.alignment' has type {} (must be u32)", value_type_name(a->type())));
    }
    const uint64_t align = *a->to_u64();
    if (align == 0 || (align & (align - 1)) != 0 || align % 8 != 0 || align > limits_.max_alignment) {
      fail(fmt::format("key 'general.alignment' is {} (must be a power of two, a multiple of 8 and "
                       "at most {})",
                       align, limits_.max_alignment));
    }
    r.alignment_ = align;
  }

  r.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) read_tensor_info(r);
  place_tensors(r);
}

// ---- Reader ----

Reader::Reader(std::unique_ptr<Mapping> mapping, std::string name, const ReaderLimits& limits)
    : mapping_(std::move(mapping)), name_(std::move(name)) {
  Parser(mapping_->bytes(), name_, limits).parse(*this);
}

Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;
Reader::~Reader() = default;

Reader Reader::from_bytes(std::vector<uint8_t> bytes, std::string name, const ReaderLimits& limits) {
  return Reader(std::make_unique<Mapping>(std::move(bytes)), std::move(name), limits);
}

Reader Reader::open(const std::filesystem::path& path, const ReaderLimits& limits) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InvalidRequest(fmt::format("{}: cannot open: {}", name, std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw InvalidRequest(fmt::format("{} is a directory, not a GGUF file", name));
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int err = errno;
    ::close(fd);
    throw InvalidRequest(fmt::format("{}: not a regular file{}", name, err ? std::string(": ") + std::strerror(err) : ""));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return Reader(std::make_unique<Mapping>(std::vector<uint8_t>{}), name, limits);
  }
  // A private read-only mapping: pages load on first touch. (If another process truncates
  // the file while it is mapped, touching the lost pages raises SIGBUS; model files are
  // expected to stay put while served.)
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    if (err == ENOMEM) throw OutOfMemory(fmt::format("{}: cannot map {} bytes", name, size));
    throw Error(fmt::format("{}: mmap failed: {}", name, std::strerror(err)));
  }
  return Reader(std::make_unique<Mapping>(static_cast<const uint8_t*>(p), size), name, limits);
}

uint64_t Reader::file_size() const noexcept { return mapping_->bytes().size(); }
std::span<const uint8_t> Reader::bytes() const noexcept { return mapping_->bytes(); }

const Value* Reader::find(std::string_view key) const noexcept {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const Value& Reader::require(std::string_view key) const {
  if (const Value* v = find(key)) return *v;
  throw InvalidModel(fmt::format("{}: required key '{}' is missing", name_, key));
}

const TensorInfo* Reader::find_tensor(std::string_view name) const noexcept {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& Reader::tensor(std::string_view name) const {
  if (const TensorInfo* t = find_tensor(name)) return *t;
  throw InvalidModel(fmt::format("{}: required tensor '{}' is missing", name_, name));
}

std::span<const uint8_t> Reader::tensor_data(const TensorInfo& info) const {
  const auto end = checked_add(info.file_offset, info.n_bytes);
  const uint64_t size = file_size();
  if (!end || *end > size || info.file_offset < data_offset_) {
    throw InvalidRequest(fmt::format("{}: tensor '{}' [{}, +{}) is not inside this file", name_,
                                     info.name, info.file_offset, info.n_bytes));
  }
  return bytes().subspan(info.file_offset, info.n_bytes);
}

}  // namespace vkllm::gguf
