// The step loop: plan, build the flat batch, run it, commit, deliver.
#include "engine/serving/engine.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/grammar/matcher.hpp"
#include "engine/sample/penalties.hpp"

namespace vkllm::serving {

struct Engine::Request {
  RequestId id = 0;
  std::vector<std::uint32_t> prompt;
  RequestParams params;
  EventCallback callback;
  std::uint32_t generated = 0;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::vector<float> prompt_logprobs;  // [prompt size - 1] (prompt_logprobs asked)
  std::vector<std::vector<TopLogprob>> prompt_top;
  std::unique_ptr<grammar::Matcher> matcher;  // constrained decoding: the output's parse state
  std::unique_ptr<grammar::LazyStart> lazy;   // a lazy grammar not started yet
  // Embeddings: the pooled hidden states so far (mean: the sum) and the prompt positions pooled;
  // a recompute after a preemption adds none twice.
  std::vector<double> pooled;
  std::uint32_t pooled_upto = 0;
  bool done = false;
};

Engine::Engine(model::Model& model, const tok::Tokenizer& tokenizer, EngineConfig config)
    : model_(&model),
      tokenizer_(tokenizer),
      config_(config),
      max_model_len_(model.options().context_length),
      vocab_size_(model.config().vocab_size),
      block_size_(model.options().block_size),
      d_model_(model.config().d_model),
      embeddings_(model.options().embeddings),
      encoder_(model.config().encoder),
      pooling_(model.config().pooling),
      pool_(model.num_blocks(), config.prefix_caching),
      swa_pool_(model.swa_num_blocks() ? std::make_unique<kv::BlockPool>(model.swa_num_blocks(), config.prefix_caching)
                                       : nullptr),
      scheduler_(pool_, swa_pool_.get(), [&] {
        sched::SchedulerConfig c;
        c.max_num_batched_tokens = std::min(config.max_num_batched_tokens, model.options().max_batch_tokens);
        c.max_num_seqs = std::min(config.max_num_seqs, model.options().max_seqs);
        c.block_size = model.options().block_size;
        c.max_model_len = model.options().context_length;
        c.artificial_preempt = config.artificial_preempt;
        c.window = model.window();
        c.swa_window = model.swa_window();
        return c;
      }()) {
  late_masks_ = config.late_masks.value_or(model.device().caps().vendor != platform::Vendor::software);
  config_.max_num_seqs = scheduler_.config().max_num_seqs;
  config_.max_num_batched_tokens = scheduler_.config().max_num_batched_tokens;
  stats_.kv_blocks_total = pool_.usable_blocks();
  stats_.kv_blocks_free = pool_.num_free();
  if (swa_pool_) {
    stats_.kv_swa_blocks_total = swa_pool_->usable_blocks();
    stats_.kv_swa_blocks_free = swa_pool_->num_free();
  }
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

RequestId Engine::submit(std::vector<std::uint32_t> prompt, RequestParams params,
                         EventCallback callback) {
  if (prompt.empty()) throw InvalidRequest("the prompt is empty");
  for (std::uint32_t t : prompt) {
    if (t >= vocab_size_) {
      throw InvalidRequest(fmt::format("token id {} is outside the vocabulary ({} tokens)", t,
                                       vocab_size_));
    }
  }
  if (prompt.size() >= max_model_len_) {
    throw InvalidRequest(fmt::format("the prompt has {} tokens; the context holds {} (prompt plus "
                                     "at least one generated token)",
                                     prompt.size(), max_model_len_));
  }
  const std::uint64_t pool_tokens = std::uint64_t{pool_.usable_blocks()} * block_size_;
  if (prompt.size() + 1 > pool_tokens) {
    throw InvalidRequest(fmt::format("the prompt has {} tokens; the KV cache holds {} in all",
                                     prompt.size(), pool_tokens));
  }
  if (params.embed) {
    if (!embeddings_) {
      throw InvalidRequest("this server does not compute embeddings (start it with --embeddings)");
    }
    if (params.dimensions > d_model_) {
      throw InvalidRequest(fmt::format("dimensions is {}; the model's embeddings have {}",
                                       params.dimensions, d_model_));
    }
    if (encoder_ && prompt.size() > config_.max_num_batched_tokens) {
      throw InvalidRequest(fmt::format("the input has {} tokens; this model takes each input whole in "
                                       "one step of at most {} tokens (--max-num-batched-tokens)",
                                       prompt.size(), config_.max_num_batched_tokens));
    }
    params.max_tokens = 1;  // a placeholder: nothing is generated
    params.grammar = nullptr;
    params.prompt_logprobs = false;
    params.shares_prompt_of = 0;
  } else if (encoder_) {
    throw InvalidRequest("this model is an embedding model (an encoder): it does not generate text; "
                         "use /v1/embeddings");
  }
  if (params.max_tokens == 0) throw InvalidRequest("max_tokens must be at least 1");
  if (params.logit_bias.size() > 300) throw InvalidRequest("logit_bias holds more than 300 tokens");
  if (params.top_logprobs > ops::kMaxTopLogprobs) {
    throw InvalidRequest(fmt::format("top_logprobs is {}; at most {}", params.top_logprobs,
                                     ops::kMaxTopLogprobs));
  }
  for (const LogitBias& b : params.logit_bias) {
    if (b.token >= vocab_size_) {
      throw InvalidRequest(fmt::format("logit_bias token {} is outside the vocabulary", b.token));
    }
  }
  auto r = std::make_unique<Request>();
  r->prompt = std::move(prompt);
  r->params = std::move(params);
  if (r->params.timeout.count() > 0) r->deadline = std::chrono::steady_clock::now() + r->params.timeout;
  r->callback = std::move(callback);
  RequestId id;
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw Unavailable("the server is shutting down");
    if (failed_) throw DeviceLost(health_message_);
    if (queued_ >= config_.max_queue) {
      throw QueueFull(fmt::format("the queue is full ({} requests waiting)", queued_));
    }
    id = r->id = next_id_++;
    ++queued_;
    incoming_.push_back(std::move(r));
  }
  cv_.notify_all();
  return id;
}

void Engine::cancel(RequestId id) {
  {
    std::lock_guard lock(mu_);
    cancels_.push_back(id);
    ++stats_.cancel_calls;
  }
  cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Engine::deliver(Request& r, TokenEvent& ev, bool last) {
  ev.prompt_tokens = static_cast<std::uint32_t>(r.prompt.size());
  ev.completion_tokens = r.generated;
  if (const sched::Sequence* s = scheduler_.find(r.id)) ev.cached_tokens = s->cached_tokens;
  if (last) {
    r.done = true;
    finals_.emplace_back(std::move(r.callback), std::move(ev));
    return;
  }
  invoke(r.callback, ev);
}

void Engine::invoke(const EventCallback& callback, const TokenEvent& ev) {
  try {
    callback(ev);
  } catch (const std::exception& e) {  // the caller's bug: the engine keeps serving the others
    log::error("event callback threw: {}", e.what());
  }
}

void Engine::flush_finals() {
  std::vector<std::pair<EventCallback, TokenEvent>> finals;
  finals.swap(finals_);
  for (auto& [callback, ev] : finals) invoke(callback, ev);
}

std::shared_ptr<grammar::Automaton> Engine::automaton(const std::shared_ptr<const grammar::Grammar>& g) {
  auto it = std::find_if(automata_.begin(), automata_.end(),
                         [&](const auto& a) { return a->grammar() == g && !a->full(); });
  std::shared_ptr<grammar::Automaton> a;
  if (it != automata_.end()) {
    a = *it;
    automata_.erase(it);
  } else {
    a = std::make_shared<grammar::Automaton>(g, token_trie());
  }
  automata_.push_front(a);
  if (automata_.size() > kCachedAutomata) automata_.pop_back();
  return a;
}

std::shared_ptr<const grammar::TokenTrie> Engine::token_trie() {
  if (!trie_) trie_ = std::make_shared<const grammar::TokenTrie>(grammar::TokenTrie::from_tokenizer(tokenizer_, vocab_size_));
  return trie_;
}

void Engine::publish_stats() {
  stats_.running = scheduler_.num_running();
  stats_.waiting = scheduler_.num_waiting() + incoming_.size();
  queued_ = stats_.waiting;
  stats_.kv_blocks_free = pool_.num_free();
  stats_.kv_usage = double(pool_.num_used()) / pool_.usable_blocks();
  if (swa_pool_) stats_.kv_swa_blocks_free = swa_pool_->num_free();
  const auto& sc = scheduler_.counters();
  stats_.prompt_tokens = sc.prompt_tokens_computed;
  stats_.cached_prompt_tokens = sc.prompt_tokens_cached;
  stats_.generation_tokens = sc.generated_tokens;
  stats_.preemptions = sc.preemptions;
  stats_.shared_prompt_tokens = sc.prompt_tokens_shared;
  stats_.prefix_queries = pool_.counters().queries * block_size_ + sc.prompt_tokens_shared;
  stats_.prefix_hits = pool_.counters().hits * block_size_ + sc.prompt_tokens_shared;
  if (model_) {
    stats_.recordings = model_->recordings();
    stats_.replays = model_->replays();
  }
}

void Engine::finish_request(RequestId id, FinishReason reason, const std::string& error,
                            TokenEvent ev) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  Request& r = *it->second;
  if (!r.done) {
    ev.finish = reason;
    ev.error = error;
    deliver(r, ev, true);
  }
  scheduler_.finish(id);
  live_.erase(it);
}

// Requests past their time limit end with FinishReason::timeout, running or waiting.
void Engine::expire() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<RequestId> late;
  for (const auto& [id, r] : live_) {
    if (r->deadline <= now) late.push_back(id);
  }
  for (RequestId id : late) {
    const auto ms = live_.at(id)->params.timeout.count();
    finish_request(id, FinishReason::timeout,
                   fmt::format("the request ran past its time limit of {:.3g} s", double(ms) / 1000.0));
    std::lock_guard lock(mu_);
    ++stats_.timeouts;
  }
}

