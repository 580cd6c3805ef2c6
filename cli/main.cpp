// vkllm: one thin main over the library (docs/ARCHITECTURE.md "Rooms"): parses the command line, runs a
// subcommand, and turns typed errors into a message and an exit code.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <exception>

#include "cli/commands.hpp"
#include "cli/version.hpp"
#include "common/error.hpp"
#include "common/fault.hpp"

int main(int argc, char** argv) {
  CLI::App app{"vkllm: LLM inference engine and OpenAI-compatible server on Vulkan"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows every default
  const std::string version = fmt::format("vkllm {} (commit {}, {} build)", vkllm::cli::kVersion,
                                          vkllm::cli::kCommit, vkllm::cli::kBuildType);
  app.set_version_flag("--version", version, "Print the version, commit and build type");
  auto* version_cmd = app.add_subcommand("version", "Print the version, commit and build type");

  vkllm::cli::DevicesOptions devices;
  auto* devices_cmd = app.add_subcommand("devices", "List Vulkan devices and their capabilities");
  devices_cmd->add_flag("--json", devices.json, "Print JSON instead of a table");

  vkllm::cli::TokenizeOptions tokenize;
  auto* tokenize_cmd = app.add_subcommand("tokenize", "Token ids of a text (JSON), or the reverse");
  tokenize_cmd->add_option("-m,--model", tokenize.model, "GGUF model file")->required();
  tokenize_cmd->add_option("--text", tokenize.text, "Text (or, with --detokenize, a JSON id array)")
      ->required();
  tokenize_cmd->add_flag("--detokenize", tokenize.detokenize, "Decode a JSON array of ids");
  tokenize_cmd->add_flag("--no-special", tokenize.no_special, "Do not add BOS/EOS");
  tokenize_cmd->add_flag("--parse-special", tokenize.parse_special,
                         "Recognise control tokens written in the text");
  tokenize_cmd->add_flag("--show-special", tokenize.show_special,
                         "With --detokenize: print control tokens");

  vkllm::cli::ChatTemplateOptions chat;
  auto* chat_cmd = app.add_subcommand(
      "chat-template", "Render a conversation with the model's chat template, exactly");
  chat_cmd->add_option("-m,--model", chat.model, "GGUF model (template, BOS, EOS)");
  chat_cmd->add_option("--template,--chat-template", chat.template_file,
                       "Jinja template file (overrides the model's)");
  chat_cmd->add_option("--messages", chat.messages_file, "JSON file: array of messages")->required();
  chat_cmd->add_option("--tools", chat.tools_file, "JSON file: array of tool definitions");
  chat_cmd->add_flag("--add-generation-prompt", chat.add_generation_prompt,
                     "End with the assistant's turn header");

  vkllm::cli::InfoOptions info;
  auto* info_cmd = app.add_subcommand("info", "A GGUF's metadata and tensor table");
  info_cmd->add_option("-m,--model", info.model, "GGUF model file")->required();
  info_cmd->add_flag("--full", info.full, "Print long arrays and strings whole");
  info_cmd->add_flag("--no-tensors", info.no_tensors, "Metadata only");

  vkllm::cli::RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Generate text from a prompt (text on stdout, logs on stderr)");
  run_cmd->add_option("-m,--model", run.model, "GGUF model file")->required();
  run_cmd->add_option("-p,--prompt", run.prompt, "Prompt text (may be empty)");
  run_cmd->add_option("-f,--file", run.prompt_file, "Read the prompt from a file ('-': standard input)");
  run_cmd->add_option("--stop", run.stop, "Stop string (repeatable): generation ends before it, as the server's 'stop'");
  run_cmd->add_option("-n,--n-predict", run.n_predict, "Tokens to generate")->check(CLI::Range(1u, 1u << 20));
  run_cmd->add_option("-c,--ctx-size", run.ctx_size, "Context length (0: min(model, 4096))");
  run_cmd->add_option("--device", run.device, "Vulkan device index (see `vkllm devices`)");
  run_cmd->add_option("--temp", run.sampling.temperature, "Temperature (0: greedy)");
  run_cmd->add_option("--top-k", run.sampling.top_k, "Top-k (0: off)");
  run_cmd->add_option("--top-p", run.sampling.top_p, "Top-p (1: off)");
  run_cmd->add_option("--min-p", run.sampling.min_p, "Min-p (0: off)");
  run_cmd->add_option("--repeat-penalty", run.sampling.repeat_penalty, "Repetition penalty over the last 64 tokens (1: off)");
  run_cmd->add_option("-s,--seed", run.sampling.seed, "Seed (-1: random)");
  run_cmd->add_flag("--ignore-eos", run.ignore_eos, "Keep generating past end-of-generation tokens");

  vkllm::cli::MakeModelOptions make;
  auto* make_cmd = app.add_subcommand("make-model", "Write a random-weight GGUF with a real model's shapes");
  make_cmd->add_option("--preset", make.preset, "llama3-1b, llama3-8b, qwen2.5-0.5b, phi3-mini, phi4-mini, gemma2-2b, gemma3-4b, tiny (~100M), tiny-phi3, tiny-phi4, tiny-gemma2, tiny-gemma3, qwen3-30b-a3b, tiny-qwen3moe, tiny-mixtral, tiny-qwen2moe, gpt-oss-20b, tiny-gpt-oss, tiny-yarn, micro, micro-gemma3, or the encoders bge-small and micro-bert")->required();
  make_cmd->add_option("--type", make.type, "Weight type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs mxfp4");
  make_cmd->add_option("-o,--output", make.output, "Output GGUF path")->required();
  make_cmd->add_option("--seed", make.seed, "Random seed");
  make_cmd->add_option("--layers", make.layers, "Fewer layers than the preset's (a model too big for this machine, with its real layer shapes)")
      ->check(CLI::PositiveNumber);

  vkllm::cli::BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "Prompt and generation speed (llama-bench style pp/tg)");
  bench_cmd->add_option("-m,--model", bench.model, "GGUF model file")->required();
  bench_cmd->add_option("-p,--n-prompt", bench.n_prompt, "Prompt tokens (pp test; 0: skip)");
  bench_cmd->add_option("-n,--n-gen", bench.n_gen, "Generated tokens (tg test; 0: skip)");
  bench_cmd->add_option("-r,--repetitions", bench.repetitions, "Timed repetitions (median reported)");
  bench_cmd->add_option("-b,--batch-size", bench.batch, "Prompt tokens per step");
  bench_cmd->add_option("--device", bench.device, "Vulkan device index");
  bench_cmd->add_option("-d,--depth", bench.depth, "tg after this many tokens of context (llama-bench's -d)");
  bench_cmd->add_option("-c,--ctx-size", bench.ctx_size,
                        "Context the model is planned for (0: what the tests need); e.g. 131072 with -d 4096");
  bench_cmd->add_flag("--json", bench.json, "One JSON line instead of a table");
  bench_cmd->add_flag("--replay-compare", bench.replay_compare,
                      "Also time tg with each step's command buffer recorded anew (what replay saves)");
  bench_cmd->add_flag("--no-pad", bench.no_pad,
                      "Run every step at its exact shape (no bucket padding: fewer replays)");
  bench_cmd->add_flag("--no-overlap", bench.no_overlap,
                      "Throughput mode: submit each step only after the last one's tokens are read");
  bench_cmd->add_flag("--mixed-lengths", bench.mixed_lengths,
                      "Throughput mode: requests generate n/2 to n tokens, so they finish at different steps");
  bench_cmd->add_option("--concurrency", bench.concurrency,
                        "Throughput mode: comma-separated levels of concurrent requests (e.g. 1,4,16,64)")
      ->delimiter(',');

  vkllm::cli::ServeOptions serve;
  auto* serve_cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  serve_cmd->add_option("-m,--model", serve.models,
                        "GGUF model file; repeated, several models (each loaded when a request names it)");
  serve_cmd->add_option("--models-dir", serve.models_dir,
                        "Serve every .gguf file of this directory (read again for files added later), "
                        "each named by its file name without .gguf and loaded when a request names it");
  serve_cmd->add_option("--max-loaded-models", serve.max_loaded_models,
                        "Models in device memory at once, the least recently used unloaded first (0: as "
                        "many as the memory budget holds)");
  serve_cmd->add_option("--memory-budget", serve.memory_budget,
                        "Device memory all loaded models together may use, e.g. 6G (default: "
                        "--gpu-memory-fraction of the device's memory)")
      ->transform(CLI::AsSizeValue(false));
  serve_cmd->add_option("--host", serve.host, "Address to bind (default loopback)");
  serve_cmd->add_option("--port", serve.port, "Port (0: any free port)");
  serve_cmd->add_option("--api-key", serve.api_key, "Require 'Authorization: Bearer KEY' on every route but /health (and /metrics)");
  serve_cmd->add_option("--timeout", serve.timeout,
                        "Seconds a client may take to send a request (headers and body), to take each "
                        "response write, and to sit idle between keep-alive requests")
      ->check(CLI::Range(1u, 86400u));
  serve_cmd->add_option("--request-timeout", serve.request_timeout,
                        "Seconds a generation may run before it ends with 408 request_timeout (0: no limit)")
      ->check(CLI::Range(0.0, 1e7));
  serve_cmd->add_flag("--metrics-need-key", serve.metrics_need_key, "/metrics asks for the API key too");
  serve_cmd->add_option("--allowed-hosts", serve.allowed_hosts,
                        "Host names served besides localhost and loopback addresses (comma-separated; * for any). "
                        "On a loopback bind other Host headers get 403 (DNS rebinding)")
      ->delimiter(',');
  serve_cmd->add_option("--cors-origin", serve.cors_origin, "Allowed CORS origin (default: CORS off)");
  serve_cmd->add_option("--max-num-seqs", serve.max_num_seqs, "Sequences per step")->check(CLI::Range(1u, 1024u));
  serve_cmd->add_option("--max-num-batched-tokens", serve.max_num_batched_tokens, "Tokens per step")->check(CLI::Range(1u, 65536u));
  serve_cmd->add_option("-c,--ctx-size", serve.ctx_size, "Context per request (0: min(model, 4096))");
  serve_cmd->add_option("--block-size", serve.block_size, "Tokens per KV block")->check(CLI::Range(1u, 256u));
  serve_cmd->add_option("--gpu-memory-fraction", serve.gpu_memory_fraction, "Fraction of device memory to plan with");
  serve_cmd->add_option("--device", serve.device, "Vulkan device index");
  serve_cmd->add_option("--chat-template", serve.chat_template_file, "Jinja chat template file (overrides the model's)");
  serve_cmd->add_option("--served-model-name", serve.served_model_names,
                        "Model name(s) in the API: the first is the id, others are aliases (default: file stem)");
  serve_cmd->add_option("--max-body-bytes", serve.max_body_bytes, "Largest request body accepted (413 above)")
      ->check(CLI::Range(std::uint64_t{1024}, std::uint64_t{1} << 32));
  serve_cmd->add_option("--threads", serve.threads, "HTTP io threads")->check(CLI::Range(1u, 256u));
  serve_cmd->add_option("--max-queue", serve.max_queue,
                        "Requests waiting for their first step (not running) before new ones get 429");
  serve_cmd->add_option("--default-max-tokens", serve.default_max_tokens, "max_tokens when a request gives none");
  serve_cmd->add_flag("--no-prefix-caching", serve.no_prefix_caching, "Disable the prefix cache");
  serve_cmd->add_flag("--no-overlap", serve.no_overlap,
                      "Run one step at a time (no step submitted while the one before still runs)");
  serve_cmd->add_option("--late-masks", serve.late_masks,
                        "Constrained requests in the overlapped loop, their sampler submitted once the "
                        "host has their masks: auto (on, except on a CPU device such as lavapipe), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  serve_cmd->add_flag("--deterministic", serve.deterministic, "Batch-invariant kernels (same tokens alone or batched)");
  serve_cmd->add_flag("--embeddings", serve.embeddings,
                      "Serve /v1/embeddings with a generative model too (an embedding model always does)");
  serve_cmd->add_option("--pooling", serve.pooling,
                        "Embedding pooling when a request names none (default: the model file's)")
      ->check(CLI::IsMember({"mean", "cls", "last"}));

  CLI11_PARSE(app, argc, argv);
  try {
    vkllm::fault::arm_from_env();  // VKLLM_FAULT (docs/ARCHITECTURE.md "Injected faults")
    if (*version_cmd) {
      fmt::print("{}\n", version);
      return 0;
    }
    if (*devices_cmd) return vkllm::cli::run_devices(devices);
    if (*tokenize_cmd) return vkllm::cli::run_tokenize(tokenize);
    if (*chat_cmd) return vkllm::cli::run_chat_template(chat);
    if (*info_cmd) return vkllm::cli::run_info(info);
    if (*run_cmd) return vkllm::cli::run_generate(run);
    if (*make_cmd) return vkllm::cli::run_make_model(make);
    if (*bench_cmd) return vkllm::cli::run_bench(bench);
    if (*serve_cmd) return vkllm::cli::run_serve(serve);
  } catch (const vkllm::Error& e) {
    fmt::print(stderr, "vkllm: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "vkllm: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}
