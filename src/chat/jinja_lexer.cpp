#include "chat/jinja_lexer.h"

#include <array>
#include <utility>

#include <fmt/format.h>

#include "chat/jinja_error.h"
#include "chat/jinja_js.h"
#include "chat/jinja_preprocess.h"

namespace celer::chat::jinja {

const char* tok_name(Tok t) {
    switch (t) {
        case Tok::Text: return "text";
        case Tok::Comment: return "comment";
        case Tok::OpenStmt: return "'{%'";
        case Tok::CloseStmt: return "'%}'";
        case Tok::OpenExpr: return "'{{'";
        case Tok::CloseExpr: return "'}}'";
        case Tok::Number: return "number";
        case Tok::String: return "string";
        case Tok::Name: return "name";
        case Tok::LParen: return "'('";
        case Tok::RParen: return "')'";
        case Tok::LBracket: return "'['";
        case Tok::RBracket: return "']'";
        case Tok::LBrace: return "'{'";
        case Tok::RBrace: return "'}'";
        case Tok::Comma: return "','";
        case Tok::Dot: return "'.'";
        case Tok::Colon: return "':'";
        case Tok::Pipe: return "'|'";
        case Tok::Equals: return "'='";
        case Tok::Additive:
        case Tok::Multiplicative:
        case Tok::Power:
        case Tok::Comparison:
        case Tok::Unary: return "operator";
        case Tok::End: return "end of template";
    }
    return "?";
}

namespace {

// Tried in order, so that "{%" wins over "{" and "**" over "*" (as in the reference lexer).
constexpr std::array<std::pair<std::string_view, Tok>, 29> kSymbols{{
    {"{%", Tok::OpenStmt}, {"%}", Tok::CloseStmt}, {"{{", Tok::OpenExpr}, {"}}", Tok::CloseExpr},
    {"(", Tok::LParen}, {")", Tok::RParen}, {"{", Tok::LBrace}, {"}", Tok::RBrace},
    {"[", Tok::LBracket}, {"]", Tok::RBracket}, {",", Tok::Comma}, {".", Tok::Dot},
    {":", Tok::Colon}, {"|", Tok::Pipe},
    {"<=", Tok::Comparison}, {">=", Tok::Comparison}, {"==", Tok::Comparison}, {"!=", Tok::Comparison},
    {"<", Tok::Comparison}, {">", Tok::Comparison},
    {"+", Tok::Additive}, {"-", Tok::Additive}, {"~", Tok::Additive},
    {"**", Tok::Power}, {"*", Tok::Multiplicative}, {"//", Tok::Multiplicative},
    {"/", Tok::Multiplicative}, {"%", Tok::Multiplicative}, {"=", Tok::Equals},
}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    const char l = char(c | 0x20);
    return l >= 'a' && l <= 'f' ? l - 'a' + 10 : -1;
}

class Lexer {
public:
    Lexer(std::string_view source, const MappedText& m) : source_(source), m_(m), s_(m.text) {}

    std::vector<Token> run() {
        while (i_ < s_.size()) step();
        toks_.push_back({Tok::End, "", m_.origin[s_.size()]});
        return std::move(toks_);
    }

private:
    [[noreturn]] void fail(size_t at, const std::string& what) const { fail_at(source_, m_.origin[at], what); }
    bool at(std::string_view seq) const { return s_.substr(i_).starts_with(seq); }
    void push(Tok t, std::string text, size_t at) { toks_.push_back({t, std::move(text), m_.origin[at]}); }
    Tok last() const { return toks_.empty() ? Tok::End : toks_.back().type; }
    bool text_mode() const {
        return toks_.empty() || last() == Tok::CloseStmt || last() == Tok::CloseExpr || last() == Tok::Comment;
    }

    // `{%-`, `{{-`, `{#-`: the text before the tag loses its trailing white space.
    void strip_trailing() {
        if (last() != Tok::Text) return;
        auto& text = toks_.back().text;
        text.resize(js::trim(text, false, true).size());
        if (text.empty()) toks_.pop_back();
    }
    void skip_spaces() {
        while (size_t n = js::space_at(s_, i_)) i_ += n;
    }

    void step() {
        if (text_mode()) {
            const size_t start = i_;
            while (i_ < s_.size() && !(s_[i_] == '{' && i_ + 1 < s_.size() &&
                                        (s_[i_ + 1] == '%' || s_[i_ + 1] == '{' || s_[i_ + 1] == '#'))) {
                ++i_;
            }
            if (i_ > start) return push(Tok::Text, std::string(s_.substr(start, i_ - start)), start);
        }
        if (at("{#")) return comment();
        if (at("{%-") || at("{{-")) {
            strip_trailing();
            const bool stmt = at("{%-");
            push(stmt ? Tok::OpenStmt : Tok::OpenExpr, stmt ? "{%" : "{{", i_);
            if (!stmt) curly_ = 0;
            i_ += 3;
            return;
        }
        const size_t before = i_;
        skip_spaces();
        if (i_ >= s_.size()) fail(before, "unexpected end of template inside a tag");
        if (at("-%}") || at("-}}")) {
            const bool stmt = at("-%}");
            push(stmt ? Tok::CloseStmt : Tok::CloseExpr, stmt ? "%}" : "}}", i_);
            i_ += 3;
            skip_spaces();
            return;
        }
        const char c = s_[i_];
        if ((c == '-' || c == '+') && sign()) return;
        if (symbol()) return;
        if (c == '\'' || c == '"') return string(c);
        if (is_digit(c)) return number();
        if (is_word(c)) {
            const size_t start = i_;
            while (i_ < s_.size() && is_word(s_[i_])) ++i_;
            return push(Tok::Name, std::string(s_.substr(start, i_ - start)), start);
        }
        size_t len = 0;
        js::decode(s_, i_, &len);
        fail(i_, fmt::format("unexpected character '{}'", s_.substr(i_, len)));
    }

