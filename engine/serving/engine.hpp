// The serving engine core: its own thread runs the step loop (schedule -> one forward pass for
// every scheduled sequence -> commit -> deliver tokens), fed by a bounded submission queue. It
// deals in token ids only: text (detokenizing, stop strings) is the front end's
// (engine/frontend/, docs/ARCHITECTURE.md "The life of a request"). Each request gets its events
// through a callback called on the engine thread. Cancellation at any moment frees its blocks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "engine/grammar/grammar.hpp"
#include "engine/kv/block_pool.hpp"
#include "engine/model/model.hpp"
#include "engine/model/sequence.hpp"
#include "engine/sample/params.hpp"
#include "engine/sched/scheduler.hpp"
#include "engine/tokenizer/tokenizer.hpp"

namespace vkllm::grammar {
class Automaton;
class TokenTrie;
}

namespace vkllm::serving {

using RequestId = std::uint64_t;

using LogitBias = sample::LogitBias;

struct RequestParams {
  sample::SamplingParams sampling;
  std::vector<LogitBias> logit_bias;
  std::uint32_t max_tokens = 256;
  std::vector<std::uint32_t> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;          // the chosen token's log probability per token
  std::uint32_t top_logprobs = 0; // with logprobs: the N <= 20 most likely tokens per token
  // The prompt tokens' logprobs too (completions' echo with logprobs), with top_logprobs
  // alternatives, computed in the prompt's own steps (so the prefix cache is not used for it).
  bool prompt_logprobs = false;
  // The longest the request may take from submit() to its end (0: no limit). Past it the engine
  // ends it with FinishReason::timeout and its blocks go back to the pool.
  std::chrono::milliseconds timeout{0};
  // Another choice of the same request (n > 1), submitted before with the same prompt: this one
  // shares that one's computed prompt blocks instead of computing them again (0: none).
  // Ignored with prompt_logprobs, whose prompt rows are computed by every choice.
  RequestId shares_prompt_of = 0;
  // Constrained decoding (docs/ARCHITECTURE.md "Constrained decoding"): every token drawn keeps
  // the output a prefix of a sentence of this grammar, and an end-of-generation token comes only
  // where a sentence may end. Null: unconstrained.
  std::shared_ptr<const grammar::Grammar> grammar;
  // With triggers the grammar is lazy (tool_choice auto): the output runs free until one of them
  // appears, and the grammar holds from there on.
  std::vector<grammar::Trigger> grammar_triggers;
  // Embeddings (docs/ARCHITECTURE.md "Embeddings"): instead of generating, the prompt's hidden
  // states pooled this way, cut to the first `dimensions` values (0: all), scaled to unit length;
  // the request's one event carries it. The model must have been loaded with embeddings.
  std::optional<model::Pooling> embed;
  std::uint32_t dimensions = 0;
};

// One alternative of a generated token: a token id and its log probability under the model's
// raw distribution (before penalties, temperature and filters).
using TopLogprob = ops::TopLogprob;

// device_lost: the device was lost under the request (the engine recovers; a retry may succeed).
enum class FinishReason { none, stop, length, cancelled, error, timeout, device_lost };
constexpr const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::none: return "none";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
    case FinishReason::timeout: return "timeout";
    case FinishReason::device_lost: return "device_lost";
  }
  return "?";
}

// One delivery to a request: the tokens generated since the last event. finish == stop: the
// last token is an end-of-generation or stop token (the front end shows no text for it).
struct TokenEvent {
  std::vector<std::uint32_t> tokens;
  std::vector<float> logprobs;  // per token, when asked
  std::vector<std::vector<TopLogprob>> top_logprobs;  // per token, when logprobs and N > 0 asked
  // The first event of a request that asked for prompt_logprobs: for prompt tokens 1..n-1 (the
  // first has none), their logprob and top list.
  std::vector<float> prompt_logprobs;
  std::vector<std::vector<TopLogprob>> prompt_top_logprobs;
  FinishReason finish = FinishReason::none;
  std::string error;            // finish == error, timeout or device_lost
  std::vector<float> embedding;  // the last event of an embedding request (finish == stop)
  std::uint32_t prompt_tokens = 0;
  std::uint32_t cached_tokens = 0;
  std::uint32_t completion_tokens = 0;
};

using EventCallback = std::function<void(const TokenEvent&)>;

