// Unit tests of the template interpreter: expressions, filters, loops, macros, whitespace
// control, errors with lines, the sandbox's budgets and attribute whitelist. Must not need python.
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>
#include <string>

#include "engine/template/template.hpp"

namespace {

using vkllm::tmpl::Dict;
using vkllm::tmpl::RenderOptions;
using vkllm::tmpl::Template;
using vkllm::tmpl::TemplateError;
using vkllm::tmpl::Value;

std::string render(std::string_view source, std::string_view context_json = "{}", const RenderOptions& options = {}) {
  return Template::parse(source).render(vkllm::tmpl::parse_json(context_json), options);
}

// The error a render throws (parse or runtime), or "" when it renders.
TemplateError render_error(std::string_view source, std::string_view context_json = "{}", const RenderOptions& options = {}) {
  try {
    render(source, context_json, options);
  } catch (const TemplateError& e) {
    return e;
  }
  FAIL("expected a TemplateError for: " << source);
  return TemplateError("unreachable");
}

}  // namespace

TEST_CASE("expressions follow Python semantics") {
  CHECK(render("{{ 1 + 2 * 3 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 8 }}") == "7|3.5|3|2|256");
  CHECK(render("{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 2.0 }}|{{ 1e-5 }}") == "0.30000000000000004|1e+16|2.0|1e-05");
  CHECK(render("{{ 'a' ~ 1 ~ none }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}") == "a1None|abab|[1, 2]");
  CHECK(render("{{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 3 not in [1] }} {{ 1 < 2 < 3 }}") == "True True True True");
  CHECK(render("{{ '' or 'x' }}|{{ 0 and 1 }}|{{ 'y' if none else 'n' }}") == "x|0|n");
  CHECK(render("{{ [1, 'a', none, {'k': (1,)}] }}") == "[1, 'a', None, {'k': (1,)}]");
  CHECK(render("{{ \"it's\" }}|{{ [\"it's\"] }}") == "it's|[\"it's\"]");
  CHECK(render("{{ 'héllo'[1:3] }}|{{ 'héllo'|length }}|{{ [1,2,3][::-1] }}") == "él|5|[3, 2, 1]");
  CHECK_THROWS_AS(render("{{ 9223372036854775807 + 1 }}"), TemplateError);
}

TEST_CASE("undefined behaves like jinja2's default Undefined") {
  CHECK(render("[{{ missing }}]") == "[]");
  CHECK(render("{{ missing is defined }}|{{ d.nokey is defined }}", R"({"d": {}})") == "False|False");
  CHECK(render("{% for x in missing %}x{% endfor %}{{ missing|length }}") == "0");
  CHECK(render("{{ 'q' in missing }}|{{ missing|default('d') }}") == "False|d");
  CHECK(render_error("{{ missing.attr }}").detail() == "'missing' is undefined");
  CHECK_THROWS_AS(render("{{ missing + 1 }}"), TemplateError);
  CHECK_THROWS_AS(render("{{ missing() }}"), TemplateError);
}

TEST_CASE("filters") {
  CHECK(render("{{ x|tojson }}", R"({"x": {"b": [1, 2.5, null], "a": "é\"\n"}})") ==
        R"({"b": [1, 2.5, null], "a": "é\"\n"})");
  CHECK(render("{{ x|tojson(indent=2) }}", R"({"x": {"a": [1], "b": {}}})") == "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  CHECK(render("{{ '  x '|trim }}|{{ 'ab'|upper }}|{{ 'hello world'|title }}|{{ 'aXb'|replace('X', '-') }}") ==
        "x|AB|Hello World|a-b");
  CHECK(render("{{ xs|join(', ') }}|{{ xs|first }}|{{ xs|last }}|{{ xs|length }}|{{ xs|sort|list }}|{{ xs|sum }}",
               R"({"xs": [3, 1, 2]})") == "3, 1, 2|3|2|3|[1, 2, 3]|6");
  CHECK(render("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }}",
               R"({"ms": [{"role": "user", "c": "a"}, {"role": "bot", "c": "b"}, {"role": "user", "c": "c"}]})") == "ac");
  CHECK(render("{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}|{{ d|dictsort }}", R"({"d": {"b": 1, "a": 2}})") ==
        "b1a2|[('a', 2), ('b', 1)]");
  CHECK(render("{{ 'a\nb'|indent(2) }}|{{ '4.5'|float }}|{{ '12'|int + 1 }}|{{ -2|abs }}|{{ 2.5|round }}") ==
        "a\n  b|4.5|13|2|2.0");
  CHECK(render("{{ none|default('x') }}|{{ missing|d('x') }}|{{ ''|default('x', true) }}") == "None|x|x");
}

