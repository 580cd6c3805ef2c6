#include "server/metrics.hpp"

#include <fmt/format.h>

namespace vkllm::server {

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Exposition::add(const std::string& name, const char* type, const std::string& help, std::string line) {
  auto [it, fresh] = index_.try_emplace(name, families_.size());
  if (fresh) families_.push_back({fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type), {}});
  std::string& lines = families_[it->second].lines;
  lines += line;
  lines += '\n';
}

std::string Exposition::text() const {
  std::string out;
  for (const Family& f : families_) out += f.head + f.lines;
  return out;
}

void Histogram::render(Exposition& out, const std::string& name, const std::string& help,
                       const std::string& labels) const {
  auto line = [&](std::string text) { out.add(name, "histogram", help, std::move(text)); };
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    line(fmt::format("{}_bucket{{{},le=\"{}\"}} {}", name, labels, bounds_[i], cumulative));
  }
  cumulative += counts_.back();
  line(fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}", name, labels, cumulative));
  line(fmt::format("{}_sum{{{}}} {}", name, labels, sum_));
  line(fmt::format("{}_count{{{}}} {}", name, labels, count_));
}

namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::vector<double> token_buckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000};
}

}  // namespace

Metrics::Metrics(const std::string& model_name)
    : labels_(fmt::format("model_name=\"{}\"", escape_label(model_name))),
      ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      e2e_({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            120.0, 240.0, 480.0}),
      prompt_len_(token_buckets()),
      gen_len_(token_buckets()) {}

void Metrics::request_done(serving::FinishReason reason, double ttft, double e2e,
                           std::uint32_t prompt_tokens, std::uint32_t completion_tokens) {
  std::lock_guard lock(mu_);
  ++finished_[serving::to_string(reason)];
  if (ttft >= 0) ttft_.observe(ttft);
  if (completion_tokens > 1 && ttft >= 0) tpot_.observe((e2e - ttft) / (completion_tokens - 1));
  e2e_.observe(e2e);
  prompt_len_.observe(prompt_tokens);
  gen_len_.observe(completion_tokens);
}

void HttpCounts::add(int status) {
  std::lock_guard lock(mu_);
  ++counts_[status];
}

void HttpCounts::render(Exposition& out) const {
  std::lock_guard lock(mu_);
  for (const auto& [status, n] : counts_) {
    out.add("vkllm:http_responses_total", "counter", "HTTP responses by status code.",
            fmt::format("vkllm:http_responses_total{{code=\"{}\"}} {}", status, n));
  }
}

void Metrics::embedding_inputs(std::size_t inputs, std::uint32_t tokens) {
  std::lock_guard lock(mu_);
  embeddings_ += inputs;
  embedding_tokens_ += tokens;
}

void Metrics::render(Exposition& out, const serving::EngineStats& s) const {
  std::lock_guard lock(mu_);
  auto gauge = [&](const char* name, const char* help, double v) {
    out.add(name, "gauge", help, fmt::format("{}{{{}}} {}", name, labels_, v));
  };
  auto counter = [&](const char* name, const char* help, double v) {
    out.add(name, "counter", help, fmt::format("{}{{{}}} {}", name, labels_, v));
  };
  gauge("vllm:num_requests_running", "Requests in the running batch.", double(s.running));
  gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.", double(s.waiting));
  gauge("vllm:gpu_cache_usage_perc", "Fraction of KV cache blocks in use (1 = 100%).", s.kv_usage);
  gauge("vllm:kv_cache_usage_perc", "Fraction of KV cache blocks in use (1 = 100%).", s.kv_usage);
  if (s.kv_swa_blocks_total > 0) {
    gauge("vkllm:swa_kv_cache_usage_perc",
          "Fraction of the sliding-window layers' KV blocks in use (1 = 100%).",
          1.0 - double(s.kv_swa_blocks_free) / s.kv_swa_blocks_total);
  }
  counter("vllm:prompt_tokens_total", "Prompt tokens computed.", double(s.prompt_tokens));
  counter("vllm:generation_tokens_total", "Tokens generated.", double(s.generation_tokens));
  counter("vllm:num_preemptions_total", "Preemptions (blocks freed, request recomputed later).",
          double(s.preemptions));
  counter("vllm:prefix_cache_queries_total",
          "Prefix cache lookups, in tokens (prompt blocks shared between a request's choices count).",
          double(s.prefix_queries) * 1.0);
  counter("vllm:prefix_cache_hits_total",
          "Prefix cache hits, in tokens (prompt blocks shared between a request's choices count).",
          double(s.prefix_hits));
  counter("vkllm:prompt_tokens_cached_total",
          "Prompt tokens not computed: found in the prefix cache or shared between choices (n > 1).",
          double(s.cached_prompt_tokens));
  counter("vkllm:prompt_tokens_shared_total",
          "Prompt tokens a choice (n > 1) took from another choice of its request.",
          double(s.shared_prompt_tokens));
  counter("vkllm:engine_steps_total", "Forward passes run.", double(s.steps));
  counter("vkllm:command_buffer_replays_total", "Steps that replayed a recorded command buffer.",
          double(s.replays));
  counter("vkllm:overlapped_steps_total",
          "Steps submitted while the step before still ran (the overlapped loop).",
          double(s.overlapped_steps));
  counter("vkllm:cancel_requests_total", "Cancellations asked of the engine (clients gone, stop strings).",
          double(s.cancel_calls));
  counter("vkllm:request_timeouts_total", "Requests ended by --request-timeout.", double(s.timeouts));
  counter("vkllm:device_losses_total", "Times the device was lost (its requests ended with 503 device_lost).",
          double(s.device_losses));
  counter("vkllm:device_recoveries_total", "Device losses recovered from: device recreated, weights reloaded.",
          double(s.device_recoveries));
  const std::string memory_help =
      "Device memory by use (weights, kv_cache, ...): reserved from the driver, and used by live buffers.";
  for (const serving::EngineStats::MemoryLine& m : s.device_memory) {
    for (const bool used : {false, true}) {
      out.add("vkllm:device_memory_bytes", "gauge", memory_help,
              fmt::format("vkllm:device_memory_bytes{{{},intent=\"{}\",state=\"{}\"}} {}", labels_, m.intent,
                          used ? "used" : "reserved", used ? m.used : m.reserved));
    }
  }
  for (const auto& [reason, n] : finished_) {
    out.add("vllm:request_success_total", "counter", "Finished requests by finish reason.",
            fmt::format("vllm:request_success_total{{{},finished_reason=\"{}\"}} {}", labels_, reason, n));
  }
  counter("vkllm:embeddings_total", "Embeddings returned (inputs of /v1/embeddings).", double(embeddings_));
  counter("vkllm:embedding_prompt_tokens_total", "Tokens of the inputs embedded.", double(embedding_tokens_));
  ttft_.render(out, "vllm:time_to_first_token_seconds", "Time to first token.", labels_);
  tpot_.render(out, "vllm:time_per_output_token_seconds", "Time per output token after the first.", labels_);
  e2e_.render(out, "vllm:e2e_request_latency_seconds", "End-to-end request latency.", labels_);
  prompt_len_.render(out, "vllm:request_prompt_tokens", "Prompt tokens per request.", labels_);
  gen_len_.render(out, "vllm:request_generation_tokens", "Generated tokens per request.", labels_);
}

}  // namespace vkllm::server
