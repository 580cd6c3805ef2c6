// Typed errors shared by every room: what a caller can act on, with a message naming the cause.
// Header-only and dependency-free, so vkllm_core and vkllm_platform can both throw them.
#pragma once

#include <stdexcept>
#include <string>

namespace vkllm {

// Base of every error vkllm throws on purpose. The server maps the kind to an HTTP status.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model file that is malformed, hostile or inconsistent (names file, key, tensor or offset).
class InvalidModel : public Error { using Error::Error; };
// A request (CLI arguments, HTTP body, prompt) that cannot be served as given.
class InvalidRequest : public Error { using Error::Error; };
// Valid input this build or device does not handle (architecture, tensor type, feature).
class Unsupported : public Error { using Error::Error; };
// Host or device memory ran out, or a plan does not fit the device's limits.
class OutOfMemory : public Error { using Error::Error; };
// The device was lost; in-flight work on it is gone.
class DeviceLost : public Error { using Error::Error; };
// No usable device, or the driver failed in a way the caller cannot fix.
class DeviceError : public Error { using Error::Error; };
// The caller asked to stop (a signal during a model load).
class Cancelled : public Error { using Error::Error; };
// The service cannot take work now (shutting down, still loading): retry later.
class Unavailable : public Error { using Error::Error; };

}  // namespace vkllm
