/* vkllm: LLM inference on any Vulkan GPU, as a C library (libvkllm.so / libvkllm.a).
 *
 * A stable C ABI over the engine that `vkllm serve` runs: no C++ and no Vulkan types cross it.
 * The life of an app (docs/ARCHITECTURE.md "The C API"):
 *
 *   vkllm_model_options mo;  vkllm_model_options_init(&mo);
 *   vkllm_model* model;      vkllm_model_load("model.gguf", &mo, &model);
 *   vkllm_engine_options eo; vkllm_engine_options_init(&eo);
 *   vkllm_engine* engine;    vkllm_engine_create(model, &eo, &engine);
 *   vkllm_request rq;        vkllm_request_init(&rq);
 *   rq.prompt = "Once upon a time"; rq.on_piece = print_piece; rq.on_done = wake_me;
 *   uint64_t id;             vkllm_submit(engine, &rq, &id);
 *   ... (vkllm_cancel(engine, id) from any thread)
 *   vkllm_engine_free(engine); vkllm_model_free(model);
 *
 * Errors: every function that can fail returns a vkllm_status; the message naming the cause is
 * then vkllm_last_error() on the same thread (valid until that thread's next vkllm call).
 *
 * Threads: every function is thread-safe. Any thread may submit and cancel. A request's
 * callbacks come from the engine's own thread, in order, on_done exactly once and last; they
 * must return quickly (copy the text, signal a condition variable, post to a UI loop): while
 * one runs, no request advances. A callback may call vkllm_cancel and vkllm_submit, never
 * vkllm_engine_free.
 *
 * Structs: each struct the caller passes starts with struct_size, so that a program built
 * against an older header keeps working with a newer library: options and requests get it from
 * their *_init function (call it before setting fields; fields an older caller does not know
 * keep their defaults), and the caller sets it to sizeof(...) in the structs the library fills
 * (device, model info, stats), of which the library writes only that many bytes.
 */
#ifndef VKLLM_VKLLM_H
#define VKLLM_VKLLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VKLLM_API __attribute__((visibility("default")))
#else
#define VKLLM_API
#endif

/* The ABI version: the SONAME's number (libvkllm.so.0). */
#define VKLLM_ABI_VERSION 0

typedef enum vkllm_status {
  VKLLM_OK = 0,
  VKLLM_ERROR_INVALID_ARGUMENT = 1, /* a bad argument or request (the message names it) */
  VKLLM_ERROR_INVALID_MODEL = 2,    /* a malformed, hostile or inconsistent model file */
  VKLLM_ERROR_UNSUPPORTED = 3,      /* valid input this build or device does not handle */
  VKLLM_ERROR_OUT_OF_MEMORY = 4,    /* host or device memory ran out, or the plan does not fit */
  VKLLM_ERROR_DEVICE = 5,           /* no usable device, or the driver failed */
  VKLLM_ERROR_DEVICE_LOST = 6,      /* the device was lost (the engine recovers: retry later) */
  VKLLM_ERROR_QUEUE_FULL = 7,       /* too many requests waiting (max_queue): retry later */
  VKLLM_ERROR_CANCELLED = 8,        /* the caller stopped it (a progress callback said so) */
  VKLLM_ERROR_UNAVAILABLE = 9,      /* not serving now (shutting down): retry later */
  VKLLM_ERROR_BUFFER_TOO_SMALL = 10,/* the output did not fit; the size it needs was written */
  VKLLM_ERROR_INTERNAL = 11         /* a bug: please report the message */
} vkllm_status;

/* The last error's message on this thread ("" after a success). */
VKLLM_API const char* vkllm_last_error(void);
/* The status' name ("VKLLM_ERROR_QUEUE_FULL"). */
VKLLM_API const char* vkllm_status_string(vkllm_status status);
/* "0.1.0 (commit ...)" */
VKLLM_API const char* vkllm_version(void);

