// String and dict methods ("abc".upper(), d.items()), and helpers the filters share.
#include <algorithm>

#include <fmt/format.h>

#include "chat/jinja_builtins.h"
#include "chat/jinja_error.h"
#include "chat/jinja_js.h"

namespace celer::chat::jinja {

const Value* CallArgs::keyword_arg(std::string_view name) const {
    for (const auto& [k, v] : keyword) {
        if (k == name) return &v;
    }
    return nullptr;
}

const Value* CallArgs::get(size_t i, std::string_view name) const {
    return i < positional.size() ? &positional[i] : keyword_arg(name);
}

std::vector<Value> dict_items(const Dict& d) {
    std::vector<Value> out;
    for (const auto& [k, v] : d.entries()) out.push_back(make_list({Value::string(k), v}));
    return out;
}

int compare_values(const Value& a, const Value& b, bool case_sensitive) {
    const auto nullish_pair = [&](Kind k) {
        if (a.is(k) && b.is(k)) return true;
        if (a.is(k) || b.is(k)) {
            throw RuntimeError(fmt::format("cannot compare {} with {}", kind_name(a.kind()), kind_name(b.kind())));
        }
        return false;
    };
    if (nullish_pair(Kind::Null) || nullish_pair(Kind::Undefined)) return 0;
    const auto numeric = [](const Value& v) { return v.is_number() || v.is(Kind::Bool); };
    if (numeric(a) && numeric(b)) {
        const auto n = [](const Value& v) { return v.is(Kind::Bool) ? double(v.as_bool()) : v.as_number(); };
        return n(a) < n(b) ? -1 : n(a) > n(b) ? 1 : 0;
    }
    if (a.is(Kind::String) && b.is(Kind::String)) {
        const int c = case_sensitive ? a.str().compare(b.str()) : js::to_lower(a.str()).compare(js::to_lower(b.str()));
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    throw RuntimeError(fmt::format("cannot compare {} with {}", kind_name(a.kind()), kind_name(b.kind())));
}

std::string join_values(const std::vector<Value>& items, std::string_view sep) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += sep;
        // reference: Array.prototype.join, which writes none and undefined as "".
        if (!items[i].is(Kind::Null) && !items[i].is(Kind::Undefined)) out += to_js_string(items[i]);
        check_string_size(out.size());
    }
    return out;
}

Value replace_in(const std::string& s, const std::string& old, const std::string& with, int64_t count) {
    if (count == 0) return Value::string(s);
    size_t remaining = count < 0 ? SIZE_MAX : size_t(count);
    std::string out;
    if (old.empty()) {  // reference: inserts `with` at every code point boundary, both ends included
        for (size_t i = 0; i <= s.size();) {
            if (remaining > 0) out += with, --remaining;
            check_string_size(out.size());
            if (i == s.size()) break;
            size_t len = 0;
            js::decode(s, i, &len);
            out.append(s, i, len);
            i += len;
        }
        return make_string(std::move(out));
    }
    size_t pos = 0;
    for (size_t hit; remaining > 0 && (hit = find_bytes(s, old, pos)) != std::string::npos; --remaining) {
        out.append(s, pos, hit - pos);
        out += with;
        check_string_size(out.size());
        pos = hit + old.size();
    }
    out.append(s, pos);
    return make_string(std::move(out));
}

