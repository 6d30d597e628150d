// The chat-template interpreter, construct by construct, and its errors: every malformed or
// unsupported template and every runaway one must end in a celer::Error with a position.
// (test_jinja_reference.cpp compares whole templates with @huggingface/jinja.)
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "util/error.h"

namespace celer::chat {
namespace {

using nlohmann::ordered_json;

std::string render(std::string_view tpl, const ordered_json& ctx = ordered_json::object()) {
    return Template(tpl).render(ctx);
}

// The error message of parsing and rendering tpl, or "" if it succeeds.
std::string error_of(std::string_view tpl, const ordered_json& ctx = ordered_json::object()) {
    try {
        Template(tpl).render(ctx);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

#define EXPECT_ERROR(tpl, ...)                                                   \
    do {                                                                         \
        const std::string msg_ = error_of(tpl);                                  \
        EXPECT_FALSE(msg_.empty()) << "no error for: " << tpl;                   \
        for (const char* part : {__VA_ARGS__})                                   \
            EXPECT_NE(msg_.find(part), std::string::npos) << msg_ << " lacks " << part; \
    } while (0)

TEST(JinjaBasics, TextExpressionsAndLiterals) {
    EXPECT_EQ(render("plain text"), "plain text");
    EXPECT_EQ(render("a{{ 1 + 2 }}b"), "a3b");
    EXPECT_EQ(render("{{ 'x' ~ 1 ~ [1, 'a'] }}"), "x11,a");
    EXPECT_EQ(render(R"({{ "tab\there" }}|{{ 'it\'s' }}|{{ "\u00e9\x41" }}|{{ 'a' 'b' }})"), "tab\there|it's|\xc3\xa9" "A|ab");
    EXPECT_EQ(render("{{ true }} {{ True }} {{ false }} {{ none }}|{{ None }}|"), "true true false ||");
    EXPECT_EQ(render("{{ [1, 2.5, 'x', none, true] }} {{ {'a': {'b': []}} }}"), R"([1, 2.5, "x", null, true] {"a": {"b": []}})");
    EXPECT_EQ(render("{{ 2.0 }} {{ 1.5 }} {{ -3 }} {{ 10 / 4 }} {{ 4 / 2 }}"), "2.0 1.5 -3 2.5 2.0");
    EXPECT_EQ(render("{{ name }}", {{"name", "world"}}), "world");
    EXPECT_EQ(render("[{{ undefined_thing }}]"), "[]");
}

TEST(JinjaBasics, IfElifElse) {
    const std::string t = "{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %}";
    EXPECT_EQ(render(t, {{"x", 3}}), "big");
    EXPECT_EQ(render(t, {{"x", 2}}), "two");
    EXPECT_EQ(render(t, {{"x", 1}}), "small");
    EXPECT_EQ(render("{% if [] %}a{% elif {} %}b{% elif '' %}c{% elif 0 %}d{% else %}e{% endif %}"), "e");
    EXPECT_EQ(render("{{ 'y' if x else 'n' }}{{ 'z' if x }}", {{"x", false}}), "n");
}

TEST(JinjaBasics, ForLoops) {
    EXPECT_EQ(render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}",
                     {{"xs", {"a", "b", "c"}}}),
              "01a,12b,23c");
    EXPECT_EQ(render("{% for x in xs %}{{ loop.first }}{{ loop.length }}{{ loop.revindex }} {% endfor %}", {{"xs", {1, 2}}}),
              "true22 false21 ");
    EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"b", 1}, {"a", 2}}}}), "b=1;a=2;");
    EXPECT_EQ(render("{% for k in d %}{{ k }}{% endfor %}", {{"d", {{"x", 1}, {"y", 2}}}}), "xy");
    EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
    EXPECT_EQ(render("{% for x in range(10) %}{% if x == 4 %}{% break %}{% endif %}{% if x % 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
              "02");
    EXPECT_EQ(render("{% for x in range(6) if x is even %}{{ x }}{{ loop.length }} {% endfor %}"), "03 23 43 ");
    EXPECT_EQ(render("{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}"), "37");
    EXPECT_EQ(render("{% for x in [1] %}{% set y = 5 %}{% endfor %}[{{ y }}]"), "[]");  // loop scope
}

