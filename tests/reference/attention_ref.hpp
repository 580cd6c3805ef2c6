// CPU references for the kernels around attention (RoPE, SiLU-mul, bias add, KV write, paged
// causal GQA attention), written for clarity, not speed: double accumulation, plain softmax.
// A model-level CPU forward reuses them. Knows no Vulkan.
#pragma once

#include <cstdint>
#include <span>

#include "engine/ops/attention.hpp"

namespace vkllm::ref {

// In place on x[ntok, nheads, head_dim]: pair i of token t turns by
// theta = float(positions[t]) * inv_freq[i] (the f32 product, as the kernel forms it).
void rope(std::span<float> x, std::span<const std::uint32_t> positions,
          std::span<const float> inv_freq, std::uint32_t ntok, std::uint32_t nheads,
          std::uint32_t head_dim, ops::RopeStyle style);

// out[i] = silu(gate[i]) * up[i].
void silu_mul(std::span<const float> gate, std::span<const float> up, std::span<float> out);

// gpt-oss's gated activation (ops::Epilogue::swiglu_oai) of a (gate, up) pair, biases already
// added: g = min(g, 7), u = clamp(u, -7, 7), g * sigmoid(1.702 g) * (u + 1).
double swiglu_oai(double g, double u);

// out[r, c] = x[r, c] + bias[c] over [nrows, ncols].
void add_bias(std::span<const float> x, std::span<const float> bias, std::span<float> out,
              std::uint32_t ncols, std::uint32_t nrows);

// Row t of k_new/v_new ([ntok, kv_dim]) to row slot_mapping[t] of the f32 pools
// ([num_slots, kv_dim]); a slot past the pools is skipped, as the kernel does.
void kv_write(std::span<const float> k_new, std::span<const float> v_new,
              std::span<const std::uint32_t> slot_mapping, std::span<float> k_pool,
              std::span<float> v_pool, std::uint32_t ntok, std::uint32_t kv_dim);

// Causal GQA attention over paged f32 pools, as engine/ops/attention.hpp specifies it (the
// shape's kv_type is ignored: pass pools already rounded through f16 to model an f16 cache).
// Gathers each key through the block table, softmax in double; the shape's sliding window and
// soft-capping as the kernels apply them (keys before the window are never gathered). sinks
// (empty: none): a logit per query head in each softmax, with no value (gpt-oss).
void paged_attention(const ops::AttentionShape& shape, std::span<const float> q,
                     std::span<const float> k_pool, std::span<const float> v_pool,
                     std::span<const std::uint32_t> positions,
                     std::span<const std::uint32_t> query_start,
                     std::span<const std::uint32_t> block_table, std::span<float> out,
                     std::span<const float> sinks = {});

}  // namespace vkllm::ref
