// JavaScript semantics that leak into rendered chat templates.
//
// The reference for celer's templates is @huggingface/jinja, which runs on JavaScript values:
// numbers print the way Number.prototype.toString prints them, tojson is JSON.stringify,
// trim() strips Unicode white space, a string's length counts UTF-16 code units, and `==`
// is JavaScript's loose equality. Matching its output byte for byte means reproducing those
// rules on UTF-8 strings; they are collected here so the interpreter proper reads as Jinja.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace celer::chat::jinja::js {

// Number.prototype.toString: shortest round-trip digits, exponent form outside [1e-7, 1e21).
std::string number(double v);
// JSON.stringify of a number: like number(), but NaN and the infinities become null.
std::string json_number(double v);
// JSON.stringify of a string; ensure_ascii also escapes U+007F and above as \uXXXX (UTF-16).
void append_json_string(std::string& out, std::string_view s, bool ensure_ascii);

// Number(string) for loose equality: trimmed decimal/hex/Infinity, "" is 0, otherwise NaN.
double to_number(std::string_view s);
// parseInt(s, 10) and parseFloat(s): longest numeric prefix after white space; NaN if none.
double parse_int(std::string_view s);
double parse_float(std::string_view s);

// \s and String.prototype.trim use the same set: ASCII white space, NBSP, the Unicode Zs
// spaces, the line/paragraph separators and the BOM.
bool is_space(char32_t c);
std::string_view trim(std::string_view s, bool start, bool end);
// Length of the JavaScript white space code point that starts at s[i] (0 if none).
size_t space_at(std::string_view s, size_t i);
// Length of the JavaScript white space code point that ends just before s[i] (0 if none).
size_t space_before(std::string_view s, size_t i);

// One code point of UTF-8 at s[i]; an invalid byte decodes to U+FFFD with length 1.
char32_t decode(std::string_view s, size_t i, size_t* len);
void append_utf8(std::string& out, char32_t c);
// String.prototype.length: UTF-16 code units.
size_t utf16_length(std::string_view s);
// String.prototype.at(i): the UTF-16 unit at i (negative counts from the end). Half of a
// surrogate pair cannot be written as UTF-8 and becomes U+FFFD. False when out of range.
bool utf16_at(std::string_view s, int64_t i, std::string* out);

// ASCII-only case mapping; JavaScript maps all of Unicode (documented divergence).
std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);

}  // namespace celer::chat::jinja::js