void Engine::admit(std::deque<std::unique_ptr<Request>>& incoming) {
  for (auto& r : incoming) {
    const RequestId id = r->id;
    try {
      if (r->params.grammar && !r->params.grammar_triggers.empty()) {
        r->lazy = std::make_unique<grammar::LazyStart>(r->params.grammar_triggers, token_trie());
      } else if (r->params.grammar) {
        r->matcher = std::make_unique<grammar::Matcher>(automaton(r->params.grammar));
      }
      // Embeddings pool rows the prefix cache would skip, except a decoder's last token.
      const bool reuse = !r->params.prompt_logprobs &&
                         (!r->params.embed || (*r->params.embed == model::Pooling::last && !encoder_));
      scheduler_.add(id, r->prompt, r->params.max_tokens, reuse, r->params.shares_prompt_of, encoder_);
      if (r->params.embed) r->pooled.assign(d_model_, 0.0);
      if (r->params.prompt_logprobs) {
        r->prompt_logprobs.assign(r->prompt.size() - 1, 0.f);
        if (r->params.top_logprobs > 0) r->prompt_top.resize(r->prompt.size() - 1);
      }
      live_.emplace(id, std::move(r));
    } catch (const InvalidRequest& e) {
      TokenEvent ev;
      ev.finish = FinishReason::error;
      ev.error = e.what();
      deliver(*r, ev, true);
    }
  }
}