TEST_CASE("loops, loop variables, filtering and loop controls") {
  CHECK(render("{% for x in xs %}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }},{% endfor %}",
               R"({"xs": ["a", "b"]})") == "1TrueFalse2,2FalseTrue2,");
  CHECK(render("{% for x in xs if x is odd %}{{ x }}{{ loop.length }}{% endfor %}", R"({"xs": [1, 2, 3]})") == "1232");
  CHECK(render("{% for x in [] %}a{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}") ==
        "0134");
  CHECK(render("{% for x in xs %}{{ loop.previtem }}>{{ loop.nextitem }} {% endfor %}", R"({"xs": [1, 2, 3]})") ==
        ">2 1>3 2> ");
  // {% set %} inside a loop does not leak out; namespace() carries state.
  CHECK(render("{% set x = 1 %}{% for i in [5] %}{% set x = i %}{% endfor %}{{ x }}") == "1");
  CHECK(render("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}") == "6");
}

TEST_CASE("macros, call blocks and block set") {
  CHECK(render("{% macro f(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ f(1) }}{{ f(1, b=2) }}") == "1B12");
  CHECK(render("{% macro f() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ f(1, k=2) }}") == "(1,){'k': 2}");
  CHECK(render("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}") == "<in>");
  CHECK(render("{% set b %}x{{ 1 }}{% endset %}{{ b }}") == "x1");
  CHECK(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}") ==
        "120");
}

TEST_CASE("whitespace control with trim_blocks and lstrip_blocks") {
  CHECK(render("  {% if true %}\n    x\n  {% endif %}\ny") == "    x\ny");
  CHECK(render("a  {%- if true -%}  b  {%- endif -%}  c") == "abc");
  CHECK(render("{{ 'v' }}  \n  {{- 'w' }}") == "vw");
  CHECK(render("{# c #}\nx {#- c -#} y") == "xy");
  CHECK(render("{%+ if true %}  k{% endif %}") == "  k");
  CHECK(render("a\r\nb\n") == "a\nb");
  CHECK(render("{% raw %}{{ x }}{% endraw %}") == "{{ x }}");
}

TEST_CASE("errors carry the template line") {
  const TemplateError parse = render_error("line1\n{% if x %}\nno end");
  CHECK(parse.line() >= 2);
  const TemplateError runtime = render_error("a\nb\n{{ 1 + 'x' }}");
  CHECK(runtime.line() == 3);
  CHECK(std::string(runtime.what()).find("line 3") != std::string::npos);
  const TemplateError raised = render_error("\n{{ raise_exception('roles must alternate') }}");
  CHECK(raised.raised());
  CHECK(raised.detail() == "roles must alternate");
  CHECK(raised.line() == 2);
  CHECK_THROWS_AS(render("{% endfor %}"), TemplateError);
  CHECK_THROWS_AS(render("{{ 'unterminated }}"), TemplateError);
  CHECK_THROWS_AS(render("{% include 'x' %}"), TemplateError);
  // Regression (long fuzz_template run, 2026-12-03): a slice among several subscripts was a
  // slice node without a target, evaluated through a null pointer.
  CHECK(render_error("{{ [1, 2][0:1, 1] }}").detail().find("slice") != std::string::npos);
  CHECK(render_error("{{ 'ab'[0, :] }}").detail().find("slice") != std::string::npos);
  CHECK(render("{{ [1, 2, 3][1:] }}{{ 'abc'[::-1] }}") == "[2, 3]cba");
  // It is an InvalidRequest for the server.
  CHECK_THROWS_AS(render("{{ raise_exception('x') }}"), vkllm::InvalidRequest);
}