/* Log lines of the library (model plans, warnings). Default: stderr at level info. */
typedef enum vkllm_log_level {
  VKLLM_LOG_DEBUG = 0,
  VKLLM_LOG_INFO = 1,
  VKLLM_LOG_WARN = 2,
  VKLLM_LOG_ERROR = 3
} vkllm_log_level;
/* `fn` gets each line at `level` or above (NULL: back to stderr); it may come from any thread.
 * The line is NUL-terminated and valid only during the call. */
typedef void (*vkllm_log_fn)(vkllm_log_level level, const char* line, void* user);
VKLLM_API void vkllm_set_log(vkllm_log_level level, vkllm_log_fn fn, void* user);

/* ---- Devices ---------------------------------------------------------------------------- */

typedef struct vkllm_device_info {
  size_t struct_size;        /* the caller sets sizeof(vkllm_device_info) */
  char name[256];
  char driver[256];          /* driver name and version */
  char type[16];             /* "discrete GPU", "integrated GPU", "virtual GPU", "CPU", "other" */
  uint32_t vendor_id, device_id;
  uint64_t memory_bytes;     /* the largest device-local heap (its budget when known) */
  uint32_t subgroup_size;
  int fp16;                  /* 16-bit float arithmetic and storage */
  int integer_dot;           /* integer dot product instructions */
  int cooperative_matrix;    /* a usable f16 cooperative-matrix shape (matrix cores) */
  int usable;                /* 0: vkllm cannot run on it (see `unusable_reason`) */
  char unusable_reason[256];
  int is_default;            /* the device a model loads on when none is named */
} vkllm_device_info;

/* Enumerates the Vulkan devices (once per process; later calls return the same list). */
VKLLM_API vkllm_status vkllm_device_count(size_t* count);
VKLLM_API vkllm_status vkllm_device_get(size_t index, vkllm_device_info* info);

/* ---- Models ----------------------------------------------------------------------------- */

typedef struct vkllm_model vkllm_model;

/* Called during the load with the fraction done (0..1); return nonzero to stop the load, which
 * then fails with VKLLM_ERROR_CANCELLED. The last call, with 1, comes once the model is loaded:
 * its return value is ignored. Called on the loading thread. */
typedef int (*vkllm_progress_fn)(float progress, void* user);

typedef struct vkllm_model_options {
  size_t struct_size;
  int device;                  /* index into the device list; -1: VKLLM_DEVICE, else the best */
  uint32_t context_length;     /* per request; 0: min(the model's, 4096) */
  uint32_t max_seqs;           /* sequences per step (concurrent requests): 16 */
  uint32_t max_batch_tokens;   /* tokens per step (prompt chunk + decodes): 512 */
  uint32_t block_size;         /* tokens per KV block: 16 */
  float gpu_memory_fraction;   /* of the device's memory, for the plan: 0.9 */
  int deterministic;           /* batch-invariant kernels: a request's output alone == batched */
  int embeddings;              /* read back hidden states (embedding requests) */
  const char* chat_template;   /* Jinja source overriding the model's (NULL: the model's, or ChatML) */
  vkllm_progress_fn progress;
  void* progress_user;
} vkllm_model_options;

VKLLM_API void vkllm_model_options_init(vkllm_model_options* options);
/* Loads a GGUF file onto a device and plans its memory (weights, KV cache, workspace). */
VKLLM_API vkllm_status vkllm_model_load(const char* path, const vkllm_model_options* options,
                                        vkllm_model** model);
/* Frees the caller's handle; the weights go once no engine uses them either. NULL is a no-op. */
VKLLM_API void vkllm_model_free(vkllm_model* model);

