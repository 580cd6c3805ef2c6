// `vkllm run` (text generation on one sequence), `vkllm make-model` (synthetic GGUFs with real
// shapes) and `vkllm bench` (llama-bench style pp/tg with bytes read per token).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/frontend/text_output.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/model/sequence.hpp"
#include "engine/model/synthetic.hpp"
#include "engine/serving/engine.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "platform/device.hpp"
#include "platform/instance.hpp"

namespace vkllm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Loaded {
  platform::Instance instance;
  std::unique_ptr<platform::Device> device;
  gguf::Reader reader;
  std::unique_ptr<model::Model> model;
};

Loaded load(const std::string& path, int device_index, const model::ModelOptions& options) {
  const auto t0 = Clock::now();
  platform::Instance instance = platform::Instance::create({});
  const std::size_t index = instance.choose_device(
      device_index >= 0 ? std::optional<std::size_t>(device_index) : std::nullopt);
  auto device = platform::Device::open(instance, index);
  gguf::Reader reader = gguf::Reader::open(path);
  auto m = model::Model::load(*device, reader, options);
  const model::ModelConfig& c = m->config();
  log::info("model {}: {} {} layers, d_model {}, {} heads ({} KV) x {}, vocab {}, context {}",
            path, model::to_string(c.arch), c.n_layers, c.d_model, c.n_heads, c.n_kv_heads,
            c.head_dim, c.vocab_size, m->options().context_length);
  log::info("device {}: weights {}, KV cache {} ({} blocks of {} tokens, {}), workspace {}; "
            "loaded in {:.2f} s",
            device->name(), format_bytes(m->weight_bytes()), format_bytes(m->kv_bytes()),
            m->num_blocks(), m->options().block_size,
            m->kv_type() == ops::KvType::f16 ? "f16" : "f32", format_bytes(m->workspace_bytes()),
            seconds_since(t0));
  return Loaded{std::move(instance), std::move(device), std::move(reader), std::move(m)};
}

