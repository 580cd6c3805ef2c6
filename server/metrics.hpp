// Prometheus text exposition with vLLM's metric names, so dashboards and the Gateway API
// Inference Extension read vkllm like a vLLM replica. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/serving/engine.hpp"

namespace vkllm::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double v);
  // Appends "# HELP/# TYPE" and the series with `labels` (e.g. model_name="m").
  void render(std::string& out, const std::string& name, const std::string& help,
              const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);
  // One finished request: latencies in seconds (ttft < 0: no token was produced).
  void request_done(serving::FinishReason reason, double ttft, double e2e,
                    std::uint32_t prompt_tokens, std::uint32_t completion_tokens);
  void http_response(int status);
  // One answered /v1/embeddings request: its inputs and their tokens.
  void embedding_inputs(std::size_t inputs, std::uint32_t tokens);
  std::string render(const serving::EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  std::string labels_;
  Histogram ttft_, tpot_, e2e_, prompt_len_, gen_len_;
  std::map<std::string, std::uint64_t> finished_;  // by finish reason
  std::map<int, std::uint64_t> http_;              // by status code
  std::uint64_t embeddings_ = 0, embedding_tokens_ = 0;
};

}  // namespace vkllm::server
