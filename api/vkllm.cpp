// The C API (include/vkllm/vkllm.h; docs/ARCHITECTURE.md "The C API"): handles over the rooms
// below, errors turned into status codes and a message per thread, requests given to the same
// OpenAI request parser as the server's (one place validates every field), the generated text
// made by the same front end. Nothing here throws across the C boundary.
#include "vkllm/vkllm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/frontend/prompt.hpp"
#include "engine/frontend/text_output.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/model/model.hpp"
#include "engine/serving/engine.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "platform/device.hpp"
#include "platform/instance.hpp"
#include "server/openai.hpp"

namespace json = boost::json;
using namespace vkllm;

namespace {

thread_local std::string t_error;

vkllm_status fail(vkllm_status status, std::string message) {
  t_error = std::move(message);
  return status;
}

// Runs `f` (returning vkllm_status), turning every exception into a status and this thread's
// message. The more specific kinds first: QueueFull and the prompt errors are Errors too.
template <class F>
vkllm_status guarded(F&& f) noexcept {
  try {
    t_error.clear();
    return f();
  } catch (const serving::QueueFull& e) {
    return fail(VKLLM_ERROR_QUEUE_FULL, e.what());
  } catch (const server::ApiException& e) {
    const server::ApiError& a = e.error();
    return fail(VKLLM_ERROR_INVALID_ARGUMENT,
                a.param.empty() ? a.message : fmt::format("{} ({})", a.message, a.param));
  } catch (const InvalidRequest& e) {
    return fail(VKLLM_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const InvalidModel& e) {
    return fail(VKLLM_ERROR_INVALID_MODEL, e.what());
  } catch (const Unsupported& e) {
    return fail(VKLLM_ERROR_UNSUPPORTED, e.what());
  } catch (const OutOfMemory& e) {
    return fail(VKLLM_ERROR_OUT_OF_MEMORY, e.what());
  } catch (const DeviceLost& e) {
    return fail(VKLLM_ERROR_DEVICE_LOST, e.what());
  } catch (const DeviceError& e) {
    return fail(VKLLM_ERROR_DEVICE, e.what());
  } catch (const Cancelled& e) {
    return fail(VKLLM_ERROR_CANCELLED, e.what());
  } catch (const Unavailable& e) {
    return fail(VKLLM_ERROR_UNAVAILABLE, e.what());
  } catch (const std::bad_alloc&) {
    return fail(VKLLM_ERROR_OUT_OF_MEMORY, "host memory ran out");
  } catch (const std::exception& e) {
    return fail(VKLLM_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail(VKLLM_ERROR_INTERNAL, "an unknown exception");
  }
}

// The caller's struct of `size` bytes (an older header's may be shorter) over our defaults.
template <class T>
T read_struct(const T* in, const T& defaults) {
  T out = defaults;
  if (in->struct_size == 0 || in->struct_size > sizeof(T)) {
    throw InvalidRequest(fmt::format("struct_size is {}; set it with the *_init function "
                                     "(this library's struct has {} bytes)",
                                     in->struct_size, sizeof(T)));
  }
  std::memcpy(static_cast<void*>(&out), in, in->struct_size);
  out.struct_size = sizeof(T);
  return out;
}

// Our struct into the caller's, as many bytes as it says it has.
template <class T>
void write_struct(T* out, const T& value) {
  if (out->struct_size == 0) throw InvalidRequest("struct_size is 0: set it to sizeof the struct");
  const std::size_t n = std::min(out->struct_size, sizeof(T));
  const std::size_t caller = out->struct_size;
  std::memcpy(static_cast<void*>(out), &value, n);
  out->struct_size = caller;
}

template <std::size_t N>
void copy_text(char (&dst)[N], std::string_view src) {
  const std::size_t n = std::min(N - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

// The text (NUL-terminated) into buf, whose size is *size; *size becomes what it needs.
vkllm_status give_text(std::string_view text, char* buf, std::size_t* size) {
  const std::size_t need = text.size() + 1;
  const std::size_t have = *size;
  *size = need;
  if (!buf || have < need) {
    return fail(VKLLM_ERROR_BUFFER_TOO_SMALL,
                fmt::format("the text needs {} bytes with its NUL; the buffer has {}", need, have));
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return VKLLM_OK;
}

// One Vulkan instance per process, made on first use and kept by every model made from it.
std::shared_ptr<platform::Instance> instance() {
  static std::mutex mu;
  static std::shared_ptr<platform::Instance> inst;
  std::lock_guard lock(mu);
  if (!inst) {
    platform::InstanceOptions io;
    // VKLLM_VALIDATION=1 (or "sync"): the Khronos validation layer, its messages logged as
    // errors (the tests' check).
    if (const char* v = std::getenv("VKLLM_VALIDATION"); v && *v && std::string_view(v) != "0") {
      io.validation = true;
      io.sync_validation = std::string_view(v) == "sync";
      io.on_validation_message = [](platform::MessageSeverity s, std::string_view m) {
        if (s != platform::MessageSeverity::info) log::error("vulkan validation: {}", m);
      };
    }
    inst = std::make_shared<platform::Instance>(platform::Instance::create(io));
  }
  return inst;
}

}  // namespace

// A loaded model and everything it stands on, members in the order they are made (and the
// reverse of the order they go).
struct ModelState {
  std::shared_ptr<platform::Instance> instance;
  std::size_t device_index = 0;
  std::unique_ptr<platform::Device> device;
  std::optional<gguf::Reader> reader;
  std::optional<tok::Tokenizer> tokenizer;
  frontend::ChatSetup chat;
  bool has_template = false;
  // Guards `model` and `device` against a reload after a device loss (engine thread).
  mutable std::mutex mu;
  std::unique_ptr<model::Model> model;
  std::atomic<bool> engine_attached{false};

  ~ModelState() {
    model.reset();
    device.reset();
  }
};

struct vkllm_model {
  std::shared_ptr<ModelState> state;
};

struct vkllm_engine {
  std::shared_ptr<ModelState> model;
  std::unique_ptr<frontend::Preprocessor> pre;
  std::unique_ptr<serving::Engine> engine;
  std::uint32_t default_max_tokens = 256;
};

namespace {

// One request's text state, shared by the submitting thread and the engine thread's callback.
struct RequestState {
  RequestState(const tok::Tokenizer& t, frontend::TextOutputOptions o) : text(t, std::move(o)) {}
  frontend::TextOutput text;  // engine thread only
  vkllm_piece_fn on_piece = nullptr;
  vkllm_done_fn on_done = nullptr;
  void* user = nullptr;
  bool stop_string = false;   // engine thread: a stop string ended it
  std::mutex mu;              // id and cancel_due: the callback may run before submit() returns
  serving::RequestId id = 0;
  bool cancel_due = false;
};

vkllm_finish_reason to_c(serving::FinishReason f) {
  switch (f) {
    case serving::FinishReason::none:
    case serving::FinishReason::stop: return VKLLM_FINISH_STOP;
    case serving::FinishReason::length: return VKLLM_FINISH_LENGTH;
    case serving::FinishReason::cancelled: return VKLLM_FINISH_CANCELLED;
    case serving::FinishReason::error: return VKLLM_FINISH_ERROR;
    case serving::FinishReason::timeout: return VKLLM_FINISH_TIMEOUT;
    case serving::FinishReason::device_lost: return VKLLM_FINISH_DEVICE_LOST;
  }
  return VKLLM_FINISH_ERROR;
}

// The engine thread's handling of one event: text through the front end, a stop string ends
// the request, the caller's callbacks get the pieces and the end.
void on_event(RequestState& st, serving::Engine& engine, const serving::TokenEvent& ev) {
  std::string content, reasoning;
  std::vector<std::uint32_t> tokens;
  std::vector<float> logprobs;
  // The last token of a stop is an end-of-generation or stop token: no text.
  const std::size_t shown =
      ev.finish == serving::FinishReason::stop && !ev.tokens.empty() ? ev.tokens.size() - 1 : ev.tokens.size();
  for (std::size_t i = 0; i < shown && !st.stop_string; ++i) {
    const frontend::TextDelta d = st.text.push(ev.tokens[i]);
    content += d.content;
    reasoning += d.reasoning;
    tokens.push_back(ev.tokens[i]);
    if (i < ev.logprobs.size()) logprobs.push_back(ev.logprobs[i]);
    if (st.text.stopped()) {
      st.stop_string = true;
      std::lock_guard lock(st.mu);
      if (st.id) {
        engine.cancel(st.id);
      } else {
        st.cancel_due = true;
      }
    }
  }
  const bool last = ev.finish != serving::FinishReason::none;
  if (last) {
    const frontend::TextDelta d = st.text.finish();
    content += d.content;
    reasoning += d.reasoning;
  }
  if (st.on_piece && (!content.empty() || !reasoning.empty() || !tokens.empty())) {
    vkllm_piece p{};
    p.text = content.c_str();
    p.text_len = content.size();
    p.reasoning = reasoning.c_str();
    p.reasoning_len = reasoning.size();
    p.tokens = tokens.data();
    p.logprobs = logprobs.size() == tokens.size() && !logprobs.empty() ? logprobs.data() : nullptr;
    p.n_tokens = tokens.size();
    st.on_piece(&p, st.user);
  }
  if (last && st.on_done) {
    const serving::FinishReason reason = st.stop_string ? serving::FinishReason::stop : ev.finish;
    vkllm_result r{};
    r.finish_reason = to_c(reason);
    r.finish_reason_name = serving::to_string(reason);
    r.error = st.stop_string ? "" : ev.error.c_str();
    r.prompt_tokens = ev.prompt_tokens;
    r.completion_tokens = ev.completion_tokens;
    r.cached_tokens = ev.cached_tokens;
    st.on_done(&r, st.user);
  }
}

// The C request as an OpenAI body, for server::parse_request: every field is checked where the
// server checks it, with the same messages.
json::object request_body(const vkllm_request& rq, server::Endpoint& endpoint) {
  const int prompts = (rq.prompt != nullptr) + (rq.messages != nullptr || rq.n_messages != 0) +
                      (rq.messages_json != nullptr) + (rq.prompt_tokens != nullptr || rq.n_prompt_tokens != 0);
  if (prompts != 1) {
    throw InvalidRequest("give exactly one of prompt, messages, messages_json and prompt_tokens");
  }
  json::object body;
  if (rq.prompt) {
    endpoint = server::Endpoint::completion;
    body["prompt"] = rq.prompt;
  } else if (rq.prompt_tokens || rq.n_prompt_tokens) {
    if (!rq.prompt_tokens) throw InvalidRequest("n_prompt_tokens is set but prompt_tokens is NULL");
    endpoint = server::Endpoint::completion;
    json::array ids;
    for (std::size_t i = 0; i < rq.n_prompt_tokens; ++i) ids.push_back(rq.prompt_tokens[i]);
    body["prompt"] = std::move(ids);
  } else {
    endpoint = server::Endpoint::chat;
    if (rq.messages_json) {
      json::error_code ec;
      json::value v = json::parse(rq.messages_json, ec);
      if (ec) throw InvalidRequest(fmt::format("messages_json is not JSON: {}", ec.message()));
      body["messages"] = std::move(v);
    } else {
      if (!rq.messages) throw InvalidRequest("n_messages is set but messages is NULL");
      json::array msgs;
      for (std::size_t i = 0; i < rq.n_messages; ++i) {
        const vkllm_chat_message& m = rq.messages[i];
        if (!m.role) throw InvalidRequest(fmt::format("messages[{}].role is NULL", i));
        json::object o;
        o["role"] = m.role;
        if (m.content) o["content"] = m.content;
        msgs.push_back(std::move(o));
      }
      body["messages"] = std::move(msgs);
    }
    if (rq.tools_json) {
      json::error_code ec;
      json::value v = json::parse(rq.tools_json, ec);
      if (ec) throw InvalidRequest(fmt::format("tools_json is not JSON: {}", ec.message()));
      body["tools"] = std::move(v);
    }
  }
  body["temperature"] = rq.temperature;
  body["top_k"] = rq.top_k;
  body["top_p"] = rq.top_p;
  body["min_p"] = rq.min_p;
  body["repetition_penalty"] = rq.repetition_penalty;
  body["presence_penalty"] = rq.presence_penalty;
  body["frequency_penalty"] = rq.frequency_penalty;
  if (rq.has_seed) body["seed"] = rq.seed;
  if (rq.max_tokens) body["max_tokens"] = rq.max_tokens;
  if (rq.n_stop) {
    if (!rq.stop) throw InvalidRequest("n_stop is set but stop is NULL");
    json::array stops;
    for (std::size_t i = 0; i < rq.n_stop; ++i) {
      if (!rq.stop[i]) throw InvalidRequest(fmt::format("stop[{}] is NULL", i));
      stops.push_back(json::string(rq.stop[i]));
    }
    body["stop"] = std::move(stops);
  }
  if (rq.ignore_eos) body["ignore_eos"] = true;
  if (rq.logprobs) body["logprobs"] = endpoint == server::Endpoint::chat ? json::value(true) : json::value(0);
  if (rq.json_schema) {
    json::error_code ec;
    json::value v = json::parse(rq.json_schema, ec);
    if (ec) throw InvalidRequest(fmt::format("json_schema is not JSON: {}", ec.message()));
    body["json_schema"] = std::move(v);
  }
  if (rq.json_object) body["response_format"] = json::object{{"type", "json_object"}};
  if (rq.grammar) body["grammar"] = rq.grammar;
  return body;
}

}  // namespace

extern "C" {

const char* vkllm_last_error(void) { return t_error.c_str(); }

const char* vkllm_status_string(vkllm_status status) {
  switch (status) {
    case VKLLM_OK: return "VKLLM_OK";
    case VKLLM_ERROR_INVALID_ARGUMENT: return "VKLLM_ERROR_INVALID_ARGUMENT";
    case VKLLM_ERROR_INVALID_MODEL: return "VKLLM_ERROR_INVALID_MODEL";
    case VKLLM_ERROR_UNSUPPORTED: return "VKLLM_ERROR_UNSUPPORTED";
    case VKLLM_ERROR_OUT_OF_MEMORY: return "VKLLM_ERROR_OUT_OF_MEMORY";
    case VKLLM_ERROR_DEVICE: return "VKLLM_ERROR_DEVICE";
    case VKLLM_ERROR_DEVICE_LOST: return "VKLLM_ERROR_DEVICE_LOST";
    case VKLLM_ERROR_QUEUE_FULL: return "VKLLM_ERROR_QUEUE_FULL";
    case VKLLM_ERROR_CANCELLED: return "VKLLM_ERROR_CANCELLED";
    case VKLLM_ERROR_UNAVAILABLE: return "VKLLM_ERROR_UNAVAILABLE";
    case VKLLM_ERROR_BUFFER_TOO_SMALL: return "VKLLM_ERROR_BUFFER_TOO_SMALL";
    case VKLLM_ERROR_INTERNAL: return "VKLLM_ERROR_INTERNAL";
  }
  return "VKLLM_ERROR_UNKNOWN";
}

const char* vkllm_version(void) { return VKLLM_VERSION_STRING; }

void vkllm_set_log(vkllm_log_level level, vkllm_log_fn fn, void* user) {
  log::set_level(static_cast<log::Level>(std::clamp<int>(level, VKLLM_LOG_DEBUG, VKLLM_LOG_ERROR)));
  if (!fn) {
    log::set_sink(nullptr);
    return;
  }
  log::set_sink([fn, user](log::Level l, std::string_view line) {
    const std::string s(line);
    fn(static_cast<vkllm_log_level>(l), s.c_str(), user);
  });
}

vkllm_status vkllm_device_count(size_t* count) {
  return guarded([&] {
    if (!count) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "count is NULL");
    *count = instance()->devices().size();
    return VKLLM_OK;
  });
}

vkllm_status vkllm_device_get(size_t index, vkllm_device_info* info) {
  return guarded([&] {
    if (!info) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "info is NULL");
    const auto inst = instance();
    const auto& devices = inst->devices();
    if (index >= devices.size()) {
      return fail(VKLLM_ERROR_INVALID_ARGUMENT,
                  fmt::format("device {} does not exist ({} devices)", index, devices.size()));
    }
    const platform::DeviceCaps& c = devices[index];
    vkllm_device_info d{};
    d.struct_size = sizeof d;
    copy_text(d.name, c.props.name);
    copy_text(d.driver, fmt::format("{} {}", c.props.driver_name, c.driver_version_string));
    copy_text(d.type, platform::to_string(c.props.type));
    d.vendor_id = c.props.vendor_id;
    d.device_id = c.props.device_id;
    d.memory_bytes = c.device_local_bytes;
    d.subgroup_size = c.subgroup_size;
    d.fp16 = c.fp16_math && c.fp16_storage;
    d.integer_dot = c.integer_dot;
    d.cooperative_matrix = c.coopmat;
    d.usable = c.unusable_reason.empty();
    copy_text(d.unusable_reason, c.unusable_reason);
    try {
      d.is_default = inst->choose_device() == index;
    } catch (const Error&) {
      d.is_default = 0;  // no usable device at all
    }
    write_struct(info, d);
    return VKLLM_OK;
  });
}

void vkllm_model_options_init(vkllm_model_options* o) {
  if (!o) return;
  *o = vkllm_model_options{};
  o->struct_size = sizeof *o;
  const model::ModelOptions d;
  o->device = -1;
  o->context_length = d.context_length;
  o->max_seqs = d.max_seqs;
  o->max_batch_tokens = d.max_batch_tokens;
  o->block_size = d.block_size;
  o->gpu_memory_fraction = d.gpu_memory_fraction;
}

vkllm_status vkllm_model_load(const char* path, const vkllm_model_options* options, vkllm_model** out) {
  return guarded([&] {
    if (!path || !out) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "path and model must not be NULL");
    *out = nullptr;
    vkllm_model_options defaults;
    vkllm_model_options_init(&defaults);
    const vkllm_model_options o = options ? read_struct(options, defaults) : defaults;
    if (!(o.gpu_memory_fraction > 0.f && o.gpu_memory_fraction <= 1.f)) {
      return fail(VKLLM_ERROR_INVALID_ARGUMENT, "gpu_memory_fraction must be in (0, 1]");
    }
    auto st = std::make_shared<ModelState>();
    st->instance = instance();
    st->device_index = st->instance->choose_device(
        o.device >= 0 ? std::optional<std::size_t>(static_cast<std::size_t>(o.device)) : std::nullopt);
    st->device = platform::Device::open(*st->instance, st->device_index);
    st->reader.emplace(gguf::Reader::open(path));
    st->tokenizer.emplace(tok::Tokenizer::from_gguf(*st->reader));
    std::optional<std::string> source;
    if (o.chat_template) source = std::string(o.chat_template);
    st->chat = frontend::chat_setup(*st->reader, *st->tokenizer, source, &st->has_template);
    model::ModelOptions mo;
    mo.max_batch_tokens = o.max_batch_tokens;
    mo.max_seqs = o.max_seqs;
    mo.block_size = o.block_size;
    mo.context_length = o.context_length;
    mo.gpu_memory_fraction = o.gpu_memory_fraction;
    mo.deterministic = o.deterministic != 0;
    mo.embeddings = o.embeddings != 0;
    bool stop = false;
    if (o.progress) {
      mo.progress = [&](float f) {
        if (stop) return;
        // The call with 1 comes once the model is loaded: too late to stop, its answer is ignored.
        if (o.progress(f, o.progress_user) != 0 && f < 1.f) stop = true;
      };
      mo.should_stop = [&] { return stop; };
    }
    st->model = model::Model::load(*st->device, *st->reader, mo);
    if (stop) throw Cancelled("the progress callback stopped the load");
    *out = new vkllm_model{std::move(st)};
    return VKLLM_OK;
  });
}

void vkllm_model_free(vkllm_model* model) { delete model; }

vkllm_status vkllm_model_get_info(const vkllm_model* model, vkllm_model_info* info) {
  return guarded([&] {
    if (!model || !info) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "model and info must not be NULL");
    const ModelState& st = *model->state;
    std::lock_guard lock(st.mu);
    if (!st.model) return fail(VKLLM_ERROR_DEVICE_LOST, "the model is not loaded (a reload after a device loss failed)");
    const model::Model& m = *st.model;
    const model::ModelConfig& c = m.config();
    vkllm_model_info i{};
    i.struct_size = sizeof i;
    copy_text(i.architecture, model::to_string(c.arch));
    copy_text(i.name, c.name);
    i.n_layers = c.n_layers;
    i.d_model = c.d_model;
    i.n_heads = c.n_heads;
    i.n_kv_heads = c.n_kv_heads;
    i.head_dim = c.head_dim;
    i.vocab_size = c.vocab_size;
    i.trained_context = c.context_length;
    i.context_length = m.options().context_length;
    i.max_seqs = m.options().max_seqs;
    i.max_batch_tokens = m.options().max_batch_tokens;
    i.block_size = m.options().block_size;
    i.kv_blocks = m.num_blocks() - 1;  // block 0 is the padding tokens' sink
    i.weight_bytes = m.weight_bytes();
    i.kv_bytes = m.kv_bytes();
    i.workspace_bytes = m.workspace_bytes();
    copy_text(i.device, st.device->name());
    i.generates = !c.encoder;
    i.has_chat_template = st.has_template;
    write_struct(info, i);
    return VKLLM_OK;
  });
}

vkllm_status vkllm_model_meta(const vkllm_model* model, const char* key, char* buf, size_t* size) {
  return guarded([&] {
    if (!model || !key || !size) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "model, key and size must not be NULL");
    const gguf::Value* v = model->state->reader->find(key);
    if (!v) return fail(VKLLM_ERROR_INVALID_ARGUMENT, fmt::format("the model has no metadata key '{}'", key));
    if (const std::string* s = v->to_string()) return give_text(*s, buf, size);
    return give_text(v->format(), buf, size);
  });
}

vkllm_status vkllm_tokenize(const vkllm_model* model, const char* text, size_t len, int add_special,
                            int parse_special, uint32_t* tokens, size_t* n) {
  return guarded([&] {
    if (!model || (!text && len) || !n) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "model, text and n must not be NULL");
    const auto ids = model->state->tokenizer->encode(std::string_view(text ? text : "", len),
                                                     tok::EncodeOptions{add_special != 0, parse_special != 0});
    const std::size_t have = *n;
    *n = ids.size();
    if (!tokens || have < ids.size()) {
      return fail(VKLLM_ERROR_BUFFER_TOO_SMALL,
                  fmt::format("the text is {} tokens; the array holds {}", ids.size(), have));
    }
    for (std::size_t i = 0; i < ids.size(); ++i) tokens[i] = static_cast<std::uint32_t>(ids[i]);
    return VKLLM_OK;
  });
}