void Engine::loop() {
  for (;;) {
    std::deque<std::unique_ptr<Request>> incoming;
    std::vector<RequestId> cancels;
    bool stopping;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !incoming_.empty() || !cancels_.empty() || !scheduler_.idle() ||
               in_flight_.has_value();
      });
      incoming.swap(incoming_);
      cancels.swap(cancels_);
      stopping = stopping_;
    }
    admit(incoming);
    for (RequestId id : cancels) finish_request(id, FinishReason::cancelled);
    expire();
    if (stopping) {
      std::vector<RequestId> ids;
      for (auto& [id, r] : live_) ids.push_back(id);
      for (RequestId id : ids) finish_request(id, FinishReason::cancelled);
      if (in_flight_) {  // the model must not be destroyed under a running step
        try {
          model_->wait();
        } catch (const std::exception& e) {
          log::error("the last step failed at shutdown: {}", e.what());
        }
        in_flight_.reset();
      }
    }
    if (!stopping) step();
    {
      std::lock_guard lock(mu_);
      publish_stats();
    }
    flush_finals();
    if (stopping) return;
    if (lost_) recover();
    if (scheduler_.idle() && !in_flight_) {
      trim_heap_when_idle();
    } else {
      worked_since_trim_ = true;
    }
  }
}

// Once the engine falls idle after work, the C library gives its free pages back to the system
// (glibc's malloc_trim): the driver frees and allocates command memory as recordings are made
// and evicted, and glibc otherwise keeps the holes that leaves, so a server idle between bursts
// held its busiest RSS for good. One call per busy-to-idle turn; a few ms at most.
void Engine::trim_heap_when_idle() {
  if (!worked_since_trim_) return;
  worked_since_trim_ = false;
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// The flat batch of one plan: every chunk's tokens, positions, slots and block table; one
// sampling row (with its penalty list) per chunk that samples. A token still pending (drawn by
// the step in flight) is fed on the device from that step's sample row.
model::StepInput Engine::build_step(const sched::StepPlan& plan, Launched& l, bool overlapped) {
  const std::uint32_t bs = model_->options().block_size;
  const std::uint32_t mb = model_->max_blocks_per_seq();
  model::StepInput in;
  in.query_start = {0};
  std::unordered_map<RequestId, std::uint32_t> feed_rows;
  if (in_flight_) {
    for (std::size_t i = 0; i < in_flight_->sampled.size(); ++i) {
      feed_rows.emplace(in_flight_->sampled[i], static_cast<std::uint32_t>(i));
    }
  }
  for (const sched::ScheduledChunk& c : plan.chunks) {
    const sched::Sequence& s = *scheduler_.find(c.id);
    Request& r = *live_.at(c.id);
    const std::size_t row = in.block_table.size();
    in.block_table.resize(row + mb, kv::kNullBlock);
    std::copy(s.blocks.begin(), s.blocks.end(), in.block_table.begin() + static_cast<std::ptrdiff_t>(row));
    if (swa_pool_) {
      in.swa_block_table.resize(row + mb, kv::kNullBlock);
      std::copy(s.swa_blocks.begin(), s.swa_blocks.end(),
                in.swa_block_table.begin() + static_cast<std::ptrdiff_t>(row));
    }
    for (std::uint32_t p = c.start; p < c.start + c.count; ++p) {
      const bool pending = s.tokens[p] == sched::kPendingToken;
      if (pending && !feed_rows.count(c.id)) {
        throw std::logic_error("engine: a pending token with no step in flight to draw it");
      }
      in.feed.push_back(pending ? feed_rows.at(c.id) : model::kNoFeed);
      in.token_ids.push_back(pending ? 0 : s.tokens[p]);
      in.positions.push_back(p);
      in.slot_mapping.push_back(s.blocks[p / bs] * bs + p % bs);
      if (swa_pool_) in.swa_slot_mapping.push_back(s.swa_blocks[p / bs] * bs + p % bs);
    }
    const auto first_row = static_cast<std::uint32_t>(in.token_ids.size()) - c.count;
    in.query_start.push_back(static_cast<std::uint32_t>(in.token_ids.size()));
    // Scored once: a recompute after a preemption that follows the first token needs none.
    if (r.params.prompt_logprobs && r.generated == 0) add_score_rows(r, s, c, first_row, in, l);
    if (r.params.embed) {
      add_embed_rows(r, c, first_row, in, l);
      continue;
    }
    if (!c.samples) continue;
    in.sample_rows.push_back(static_cast<std::uint32_t>(in.token_ids.size() - 1));
    // s.tokens: the prompt, then what was generated (also after a preemption's recompute). A
    // request with pending tokens has no penalties over them (can_overlap).
    const std::span<const std::uint32_t> seen(s.tokens);
    const std::size_t prompt_len = std::min(r.prompt.size(), seen.size());
    const std::vector<sample::PenaltyEntry> entries = sample::build_penalties(
        r.params.sampling, seen.first(prompt_len), seen.subspan(prompt_len), r.params.logit_bias);
    const std::uint32_t offset = static_cast<std::uint32_t>(in.penalties.size());
    in.penalties.insert(in.penalties.end(), entries.begin(), entries.end());
    in.sampling.push_back(ops::sampling_row(r.params.sampling, s.generated(), offset,
                                            static_cast<std::uint32_t>(entries.size())));
    if (r.params.logprobs) in.sampling.back().top_logprobs = r.params.top_logprobs;
    // The step in flight draws the token the mask follows (a lazy grammar's may start there).
    if ((r.matcher || r.lazy) && overlapped && late_masks_) {
      const std::uint32_t words = (model_->config().vocab_size + 31) / 32;
      in.sampling.back().mask_offset = in.late_mask_words;
      in.late_mask_words += words;
      l.late_masks.push_back(r.id);
    } else if (r.matcher) {  // its state is current
      const auto mask = r.matcher->mask();
      in.sampling.back().mask_offset = static_cast<std::uint32_t>(in.masks.size());
      in.masks.insert(in.masks.end(), mask.begin(), mask.end());
    }
    in.want_logprobs |= r.params.logprobs;
    l.sampled.push_back(r.id);
  }
  return in;
}

// Prompt scoring: the rows of this chunk's prompt positions p whose next token p + 1 is still
// prompt; each scores that token. `scored` remembers (request, p) per score row.
void Engine::add_score_rows(Request& r, const sched::Sequence& s, const sched::ScheduledChunk& c,
                            std::uint32_t first_row, model::StepInput& in, Launched& l) {
  for (std::uint32_t p = c.start; p < c.start + c.count && p + 1 < s.prompt_len; ++p) {
    in.score_rows.push_back(first_row + (p - c.start));
    in.score_targets.push_back(s.tokens[p + 1]);
    l.scored.emplace_back(r.id, p);
  }
  in.score_top = std::max(in.score_top, r.params.top_logprobs);
}

// Embeddings: the rows of this chunk the request's pooling reads (mean: each position not pooled
// yet; cls: position 0; last: the prompt's last); `embedded` remembers (request, position).
void Engine::add_embed_rows(Request& r, const sched::ScheduledChunk& c, std::uint32_t first_row,
                            model::StepInput& in, Launched& l) {
  const auto prompt_len = static_cast<std::uint32_t>(r.prompt.size());
  std::uint32_t begin = std::max(c.start, r.pooled_upto), end = std::min(c.start + c.count, prompt_len);
  if (*r.params.embed == model::Pooling::cls) end = std::min(end, 1u);
  if (*r.params.embed == model::Pooling::last) begin = std::max(begin, prompt_len - 1);
  for (std::uint32_t p = begin; p < end; ++p) {
    in.embed_rows.push_back(first_row + (p - c.start));
    l.embedded.emplace_back(r.id, p);
  }
}

// The pooled embedding, cut to the dimensions asked and scaled to unit length, in the request's
// one event.
void Engine::finish_embedding(Request& r) {
  const std::size_t n = r.params.dimensions ? r.params.dimensions : r.pooled.size();
  const double count = *r.params.embed == model::Pooling::mean ? double(r.prompt.size()) : 1.0;
  double norm = 0;
  for (std::size_t i = 0; i < n; ++i) norm += (r.pooled[i] / count) * (r.pooled[i] / count);
  norm = std::sqrt(norm);
  TokenEvent ev;
  ev.embedding.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    ev.embedding[i] = static_cast<float>(norm > 0 ? r.pooled[i] / count / norm : 0.0);
  }
  finish_request(r.id, FinishReason::stop, {}, std::move(ev));
}

