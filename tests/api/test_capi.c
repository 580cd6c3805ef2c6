/* The C API from a C program (docs/ARCHITECTURE.md "The C API"): built by tests/api/capi_check.cmake
 * against an installed libvkllm.so through pkg-config (and with ASan/UBSan in the sanitizer
 * build). On stories260K: the documented story streamed byte for byte through the callbacks, a
 * request cancelled mid-stream, 8 requests from 8 threads each equal to its solo output
 * (deterministic mode), stop strings, a grammar, tokenize/detokenize, errors by code and message,
 * and a load stopped by its progress callback. Any ERROR log line (a validation message with
 * VKLLM_VALIDATION=1) fails it.
 * Usage: test_capi SHARED_DIR (exit 77: the model is not there). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vkllm/vkllm.h>

static int failures = 0;
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                          \
    }                                                                      \
  } while (0)
#define REQUIRE_OK(call)                                                          \
  do {                                                                            \
    vkllm_status s_ = (call);                                                     \
    if (s_ != VKLLM_OK) {                                                         \
      fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,          \
              vkllm_status_string(s_), vkllm_last_error());                       \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

static int error_lines = 0;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static void on_log(vkllm_log_level level, const char* line, void* user) {
  (void)user;
  if (level >= VKLLM_LOG_WARN) fprintf(stderr, "[vkllm] %s\n", line);
  if (level == VKLLM_LOG_ERROR) {
    pthread_mutex_lock(&log_mu);
    ++error_lines;
    pthread_mutex_unlock(&log_mu);
  }
}

/* One request's collected output, filled by the callbacks on the engine thread. */
typedef struct Out {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char* text;
  size_t len;
  size_t tokens;
  int pieces_with_logprobs;
  int done;
  vkllm_result result;
  char error[256];
} Out;

static void out_init(Out* o) {
  memset(o, 0, sizeof *o);
  pthread_mutex_init(&o->mu, NULL);
  pthread_cond_init(&o->cv, NULL);
}
static void out_free(Out* o) {
  free(o->text);
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->cv);
}