TEST(JinjaBasics, SetAndNamespace) {
    EXPECT_EQ(render("{% set a = 1 %}{% set b, c = [2, 3] %}{{ a + b + c }}"), "6");
    EXPECT_EQ(render("{% set t %}block {{ 1 }}{% endset %}[{{ t }}]"), "[block 1]");
    EXPECT_EQ(render("{% set ns = namespace(n=0, s='') %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}"),
              "6");
    EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.a = 'x' %}{{ ns.a }}{{ ns }}"), "x{\"a\": \"x\"}");
    EXPECT_EQ(render("{% if true %}{% set v = 'set in if' %}{% endif %}{{ v }}"), "set in if");
}

TEST(JinjaBasics, Macros) {
    EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                     "{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }}"),
              "Hi Ann! Hi Bob? Hi Cy.");
    EXPECT_EQ(render("{% macro f() %}{{ outer }}{% endmacro %}{% set outer = 7 %}{{ f() }}"), "7");
    EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}"),
              "120");
}

TEST(JinjaWhitespace, ControlMarkersAndBlockTrimming) {
    EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
    EXPECT_EQ(render("a  {{- 'x' -}}  b"), "axb");
    EXPECT_EQ(render("a {#- note -#} b"), "ab");
    // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it.
    EXPECT_EQ(render("{% if true %}\n    yes\n    {% endif %}\nafter"), "    yes\nafter");
    EXPECT_EQ(render("{{ 'x' }}\nkept"), "x\nkept");  // not after expressions
    EXPECT_EQ(render("line\n"), "line");              // one trailing newline is dropped
    EXPECT_EQ(render("line\n\n"), "line\n");
    EXPECT_EQ(render("{# comment #}text"), "text");
}

TEST(JinjaWhitespace, GenerationTagIsDropped) {
    EXPECT_EQ(render("a {% generation %}b{% endgeneration %} c"), "a b c");
    EXPECT_EQ(render("a {%- generation -%} b"), "ab");
}

TEST(JinjaFilters, Json) {
    const ordered_json tool = ordered_json::parse(R"({"name": "f", "args": {"q": "\"quoted\"\n", "n": [1, 2.5, true, null]}, "u": "é😀"})");
    EXPECT_EQ(render("{{ t | tojson }}", {{"t", tool}}),
              R"({"name": "f", "args": {"q": "\"quoted\"\n", "n": [1, 2.5, true, null]}, "u": "é😀"})");
    EXPECT_EQ(render("{{ t | tojson(indent=2) }}", {{"t", {{"a", {1}}, {"b", ordered_json::object()}}}}),
              "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
    EXPECT_EQ(render("{{ 'é😀\x01' | tojson(ensure_ascii=true) }}"), R"("\u00e9\ud83d\ude00\u0001")");
    EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true, separators=(',', ':')) }}"), R"({"a":2,"b":1})");
    EXPECT_EQ(render("{{ 2.0 | tojson }} {{ (0.1 + 0.2) | tojson }} {{ x | tojson }} {{ x }}", {{"x", 1e21}}),
              "2 0.30000000000000004 1e+21 1e+21");
}

