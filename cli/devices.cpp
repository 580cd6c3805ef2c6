// `vkllm devices`: every Vulkan device with its caps, as a table or JSON.
// Knows the platform room, and the kernels' choice of matmul path.
#include "cli/commands.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>
#include <utility>

#include "engine/ops/matmul.hpp"
#include "platform/instance.hpp"

namespace vkllm::cli {
namespace {

namespace json = boost::json;
using platform::DeviceCaps;

const char* yn(bool b) { return b ? "yes" : "no"; }

struct PathRange {
  std::uint32_t from, to;  // tokens per matmul; to == 0: and more
  ops::MatmulPath path;
};

// How the GEMV spreads rows over invocations (Tuning::matvec_lane_rows, shaders/matmul.comp).
const char* matvec_layout(const platform::Tuning& t) {
  return t.matvec_lane_rows ? "whole rows an invocation" : "rows split along K";
}

// The cooperative-matrix GEMM's matrix shape ("8x8x8"), or "none" when the device or the build
// has none it can use (ops::coopmat_available).
std::string coopmat_shape(const platform::Tuning& t) {
  if (!ops::coopmat_available(t)) return "none";
  return fmt::format("{}x{}x{}", t.coopmat_m, t.coopmat_n, t.coopmat_k);
}

// The VK_NV_cooperative_matrix2 features the device has, " a, b, ..." (" none" without any).
std::string coopmat2_features(const platform::DeviceProps::CoopMat2& m) {
  std::string out;
  const std::pair<bool, const char*> features[] = {
      {m.workgroup_scope, "workgroup scope"},   {m.flexible_dimensions, "flexible dimensions"},
      {m.reductions, "reductions"},             {m.conversions, "conversions"},
      {m.per_element_operations, "per-element operations"},
      {m.tensor_addressing, "tensor addressing"}, {m.block_loads, "block loads"}};
  for (const auto& [has, name] : features) {
    if (has) out += fmt::format("{} {}", out.empty() ? "" : ",", name);
  }
  return out.empty() ? " none" : out;
}

// What each path runs with, for the listing.
std::string path_detail(const platform::Tuning& t, ops::MatmulPath path) {
  switch (path) {
    case ops::MatmulPath::tiled:
      return fmt::format(" ({}x{} tiles, {}x{} per invocation)", t.tiled_rows, t.tiled_tokens,
                         t.tiled_thread_rows, t.tiled_thread_tokens);
    case ops::MatmulPath::coopmat:
      if (!ops::coopmat_available(t)) return " (unavailable: no usable f16 cooperative matrix)";
      return fmt::format(" ({}x{} tiles, {} f16 matrices, {} subgroups of {})", t.coopmat_rows,
                         t.coopmat_tokens, coopmat_shape(t), t.coopmat_sg_rows * t.coopmat_sg_tokens,
                         t.coopmat_subgroup);
    case ops::MatmulPath::intdot:
      if (!ops::intdot_available(t)) return " (unavailable: no integer dot product)";
      return fmt::format(" (int8 activations, types with integer codes; others gemv; {})",
                         matvec_layout(t));
    case ops::MatmulPath::intdot_tiled:
      if (!ops::intdot_available(t)) return " (unavailable: no integer dot product)";
      return fmt::format(" (int8 codes in {}x{} tiles, {}x{} per invocation; others tiled)",
                         t.tiled_rows, t.tiled_tokens, t.tiled_thread_rows, t.tiled_thread_tokens);
    case ops::MatmulPath::gemv: break;
  }
  return fmt::format(" ({})", matvec_layout(t));
}

// Which kernel each matmul size takes on this device (ops::choose_matmul, with VKLLM_KERNELS),
// as ranges of token counts.
std::vector<PathRange> matmul_paths(const DeviceCaps& c) {
  const ops::KernelChoice choice = ops::kernel_choice_from_env();
  const std::uint32_t limit =
      std::max({c.tuning.tiled_min_tokens, c.tuning.coopmat_min_tokens, 1u}) + 1;
  std::vector<PathRange> out;
  for (std::uint32_t n = 1; n <= limit; ++n) {
    const ops::MatmulPath p = ops::choose_matmul(choice, c.tuning, n);
    if (!out.empty() && out.back().path == p) {
      out.back().to = n;
    } else {
      if (!out.empty()) out.back().to = n - 1;
      out.push_back({n, n, p});
    }
  }
  out.back().to = 0;
  return out;
}

// Which attention kernel a step takes (ops::attention_kernel).
std::string attention_paths(const platform::Tuning& t) {
  const ops::KernelChoice choice = ops::kernel_choice_from_env();
  const bool matrix_cores = ops::coopmat_available(t) &&
                            (choice == ops::KernelChoice::coopmat ||
                             (choice == ops::KernelChoice::automatic && t.coopmat_min_tokens != 0));
  std::string prompt;
  if (matrix_cores) {
    prompt = fmt::format("coopmat ({}x{}x{} f16 matrices, a subgroup per {} rows; head sizes that "
                         "are multiples of them, else tiled or rows)",
                         t.coopmat_m, t.coopmat_n, t.coopmat_k, t.coopmat_m);
  } else if (t.attn_subgroup) {
    prompt = fmt::format("tiled ({} subgroups of {} invocations, {} rows each, {}-key tiles; "
                         "fewer rows where a head size needs the shared memory)",
                         t.attn_subgroups, t.attn_subgroup, t.attn_sg_rows,
                         t.attn_subgroup * t.attn_lane_keys);
  } else {
    prompt = "rows (no fixed subgroup size for the tiled kernel)";
  }
  return fmt::format("prompt chunks: {}; decode: rows, split over the context up to 64 tokens",
                     prompt);
}

json::object to_json(const DeviceCaps& c, std::size_t index, bool chosen) {
  const auto& p = c.props;
  json::object o;
  o["index"] = index;
  o["default"] = chosen;
  o["name"] = p.name;
  o["type"] = platform::to_string(p.type);
  o["vendor"] = platform::to_string(c.vendor);
  o["vendor_id"] = p.vendor_id;
  o["device_id"] = p.device_id;
  o["arch"] = platform::to_string(c.arch);
  o["api_version"] = c.api_version_string;
  o["driver_name"] = p.driver_name;
  o["driver_info"] = p.driver_info;
  o["driver_version"] = c.driver_version_string;
  o["usable"] = c.unusable_reason.empty();
  if (!c.unusable_reason.empty()) o["unusable_reason"] = c.unusable_reason;
  o["subgroup"] = {{"size", c.subgroup_size},       {"min", c.min_subgroup_size},
                   {"max", c.max_subgroup_size},    {"size_control", c.subgroup_size_control},
                   {"arithmetic", c.subgroup_arithmetic}};
  o["fp16"] = {{"storage", c.fp16_storage}, {"math", c.fp16_math}};
  o["int8"] = {{"storage", c.int8_storage}, {"math", c.int8_math}};
  o["integer_dot_product"] = {{"supported", c.integer_dot},
                              {"accelerated", c.integer_dot_accelerated}};
  json::array shapes;
  for (const auto& s : c.coopmat_shapes) {
    shapes.push_back({{"m", s.m}, {"n", s.n}, {"k", s.k}, {"a", platform::to_string(s.a)},
                      {"b", platform::to_string(s.b)}, {"c", platform::to_string(s.c)},
                      {"result", platform::to_string(s.result)},
                      {"scope", s.subgroup_scope ? "subgroup" : "other"}});
  }
  o["cooperative_matrix"] = {{"usable", c.coopmat}, {"shapes", shapes}};
  o["shared_memory_bytes"] = c.shared_memory;
  o["max_workgroup_invocations"] = p.max_workgroup_invocations;
  if (c.compute_units) o["compute_units"] = *c.compute_units;
  else o["compute_units"] = nullptr;
  o["max_storage_buffer_range"] = c.max_storage_buffer_range;
  o["max_memory_allocation_size"] = c.max_allocation;
  o["timestamps"] = c.timestamps;
  json::array heaps;
  for (const auto& h : p.heaps) {
    heaps.push_back({{"size", h.size}, {"budget", h.budget}, {"usage", h.usage},
                     {"device_local", h.device_local}, {"host_visible", h.host_visible}});
  }
  o["memory_heaps"] = heaps;
  o["quirks"] = {{"prefer_small_workgroups", c.quirks.prefer_small_workgroups},
                 {"unified_memory", c.quirks.unified_memory}};
  o["coopmat2"] = p.coopmat2.present ? json::value(coopmat2_features(p.coopmat2).substr(1))
                                      : json::value(nullptr);
  o["tuning"] = {{"elementwise_workgroup", c.tuning.elementwise_workgroup},
                 {"rows_workgroup", c.tuning.rows_workgroup},
                 {"matvec_workgroup", c.tuning.matvec_workgroup},
                 {"matvec_rows", c.tuning.matvec_rows},
                 {"matvec_lane_rows", c.tuning.matvec_lane_rows},
                 {"tiled_rows", c.tuning.tiled_rows},
                 {"tiled_tokens", c.tuning.tiled_tokens},
                 {"tiled_thread_rows", c.tuning.tiled_thread_rows},
                 {"tiled_thread_tokens", c.tuning.tiled_thread_tokens},
                 {"tiled_min_tokens", c.tuning.tiled_min_tokens},
                 {"coopmat_shape", coopmat_shape(c.tuning)},
                 {"coopmat_rows", c.tuning.coopmat_rows},
                 {"coopmat_tokens", c.tuning.coopmat_tokens},
                 {"coopmat_subgroups", c.tuning.coopmat_sg_rows * c.tuning.coopmat_sg_tokens},
                 {"coopmat_subgroup_size", c.tuning.coopmat_subgroup},
                 {"coopmat_min_tokens", c.tuning.coopmat_min_tokens},
                 {"intdot", ops::intdot_available(c.tuning)},
                 {"intdot_max_tokens", c.tuning.intdot_max_tokens},
                 {"attn_subgroup_size", c.tuning.attn_subgroup},
                 {"attn_subgroups", c.tuning.attn_subgroups},
                 {"attn_sg_rows", c.tuning.attn_sg_rows},
                 {"attn_lane_keys", c.tuning.attn_lane_keys}};
  json::array paths;
  for (const auto& [from, to, path] : matmul_paths(c)) {
    json::object r;
    r["tokens_from"] = from;
    if (to) r["tokens_to"] = to;  // absent: and more
    r["path"] = ops::to_string(path);
    paths.push_back(std::move(r));
  }
  o["matmul_paths"] = std::move(paths);
  return o;
}

void print_table(const DeviceCaps& c, std::size_t index, bool chosen) {
  const auto& p = c.props;
  fmt::print("Device {}: {}{}\n", index, p.name, chosen ? "   <- default" : "");
  fmt::print("  type            {} | vendor {} (0x{:04x}) | arch class {}\n",
             platform::to_string(p.type), platform::to_string(c.vendor), p.vendor_id,
             platform::to_string(c.arch));
  fmt::print("  driver          {} {} ({}) | Vulkan {}\n", p.driver_name, c.driver_version_string,
             p.driver_info, c.api_version_string);
  if (!c.unusable_reason.empty()) fmt::print("  UNUSABLE        {}\n", c.unusable_reason);
  fmt::print("  subgroup        size {} (range {}..{}, size control {}, arithmetic {})\n",
             c.subgroup_size, c.min_subgroup_size, c.max_subgroup_size,
             yn(c.subgroup_size_control), yn(c.subgroup_arithmetic));
  fmt::print("  fp16            storage {}, math {}\n", yn(c.fp16_storage), yn(c.fp16_math));
  fmt::print("  int8            storage {}, math {}\n", yn(c.int8_storage), yn(c.int8_math));
  fmt::print("  integer dot     {}{}\n", yn(c.integer_dot),
             c.integer_dot_accelerated ? " (accelerated)" : "");
  if (c.coopmat_shapes.empty()) {
    fmt::print("  coop. matrix    none\n");
  } else {
    fmt::print("  coop. matrix    {} shapes:", c.coopmat_shapes.size());
    for (const auto& s : c.coopmat_shapes) {
      fmt::print(" {}x{}x{} {}*{}->{}", s.m, s.n, s.k, platform::to_string(s.a),
                 platform::to_string(s.b), platform::to_string(s.result));
    }
    fmt::print(" | GEMM uses {}\n", coopmat_shape(c.tuning));
  }
  if (p.coopmat2.present) {
    fmt::print("  coop. matrix 2  VK_NV_cooperative_matrix2 (not used yet):{}\n",
               coopmat2_features(p.coopmat2));
  }
  fmt::print("  shared memory   {} | max workgroup {} | compute units {}\n",
             format_bytes(c.shared_memory), p.max_workgroup_invocations,
             c.compute_units ? std::to_string(*c.compute_units) : "not reported");
  fmt::print("  maxStorageBufferRange {} | maxMemoryAllocationSize {} | timestamps {}\n",
             format_bytes(c.max_storage_buffer_range), format_bytes(c.max_allocation),
             yn(c.timestamps));
  for (std::size_t h = 0; h < p.heaps.size(); ++h) {
    const auto& heap = p.heaps[h];
    fmt::print("  heap {}          {}{}{}", h, format_bytes(heap.size),
               heap.device_local ? " device-local" : "", heap.host_visible ? " host-visible" : "");
    if (heap.budget) {
      fmt::print(" (budget {}, used {})", format_bytes(heap.budget), format_bytes(heap.usage));
    }
    fmt::print("\n");
  }
  fmt::print("  tuning          elementwise wg {}, rows wg {}, matvec wg {} x {} rows ({})\n",
             c.tuning.elementwise_workgroup, c.tuning.rows_workgroup, c.tuning.matvec_workgroup,
             c.tuning.matvec_rows, matvec_layout(c.tuning));
  fmt::print("  matmul paths    ");
  const char* sep = "";
  for (const auto& [from, to, path] : matmul_paths(c)) {
    fmt::print("{}{} tokens: {}{}", std::exchange(sep, "; "),
               to ? fmt::format("{}-{}", from, to) : fmt::format("{}+", from), ops::to_string(path),
               path_detail(c.tuning, path));
  }
  fmt::print("{}\n", ops::kernel_choice_from_env() == ops::KernelChoice::automatic
                          ? ""
                          : " (forced by VKLLM_KERNELS)");
  fmt::print("  attention       {}\n\n", attention_paths(c.tuning));
}

}  // namespace

int run_devices(const DevicesOptions& options) {
  ops::kernel_choice_from_env();  // a bad VKLLM_KERNELS fails before anything is printed
  platform::Instance instance = platform::Instance::create({});
  const auto& devices = instance.devices();
  std::optional<std::size_t> chosen;
  try {
    chosen = instance.choose_device();
  } catch (const std::exception&) {
    // Listing still works when nothing is usable; the reasons are printed per device.
  }
  if (options.json) {
    json::array arr;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      arr.push_back(to_json(devices[i], i, chosen && *chosen == i));
    }
    std::cout << json::serialize(json::object{{"devices", arr}}) << "\n";
    return 0;
  }
  if (devices.empty()) {
    fmt::print("no Vulkan devices (install a driver, or lavapipe: mesa-vulkan-drivers)\n");
    return 1;
  }
  for (std::size_t i = 0; i < devices.size(); ++i) print_table(devices[i], i, chosen && *chosen == i);
  fmt::print("Select with --device N or VKLLM_DEVICE=N.\n");
  return 0;
}

}  // namespace vkllm::cli
