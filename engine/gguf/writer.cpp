// GGUF v3 writer: metadata of any value type and tensors in any known type, alignment padded.
// Knows nothing of model architectures; used by tests, tools and (later) quantization.
#include "engine/gguf/writer.hpp"

#include <fmt/format.h>

#include <cstring>
#include <fstream>

#include "common/error.hpp"
#include "engine/gguf/quant.hpp"

namespace vkllm::gguf {
namespace {

class Out {
 public:
  std::vector<uint8_t> bytes;

  template <class T>
  void put(T v) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));  // little-endian host (see reader.cpp)
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  template <class T>
  void put_all(const std::vector<T>& v) {
    for (const T& x : v) put<T>(x);
  }
  void pad_to(uint64_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
  }
};

void put_array_body(Out& out, const Value& v);

void put_value(Out& out, const Value& v) {
  switch (v.type()) {
    case ValueType::kU8: out.put<uint8_t>(static_cast<uint8_t>(*v.to_u64())); break;
    case ValueType::kI8: out.put<int8_t>(static_cast<int8_t>(*v.to_i64())); break;
    case ValueType::kU16: out.put<uint16_t>(static_cast<uint16_t>(*v.to_u64())); break;
    case ValueType::kI16: out.put<int16_t>(static_cast<int16_t>(*v.to_i64())); break;
    case ValueType::kU32: out.put<uint32_t>(static_cast<uint32_t>(*v.to_u64())); break;
    case ValueType::kI32: out.put<int32_t>(static_cast<int32_t>(*v.to_i64())); break;
    case ValueType::kF32: out.put<float>(static_cast<float>(*v.to_f64())); break;
    case ValueType::kBool: out.put<uint8_t>(*v.to_bool() ? 1 : 0); break;
    case ValueType::kString: out.put_string(*v.to_string()); break;
    case ValueType::kArray: put_array_body(out, v); break;
    case ValueType::kU64: out.put<uint64_t>(*v.to_u64()); break;
    case ValueType::kI64: out.put<int64_t>(*v.to_i64()); break;
    case ValueType::kF64: out.put<double>(*v.to_f64()); break;
  }
}

// Element type, count, then the elements (strings length-prefixed, inner arrays recursive).
void put_array_body(Out& out, const Value& v) {
  out.put<uint32_t>(static_cast<uint32_t>(v.array_type()));
  out.put<uint64_t>(v.array_size());
  switch (v.array_type()) {
    case ValueType::kU8: out.put_all(*v.elements<uint8_t>()); break;
    case ValueType::kI8: out.put_all(*v.elements<int8_t>()); break;
    case ValueType::kU16: out.put_all(*v.elements<uint16_t>()); break;
    case ValueType::kI16: out.put_all(*v.elements<int16_t>()); break;
    case ValueType::kU32: out.put_all(*v.elements<uint32_t>()); break;
    case ValueType::kI32: out.put_all(*v.elements<int32_t>()); break;
    case ValueType::kF32: out.put_all(*v.elements<float>()); break;
    case ValueType::kBool: out.put_all(*v.bool_elements()); break;
    case ValueType::kString:
      for (const std::string& s : *v.string_elements()) out.put_string(s);
      break;
    case ValueType::kArray:
      for (const Value& e : *v.array_elements()) put_array_body(out, e);
      break;
    case ValueType::kU64: out.put_all(*v.elements<uint64_t>()); break;
    case ValueType::kI64: out.put_all(*v.elements<int64_t>()); break;
    case ValueType::kF64: out.put_all(*v.elements<double>()); break;
  }
}

// Element count of `dims` after the checks add_tensor makes (each > 0, product fits).
uint64_t checked_elements(const std::string& name, const std::vector<uint64_t>& dims) {
  if (dims.empty() || dims.size() > kMaxDims) {
    throw InvalidRequest(fmt::format("gguf writer: tensor '{}' has {} dims (1 to {})", name, dims.size(), kMaxDims));
  }
  uint64_t n = 1;
  for (uint64_t d : dims) {
    const auto p = checked_mul(n, d);
    if (d == 0 || !p || *p > static_cast<uint64_t>(INT64_MAX)) {
      throw InvalidRequest(fmt::format("gguf writer: tensor '{}' has a zero or overflowing shape", name));
    }
    n = *p;
  }
  return n;
}

}  // namespace