TEST(JinjaFilters, StringsAndLists) {
    EXPECT_EQ(render("[{{ '  a b \n' | trim }}]"), "[a b]");
    EXPECT_EQ(render("{{ 'héllo😀' | length }} {{ [1, 2] | length }} {{ {'a': 1} | length }}"), "7 2 1");
    EXPECT_EQ(render("{{ 'Ab' | upper }}{{ 'Ab' | lower }}{{ 'ab cd' | title }}{{ 'ab' | capitalize }}"), "ABabAb CdAb");
    EXPECT_EQ(render("{{ 3 | string }}{{ 2.0 | string }}{{ [1] | string }}{{ 'x' | string }}"), "32.0[1]x");
    EXPECT_EQ(render("{{ xs | first }}{{ xs | last }}{{ xs | join(', ') }}{{ xs | join }}", {{"xs", {"a", "b"}}}), "aba, bab");
    EXPECT_EQ(render("{{ missing | default('dflt') }}{{ '' | default('e', true) }}{{ 'v' | default('x') }}"), "dfltev");
    EXPECT_EQ(render("{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}", {{"d", {{"z", 1}, {"y", 2}}}}), "z1y2");
    const ordered_json msgs = ordered_json::parse(R"([{"role": "user", "c": 1}, {"role": "bot", "c": 2}, {"role": "user", "c": 3}])");
    EXPECT_EQ(render("{{ m | selectattr('role', 'equalto', 'user') | map(attribute='c') | list }}", {{"m", msgs}}), "[1, 3]");
    EXPECT_EQ(render("{{ m | rejectattr('role', 'equalto', 'user') | length }}", {{"m", msgs}}), "1");
    EXPECT_EQ(render("{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
    EXPECT_EQ(render("{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'c'] | sort(reverse=true) }}{{ [1, 1, 2] | unique }}"),
              R"([1, 2, 3]["c", "b", "A"][1, 2])");
    EXPECT_EQ(render("{{ '42' | int + 1 }} {{ 3.7 | int }} {{ '2.5' | float }} {{ -3 | abs }}"), "43 3 2.5 3");
    EXPECT_EQ(render("{{ 'a-b-c' | replace('-', '+') }}{{ [1, 2] | reverse }}"), "a+b+c[2, 1]");
}

TEST(JinjaTests, IsTests) {
    const ordered_json ctx = {{"s", "x"}, {"n", nullptr}, {"d", {{"k", 1}}}, {"l", {1}}, {"i", 3}, {"f", 1.5}, {"b", false}};
    EXPECT_EQ(render("{{ s is defined }}{{ u is defined }}{{ u is undefined }}{{ n is none }}{{ n is not none }}", ctx),
              "truefalsetruetruefalse");
    EXPECT_EQ(render("{{ s is string }}{{ d is mapping }}{{ l is mapping }}{{ l is iterable }}{{ s is iterable }}{{ d is iterable }}", ctx),
              "truetruefalsetruetruefalse");
    EXPECT_EQ(render("{{ d is sequence }}{{ i is number }}{{ f is integer }}{{ b is boolean }}{{ b is false }}{{ i is odd }}", ctx),
              "truetruefalsetruetruetrue");
}

TEST(JinjaOperators, ArithmeticComparisonLogic) {
    EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 2 }} {{ 7.5 // 2 }} {{ 2 ** 10 }} {{ 2 * 1.5 }}"), "3 -4 -1 3.0 1024 3.0");
    EXPECT_EQ(render("{{ 1 < 2 }}{{ 2 <= 1 }}{{ 1 == 1.0 }}{{ 'a' != 'b' }}{{ 1 == '1' }}{{ none == u }}"), "truefalsetruetruetruetrue");
    EXPECT_EQ(render("{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}{{ 'x' in u }}"), "truetruetruetruefalse");
    EXPECT_EQ(render("{{ 0 or 'x' }}{{ 1 and 'y' }}{{ [] and 1 }}{{ not 0 }}"), "xy[]true");
    EXPECT_EQ(render("{{ [1] + [2] }}{{ 'a' + 1 }}{{ 'n' + 2.0 }}"), "[1, 2]a1n2");
}

TEST(JinjaMethods, StringsAndDicts) {
    EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'abc'.upper() }}{{ ' x '.strip() }}"),
              "truetrueABCx");
    EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' ', 1) }}"),
              R"(["a", "b", "", "c"]["a", "b"]["a", "b c"])");
    EXPECT_EQ(render("{{ 'x</think>\n\ny'.split('</think>')[-1].lstrip('\n') }}|{{ '\n\ta\n'.rstrip() }}|"), "y|\n\ta|");
    EXPECT_EQ(render("{{ 'aaa'.replace('a', 'b', 2) }}{{ 'hello world'.title() }}"), "bbaHello World");
    EXPECT_EQ(render("{{ d.get('a') }}{{ d.get('zz', 'dflt') }}{{ d.get('zz') }}{{ d.keys() }}{{ d.values() }}", {{"d", {{"a", 1}}}}),
              R"(1dflt["a"][1])");
    EXPECT_EQ(render("{{ m.content }}{{ m['role'] }}{{ m.missing.deeper }}", {{"m", {{"role", "r"}, {"content", "c"}}}}), "cr");
}

