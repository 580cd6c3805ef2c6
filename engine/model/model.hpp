// A Llama-family network on the device: weights in their GGUF block formats, the paged K/V
// pools, the activation workspace, and the forward pass over one flat batch (docs/ARCHITECTURE.md "The flat batch") recorded
// into one command buffer per step (replayed while the step's shape repeats). Knows no HTTP, no
// scheduling policy: the caller decides which tokens run and where their K/V live.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <span>
#include <deque>
#include <utility>
#include <vector>

#include "engine/gguf/gguf.hpp"
#include "engine/model/config.hpp"
#include "engine/ops/attention.hpp"
#include "engine/ops/kernels.hpp"
#include "engine/ops/sample.hpp"
#include "engine/ops/weight.hpp"

namespace vkllm::model {

struct ModelOptions {
  std::uint32_t max_batch_tokens = 512;  // T: tokens per step (prefill chunk + decodes)
  std::uint32_t max_seqs = 16;           // S: sequences per step (= rows sampled per step)
  std::uint32_t block_size = 16;         // tokens per KV block
  std::uint32_t context_length = 0;      // per sequence; 0: min(model's trained context, 4096)
  std::uint32_t num_blocks = 0;          // KV blocks (block 0 included); 0: planned from
                                         // memory, at most max_seqs full contexts
  // Blocks of the sliding-window layers' own pools, in a model with both kinds of layer
  // (Model::swa_num_blocks; docs/ARCHITECTURE.md "Sliding windows"); 0: num_blocks when that is
  // given, else planned for max_seqs windows and a step's chunks.
  std::uint32_t swa_blocks = 0;
  float gpu_memory_fraction = 0.9f;      // of the device's local memory, for the plan
  // Device memory the plan may use in bytes (the models of a server share one budget); 0:
  // gpu_memory_fraction of the device's local memory.
  std::uint64_t memory_budget = 0;
  bool f32_kv = false;                   // f32 K/V even where the device has 16-bit storage
  // Batch-invariant kernels only: a token's sums follow the same order alone or batched. Each
  // matmul path on its own applies one per-token reduction order, attention reduces each
  // (token, head) row on its own, the sampler works per row; what depends on the batch is the
  // choice among them: the tiled GEMM for steps of many tokens (ops::choose_matmul), split-K
  // decode attention, the cooperative-matrix GEMM (f16 inputs). The flag keeps those off.
  bool deterministic = false;
  // Which matmul kernels run (ops::KernelChoice; VKLLM_KERNELS when unset). With deterministic,
  // automatic becomes gemv: the automatic choice depends on the step's token count.
  std::optional<ops::KernelChoice> kernels;
  // Pads each step's tokens, sequences and sampled rows up to a few bucket sizes
  // (Model::step_bucket) so that continuous batching replays recordings instead of recording
  // anew: padding tokens belong to padding sequences, write no K/V and their rows are never
  // read back.
  bool pad_steps = true;
  // Room to read back max_batch_tokens hidden states a step (StepInput::embed_rows): the
  // embeddings of docs/ARCHITECTURE.md "Embeddings". Encoders always have it.
  bool embeddings = false;
  // Asked before each layer's upload; true stops the load with Cancelled (a signal while a big
  // model loads). Empty: never. Neither hook is kept in Model::options().
  std::function<bool()> should_stop;
  // Told the fraction of the weights uploaded (0 .. 1), before each layer and at the end (the C
  // API's progress callback). Empty: nothing.
  std::function<void(float)> progress;
};

// One step's flat batch. T = token_ids.size(), S = query_start.size() - 1.
struct StepInput {
  std::vector<std::uint32_t> token_ids;     // [T]
  std::vector<std::uint32_t> positions;     // [T] position of each token in its sequence
  std::vector<std::uint32_t> query_start;   // [S + 1] tokens of sequence s: [qs[s], qs[s+1])
  std::vector<std::uint32_t> slot_mapping;  // [T] pool row where each token's K/V go
  std::vector<std::uint32_t> block_table;   // [S * max_blocks_per_seq()] (unused entries: 0)
  // A model with full and sliding-window layers (Model::swa_num_blocks() > 0): the sliding
  // layers' own slots and table, in their pools' block ids (entries before a sequence's window
  // may be 0); else empty.
  std::vector<std::uint32_t> swa_slot_mapping;  // [T]
  std::vector<std::uint32_t> swa_block_table;   // [S * max_blocks_per_seq()]
  std::vector<std::uint32_t> sample_rows;   // [R <= S] token indices whose next token is drawn
                                            // (R = 0: a step of prompt chunks only)
  std::vector<ops::SamplingRow> sampling;   // [R] (top_logprobs <= ops::kMaxTopLogprobs)
  std::vector<ops::PenaltyEntry> penalties; // referenced by sampling[r].penalty_offset/count
  // Constrained decoding: token masks of (vocab + 31) / 32 words each, referenced by
  // sampling[r].mask_offset (ops::kNoMask: none); at most one per sampled row.
  std::vector<std::uint32_t> masks;
  // Late masks (docs/ARCHITECTURE.md, the overlapped loop): > 0 says the masks, this many words,
  // come after submit() through release_masks(), and `masks` stays empty. The forward pass runs
  // meanwhile; the sampler waits for them. A constrained row's mask follows the token drawn in
  // the step before, which the host learns while this one's forward pass runs.
  std::uint32_t late_mask_words = 0;
  bool want_logits = false;                 // read back the [R, vocab] logits (tests)
  bool want_logprobs = false;               // sampler path even for greedy rows
  // Prompt scoring (completions' echo with logprobs): for each i, the log probability of
  // score_targets[i] as the token after token score_rows[i], and the score_top most likely
  // tokens there, under the raw distribution. Runs in the same command buffer, max_seqs rows at
  // a time.
  std::vector<std::uint32_t> score_rows;    // [P <= T] token indices
  std::vector<std::uint32_t> score_targets; // [P] token ids
  std::uint32_t score_top = 0;              // N <= ops::kMaxTopLogprobs
  // The overlapped loop (docs/ARCHITECTURE.md, the overlapped loop): empty, or [T] where
  // feed[i] != kNoFeed makes token i the id drawn for sample row feed[i] of the step submitted
  // just before this one, read on the device, so step t + 1 can be submitted before step t's ids
  // reach the host. token_ids[i] is then ignored (any id in the vocabulary).
  std::vector<std::uint32_t> feed;
  // Embeddings (ModelOptions::embeddings): token indices whose last hidden state (after the
  // final norm of a decoder; an encoder's last layer output) is read back, in this order.
  std::vector<std::uint32_t> embed_rows;    // [E <= T]
};

inline constexpr std::uint32_t kNoFeed = 0xffffffffu;

struct StepOutput {
  std::vector<std::uint32_t> ids;  // [R]
  std::vector<float> logprobs;     // [R] (empty when every row was greedy without penalties)
  // [R] when a row asked: row r's top list, sampling[r].top_logprobs entries (fewer only where
  // the row has fewer non-NaN logits); empty lists for rows that did not ask.
  std::vector<std::vector<ops::TopLogprob>> top;
  std::vector<float> logits;       // [R * vocab] when asked
  std::vector<float> score_logprobs;                      // [P]
  std::vector<std::vector<ops::TopLogprob>> score_top;    // [P] when score_top > 0
  std::vector<float> embeddings;                          // [E * d_model]
};

class Model {
 public:
  // Reads the config, checks every tensor, uploads the weights and allocates the K/V pools and
  // the workspace. Throws InvalidModel / Unsupported / OutOfMemory naming the cause.
  static std::unique_ptr<Model> load(platform::Device& device, const gguf::Reader& reader,
                                     const ModelOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  platform::Device& device() const { return device_; }
  std::uint32_t max_blocks_per_seq() const { return max_blocks_per_seq_; }
  std::uint32_t num_blocks() const { return options_.num_blocks; }
  // K/V block groups (docs/ARCHITECTURE.md "Sliding windows"). window(): the sliding window of
  // the layers on the main table (0: full attention; > 0 when every layer slides). A model with
  // both kinds has a second table for its sliding layers, of swa_num_blocks() blocks (0: none)
  // and window swa_window(): blocks before a sequence's window may go back to their pool.
  std::uint32_t window() const {
    return config_.sliding_layers() == config_.n_layers ? config_.sliding_window : 0;
  }
  std::uint32_t swa_window() const { return swa_num_blocks() ? config_.sliding_window : 0; }
  std::uint32_t swa_num_blocks() const { return options_.swa_blocks; }
  ops::KvType kv_type() const { return kv_type_; }
  std::uint64_t weight_bytes() const;       // on the device
  std::uint64_t kv_bytes() const;           // all layers, K and V (both tables' pools)
  std::uint64_t workspace_bytes() const;    // activations, inputs, outputs
  // Bytes a decode step reads per token at context length `ctx`: every weight once, plus K/V.
  std::uint64_t decode_bytes(std::uint32_t ctx) const;

  // Runs one forward pass: submit() then wait(). Checks the batch (sizes, ids, slots and block
  // ids in range, causal positions, feed rows) and throws InvalidRequest naming the field before
  // anything reaches the device.
  StepOutput step(const StepInput& input) {
    submit(input);
    return wait();
  }
  // Submits one step without waiting for it. At most two steps are in flight (the one the device
  // runs and the next): their inputs and readbacks are double-buffered, and the device runs them
  // in submission order. Throws std::logic_error when two are in flight already.
  void submit(const StepInput& input);
  // The masks of the last submitted step, submitted with StepInput::late_mask_words: written to
  // its inputs, then its sampler is submitted. Until then no other step may be submitted
  // (std::logic_error); wait() on it releases all-allowed masks first (the step never hangs).
  void release_masks(std::span<const std::uint32_t> masks);
  bool awaiting_masks() const { return !in_flight_.empty() && !in_flight_.back().released; }
  // Waits for the oldest step in flight and returns its output (throws DeviceLost on loss,
  // std::logic_error when none is in flight).
  StepOutput wait();
  std::size_t in_flight() const { return in_flight_.size(); }

  // The bucket a step dimension of n is padded to (ModelOptions::pad_steps): 1, 2, 4, 8, then
  // multiples of 8 up to 256, then of 64 (vLLM captures CUDA graphs at such sizes).
  static std::uint32_t step_bucket(std::uint32_t n);

  // Host time spent blocked in wait(), all steps together: the rest of a step's time is host
  // work the device does not overlap.
  double device_wait_seconds() const { return wait_seconds_; }
  // Device time of the steps (first command to last, from timestamps), all steps together; 0
  // on a device without compute timestamps. Wall time less this is the time the device sat idle.
  double device_busy_seconds() const { return busy_seconds_; }

  // Steps recorded anew vs replayed (the recording cache is keyed by the step's padded shape).
  std::uint64_t recordings() const { return recordings_; }
  std::uint64_t replays() const { return replays_; }
  // Host time spent recording command buffers, all steps together.
  double recording_seconds() const { return recording_seconds_; }
  // The last step's command buffer: its dispatches and the barriers the tracker put between them.
  struct StepCounts {
    std::size_t dispatches = 0;
    std::size_t barriers = 0;
    // Of those, the transformer layers' (all layers together; the rest: embedding lookup, head,
    // sampler, readback copies).
    std::size_t layer_dispatches = 0;
    std::size_t layer_barriers = 0;
  };
  StepCounts last_step_counts() const { return last_counts_; }
  // Off: every step records its command buffer anew instead of replaying the one of its shape
  // (what replay saves is measured against this; `vkllm bench --replay-compare`).
  void set_replay(bool on) { replay_ = on; }

 private:
  Model(platform::Device& device, ModelConfig config, ModelOptions options);
  struct Layer;
  struct Workspace;
  struct Recording;
  // What a recording depends on: the padded sizes, the kinds of output, and which of the two
  // input and readback buffers it uses.
  struct StepShape {
    std::uint32_t T = 0, S = 0, R = 0;
    bool want_logits = false, use_sampler = false, want_top = false;
    std::uint32_t P = 0, score_top = 0;
    std::uint32_t E = 0;
    bool split = false;  // late masks: the sampler in a second command buffer (Recording::tail)
    std::uint32_t slot = 0;
    auto operator<=>(const StepShape&) const = default;
  };
  // A submitted step: what wait() needs to read its output.
  struct InFlight {
    Recording* rec = nullptr;
    StepShape shape;
    std::uint32_t R0 = 0;
    std::vector<std::uint32_t> top_counts;  // [R0] top logprobs asked per row
    std::uint32_t E0 = 0;                   // embedding rows asked
    std::uint32_t late_words = 0;           // late masks: the words release_masks() brings
    bool released = true;                   // false until they came (the tail is submitted)
  };

  void check(const StepInput& input) const;
  struct Padded {
    std::uint32_t T, S, R;
  };
  Padded padded_shape(std::uint32_t T, std::uint32_t S, std::uint32_t R) const;
  ops::AttentionShape attention_shape(std::uint32_t T, std::uint32_t S) const;
  // Returns the dispatches and barriers of the transformer layers (StepCounts' layer fields).
  void write_inputs(const StepInput& input, const StepShape& shape);
  Recording& recording_for(const StepShape& shape);
  // `tail`: where the sampler and its readback go when shape.split (else into cs).
  std::pair<std::size_t, std::size_t> record(platform::CommandStream& cs, platform::CommandStream* tail,
                                             const StepShape& shape);
  void record_head(platform::CommandStream& cs, std::uint32_t T, platform::BufferSpan rows, std::uint32_t n);
  void record_scores(platform::CommandStream& cs, const StepShape& shape);
  void record_embeddings(platform::CommandStream& cs, const StepShape& shape);
  std::pair<std::size_t, std::size_t> record_encoder_layers(platform::CommandStream& cs,
                                                            const StepShape& shape);
  void record_moe(platform::CommandStream& cs, const Layer& L, std::uint32_t T,
                  platform::BufferSpan xn_q8, const std::function<void()>& shared_ffn);

  platform::Device& device_;
  ops::Kernels kernels_;
  ModelConfig config_;
  ModelOptions options_;
  std::uint32_t max_blocks_per_seq_ = 0;
  // Whether layer l reads the second table (a sliding layer of a model with both kinds).
  bool on_swa_table(std::uint32_t l) const { return options_.swa_blocks > 0 && config_.layer_slides(l); }
  ops::KvType kv_type_ = ops::KvType::f32;
  ops::DeviceWeight token_embd_, output_norm_, output_;
  // Encoders: learned positions, token type 0's row, the input LayerNorm.
  ops::DeviceWeight position_embd_, token_types_, embd_norm_, embd_norm_b_;
  std::vector<Layer> layers_;
  std::unique_ptr<Workspace> ws_;
  std::map<StepShape, std::unique_ptr<Recording>> recordings_cache_;
  std::deque<InFlight> in_flight_;
  std::uint32_t last_slot_ = 0;  // input and readback slot of the last submitted step
  std::uint32_t last_rows_ = 0;  // its R0: the rows a feed may name
  std::uint64_t use_clock_ = 0;
  std::uint64_t recordings_ = 0;
  std::uint64_t replays_ = 0;
  double recording_seconds_ = 0;
  double wait_seconds_ = 0;
  double busy_seconds_ = 0;
  StepCounts last_counts_;
  bool replay_ = true;
};

}  // namespace vkllm::model
