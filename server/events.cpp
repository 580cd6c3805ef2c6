// Engine events on a connection's strand (events.hpp).
#include "server/events.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/experimental/awaitable_operators.hpp>

namespace vkllm::server {

using namespace net::experimental::awaitable_operators;

namespace {

enum class Peer { there, gone, pipelined };

// What a readable socket means while we have not answered: one byte peeked without waiting.
// 0 = EOF (the peer closed), data = a pipelined next request, EAGAIN = nothing (a wake-up with
// nothing to read: the reactor can report readiness it saw before this wait began).
Peer peek(tcp::socket& socket) {
  char c;
  const ssize_t n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return Peer::pipelined;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return Peer::there;
  return Peer::gone;
}

}  // namespace

awaitable<bool> wait_events(tcp::socket& socket, EventQueue& q, bool& watch_socket, bool& inject_wakeup) {
  for (;;) {
    if (!q.empty()) co_return true;
    if (!watch_socket) {
      co_await q.timer.async_wait(kAsTuple);
      continue;
    }
    beast::error_code ec;
    if (inject_wakeup) {  // test hook: the wake-up with nothing to read, deterministically
      inject_wakeup = false;
    } else {
      auto r = co_await (q.timer.async_wait(kAsTuple) || socket.async_wait(tcp::socket::wait_read, kAsTuple));
      if (r.index() == 0) continue;  // the timer: events (or nothing; the loop checks)
      ec = std::get<0>(std::get<1>(r));
    }
    if (ec == net::error::operation_aborted) continue;
    if (ec) co_return false;
    switch (peek(socket)) {
      case Peer::there: continue;
      case Peer::gone: co_return false;
      case Peer::pipelined: watch_socket = false; continue;  // read after this response
    }
  }
}

}  // namespace vkllm::server
