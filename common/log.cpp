// The process-wide logger (see log.hpp). Thread-safe: one mutex around the sink.
// Knows nothing of models, devices or the server.
#include "common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace vkllm::log {
namespace {

std::atomic<Level> g_level{Level::info};
std::mutex g_mutex;
Sink g_sink;

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}

}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

Sink set_sink(Sink sink) {
  std::lock_guard lock(g_mutex);
  std::swap(g_sink, sink);
  return sink;
}

void write(Level l, std::string_view message) {
  std::lock_guard lock(g_mutex);
  if (g_sink) {
    g_sink(l, message);
    return;
  }
  std::fprintf(stderr, "[vkllm %s] %.*s\n", level_name(l), static_cast<int>(message.size()),
               message.data());
}

}  // namespace vkllm::log