// Row `row` of the step's output belongs to `r`: deliver its token, or end the request on an
// end-of-generation or stop token, or at its length.
void Engine::append_sampled(Request& r, std::size_t row, const model::StepOutput& out) {
  const std::uint32_t token = out.ids[row];
  ++r.generated;
  TokenEvent ev;
  ev.tokens.push_back(token);
  if (r.generated == 1 && r.params.prompt_logprobs) {  // the first event carries the prompt's
    ev.prompt_logprobs = std::exchange(r.prompt_logprobs, {});
    ev.prompt_top_logprobs = std::exchange(r.prompt_top, {});
  }
  if (r.params.logprobs && row < out.logprobs.size()) ev.logprobs.push_back(out.logprobs[row]);
  if (r.params.logprobs && r.params.top_logprobs > 0 && row < out.top.size()) {
    ev.top_logprobs.push_back(out.top[row]);
  }
  if (r.matcher && !r.matcher->accept_token(token)) {  // the device sampler broke the mask
    finish_request(r.id, FinishReason::error,
                   fmt::format("internal error: token {} was drawn against the grammar's mask", token), std::move(ev));
    return;
  }
  if (r.lazy) start_grammar(r, token);
  const bool eog = tokenizer_.is_eog(static_cast<tok::TokenId>(token)) && !r.params.ignore_eos;
  const auto& stops = r.params.stop_token_ids;
  if (eog || std::find(stops.begin(), stops.end(), token) != stops.end()) {
    finish_request(r.id, FinishReason::stop, {}, std::move(ev));
    return;
  }
  // r.generated, not the sequence's count: that one includes a token still pending.
  const sched::Sequence* s = scheduler_.find(r.id);
  if (s && r.generated >= s->max_new_tokens) {
    finish_request(r.id, FinishReason::length, {}, std::move(ev));
    return;
  }
  deliver(r, ev, false);
}