model::SamplingParams to_params(const SamplingFlags& f) {
  model::SamplingParams p;
  p.temperature = f.temperature;
  p.top_k = f.top_k;
  p.top_p = f.top_p;
  p.min_p = f.min_p;
  p.repetition_penalty = f.repeat_penalty;
  p.seed = f.seed >= 0 ? static_cast<std::uint64_t>(f.seed) : std::random_device{}();
  return p;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

namespace {

std::string read_prompt(const RunOptions& o) {
  if (o.prompt_file.empty()) return o.prompt;
  if (!o.prompt.empty()) throw InvalidRequest("give the prompt with -p or --file, not both");
  std::ostringstream ss;
  if (o.prompt_file == "-") {
    ss << std::cin.rdbuf();
    return ss.str();
  }
  if (std::filesystem::is_directory(o.prompt_file)) {
    throw InvalidRequest(fmt::format("--file {} is a directory", o.prompt_file));
  }
  std::ifstream f(o.prompt_file, std::ios::binary);
  if (!f) throw InvalidRequest(fmt::format("--file {}: cannot open for reading", o.prompt_file));
  ss << f.rdbuf();
  return ss.str();
}

void write_out(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

int run_generate(const RunOptions& o) {
  if (o.sampling.temperature < 0 || o.sampling.top_p <= 0 || o.sampling.top_p > 1 ||
      o.sampling.min_p < 0 || o.sampling.min_p > 1 || o.sampling.repeat_penalty <= 0) {
    throw InvalidRequest("sampling: --temp >= 0, 0 < --top-p <= 1, 0 <= --min-p <= 1, "
                         "--repeat-penalty > 0");
  }
  const std::string prompt_text = read_prompt(o);
  model::ModelOptions mo;
  mo.max_seqs = 1;
  mo.context_length = o.ctx_size;
  Loaded L = load(o.model, o.device, mo);
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_gguf(L.reader);
  const auto ids = tokenizer.encode(prompt_text);
  if (ids.empty()) throw InvalidRequest("the prompt is empty and the model adds no BOS token");
  std::vector<std::uint32_t> prompt(ids.begin(), ids.end());
  model::Sequence seq(*L.model);
  if (prompt.size() + o.n_predict > seq.capacity()) {
    throw InvalidRequest(fmt::format("prompt ({} tokens) + {} to generate exceed the context of {} "
                                     "(--ctx-size)",
                                     prompt.size(), o.n_predict, seq.capacity()));
  }
  const model::SamplingParams params = to_params(o.sampling);
  // The same text path as the server: detokenize, stop strings, one finish for every end.
  frontend::TextOutput text(tokenizer, frontend::TextOutputOptions{o.stop, false, false});

  const auto t0 = Clock::now();
  std::uint32_t next = seq.feed(prompt, params).ids[0];
  const double prompt_s = seconds_since(t0);
  const auto t1 = Clock::now();
  std::uint32_t generated = 0;
  while (generated < o.n_predict) {
    ++generated;
    if (!o.ignore_eos && tokenizer.is_eog(static_cast<tok::TokenId>(next))) break;
    write_out(text.push(next).content);
    if (text.stopped() || generated == o.n_predict) break;
    next = seq.feed(std::span(&next, 1), params).ids[0];
  }
  write_out(text.finish().content + "\n");
  const double gen_s = seconds_since(t1);
  log::info("prompt: {} tokens in {:.3f} s ({:.1f} tok/s); generated: {} tokens in {:.3f} s "
            "({:.1f} tok/s)",
            prompt.size(), prompt_s, prompt.size() / prompt_s, generated, gen_s,
            generated > 1 ? (generated - 1) / gen_s : 0.0);
  return 0;
}

int run_make_model(const MakeModelOptions& o) {
  auto spec = model::synthetic_preset(o.preset);
  if (!spec) {
    std::string names;
    for (const auto& n : model::synthetic_preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw InvalidRequest(fmt::format("unknown preset '{}' (presets: {})", o.preset, names));
  }
  const gguf::TensorType* type = nullptr;
  for (const gguf::TensorType& t : gguf::cpu_supported_types()) {
    std::string name(gguf::type_name(t));
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string want = o.type;
    std::transform(want.begin(), want.end(), want.begin(), ::tolower);
    if (name == want) type = &t;
  }
  if (!type) {
    throw InvalidRequest(fmt::format("unknown weight type '{}' (f32, f16, bf16, q8_0, q4_0, q4_1, "
                                     "q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, mxfp4)",
                                     o.type));
  }
  spec->type = *type;
  spec->seed = o.seed;
  if (o.layers > 0) {
    if (o.layers > spec->n_layers) {
      throw InvalidRequest(fmt::format("--layers {}: preset {} has {} layers", o.layers, o.preset, spec->n_layers));
    }
    spec->n_layers = o.layers;
  }
  const auto t0 = Clock::now();
  const gguf::Writer w = model::make_synthetic_model(*spec);
  w.write_file(o.output);
  log::info("wrote {} ({} {}, {:.0f}M parameters, random weights) in {:.1f} s", o.output,
            o.preset, gguf::type_name(*type), model::synthetic_parameter_count(*spec) / 1e6,
            seconds_since(t0));
  return 0;
}

// Throughput mode: for each concurrency level, that many requests (prompt of -p tokens, -n
// generated) submitted at once to the serving engine; aggregate generated tokens/s and the
// inter-token latency each request saw.
int run_throughput(const BenchOptions& o) {
  const std::uint32_t max_c = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  model::ModelOptions mo;
  mo.max_seqs = max_c;
  mo.max_batch_tokens = std::max<std::uint32_t>(o.batch, max_c);
  mo.context_length = std::max<std::uint32_t>(o.n_prompt + o.n_gen + 1, 16);
  mo.pad_steps = !o.no_pad;
  Loaded L = load(o.model, o.device, mo);
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_gguf(L.reader);
  std::mt19937 rng(99);
  std::uniform_int_distribution<std::uint32_t> tok(3, L.model->config().vocab_size - 1);
  // One level: c requests at once (request i generates n_gen, or with mixed lengths n_gen down
  // to n_gen / 2); returns the row of the table.
  auto level = [&](std::uint32_t c, std::uint32_t n_gen) {
    serving::EngineConfig ec;
    ec.max_num_seqs = c;
    ec.max_num_batched_tokens = mo.max_batch_tokens;
    ec.prefix_caching = false;  // distinct random prompts anyway; measure compute
    ec.overlap = !o.no_overlap;
    serving::Engine engine(*L.model, tokenizer, ec);
    const std::uint64_t replays0 = L.model->replays();  // the model's count spans the levels
    const double busy0 = L.model->device_busy_seconds();
    const double wait0 = L.model->device_wait_seconds();
    std::mutex mu;
    std::condition_variable cv;
    std::uint32_t finished = 0;
    std::vector<double> itl;
    std::vector<Clock::time_point> last(c);
    const auto t0 = Clock::now();
    for (std::uint32_t i = 0; i < c; ++i) {
      std::vector<std::uint32_t> prompt(std::max<std::uint32_t>(o.n_prompt, 1));
      for (auto& t : prompt) t = tok(rng);
      serving::RequestParams p;
      p.sampling.temperature = 0;
      p.max_tokens = o.mixed_lengths ? n_gen - (n_gen / 2) * i / std::max<std::uint32_t>(c - 1, 1) : n_gen;
      p.ignore_eos = true;
      last[i] = t0;
      engine.submit(prompt, p, [&, i](const serving::TokenEvent& ev) {
        std::lock_guard lock(mu);
        const auto now = Clock::now();
        if (!ev.tokens.empty()) {
          if (ev.completion_tokens > 1) itl.push_back(std::chrono::duration<double, std::milli>(now - last[i]).count());
          last[i] = now;
        }
        if (ev.finish != serving::FinishReason::none) {
          ++finished;
          cv.notify_all();
        }
      });
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return finished == c; });
    }
    const double wall = seconds_since(t0);
    const auto st = engine.stats();
    std::sort(itl.begin(), itl.end());
    auto pct = [&](double q) { return itl.empty() ? 0.0 : itl[std::min(itl.size() - 1, std::size_t(q * itl.size()))]; };
    const double agg = double(st.generation_tokens) / wall;
    // Replayed: steps whose command buffer was recorded before (shape repeated), of all steps.
    const double replayed = st.steps ? 100.0 * double(L.model->replays() - replays0) / double(st.steps) : 0.0;
    // Host time the device did not overlap: the wall time less the device's own (timestamps at
    // the start and end of each step), i.e. the device's idle time; without timestamps, the wall
    // time less the time the host waited (exact only when one step runs at a time).
    const double busy = L.model->device_busy_seconds() - busy0;
    const double device_s = busy > 0 ? busy : L.model->device_wait_seconds() - wait0;
    const double host_ms = st.steps ? 1e3 * std::max(0.0, wall - device_s) / double(st.steps) : 0.0;
    const double overlapped = st.steps ? 100.0 * double(st.overlapped_steps) / double(st.steps) : 0.0;
    return fmt::format("| {} | {} | {:.1f} | {:.2f} | {:.1f} | {:.1f} | {} | {:.0f}% | {:.0f}% | {:.2f} | {:.2f} |\n", c, c,
                       agg, agg / c, pct(0.5), pct(0.99), st.steps, replayed, overlapped, host_ms, wall);
  };
  // Warm-up, not shown: compiles the pipelines (host time once per process, not per step).
  level(max_c, 2);
  fmt::print("| concurrency | requests | generated tok/s (aggregate) | per-request tok/s | ITL p50 ms | ITL p99 ms | steps | replayed | overlapped | host ms/step not overlapped | wall s |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (std::uint32_t c : o.concurrency) {
    fmt::print("{}", level(c, o.n_gen));
    std::fflush(stdout);
  }
  return 0;
}

int run_bench(const BenchOptions& o) {
  if (!o.concurrency.empty()) return run_throughput(o);
  if (o.n_prompt == 0 && o.n_gen == 0) throw InvalidRequest("bench: -p and -n are both 0");
  if (o.repetitions == 0) throw InvalidRequest("bench: -r must be > 0");
  model::ModelOptions mo;
  mo.max_seqs = 1;
  mo.max_batch_tokens = std::max<std::uint32_t>(1, std::min(o.batch, std::max({o.n_prompt, o.depth, 1u})));
  const std::uint32_t needed = std::max(o.n_prompt, o.depth + o.n_gen) + 1;
  if (o.ctx_size != 0 && o.ctx_size < needed) {
    throw InvalidRequest(fmt::format("bench: --ctx-size {} is below the {} tokens the tests need", o.ctx_size, needed));
  }
  mo.context_length = std::max<std::uint32_t>({needed, o.ctx_size, 16});
  Loaded L = load(o.model, o.device, mo);
  model::Model& m = *L.model;
  std::mt19937 rng(1234);
  std::uniform_int_distribution<std::uint32_t> tok(3, m.config().vocab_size - 1);
  model::SamplingParams greedy;
  greedy.temperature = 0;

  // One warm-up of each shape (pipelines, recordings), then the repetitions. With
  // --replay-compare each repetition also generates with every step recorded anew.
  std::vector<double> pp, tg, tg_rerecord, record_ms;
  for (std::uint32_t rep = 0; rep <= o.repetitions; ++rep) {
    if (o.n_prompt > 0) {
      model::Sequence seq(m);
      std::vector<std::uint32_t> prompt(o.n_prompt);
      for (auto& t : prompt) t = tok(rng);
      const auto t0 = Clock::now();
      seq.feed(prompt, greedy);
      if (rep > 0) pp.push_back(o.n_prompt / seconds_since(t0));
    }
    // llama-bench's tg: generation one token per step, from an empty context or after --depth
    // tokens of it (not timed).
    auto generate = [&] {
      model::Sequence seq(m);
      if (o.depth > 0) {
        std::vector<std::uint32_t> context(o.depth);
        for (auto& t : context) t = tok(rng);
        seq.feed(context, greedy);
      }
      std::uint32_t next = tok(rng);
      const auto t0 = Clock::now();
      for (std::uint32_t i = 0; i < o.n_gen; ++i) next = seq.feed(std::span(&next, 1), greedy).ids[0];
      return o.n_gen / seconds_since(t0);
    };
    if (o.n_gen > 0) {
      const double tps = generate();
      if (rep > 0) tg.push_back(tps);
    }
    if (o.n_gen > 0 && o.replay_compare) {
      m.set_replay(false);
      const std::uint64_t n0 = m.recordings();
      const double s0 = m.recording_seconds();
      const double tps = generate();
      m.set_replay(true);
      if (rep > 0) {
        tg_rerecord.push_back(tps);
        record_ms.push_back(1e3 * (m.recording_seconds() - s0) / double(m.recordings() - n0));
      }
    }
  }
  const model::Model::StepCounts counts = m.last_step_counts();  // a decode step, when tg ran
  const std::uint64_t bytes_per_token = m.decode_bytes(o.depth + o.n_gen / 2);
  const double tg_med = tg.empty() ? 0 : median(tg);
  const double pp_med = pp.empty() ? 0 : median(pp);
  const double gbs = tg_med * bytes_per_token / 1e9;
  if (o.json) {
    fmt::print("{{\"model\": \"{}\", \"device\": \"{}\", \"pp\": {}, \"pp_tokens_per_s\": {:.2f}, "
               "\"tg\": {}, \"depth\": {}, \"ctx_size\": {}, \"tg_tokens_per_s\": {:.2f}, "
               "\"bytes_per_token\": {}, \"tg_gb_per_s\": {:.3f}, \"repetitions\": {}, "
               "\"dispatches_per_step\": {}, \"barriers_per_step\": {}, \"dispatches_per_layer\": {:.1f}}}\n",
               o.model, L.device->name(), o.n_prompt, pp_med, o.n_gen, o.depth, m.options().context_length,
               tg_med, bytes_per_token, gbs, o.repetitions, counts.dispatches, counts.barriers,
               double(counts.layer_dispatches) / m.config().n_layers);
  } else {
    fmt::print("| model | device | test | t/s (median of {}) | bytes/token | GB/s |\n", o.repetitions);
    fmt::print("|---|---|---|---|---|---|\n");
    if (o.n_prompt > 0) {
      fmt::print("| {} | {} | pp{} | {:.2f} | | |\n", o.model, L.device->name(), o.n_prompt, pp_med);
    }
    if (o.n_gen > 0) {
      const std::string test = o.depth ? fmt::format("tg{} @ d{} (ctx {})", o.n_gen, o.depth, m.options().context_length)
                                       : fmt::format("tg{}", o.n_gen);
      fmt::print("| {} | {} | {} | {:.2f} | {} | {:.2f} |\n", o.model, L.device->name(), test, tg_med,
                 format_bytes(bytes_per_token), gbs);
    }
    if (!tg_rerecord.empty()) {
      const double re = median(tg_rerecord);
      fmt::print("| {} | {} | tg{}, recorded every step | {:.2f} | {} | {:.2f} |\n", o.model,
                 L.device->name(), o.n_gen, re, format_bytes(bytes_per_token),
                 re * bytes_per_token / 1e9);
      fmt::print("\nreplay: recording one decode step costs {:.3f} ms of host time (median); "
                 "replaying saves {:.1f}% of tg time\n",
                 median(record_ms), 100.0 * (1.0 - re / tg_med));
    }
    if (o.n_gen > 0) {
      const double nl = m.config().n_layers;
      fmt::print("\ndecode step: {} dispatches, {} barriers: {:.1f} dispatches and {:.1f} barriers per "
                 "layer, {} dispatches outside the layers (embedding, head, sampling, readback)\n",
                 counts.dispatches, counts.barriers, double(counts.layer_dispatches) / nl,
                 double(counts.layer_barriers) / nl, counts.dispatches - counts.layer_dispatches);
    }
  }
  return 0;
}

}  // namespace vkllm::cli
