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

// Prometheus text: families in the order they first appear, each one's HELP and TYPE once, the
// samples of every model under it (a second HELP or TYPE of a family is an error to Prometheus).
class Exposition {
 public:
  // One sample line (no newline) of the family `name`, the whole family's HELP and TYPE given.
  void add(const std::string& name, const char* type, const std::string& help, std::string line);
  std::string text() const;

 private:
  struct Family {
    std::string head;
    std::string lines;
  };
  std::vector<Family> families_;
  std::map<std::string, std::size_t> index_;
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double v);
  // The series with `labels` (e.g. model_name="m").
  void render(Exposition& out, const std::string& name, const std::string& help,
              const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

// One model's request metrics, labelled model_name as vLLM's are.
class Metrics {
 public:
  explicit Metrics(const std::string& model_name);
  // One finished request: latencies in seconds (ttft < 0: no token was produced).
  void request_done(serving::FinishReason reason, double ttft, double e2e,
                    std::uint32_t prompt_tokens, std::uint32_t completion_tokens);
  // One answered /v1/embeddings request: its inputs and their tokens.
  void embedding_inputs(std::size_t inputs, std::uint32_t tokens);
  // These and the model's engine statistics.
  void render(Exposition& out, const serving::EngineStats& engine) const;

 private:
  mutable std::mutex mu_;
  std::string labels_;
  Histogram ttft_, tpot_, e2e_, prompt_len_, gen_len_;
  std::map<std::string, std::uint64_t> finished_;  // by finish reason
  std::uint64_t embeddings_ = 0, embedding_tokens_ = 0;
};

// HTTP responses by status code, of the whole server.
class HttpCounts {
 public:
  void add(int status);
  void render(Exposition& out) const;

 private:
  mutable std::mutex mu_;
  std::map<int, std::uint64_t> counts_;
};

}  // namespace vkllm::server
