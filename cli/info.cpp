// `vkllm info -m MODEL`: a GGUF's header, metadata and tensor table, readable.
// Knows the core room only (the GGUF reader); reads no tensor data.
#include "cli/commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "engine/gguf/gguf.hpp"
#include "engine/gguf/types.hpp"

namespace vkllm::cli {
namespace {

std::string shape(const gguf::TensorInfo& t) {
  std::string s = "[";
  for (std::uint32_t i = 0; i < t.n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", t.dims[i]);
  return s + "]";
}

}  // namespace

std::string format_bytes(std::uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.2f} GiB", b / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.2f} MiB", b / double(1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", b / double(1ull << 10));
  return fmt::format("{} B", b);
}

int run_info(const InfoOptions& o) {
  const auto r = gguf::Reader::open(o.model);
  std::uint64_t params = 0, bytes = 0;
  std::map<std::string, std::pair<std::size_t, std::uint64_t>> by_type;  // count, bytes
  for (const auto& t : r.tensors()) {
    params += t.n_elements;
    bytes += t.n_bytes;
    auto& [count, type_bytes] = by_type[std::string(gguf::type_name(t.type))];
    ++count;
    type_bytes += t.n_bytes;
  }
  fmt::print("file: {} ({})\n", o.model, format_bytes(r.file_size()));
  fmt::print("GGUF v{}, alignment {}, data at offset {}\n", r.version(), r.alignment(),
             r.data_offset());
  fmt::print("{} tensors, {} parameters, {} of tensor data\n", r.tensors().size(), params,
             format_bytes(bytes));
  for (const auto& [type, cb] : by_type) {
    fmt::print("  {:<6} {:>5} tensors  {}\n", type, cb.first, format_bytes(cb.second));
  }

  fmt::print("\nmetadata ({} keys):\n", r.metadata().size());
  std::size_t width = 0;
  for (const auto& kv : r.metadata()) width = std::max(width, kv.key.size());
  for (const auto& kv : r.metadata()) {
    const std::size_t items = o.full ? SIZE_MAX : 8;
    const std::size_t chars = o.full ? SIZE_MAX : 100;
    fmt::print("  {:<{}} = {}\n", kv.key, width, kv.value.format(items, chars));
  }

  if (o.no_tensors) return 0;
  fmt::print("\ntensors:\n");
  std::size_t name_width = 4;
  for (const auto& t : r.tensors()) name_width = std::max(name_width, t.name.size());
  fmt::print("  {:<{}}  {:<6}  {:<24}  {:>12}  {:>12}\n", "name", name_width, "type", "shape (ggml order)",
             "bytes", "offset");
  for (const auto& t : r.tensors()) {
    fmt::print("  {:<{}}  {:<6}  {:<24}  {:>12}  {:>12}\n", t.name, name_width,
               gguf::type_name(t.type), shape(t), t.n_bytes, t.file_offset);
  }
  return 0;
}

}  // namespace vkllm::cli