typedef struct vkllm_model_info {
  size_t struct_size;          /* the caller sets sizeof(vkllm_model_info) */
  char architecture[32];       /* "llama", "qwen2", ... */
  char name[256];              /* general.name */
  uint32_t n_layers, d_model, n_heads, n_kv_heads, head_dim, vocab_size;
  uint32_t trained_context;    /* the model's own context length */
  /* The memory plan. */
  uint32_t context_length;     /* per request */
  uint32_t max_seqs, max_batch_tokens, block_size;
  uint32_t kv_blocks;          /* usable KV blocks (block_size tokens each) */
  uint64_t weight_bytes, kv_bytes, workspace_bytes;
  char device[256];            /* the device's name */
  int generates;               /* 0: an encoder (embeddings only) */
  int has_chat_template;       /* the file has one (else ChatML is used) */
} vkllm_model_info;
VKLLM_API vkllm_status vkllm_model_get_info(const vkllm_model* model, vkllm_model_info* info);

/* A GGUF metadata value as text (strings as they are, numbers and booleans printed, arrays as
 * "[n items]"), NUL-terminated into buf. *size in: buf's bytes; out: bytes the text needs
 * with its NUL. VKLLM_ERROR_BUFFER_TOO_SMALL when it did not fit; INVALID_ARGUMENT: no such key. */
VKLLM_API vkllm_status vkllm_model_meta(const vkllm_model* model, const char* key, char* buf,
                                        size_t* size);

/* Text -> token ids. add_special: BOS/EOS as the model adds them; parse_special: control-token
 * text such as "<|eot_id|>" becomes its token (off for user text). *n in: tokens' capacity; out:
 * the number of ids (VKLLM_ERROR_BUFFER_TOO_SMALL when more than the capacity). */
VKLLM_API vkllm_status vkllm_tokenize(const vkllm_model* model, const char* text, size_t len,
                                      int add_special, int parse_special, uint32_t* tokens,
                                      size_t* n);
/* Token ids -> UTF-8 text (NUL-terminated). show_special: control tokens as their text.
 * *size in: buf's bytes; out: bytes needed with the NUL. */
VKLLM_API vkllm_status vkllm_detokenize(const vkllm_model* model, const uint32_t* tokens,
                                        size_t n, int show_special, char* buf, size_t* size);

/* ---- Engines ---------------------------------------------------------------------------- */

typedef struct vkllm_engine vkllm_engine;

typedef struct vkllm_engine_options {
  size_t struct_size;
  uint32_t max_queue;          /* requests waiting for a first step; more: QUEUE_FULL (256) */
  int prefix_caching;          /* share computed prompt blocks between requests (1) */
  int overlap;                 /* plan step t+1 while the device runs step t (1) */
  int late_masks;              /* constrained requests overlapped: -1 auto, 0 off, 1 on */
  uint32_t default_max_tokens; /* a request's max_tokens when it gives 0 (256) */
} vkllm_engine_options;

VKLLM_API void vkllm_engine_options_init(vkllm_engine_options* options);
/* Starts the engine's thread over a loaded model (one engine per model at a time). */
VKLLM_API vkllm_status vkllm_engine_create(vkllm_model* model, const vkllm_engine_options* options,
                                           vkllm_engine** engine);
/* Stops accepting, ends every request (on_done with VKLLM_FINISH_CANCELLED), joins the thread.
 * NULL is a no-op. Not from a callback. */
VKLLM_API void vkllm_engine_free(vkllm_engine* engine);

typedef enum vkllm_finish_reason {
  VKLLM_FINISH_STOP = 0,        /* an end-of-generation token or a stop string */
  VKLLM_FINISH_LENGTH = 1,      /* max_tokens, or the context is full */
  VKLLM_FINISH_CANCELLED = 2,   /* vkllm_cancel or vkllm_engine_free */
  VKLLM_FINISH_ERROR = 3,       /* see vkllm_result.error */
  VKLLM_FINISH_TIMEOUT = 4,     /* the request's timeout_ms passed */
  VKLLM_FINISH_DEVICE_LOST = 5  /* the device was lost under it (a retry may succeed) */
} vkllm_finish_reason;

/* Text generated since the last piece. Pointers are valid only during the callback. */
typedef struct vkllm_piece {
  const char* text;            /* the answer's new text (UTF-8, never a partial character) */
  size_t text_len;
  const char* reasoning;       /* a reasoning model's thinking (<think>...</think>) */
  size_t reasoning_len;
  const uint32_t* tokens;      /* the tokens generated since the last piece */
  const float* logprobs;       /* their log probabilities when the request asked (else NULL) */
  size_t n_tokens;
} vkllm_piece;