// A lazy grammar's trigger in the token drawn starts its matcher on the output from the
// trigger on. Where the bytes drawn freely with the trigger already break the grammar (a token
// that runs past the trigger), the output stays free: the call parser takes what it can.
void Engine::start_grammar(Request& r, std::uint32_t token) {
  const std::optional<std::string> start = r.lazy->push(token);
  if (!start) return;
  r.lazy.reset();
  auto matcher = std::make_unique<grammar::Matcher>(automaton(r.params.grammar));
  if (matcher->accept_bytes(*start)) {
    r.matcher = std::move(matcher);
  } else {
    log::debug("request {}: the output at its grammar's trigger does not fit the grammar; it stays free", r.id);
  }
}

// One turn of the overlapped loop (docs/ARCHITECTURE.md): while the device runs step t, plan and
// submit step t + 1 when no host decision waits on step t's tokens; then read step t's output
// and deliver it. Without overlap: submit the next step right after reading the last, so the
// deliveries overlap the device instead.
void Engine::step() {
  std::optional<Launched> next;
  if (in_flight_ && can_overlap()) next = launch(true);
  if (in_flight_) {
    const Launched done = std::move(*in_flight_);
    in_flight_ = std::move(next);
    complete(done);
    release_masks();
    if (in_flight_ || failed_) return;
  }
  if (!scheduler_.idle()) in_flight_ = launch(false);
}

