// The forward pass of the llama family (llama, qwen2 with QKV biases, qwen3 with QK-norm, phi3,
// gemma2 and gemma3 with their post-norms, GeGLU, soft-capping and sliding windows, and the
// Mixture-of-Experts layers of Mixtral, qwen2moe, qwen3moe and gpt-oss)
// and of bert encoders over a flat batch, recorded into one command buffer per step shape:
// loading the weights, planning the workspace, recording the layers. A MoE layer's feed-forward
// is recorded in experts.cpp, bert's layers in encoder.cpp; the step's read-outs (LM head,
// prompt scores, embeddings) are in readout.cpp; its host side (checks, inputs, submission) in
// step.cpp. The layers' and the workspace's structs are in workspace.hpp.
#include "engine/model/model.hpp"
#include "engine/model/workspace.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/ops/attention.hpp"
#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/moe.hpp"
#include "engine/ops/norm.hpp"

namespace vkllm::model {

using platform::Buffer;
using platform::BufferSpan;
using platform::MemoryIntent;

namespace {

// Steps of at most this many tokens split attention over the context (flash-decoding): their
// grid is a few workgroups per sequence otherwise. Larger steps fill the device with row tiles.
constexpr std::uint32_t kSplitMaxTokens = 64;

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// A tensor as a 2-D weight of rows of dims[0] (a 3-D one's experts one after another, each
// chunk holding whole groups of row_multiple rows).
ops::DeviceWeight upload_tensor(platform::Device& device, const gguf::Reader& r,
                                const std::string& name, std::uint32_t row_multiple = 1) {
  const gguf::TensorInfo& t = r.tensor(name);
  const std::uint64_t ncols = t.dims[0];
  const std::uint64_t nrows = t.n_elements / ncols;
  const auto data = r.tensor_data(t);
  return ops::DeviceWeight::upload(device, t.type, static_cast<std::uint32_t>(ncols),
                                   static_cast<std::uint32_t>(nrows), std::as_bytes(data), name, 0,
                                   row_multiple);
}

// The rows of several weights of one column count, each concatenated after the other into
// slices of one output row: neighbours of one type share an upload (and a matmul).
std::vector<Slice> upload_concatenated(platform::Device& device, const gguf::Reader& r,
                                       const std::vector<std::string>& names) {
  std::vector<Slice> out;
  std::uint32_t y0 = 0;
  for (std::size_t i = 0; i < names.size();) {
    const gguf::TensorInfo& first = r.tensor(names[i]);
    std::vector<std::byte> bytes;
    std::uint64_t rows = 0;
    std::size_t j = i;
    for (; j < names.size(); ++j) {
      const gguf::TensorInfo& t = r.tensor(names[j]);
      if (t.type != first.type || t.dims[0] != first.dims[0]) break;
      const auto data = std::as_bytes(r.tensor_data(t));
      bytes.insert(bytes.end(), data.begin(), data.end());
      rows += t.n_elements / t.dims[0];
    }
    const std::string name = j - i == 1 ? names[i] : fmt::format("{}..{}", names[i], names[j - 1]);
    out.push_back({ops::DeviceWeight::upload(device, first.type,
                                             static_cast<std::uint32_t>(first.dims[0]),
                                             static_cast<std::uint32_t>(rows), bytes, name),
                   y0});
    y0 += static_cast<std::uint32_t>(rows);
    i = j;
  }
  return out;
}

// 1-D f32 tensors (ModelConfig checked their types) concatenated into one f32 row.
ops::DeviceWeight upload_f32_row(platform::Device& device, const gguf::Reader& r,
                                 const std::vector<std::string>& names) {
  std::vector<std::byte> bytes;
  for (const std::string& n : names) {
    const auto data = std::as_bytes(r.tensor_data(r.tensor(n)));
    bytes.insert(bytes.end(), data.begin(), data.end());
  }
  return ops::DeviceWeight::upload(device, gguf::TensorType::kF32,
                                   static_cast<std::uint32_t>(bytes.size() / 4), 1, bytes,
                                   fmt::format("{}..{}", names.front(), names.back()));
}

// gate and up of one type (equal shapes) as one weight of interleaved rows (gate 0, up 0,
// gate 1, ...), the layout of the swiglu matmul; chunks keep the pairs whole (and experts:
// row_multiple, an expert's rows interleave among themselves).
ops::DeviceWeight upload_gate_up(platform::Device& device, gguf::TensorType type, std::uint32_t ncols,
                                 std::span<const std::byte> gd, std::span<const std::byte> ud,
                                 const std::string& name, std::uint32_t row_multiple = 2) {
  const std::uint64_t row_bytes = ops::weight_row_bytes(type, ncols);
  const std::uint64_t rows = gd.size() / row_bytes;
  std::vector<std::byte> bytes(2 * rows * row_bytes);
  for (std::uint64_t i = 0; i < rows; ++i) {
    std::memcpy(bytes.data() + 2 * i * row_bytes, gd.data() + i * row_bytes, row_bytes);
    std::memcpy(bytes.data() + (2 * i + 1) * row_bytes, ud.data() + i * row_bytes, row_bytes);
  }
  return ops::DeviceWeight::upload(device, type, ncols, static_cast<std::uint32_t>(2 * rows), bytes,
                                   name, 0, row_multiple);
}

std::string mib(std::uint64_t bytes) { return fmt::format("{:.1f} MiB", double(bytes) / (1 << 20)); }

}  // namespace

Model::Model(platform::Device& device, ModelConfig config, ModelOptions options)
    : device_(device), kernels_(device), config_(std::move(config)), options_(options) {
  if (options_.kernels) kernels_.set_choice(*options_.kernels);
  if (options_.deterministic && kernels_.choice() == ops::KernelChoice::automatic) {
    kernels_.set_choice(ops::KernelChoice::gemv);
  }
}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(platform::Device& device, const gguf::Reader& reader,
                                   const ModelOptions& options_in) {
  ModelConfig config = ModelConfig::from_gguf(reader);
  ModelOptions o = options_in;
  const platform::DeviceCaps& caps = device.caps();
  if (o.max_batch_tokens == 0 || o.max_seqs == 0 || o.block_size == 0) {
    throw InvalidRequest("model options: max_batch_tokens, max_seqs and block_size must be > 0");
  }
  if (o.context_length == 0) o.context_length = std::min<std::uint32_t>(config.context_length, 4096);
  if (config.encoder && o.context_length > config.context_length) {
    throw InvalidRequest(fmt::format("context length {} exceeds the {} positions {} has embeddings for",
                                     o.context_length, config.context_length, config.name));
  }
  if (config.encoder) o.embeddings = true;
  config.use_context(o.context_length);
  if (o.context_length > config.context_length) {
    log::warn("context length {} exceeds the model's trained {}", o.context_length,
              config.context_length);
  }
  auto m = std::unique_ptr<Model>(new Model(device, config, o));
  m->kv_type_ = (caps.fp16_storage && !o.f32_kv) ? ops::KvType::f16 : ops::KvType::f32;
  m->max_blocks_per_seq_ = (o.context_length + o.block_size - 1) / o.block_size;
  const std::uint64_t kv_elem = m->kv_type_ == ops::KvType::f16 ? 2 : 4;
  const std::uint64_t block_bytes = std::uint64_t{o.block_size} * config.kv_dim() * kv_elem;
  const std::uint64_t max_blocks_binding = caps.max_storage_buffer_range / block_bytes;
  m->options_ = o;

  // Weights, in their file formats. Device memory running out at any stage of the load is
  // reported with what did not fit and what would help (docs/ARCHITECTURE.md "Injected faults").
  try {
    m->token_embd_ = upload_tensor(device, reader, "token_embd.weight");
    if (config.encoder) {
      m->position_embd_ = upload_tensor(device, reader, "position_embd.weight");
      m->token_types_ = upload_tensor(device, reader, "token_types.weight");
      m->embd_norm_ = upload_tensor(device, reader, "token_embd_norm.weight");
      m->embd_norm_b_ = upload_tensor(device, reader, "token_embd_norm.bias");
    } else {
      m->output_norm_ = upload_tensor(device, reader, "output_norm.weight");
      if (!config.tied_output) m->output_ = upload_tensor(device, reader, "output.weight");
    }
    m->layers_.resize(config.n_layers);
    for (std::uint32_t l = 0; l < config.n_layers; ++l) {
      Layer& L = m->layers_[l];
      if (o.progress) o.progress(static_cast<float>(l) / static_cast<float>(config.n_layers));
      if (o.should_stop && o.should_stop()) {
        throw Cancelled(fmt::format("the load stopped at layer {} of {}", l, config.n_layers));
      }
      if (config.encoder) {
        const auto up = [&](const std::string& name) { return upload_tensor(device, reader, name); };
        L.qkv = upload_concatenated(device, reader, {layer_tensor(l, "attn_q"), layer_tensor(l, "attn_k"),
                                                     layer_tensor(l, "attn_v")});
        L.b_qkv = upload_f32_row(device, reader, {layer_bias(l, "attn_q"), layer_bias(l, "attn_k"),
                                                  layer_bias(l, "attn_v")});
        L.wo = up(layer_tensor(l, "attn_output"));
        L.b_o = up(layer_bias(l, "attn_output"));
        L.attn_norm = up(layer_tensor(l, "attn_output_norm"));
        L.attn_norm_b = up(layer_bias(l, "attn_output_norm"));
        L.w_up = up(layer_tensor(l, "ffn_up"));
        L.b_up = up(layer_bias(l, "ffn_up"));
        L.w_down = up(layer_tensor(l, "ffn_down"));
        L.b_down = up(layer_bias(l, "ffn_down"));
        L.ffn_norm = up(layer_tensor(l, "layer_output_norm"));
        L.ffn_norm_b = up(layer_bias(l, "layer_output_norm"));
        continue;
      }
      L.attn_norm = upload_tensor(device, reader, layer_tensor(l, "attn_norm"));
      L.qkv = config.fused_qkv
                  ? upload_concatenated(device, reader, {layer_tensor(l, "attn_qkv")})
                  : upload_concatenated(device, reader, {layer_tensor(l, "attn_q"),
                                                         layer_tensor(l, "attn_k"),
                                                         layer_tensor(l, "attn_v")});
      L.wo = upload_tensor(device, reader, layer_tensor(l, "attn_output"));
      L.ffn_norm = upload_tensor(device, reader, layer_tensor(l, config.ffn_norm_name));
      // gate and up (interleaved when they share a type; experts: per expert) and down.
      const auto upload_ffn = [&](const char* gate_name, const char* up_name, const char* down_name,
                                  std::uint32_t rows_per_expert, ops::DeviceWeight& gate_up,
                                  ops::DeviceWeight& gate_w, ops::DeviceWeight& up_w,
                                  ops::DeviceWeight& down_w) {
        const std::string gate = layer_tensor(l, gate_name), up = layer_tensor(l, up_name);
        const gguf::TensorInfo& u = reader.tensor(up);
        const auto ncols = static_cast<std::uint32_t>(u.dims[0]);
        const auto ud = std::as_bytes(reader.tensor_data(u));
        if (config.fused_gate_up) {  // rows gate | up
          gate_up = upload_gate_up(device, u.type, ncols, ud.first(ud.size() / 2),
                                   ud.subspan(ud.size() / 2), up);
        } else if (const gguf::TensorInfo& g = reader.tensor(gate); g.type == u.type) {
          gate_up = upload_gate_up(device, u.type, ncols, std::as_bytes(reader.tensor_data(g)), ud,
                                   gate + "+" + up, 2 * rows_per_expert);
        } else {
          gate_w = upload_tensor(device, reader, gate, rows_per_expert);
          up_w = upload_tensor(device, reader, up, rows_per_expert);
        }
        const std::string down = layer_tensor(l, down_name);
        down_w = upload_tensor(device, reader, down,
                               rows_per_expert > 1 ? static_cast<std::uint32_t>(reader.tensor(down).dims[1]) : 1);
      };
      if (config.moe()) {
        std::vector<std::string> router = {layer_tensor(l, "ffn_gate_inp")};
        if (config.shared_ffn_dim > 0) router.push_back(layer_tensor(l, "ffn_gate_inp_shexp"));
        L.router = upload_concatenated(device, reader, router);
        upload_ffn("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", config.expert_ffn_dim,
                   L.exp_gate_up, L.exp_gate, L.exp_up, L.exp_down);
        if (config.expert_bias) {  // gpt-oss: gate and up's interleaved as their rows are
          L.router_b = upload_f32_row(device, reader, {layer_bias(l, "ffn_gate_inp")});
          const auto bias = [&](const char* what) {  // f32 (ModelConfig checked)
            return std::as_bytes(reader.tensor_data(reader.tensor(layer_bias(l, what))));
          };
          // f32 "rows" of one element each: upload_gate_up's pairs are (gate, up) bias pairs.
          L.exp_gate_up_b = upload_gate_up(device, gguf::TensorType::kF32, 1, bias("ffn_gate_exps"),
                                           bias("ffn_up_exps"), layer_bias(l, "ffn_gate_up_exps"));
          L.exp_down_b = upload_f32_row(device, reader, {layer_bias(l, "ffn_down_exps")});
        }
        if (config.shared_ffn_dim > 0) {
          upload_ffn("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", 1, L.w_gate_up, L.w_gate,
                     L.w_up, L.w_down);
        }
      } else {
        upload_ffn("ffn_gate", "ffn_up", "ffn_down", 1, L.w_gate_up, L.w_gate, L.w_up, L.w_down);
      }
      if (config.qkv_bias) {
        L.b_qkv = upload_f32_row(device, reader, {layer_bias(l, "attn_q"), layer_bias(l, "attn_k"),
                                                  layer_bias(l, "attn_v")});
      }
      if (config.out_bias) L.b_o = upload_tensor(device, reader, layer_bias(l, "attn_output"));
      if (config.attn_sinks) L.sinks = upload_tensor(device, reader, layer_tensor(l, "attn_sinks"));
      if (config.qk_norm) {
        L.q_norm = upload_tensor(device, reader, layer_tensor(l, "attn_q_norm"));
        L.k_norm = upload_tensor(device, reader, layer_tensor(l, "attn_k_norm"));
      }
      if (config.post_norms) {
        L.post_attn_norm = upload_tensor(device, reader, layer_tensor(l, "post_attention_norm"));
        L.post_ffw_norm = upload_tensor(device, reader, layer_tensor(l, "post_ffw_norm"));
      }
    }
  } catch (const OutOfMemory& e) {
    std::uint64_t file_bytes = 0;
    for (const gguf::TensorInfo& t : reader.tensors()) file_bytes += t.n_bytes;
    throw OutOfMemory(fmt::format(
        "the weights ({}) do not fit in the memory of {} ({} device-local): {} were uploaded when "
        "it ran out ({}); a smaller quantization of the model or a device with more memory is needed",
        mib(file_bytes), device.name(), mib(caps.device_local_bytes), mib(m->weight_bytes()), e.what()));
  }

  // Workspace for the largest step.
  try {
    auto ws = std::make_unique<Workspace>();
    const std::uint64_t T = o.max_batch_tokens, S = o.max_seqs;
    const std::uint64_t align = std::max<std::uint64_t>(caps.storage_offset_alignment, 16);
    InputLayout& in = ws->in;
    in.max_penalties = o.max_seqs * 1024;
    std::uint64_t off = 0;
    auto section = [&](std::uint64_t bytes) {
      const std::uint64_t at = off;
      off = align_up(off + bytes, align);
      return at;
    };
    in.token_ids = section(T * 4);
    in.positions = section(T * 4);
    in.query_start = section((S + 1) * 4);
    in.slot_mapping = section(T * 4);
    in.block_table = section(S * m->max_blocks_per_seq_ * 4);
    in.sample_rows = section(S * 4);
    in.sampling = section(S * sizeof(ops::SamplingRow));
    in.penalties = section(std::uint64_t{in.max_penalties} * sizeof(ops::PenaltyEntry));
    in.mask_words = (m->config_.vocab_size + 31) / 32;
    in.masks = section(S * in.mask_words * 4);
    in.score_rows = section(T * 4);
    in.score_sampling = section(T * sizeof(ops::SamplingRow));
    in.score_penalties = section(T * sizeof(ops::PenaltyEntry));
    in.feed = section(T * 4);
    in.embed_rows = section(T * 4);
    in.attn_limits = section(T * 4);
    in.swa_slot_mapping = section(T * 4);
    in.swa_block_table = section(S * m->max_blocks_per_seq_ * 4);
    in.total = off;
    for (std::uint32_t i = 0; i < 2; ++i) {
      ws->inputs[i] = device.create_buffer(in.total, MemoryIntent::upload, fmt::format("step_inputs.{}", i));
    }
    auto act = [&](std::uint64_t floats, const char* name) {
      return device.create_buffer(std::max<std::uint64_t>(floats, 1) * 4, MemoryIntent::activations,
                                  name);
    };
    const ModelConfig& c = config;
    ws->x = act(T * c.d_model, "x");
    ws->xn = act(T * c.d_model, "xn");
    ws->qkv = act(T * (c.q_dim() + 2 * c.kv_dim()), "qkv");
    ws->q = act(T * c.q_dim(), "q");
    ws->attn = act(T * c.q_dim(), "attn");
    const auto split_tokens = static_cast<std::uint32_t>(std::min<std::uint64_t>(T, kSplitMaxTokens));
    {
      // The most ranges a split step can have: one sequence; the most row tiles: one sequence per
      // token. The counters start at zero, and every dispatch leaves them so.
      ops::AttentionShape most = m->attention_shape(split_tokens, 1);
      ws->attn_partials = act(ops::attention_partial_bytes(most) / 4, "attn_partials");
      most.nseq = split_tokens;
      const std::vector<std::byte> zeros(std::max<std::uint64_t>(ops::attention_counter_bytes(most), 4));
      ws->attn_counters = device.create_buffer(zeros.size(), MemoryIntent::activations, "attn_counters");
      device.upload(ws->attn_counters, 0, zeros);
    }
    ws->gate = act(T * c.dense_ffn_dim(), "gate");
    if (c.moe()) {
      const std::uint64_t pairs = T * c.n_experts_used;
      ws->route_layout = ops::moe_route_layout(o.max_batch_tokens, c.n_experts, c.n_experts_used);
      ws->router_logits = act(T * (c.n_experts + (c.shared_ffn_dim > 0 ? 1 : 0)), "router_logits");
      ws->route = device.create_buffer(ws->route_layout.bytes, MemoryIntent::activations, "moe_route");
      ws->exp_h = act(pairs * c.expert_ffn_dim, "expert_hidden");
      bool separate = false;
      for (const Layer& L : m->layers_) separate |= L.exp_up.bytes() > 0;
      if (separate) ws->exp_up = act(pairs * c.expert_ffn_dim, "expert_up");
      ws->exp_y = act(pairs * c.d_model, "expert_out");
      if (c.shared_ffn_dim > 0) ws->shared_out = act(T * c.d_model, "shared_expert_out");
    }
    if (ops::intdot_available(m->kernels_.tuning())) {
      const std::uint32_t widest = std::max({c.d_model, c.q_dim(), c.dense_ffn_dim()});
      ws->xq = device.create_buffer(ops::q8_activation_bytes(T, widest), MemoryIntent::activations,
                                    "xq");
    }
    bool separate_gate_up = false;
    for (const Layer& L : m->layers_) separate_gate_up |= L.w_up.bytes() > 0;
    if (separate_gate_up) ws->up = act(T * c.dense_ffn_dim(), "up");
    ws->hs = act(S * c.d_model, "hs");
    ws->hn = act(S * c.d_model, "hn");
    // The sampler's scratch holds the logits' rows and its per-slice partials: the larger.
    const std::uint64_t sample_scratch = ops::sample_scratch_bytes(o.max_seqs, c.vocab_size);
    if (std::max<std::uint64_t>(S * c.vocab_size * 4, sample_scratch) >
        caps.max_storage_buffer_range) {
      throw OutOfMemory(fmt::format("logits of {} rows x {} tokens exceed one storage binding; "
                                    "lower max_seqs",
                                    S, c.vocab_size));
    }
    ws->logits = act(S * c.vocab_size, "logits");
    ws->scratch = device.create_buffer(
        std::max<std::uint64_t>(sample_scratch, 4),
        MemoryIntent::activations, "sample_scratch");
    ws->ids = act(S, "ids");
    ws->logprobs = act(S, "logprobs");
    const std::vector<float> inv_freq = rope_inv_freq(c.rope);
    ws->inv_freq = act(inv_freq.size(), "rope_inv_freq");
    device.upload(ws->inv_freq, 0, std::as_bytes(std::span<const float>(inv_freq)));
    // The sliding layers' own frequencies (gemma3), where they differ.
    if (const std::vector<float> local = rope_inv_freq(c.rope_local); local != inv_freq) {
      ws->inv_freq_local = act(local.size(), "rope_inv_freq_local");
      device.upload(ws->inv_freq_local, 0, std::as_bytes(std::span<const float>(local)));
    }
    ws->top = device.create_buffer(ops::sample_top_bytes(S), MemoryIntent::activations, "top");
    ws->readback_top = S * 8;
    ws->readback_score = ws->readback_top + ops::sample_top_bytes(S);
    ws->readback_score_top = ws->readback_score + T * 4;
    for (std::uint32_t i = 0; i < 2; ++i) {
      ws->readback[i] = device.create_buffer(ws->readback_score_top + ops::sample_top_bytes(T),
                                             MemoryIntent::readback, fmt::format("step_readback.{}", i));
    }
    ws->logits_readback = device.create_buffer(S * c.vocab_size * 4, MemoryIntent::readback, "logits_readback");
    if (o.embeddings) {
      for (std::uint32_t i = 0; i < 2; ++i) {
        ws->embed_readback[i] = device.create_buffer(T * c.d_model * 4, MemoryIntent::readback,
                                                     fmt::format("embed_readback.{}", i));
      }
    }
    m->ws_ = std::move(ws);
  } catch (const OutOfMemory& e) {
    throw OutOfMemory(fmt::format(
        "the workspace for steps of {} tokens and {} sequences does not fit in the memory of {} "
        "beside the weights ({}): {}; lower --max-num-batched-tokens or --max-num-seqs",
        o.max_batch_tokens, o.max_seqs, device.name(), mib(m->weight_bytes()), e.what()));
  }

  // K/V block groups (docs/ARCHITECTURE.md "Sliding windows"): a model with full and
  // sliding-window layers gives its sliding layers pools of their own, sized for max_seqs windows
  // and a step's chunks (the scheduler gives back the blocks before each window).
  const std::uint32_t n_sliding = config.sliding_layers();
  const bool two_tables = n_sliding > 0 && n_sliding < config.n_layers;
  const std::uint32_t n_swa_layers = two_tables ? n_sliding : 0;
  const std::uint32_t n_main_layers = config.n_layers - n_swa_layers;
  if (!two_tables) {
    o.swa_blocks = 0;
  } else if (o.swa_blocks == 0) {
    if (options_in.num_blocks != 0) {
      o.swa_blocks = options_in.num_blocks;
    } else {
      // Each sequence: its window's blocks, a partial one at each end and one the prefix cache
      // still names; the chunks of two steps (the one in flight, the next): 2 T tokens.
      const std::uint64_t per_seq = (std::uint64_t{config.sliding_window} + 2 * o.block_size - 2) / o.block_size + 1;
      const std::uint64_t chunks = (2 * std::uint64_t{o.max_batch_tokens} + o.block_size - 1) / o.block_size;
      const std::uint64_t full = std::uint64_t{m->max_blocks_per_seq_} * o.max_seqs + 1;
      o.swa_blocks = static_cast<std::uint32_t>(
          std::min({per_seq * o.max_seqs + chunks + 2, full, max_blocks_binding}));
    }
  }
  if (o.swa_blocks > max_blocks_binding) {
    throw OutOfMemory(fmt::format("{} KV blocks of {} bytes exceed one storage binding ({} bytes)",
                                  o.swa_blocks, block_bytes, caps.max_storage_buffer_range));
  }
  const std::uint64_t swa_pool_bytes = std::uint64_t{o.swa_blocks} * block_bytes * 2 * n_swa_layers;

  // K/V pools from what is left (DESIGN: memory is planned): the --gpu-memory-fraction budget
  // minus weights, workspace and the sliding layers' pools, at most one binding per pool, and no
  // more than every sequence at full context needs (plus the null block) unless asked.
  if (o.num_blocks == 0) {
    const std::uint64_t budget =
        o.memory_budget ? o.memory_budget
                        : static_cast<std::uint64_t>(static_cast<double>(caps.device_local_bytes) * o.gpu_memory_fraction);
    const std::uint64_t used = m->weight_bytes() + m->workspace_bytes() + swa_pool_bytes;
    const std::uint64_t per_block = block_bytes * 2 * n_main_layers;
    const std::uint64_t by_memory = budget > used ? (budget - used) / per_block : 0;
    const std::uint64_t wanted = std::uint64_t{m->max_blocks_per_seq_} * o.max_seqs + 1;
    o.num_blocks = static_cast<std::uint32_t>(std::min({by_memory, max_blocks_binding, wanted}));
    if (o.num_blocks < 2) {
      throw OutOfMemory(fmt::format("no room for the KV cache: weights {} + workspace {} bytes of a "
                                    "{}-byte budget ({})",
                                    m->weight_bytes(), m->workspace_bytes(), budget,
                                    o.memory_budget ? "what the memory budget leaves"
                                                    : fmt::format("gpu memory fraction {}", o.gpu_memory_fraction)));
    }
  }
  if (o.num_blocks > max_blocks_binding) {
    throw OutOfMemory(fmt::format("{} KV blocks of {} bytes exceed one storage binding ({} bytes)",
                                  o.num_blocks, block_bytes, caps.max_storage_buffer_range));
  }
  // A planned pool that the driver cannot allocate (the budget counts memory other processes
  // hold) shrinks by halves down to one full context; a pool the caller sized does not.
  const std::uint32_t min_blocks = options_in.num_blocks == 0 ? m->max_blocks_per_seq_ + 1 : o.num_blocks;
  for (;;) {
    try {
      for (std::uint32_t l = 0; l < config.n_layers; ++l) {
        const bool swa = two_tables && config.layer_slides(l);
        const std::uint64_t pool = std::uint64_t{swa ? o.swa_blocks : o.num_blocks} * block_bytes;
        m->layers_[l].k_pool = device.create_buffer(pool, MemoryIntent::kv_cache, fmt::format("k_pool.{}", l));
        m->layers_[l].v_pool = device.create_buffer(pool, MemoryIntent::kv_cache, fmt::format("v_pool.{}", l));
      }
      break;
    } catch (const OutOfMemory& e) {
      for (Layer& L : m->layers_) {
        L.k_pool = Buffer();
        L.v_pool = Buffer();
      }
      const std::uint64_t per_block = block_bytes * 2 * n_main_layers;
      if (o.num_blocks <= min_blocks) {
        throw OutOfMemory(fmt::format(
            "the KV cache of {} blocks ({}, {} tokens) does not fit in the memory of {} beside the "
            "weights ({}) and the workspace ({}): {}; lower --ctx-size ({} now) or "
            "--gpu-memory-fraction, or use a smaller model",
            o.num_blocks, mib(o.num_blocks * per_block), std::uint64_t{o.num_blocks - 1} * o.block_size,
            device.name(), mib(m->weight_bytes()), mib(m->workspace_bytes()), e.what(), o.context_length));
      }
      const std::uint32_t fewer = std::max(min_blocks, o.num_blocks / 2);
      log::warn("the KV cache of {} blocks ({}) did not fit ({}); trying {} blocks", o.num_blocks,
                mib(o.num_blocks * per_block), e.what(), fewer);
      o.num_blocks = fewer;
    }
  }
  // The pools are written once now: drivers that commit memory on first touch (lavapipe, where
  // device memory is the process's heap) hold the whole pool from the start, so an overcommitted
  // plan shows at load, not hours later, and the RSS after the warm-up is the RSS for good.
  {
    platform::CommandStream cs = device.command_stream();
    cs.begin();
    for (const Layer& L : m->layers_) {
      cs.fill(L.k_pool, 0, "kv_zero");
      cs.fill(L.v_pool, 0, "kv_zero");
    }
    cs.end();
    cs.submit_and_wait();
  }
  m->options_ = o;
  // The caller's hooks serve this load only: a reload with these options runs without them.
  m->options_.should_stop = nullptr;
  m->options_.progress = nullptr;
  if (o.progress) o.progress(1.f);
  return m;
}

std::uint64_t Model::weight_bytes() const {
  std::uint64_t n = token_embd_.bytes() + output_norm_.bytes() + output_.bytes() +
                    position_embd_.bytes() + token_types_.bytes() + embd_norm_.bytes() +
                    embd_norm_b_.bytes();
  for (const Layer& L : layers_) {
    for (const ops::DeviceWeight* w :
         {&L.attn_norm, &L.wo, &L.ffn_norm, &L.w_gate_up, &L.w_gate, &L.w_up, &L.w_down, &L.b_qkv,
          &L.q_norm, &L.k_norm, &L.attn_norm_b, &L.ffn_norm_b, &L.b_o, &L.b_up, &L.b_down,
          &L.post_attn_norm, &L.post_ffw_norm, &L.exp_gate_up, &L.exp_gate, &L.exp_up,
          &L.exp_down, &L.router_b, &L.exp_gate_up_b, &L.exp_down_b, &L.sinks}) {
      n += w->bytes();
    }
    for (const Slice& sl : L.qkv) n += sl.w.bytes();
    for (const Slice& sl : L.router) n += sl.w.bytes();
  }
  return n;
}

std::uint64_t Model::kv_bytes() const {
  std::uint64_t n = 0;
  for (const Layer& L : layers_) n += L.k_pool.size() + L.v_pool.size();
  return n;
}

std::uint64_t Model::workspace_bytes() const {
  std::uint64_t n = 0;
  const Workspace& w = *ws_;
  for (const Buffer* b : {&w.inputs[0], &w.inputs[1], &w.x, &w.xn, &w.qkv, &w.q, &w.attn,
                          &w.attn_partials, &w.attn_counters, &w.gate, &w.up, &w.hs, &w.hn,
                          &w.logits, &w.scratch, &w.ids, &w.logprobs, &w.inv_freq,
                          &w.inv_freq_local, &w.top, &w.router_logits, &w.route, &w.exp_h,
                          &w.exp_up, &w.exp_y, &w.shared_out,
                          &w.readback[0], &w.readback[1], &w.logits_readback,
                          &w.embed_readback[0], &w.embed_readback[1]}) {
    n += b->size();
  }
  return n;
}

std::uint64_t Model::decode_bytes(std::uint32_t ctx) const {
  // The LM head reads the whole output matrix; the embedding lookup reads one row.
  const ops::DeviceWeight& head = config_.tied_output ? token_embd_ : output_;
  std::uint64_t n = weight_bytes() - token_embd_.bytes() - output_.bytes() + head.bytes() +
                    token_embd_.bytes() / config_.vocab_size;
  // A MoE layer reads its chosen experts only: n_used of n_experts.
  if (config_.moe()) {
    for (const Layer& L : layers_) {
      const std::uint64_t experts =
          L.exp_gate_up.bytes() + L.exp_gate.bytes() + L.exp_up.bytes() + L.exp_down.bytes();
      n -= experts - experts / config_.n_experts * config_.n_experts_used;
    }
  }
  const std::uint64_t kv_elem = kv_type_ == ops::KvType::f16 ? 2 : 4;
  for (std::uint32_t l = 0; l < config_.n_layers; ++l) {  // a sliding layer reads its window
    const std::uint32_t w = config_.layer_window(l);
    n += std::uint64_t{w ? std::min(ctx, w) : ctx} * config_.kv_dim() * kv_elem * 2;
  }
  return n;
}

ops::AttentionShape Model::attention_shape(std::uint32_t T, std::uint32_t S) const {
  const ModelConfig& c = config_;
  ops::AttentionShape shape;
  shape.ntok = T;
  shape.nseq = S;
  shape.n_heads = c.n_heads;
  shape.n_kv_heads = c.n_kv_heads;
  shape.head_dim = c.head_dim;
  shape.block_size = options_.block_size;
  shape.max_blocks_per_seq = max_blocks_per_seq_;
  shape.scale = c.attn_scale;  // LongRoPE's attention factor is rope_kv's (RopeKvShape::mscale)
  shape.softcap = c.attn_softcap;
  shape.kv_type = kv_type_;
  // Deterministic mode keeps one reduction order for every step: whether a step splits, and
  // whether it takes the tiled kernel, depend on its size, which depends on the rest of the batch.
  if (options_.deterministic) shape.kernel = ops::AttentionKernel::rows;
  if (!options_.deterministic && T <= kSplitMaxTokens) {
    shape.split_keys =
        ops::attention_split_keys(c.head_dim, max_blocks_per_seq_ * options_.block_size);
    // Ranges enough to fill the device with this step's sequences, no more.
    const std::uint32_t per_range = std::max<std::uint32_t>(1, S * c.n_kv_heads);
    shape.max_ranges = (kernels_.tuning().attention_workgroups + per_range - 1) / per_range;
    if (shape.max_ranges <= 1) shape.split_keys = 0;  // one range: no split
  }
  return shape;
}

std::pair<std::size_t, std::size_t> Model::record(platform::CommandStream& cs, platform::CommandStream* tail,
                                                  const StepShape& sh) {
  ops::Kernels& k = kernels_;
  Workspace& w = *ws_;
  const ModelConfig& c = config_;
  const InputLayout& in = w.in;
  const std::uint32_t T = sh.T, S = sh.S, R = sh.R;
  const Buffer& inputs = w.inputs[sh.slot];
  const Buffer& readback = w.readback[sh.slot];
  const BufferSpan token_ids(inputs, in.token_ids, T * 4);
  const BufferSpan positions(inputs, in.positions, T * 4);
  const BufferSpan query_start(inputs, in.query_start, (S + 1) * 4);
  const BufferSpan slots(inputs, in.slot_mapping, T * 4);
  const BufferSpan block_table(inputs, in.block_table, std::uint64_t{S} * max_blocks_per_seq_ * 4);
  const BufferSpan swa_slots(inputs, in.swa_slot_mapping, T * 4);
  const BufferSpan swa_block_table(inputs, in.swa_block_table, std::uint64_t{S} * max_blocks_per_seq_ * 4);
  const BufferSpan sample_rows(inputs, in.sample_rows, R * 4);
  const BufferSpan sampling(inputs, in.sampling, R * sizeof(ops::SamplingRow));
  const BufferSpan penalties(inputs, in.penalties,
                             std::uint64_t{in.max_penalties} * sizeof(ops::PenaltyEntry));
  const BufferSpan masks(inputs, in.masks, std::uint64_t{options_.max_seqs} * in.mask_words * 4);

  const ops::AttentionShape shape = attention_shape(T, S);
  const ops::RopeStyle rope = c.rope.neox ? ops::RopeStyle::neox : ops::RopeStyle::normal;

  cs.begin(false, /*time_span=*/true);
  // Ids the step before drew, where the feed names them (the submissions' semaphore orders this
  // read after that step's readback copy).
  ops::record_feed_tokens(k, cs, BufferSpan(inputs, in.feed, T * 4),
                          BufferSpan(w.readback[1 - sh.slot], 0, std::uint64_t{options_.max_seqs} * 4),
                          token_ids, T);
  if (c.encoder) {
    const auto layers = record_encoder_layers(cs, sh);
    record_embeddings(cs, sh);
    cs.end();
    return layers;
  }
  ops::record_get_rows(k, cs, token_embd_.view(), token_ids, w.x, T);
  if (c.embed_scale > 0.f) ops::record_scale(k, cs, w.x, w.x, T * c.d_model, c.embed_scale);
  const std::uint32_t qkv_stride = c.q_dim() + 2 * c.kv_dim();
  ops::RopeKvShape rkv;
  rkv.ntok = T;
  rkv.n_heads = c.n_heads;
  rkv.n_kv_heads = c.n_kv_heads;
  rkv.head_dim = c.head_dim;
  rkv.style = rope;
  rkv.kv_type = kv_type_;
  rkv.qk_norm = c.qk_norm;
  rkv.eps = c.rms_eps;
  rkv.rot_dims = c.rope.dims;
  // LongRoPE's attention factor multiplies the rotated pairs of Q and K (as llama.cpp's rope does;
  // with partial rotary the rest keep their size, so it cannot be folded into the scale).
  rkv.mscale = c.rope.attn_factor;
  // Eight dispatches a layer (docs/ARCHITECTURE.md, the step): norm, QKV (+ bias), QK-norm + RoPE
  // + K/V write, attention (its ranges combined in the same dispatch), wo (+ residual), norm,
  // gate/up (+ SiLU-multiply), down (+ residual); Gemma adds its two post-norms (and the
  // embeddings' scale). The integer-dot path adds a quantization of each of the four matmul inputs.
  const std::size_t d0 = cs.dispatch_count(), b0 = cs.barrier_count();
  // The integer-dot path (ops::matmul_takes_q8): each matmul input quantized once into w.xq, for
  // the matmuls that read it.
  const bool q8 = w.xq.size() > 0 && ops::matmul_takes_q8(k, T);
  const auto quantized = [&](const platform::Buffer& x, std::uint32_t ncols) {
    if (!q8 || ncols % 32 != 0) return BufferSpan{};
    ops::record_quantize_q8(k, cs, x, w.xq, T, ncols);
    return BufferSpan(w.xq);
  };
  const auto reading = [](ops::Epilogue e, BufferSpan xq) {
    ops::MatmulOut out = ops::with_epilogue(e);
    out.x_q8 = xq;
    return out;
  };
  // Gemma's post-norms: wo and down store into xn (free by then), whose norm is added to x.
  // gpt-oss's output bias: wo stores into xn with it, and xn is added to x.
  const auto residual = [&](const ops::DeviceWeight& post_norm, const ops::DeviceWeight& w_out,
                            const Buffer& in, std::uint32_t ncols, const ops::DeviceWeight* bias = nullptr) {
    const BufferSpan in_q8 = quantized(in, ncols);
    if (bias) {
      ops::MatmulOut out = reading(ops::Epilogue::bias, in_q8);
      out.bias = first_span(*bias);
      ops::record_matmul(k, cs, w_out.view(), in, w.xn, T, out);
      ops::record_add(k, cs, w.x, w.xn, w.x, T * c.d_model);
      return;
    }
    if (!c.post_norms) {
      ops::record_matmul(k, cs, w_out.view(), in, w.x, T, reading(ops::Epilogue::accumulate, in_q8));
      return;
    }
    ops::record_matmul(k, cs, w_out.view(), in, w.xn, T, reading(ops::Epilogue::store, in_q8));
    ops::record_rms_norm_add(k, cs, w.xn, first_span(post_norm), w.x, c.d_model, T, c.rms_eps);
  };
  for (std::uint32_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    ops::record_rms_norm(k, cs, w.x, first_span(L.attn_norm), w.xn, c.d_model, T, c.rms_eps);
    const BufferSpan xn_q8 = quantized(w.xn, c.d_model);
    for (const Slice& sl : L.qkv) {
      ops::MatmulOut out;
      out.x_q8 = xn_q8;
      out.y_stride = qkv_stride;
      out.y0 = sl.y0;
      if (c.qkv_bias) {
        out.epilogue = ops::Epilogue::bias;
        out.bias = first_span(L.b_qkv);
      }
      ops::record_matmul(k, cs, sl.w.view(), w.xn, w.qkv, T, out);
    }
    const bool local = c.layer_slides(l) && w.inv_freq_local.size() > 0;
    const bool swa = on_swa_table(l);  // the sliding layers' own table (docs/ARCHITECTURE.md "Sliding windows")
    ops::record_rope_kv(k, cs, rkv, w.qkv, positions, local ? w.inv_freq_local : w.inv_freq,
                        swa ? swa_slots : slots, w.q, L.k_pool, L.v_pool,
                        c.qk_norm ? first_span(L.q_norm) : BufferSpan{},
                        c.qk_norm ? first_span(L.k_norm) : BufferSpan{});
    ops::AttentionShape layer_shape = shape;
    layer_shape.window = c.layer_window(l);
    ops::record_attention(k, cs, layer_shape, w.q, L.k_pool, L.v_pool, positions, query_start,
                          swa ? swa_block_table : block_table, w.attn, w.attn_partials, w.attn_counters,
                          c.attn_sinks ? first_span(L.sinks) : BufferSpan{});
    residual(L.post_attn_norm, L.wo, w.attn, c.q_dim(), c.out_bias ? &L.b_o : nullptr);
    ops::record_rms_norm(k, cs, w.x, first_span(L.ffn_norm), w.xn, c.d_model, T, c.rms_eps);
    const BufferSpan ffn_q8 = quantized(w.xn, c.d_model);
    // The dense feed-forward (or a MoE layer's shared expert) up to its down matmul's input in
    // w.gate.
    const auto gated = [&] {
      const std::uint32_t n = T * c.dense_ffn_dim();
      if (L.w_gate_up.bytes() > 0) {
        ops::record_matmul(k, cs, L.w_gate_up.view(), w.xn, w.gate, T,
                           reading(c.geglu ? ops::Epilogue::geglu : ops::Epilogue::swiglu, ffn_q8));
      } else {
        ops::record_matmul(k, cs, L.w_gate.view(), w.xn, w.gate, T, reading(ops::Epilogue::store, ffn_q8));
        ops::record_matmul(k, cs, L.w_up.view(), w.xn, w.up, T, reading(ops::Epilogue::store, ffn_q8));
        if (c.geglu) {
          ops::record_gelu(k, cs, w.gate, w.gate, n);
          ops::record_mul(k, cs, w.gate, w.up, w.gate, n);
        } else {
          ops::record_silu_mul(k, cs, w.gate, w.up, w.gate, n);
        }
      }
    };
    if (c.moe()) {
      record_moe(cs, L, T, ffn_q8, gated);
    } else {
      gated();
      residual(L.post_ffw_norm, L.w_down, w.gate, c.ffn_dim);
    }
  }
  // The barrier before the first layer's first dispatch counts for the layers.
  const std::pair<std::size_t, std::size_t> layers{cs.dispatch_count() - d0, cs.barrier_count() - b0};
  record_scores(cs, sh);
  // Only the sampled rows go through the final norm and the LM head.
  if (R > 0) record_head(cs, T, sample_rows, R);
  record_embeddings(cs, sh);  // reuses x and xn: the head is done with them
  if (R == 0) {
    cs.end();
    return layers;
  }
  // A split step (late masks): the forward pass ends here; the sampler is a second command buffer
  // that release_masks() submits once the masks are in (the submissions' semaphore orders it
  // after the head).
  platform::CommandStream& ts = sh.split ? *tail : cs;
  if (sh.split) {
    cs.end();
    ts.begin(false, /*time_span=*/true);
  }
  if (sh.use_sampler) {
    ops::record_sample(k, ts, w.logits, sampling, penalties, w.scratch, w.ids, w.logprobs, w.top,
                       R, c.vocab_size, 0, masks);
    ts.copy(BufferSpan(w.logprobs, 0, R * 4),
            BufferSpan(readback, std::uint64_t{options_.max_seqs} * 4, R * 4), "read logprobs");
    if (sh.want_top) {
      // Every row's whole slice: the copy's size stays a function of the recorded shape, so a
      // replay with other per-row N reads right; step() reads only the entries asked.
      const std::uint64_t bytes = ops::sample_top_bytes(R);
      ts.copy(BufferSpan(w.top, 0, bytes), BufferSpan(readback, w.readback_top, bytes),
              "read top logprobs");
    }
  } else {
    ops::record_argmax(k, ts, w.logits, w.ids, R, c.vocab_size);
  }
  ts.copy(BufferSpan(w.ids, 0, R * 4), BufferSpan(readback, 0, R * 4), "read ids");
  if (sh.want_logits) {
    const std::uint64_t bytes = std::uint64_t{R} * c.vocab_size * 4;
    ts.copy(BufferSpan(w.logits, 0, bytes), BufferSpan(w.logits_readback, 0, bytes), "read logits");
  }
  ts.end();
  return layers;
}

}  // namespace vkllm::model