Writer::Writer(uint32_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % 8 != 0) {
    throw InvalidRequest(fmt::format("gguf writer: alignment {} is not a power of two multiple of 8", alignment));
  }
}

void Writer::set(std::string key, Value value) {
  if (key.empty()) throw InvalidRequest("gguf writer: empty metadata key");
  for (KeyValue& kv : kvs_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kvs_.push_back({std::move(key), std::move(value)});
}

void Writer::erase_prefix(std::string_view prefix) {
  std::erase_if(kvs_, [&](const KeyValue& kv) { return kv.key.starts_with(prefix); });
}

void Writer::add_tensor(std::string name, std::vector<uint64_t> dims, TensorType type,
                        std::vector<uint8_t> data) {
  if (name.empty()) throw InvalidRequest("gguf writer: empty tensor name");
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) throw InvalidRequest(fmt::format("gguf writer: duplicate tensor '{}'", name));
  }
  const uint64_t n = checked_elements(name, dims);
  const auto bytes = tensor_bytes(type, dims[0], n);
  if (!bytes || *bytes != data.size()) {
    throw InvalidRequest(fmt::format("gguf writer: tensor '{}' ({}, {} elements, row {}) needs {} bytes, got {}",
                                     name, type_name(type), n, dims[0],
                                     bytes ? fmt::format("{}", *bytes) : std::string("a valid row length for"),
                                     data.size()));
  }
  tensors_.push_back({std::move(name), std::move(dims), type, std::move(data)});
}

void Writer::add_tensor_f32(std::string name, std::vector<uint64_t> dims, std::span<const float> values,
                            TensorType type) {
  const uint64_t n = checked_elements(name, dims);
  if (values.size() != n) {
    throw InvalidRequest(fmt::format("gguf writer: tensor '{}' has {} elements, got {} values", name, n, values.size()));
  }
  if (dims[0] % traits(type).block_size != 0) {
    throw InvalidRequest(fmt::format("gguf writer: tensor '{}' row {} is not a multiple of the {} block size",
                                     name, dims[0], type_name(type)));
  }
  std::vector<uint8_t> data = quantize(type, values);
  add_tensor(std::move(name), std::move(dims), type, std::move(data));
}

// Header, metadata and tensor infos, padded to where the data section starts.
std::vector<uint8_t> Writer::header_bytes() const {
  Out out;
  bool has_alignment_key = false;
  for (const KeyValue& kv : kvs_) has_alignment_key |= kv.key == "general.alignment";
  const bool add_alignment_key = !has_alignment_key && alignment_ != kDefaultAlignment;

  out.put<uint32_t>(0x46554747);  // "GGUF"
  out.put<uint32_t>(3);
  out.put<uint64_t>(tensors_.size());
  out.put<uint64_t>(kvs_.size() + (add_alignment_key ? 1 : 0));
  if (add_alignment_key) {
    out.put_string("general.alignment");
    out.put<uint32_t>(static_cast<uint32_t>(ValueType::kU32));
    out.put<uint32_t>(alignment_);
  }
  for (const KeyValue& kv : kvs_) {
    out.put_string(kv.key);
    out.put<uint32_t>(static_cast<uint32_t>(kv.value.type()));
    put_value(out, kv.value);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    out.put_string(t.name);
    out.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) out.put<uint64_t>(d);
    out.put<uint32_t>(static_cast<uint32_t>(t.type));
    out.put<uint64_t>(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  out.pad_to(alignment_);
  return std::move(out.bytes);
}

std::vector<uint8_t> Writer::to_bytes() const {
  Out out;
  out.bytes = header_bytes();
  for (const PendingTensor& t : tensors_) {
    out.bytes.insert(out.bytes.end(), t.data.begin(), t.data.end());
    out.pad_to(alignment_);
  }
  return std::move(out.bytes);
}

void Writer::write_file(const std::filesystem::path& path) const {
  // Streamed: the file is never held twice in memory (multi-GiB synthetic models).
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    const std::vector<uint8_t> header = header_bytes();
    f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
    const std::vector<char> zeros(alignment_, 0);
    for (const PendingTensor& t : tensors_) {
      f.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
      const uint64_t pad = (alignment_ - t.data.size() % alignment_) % alignment_;
      f.write(zeros.data(), static_cast<std::streamsize>(pad));
    }
    f.flush();
    if (!f) throw Error(fmt::format("gguf writer: cannot write {}", tmp.string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(fmt::format("gguf writer: cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message()));
}

}  // namespace vkllm::gguf