// Step t + 1 may go before step t's tokens are known when nothing in it depends on them on the
// host: penalties count the generated tokens (a request with one sampled in step t must wait).
// A grammar's mask follows them too, but only the sampler needs it: step t + 1 goes with late
// masks, its forward pass runs while the host reads step t and computes them (release_masks);
// without late masks (EngineConfig::late_masks) a constrained request waits like a penalised one.
// Stop tokens need no wait: a sequence that stops at step t wastes its step t + 1 token.
bool Engine::can_overlap() const {
  if (!config_.overlap || starved_ || model_->in_flight() != 1) return false;
  for (RequestId id : in_flight_->sampled) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    if (it->second->params.sampling.penalizes()) return false;
    if (!late_masks_ && (it->second->matcher || it->second->lazy)) return false;
  }
  return true;
}

// The late masks of the step in flight, now that the step before it is complete: each
// constrained request's matcher has taken its last token. A request that ended meanwhile gets an
// all-allowed mask (its draw is discarded); one whose mask fails ends with the error, the same.
void Engine::release_masks() {
  if (!in_flight_ || in_flight_->late_masks.empty() || !model_->awaiting_masks()) return;
  const std::uint32_t words = (model_->config().vocab_size + 31) / 32;
  std::vector<std::uint32_t> masks(in_flight_->late_masks.size() * words, ~0u);
  for (std::size_t i = 0; i < in_flight_->late_masks.size(); ++i) {
    auto it = live_.find(in_flight_->late_masks[i]);
    if (it == live_.end() || !it->second->matcher) continue;
    try {
      const auto mask = it->second->matcher->mask();
      std::copy(mask.begin(), mask.end(), masks.begin() + static_cast<std::ptrdiff_t>(i * words));
    } catch (const std::exception& e) {
      finish_request(it->first, FinishReason::error, fmt::format("grammar: {}", e.what()));
    }
  }
  try {
    model_->release_masks(masks);
  } catch (const DeviceLost& e) {
    in_flight_.reset();  // its sampler never went: nothing of it will run
    fail_all(e.what());
  }
}