static void on_piece(const vkllm_piece* p, void* user) {
  Out* o = (Out*)user;
  pthread_mutex_lock(&o->mu);
  o->text = (char*)realloc(o->text, o->len + p->text_len + 1);
  memcpy(o->text + o->len, p->text, p->text_len);
  o->len += p->text_len;
  o->text[o->len] = '\0';
  o->tokens += p->n_tokens;
  if (p->logprobs) ++o->pieces_with_logprobs;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

static void on_done(const vkllm_result* r, void* user) {
  Out* o = (Out*)user;
  pthread_mutex_lock(&o->mu);
  o->result = *r;
  snprintf(o->error, sizeof o->error, "%s", r->error ? r->error : "");
  o->done = 1;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

static void out_wait(Out* o) {
  pthread_mutex_lock(&o->mu);
  while (!o->done) pthread_cond_wait(&o->cv, &o->mu);
  pthread_mutex_unlock(&o->mu);
}

static const char* out_text(const Out* o) { return o->text ? o->text : ""; }

static vkllm_engine* engine;

/* A request whose callbacks fill `o` (initialized here). */
static void request_for(vkllm_request* rq, Out* o) {
  out_init(o);
  vkllm_request_init(rq);
  rq->on_piece = on_piece;
  rq->on_done = on_done;
  rq->user = o;
}

/* Submits a greedy text request and waits for its end. */
static void run_text(const char* prompt, unsigned max_tokens, Out* o) {
  vkllm_request rq;
  request_for(&rq, o);
  rq.prompt = prompt;
  rq.temperature = 0;
  rq.max_tokens = max_tokens;
  uint64_t id = 0;
  REQUIRE_OK(vkllm_submit(engine, &rq, &id));
  CHECK(id != 0);
  out_wait(o);
}

static char* read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* s = (char*)malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = '\0';
  fclose(f);
  return s;
}

/* EXPECTED.md item 1: the story run.c prints, without its final newline. */
static char* expected_story(const char* shared) {
  char path[4096];
  snprintf(path, sizeof path, "%s/models/stories260K/EXPECTED.md", shared);
  char* doc = read_file(path);
  if (!doc) return NULL;
  char* at = strstr(doc, "## 1.");
  char* open = at ? strstr(at, "```\n") : NULL;
  char* close = open ? strstr(open + 4, "```") : NULL;
  char* story = NULL;
  if (close) {
    size_t n = (size_t)(close - (open + 4));
    if (n && open[4 + n - 1] == '\n') --n;
    story = (char*)malloc(n + 1);
    memcpy(story, open + 4, n);
    story[n] = '\0';
  }
  free(doc);
  return story;
}

static int stop_load(float progress, void* user) {
  (void)progress;
  int* calls = (int*)user;
  return ++*calls >= 2;
}

static float last_progress = -1;
static int progress_backwards = 0;
static int track_progress(float progress, void* user) {
  (void)user;
  if (progress < last_progress) progress_backwards = 1;
  last_progress = progress;
  return 0;
}

/* ---- 8 threads at once ---- */
#define N_THREADS 8
static const char* thread_prompts[N_THREADS] = {
    "Once upon a time", "Lily and Tom", "The dog ran", "One day, a little bird",
    "The sun was", "Mom said", "There was a big", "Tim had a red"};
static char* solo[N_THREADS];
static pthread_barrier_t start_line;

static void* thread_main(void* arg) {
  size_t i = (size_t)arg;
  Out o;
  pthread_barrier_wait(&start_line);
  run_text(thread_prompts[i], 48, &o);
  if (strcmp(out_text(&o), solo[i]) != 0) {
    fprintf(stderr, "thread %zu: batched output differs from its solo output:\n  solo:    %s\n"
                    "  batched: %s\n", i, solo[i], out_text(&o));
    ++failures;
  }
  out_free(&o);
  return NULL;
}

int main(int argc, char** argv) {
  const char* shared = argc > 1 ? argv[1] : getenv("VKLLM_SHARED_DIR");
  char model_path[4096];
  snprintf(model_path, sizeof model_path, "%s/models/stories260K/stories260K.gguf", shared ? shared : "");
  FILE* probe = shared ? fopen(model_path, "rb") : NULL;
  if (!probe) {
    printf("SKIP: %s is not there (set VKLLM_SHARED_DIR)\n", model_path);
    return 77;
  }
  fclose(probe);
  vkllm_set_log(VKLLM_LOG_INFO, on_log, NULL);
  printf("libvkllm %s\n", vkllm_version());

  /* Devices. */
  size_t n_devices = 0;
  REQUIRE_OK(vkllm_device_count(&n_devices));
  CHECK(n_devices >= 1);
  int defaults = 0;
  for (size_t i = 0; i < n_devices; ++i) {
    vkllm_device_info d;
    d.struct_size = sizeof d;
    REQUIRE_OK(vkllm_device_get(i, &d));
    CHECK(d.name[0] != '\0');
    defaults += d.is_default;
    printf("device %zu: %s (%s, %s), %llu MiB%s\n", i, d.name, d.type, d.driver,
           (unsigned long long)(d.memory_bytes >> 20), d.is_default ? ", default" : "");
  }
  CHECK(defaults == 1);
  vkllm_device_info bad;
  bad.struct_size = sizeof bad;
  CHECK(vkllm_device_get(n_devices, &bad) == VKLLM_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(vkllm_last_error(), "does not exist") != NULL);

  /* Loads that fail, by code and message. */
  vkllm_model_options mo;
  vkllm_model_options_init(&mo);
  vkllm_model* model = NULL;
  CHECK(vkllm_model_load("/nonexistent/model.gguf", &mo, &model) != VKLLM_OK);
  CHECK(model == NULL && strstr(vkllm_last_error(), "/nonexistent/model.gguf") != NULL);
  int calls = 0;
  mo.progress = stop_load;
  mo.progress_user = &calls;
  CHECK(vkllm_model_load(model_path, &mo, &model) == VKLLM_ERROR_CANCELLED);
  CHECK(model == NULL);
  vkllm_model_options zero;
  memset(&zero, 0, sizeof zero);
  CHECK(vkllm_model_load(model_path, &zero, &model) == VKLLM_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(vkllm_last_error(), "struct_size") != NULL);

  /* The load. */
  vkllm_model_options_init(&mo);
  mo.deterministic = 1;
  mo.max_seqs = 8;
  mo.context_length = 512;
  mo.progress = track_progress;
  REQUIRE_OK(vkllm_model_load(model_path, &mo, &model));
  CHECK(last_progress == 1.0f && !progress_backwards);
  vkllm_model_info info;
  info.struct_size = sizeof info;
  REQUIRE_OK(vkllm_model_get_info(model, &info));
  CHECK(strcmp(info.architecture, "llama") == 0);
  CHECK(info.vocab_size == 512 && info.context_length == 512 && info.max_seqs == 8);
  CHECK(info.weight_bytes > 0 && info.kv_bytes > 0 && info.kv_blocks > 0 && info.generates);
  char meta[256];
  size_t meta_size = sizeof meta;
  REQUIRE_OK(vkllm_model_meta(model, "general.architecture", meta, &meta_size));
  CHECK(strcmp(meta, "llama") == 0 && meta_size == 6);
  meta_size = 3;
  CHECK(vkllm_model_meta(model, "general.architecture", meta, &meta_size) == VKLLM_ERROR_BUFFER_TOO_SMALL);
  CHECK(meta_size == 6);
  meta_size = sizeof meta;
  CHECK(vkllm_model_meta(model, "no.such.key", meta, &meta_size) == VKLLM_ERROR_INVALID_ARGUMENT);

  /* Tokens (EXPECTED.md: "Once upon a time" is 1 403 407 261 378). */
  uint32_t ids[16];
  size_t n_ids = 16;
  REQUIRE_OK(vkllm_tokenize(model, "Once upon a time", 16, 1, 0, ids, &n_ids));
  CHECK(n_ids == 5 && ids[0] == 1 && ids[1] == 403 && ids[2] == 407 && ids[3] == 261 && ids[4] == 378);
  n_ids = 2;
  CHECK(vkllm_tokenize(model, "Once upon a time", 16, 1, 0, ids, &n_ids) == VKLLM_ERROR_BUFFER_TOO_SMALL);
  CHECK(n_ids == 5);
  char text[64];
  size_t text_size = sizeof text;
  const uint32_t story_ids[4] = {403, 407, 261, 378};
  REQUIRE_OK(vkllm_detokenize(model, story_ids, 4, 0, text, &text_size));
  CHECK(strcmp(text, "Once upon a time") == 0);
  const uint32_t bad_id = 100000;
  text_size = sizeof text;
  CHECK(vkllm_detokenize(model, &bad_id, 1, 0, text, &text_size) == VKLLM_ERROR_INVALID_ARGUMENT);

  /* The engine: one per model. */
  vkllm_engine_options eo;
  vkllm_engine_options_init(&eo);
  REQUIRE_OK(vkllm_engine_create(model, &eo, &engine));
  vkllm_engine* second = NULL;
  CHECK(vkllm_engine_create(model, &eo, &second) == VKLLM_ERROR_INVALID_ARGUMENT && second == NULL);
  vkllm_model_free(model); /* the engine keeps the weights */
  model = NULL;

  /* 1. The documented story, byte for byte, from BOS (greedy, 256 tokens). */
  char* story = expected_story(shared);
  CHECK(story != NULL);
  {
    Out o;
    vkllm_request rq;
    request_for(&rq, &o);
    const uint32_t bos = 1;
    rq.prompt_tokens = &bos;
    rq.n_prompt_tokens = 1;
    rq.temperature = 0;
    rq.max_tokens = 256;
    rq.logprobs = 1;
    REQUIRE_OK(vkllm_submit(engine, &rq, NULL));
    out_wait(&o);
    if (story && strcmp(out_text(&o), story) != 0) {
      fprintf(stderr, "the story differs from EXPECTED.md:\n%s\n", out_text(&o));
      ++failures;
    }
    CHECK(o.result.finish_reason == VKLLM_FINISH_LENGTH);
    CHECK(strcmp(o.result.finish_reason_name, "length") == 0);
    CHECK(o.result.completion_tokens == 256 && o.tokens == 256 && o.result.prompt_tokens == 1);
    CHECK(o.pieces_with_logprobs > 0);
    printf("story: %zu bytes in %zu tokens, as documented\n", o.len, o.tokens);
    out_free(&o);
  }

  /* 2. Cancelled mid-stream. */
  {
    Out o;
    vkllm_request rq;
    request_for(&rq, &o);
    rq.prompt = "Once upon a time";
    rq.temperature = 0;
    rq.max_tokens = 400;
    rq.ignore_eos = 1;
    uint64_t id = 0;
    REQUIRE_OK(vkllm_submit(engine, &rq, &id));
    pthread_mutex_lock(&o.mu);
    while (o.tokens < 5 && !o.done) pthread_cond_wait(&o.cv, &o.mu);
    pthread_mutex_unlock(&o.mu);
    REQUIRE_OK(vkllm_cancel(engine, id));
    out_wait(&o);
    CHECK(o.result.finish_reason == VKLLM_FINISH_CANCELLED);
    CHECK(o.result.completion_tokens >= 5 && o.result.completion_tokens < 400);
    printf("cancelled after %u tokens\n", o.result.completion_tokens);
    REQUIRE_OK(vkllm_cancel(engine, id)); /* finished: a no-op */
    out_free(&o);
  }

  /* 3. Eight threads at once, each equal to its output alone. */
  for (size_t i = 0; i < N_THREADS; ++i) {
    Out o;
    run_text(thread_prompts[i], 48, &o);
    CHECK(o.result.finish_reason == VKLLM_FINISH_LENGTH || o.result.finish_reason == VKLLM_FINISH_STOP);
    solo[i] = strdup(out_text(&o));
    CHECK(strlen(solo[i]) > 0);
    out_free(&o);
  }
  pthread_barrier_init(&start_line, NULL, N_THREADS);
  pthread_t threads[N_THREADS];
  for (size_t i = 0; i < N_THREADS; ++i) pthread_create(&threads[i], NULL, thread_main, (void*)i);
  for (size_t i = 0; i < N_THREADS; ++i) pthread_join(threads[i], NULL);
  pthread_barrier_destroy(&start_line);
  for (size_t i = 0; i < N_THREADS; ++i) free(solo[i]);
  printf("8 threads: each output equal to its solo run\n");

  /* 4. A stop string: the text ends before it, finish "stop". */
  {
    Out o;
    vkllm_request rq;
    request_for(&rq, &o);
    rq.prompt = "Once upon a time";
    rq.temperature = 0;
    rq.max_tokens = 64;
    const char* stops[1] = {" Lily"};
    rq.stop = stops;
    rq.n_stop = 1;
    REQUIRE_OK(vkllm_submit(engine, &rq, NULL));
    out_wait(&o);
    CHECK(strcmp(out_text(&o), ", there was a little girl named") == 0);
    CHECK(o.result.finish_reason == VKLLM_FINISH_STOP);
    out_free(&o);
  }

  /* 5. A grammar: the output is one of its sentences. */
  {
    Out o;
    vkllm_request rq;
    request_for(&rq, &o);
    rq.prompt = "Once upon a time";
    rq.grammar = "root ::= (\"yes\" | \"no\") \".\"";
    rq.max_tokens = 16;
    rq.has_seed = 1;
    rq.seed = 7;
    REQUIRE_OK(vkllm_submit(engine, &rq, NULL));
    out_wait(&o);
    CHECK(strcmp(out_text(&o), "yes.") == 0 || strcmp(out_text(&o), "no.") == 0);
    CHECK(o.result.finish_reason == VKLLM_FINISH_STOP);
    out_free(&o);
  }

  /* 6. A chat request (ChatML: stories260K has no template) and bad requests. */
  {
    Out o;
    vkllm_request rq;
    request_for(&rq, &o);
    vkllm_chat_message msgs[2] = {{"system", "Tell a story."}, {"user", "Once upon a time"}};
    rq.messages = msgs;
    rq.n_messages = 2;
    rq.max_tokens = 8;
    REQUIRE_OK(vkllm_submit(engine, &rq, NULL));
    out_wait(&o);
    CHECK(o.result.prompt_tokens > 5 && o.result.completion_tokens >= 1);
    out_free(&o);

    vkllm_request_init(&rq);
    rq.prompt = "x";
    rq.temperature = 5;
    CHECK(vkllm_submit(engine, &rq, NULL) == VKLLM_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vkllm_last_error(), "temperature") != NULL);
    vkllm_request_init(&rq);
    CHECK(vkllm_submit(engine, &rq, NULL) == VKLLM_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vkllm_last_error(), "exactly one") != NULL);
    vkllm_request_init(&rq);
    rq.messages_json = "[{\"role\": \"wizard\", \"content\": \"hi\"}]";
    CHECK(vkllm_submit(engine, &rq, NULL) == VKLLM_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vkllm_last_error(), "role") != NULL);
    vkllm_request_init(&rq);
    rq.prompt = "x";
    rq.grammar = "root ::= (\"a\"";
    CHECK(vkllm_submit(engine, &rq, NULL) == VKLLM_ERROR_INVALID_ARGUMENT);
    vkllm_request_init(&rq);
    rq.prompt = "x";
    rq.max_tokens = 100000;
    CHECK(vkllm_submit(engine, &rq, NULL) == VKLLM_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(vkllm_last_error(), "context length") != NULL);
  }

  vkllm_engine_stats stats;
  stats.struct_size = sizeof stats;
  REQUIRE_OK(vkllm_engine_get_stats(engine, &stats));
  CHECK(stats.generation_tokens > 256 && stats.steps > 0 && stats.healthy);
  CHECK(stats.running == 0 && stats.kv_blocks_free == stats.kv_blocks_total);

  /* 7. Freeing the engine ends what still runs: on_done says cancelled. */
  {
    Out o;
    vkllm_request rq;
    request_for(&rq, &o);
    rq.prompt = "Once upon a time";
    rq.max_tokens = 400;
    rq.ignore_eos = 1;
    REQUIRE_OK(vkllm_submit(engine, &rq, NULL));
    vkllm_engine_free(engine);
    engine = NULL;
    CHECK(o.done && (o.result.finish_reason == VKLLM_FINISH_CANCELLED ||
                     o.result.finish_reason == VKLLM_FINISH_LENGTH));
    out_free(&o);
  }
  free(story);

  CHECK(error_lines == 0);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all C API checks passed\n");
  return 0;
}