vkllm_status vkllm_detokenize(const vkllm_model* model, const uint32_t* tokens, size_t n, int show_special,
                              char* buf, size_t* size) {
  return guarded([&] {
    if (!model || (!tokens && n) || !size) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "model, tokens and size must not be NULL");
    const tok::Tokenizer& t = *model->state->tokenizer;
    std::vector<tok::TokenId> ids(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (tokens[i] >= t.n_tokens()) {
        return fail(VKLLM_ERROR_INVALID_ARGUMENT,
                    fmt::format("tokens[{}] = {} is not a token id (the vocabulary has {})", i, tokens[i], t.n_tokens()));
      }
      ids[i] = static_cast<tok::TokenId>(tokens[i]);
    }
    tok::DecodeOptions d;
    d.show_special = show_special != 0;
    return give_text(t.decode(ids, d), buf, size);
  });
}

void vkllm_engine_options_init(vkllm_engine_options* o) {
  if (!o) return;
  *o = vkllm_engine_options{};
  o->struct_size = sizeof *o;
  const serving::EngineConfig d;
  o->max_queue = d.max_queue;
  o->prefix_caching = d.prefix_caching;
  o->overlap = d.overlap;
  o->late_masks = -1;
  o->default_max_tokens = 256;
}

vkllm_status vkllm_engine_create(vkllm_model* model, const vkllm_engine_options* options, vkllm_engine** out) {
  return guarded([&] {
    if (!model || !out) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "model and engine must not be NULL");
    *out = nullptr;
    vkllm_engine_options defaults;
    vkllm_engine_options_init(&defaults);
    const vkllm_engine_options o = options ? read_struct(options, defaults) : defaults;
    std::shared_ptr<ModelState> st = model->state;
    if (st->engine_attached.exchange(true)) {
      return fail(VKLLM_ERROR_INVALID_ARGUMENT,
                  "the model already has an engine (its KV cache is the engine's): free that one first");
    }
    struct Detach {
      ModelState* st;
      ~Detach() { if (st) st->engine_attached = false; }
    } detach{st.get()};
    std::lock_guard lock(st->mu);
    if (!st->model) return fail(VKLLM_ERROR_DEVICE_LOST, "the model is not loaded (a reload after a device loss failed)");
    auto e = std::make_unique<vkllm_engine>();
    e->model = st;
    e->default_max_tokens = o.default_max_tokens ? o.default_max_tokens : 256;
    serving::EngineConfig ec;
    ec.max_num_seqs = st->model->options().max_seqs;
    ec.max_num_batched_tokens = st->model->options().max_batch_tokens;
    ec.max_queue = o.max_queue;
    ec.prefix_caching = o.prefix_caching != 0;
    ec.overlap = o.overlap != 0;
    if (o.late_masks >= 0) ec.late_masks = o.late_masks != 0;
    // After a device loss, on the engine thread (as `vkllm serve` does): the device opened
    // again and the weights reloaded with the same plan.
    ModelState* raw = st.get();
    ec.reload = [raw]() -> model::Model& {
      std::lock_guard lock(raw->mu);
      const model::ModelOptions again = raw->model->options();
      raw->model.reset();
      raw->device.reset();
      raw->device = platform::Device::open(*raw->instance, raw->device_index);
      raw->model = model::Model::load(*raw->device, *raw->reader, again);
      return *raw->model;
    };
    e->engine = std::make_unique<serving::Engine>(*st->model, *st->tokenizer, ec);
    e->pre = std::make_unique<frontend::Preprocessor>(*st->tokenizer, st->chat, e->engine->max_model_len());
    detach.st = nullptr;
    *out = e.release();
    return VKLLM_OK;
  });
}

