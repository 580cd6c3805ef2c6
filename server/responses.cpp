#include "server/responses.hpp"

#include <chrono>
#include <cmath>

#include "common/utf8.hpp"

namespace vkllm::server {
namespace json = boost::json;

namespace {

std::int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// JSON has no -inf (a logit of -inf, or a probability that underflowed): OpenAI reports such
// tokens at -9999.
double wire_logprob(float lp) { return std::isfinite(lp) ? lp : -9999.0; }

}  // namespace

ResponseBuilder::ResponseBuilder(const ParsedRequest& r, const tok::Tokenizer& tokenizer, std::string id,
                                 std::string model_name, std::size_t text_offset)
    : r_(r),
      tokenizer_(tokenizer),
      id_(std::move(id)),
      model_(std::move(model_name)),
      created_(unix_time()),
      text_offsets_(r.n, text_offset),
      tool_calls_sent_(r.n, 0) {}

json::object ResponseBuilder::tool_call_json(const frontend::ToolCall& c) {
  json::object call;
  call["id"] = c.id;
  call["type"] = "function";
  call["function"] = json::object{{"name", c.name}, {"arguments", c.arguments}};
  return call;
}

json::object ResponseBuilder::head(const char* object) const {
  json::object o;
  o["id"] = id_;
  o["object"] = object;
  o["created"] = created_;
  o["model"] = model_;
  return o;
}

std::string ResponseBuilder::token_text(std::uint32_t token) const {
  return utf8_sanitize(std::string(tokenizer_.token_to_piece(static_cast<tok::TokenId>(token))));
}

// Chat's entry for one token, the chosen one or an alternative: {token, logprob, bytes}, bytes
// the piece's raw UTF-8 (a piece that splits a character has no valid text of its own).
json::object ResponseBuilder::chat_token_entry(std::uint32_t token, float logprob) const {
  const std::string_view raw = tokenizer_.token_to_piece(static_cast<tok::TokenId>(token));
  json::array bytes;
  for (char ch : raw) bytes.push_back(static_cast<unsigned char>(ch));
  json::object t;
  t["token"] = utf8_sanitize(std::string(raw));
  t["logprob"] = wire_logprob(logprob);
  t["bytes"] = std::move(bytes);
  return t;
}

json::value ResponseBuilder::chat_logprobs(const serving::TokenEvent& gen) const {
  json::array content;
  for (std::size_t i = 0; i < gen.tokens.size() && i < gen.logprobs.size(); ++i) {
    json::object t = chat_token_entry(gen.tokens[i], gen.logprobs[i]);
    json::array top;  // top_logprobs 0: an empty list, as OpenAI
    if (i < gen.top_logprobs.size()) {
      for (const serving::TopLogprob& e : gen.top_logprobs[i]) top.push_back(chat_token_entry(e.token, e.logprob));
    }
    t["top_logprobs"] = std::move(top);
    content.push_back(std::move(t));
  }
  json::object o;
  o["content"] = std::move(content);
  return o;
}

// Completions' legacy shape: parallel lists; top_logprobs one {text: logprob} object per token
// (null when logprobs is 0); text_offset the running byte offset of each token's piece. Pieces
// are counted as the tokenizer spells them (as vLLM does), so a leading space the decoded text
// drops still counts. A NaN logprob is the first prompt token's (echo): null, as OpenAI.
json::value ResponseBuilder::completion_logprobs(const serving::TokenEvent& gen, std::size_t& text_offset) const {
  json::array toks, vals, offsets, tops;
  for (std::size_t i = 0; i < gen.tokens.size() && i < gen.logprobs.size(); ++i) {
    const std::string piece = token_text(gen.tokens[i]);
    offsets.push_back(text_offset);
    text_offset += piece.size();
    toks.push_back(json::value(piece));
    if (std::isnan(gen.logprobs[i])) {
      vals.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    vals.push_back(wire_logprob(gen.logprobs[i]));
    json::object top;
    if (i < gen.top_logprobs.size()) {
      // Two ids with the same text: the first (more likely) keeps the key.
      for (const serving::TopLogprob& e : gen.top_logprobs[i]) top.emplace(token_text(e.token), wire_logprob(e.logprob));
    }
    tops.push_back(std::move(top));
  }
  json::object o;
  o["tokens"] = std::move(toks);
  o["token_logprobs"] = std::move(vals);
  o["top_logprobs"] = r_.top_logprobs.value_or(0) > 0 ? json::value(std::move(tops)) : json::value(nullptr);
  o["text_offset"] = std::move(offsets);
  return o;
}

json::object ResponseBuilder::completion(std::span<const Delta> choices, const Usage& usage) const {
  const bool chat = r_.endpoint == Endpoint::chat;
  json::object o = head(chat ? "chat.completion" : "text_completion");
  json::array list;
  for (const Delta& all : choices) {
    json::object choice;
    choice["index"] = all.index;
    choice["finish_reason"] = all.finish ? json::value(all.finish) : json::value(nullptr);
    if (chat) {
      json::object msg;
      msg["role"] = "assistant";
      msg["content"] = all.content;
      if (!all.tool_calls.empty()) {
        json::array calls;
        for (const frontend::ToolCall& c : all.tool_calls) calls.push_back(tool_call_json(c));
        msg["tool_calls"] = std::move(calls);
        if (all.content.empty()) msg["content"] = nullptr;
      }
      if (!all.reasoning.empty()) msg["reasoning_content"] = all.reasoning;
      choice["message"] = std::move(msg);
      choice["logprobs"] = r_.logprobs ? chat_logprobs(all.tokens) : json::value(nullptr);
    } else {
      std::size_t offset = text_offsets_.at(all.index);
      choice["text"] = all.content;
      choice["logprobs"] = r_.logprobs ? completion_logprobs(all.tokens, offset) : json::value(nullptr);
    }
    list.push_back(std::move(choice));
  }
  o["choices"] = std::move(list);
  o["usage"] = usage_json(usage);
  return o;
}

json::object ResponseBuilder::chunk(const Delta& d, bool first) {
  const bool chat = r_.endpoint == Endpoint::chat;
  json::object o = head(chat ? "chat.completion.chunk" : "text_completion");
  json::object choice;
  choice["index"] = d.index;
  choice["finish_reason"] = d.finish ? json::value(d.finish) : json::value(nullptr);
  const bool has_tokens = r_.logprobs && !d.tokens.tokens.empty();
  if (chat) {
    json::object delta;
    if (first) delta["role"] = "assistant";
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty() || (!first && !d.finish && d.reasoning.empty() && d.tool_calls.empty())) {
      delta["content"] = d.content;
    }
    if (!d.tool_calls.empty()) {  // each call whole in one chunk: its index, id, name, arguments
      json::array calls;
      for (const frontend::ToolCall& c : d.tool_calls) {
        json::object call = tool_call_json(c);
        call["index"] = tool_calls_sent_.at(d.index)++;
        calls.push_back(std::move(call));
      }
      delta["tool_calls"] = std::move(calls);
    }
    choice["delta"] = std::move(delta);
    choice["logprobs"] = has_tokens ? chat_logprobs(d.tokens) : json::value(nullptr);
  } else {
    choice["text"] = d.content;
    choice["logprobs"] = has_tokens ? completion_logprobs(d.tokens, text_offsets_.at(d.index)) : json::value(nullptr);
  }
  o["choices"] = json::array{std::move(choice)};
  return o;
}

json::object ResponseBuilder::usage_chunk(const Usage& usage) const {
  json::object o = head(r_.endpoint == Endpoint::chat ? "chat.completion.chunk" : "text_completion");
  o["choices"] = json::array{};
  o["usage"] = usage_json(usage);
  return o;
}

}  // namespace vkllm::server
