// Byte-for-byte comparison with @huggingface/jinja (run under node by tests/jinja_ref.mjs):
// every chat template in ../shared/templates on a set of conversations, and a battery of small
// templates covering each construct. Where the reference raises (Mistral's role alternation
// check, a type error), celer must raise too, with the template's own message for
// raise_exception().
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "common.h"
#include "util/error.h"

namespace celer::chat {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

struct Case {
    std::string name;
    std::string tpl;
    ordered_json context;
};

struct Outcome {
    bool ok = false;
    std::string text;  // output, or the error message
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool have_reference() {
    return fs::exists(std::string(CELER_SOURCE_DIR) + "/node_modules/@huggingface/jinja/package.json") &&
           std::system("node --version > /dev/null 2>&1") == 0;
}

std::vector<Outcome> reference(const std::vector<Case>& cases) {
    ordered_json batch = ordered_json::array();
    for (const auto& c : cases) batch.push_back({{"template", c.tpl}, {"context", c.context}});
    const auto in = test::scratch_dir() / "jinja-batch.json";
    const auto out = test::scratch_dir() / "jinja-out.json";
    std::ofstream(in, std::ios::binary) << ordered_json{{"batch", batch}}.dump();
    const std::string cmd = "cd '" + std::string(CELER_SOURCE_DIR) + "' && node tests/jinja_ref.mjs '" + in.string() + "' > '" +
                            out.string() + "'";
    std::vector<Outcome> results;
    if (std::system(cmd.c_str()) != 0) return results;
    for (const auto& r : nlohmann::json::parse(slurp(out))) {
        const bool ok = r["ok"].get<bool>();
        results.push_back({ok, r[ok ? "output" : "error"].get<std::string>()});
    }
    return results;
}

Outcome celer_render(const Case& c) {
    try {
        return {true, Template(c.tpl).render(c.context)};
    } catch (const Error& e) {
        return {false, e.what()};
    }
}

// Compares one case; returns whether both rendered.
bool compare(const Case& c, const Outcome& ref) {
    const Outcome got = celer_render(c);
    if (ref.ok) {
        EXPECT_TRUE(got.ok) << c.name << ": the reference renders, celer fails: " << got.text;
        if (got.ok) {
            EXPECT_EQ(got.text, ref.text) << c.name;
        }
        return got.ok;
    }
    EXPECT_FALSE(got.ok) << c.name << ": the reference fails (" << ref.text << "), celer renders:\n" << got.text;
    const std::string raised = "raise_exception: ";
    if (const size_t at = got.text.find(raised); !got.ok && at != std::string::npos) {
        EXPECT_EQ(got.text.substr(at + raised.size()), ref.text) << c.name;
    }
    return false;
}

// Conversations in the OpenAI/transformers message format, covering what chat templates branch
// on: system prompt or not, multi-turn, tools, tool calls with object arguments, tool results,
// reasoning, add_generation_prompt, unicode/quotes/newlines, and broken role alternation.
const char* const kConversations = R"json([
 {"name": "single_user", "context": {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": true}},
 {"name": "system_multi_turn", "context": {"add_generation_prompt": false, "messages": [
   {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."},
   {"role": "user", "content": "What is 2+2?"},
   {"role": "assistant", "content": "4"},
   {"role": "user", "content": "And 3+3?"}]}},
 {"name": "tools_query", "context": {"add_generation_prompt": true,
   "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
     "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City, e.g. \"Paris\""},
       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}],
   "messages": [{"role": "system", "content": "You can call tools."}, {"role": "user", "content": "Weather in Paris?"}]}},
 {"name": "tool_call_roundtrip", "context": {"add_generation_prompt": true,
   "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather lookup",
     "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}],
   "messages": [
     {"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [{"id": "abc123XYZ", "type": "function",
       "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius", "days": 2, "hourly": false}}}]},
     {"role": "tool", "tool_call_id": "abc123XYZ", "name": "get_weather", "content": "{\"temperature\": 22, \"sky\": \"clear\"}"},
     {"role": "assistant", "content": "It is 22 °C and clear in Paris."},
     {"role": "user", "content": "Thanks!"}]}},
 {"name": "tool_call_null_content", "context": {"add_generation_prompt": false,
   "messages": [
     {"role": "user", "content": "List /tmp"},
     {"role": "assistant", "content": null, "tool_calls": [{"id": "call00001", "type": "function",
       "function": {"name": "run", "arguments": "{\"cmd\": \"ls /tmp\"}"}}]},
     {"role": "tool", "tool_call_id": "call00001", "content": "a.txt\nb.txt"}]}},
 {"name": "two_parallel_calls", "context": {"add_generation_prompt": true,
   "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
   "messages": [
     {"role": "user", "content": "Read both files."},
     {"role": "assistant", "content": "Reading them.", "tool_calls": [
       {"id": "call0000A", "type": "function", "function": {"name": "read_file", "arguments": {"path": "src/main.cpp", "lines": [1, 20]}}},
       {"id": "call0000B", "type": "function", "function": {"name": "read_file", "arguments": {"path": "README.md", "opts": {"raw": true, "enc": "utf-8"}}}}]},
     {"role": "tool", "tool_call_id": "call0000A", "content": "int main() { return 0; }"},
     {"role": "tool", "tool_call_id": "call0000B", "content": "# celer\n"},
     {"role": "assistant", "content": "Done."}]}},
 {"name": "unicode_quotes_newlines", "context": {"add_generation_prompt": true, "messages": [
   {"role": "system", "content": "  Système: réponds en français. \"Quotes\" and 'single' and “curly” \\ backslash  "},
   {"role": "user", "content": "Emoji 😀👍🏽, CJK 你好世界, RTL שלום, tabs\tand\r\nCRLF, {{ not a tag }} {% neither %}\n\n"},
   {"role": "assistant", "content": "\n  Leading and trailing white space  \n"},
   {"role": "user", "content": "<tool_response>x</tool_response>"}]}},
 {"name": "reasoning_history", "context": {"add_generation_prompt": true, "enable_thinking": false, "messages": [
   {"role": "user", "content": "What is 2+2?"},
   {"role": "assistant", "content": "<think>\nSimple arithmetic.\n</think>\n\nIt is 4."},
   {"role": "user", "content": "And 3+3?"},
   {"role": "assistant", "content": "<think>\nAgain.\n</think>\n\n6", "reasoning_content": null},
   {"role": "user", "content": "Thanks"}]}},
 {"name": "reasoning_whitespace", "context": {"add_generation_prompt": false, "messages": [
   {"role": "user", "content": "Indent it"},
   {"role": "assistant", "content": "<think>\n\n  spaced thought \n\n</think>\n\n   indented answer\n"}]}},
 {"name": "repeated_user_text", "context": {"add_generation_prompt": true,
   "tools": [{"type": "function", "function": {"name": "noop", "description": "Does nothing", "parameters": {}, "return": {"type": "null"}}}],
   "messages": [{"role": "user", "content": "same"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "same"}]}},
 {"name": "bad_alternation", "context": {"add_generation_prompt": true, "messages": [
   {"role": "user", "content": "one"}, {"role": "user", "content": "two"}]}},
 {"name": "system_only", "context": {"add_generation_prompt": true, "messages": [{"role": "system", "content": "Just a system prompt."}]}},
 {"name": "no_generation_flag", "context": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}},
 {"name": "llama_options", "context": {"add_generation_prompt": true, "date_string": "01 Jan 2025", "tools_in_user_message": false,
   "tools": [{"type": "function", "function": {"name": "search", "description": "Web search", "parameters": {"type": "object", "properties": {}}}}],
   "messages": [{"role": "user", "content": "Search for celer"}]}},
 {"name": "empty_messages", "context": {"add_generation_prompt": true, "messages": []}}
])json";

