// The Asio, Beast and JSON names the server's files share, and the one way they await an
// operation (as a tuple: errors are values, never exceptions, on the socket paths).
#pragma once

#include <chrono>

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <boost/json.hpp>

namespace vkllm::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;
using Clock = std::chrono::steady_clock;

inline constexpr auto kAsTuple = net::as_tuple(use_awaitable);

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace vkllm::server
