#include "chat/jinja_js.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace celer::chat::jinja::js {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of the longest StrUnsignedDecimalLiteral prefix of s (ECMA-262 7.1.4.1.1), without
// Infinity: digits [. digits] | . digits, then an optional exponent.
size_t decimal_prefix(std::string_view s) {
    size_t i = 0, int_digits = 0, frac_digits = 0;
    while (i < s.size() && is_digit(s[i])) ++i, ++int_digits;
    if (i < s.size() && s[i] == '.') {
        size_t j = i + 1;
        while (j < s.size() && is_digit(s[j])) ++j, ++frac_digits;
        if (int_digits + frac_digits == 0) return 0;
        i = j;
    }
    if (int_digits + frac_digits == 0) return 0;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
        size_t k = j;
        while (k < s.size() && is_digit(s[k])) ++k;
        if (k > j) i = k;
    }
    return i;
}

double decimal_value(std::string_view s) {
    double v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);  // s is already validated
    return v;
}

// Optional sign, then Infinity or a decimal literal; *len gets the bytes used (0: none).
double signed_decimal(std::string_view s, size_t* len) {
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    const std::string_view rest = s.substr(i);
    if (rest.starts_with("Infinity")) {
        *len = i + 8;
        return neg ? -kInf : kInf;
    }
    const size_t n = decimal_prefix(rest);
    *len = n == 0 ? 0 : i + n;
    if (n == 0) return kNaN;
    const double v = decimal_value(rest.substr(0, n));
    return neg ? -v : v;
}

size_t skip_space(std::string_view s) {
    size_t i = 0;
    while (size_t n = space_at(s, i)) i += n;
    return i;
}

}  // namespace

std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
    if (v == 0) return "0";
    if (v < 0) {
        std::string out = "-";
        out += number(-v);
        return out;
    }
    // to_chars without a precision gives the shortest digits that round-trip, as JavaScript
    // does; only the layout (ECMA-262 Number::toString) differs.
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    const std::string_view sci(buf, size_t(res.ptr - buf));
    const size_t e = sci.find('e');
    std::string digits(1, sci[0]);
    if (e > 1) digits.append(sci.substr(2, e - 2));
    std::string_view exp_text = sci.substr(e + 1);
    if (exp_text[0] == '+') exp_text.remove_prefix(1);
    int exp = 0;
    std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);
    const int k = int(digits.size()), n = exp + 1;  // value = 0.digits * 10^n
    std::string out;
    if (k <= n && n <= 21) {
        out = digits;
        out.append(size_t(n - k), '0');
    } else if (0 < n && n <= 21) {
        out.assign(digits, 0, size_t(n));
        out += '.';
        out.append(digits, size_t(n));
    } else if (-6 < n && n <= 0) {
        out = "0.";
        out.append(size_t(-n), '0');
        out += digits;
    } else {
        out.assign(1, digits[0]);
        if (k > 1) {
            out += '.';
            out.append(digits, 1);
        }
        out += n - 1 >= 0 ? "e+" : "e-";
        out += std::to_string(std::abs(n - 1));
    }
    return out;
}

std::string json_number(double v) { return std::isfinite(v) ? number(v) : "null"; }

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
    static constexpr char kHex[] = "0123456789abcdef";
    auto unit = [&](uint32_t u) {
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(u >> shift) & 0xF];
    };
    out += '"';
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c < 0x20 || (ensure_ascii && c == 0x7F)) unit(c);
                    else out += char(c);
            }
            ++i;
            continue;
        }
        size_t len = 0;
        const char32_t cp = decode(s, i, &len);
        if (!ensure_ascii) {
            out.append(s.substr(i, len));
        } else if (cp < 0x10000) {
            unit(cp);
        } else {
            unit(0xD800 + ((cp - 0x10000) >> 10));
            unit(0xDC00 + ((cp - 0x10000) & 0x3FF));
        }
        i += len;
    }
    out += '"';
}