std::vector<Case> template_cases() {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(test::shared_dir() + "/templates")) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<Case> cases;
    for (const auto& f : files) {
        for (const auto& conv : ordered_json::parse(kConversations)) {
            ordered_json ctx = conv["context"];
            ctx["bos_token"] = "<s>";
            ctx["eos_token"] = "</s>";
            cases.push_back({f.filename().string() + " / " + conv["name"].get<std::string>(), slurp(f), ctx});
        }
    }
    return cases;
}

// Small templates, one construct (or one quirk of the reference) each.
const char* const kSnippets[] = {
    "{{ 'a' + 1.0 }}|{{ 1.0 }}|{{ [1, 'a', none, 2.0] }}|{{ {'a': [1, {'b': none}]} }}",
    "{{ 'x' ~ {'a': 1} }}|{{ 'x' + [1, 'b', [2]] }}|{{ 1 == '1' }}|{{ none == nothing }}|{{ true == 1 }}|{{ '' == 0 }}",
    "{{ '  a\n '.strip('\\n') }}|{{ 'héllo😀' | length }}|{{ 'héllo😀'[::-1] }}|{{ 'abc'[-1] }}|{{ 'abc'.length }}",
    "{{ 1 / 0 }}|{{ -7 // 2 }}|{{ -7 % 2 }}|{{ 7.5 // 2 }}|{{ 0.1 + 0.2 }}|{{ 2 ** -1 }}|{{ 2 ** 0.5 }}",
    "{{ {'b': 1, 'a': [1, 2]} | tojson(indent=2) }}|{{ 'é\"\\u0001\\x7f' | tojson }}|{{ 'é😀' | tojson(ensure_ascii=true) }}",
    "{{ [] | tojson(indent=4) }}{{ {} | tojson(indent=4) }}{{ [[]] | tojson(indent=1) }}{{ x | tojson }}",
    "{% for a, b in {'x': 1, 'y': [2]}.items() %}{{ a }}{{ b }}{{ loop.length }}{{ loop.revindex0 }}{% endfor %}",
    "{{ 'a' if false }}|{{ none }}|{{ true }}|{{ x.y.z }}|{{ (x is defined) }}|{{ x is none }}",
    "{{ 'hello world_foo bar-baz'.title() }}|{{ 'aXb' | capitalize }}|{{ ' a  b '.split() }}|{{ 'a,b,,c'.split(',', 2) }}",
    "{{ ' a b  c '.split(none, 1) }}|{{ 'abc'.replace('', '-') }}|{{ 'abcabc'.replace('b', 'XY', 1) }}",
    "{% set ns = namespace(a=1, b=[1]) %}{% set ns.c = ns.a + 1 %}{{ ns.a }}{{ ns.c }}{{ ns | tojson }}{{ ns is mapping }}",
    "{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% else %}none{% endfor %}",
    "{% for x in [1, 2] %}{% break %}{% else %}else ran{% endfor %}",
    "{% for x in [] %}{% else %}empty{% endfor %}|{% for x in [1, 2, 3] if x > 1 %}{{ loop.index }}{{ x }}{% endfor %}",
    "  {% if true %}\n  indented\n  {% endif %}\n{{ 'x' }}\n  {{ 'y' }}  \n{#- c -#}\n z",
    "a\n{%- if true %}\n b {{- ' c ' -}} d\n{% endif -%}\n  e\n",
    "{% macro m(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}",
    "{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'c'] | sort }}{{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}{{ [2, 1] | sort(true) }}",
    "{{ xs | selectattr('role', 'equalto', 'user') | map(attribute='c') | list }}{{ xs | rejectattr('c') | length }}",
    "{{ xs | map(attribute='missing', default='d') | join(',') }}|{{ xs | sort(attribute='c', reverse=true) | map(attribute='c') | join }}",
    "{{ 'a\nb\n\nc' | indent }}|{{ 'a\nb\n\nc' | indent(2, true, true) }}|{{ 'x' | indent(first=true) }}",
    "{{ '42abc' | int }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ 3.9 | int }}|{{ 3.9 | int(0) }}|{{ ' 2.5e1x' | float }}|{{ true | int }}",
    "{{ -3 | abs }}{{ -2.5 | abs }}|{{ [1, 1, '1', 2.0, 2] | unique }}|{{ [1, 2] | reverse }}|{{ [1, 2] | first }}{{ [1, 2] | last }}",
    "{{ d | items }}|{{ d.keys() }}|{{ d.values() }}|{{ d.get('a') }}|{{ d.get('zz', 5) }}|[{{ d.get('zz') }}]|{{ d | length }}",
    "{{ d | dictsort }}|{{ d.dictsort(by='value', reverse=true) }}",
    "{{ 'abc'.startswith(['x', 'a']) }}{{ 'abc'.endswith('bc') }}{{ 'AbC'.upper() }}{{ 'AbC'.lower() }}{{ 'AbC' is upper }}{{ 'abc' is lower }}",
    "{{ xs[0].role }}|{{ xs[-1]['c'] }}|{{ xs[1:] | length }}|{{ xs[::-1][0].c }}|{{ xs[5] }}|{{ xs.length }}",
    "{{ 1 in [1, 2] }}{{ '1' in [1] }}{{ 'a' in 'cat' }}{{ 'k' in {'k': 0} }}{{ 'z' not in 'cat' }}{{ 'x' in nothing }}",
    "{{ 0 or '' or 'last' }}|{{ 1 and [] }}|{{ not [] }}|{{ not not 'x' }}|{{ (1, 2) }}|{{ [1] + [2, 3] }}",
    "{{ x is string }}{{ 1 is number }}{{ 1.5 is integer }}{{ {} is mapping }}{{ [] is iterable }}{{ {} is iterable }}{{ '' is sequence }}",
    "{{ 3 is odd }}{{ 4 is even }}{{ true is boolean }}{{ true is true }}{{ 0 is false }}{{ nothing is undefined }}{{ range is callable }}",
    "{{ range(3) }}{{ range(1, 7, 2) }}{{ range(5, 0, -2) }}{{ range(0) }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}x{{ a }}y{% endset %}{{ t }}{{ t | length }}",
    "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}",
    "{% if false %}a{% elif nothing %}b{% elif 0.0 %}c{% elif 'x' %}d{% else %}e{% endif %}",
    "{{ \"dq 'inner'\" }}{{ 'sq \"inner\"' }}{{ 'esc\\t\\\\\\n' }}{{ '\\u00e9\\ud83d\\ude00' }}",
    "{{ 12 }}{{ -4 }}{{ 3.25 }}{{ -0.5 }}{{ 1 - -1 }}{{ (1 + 2) * 3 }}{{ 2 ** 3 ** 2 }}{{ 10 - 2 - 3 }}{{ 7 % 3 }}",
    "{{ 'Tools: ' + ['a', 'b'] | join(', ') + '!' }}|{{ 'v=' ~ 1.5 ~ true ~ none }}",
    "{{- '  lead' -}}   {{- 'trail  ' }}  {%- set y = 1 %}  .",
    "{{ namespace(x=1) }}|{{ namespace({'a': 1}, b=2).b }}|{{ {'a': 1}['a'] }}|{{ {'a': {'b': 2}}.a.b }}",
    "{{ 'x' ~ [1.0, none, nothing, 'a'] }}|{{ [1.0, 2.5] | string }}|{{ [1.0] | join(',') }}|{{ [none, 'a'] | join('-') }}",
    "{{ 'A-b_c d' | title }}|{{ 'mIxEd' | lower }}|{{ '' | capitalize }}|{{ '  ' | trim | length }}",
    "{{ (1, 2) | length }}|{{ (1, 2) is iterable }}|{{ (1, 2) is sequence }}|{{ 'x' ~ (1, 2) }}|{{ (1, 2) | reverse }}",
    "{{ (1, 2) }}",
    "{{ [none, nothing] | unique | length }}|{{ [[none]] | join }}|{{ [none] | string }}",
    "{{ raise_exception(none) }}",
    "{{ x | default('dflt') }}|{{ none | default('dflt') }}|{{ none | default('dflt', true) }}|{{ 0 | default('z', boolean=true) }}",
    "{{ 'aXbXc'.split('X') }}{{ 'aXbXc'.split('X', 1) }}{{ ''.split() }}{{ ''.split(',') }}{{ 'a  b'.split(' ') }}",
    "{{ \"it's\" | tojson }}{{ '</script>' | tojson }}{{ 'tab\there' | tojson }}{{ 1.5e300 * 1e10 }}",
    "{% generation %}kept{% endgeneration %}|  {%- generation %} x {% endgeneration -%}  |",
    "{{ raise_exception('custom failure: ' ~ 42) }}",
    "{{ nothing.attr }}{{ nothing['k'] is defined }}{{ none.attr is defined }}",
    "{{ 'a' < 'b' }}",
    "{{ {} | string }}",
    "{% for c in 'abc' %}{{ c }}{% endfor %}",
    "{{ [1, 2] | join(1) }}",
    "{{ 'x' * 3 }}",
    "{% set ns = namespace() %}{% set ns.list = ns.list + [1] %}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ xs | selectattr('c', 'odd') | list | length }}",
    // Whitespace: trim_blocks/lstrip_blocks as text rewrites, `-` markers, Unicode white space.
    "a\r\n  {% if true %}\r\n  x\r\n  {% endif %}\r\nb",
    "a\n\t {% if true %}x{% endif %}|a \u00a0{%- if true %}x{% endif %}|{% if true -%} \u3000\u00a0 x{% endif %}",
    "a\u2028  {% if true %}x{% endif %}|{#- c #}\n  x|{# c -#}\n  x|  {# c #}\n  x",
    "{%- if true -%}\n\n  x  \n\n{%- endif -%}|{% if true %}\n\nx{% endif %}|{{ 'x' }}\n\n",
    "{%- for i in range(3) -%}\n  {{ i }}\n{%- endfor -%}|{% for i in range(3) %}\n  {{ i }}\n{% endfor %}",
    "  {% for i in range(2) %}\n    - {{ i }}\n  {% endfor %}\n{% set x2 = 'v' -%}\n   x2 is {{ x2 }}",
    "a {% generation %} b {% endgeneration %} c|a   {%generation%}b{%endgeneration%}   c|a \n {%- generation %} b {% endgeneration -%} \n c",
    "{% filter upper %}abc {{ x }}{% endfilter %}|{% filter indent(2, true) %}a\nb{% endfilter %}",
    // Lexing: signs folded into numbers, nested dict braces inside {{ }}, strings with tag text.
    "{{ -x }}", "{{ - 1 }}{{ 1 -1 }}{{ (1)-1 }}{{ [1][0]-1 }}{{ 1+-1 }}{{ 1 - - 1 }}{{ +1 }}{{ not -1 }}{{ x|length-1 }}",
    "{{ '}}' }}|{{ {'a': {'b': 1}}['a'] }}|{{ {'a': '}}'} }}|{{ '{%' }}{{ '{#' }}|{{ {'a': 1}}}",
    "{{ x.0 }}|{{ xs.0.role }}|{{ xs.1.c }}|{{ x..y }}", "{{ 1.5.5 }}", "{{ .5 }}", "{{ 0x10 }}",
    "{% if x %}a{% else %}b{% else %}c{% endif %}", "{% for x, in xs %}{% endfor %}", "{% set x.y.z = 1 %}",
    "{% for (a, b) in [[1, 2]] %}{{ a }}{{ b }}{% endfor %}|{% set (a, b) = [1, 2] %}{{ a }}",
    "{% for a, b in [[1, 2, 3]] %}{% endfor %}", "{{ x is }}", "{{ x | }}", "{{ f(a=1, 2) }}", "}} %} #} text",
    // Numbers print as JavaScript prints them.
    "{{ 1 / 3 }}|{{ 2 ** 62 }}|{{ 0.000001 }}|{{ 0.0000001 * 1 }}|{{ 123456789.123 }}|{{ 100000000000000000000.0 }}",
    "{{ 1.5 * 2 }}|{{ (1.5 * 2) | string }}|{{ -0.0 }}|{{ 0.0 }}|{{ [1.5 * 2] }}|{{ 5.5 % 2 }}|{{ -5.5 % 2 }}|{{ 1.5e300 * 1e10 }}",
    // Loops, scoping, macros.
    "{% for x in xs %}{{ loop.previtem }}|{{ loop.nextitem }};{% endfor %}",
    "{% for m in xs %}{% for n2 in xs %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}",
    "{% macro m() %}{{ caller_var }}{% endmacro %}{% for caller_var in [1, 2] %}{{ m() }}{% endfor %}",
    "{% macro m(a, b=a) %}{{ b }}{% endmacro %}{{ m(5) }}|{% macro n(x) -%}\n  [{{ x }}]\n{%- endmacro %}{{ n(1) }}{{ n(2) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
    // Equality is JavaScript's loose ==, membership its ===; lists and dicts compare by identity.
    "{{ 1.0 == 1 }}{{ none == false }}{{ 0 == false }}{{ '1.0' == 1 }}{{ ' 1 ' == 1 }}{{ '0x10' == 16 }}{{ '' == false }}",
    "{{ [1, 2] == '1,2' }}{{ d == '[object Map]' }}{{ [] == false }}{{ [0] == false }}{{ [1] == [1] }}{{ xs[0] == xs[0] }}",
    "{{ '  x  '.strip(' ') }}|{{ 'xxaxx'.strip('x') }}|{{ x.split('t') | join('T') }}|{{ xs[0].items() | list }}",
};

