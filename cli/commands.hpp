// The subcommands of the vkllm CLI, one function each over the library.
// Knows every room's public headers; holds no logic of its own beyond argument plumbing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vkllm::cli {

// "512 B", "1.5 KiB", "128.00 MiB", "23.47 GiB": sizes as the commands print them.
std::string format_bytes(std::uint64_t bytes);

struct DevicesOptions {
  bool json = false;
};
int run_devices(const DevicesOptions& options);

struct TokenizeOptions {
  std::string model;
  std::string text;
  bool detokenize = false;     // text is a JSON array of ids; print the decoded text
  bool no_special = false;     // do not add BOS/EOS
  bool parse_special = false;  // recognise control-token text such as <|eot_id|>
  bool show_special = false;   // --detokenize: print control tokens
};
int run_tokenize(const TokenizeOptions& options);

struct ChatTemplateOptions {
  std::string model;          // optional: template, BOS and EOS from its GGUF
  std::string template_file;  // overrides the model's template
  std::string messages_file;
  std::string tools_file;
  bool add_generation_prompt = false;
};
int run_chat_template(const ChatTemplateOptions& options);

struct InfoOptions {
  std::string model;
  bool full = false;        // print arrays and strings whole
  bool no_tensors = false;  // metadata only
};
int run_info(const InfoOptions& options);

}  // namespace vkllm::cli

namespace vkllm::cli {

// Sampling flags shared by run (and later serve defaults).
struct SamplingFlags {
  float temperature = 0.8f;
  std::uint32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.f;
  std::int64_t seed = -1;  // -1: random
};

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;        // --file: the prompt from a file ("-": standard input)
  std::vector<std::string> stop;  // stop strings (the server's stop handling)
  std::uint32_t n_predict = 128;
  std::uint32_t ctx_size = 0;  // 0: min(model, 4096)
  int device = -1;             // -1: automatic (VKLLM_DEVICE, then the best)
  SamplingFlags sampling;
  bool ignore_eos = false;
};
int run_generate(const RunOptions& options);

struct MakeModelOptions {
  std::string preset;
  std::string type = "q4_0";
  std::string output;
  std::uint32_t seed = 1;
  std::uint32_t layers = 0;  // 0: the preset's
};
int run_make_model(const MakeModelOptions& options);

struct BenchOptions {
  std::string model;
  std::uint32_t n_prompt = 512;
  std::uint32_t n_gen = 128;
  std::uint32_t repetitions = 3;
  std::uint32_t batch = 512;  // tokens per prefill step
  int device = -1;
  bool json = false;
  std::vector<std::uint32_t> concurrency;  // throughput mode: levels of concurrent requests
  bool replay_compare = false;  // also time tg with every step recorded anew
  std::uint32_t depth = 0;      // tg after this many tokens of context (llama-bench's -d)
  std::uint32_t ctx_size = 0;   // the context the model is planned for (0: just what the test needs)
  bool no_pad = false;          // steps run at their exact shapes (ModelOptions::pad_steps off)
  bool no_overlap = false;      // throughput mode: one step at a time (EngineConfig::overlap off)
  bool mixed_lengths = false;   // throughput mode: request i generates n/2 .. n tokens, spread
};
int run_bench(const BenchOptions& options);

}  // namespace vkllm::cli

namespace vkllm::cli {

struct ServeOptions {
  std::vector<std::string> models;  // -m, repeatable
  std::string models_dir;
  std::uint32_t max_loaded_models = 0;
  std::uint64_t memory_budget = 0;  // bytes; 0: gpu_memory_fraction
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string api_key;
  bool metrics_need_key = false;
  std::vector<std::string> allowed_hosts;
  double request_timeout = 0;  // seconds; 0: none
  unsigned timeout = 30;        // seconds: each request's read, each response write, keep-alive idle
  std::string cors_origin;
  std::uint32_t max_num_seqs = 16;
  std::uint32_t max_num_batched_tokens = 512;
  std::uint32_t ctx_size = 0;
  std::uint32_t block_size = 16;
  float gpu_memory_fraction = 0.9f;
  int device = -1;
  std::string chat_template_file;
  std::vector<std::string> served_model_names;  // the first is the id; the others are aliases
  unsigned threads = 2;
  std::uint64_t max_body_bytes = 8u << 20;
  std::uint32_t max_queue = 256;
  bool no_prefix_caching = false;
  bool no_overlap = false;
  std::string late_masks = "auto";  // EngineConfig::late_masks: auto, on, off
  bool deterministic = false;
  std::uint32_t default_max_tokens = 256;
  bool embeddings = false;  // /v1/embeddings (always on for an encoder)
  std::string pooling;      // mean, cls, last; empty: the model's
};
int run_serve(const ServeOptions& options);

}  // namespace vkllm::cli