void vkllm_engine_free(vkllm_engine* engine) {
  if (!engine) return;
  try {
    engine->engine->shutdown();
  } catch (const std::exception& e) {
    log::error("engine shutdown: {}", e.what());
  }
  engine->engine.reset();
  engine->model->engine_attached = false;
  delete engine;
}

void vkllm_request_init(vkllm_request* r) {
  if (!r) return;
  *r = vkllm_request{};
  r->struct_size = sizeof *r;
  const sample::SamplingParams d;
  r->temperature = d.temperature;
  r->top_k = d.top_k;
  r->top_p = d.top_p;
  r->min_p = d.min_p;
  r->repetition_penalty = d.repetition_penalty;
  r->presence_penalty = d.presence_penalty;
  r->frequency_penalty = d.frequency_penalty;
}

vkllm_status vkllm_submit(vkllm_engine* engine, const vkllm_request* request, uint64_t* id) {
  return guarded([&] {
    if (!engine || !request) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "engine and request must not be NULL");
    vkllm_request defaults;
    vkllm_request_init(&defaults);
    const vkllm_request rq = read_struct(request, defaults);
    const tok::Tokenizer& tokenizer = *engine->model->tokenizer;
    const frontend::Preprocessor& pre = *engine->pre;

    server::Endpoint endpoint = server::Endpoint::completion;
    const std::string body = json::serialize(request_body(rq, endpoint));
    server::RequestLimits limits;
    limits.vocab_size = static_cast<std::uint32_t>(tokenizer.n_tokens());
    limits.max_stop_strings = 16;
    server::ParsedRequest pr = server::parse_request(body, endpoint, limits);
    server::apply_tool_choice(pr, pre.tool_format());
    const frontend::Prompt prompt = pre.prepare(pr.prompt);
    serving::RequestParams params = std::move(pr.params);
    params.max_tokens = pre.max_tokens(prompt.tokens.size(), pr.max_tokens, engine->default_max_tokens);
    params.timeout = std::chrono::milliseconds(rq.timeout_ms);

    frontend::TextOutputOptions to;
    to.stop = pr.stop;
    to.reasoning = endpoint == server::Endpoint::chat && engine->model->chat.reasoning;
    to.starts_in_reasoning = to.reasoning && prompt.starts_in_reasoning;
    auto st = std::make_shared<RequestState>(tokenizer, std::move(to));
    st->on_piece = rq.on_piece;
    st->on_done = rq.on_done;
    st->user = rq.user;
    serving::Engine& eng = *engine->engine;
    const serving::RequestId rid = eng.submit(
        prompt.tokens, std::move(params),
        [st, &eng](const serving::TokenEvent& ev) { on_event(*st, eng, ev); });
    {
      std::lock_guard lock(st->mu);
      st->id = rid;
      if (st->cancel_due) eng.cancel(rid);
    }
    if (id) *id = rid;
    return VKLLM_OK;
  });
}

