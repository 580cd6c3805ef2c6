// Who may talk to the server: the Host header check that stops DNS rebinding on a loopback
// server, and the API key comparison. Pure functions (tests/server/test_server.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vkllm::server {

enum class HostVerdict { allowed, missing, forbidden };

// Whether the address the server binds is a loopback one (127.0.0.0/8, ::1): then only requests
// whose Host names a loopback address or "localhost" are served, since a web page can point any
// DNS name at 127.0.0.1 (DNS rebinding; Ollama's CVE-2024-28224, and its later fix's bypass by
// a Host with an empty name such as ":8080").
bool is_loopback_address(std::string_view address);

// The verdict on a request's Host header (`present` false: no Host at all). Checked only when
// `check` (a loopback bind, or --allowed-hosts given). The name (port stripped; [v6] literals
// unbracketed, case-insensitive) is allowed when it is "localhost", a loopback address, or in
// `allowed` ("*" allows any name, and "" is never a name).
HostVerdict check_host(bool present, std::string_view host, const std::vector<std::string>& allowed);

// Compares in time that depends on the lengths only, never on where the first difference is.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace vkllm::server