struct EngineConfig {
  std::uint32_t max_num_seqs = 16;
  std::uint32_t max_num_batched_tokens = 512;
  std::uint32_t max_queue = 256;  // requests waiting for a first step (not running); more -> QueueFull
  bool prefix_caching = true;
  // The overlapped loop (docs/ARCHITECTURE.md): step t + 1 is planned and submitted while the
  // device runs step t, its decode tokens fed on the device. Off: one step at a time.
  bool overlap = true;
  // Constrained requests in the overlapped loop (late masks: the step's sampler goes once the
  // host has the masks). Empty: on, except on a device that is the host's own CPU (lavapipe),
  // where the second submit costs more than the overlap hides (bench/RESULTS.md); off, a step
  // after one that sampled a constrained request waits for it, its masks given with the step.
  std::optional<bool> late_masks;
  // Device loss (docs/ARCHITECTURE.md "Device loss"): the requests in flight end with an error,
  // then the engine thread calls `reload`, which destroys the model and its device, opens the
  // device again and loads the weights with the same KV pool, and returns the new model. A loss
  // within `loss_window` of the one before is not retried. Empty: a loss is final.
  std::function<model::Model&()> reload;
  std::chrono::milliseconds loss_window{60000};
  // Testing: the scheduler preempts decodes at random with this probability (at most 500 times;
  // SchedulerConfig::artificial_preempt); outputs must not change.
  double artificial_preempt = 0.0;
};

// Thrown by submit() when the queue is full (the server answers 429). A sibling of
// InvalidRequest, not a kind of it: a catch of InvalidRequest must never turn a 429 into a 400.
class QueueFull : public Error {
 public:
  using Error::Error;
};

struct EngineStats {
  std::size_t running = 0;
  std::size_t waiting = 0;
  double kv_usage = 0;  // fraction of usable blocks referenced
  std::uint32_t kv_blocks_total = 0;
  std::uint32_t kv_blocks_free = 0;
  // The sliding-window layers' own pool (a model with both kinds of layer; 0 otherwise): blocks
  // before each sequence's window come back here as it runs.
  std::uint32_t kv_swa_blocks_total = 0;
  std::uint32_t kv_swa_blocks_free = 0;
  std::uint64_t prompt_tokens = 0;      // computed
  std::uint64_t cached_prompt_tokens = 0;  // from the prefix cache or shared between choices
  std::uint64_t shared_prompt_tokens = 0;  // of which shared between a request's choices
  std::uint64_t generation_tokens = 0;
  std::uint64_t preemptions = 0;
  // Tokens (full blocks looked up x block size); blocks shared between a request's choices
  // count as queries and hits: their prompt was computed once, as a cache hit would have it.
  std::uint64_t prefix_queries = 0;
  std::uint64_t prefix_hits = 0;
  std::uint64_t steps = 0;
  std::uint64_t recordings = 0;
  std::uint64_t replays = 0;
  std::uint64_t overlapped_steps = 0;   // submitted while the step before still ran
  std::uint64_t cancel_calls = 0;       // cancel() calls (one per abandoned request is right)
  std::uint64_t timeouts = 0;           // requests ended by their time limit
  std::uint64_t device_losses = 0;
  std::uint64_t device_recoveries = 0;  // reloads after a loss that serve again
  // Device memory per platform::MemoryIntent (in its order, named by platform::to_string), as of
  // the last step: allocated from the driver (arenas keep their blocks) and sub-allocated to live
  // buffers. On lavapipe it is host memory. Names travel with the numbers so that the server's
  // metrics need nothing of platform/.
  struct MemoryLine {
    std::string intent;
    std::uint64_t reserved = 0, used = 0;
  };
  std::vector<MemoryLine> device_memory;
};

// ok: serving. recovering: the device was lost and is being recreated (requests get 503).
// failed: it was lost and will not be recreated (a second loss too soon, or the reload failed).
enum class Health { ok, recovering, failed };

// What the HTTP server asks of an engine: the Engine below, or a stand-in without a device (the
// HTTP layer's fuzz target). Every method is thread-safe.
class Service {
 public:
  virtual ~Service() = default;
  // Queues a request. Throws InvalidRequest (never fits, bad parameters), QueueFull, or
  // DeviceLost (not serving now). The callback gets every event, the last one with
  // finish != none, exactly once each.
  virtual RequestId submit(std::vector<std::uint32_t> prompt, RequestParams params, EventCallback callback) = 0;
  // Cancels a request in any state; its last event says cancelled (unless it already finished).
  virtual void cancel(RequestId id) = 0;
  // Stops accepting, cancels everything, joins its threads.
  virtual void shutdown() = 0;
  virtual EngineStats stats() const = 0;
  virtual std::uint32_t max_model_len() const = 0;
  // Embedding requests are served (the model was loaded with embeddings); generation is not
  // when the model is an encoder.
  virtual bool embeddings() const = 0;
  virtual bool generates() const = 0;
  virtual model::Pooling default_pooling() const = 0;  // the model file's
  virtual bool failed() const = 0;                // not serving: recovering or failed
  virtual std::string health_message() const = 0; // why it is not serving (empty when it is)
};

class Engine final : public Service {
 public:
  // The model's limits bound the config (max_num_seqs, tokens per step, context).
  Engine(model::Model& model, const tok::Tokenizer& tokenizer, EngineConfig config);
  ~Engine() override;  // stops the thread; pending requests finish as cancelled

  RequestId submit(std::vector<std::uint32_t> prompt, RequestParams params, EventCallback callback) override;
  void cancel(RequestId id) override;
  void shutdown() override;

