// The step's read-outs, recorded after the layers: the final norm and the LM head over the
// sampled rows, prompt scoring (echo with logprobs), and the hidden states of embedding rows.
#include "engine/model/model.hpp"
#include "engine/model/workspace.hpp"

#include <algorithm>

#include "engine/ops/elementwise.hpp"
#include "engine/ops/matmul.hpp"
#include "engine/ops/norm.hpp"
#include "engine/ops/sample.hpp"

namespace vkllm::model {

using platform::Buffer;
using platform::BufferSpan;

// The embedding rows' hidden states into the slot's embedding readback: gathered into xn,
// through a decoder's final norm into x (the layers and the head are done with both), copied.
void Model::record_embeddings(platform::CommandStream& cs, const StepShape& sh) {
  if (sh.E == 0) return;
  ops::Kernels& k = kernels_;
  Workspace& w = *ws_;
  const ModelConfig& c = config_;
  const std::uint32_t T = sh.T, E = sh.E;
  const BufferSpan rows(w.inputs[sh.slot], w.in.embed_rows, std::uint64_t{E} * 4);
  ops::record_get_rows(k, cs, ops::f32_view(BufferSpan(w.x), c.d_model, T), rows, w.xn, E);
  const Buffer* out = &w.xn;
  if (!c.encoder) {
    ops::record_rms_norm(k, cs, w.xn, first_span(output_norm_), w.x, c.d_model, E, c.rms_eps);
    out = &w.x;
  }
  const std::uint64_t bytes = std::uint64_t{E} * c.d_model * 4;
  cs.copy(BufferSpan(*out, 0, bytes), BufferSpan(w.embed_readback[sh.slot], 0, bytes), "read embeddings");
}

// The final norm and the LM head over n rows of the step's hidden states (token indices in
// `rows`): logits [n, vocab].
void Model::record_head(platform::CommandStream& cs, std::uint32_t T, BufferSpan rows, std::uint32_t n) {
  ops::Kernels& k = kernels_;
  Workspace& w = *ws_;
  const ModelConfig& c = config_;
  ops::record_get_rows(k, cs, ops::f32_view(BufferSpan(w.x), c.d_model, T), rows, w.hs, n);
  ops::record_rms_norm(k, cs, w.hs, first_span(output_norm_), w.hn, c.d_model, n, c.rms_eps);
  const ops::DeviceWeight& head = c.tied_output ? token_embd_ : output_;
  ops::record_matmul(k, cs, head.view(), w.hn, w.logits, n);
  if (c.final_softcap > 0.f) {
    ops::record_softcap(k, cs, w.logits, w.logits, n * c.vocab_size, c.final_softcap);
  }
}

// Prompt scoring, S rows at a time through the final norm, the LM head and the sampler. Each
// row's penalty list is one entry that adds 1e30 to its target's logit, so the greedy choice is
// the target and the sampler's logprob (of the raw logits) is the target's; the top list is of
// the raw logits too.
void Model::record_scores(platform::CommandStream& cs, const StepShape& sh) {
  ops::Kernels& k = kernels_;
  Workspace& w = *ws_;
  const ModelConfig& c = config_;
  const InputLayout& in = w.in;
  const std::uint32_t T = sh.T, P = sh.P;
  const Buffer& inputs = w.inputs[sh.slot];
  const Buffer& readback = w.readback[sh.slot];
  const BufferSpan penalties(inputs, in.score_penalties, std::uint64_t{std::max(P, 1u)} * sizeof(ops::PenaltyEntry));
  // The row buffers (hs, hn, logits, scratch, top) hold max_seqs rows, whatever this step's S.
  const std::uint32_t G = options_.max_seqs;
  for (std::uint32_t g = 0; g < P; g += G) {
    const std::uint32_t n = std::min(G, P - g);
    const BufferSpan rows(inputs, in.score_rows + std::uint64_t{g} * 4, std::uint64_t{n} * 4);
    const BufferSpan sampling(inputs, in.score_sampling + std::uint64_t{g} * sizeof(ops::SamplingRow),
                              std::uint64_t{n} * sizeof(ops::SamplingRow));
    record_head(cs, T, rows, n);
    ops::record_sample(k, cs, w.logits, sampling, penalties, w.scratch, w.ids, w.logprobs, w.top, n,
                       c.vocab_size);
    cs.copy(BufferSpan(w.logprobs, 0, std::uint64_t{n} * 4),
            BufferSpan(readback, w.readback_score + std::uint64_t{g} * 4, std::uint64_t{n} * 4),
            "read score logprobs");
    if (sh.score_top > 0) {
      cs.copy(BufferSpan(w.top, 0, ops::sample_top_bytes(n)),
              BufferSpan(readback, w.readback_score_top + ops::sample_top_bytes(g), ops::sample_top_bytes(n)),
              "read score top logprobs");
    }
  }
}

}  // namespace vkllm::model
