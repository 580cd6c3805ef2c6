// Constrained decoding's host side: GBNF parsing and its errors, UTF-8 lowering of classes
// against every code point, the matcher's accept/reject, token masks against a token-by-token
// check, and JSON schemas whose random walks always give JSON of the schema's shape.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include <boost/json.hpp>

#include "common/utf8.hpp"
#include "engine/grammar/grammar.hpp"
#include "engine/grammar/json_schema.hpp"
#include "engine/grammar/matcher.hpp"

using namespace vkllm;
using namespace vkllm::grammar;
namespace json = boost::json;

namespace {

std::string utf8(std::uint32_t cp) { return utf8_encode(static_cast<char32_t>(cp)); }

// A vocabulary that can spell anything: every byte, plus words and pieces of JSON, plus two
// control tokens (no bytes) and an end token.
std::shared_ptr<const TokenTrie> test_vocab() {
  std::vector<std::string> v;
  v.push_back("");  // 0: a control token
  v.push_back("");  // 1: end of text (end token)
  for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  for (const char* w : {"{\"", "\":", "\",", "\"}", "{", "}", "[", "]", "true", "false", "null", "name", "age",
                        " \"", "\": \"", "12", "3.5", "-", "\n ", "  ", "é", "日本", "abc", "\\u00e9", "\\n",
                        "},{", "\"a\"", "red", "green", "2024-01-02", "T12:", "00:00Z", "ab", "ba", "aaa"}) {
    v.push_back(w);
  }
  return std::make_shared<TokenTrie>(v, std::vector<std::uint32_t>{1});
}

bool accepts(const std::string& gbnf, std::string_view text) {
  auto g = std::make_shared<Grammar>(Grammar::parse(gbnf));
  Matcher m(g, test_vocab());
  return m.accept_bytes(text) && m.can_end();
}

std::string error_of(const std::string& gbnf) {
  try {
    (void)Grammar::parse(gbnf);
  } catch (const GrammarError& e) {
    return e.what();
  }
  return "";
}

std::string schema_error(std::string_view schema) {
  try {
    (void)json_schema_gbnf(json::parse(schema));
  } catch (const GrammarError& e) {
    return e.what();
  }
  return "";
}

// A random walk: tokens drawn from the mask (an end token once allowed, with some probability)
// until the grammar ends; returns the text, or nullopt if it did not end within `max_tokens`.
std::optional<std::string> random_walk(Matcher& m, const TokenTrie& vocab, std::mt19937& rng, int max_tokens = 4000) {
  std::string text;
  for (int step = 0; step < max_tokens; ++step) {
    const auto mask = m.mask();
    std::vector<std::uint32_t> allowed;
    for (std::uint32_t t = 0; t < vocab.vocab_size(); ++t) {
      if ((mask[t >> 5] >> (t & 31)) & 1u) allowed.push_back(t);
    }
    REQUIRE_FALSE(allowed.empty());
    if (m.can_end() && (m.complete() || rng() % 4 == 0)) {
      CHECK(std::find(allowed.begin(), allowed.end(), 1u) != allowed.end());
      return text;
    }
    // Favour closing tokens a little so walks end: a random model is as likely to.
    std::uint32_t t = allowed[rng() % allowed.size()];
    if (t == 1) continue;
    REQUIRE(m.accept_token(t));
    text += vocab.bytes(t);
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("GBNF: literals, classes, groups, repetitions, comments") {
  const std::string g = R"(# a comment
root ::= greeting ( "," ws name )+ "!"?   # trailing comment
greeting ::= "hi" | "hello"
name ::= [A-Z] [a-z]{1,3}
ws ::= [ \t]*
)";
  CHECK(accepts(g, "hi,Bob"));
  CHECK(accepts(g, "hello, Ann,  Zoe!"));
  CHECK_FALSE(accepts(g, "hi"));
  CHECK_FALSE(accepts(g, "hi,Bobby"));
  CHECK_FALSE(accepts(g, "hey,Bob"));
  CHECK(accepts("root ::= \"a\"{2,} \"b\"{0,1}", "aaab"));
  CHECK_FALSE(accepts("root ::= \"a\"{2,} \"b\"{0,1}", "ab"));
  CHECK(accepts("root ::= ( \"x\" | \"y\" ){3}", "xyx"));
  CHECK_FALSE(accepts("root ::= ( \"x\" | \"y\" ){3}", "xy"));
  CHECK(accepts("root ::= [^a-c]+", "dé日"));
  CHECK_FALSE(accepts("root ::= [^a-c]+", "dab"));
  CHECK(accepts("root ::= [α-ω]+ .", "αβγ!"));
  CHECK_FALSE(accepts("root ::= [α-ω]+", "αa"));
  CHECK(accepts(R"(root ::= "\x41\u00e9\n\"")", "Aé\n\""));
  CHECK(accepts("root ::= (\n  \"a\"\n  | \"b\"\n)", "b"));
  // Right recursion does not grow without bound, left recursion is refused.
  CHECK(accepts("root ::= \"a\" root | \"b\"", std::string(5000, 'a') + "b"));
  // A chain of 200000 rules expands without recursion.
  std::string chain = "root ::= r0\n";
  for (int i = 0; i < 200000; ++i) {
    const std::string n = std::to_string(i), next = std::to_string(i + 1);
    chain += "r" + n + " ::= r" + next + " | \"x\"\n";
  }
  chain += "r200000 ::= \"y\"\n";
  CHECK(accepts(chain, "y"));
  CHECK(accepts(chain, "x"));
  // Nullability through a long chain is found in linear time (the last rule is empty).
  std::string nullable = "root ::= n0 \"z\"\n";
  for (int i = 0; i < 200000; ++i) {
    const std::string n = std::to_string(i), next = std::to_string(i + 1);
    nullable += "n" + n + " ::= n" + next + "\n";
  }
  nullable += "n200000 ::= \"\"\n";
  CHECK(accepts(nullable, "z"));
  CHECK(error_of(nullable + "loop ::= n0 loop \"q\"\n").find("'loop' is left-recursive") != std::string::npos);
}

TEST_CASE("GBNF: every error names its cause") {
  CHECK(error_of("root ::= foo").find("'foo' is used but not defined") != std::string::npos);
  CHECK(error_of("root ::= root \"a\" | \"b\"").find("left-recursive") != std::string::npos);
  CHECK(error_of("root ::= x\nx ::= y \"a\"\ny ::= \"\" | x").find("left-recursive") != std::string::npos);
  CHECK(error_of("start ::= \"a\"").find("no 'root' rule") != std::string::npos);
  CHECK(error_of("root ::= \"a").find("unterminated literal") != std::string::npos);
  CHECK(error_of("root ::= [a-").find("unterminated") != std::string::npos);
  CHECK(error_of("root ::= \"a\"{3,1}").find("max < min") != std::string::npos);
  CHECK(error_of("root ::= \"a\"{100000}").find("repetition bound") != std::string::npos);
  std::string big = "root ::=";
  for (int i = 0; i < 110; ++i) big += " \"a\"{10000}";
  CHECK(error_of(big).find("elements") != std::string::npos);
  CHECK(error_of("root ::= ( \"a\"{1000} ){1000}").empty());  // shared, not copied: small
  CHECK(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice") != std::string::npos);
  CHECK(error_of("root ::= \"\\q\"").find("unknown escape") != std::string::npos);
  CHECK(error_of("root ::= [z-a]").find("backwards") != std::string::npos);
  CHECK(error_of("root ::= " + std::string(100000, '(')).find("nested deeper") != std::string::npos);
  CHECK(error_of("root ::= \"a\"\n  \"b\"").find("line 2") != std::string::npos);
}

TEST_CASE("UTF-8 lowering of code point ranges matches exactly those code points") {
  const std::pair<std::uint32_t, std::uint32_t> ranges[] = {
      {0x80, 0x10FFFF}, {0x3B1, 0x3C9}, {0x7F0, 0x812}, {0xD000, 0xE100}, {0xFFF0, 0x10010}, {0x12345, 0x54321}};
  for (auto [lo, hi] : ranges) {
    CAPTURE(lo);
    CAPTURE(hi);
    const auto seqs = utf8_sequences(lo, hi);
    auto matches = [&](const std::string& bytes) {
      int n = 0;
      for (const auto& seq : seqs) {
        if (seq.size() != bytes.size()) continue;
        bool all = true;
        for (std::size_t i = 0; i < seq.size(); ++i) {
          const auto b = static_cast<std::uint8_t>(bytes[i]);
          all = all && b >= seq[i].first && b <= seq[i].second;
        }
        n += all;
      }
      return n;
    };
    for (std::uint32_t cp = 0x80; cp <= 0x10FFFF; cp += (cp < 0x20000 ? 1 : 97)) {
      if (cp >= 0xD800 && cp <= 0xDFFF) {  // never characters: their 3-byte form matches nothing
        const std::string bytes{static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
                                static_cast<char>(0x80 | (cp & 0x3F))};
        CHECK(matches(bytes) == 0);
        continue;
      }
      const int want = cp >= lo && cp <= hi ? 1 : 0;
      if (matches(utf8(cp)) != want) {
        FAIL("code point ", cp, " matched ", matches(utf8(cp)), " sequences");
      }
    }
  }
}

TEST_CASE("token masks equal a token-by-token check, along random walks of JSON") {
  auto vocab = test_vocab();
  auto g = std::make_shared<Grammar>(Grammar::parse(json_object_gbnf()));
  std::mt19937 rng(5);
  for (int walk = 0; walk < 6; ++walk) {
    Matcher m(g, vocab);
    for (int step = 0; step < 60; ++step) {
      const std::vector<std::uint32_t> mask(m.mask().begin(), m.mask().end());
      std::vector<std::uint32_t> allowed;
      for (std::uint32_t t = 0; t < vocab->vocab_size(); ++t) {
        Matcher probe = m;
        const bool ok = probe.accept_token(t);
        const bool bit = (mask[t >> 5] >> (t & 31)) & 1u;
        if (ok != bit) FAIL("token ", t, " '", std::string(vocab->bytes(t)), "': mask ", bit, ", accept ", ok);
        if (ok && t != 1) allowed.push_back(t);
      }
      CHECK_FALSE((mask[0] & 1u));  // control tokens never
      if (allowed.empty()) break;
      REQUIRE(m.accept_token(allowed[rng() % allowed.size()]));
    }
  }
}

TEST_CASE("JSON schemas: random walks give JSON of the schema's shape") {
  auto vocab = test_vocab();
  const char* schema = R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 5},
      "age": {"type": "integer", "minimum": 0},
      "color": {"enum": ["red", "green", 3]},
      "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
      "when": {"type": "string", "format": "date"},
      "id": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
      "pair": {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "null"}], "items": false},
      "child": {"$ref": "#/$defs/node"},
      "maybe": {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 2}]}
    },
    "required": ["name", "color", "id"],
    "additionalProperties": false,
    "$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 1, "maximum": 3},
                                                       "next": {"$ref": "#/$defs/node"}}, "required": ["v"]}}
  })";
  auto g = std::make_shared<Grammar>(Grammar::parse(json_schema_gbnf(json::parse(schema))));
  std::mt19937 rng(3);
  int ended = 0;
  for (int walk = 0; walk < 40; ++walk) {
    Matcher m(g, vocab);
    const auto text = random_walk(m, *vocab, rng);
    if (!text) continue;
    ++ended;
    CAPTURE(*text);
    json::value v = json::parse(*text);
    REQUIRE(v.is_object());
    const json::object& o = v.get_object();
    for (const char* k : {"name", "color", "id"}) CHECK(o.contains(k));
    for (const auto& kv : o) {
      CHECK(std::string_view("name age color tags when id pair child maybe").find(kv.key()) != std::string_view::npos);
    }
    const std::string name(o.at("name").as_string());
    CHECK(!name.empty());
    CHECK(name.size() <= 5 * 6);  // at most 5 characters, each at most a 6-byte escape
    CHECK((o.at("color") == json::value("red") || o.at("color") == json::value("green") || o.at("color") == json::value(3)));
    const std::string id(o.at("id").as_string());
    CHECK(id.size() == 6);
    CHECK(std::isupper(static_cast<unsigned char>(id[0])));
    CHECK(id[2] == '-');
    if (o.contains("age")) CHECK(o.at("age").as_int64() >= 0);
    if (o.contains("tags")) CHECK((o.at("tags").as_array().size() >= 1 && o.at("tags").as_array().size() <= 3));
    if (o.contains("when")) CHECK(o.at("when").as_string().size() == 10);
    if (o.contains("pair")) CHECK(o.at("pair").as_array().size() == 2);
    for (const json::value* c = o.if_contains("child"); c; c = c->as_object().if_contains("next")) {
      const auto v2 = c->as_object().at("v").as_int64();
      CHECK((v2 >= 1 && v2 <= 3));
    }
  }
  CHECK(ended >= 20);
}