std::optional<Engine::Launched> Engine::launch(bool overlapped) {
  Launched l;
  l.plan = scheduler_.schedule(!overlapped);
  starved_ = l.plan.starved;
  if (l.plan.empty()) return std::nullopt;
  try {
    const model::StepInput in = build_step(l.plan, l, overlapped);
    model_->submit(in);
  } catch (const DeviceLost& e) {
    fail_all(e.what());
    return std::nullopt;
  } catch (const std::exception& e) {
    // A step the model refused (a bug, not the user's input): fail only its requests.
    log::error("step failed: {}", e.what());
    for (const sched::ScheduledChunk& c : l.plan.chunks) finish_request(c.id, FinishReason::error, e.what());
    return std::nullopt;
  }
  scheduler_.advance(l.plan);
  std::lock_guard lock(mu_);
  ++stats_.steps;
  const auto usage = model_->device().memory_usage();
  stats_.device_memory.resize(usage.size());
  for (std::size_t i = 0; i < usage.size(); ++i) {
    stats_.device_memory[i] = {platform::to_string(static_cast<platform::MemoryIntent>(i)),
                               usage[i].reserved, usage[i].used};
  }
  stats_.overlapped_steps += overlapped;
  return l;
}

void Engine::fail_all(const std::string& why) {
  log::error("device lost: {}", why);
  if (model_) log::error("{}", model_->device().fault_report());
  {
    std::lock_guard lock(mu_);
    if (!lost_) ++stats_.device_losses;
    health_ = Health::recovering;
    health_message_ = fmt::format("the device was lost ({}); recovering", why);
    failed_ = true;
  }
  lost_ = true;
  std::vector<RequestId> ids;
  for (auto& [id, r] : live_) ids.push_back(id);
  for (RequestId id : ids) finish_request(id, FinishReason::device_lost, "the device was lost: " + why);
}

Health Engine::health() const {
  std::lock_guard lock(mu_);
  return health_;
}

std::string Engine::health_message() const {
  std::lock_guard lock(mu_);
  return health_message_;
}

// After a loss, once every request has its error (docs/ARCHITECTURE.md "Device loss"): the
// model and device are recreated by the reload callback, or the engine stays failed.
void Engine::recover() {
  lost_ = false;
  const auto now = std::chrono::steady_clock::now();
  auto give_up = [&](const std::string& why) {
    log::error("{}; restart the server", why);
    std::lock_guard lock(mu_);
    health_ = Health::failed;
    health_message_ = why + "; restart the server";
  };
  if (!config_.reload) return give_up("the device was lost and this engine cannot reload the model");
  if (last_loss_ && now - *last_loss_ < config_.loss_window) {
    return give_up(fmt::format("the device was lost again {:.1f} s after the last loss (less than {} s): "
                               "not recovering",
                               std::chrono::duration<double>(now - *last_loss_).count(),
                               config_.loss_window.count() / 1000.0));
  }
  last_loss_ = now;
  log::warn("device lost: recreating the device and reloading the model");
  try {
    if (model_->in_flight() > 0) {
      try {
        model_->wait();
      } catch (const std::exception&) {  // lost too: the reload destroys it
      }
    }
    model_ = nullptr;  // the callback destroys it first
    model::Model& m = config_.reload();
    if (m.num_blocks() != pool_.num_blocks() || m.options().context_length != max_model_len_ ||
        m.swa_num_blocks() != (swa_pool_ ? swa_pool_->num_blocks() : 0)) {
      throw DeviceError(fmt::format("the reloaded model has {} KV blocks and context {}; the engine "
                                    "was built for {} and {}",
                                    m.num_blocks(), m.options().context_length, pool_.num_blocks(),
                                    max_model_len_));
    }
    model_ = &m;
  } catch (const std::exception& e) {
    return give_up(fmt::format("the device was lost and reloading the model failed: {}", e.what()));
  }
  pool_.reset_prefix_cache();  // the cached K/V went with the device
  if (swa_pool_) swa_pool_->reset_prefix_cache();
  in_flight_.reset();
  starved_ = false;
  log::info("recovered from the device loss: serving again");
  std::lock_guard lock(mu_);
  health_ = Health::ok;
  health_message_.clear();
  ++stats_.device_recoveries;
  failed_ = false;
}

