// Compares the template interpreter byte for byte with the original Jinja run as transformers
// runs it (render_reference.py): every shared real chat template on a set of conversations,
// and tricky inline snippets. Must not know the interpreter's internals, only its public API.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/template/template.hpp"
#include "tests/support/shared_data.hpp"
#include "tests/template/oracle.hpp"

namespace {

using vkllm::tmpl::Dict;
using vkllm::tmpl::List;
using vkllm::tmpl::Template;
using vkllm::tmpl::TemplateError;
using vkllm::tmpl::Value;

Value str(std::string s) { return Value::string(std::move(s)); }

struct Outcome {
  bool ok = false;
  std::string output;
  bool raised = false;
  std::string message;
};

Outcome render_ours(const Template* t, const std::string& parse_error, const Value& context, std::int64_t now) {
  Outcome o;
  if (!t) {
    o.message = parse_error;
    return o;
  }
  try {
    vkllm::tmpl::RenderOptions options;
    options.now = static_cast<std::time_t>(now);
    // Real templates on real conversations stay far below the default budget (10M steps).
    options.limits.max_steps = 200'000;
    o.output = t->render(context, options);
    o.ok = true;
  } catch (const TemplateError& e) {
    o.raised = e.raised();
    o.message = e.raised() ? e.detail() : e.what();
  }
  return o;
}

// Returns an empty string when ours agrees with the oracle, else a description.
std::string disagreement(const vkllm::test::OracleResult& want, const Outcome& got) {
  if (want.ok && got.ok) {
    return want.output == got.output ? std::string() : "output differs " + vkllm::test::first_difference(want.output, got.output);
  }
  if (want.ok) return "jinja2 rendered but we failed: " + got.message;
  if (got.ok) return "jinja2 failed (" + want.error + ") but we rendered:\n" + got.output.substr(0, 300);
  if (want.raised != got.raised) return "error kinds differ: jinja2 " + want.error + " / ours " + got.message;
  if (want.raised && want.message != got.message) {
    return "raise_exception messages differ: '" + want.message + "' vs '" + got.message + "'";
  }
  return {};
}

Value case_context(const Dict& c, const Dict& root) {
  vkllm::tmpl::ChatInputs in;
  in.messages = *c.find("messages");
  if (const Value* t = c.find("tools")) in.tools = *t;
  if (const Value* d = c.find("documents")) in.documents = *d;
  in.add_generation_prompt = c.find("add_generation_prompt")->as_bool();
  in.bos_token = root.find("bos_token")->as_string();
  in.eos_token = root.find("eos_token")->as_string();
  if (const Value* extra = c.find("extra")) in.extra = extra->as_dict();
  return vkllm::tmpl::make_chat_context(in);
}

}  // namespace

TEST_CASE("every shared chat template renders byte for byte like transformers") {
  VKLLM_REQUIRE_SHARED(shared);
  namespace fs = std::filesystem;
  std::vector<fs::path> templates;
  for (const auto& entry : fs::directory_iterator(shared / "templates")) {
    if (entry.path().extension() == ".jinja") templates.push_back(entry.path());
  }
  std::sort(templates.begin(), templates.end());
  REQUIRE_FALSE(templates.empty());

  const Value conv = vkllm::tmpl::parse_json(vkllm::test::read_file(fs::path(VKLLM_TEMPLATE_TEST_DIR) / "conversations.json"));
  const Dict& root = conv.as_dict();
  const std::int64_t now = root.find("now")->as_int();
  const List& cases = root.find("cases")->as_list();

  List jobs;
  for (const auto& path : templates) {
    for (const Value& c : cases) {
      Dict job;
      job.set(str("template"), str(path.string()));
      job.set(str("context"), case_context(c.as_dict(), root));
      jobs.push_back(Value::dict(std::move(job)));
    }
  }
  const auto want = vkllm::test::run_oracle(Value::list(jobs), now);
  REQUIRE(want.size() == jobs.size());

  std::size_t job = 0, agree = 0, rendered = 0;
  for (const auto& path : templates) {
    std::optional<Template> t;
    std::string parse_error;
    try {
      t = Template::parse(vkllm::test::read_file(path));
    } catch (const TemplateError& e) {
      parse_error = e.what();
    }
    std::size_t template_agree = 0;
    for (const Value& c : cases) {
      const Value& context = *jobs[job].as_dict().find("context");
      const Outcome got = render_ours(t ? &*t : nullptr, parse_error, context, now);
      const std::string diff = disagreement(want[job], got);
      const std::string case_name = c.as_dict().find("name")->as_string();
      if (diff.empty()) {
        ++agree;
        ++template_agree;
        rendered += got.ok;
      } else {
        FAIL_CHECK(path.filename().string() << " / " << case_name << ": " << diff);
      }
      ++job;
    }
    MESSAGE(path.filename().string() << ": " << template_agree << "/" << cases.size() << " conversations agree");
  }
  MESSAGE(agree << "/" << jobs.size() << " template x conversation renders agree with jinja2 (" << rendered
                << " rendered text, the rest are errors on both sides)");
  CHECK(agree == jobs.size());
}