typedef struct vkllm_result {
  vkllm_finish_reason finish_reason;
  const char* finish_reason_name;  /* "stop", "length", "cancelled", ... */
  const char* error;               /* why, for ERROR, TIMEOUT, DEVICE_LOST ("" otherwise) */
  uint32_t prompt_tokens, completion_tokens;
  uint32_t cached_tokens;          /* prompt tokens taken from the prefix cache */
} vkllm_result;

typedef void (*vkllm_piece_fn)(const vkllm_piece* piece, void* user);
typedef void (*vkllm_done_fn)(const vkllm_result* result, void* user);

typedef struct vkllm_chat_message {
  const char* role;     /* "system", "user", "assistant", "tool" */
  const char* content;
} vkllm_chat_message;

typedef struct vkllm_request {
  size_t struct_size;
  /* The prompt: exactly one of these. */
  const char* prompt;                   /* text (BOS as the model adds it) */
  const vkllm_chat_message* messages;   /* chat, rendered through the model's template */
  size_t n_messages;
  const char* messages_json;            /* chat as an OpenAI messages array (tool calls, parts) */
  const uint32_t* prompt_tokens;        /* token ids as they are */
  size_t n_prompt_tokens;
  const char* tools_json;               /* chat: an OpenAI tools array for the template, or NULL */
  /* Sampling (llama.cpp's defaults). temperature 0: greedy. */
  float temperature;                    /* 0.8 */
  uint32_t top_k;                       /* 40; 0: off */
  float top_p;                          /* 0.95 */
  float min_p;                          /* 0.05 */
  float repetition_penalty;             /* 1: off */
  float presence_penalty, frequency_penalty;  /* 0: off */
  uint64_t seed;                        /* with has_seed; else random */
  int has_seed;
  uint32_t max_tokens;                  /* 0: the engine's default_max_tokens, within the context */
  const char* const* stop;              /* stop strings (never part of the text) */
  size_t n_stop;
  int ignore_eos;
  int logprobs;                         /* each token's log probability in the pieces */
  uint32_t timeout_ms;                  /* 0: none */
  /* Structured output (one at most). */
  const char* json_schema;              /* a JSON Schema the output must validate against */
  int json_object;                      /* any JSON object */
  const char* grammar;                  /* GBNF */
  /* Callbacks (engine thread). */
  vkllm_piece_fn on_piece;
  vkllm_done_fn on_done;
  void* user;
} vkllm_request;

VKLLM_API void vkllm_request_init(vkllm_request* request);
/* Queues a request; *id names it for vkllm_cancel. Everything it points to may be freed when
 * this returns. On an error no callback is called. */
VKLLM_API vkllm_status vkllm_submit(vkllm_engine* engine, const vkllm_request* request,
                                    uint64_t* id);
/* Ends a request in any state (on_done says CANCELLED unless it had already finished). An
 * unknown or finished id is a no-op. */
VKLLM_API vkllm_status vkllm_cancel(vkllm_engine* engine, uint64_t id);

typedef struct vkllm_engine_stats {
  size_t struct_size;                   /* the caller sets sizeof(vkllm_engine_stats) */
  uint32_t running, waiting;
  double kv_usage;                      /* fraction of KV blocks in use */
  uint32_t kv_blocks_total, kv_blocks_free;
  uint64_t prompt_tokens, cached_prompt_tokens, generation_tokens;
  uint64_t preemptions, steps;
  uint64_t device_losses;
  int healthy;                          /* 0: recovering from a device loss, or failed */
} vkllm_engine_stats;
VKLLM_API vkllm_status vkllm_engine_get_stats(const vkllm_engine* engine,
                                              vkllm_engine_stats* stats);

#ifdef __cplusplus
}
#endif

#endif /* VKLLM_VKLLM_H */