std::vector<Case> snippet_cases() {
    const ordered_json ctx = ordered_json::parse(R"({
      "x": "str", "d": {"b": 2, "a": 1, "c": 3},
      "xs": [{"role": "user", "c": 1}, {"role": "bot", "c": 0}, {"role": "user", "c": 3}],
      "messages": [{"role": "user"}, {"role": "user"}]})");
    std::vector<Case> cases;
    for (const char* s : kSnippets) cases.push_back({std::string("snippet ") + s, s, ctx});
    return cases;
}

TEST(JinjaReference, SharedTemplatesMatchByteForByte) {
    if (!fs::exists(test::shared_dir() + "/templates")) GTEST_SKIP() << "../shared/templates is absent";
    if (!have_reference()) GTEST_SKIP() << "node or node_modules/@huggingface/jinja is absent (run scripts/setup.sh)";
    const auto cases = template_cases();
    const auto refs = reference(cases);
    ASSERT_EQ(refs.size(), cases.size()) << "tests/jinja_ref.mjs failed";
    std::map<std::string, int> rendered;  // per template: conversations both rendered
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::string file = cases[i].name.substr(0, cases[i].name.find(" / "));
        rendered[file] += compare(cases[i], refs[i]);
    }
    ASSERT_EQ(rendered.size(), 6u);
    for (const auto& [file, n] : rendered) EXPECT_GE(n, 10) << file << ": too few conversations rendered to mean much";
}

TEST(JinjaReference, ConstructsMatchByteForByte) {
    if (!have_reference()) GTEST_SKIP() << "node or node_modules/@huggingface/jinja is absent (run scripts/setup.sh)";
    const auto cases = snippet_cases();
    const auto refs = reference(cases);
    ASSERT_EQ(refs.size(), cases.size()) << "tests/jinja_ref.mjs failed";
    for (size_t i = 0; i < cases.size(); ++i) compare(cases[i], refs[i]);
}

}  // namespace
}  // namespace celer::chat
