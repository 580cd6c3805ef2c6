// The embeddings event loop (embeddings.hpp).
#include "server/embeddings.hpp"

#include <algorithm>
#include <memory>

#include <fmt/format.h>

#include "server/events.hpp"
#include "server/openai.hpp"

namespace vkllm::server {

namespace {

// Inputs of one request queued at once: enough to fill the engine's steps, few enough that one
// request of 2048 inputs neither fills the queue nor starves the generations beside it.
constexpr std::size_t kWindow = 32;

ApiException failure(const serving::TokenEvent& ev, std::size_t index) {
  const std::string message = fmt::format("input {}: {}", index, ev.error.empty() ? to_string(ev.finish) : ev.error);
  switch (ev.finish) {
    case serving::FinishReason::device_lost:
      return ApiException({503, message, "server_error", "", "device_lost"});
    case serving::FinishReason::timeout:
      return ApiException({408, message, "server_error", "", "request_timeout"});
    case serving::FinishReason::cancelled:
      return ApiException({503, message, "server_error", "", "shutting_down"});
    default:
      return ApiException({500, message, "server_error", "", ""});
  }
}

}  // namespace

net::awaitable<EmbeddingResult> embed(serving::Service& engine, beast::tcp_stream& stream,
                                      std::vector<std::vector<std::uint32_t>> prompts,
                                      serving::RequestParams params) {
  auto q = std::make_shared<EventQueue>(stream.get_executor());
  EmbeddingResult result;
  result.embeddings.resize(prompts.size());
  std::vector<serving::RequestId> ids(prompts.size(), 0);
  std::size_t next = 0, done = 0;
  bool watch = true, no_wakeup = false;
  // Ends every input still queued (the client left, or one input failed).
  auto cancel_rest = [&] {
    for (std::size_t i = 0; i < next; ++i) {
      if (ids[i] != 0 && result.embeddings[i].empty()) engine.cancel(ids[i]);
    }
  };
  while (done < prompts.size()) {
    // Fill the window; a full queue with nothing of ours in it is the caller's 429.
    while (next < prompts.size() && next - done < kWindow) {
      try {
        ids[next] = engine.submit(std::move(prompts[next]), params, q->callback(static_cast<std::uint32_t>(next)));
      } catch (const serving::QueueFull&) {
        if (next == done) throw;
        break;
      } catch (...) {
        cancel_rest();
        throw;
      }
      ++next;
    }
    if (!co_await wait_events(stream.socket(), *q, watch, no_wakeup)) {
      cancel_rest();
      result.client_gone = true;
      co_return result;
    }
    for (EventQueue::Item& item : q->take()) {
      if (item.event.finish == serving::FinishReason::none) continue;
      if (item.event.finish != serving::FinishReason::stop || item.event.embedding.empty()) {
        cancel_rest();
        throw failure(item.event, item.choice);
      }
      result.embeddings[item.choice] = std::move(item.event.embedding);
      ++done;
    }
  }
  co_return result;
}

}  // namespace vkllm::server
