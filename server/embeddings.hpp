// /v1/embeddings after parsing (docs/ARCHITECTURE.md "Embeddings"): each input is one engine
// request, at most a window of them queued at a time; their embeddings come back in input
// order. A client that leaves cancels what is left.
#pragma once

#include <cstdint>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "engine/serving/engine.hpp"

namespace vkllm::server {

struct EmbeddingResult {
  std::vector<std::vector<float>> embeddings;  // per input, unit length
  bool client_gone = false;                    // nothing to answer
};

// Throws what Engine::submit throws when no input could be queued, ApiException for an input
// that ended in an error (503 when the device was lost, 408 past its time limit, 500 else).
boost::asio::awaitable<EmbeddingResult> embed(serving::Service& engine, boost::beast::tcp_stream& stream,
                                              std::vector<std::vector<std::uint32_t>> prompts,
                                              serving::RequestParams params);

}  // namespace vkllm::server