TEST(JinjaMethods, Slicing) {
    const ordered_json ctx = {{"xs", {1, 2, 3, 4}}, {"s", "héllo"}};
    EXPECT_EQ(render("{{ xs[::-1] }}{{ xs[1:] }}{{ xs[:-1] }}{{ xs[1:3] }}{{ xs[::2] }}{{ xs[-1] }}{{ xs[9] is defined }}", ctx),
              "[4, 3, 2, 1][2, 3, 4][1, 2, 3][2, 3][1, 3]4false");
    EXPECT_EQ(render("{{ s[::-1] }}|{{ s[1:3] }}|{{ s[0] }}|{{ s[:-1] }}", ctx), "olléh|él|h|héll");
}

TEST(JinjaErrors, RaiseException) {
    const std::string msg = error_of("line one\n{{ raise_exception('Roles must alternate!') }}");
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Roles must alternate!"), std::string::npos) << msg;
}

TEST(JinjaErrors, MalformedTemplatesNameTheirPosition) {
    EXPECT_ERROR("{% include 'x.jinja' %}", "line 1, column 1", "unsupported tag", "include");
    EXPECT_ERROR("a\n{% if x %}never closed", "line 2, column 1", "'{% if %}' is never closed");
    EXPECT_ERROR("{% for x in xs %}{% endif %}", "'{% endif %}' without a matching");
    EXPECT_ERROR("{{ 1 + }}", "line 1, column 8", "expected an expression");
    EXPECT_ERROR("{{ x", "expected '}}'");
    EXPECT_ERROR("{{ 'unterminated }}", "string literal is never closed");
    EXPECT_ERROR("{{ '\\q' }}", "unknown escape");
    EXPECT_ERROR("{# open comment", "comment is never closed");
    EXPECT_ERROR("{{ a $ b }}", "unexpected character '$'");
    EXPECT_ERROR("{% break %}", "outside a for loop");
    EXPECT_ERROR("{% set 1 = 2 %}", "cannot assign");
    EXPECT_ERROR("{{ x is divisibleby(3) }}", "tests with arguments");
    EXPECT_ERROR("{% macro m(a=1, b) %}{% endmacro %}", "without a default");
    EXPECT_ERROR("{{ 99999999999999999999 }}", "out of range");
    EXPECT_ERROR("{% endfor %}", "without a matching opening tag");
}