    void comment() {
        const size_t start = i_;
        i_ += 2;
        const bool strip_before = i_ < s_.size() && s_[i_] == '-';
        if (strip_before) ++i_;
        const size_t close = s_.find("#}", i_);
        if (close == std::string_view::npos) fail(start, "comment is never closed with '#}'");
        std::string text(s_.substr(i_, close - i_));
        const bool strip_after = text.ends_with('-');
        if (strip_after) text.pop_back();
        if (strip_before) strip_trailing();
        push(Tok::Comment, std::move(text), start);
        i_ = close + 2;
        if (strip_after) skip_spaces();
    }

    // A '+'/'-' right after an operand is binary; anywhere else it is a sign, and the lexer
    // folds it into a following number ("-1"), as the reference does.
    bool sign() {
        const Tok l = last();
        if (toks_.empty() || l == Tok::Text) fail(i_, fmt::format("unexpected '{}'", s_[i_]));
        if (l == Tok::Name || l == Tok::Number || l == Tok::String || l == Tok::RParen || l == Tok::RBracket) {
            return false;
        }
        const size_t start = i_++;
        const std::string digits = number_text();
        push(digits.empty() ? Tok::Unary : Tok::Number, s_[start] + digits, start);
        return true;
    }

    bool symbol() {
        for (const auto& [seq, type] : kSymbols) {
            if (type == Tok::CloseExpr && curly_ > 0) continue;  // "}}" closing nested dict literals
            if (!at(seq)) continue;
            push(type, std::string(seq), i_);
            if (type == Tok::OpenExpr) curly_ = 0;
            if (type == Tok::LBrace) ++curly_;
            if (type == Tok::RBrace) --curly_;
            i_ += seq.size();
            return true;
        }
        return false;
    }

    std::string number_text() {
        const size_t start = i_;
        while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
        if (i_ > start && last() != Tok::Dot && i_ + 1 < s_.size() && s_[i_] == '.' && is_digit(s_[i_ + 1])) {
            ++i_;
            while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
        }
        return std::string(s_.substr(start, i_ - start));
    }

    void number() {
        const size_t start = i_;
        push(Tok::Number, number_text(), start);
    }

    void string(char quote) {
        const size_t start = i_++;
        std::string value;
        while (true) {
            if (i_ >= s_.size()) fail(start, "string literal is never closed");
            const char c = s_[i_];
            if (c == quote) break;
            if (c != '\\') {
                value += c;
                ++i_;
                continue;
            }
            escape(value);
        }
        ++i_;
        push(Tok::String, std::move(value), start);
    }

    // The escapes the reference accepts: \n \t \r \b \f \v \' \" \\ \xHH \uHHHH.
    void escape(std::string& value) {
        const size_t at_escape = i_++;
        if (i_ >= s_.size()) fail(at_escape, "string literal is never closed");
        const char e = s_[i_++];
        switch (e) {
            case 'n': value += '\n'; return;
            case 't': value += '\t'; return;
            case 'r': value += '\r'; return;
            case 'b': value += '\b'; return;
            case 'f': value += '\f'; return;
            case 'v': value += '\v'; return;
            case '\'': case '"': case '\\': value += e; return;
            case 'x':
            case 'u': break;
            default: fail(at_escape, fmt::format("unknown escape sequence '\\{}'", e));
        }
        char32_t unit = hex_escape(e == 'x' ? 2 : 4, at_escape);
        // A surrogate pair written as two \u escapes is one code point; a lone half is not
        // representable in UTF-8.
        if (unit >= 0xD800 && unit <= 0xDBFF && at("\\u")) {
            const size_t save = i_;
            i_ += 2;
            const char32_t low = hex_escape(4, save);
            if (low >= 0xDC00 && low <= 0xDFFF) unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            else i_ = save;
        }
        js::append_utf8(value, unit);
    }

    char32_t hex_escape(size_t digits, size_t at_escape) {
        char32_t v = 0;
        for (size_t k = 0; k < digits; ++k) {
            const int d = i_ + k < s_.size() ? hex_value(s_[i_ + k]) : -1;
            if (d < 0) fail(at_escape, "invalid hexadecimal escape sequence");
            v = v * 16 + char32_t(d);
        }
        i_ += digits;
        return v;
    }

    std::string_view source_;
    const MappedText& m_;
    std::string_view s_;
    size_t i_ = 0;
    int curly_ = 0;  // open '{' inside the current {{ }}
    std::vector<Token> toks_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
    if (source.size() > Limits::kSourceBytes) {
        fail_at(source, 0, fmt::format("template of {} bytes exceeds the limit of {}", source.size(), Limits::kSourceBytes));
    }
    const MappedText m = preprocess(source);
    return Lexer(source, m).run();
}

}  // namespace celer::chat::jinja