namespace {

constexpr std::string_view kStringMethods[] = {"upper", "lower", "strip", "lstrip", "rstrip", "title",
                                               "capitalize", "startswith", "endswith", "split", "replace"};
constexpr std::string_view kDictMethods[] = {"get", "items", "keys", "values", "dictsort"};

bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// reference: /\b\w/g upper-cased: the first ASCII word character of each word goes upper case,
// the rest is left alone (Python's title() would lower it).
std::string title(const std::string& s) {
    std::string out = s;
    for (size_t i = 0; i < out.size(); ++i) {
        if ((i == 0 || !is_word(s[i - 1])) && out[i] >= 'a' && out[i] <= 'z') out[i] = char(out[i] - 32);
    }
    return out;
}

bool affix(const std::string& name, const std::string& s, const CallArgs& args) {
    if (args.positional.empty()) throw RuntimeError(fmt::format("{}() needs an argument", name));
    const bool start = name == "startswith";
    const auto test = [&](const Value& p) {
        if (!p.is(Kind::String)) throw RuntimeError(fmt::format("{}() takes a string or a list of strings", name));
        return start ? s.starts_with(p.str()) : s.ends_with(p.str());
    };
    const Value& arg = args.positional[0];
    if (!arg.is(Kind::List)) return test(arg);
    return std::any_of(arg.list().items.begin(), arg.list().items.end(), test);
}

Value split(const std::string& s, const CallArgs& args) {
    const Value* sep = args.get(0, "sep");
    const Value* max_arg = args.get(1, "maxsplit");
    if (max_arg && !max_arg->is(Kind::Int)) throw RuntimeError("split() maxsplit must be an integer");
    const int64_t maxsplit = max_arg ? max_arg->as_int() : -1;
    const auto room = [&](size_t n) { return maxsplit < 0 || n < size_t(maxsplit); };
    std::vector<Value> parts;
    if (!sep || sep->is(Kind::Null)) {
        // Runs of white space separate; no empty strings at either end.
        const std::string_view text = js::trim(s, true, false);
        for (size_t i = 0; i < text.size();) {
            const size_t start = i;
            while (i < text.size() && !js::space_at(text, i)) {
                size_t len = 0;
                js::decode(text, i, &len);
                i += len;
            }
            if (!room(parts.size())) {
                parts.push_back(Value::string(std::string(text.substr(start))));
                break;
            }
            parts.push_back(Value::string(std::string(text.substr(start, i - start))));
            if (parts.size() > Limits::kItems) break;  // make_list reports it
            while (size_t n = js::space_at(text, i)) i += n;
        }
        return make_list(std::move(parts));
    }
    if (!sep->is(Kind::String)) throw RuntimeError("split() separator must be a string or none");
    const std::string& d = sep->str();
    if (d.empty()) throw RuntimeError("split() separator is empty");
    size_t pos = 0;
    for (size_t hit; room(parts.size()) && (hit = find_bytes(s, d, pos)) != std::string::npos; pos = hit + d.size()) {
        parts.push_back(Value::string(s.substr(pos, hit - pos)));
        if (parts.size() > Limits::kItems) break;  // make_list reports it
    }
    parts.push_back(Value::string(s.substr(pos)));
    return make_list(std::move(parts));
}

Value string_method(const std::string& name, const std::string& s, const CallArgs& args) {
    // reference: strip/lstrip/rstrip ignore their argument and strip all white space
    // (Qwen3's `.strip('\n')` therefore also strips spaces).
    if (name == "strip") return Value::string(std::string(js::trim(s, true, true)));
    if (name == "lstrip") return Value::string(std::string(js::trim(s, true, false)));
    if (name == "rstrip") return Value::string(std::string(js::trim(s, false, true)));
    if (name == "upper") return Value::string(js::to_upper(s));
    if (name == "lower") return Value::string(js::to_lower(s));
    if (name == "title") return Value::string(title(s));
    if (name == "capitalize") {
        std::string out = s;
        if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = char(out[0] - 32);
        return Value::string(std::move(out));
    }
    if (name == "startswith" || name == "endswith") return Value::boolean(affix(name, s, args));
    if (name == "split") return split(s, args);
    // replace(old, new, count=None)
    const Value* old = args.get(0, "old");
    const Value* with = args.get(1, "new");
    if (!old || !with || !old->is(Kind::String) || !with->is(Kind::String)) {
        throw RuntimeError("replace() takes two strings");
    }
    const Value* count = args.get(2, "count");
    if (count && !count->is(Kind::Int) && !count->is(Kind::Null)) throw RuntimeError("replace() count must be an integer");
    return replace_in(s, old->str(), with->str(), count && count->is(Kind::Int) ? count->as_int() : -1);
}

Value dictsort(const Dict& d, const CallArgs& args) {
    const auto flag = [&](size_t i, std::string_view name) {
        const Value* v = args.get(i, name);
        if (v && !v->is(Kind::Bool)) throw RuntimeError(fmt::format("dictsort {} must be a boolean", name));
        return v && v->as_bool();
    };
    const bool case_sensitive = flag(0, "case_sensitive"), reverse = flag(2, "reverse");
    const Value* by = args.get(1, "by");
    if (by && (!by->is(Kind::String) || (by->str() != "key" && by->str() != "value"))) {
        throw RuntimeError("dictsort by must be 'key' or 'value'");
    }
    const size_t field = by && by->str() == "value" ? 1 : 0;
    std::vector<Value> items = dict_items(d);
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        const int c = compare_values(a.list().items[field], b.list().items[field], case_sensitive);
        return reverse ? c > 0 : c < 0;
    });
    return make_list(std::move(items));
}

Value dict_method(const std::string& name, const Dict& d, const CallArgs& args) {
    if (name == "get") {
        if (args.positional.empty() || !args.positional[0].is(Kind::String)) throw RuntimeError("get() key must be a string");
        if (const Value* v = d.find(args.positional[0].str())) return *v;
        return args.positional.size() > 1 ? args.positional[1] : Value::none();
    }
    if (name == "items") return make_list(dict_items(d));
    std::vector<Value> out;
    if (name == "keys") {
        for (const auto& [k, v] : d.entries()) out.push_back(Value::string(k));
        return make_list(std::move(out));
    }
    if (name == "values") {
        for (const auto& [k, v] : d.entries()) out.push_back(v);
        return make_list(std::move(out));
    }
    return dictsort(d, args);
}

}  // namespace

Value builtin_attribute(const Value& self, std::string_view name) {
    const auto bound = [&] {
        auto f = std::make_shared<Function>();
        f->type = Function::Type::Method;
        f->name = name;
        f->self = self;
        return Value::function(std::move(f));
    };
    const auto listed = [&](const auto& names) { return std::find(std::begin(names), std::end(names), name) != std::end(names); };
    if (self.is(Kind::String)) {
        if (name == "length") return Value::integer(int64_t(js::utf16_length(self.str())));
        return listed(kStringMethods) ? bound() : Value{};
    }
    if (self.is(Kind::List) && name == "length") return Value::integer(int64_t(self.list().items.size()));
    if (self.is(Kind::Object) && listed(kDictMethods)) return bound();
    return {};
}

Value call_method(const Function& m, const CallArgs& args, RenderState&) {
    if (m.self.is(Kind::String)) return string_method(m.name, m.self.str(), args);
    return dict_method(m.name, m.self.dict(), args);
}

}  // namespace celer::chat::jinja