TEST_CASE("sandbox: budgets") {
  RenderOptions small;
  small.limits.max_steps = 100'000;
  const TemplateError steps =
      render_error("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "{}", small);
  CHECK(steps.detail().find("steps") != std::string::npos);
  RenderOptions tiny;
  tiny.limits.max_output_bytes = 1000;
  CHECK(render_error("{% for i in range(2000) %}x{% endfor %}", "{}", tiny).detail().find("bytes") != std::string::npos);
  CHECK_THROWS_AS(render("{{ 'x' * 100000000 }}", "{}", tiny), TemplateError);
  CHECK_THROWS_AS(render("{{ range(1000000)|length }}"), TemplateError);  // jinja2's MAX_RANGE
  const TemplateError depth = render_error("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}");
  CHECK(depth.detail().find("depth") != std::string::npos);
  // Deeply nested source is refused at parse time instead of overflowing the stack.
  CHECK_THROWS_AS(Template::parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"), TemplateError);
  CHECK_THROWS_AS(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}"), TemplateError);
}

TEST_CASE("sandbox: no attribute escape, immutable containers") {
  CHECK_THROWS_AS(render("{{ ''.__class__ }}"), TemplateError);
  CHECK_THROWS_AS(render("{{ ''.__class__.__mro__[1].__subclasses__() }}"), TemplateError);
  CHECK_THROWS_AS(render("{{ x._private }}", R"({"x": {"_private": 1}})"), TemplateError);
  CHECK(render("{{ x['__class__'] }}|{{ x['_k'] }}", R"({"x": {"_k": 1}})") == "|1");
  CHECK_THROWS_AS(render("{{ [].append(1) }}"), TemplateError);
  CHECK_THROWS_AS(render("{{ d.update({'a': 1}) }}", R"({"d": {}})"), TemplateError);
  CHECK(render("{{ cycler is defined }}|{{ lipsum is defined }}|{{ self is defined }}") == "False|False|False");
}

TEST_CASE("strftime_now uses the pinned clock") {
  RenderOptions options;
  options.now = 0;
  const char* old_tz = std::getenv("TZ");
  const std::string saved = old_tz ? old_tz : "";
  setenv("TZ", "UTC", 1);
  tzset();
  CHECK(render("{{ strftime_now('%Y-%m-%d') }}", "{}", options) == "1970-01-01");
  if (old_tz) setenv("TZ", saved.c_str(), 1);
  else unsetenv("TZ");
  tzset();
}

TEST_CASE("ChatML fallback and chat context") {
  const Template chatml = Template::parse(vkllm::tmpl::kChatmlTemplate);
  vkllm::tmpl::ChatInputs in;
  in.messages = vkllm::tmpl::parse_json(R"([{"role": "user", "content": "hi"}])");
  in.add_generation_prompt = true;
  CHECK(chatml.render(vkllm::tmpl::make_chat_context(in)) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  // tools and documents are defined (None) like transformers passes them.
  const Template t = Template::parse("{{ tools is defined }}{{ tools is none }}{{ documents is none }}");
  CHECK(t.render(vkllm::tmpl::make_chat_context(in)) == "TrueTrueTrue");
}

TEST_CASE("JSON in and out") {
  const Value v = vkllm::tmpl::parse_json(R"({"a": [1, 2.5, true, null, "\u00e9\ud83d\ude80"], "b": {}})");
  CHECK(vkllm::tmpl::to_json(v) == "{\"a\": [1, 2.5, true, null, \"é🚀\"], \"b\": {}}");
  CHECK_THROWS_AS(vkllm::tmpl::parse_json("{\"a\": }"), TemplateError);
  CHECK_THROWS_AS(vkllm::tmpl::parse_json(std::string(10000, '[')), TemplateError);
}
