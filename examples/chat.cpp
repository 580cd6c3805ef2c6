// The C API from C++: RAII handles, and several prompts generated at once (each request streams
// into its own string; std::promise says when it is done).
//   vkllm-chat-cpp model.gguf "prompt one" "prompt two" ...
// Build against an installed vkllm: find_package(vkllm) and link vkllm::vkllm (CMakeLists.txt).
#include <cstdio>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <vkllm/vkllm.h>

namespace {

void check(vkllm_status s, const char* what) {
  if (s != VKLLM_OK) throw std::runtime_error(std::string(what) + ": " + vkllm_last_error());
}

struct ModelDeleter {
  void operator()(vkllm_model* m) const { vkllm_model_free(m); }
};
struct EngineDeleter {
  void operator()(vkllm_engine* e) const { vkllm_engine_free(e); }
};

struct Generation {
  std::string text;  // written by the engine thread until `done` is set
  std::promise<vkllm_result> done;
};

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s model.gguf prompt...\n", argv[0]);
    return 2;
  }
  vkllm_set_log(VKLLM_LOG_WARN, nullptr, nullptr);
  vkllm_model* raw_model = nullptr;
  check(vkllm_model_load(argv[1], nullptr, &raw_model), "load");
  std::unique_ptr<vkllm_model, ModelDeleter> model(raw_model);
  vkllm_engine* raw_engine = nullptr;
  check(vkllm_engine_create(model.get(), nullptr, &raw_engine), "engine");
  std::unique_ptr<vkllm_engine, EngineDeleter> engine(raw_engine);

  std::vector<std::unique_ptr<Generation>> gens;
  for (int i = 2; i < argc; ++i) {
    auto g = std::make_unique<Generation>();
    vkllm_request rq;
    vkllm_request_init(&rq);
    rq.prompt = argv[i];
    rq.max_tokens = 64;
    rq.user = g.get();
    rq.on_piece = [](const vkllm_piece* p, void* user) {
      static_cast<Generation*>(user)->text.append(p->text, p->text_len);
    };
    rq.on_done = [](const vkllm_result* r, void* user) {
      static_cast<Generation*>(user)->done.set_value(*r);
    };
    check(vkllm_submit(engine.get(), &rq, nullptr), "submit");
    gens.push_back(std::move(g));
  }
  for (std::size_t i = 0; i < gens.size(); ++i) {
    const vkllm_result r = gens[i]->done.get_future().get();
    std::printf("[%zu] %s%s\n    (%s, %u prompt + %u generated tokens)\n", i, argv[i + 2],
                gens[i]->text.c_str(), r.finish_reason_name, r.prompt_tokens, r.completion_tokens);
  }
  vkllm_engine_stats stats;
  stats.struct_size = sizeof stats;
  check(vkllm_engine_get_stats(engine.get(), &stats), "stats");
  std::printf("%llu tokens generated in %llu steps\n",
              static_cast<unsigned long long>(stats.generation_tokens),
              static_cast<unsigned long long>(stats.steps));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
