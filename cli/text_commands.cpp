// `vkllm tokenize` and `vkllm chat-template`: the tokenizer and the chat template of a GGUF,
// applied to text or a conversation from the command line. Knows the core room only.
#include "cli/commands.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "common/error.hpp"
#include "common/log.hpp"
#include "engine/gguf/gguf.hpp"
#include "engine/template/template.hpp"
#include "engine/tokenizer/tokenizer.hpp"

namespace vkllm::cli {
namespace {

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InvalidRequest(fmt::format("cannot read {} file '{}'", what, path));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_exact(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

std::string token_text(const tok::Tokenizer& t, tok::TokenId id) {
  return id == tok::kNoToken ? std::string() : std::string(t.token_to_piece(id, true));
}

}  // namespace

int run_tokenize(const TokenizeOptions& o) {
  const auto reader = gguf::Reader::open(o.model);
  const auto t = tok::Tokenizer::from_gguf(reader);
  if (o.detokenize) {
    // Input: a JSON array of token ids.
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(o.text, ec);
    if (ec || !v.is_array()) {
      throw InvalidRequest("--detokenize expects --text to be a JSON array of token ids");
    }
    std::vector<tok::TokenId> ids;
    for (const auto& e : v.as_array()) {
      if (!e.is_int64()) throw InvalidRequest("--detokenize: every id must be an integer");
      ids.push_back(static_cast<tok::TokenId>(e.as_int64()));
    }
    write_exact(t.decode(ids, {.show_special = o.show_special}));
    return 0;
  }
  const auto ids = t.encode(o.text, {.add_special = !o.no_special,
                                     .parse_special = o.parse_special});
  boost::json::array arr(ids.begin(), ids.end());
  fmt::print("{}\n", boost::json::serialize(arr));
  return 0;
}

int run_chat_template(const ChatTemplateOptions& o) {
  std::optional<gguf::Reader> reader;
  std::optional<tok::Tokenizer> t;
  if (!o.model.empty()) {
    reader.emplace(gguf::Reader::open(o.model));
    t.emplace(tok::Tokenizer::from_gguf(*reader));
  }
  std::string source;
  if (!o.template_file.empty()) {
    source = read_text_file(o.template_file, "template");
  } else if (auto s = reader ? reader->find_string("tokenizer.chat_template") : std::nullopt) {
    source = std::string(*s);
  } else {
    log::info("no chat template in {}: using ChatML",
              o.model.empty() ? std::string("(no model)") : o.model);
    source = std::string(tmpl::kChatmlTemplate);
  }
  tmpl::ChatInputs in;
  in.messages = tmpl::parse_json(read_text_file(o.messages_file, "messages"));
  if (!in.messages.is_list()) throw InvalidRequest("--messages must hold a JSON array");
  if (!o.tools_file.empty()) in.tools = tmpl::parse_json(read_text_file(o.tools_file, "tools"));
  in.add_generation_prompt = o.add_generation_prompt;
  if (t) {
    in.bos_token = token_text(*t, t->bos());
    in.eos_token = token_text(*t, t->eos());
  }
  write_exact(tmpl::Template::parse(source).render(tmpl::make_chat_context(in)));
  return 0;
}

}  // namespace vkllm::cli
