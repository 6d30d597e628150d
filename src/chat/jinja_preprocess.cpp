#include "chat/jinja_preprocess.h"

#include <cstddef>

#include "chat/jinja_js.h"

namespace celer::chat::jinja {

namespace {

class Builder {
public:
    explicit Builder(const MappedText& in) : in_(in) {}

    void keep(size_t from, size_t to) {
        out_.text.append(in_.text, from, to - from);
        out_.origin.insert(out_.origin.end(), in_.origin.begin() + std::ptrdiff_t(from), in_.origin.begin() + std::ptrdiff_t(to));
    }
    MappedText finish() {
        out_.origin.push_back(in_.origin.back());
        return std::move(out_);
    }

private:
    const MappedText& in_;
    MappedText out_;
};

bool is_line_terminator_end(std::string_view t, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(t[k]); };
    if (t[i] == '\n' || t[i] == '\r') return true;
    // U+2028 and U+2029 (E2 80 A8/A9) also start a line for a JavaScript multiline `^`.
    return i >= 2 && b(i - 2) == 0xE2 && b(i - 1) == 0x80 && (b(i) == 0xA8 || b(i) == 0xA9);
}

// lstrip_blocks, as /^[ \t]*({[#%-])/gm: indentation before {% or {# on its line goes.
MappedText lstrip_blocks(const MappedText& in) {
    const std::string_view t = in.text;
    Builder out(in);
    size_t i = 0, kept = 0;
    bool line_start = true;
    while (i < t.size()) {
        if (line_start) {
            size_t j = i;
            while (j < t.size() && (t[j] == ' ' || t[j] == '\t')) ++j;
            if (j > i && j + 1 < t.size() && t[j] == '{' && (t[j + 1] == '#' || t[j + 1] == '%' || t[j + 1] == '-')) {
                out.keep(kept, i);
                kept = i = j;
            }
        }
        line_start = is_line_terminator_end(t, i);
        ++i;
    }
    out.keep(kept, t.size());
    return out.finish();
}

// trim_blocks, as /([#%-]})\n/g: the newline right after a tag goes.
MappedText trim_blocks(const MappedText& in) {
    const std::string_view t = in.text;
    Builder out(in);
    size_t kept = 0;
    for (size_t i = 0; i + 2 < t.size(); ++i) {
        if ((t[i] == '#' || t[i] == '%' || t[i] == '-') && t[i + 1] == '}' && t[i + 2] == '\n') {
            out.keep(kept, i + 2);
            kept = i + 3;
            i += 2;
        }
    }
    out.keep(kept, t.size());
    return out.finish();
}

size_t skip_spaces(std::string_view t, size_t i) {
    while (size_t n = js::space_at(t, i)) i += n;
    return i;
}

// End of a `{%-? (end)?generation -?%}` tag starting at p, or 0; sets the strip flags.
size_t match_generation_tag(std::string_view t, size_t p, bool* strip_before, bool* strip_after) {
    size_t q = p + 2;
    *strip_before = q < t.size() && t[q] == '-';
    if (*strip_before) ++q;
    q = skip_spaces(t, q);
    if (t.substr(q).starts_with("endgeneration")) q += 13;
    else if (t.substr(q).starts_with("generation")) q += 10;
    else return 0;
    q = skip_spaces(t, q);
    *strip_after = q < t.size() && t[q] == '-';
    if (*strip_after) ++q;
    return t.substr(q).starts_with("%}") ? q + 2 : 0;
}

// transformers' {% generation %} marks assistant text for training masks; rendering drops
// the tags, as /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/g with the white space around
// them kept unless the tag's `-` asks to strip it.
MappedText drop_generation_tags(const MappedText& in) {
    const std::string_view t = in.text;
    Builder out(in);
    size_t kept = 0;
    for (size_t p = t.find("{%"); p != std::string_view::npos; p = t.find("{%", p + 1)) {
        bool strip_before = false, strip_after = false;
        const size_t end = match_generation_tag(t, p, &strip_before, &strip_after);
        if (end == 0) continue;
        size_t before = p;
        while (before > kept) {
            const size_t n = js::space_before(t, before);
            if (n == 0 || before - n < kept) break;
            before -= n;
        }
        const size_t after = skip_spaces(t, end);
        out.keep(kept, strip_before ? before : p);
        kept = strip_after ? after : end;
        out.keep(kept, after);
        kept = after;
        p = after - 1;
    }
    out.keep(kept, t.size());
    return out.finish();
}

}  // namespace

MappedText preprocess(std::string_view source) {
    MappedText m;
    m.text = source;
    m.origin.resize(source.size() + 1);
    for (size_t i = 0; i <= source.size(); ++i) m.origin[i] = uint32_t(i);
    if (m.text.ends_with('\n')) {
        m.text.pop_back();
        m.origin.erase(m.origin.end() - 2);
    }
    return drop_generation_tags(trim_blocks(lstrip_blocks(m)));
}

}  // namespace celer::chat::jinja
