// Host header and API key checks (server/access.hpp).
#include "server/access.hpp"

#include <algorithm>
#include <cctype>

#include <boost/asio/ip/address.hpp>

namespace vkllm::server {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The name of a Host value: "name", "name:port", "[v6]" or "[v6]:port". Empty when malformed.
std::string host_name(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return {};
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return {};
    return lower(host.substr(1, close - 1));
  }
  const auto colon = host.find(':');
  if (colon != std::string_view::npos && host.find(':', colon + 1) != std::string_view::npos) {
    return lower(host);  // an unbracketed v6 literal (no port can follow it)
  }
  return lower(host.substr(0, colon));
}

}  // namespace

bool is_loopback_address(std::string_view address) {
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(std::string(address), ec);
  return !ec && a.is_loopback();
}

HostVerdict check_host(bool present, std::string_view host, const std::vector<std::string>& allowed) {
  if (!present) return HostVerdict::missing;
  const std::string name = host_name(host);
  if (name.empty()) return HostVerdict::forbidden;
  if (name == "localhost" || is_loopback_address(name)) return HostVerdict::allowed;
  for (const std::string& a : allowed) {
    if (a == "*" || (!a.empty() && lower(a) == name)) return HostVerdict::allowed;
  }
  return HostVerdict::forbidden;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

}  // namespace vkllm::server