TEST_CASE("the 20 test schemas compile, and random walks of each end in JSON") {
  std::ifstream f(VKLLM_SCHEMAS);
  REQUIRE(f.good());
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const json::array list = json::parse(text).as_array();
  CHECK(list.size() == 20);
  auto vocab = test_vocab();
  std::mt19937 rng(17);
  for (const json::value& entry : list) {
    const std::string name(entry.at("name").as_string());
    CAPTURE(name);
    auto g = std::make_shared<Grammar>(Grammar::parse(json_schema_gbnf(entry.at("schema"))));
    int ended = 0;
    for (int walk = 0; walk < 10; ++walk) {
      Matcher m(g, vocab);
      const auto out = random_walk(m, *vocab, rng);
      if (!out) continue;
      ++ended;
      CAPTURE(*out);
      json::error_code ec;
      (void)json::parse(*out, ec);
      CHECK_FALSE(ec);
    }
    CHECK(ended >= 5);
  }
}

TEST_CASE("JSON schemas: what is not supported is refused by name") {
  CHECK(schema_error(R"({"type": "object", "allOf": []})").find("'allOf' is not supported") != std::string::npos);
  CHECK(schema_error(R"({"type": "string", "format": "email"})").find("'email'") != std::string::npos);
  CHECK(schema_error(R"({"type": "number", "minimum": 2})").find("'minimum'") != std::string::npos);
  CHECK(schema_error(R"({"type": "string", "pattern": "abc"})").find("anchored") != std::string::npos);
  CHECK(schema_error(R"({"type": "string", "pattern": "^(?=a)$"})").find("lookaround") != std::string::npos);
  CHECK(schema_error(R"({"$ref": "https://example.com/s.json"})").find("$ref") != std::string::npos);
  CHECK(schema_error(R"({"$ref": "#/$defs/missing"})").find("names no definition") != std::string::npos);
  CHECK(schema_error(R"({"type": "array", "uniqueItems": true})").find("'uniqueItems'") != std::string::npos);
  CHECK(schema_error(R"({"type": "wat"})").find("'wat'") != std::string::npos);
  CHECK(schema_error(R"({"properties": {"a": {"type": "object", "properties": {"b": {"not": {}}}}}})").find("/properties/a/properties/b") != std::string::npos);
  CHECK(schema_error(R"({"type": "integer", "minimum": 5})").find("integer bounds") != std::string::npos);
  CHECK(schema_error(R"(false)").find("accepts nothing") != std::string::npos);
}

TEST_CASE("JSON schemas: a count beyond 64 bits is the largest count, never a conversion overflow") {
  // A fuzz finding: maxItems of 94 digits parses as the double 1.1e93, whose conversion to a
  // 64-bit count was undefined behaviour (UBSan, in the sanitizer build of this test).
  const auto gbnf = [](const std::string& max_items) {
    const std::string schema = R"({"type": "array", "items": {"type": "integer"}, "maxItems": )" + max_items + "}";
    try {
      return json_schema_gbnf(json::parse(schema));
    } catch (const GrammarError& e) {
      return std::string("error: ") + e.what();
    }
  };
  const std::string largest = gbnf("18446744073709551615");
  for (const char* big : {"1e93", "111111111111111111111111111111", "18446744073709551616"}) {
    CAPTURE(big);
    CHECK(gbnf(big) == largest);
  }
  CHECK(schema_error(R"({"type": "array", "maxItems": 1.5})").find("'maxItems' must be a non-negative integer") != std::string::npos);
}

TEST_CASE("lazy grammars: triggers across tokens, at the output's start, as control tokens") {
  // A vocabulary of single bytes (id 2 + b), the control token [TOOL_CALLS] (0), an end token
  // (1), and tokens that cut the triggers.
  std::vector<std::string> v{"", ""};
  for (int b = 0; b < 256; ++b) v.push_back(std::string(1, static_cast<char>(b)));
  const std::uint32_t lt = 258, rest = 259, brace = 260, name = 261, call = 262;
  for (const char* w : {"<tool", "_call>\n{", " {\"", "name\"", "CALL:["}) v.push_back(w);
  auto trie = std::make_shared<const TokenTrie>(v, std::vector<std::uint32_t>{1},
                                                std::unordered_map<std::string, std::uint32_t>{{"[TOOL_CALLS]", 0}});
  auto push_text = [](LazyStart& s, std::string_view text) {
    std::optional<std::string> out;
    for (char c : text) {
      REQUIRE_FALSE(out);  // nothing after the trigger is pushed
      out = s.push(2u + static_cast<std::uint8_t>(c));
    }
    return out;
  };
  const std::vector<Trigger> hermes{{"<tool_call>", false, false}};
  SUBCASE("a word cut across tokens: the grammar takes it and the rest of its token") {
    LazyStart s(hermes, trie);
    CHECK_FALSE(push_text(s, "Let me check. <tool"));
    CHECK_FALSE(s.push(lt));
    CHECK(s.push(rest) == std::optional<std::string>("<tool_call>\n{"));
  }
  SUBCASE("a word after a long output: only the last bytes are kept, the match is the same") {
    LazyStart s(hermes, trie);
    CHECK_FALSE(push_text(s, std::string(20000, 'x') + "<tool_cal"));
    CHECK(push_text(s, "l>") == std::optional<std::string>("<tool_call>"));
  }
  SUBCASE("after: the grammar begins past the word") {
    const std::vector<Trigger> t{{"CALL:", false, true}};
    LazyStart s(t, trie);
    CHECK(push_text(s, "so CALL:") == std::optional<std::string>(""));
    LazyStart t2(t, trie);
    CHECK_FALSE(push_text(t2, "so "));
    CHECK(t2.push(call) == std::optional<std::string>("["));  // what its token adds past it
  }
  SUBCASE("the earliest of two triggers wins") {
    const std::vector<Trigger> t{{"bc", false, false}, {"abc", false, false}};
    LazyStart s(t, trie);
    CHECK(push_text(s, "xxabc") == std::optional<std::string>("abc"));
  }
  const std::vector<Trigger> llama3{{"<|python_tag|>", false, true}, {R"({"name")", true, false}};
  SUBCASE("at the start, after whitespace") {
    LazyStart s(llama3, trie);
    CHECK_FALSE(s.push(2u + '\n'));
    CHECK_FALSE(s.push(brace));
    CHECK(s.push(name) == std::optional<std::string>(R"({"name")"));
  }
  SUBCASE("not at the start: text first rules it out for good") {
    LazyStart s(llama3, trie);
    CHECK_FALSE(push_text(s, "Sure"));
    CHECK_FALSE(s.push(brace));
    CHECK_FALSE(s.push(name));
    CHECK_FALSE(push_text(s, R"( {"name": "f"})"));
  }
  SUBCASE("a start that turns out otherwise: {\"nam then more") {
    LazyStart s(llama3, trie);
    CHECK_FALSE(push_text(s, R"({"nam)"));
    CHECK_FALSE(push_text(s, R"(es": [1]})"));
  }
  SUBCASE("a control token: the grammar begins right after it; its text as bytes is no trigger") {
    const std::vector<Trigger> t{{"[TOOL_CALLS]", false, true}};
    LazyStart s(t, trie);
    CHECK_FALSE(push_text(s, "[TOOL_CALLS]"));
    CHECK(s.push(0) == std::optional<std::string>(""));
    // Not after: the grammar takes the token's text first (Qwen's <tool_call> where it is a
    // control token).
    const std::vector<Trigger> at{{"[TOOL_CALLS]", false, false}};
    LazyStart s2(at, trie);
    CHECK(s2.push(0) == std::optional<std::string>("[TOOL_CALLS]"));
  }
  SUBCASE("a trigger's text the vocabulary has no control token for is looked for as bytes") {
    const std::vector<Trigger> t{{"<|python_tag|>", false, true}};
    LazyStart s(t, trie);
    CHECK(push_text(s, "<|python_tag|>") == std::optional<std::string>(""));
  }
}

TEST_CASE("a shared automaton: matchers on it walk on their own, masks as on their own automata") {
  const auto g = parse_shared(json_schema_gbnf(json::parse(R"({"type": "array", "items": {"enum": ["red", "green"]}})")));
  CHECK(parse_shared(json_schema_gbnf(json::parse(R"({"type": "array", "items": {"enum": ["red", "green"]}})"))) == g);
  CHECK(parse_shared(R"(root ::= "a")") != g);
  auto vocab = test_vocab();
  auto shared = std::make_shared<Automaton>(g, vocab);
  std::mt19937 rng(5);
  for (int round = 0; round < 4; ++round) {
    Matcher alone(g, vocab);
    const auto text = random_walk(alone, *vocab, rng);
    REQUIRE(text);
    // a walks the text while b, on the same automaton, walks it one byte behind.
    Matcher ref(g, vocab);
    Matcher a2(shared), b2(shared);
    for (std::size_t i = 0; i < text->size(); ++i) {
      REQUIRE(a2.accept_bytes(text->substr(i, 1)));
      REQUIRE(ref.accept_bytes(text->substr(i, 1)));
      const auto ma = a2.mask();
      const std::vector<std::uint32_t> mask_a(ma.begin(), ma.end());
      const auto mr = ref.mask();
      CHECK(mask_a == std::vector<std::uint32_t>(mr.begin(), mr.end()));
      if (i > 0) REQUIRE(b2.accept_bytes(text->substr(i - 1, 1)));
    }
    CHECK(a2.can_end());
    if (!text->empty()) REQUIRE(b2.accept_bytes(text->substr(text->size() - 1)));
    CHECK(b2.can_end());
  }
  CHECK(shared->num_states() > 2);
  CHECK_FALSE(shared->full());
}