vkllm_status vkllm_cancel(vkllm_engine* engine, uint64_t id) {
  return guarded([&] {
    if (!engine) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "engine is NULL");
    engine->engine->cancel(id);
    return VKLLM_OK;
  });
}

vkllm_status vkllm_engine_get_stats(const vkllm_engine* engine, vkllm_engine_stats* stats) {
  return guarded([&] {
    if (!engine || !stats) return fail(VKLLM_ERROR_INVALID_ARGUMENT, "engine and stats must not be NULL");
    const serving::EngineStats s = engine->engine->stats();
    vkllm_engine_stats o{};
    o.struct_size = sizeof o;
    o.running = static_cast<std::uint32_t>(s.running);
    o.waiting = static_cast<std::uint32_t>(s.waiting);
    o.kv_usage = s.kv_usage;
    o.kv_blocks_total = s.kv_blocks_total;
    o.kv_blocks_free = s.kv_blocks_free;
    o.prompt_tokens = s.prompt_tokens;
    o.cached_prompt_tokens = s.cached_prompt_tokens;
    o.generation_tokens = s.generation_tokens;
    o.preemptions = s.preemptions;
    o.steps = s.steps;
    o.device_losses = s.device_losses;
    o.healthy = !engine->engine->failed();
    write_struct(stats, o);
    return VKLLM_OK;
  });
}

}  // extern "C"