  EngineStats stats() const override;
  const EngineConfig& config() const { return config_; }
  std::uint32_t max_model_len() const override { return max_model_len_; }
  bool embeddings() const override { return embeddings_; }
  bool generates() const override { return !encoder_; }
  model::Pooling default_pooling() const override { return pooling_; }
  bool failed() const override { return failed_; }
  Health health() const;
  std::string health_message() const override;

 private:
  struct Request;
  // A submitted step: its plan, the request of each sample row, (request, position) of each
  // prompt score row.
  struct Launched {
    sched::StepPlan plan;
    std::vector<RequestId> sampled;
    std::vector<std::pair<RequestId, std::uint32_t>> scored;
    std::vector<std::pair<RequestId, std::uint32_t>> embedded;  // (request, position) per embed row
    // Constrained rows of an overlapped step, in mask order: their masks follow the token the
    // step before draws, so they go to the device after it completes (release_masks).
    std::vector<RequestId> late_masks;
  };
  void loop();
  void step();
  bool can_overlap() const;
  std::optional<Launched> launch(bool overlapped);
  void complete(const Launched& l);
  void fail_all(const std::string& why);
  void trim_heap_when_idle();
  void recover();
  void admit(std::deque<std::unique_ptr<Request>>& incoming);
  void expire();
  model::StepInput build_step(const sched::StepPlan& plan, Launched& l, bool overlapped);
  void release_masks();
  void add_score_rows(Request& r, const sched::Sequence& s, const sched::ScheduledChunk& c,
                      std::uint32_t first_row, model::StepInput& in, Launched& l);
  void append_sampled(Request& r, std::size_t row, const model::StepOutput& out);
  void start_grammar(Request& r, std::uint32_t token);
  void add_embed_rows(Request& r, const sched::ScheduledChunk& c, std::uint32_t first_row,
                      model::StepInput& in, Launched& l);
  void finish_embedding(Request& r);
  void deliver(Request& r, TokenEvent& ev, bool last);
  // The one way a request ends: its last event (`ev`, with `reason`), then its blocks go back.
  void finish_request(RequestId id, FinishReason reason, const std::string& error = {},
                      TokenEvent ev = {});
  void publish_stats();  // under mu_
  // The vocabulary's byte trie for constrained decoding, built on first use (engine thread).
  std::shared_ptr<const grammar::TokenTrie> token_trie();
  std::shared_ptr<grammar::Automaton> automaton(const std::shared_ptr<const grammar::Grammar>& g);
  static void invoke(const EventCallback& callback, const TokenEvent& ev);
  void flush_finals();   // after publish_stats: a finished request's blocks show as free

  model::Model* model_;  // replaced by a recovery; null when a reload failed
  const tok::Tokenizer& tokenizer_;
  EngineConfig config_;
  bool late_masks_ = true;
  std::uint32_t max_model_len_ = 0;
  std::uint32_t vocab_size_ = 0;  // the model's, fixed (submit() reads them on other threads)
  std::uint32_t block_size_ = 0;
  std::uint32_t d_model_ = 0;
  bool embeddings_ = false, encoder_ = false;
  model::Pooling pooling_ = model::Pooling::last;
  kv::BlockPool pool_;
  std::unique_ptr<kv::BlockPool> swa_pool_;  // Model::swa_num_blocks() > 0
  sched::Scheduler scheduler_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> incoming_;
  std::vector<RequestId> cancels_;
  bool stopping_ = false;
  std::atomic<bool> failed_{false};
  Health health_ = Health::ok;  // guarded by mu_
  std::string health_message_;  // guarded by mu_
  RequestId next_id_ = 1;
  std::size_t queued_ = 0;  // incoming + waiting (for the queue bound; running ones do not count)

  // Engine-thread state.
  std::unordered_map<RequestId, std::unique_ptr<Request>> live_;
  std::optional<Launched> in_flight_;  // the step the device runs
  bool starved_ = false;  // the last overlapped plan left a sequence without blocks
  bool lost_ = false;     // the device was lost: recover() is due once the requests have ended
  bool worked_since_trim_ = false;  // a step ran since the heap was last trimmed
  std::optional<std::chrono::steady_clock::time_point> last_loss_;
  // Last events held until the step's bookkeeping is done and published, so a client that sees
  // its request end also sees its blocks back in stats().
  std::vector<std::pair<EventCallback, TokenEvent>> finals_;
  std::shared_ptr<const grammar::TokenTrie> trie_;
  // The automata of the grammars used last, most recent first: a request with the same grammar
  // (the server hands out one object per distinct grammar) walks what others built.
  std::deque<std::shared_ptr<grammar::Automaton>> automata_;
  static constexpr std::size_t kCachedAutomata = 4;
  EngineStats stats_;  // guarded by mu_ (copied out by stats())
  std::thread thread_;
};

}  // namespace vkllm::serving