// Each snippet runs through both renderers with the context given as JSON.
struct Snippet {
  const char* source;
  const char* context;
};

constexpr Snippet kSnippets[] = {
    {"  {% if x %}\n    yes\n  {% endif %}\nafter", R"({"x": true})"},
    {"a  {%- if x -%}  b  {%- endif -%}  c", R"({"x": true})"},
    {"{% for i in xs %}\n  {{ i }}\n{% endfor %}\n", R"({"xs": [1, 2, 3]})"},
    {"{# comment #}\nx {# c2 -#}   y\n  {#- c3 #} z", "{}"},
    {"{{ 'a' }}   {% if true %}x{% endif %}", "{}"},
    {"{%+ if true %}  kept{% endif +%}\nnext", "{}"},
    {"line1\r\nline2\rline3\n", "{}"},
    {"{% raw %}{{ not }} {% evaluated %}{% endraw %}!", "{}"},
    {"{{ 1 + 2 * 3 - 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }}", "{}"},
    {"{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1.5e-7 }} {{ 3.0 }} {{ -0.0 }} {{ 1/3 }}", "{}"},
    {"{{ 'a' ~ 1 ~ none ~ true ~ undefined_var }} {{ 'x' * 3 }} {{ [1] * 2 }} {{ [1, 2] + [3] }}", "{}"},
    {"{{ [1, 'a', none, true, 1.5, {'k': 'v'}, (1,), ()] }} {{ {'a': [1, {'b': none}]} }}", "{}"},
    {"{{ \"it's\" }} {{ ['it\\'s', \"say \\\"hi\\\"\", 'both \\' \"', 'tab\\t', '\\u00e9\\n'] }}", "{}"},
    {"{{ x|tojson }} {{ x|tojson(indent=2) }} {{ x|tojson(indent='\\t') }} {{ [] |tojson(indent=2) }} {{ {}|tojson }}",
     R"({"x": {"s": "Zürich \"q\" \\ \n \u0001 \u007f é 🚀", "n": null, "f": 1.0, "i": -3, "b": [true, false], "e": {}}})"},
    {"{{ 'Hello World'|lower }} {{ 'hello world'|upper }} {{ \"hello wORLD it's-a (test)\"|title }} {{ 'hELLO'|capitalize }}", "{}"},
    {"{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ '  a b  '.strip() }}|{{ '--a--'.lstrip('-') }}|{{ 'a\\n\\n'.rstrip('\\n') }}", "{}"},
    {"{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a/b/c'.rsplit('/', 1) }}", "{}"},
    {"{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} {{ 'hello'.find('l') }} {{ 'héllo'.find('l') }} {{ 'hello'.count('l') }}", "{}"},
    {"{{ 'aaa'.replace('a', 'b', 2) }} {{ 'abc'|replace('b', 'X') }} {{ 'x'.replace('', '-') }}", "{}"},
    {"{{ 'héllo'|length }} {{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ 'héllo'[::-1] }} {{ [1,2,3,4,5][1:-1] }} {{ [1,2,3,4,5][::2] }} {{ [1,2,3][5:] }}", "{}"},
    {"{{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') }} {{ d.get('z', 9) }} {{ d.get('z') }}", R"({"d": {"a": 1, "b": 2}})"},
    {"{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %} {% for k, v in d.items() %}{{ loop.index }}{{ k }}{% endfor %}", R"({"d": {"b": 1, "a": 2}})"},
    {"{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }}|{% endfor %}", R"({"xs": ["a", "b", "c"]})"},
    {"{% for x in xs if x > 1 %}{{ x }}{{ loop.last }}{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}", R"({"xs": [1, 2, 3]})"},
    {"{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", R"({"xs": [1, 2, 3, 4, 5]})"},
    {"{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}", "{}"},
    {"{% set ns = namespace(n=0, items=[]) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.n }} {{ ns.items }} {{ ns }}", "{}"},
    {"{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', punct='?') }} {{ greet('C', 'Hi', '.', 4, extra=5) }}", "{}"},
    {"{% macro m() %}[{{ caller('x') }}]{% endmacro %}{% call(v) m() %}inner {{ v }}{% endcall %}", "{}"},
    {"{% set block %}\n  captured {{ 1 + 1 }}\n{% endset %}{{ block|trim }}|{% filter upper %}shout {{ 'x' }}{% endfilter %}", "{}"},
    {"{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ none is none }} {{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }}", R"({"x": 0})"},
    {"{{ 's' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 's' is iterable }} {{ y is iterable }} {{ {} is sequence }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 2 is in [1, 2] }}", "{}"},
    {"{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ 'a' is eq 'a' }} {{ 2 is gt 1 }} {{ 'ab' is lower }} {{ 'AB' is upper }}", "{}"},
    {"{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' in 'cat' }} {{ 'x' not in ['x'] }} {{ 'k' in {'k': 1} }} {{ y in [] }} {{ 'q' in y }}", "{}"},
    {"{{ '' or 'fallback' }} {{ 0 and 1 }} {{ [] or none }} {{ not '' }} {{ 'a' if x else 'b' }} {{ 'a' if not x }}|{{ x and 'yes' or 'no' }}", R"({"x": 0})"},
    {"{{ xs|length }} {{ xs|count }} {{ xs|first }} {{ xs|last }} {{ xs|join('-') }} {{ xs|reverse|list }} {{ 'abc'|list }} {{ xs|sum }} {{ xs|min }} {{ xs|max }} {{ [] |first is defined }}", R"({"xs": [3, 1, 2]})"},
    {"{{ ps|map(attribute='n')|join(',') }} {{ ps|selectattr('a')|map(attribute='n')|list }} {{ ps|rejectattr('a')|list|length }} {{ ps|selectattr('n', 'equalto', 'y')|list }} {{ ps|map(attribute='z', default='d')|list }}", R"({"ps": [{"n": "x", "a": true}, {"n": "y", "a": false}, {"n": "z", "a": 1}]})"},
    {"{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ ['a', none, '']|select|list }} {{ [1, 2]|map('string')|list }} {{ ['x', 'y']|map('upper')|join }}", "{}"},
    {"{{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ps|sort(attribute='k')|map(attribute='k')|list }} {{ ['a', 'A', 'b', 'a']|unique|list }}", R"({"ps": [{"k": 2}, {"k": 1}, {"k": 3}]})"},
    {"{{ d|dictsort }} {{ d|dictsort(by='value') }} {{ d|dictsort(reverse=true) }} {{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 0)|list }}", R"({"d": {"b": 1, "a": 3, "C": 2}})"},
    {"{{ y|default('dflt') }} {{ ''|default('e') }} {{ ''|default('e', true) }} {{ none|d('n') }} {{ x|d('no') }}", R"({"x": 0})"},
    {"{{ '42'|int }} {{ '42.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '3.5'|float }} {{ 'q'|float }} {{ 2|float }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|round }} {{ 7|round }} {{ 2.1|round(method='ceil') }}", "{}"},
    {"{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'x'|indent('>> ', first=true) }}", "{}"},
    {"{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|safe }} {{ 'one two  three'|wordcount }} {{ 5|string ~ 'x' }} {{ none|string }}", "{}"},
    {"{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ dict(a=1, b='x') }} {{ namespace(a=1).a }}", "{}"},
    {"{{ '{} and {}'.format('x', 1) }} {{ '{0}{0}{name}'.format('a', name='b') }} {{ ', '.join(['a', 'b']) }} {{ 'a-b'.split('-')[-1] }}", "{}"},
    {"{{ 'Hello World'.title() }} {{ 'hello'.upper() }} {{ 'AbC'.lower() }} {{ 'abc'.capitalize() }} {{ 'a\\nb'.splitlines() }} {{ '123'.isdigit() }}", "{}"},
    {"{{ m.content if m.content is string else m.content|tojson }} {{ m.missing }}|{{ m['role'] }} {{ m.role|upper }}", R"({"m": {"role": "user", "content": [1, "two"]}})"},
    {"{{ d.items is callable }}|{{ d['items'] }}|{{ d.get is defined }}|{{ d.foo }}|{{ d.items.x is defined }}", R"({"d": {"items": [1], "foo": "bar"}})"},
    {"{{ x.y }}", "{}"},
    {"{{ x + 1 }}", "{}"},
    {"{{ 'a' + 1 }}", "{}"},
    {"{% for x in none %}{% endfor %}", "{}"},
    {"{{ raise_exception('custom failure ✗') }}", "{}"},
    {"{{ [1, 2].append(3) }}", "{}"},
    {"{{ strftime_now('%Y-%m-%d %H:%M %A %B %d') }}", "{}"},
    {"{% if x %}unterminated", R"({"x": 1})"},
    {"{{ 'abc' | nosuchfilter }}", "{}"},
    {"{{ xs[0] }}{{ xs[-1] }}{{ xs[10] }}|{{ xs.0 }}|{{ (xs|first).upper() }}", R"({"xs": ["a", "b"]})"},
    {"{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (1, 'x') %}{{ t }}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", "{}"},
    {"{{ 'adjacent' 'strings' }} {{ {'a': 1,} }} {{ [1, 2,] }} {{ (1, 2,) }}", "{}"},
    {"{% generation %}gen {{ 1 }}{% endgeneration %}", "{}"},
    {"{%- set x = 5 -%}\n\n   {{- x -}}   \n\n{%- if x > 3 %}\n    big\n{%- endif %}\n", "{}"},
    {"{%- macro render(x, depth=0) -%}{%- if x is mapping -%}{ {%- for k, v in x.items() -%}{{ k }}:{{ render(v, depth + 1) }}{%- if not loop.last %},{% endif -%}{%- endfor -%} }{%- else -%}{{ x }}{%- endif -%}{%- endmacro -%}{{ render(d) }}", R"({"d": {"a": {"b": 1, "c": {"d": [1]}}, "e": "f"}})"},
    {"{{ 'ÀÉÎ'|lower }} {{ 'straße'|upper }} {{ 'ñandú'|title }} {{ 'привет мир'|upper }} {{ 'ΑΒΓ'|lower }}", "{}"},
    {"{{ messages[0].content.split('</think>')[-1].lstrip('\\n') }}", R"({"messages": [{"content": "<think>\nhm\n</think>\n\nanswer"}]})"},
};

TEST_CASE("inline snippets render like jinja2") {
  List jobs;
  for (const Snippet& s : kSnippets) {
    Dict job;
    job.set(str("source"), str(s.source));
    job.set(str("context"), vkllm::tmpl::parse_json(s.context));
    jobs.push_back(Value::dict(std::move(job)));
  }
  const std::int64_t now = 1721995200;
  const auto want = vkllm::test::run_oracle(Value::list(jobs), now);
  REQUIRE(want.size() == jobs.size());
  std::size_t agree = 0;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    std::optional<Template> t;
    std::string parse_error;
    try {
      t = Template::parse(kSnippets[i].source);
    } catch (const TemplateError& e) {
      parse_error = e.what();
    }
    const Outcome got = render_ours(t ? &*t : nullptr, parse_error, *jobs[i].as_dict().find("context"), now);
    const std::string diff = disagreement(want[i], got);
    if (diff.empty()) {
      ++agree;
    } else {
      FAIL_CHECK("snippet " << i << " " << std::string(kSnippets[i].source) << "\n  " << diff);
    }
  }
  MESSAGE(agree << "/" << jobs.size() << " snippets agree with jinja2");
}
