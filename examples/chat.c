/* A minimal chat over the C API: each line read from standard input is a user message; the
 * model's reply streams to standard output, and the conversation is kept for the next turn.
 *   vkllm-chat-c model.gguf [system prompt]
 * Build against an installed vkllm: cc chat.c $(pkg-config --cflags --libs vkllm) -pthread */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vkllm/vkllm.h>

typedef struct Reply {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char* text;
  size_t len;
  int done;
  vkllm_result result;
} Reply;

/* Engine thread: print the new text and keep it; return at once. */
static void on_piece(const vkllm_piece* piece, void* user) {
  Reply* r = (Reply*)user;
  fwrite(piece->text, 1, piece->text_len, stdout);
  fflush(stdout);
  pthread_mutex_lock(&r->mu);
  char* grown = (char*)realloc(r->text, r->len + piece->text_len + 1);
  if (grown) {
    r->text = grown;
    memcpy(r->text + r->len, piece->text, piece->text_len);
    r->len += piece->text_len;
    r->text[r->len] = '\0';
  }
  pthread_mutex_unlock(&r->mu);
}

static void on_done(const vkllm_result* result, void* user) {
  Reply* r = (Reply*)user;
  pthread_mutex_lock(&r->mu);
  r->result = *result;
  r->done = 1;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static char* dup_text(const char* s) {
  char* d = (char*)malloc(strlen(s) + 1);
  if (d) strcpy(d, s);
  return d;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s model.gguf [system prompt]\n", argv[0]);
    return 2;
  }
  vkllm_set_log(VKLLM_LOG_WARN, NULL, NULL);
  vkllm_model_options mo;
  vkllm_model_options_init(&mo);
  vkllm_model* model = NULL;
  if (vkllm_model_load(argv[1], &mo, &model) != VKLLM_OK) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], vkllm_last_error());
    return 1;
  }
  vkllm_engine* engine = NULL;
  if (vkllm_engine_create(model, NULL, &engine) != VKLLM_OK) {
    fprintf(stderr, "cannot start the engine: %s\n", vkllm_last_error());
    vkllm_model_free(model);
    return 1;
  }

  vkllm_chat_message history[64];
  size_t n = 0;
  if (argc > 2) history[n++] = (vkllm_chat_message){"system", dup_text(argv[2])};
  char line[4096];
  fputs("> ", stdout);
  fflush(stdout);
  while (n + 2 <= 64 && fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    if (!line[0]) break;
    history[n++] = (vkllm_chat_message){"user", dup_text(line)};

    Reply reply = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, {0}};
    vkllm_request rq;
    vkllm_request_init(&rq);
    rq.messages = history;
    rq.n_messages = n;
    rq.max_tokens = 512;
    rq.on_piece = on_piece;
    rq.on_done = on_done;
    rq.user = &reply;
    if (vkllm_submit(engine, &rq, NULL) != VKLLM_OK) {
      fprintf(stderr, "\nrequest refused: %s\n", vkllm_last_error());
      break;
    }
    pthread_mutex_lock(&reply.mu);
    while (!reply.done) pthread_cond_wait(&reply.cv, &reply.mu);
    pthread_mutex_unlock(&reply.mu);
    printf("\n[%s, %u tokens]\n> ", reply.result.finish_reason_name, reply.result.completion_tokens);
    fflush(stdout);
    history[n++] = (vkllm_chat_message){"assistant", reply.text ? reply.text : dup_text("")};
  }

  vkllm_engine_free(engine);
  vkllm_model_free(model);
  for (size_t i = 0; i < n; ++i) free((char*)history[i].content);
  return 0;
}