double to_number(std::string_view s) {
    s = trim(s, true, true);
    if (s.empty()) return 0;
    if (s.size() > 2 && s[0] == '0') {
        const char p = char(s[1] | 0x20);
        const int base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
        if (base != 0) {
            double v = 0;
            for (char c : s.substr(2)) {
                const char l = char(c | 0x20);
                const int d = is_digit(c) ? c - '0' : (l >= 'a' && l <= 'f') ? l - 'a' + 10 : 99;
                if (d >= base) return kNaN;
                v = v * base + d;
            }
            return v;
        }
    }
    size_t len = 0;
    const double v = signed_decimal(s, &len);
    return len == s.size() ? v : kNaN;
}

double parse_int(std::string_view s) {
    s.remove_prefix(skip_space(s));
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    const size_t start = i;
    double v = 0;
    while (i < s.size() && is_digit(s[i])) v = v * 10 + (s[i++] - '0');
    if (i == start) return kNaN;
    return neg ? -v : v;
}

double parse_float(std::string_view s) {
    s.remove_prefix(skip_space(s));
    size_t len = 0;
    return signed_decimal(s, &len);
}

bool is_space(char32_t c) {
    switch (c) {
        case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0xA0: case 0x1680:
        case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
            return true;
        default:
            return c >= 0x2000 && c <= 0x200A;
    }
}

size_t space_at(std::string_view s, size_t i) {
    if (i >= s.size()) return 0;
    size_t len = 0;
    return is_space(decode(s, i, &len)) ? len : 0;
}

size_t space_before(std::string_view s, size_t i) {
    if (i == 0) return 0;
    // Back over up to three continuation bytes to where the last code point starts.
    size_t start = i - 1;
    while (start > 0 && i - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t len = 0;
    const char32_t c = decode(s, start, &len);
    return start + len == i && is_space(c) ? len : 0;
}

std::string_view trim(std::string_view s, bool start, bool end) {
    if (start) s.remove_prefix(skip_space(s));
    if (end) {
        while (size_t n = space_before(s, s.size())) s.remove_suffix(n);
    }
    return s;
}

char32_t decode(std::string_view s, size_t i, size_t* len) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = byte(i);
    *len = 1;
    if (c < 0x80) return c;
    size_t n = 0;
    char32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
    else return 0xFFFD;
    if (i + n > s.size()) return 0xFFFD;
    for (size_t k = 1; k < n; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return 0xFFFD;
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
    *len = n;
    return cp;
}

void append_utf8(std::string& out, char32_t c) {
    if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
    if (c < 0x80) {
        out += char(c);
    } else if (c < 0x800) {
        out += char(0xC0 | (c >> 6));
        out += char(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += char(0xE0 | (c >> 12));
        out += char(0x80 | ((c >> 6) & 0x3F));
        out += char(0x80 | (c & 0x3F));
    } else {
        out += char(0xF0 | (c >> 18));
        out += char(0x80 | ((c >> 12) & 0x3F));
        out += char(0x80 | ((c >> 6) & 0x3F));
        out += char(0x80 | (c & 0x3F));
    }
}

size_t utf16_length(std::string_view s) {
    size_t units = 0;
    for (size_t i = 0; i < s.size();) {
        size_t len = 0;
        units += decode(s, i, &len) >= 0x10000 ? 2 : 1;
        i += len;
    }
    return units;
}

bool utf16_at(std::string_view s, int64_t index, std::string* out) {
    const auto n = int64_t(utf16_length(s));
    if (index < 0) index += n;
    if (index < 0 || index >= n) return false;
    int64_t unit = 0;
    for (size_t i = 0; i < s.size();) {
        size_t len = 0;
        const char32_t c = decode(s, i, &len);
        const int64_t width = c >= 0x10000 ? 2 : 1;
        if (index < unit + width) {
            out->clear();
            append_utf8(*out, width == 2 ? char32_t(0xFFFD) : c);
            return true;
        }
        unit += width;
        i += len;
    }
    return false;
}

std::string to_upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'a' && c <= 'z') c = char(c - 32);
    }
    return out;
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    }
    return out;
}

}  // namespace celer::chat::jinja::js