TEST(JinjaErrors, RuntimeErrorsNameTheirPosition) {
    EXPECT_ERROR("ok\n  {{ 'a' | nosuchfilter }}", "line 2, column 12", "unknown filter 'nosuchfilter'");
    EXPECT_ERROR("{{ x is nosuchtest }}", "unknown test");
    EXPECT_ERROR("{{ 'a' - 1 }}", "unsupported operator '-' between string and integer");
    EXPECT_ERROR("{{ 'a' + none }}", "operator '+' on none");
    EXPECT_ERROR("{{ nothing() }}", "'nothing' is undefined, not a function");
    EXPECT_ERROR("{% for c in 'abc' %}{% endfor %}", "for loop over string");
    EXPECT_ERROR("{% set x = 1 %}{% set x.y = 2 %}", "only of a namespace");
    EXPECT_ERROR("{{ 1 // 0 }}", "division by zero");
    EXPECT_ERROR("{{ {1: 2} }}", "dict keys must be strings");
    const std::string clash = error_of("{{ range }}", {{"range", 1}});
    EXPECT_NE(clash.find("clashes with a built-in"), std::string::npos) << clash;
}

// Hostile templates: each must fail fast with an Error, not crash, hang or exhaust memory.
TEST(JinjaErrors, HostileTemplatesAreBounded) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_ERROR("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}", "nested more than");
    EXPECT_ERROR("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}", "nested more than");
    EXPECT_ERROR("{{ " + std::string(20000, '-') + "1 }}", "nested more than");
    std::string nots = "{{ ";
    for (int i = 0; i < 5000; ++i) nots += "not ";
    EXPECT_ERROR(nots + "x }}", "nested more than");
    std::string chain = "{{ 1";
    for (int i = 0; i < 5000; ++i) chain += " + 1";
    EXPECT_ERROR(chain + " }}", "nested more than");
    std::string ifs;
    for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
    EXPECT_ERROR(ifs, "nested more than");
    EXPECT_ERROR("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion deeper than");
    EXPECT_ERROR("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}",
                 "steps");
    EXPECT_ERROR("{{ range(100000000) }}", "range() of more than");
    EXPECT_ERROR("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                 "exceeds the limit");
    EXPECT_ERROR("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
                 "nested more than");
    EXPECT_ERROR("{{ 'x' | indent(999999999999) }}", "indent width");
    EXPECT_ERROR("{{ [1] | tojson(indent=100000000) }}", "exceeds the limit");
    EXPECT_ERROR(std::string(2 << 20, 'a'), "exceeds the limit");
    // Cycles and long chains through namespaces render (or fail) and are freed without recursion.
    EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns.self.self is defined }}"), "true");
    EXPECT_ERROR("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns | tojson }}", "nested too deeply");
    EXPECT_EQ(render("{% set ns = namespace(p=none) %}{% for i in range(100000) %}{% set ns.p = namespace(p=ns.p) %}{% endfor %}ok"),
              "ok");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 20.0);
}

// Per-character work on big strings (join, slicing, split) stays linear and within the limits.
TEST(JinjaErrors, LargeStringsWithinTheLimits) {
    const std::string big = "{% set ns = namespace(s='ab') %}{% for i in range(22) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
    EXPECT_EQ(render(big + "{{ ns.s | join(',') | length }} {{ ns.s[::-1] | length }} {{ ns.s[:2000].split('b') | length }}"),
              "16777215 8388608 1001");
    EXPECT_ERROR(big + "{{ ns.s ~ ns.s ~ ns.s ~ ns.s ~ ns.s }}", "exceeds the limit");
    EXPECT_ERROR(big + "{{ ns.s | join(',') | join(', ') }}", "exceeds the limit");
    EXPECT_ERROR(big + "{% for i in range(100) %}{% set x = ns.s ~ i %}{% endfor %}", "more than 268435456 bytes");
}

TEST(JinjaContext, KeyOrderFollowsTheJsonType) {
    const std::string t = "{{ d | tojson }}";
    const auto ordered = ordered_json::parse(R"({"d": {"b": 1, "a": 2}})");
    EXPECT_EQ(Template(t).render(ordered), R"({"b": 1, "a": 2})");
    EXPECT_EQ(Template(t).render(nlohmann::json::parse(ordered.dump())), R"({"a": 2, "b": 1})");
    EXPECT_THROW(Template("x").render(ordered_json::array()), Error);
}

}  // namespace
}  // namespace celer::chat