// Step `l` ran: its tokens replace the pending ones, then each live request gets its token (or
// ends). Requests that ended meanwhile (cancelled, stopped a step earlier) are skipped.
void Engine::complete(const Launched& l) {
  model::StepOutput out;
  try {
    out = model_->wait();
  } catch (const DeviceLost& e) {
    if (in_flight_) {  // the step after it cannot have run either
      try {
        model_->wait();
      } catch (const std::exception&) {
      }
      in_flight_.reset();
    }
    fail_all(e.what());
    return;
  } catch (const std::exception& e) {
    log::error("step failed: {}", e.what());
    for (const sched::ScheduledChunk& c : l.plan.chunks) finish_request(c.id, FinishReason::error, e.what());
    return;
  }
  // Chunks that sample in plan order: an embedding request's final chunk drew no token (its
  // placeholder is never read: the request ends here).
  std::vector<std::uint32_t> ids;
  std::vector<RequestId> embedded_done;
  for (std::size_t c = 0, row = 0; c < l.plan.chunks.size(); ++c) {
    if (!l.plan.chunks[c].samples) continue;
    const RequestId id = l.plan.chunks[c].id;
    const bool sampled = row < l.sampled.size() && l.sampled[row] == id;
    ids.push_back(sampled ? out.ids[row++] : 0);
    if (!sampled) embedded_done.push_back(id);
  }
  for (std::size_t i = 0; i < l.embedded.size(); ++i) {
    auto it = live_.find(l.embedded[i].first);
    if (it == live_.end()) continue;
    Request& r = *it->second;
    const std::uint32_t p = l.embedded[i].second;
    if (p < r.pooled_upto) continue;
    const float* e = out.embeddings.data() + i * d_model_;
    for (std::uint32_t j = 0; j < d_model_; ++j) r.pooled[j] += e[j];
    r.pooled_upto = p + 1;
  }
  // Before resolve(): a finished sequence's placeholder is not counted as generated, and an
  // encoder's blocks (whose K/V depend on the whole input) never enter the prefix cache.
  for (RequestId id : embedded_done) {
    auto it = live_.find(id);
    if (it != live_.end()) finish_embedding(*it->second);
  }
  scheduler_.resolve(l.plan, ids);
  for (std::size_t i = 0; i < l.scored.size(); ++i) {
    auto it = live_.find(l.scored[i].first);
    if (it == live_.end()) continue;
    Request& r = *it->second;
    const std::uint32_t p = l.scored[i].second;
    r.prompt_logprobs[p] = out.score_logprobs[i];
    if (!r.prompt_top.empty()) {
      r.prompt_top[p] = out.score_top[i];
      r.prompt_top[p].resize(std::min<std::size_t>(r.prompt_top[p].size(), r.params.top_logprobs));
    }
  }
  for (std::size_t i = 0; i < l.sampled.size(); ++i) {
    auto it = live_.find(l.sampled[i]);
    if (it != live_.end()) append_sampled(*it->second, i, out);
  }
}

}  // namespace vkllm::serving
