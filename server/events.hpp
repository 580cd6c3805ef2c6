// Engine events on a connection's strand: the queue a request's callback fills from the engine
// thread, and the wait for it that also watches the client's socket (docs/ARCHITECTURE.md "The
// life of a request"). Used by generations and embeddings alike.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include <boost/asio.hpp>

#include "engine/serving/engine.hpp"
#include "server/net.hpp"

namespace vkllm::server {

// Engine events for one request, handed from the engine thread to the connection's strand: the
// callback queues the event, then posts a cancel of the timer the coroutine waits on. The post
// runs on the strand, so it cannot fall between the coroutine's emptiness check and the start
// of its wait; a cancel that finds no wait is harmless, the next check sees the event.
struct EventQueue : std::enable_shared_from_this<EventQueue> {
  explicit EventQueue(net::any_io_executor ex) : timer(ex) { timer.expires_at(Clock::time_point::max()); }
  // An event and the choice (n > 1) it belongs to.
  struct Item {
    std::uint32_t choice = 0;
    serving::TokenEvent event;
  };
  std::mutex mu;
  std::deque<Item> events;
  net::steady_timer timer;

  serving::EventCallback callback(std::uint32_t choice) {
    return [self = shared_from_this(), choice](const serving::TokenEvent& ev) {
      {
        std::lock_guard lock(self->mu);
        self->events.push_back({choice, ev});
      }
      net::post(self->timer.get_executor(), [self] { self->timer.cancel(); });
    };
  }
  std::deque<Item> take() {
    std::lock_guard lock(mu);
    return std::exchange(events, {});
  }
  bool empty() {
    std::lock_guard lock(mu);
    return events.empty();
  }
};

// Waits until the engine has events for the request; returns false when the client left. While
// `watch_socket`, the socket is watched too (a client that closes is cancelled at once; one that
// sends a pipelined request clears it: that request is read after this response).
// `inject_wakeup`: a test hook (a wake-up with nothing to read).
awaitable<bool> wait_events(tcp::socket& socket, EventQueue& q, bool& watch_socket, bool& inject_wakeup);

}  // namespace vkllm::server
