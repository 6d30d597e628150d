#include "chat/jinja_value.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "chat/jinja_error.h"
#include "chat/jinja_js.h"

namespace celer::chat::jinja {

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::Undefined: return "undefined";
        case Kind::Null: return "none";
        case Kind::Bool: return "boolean";
        case Kind::Int: return "integer";
        case Kind::Float: return "float";
        case Kind::String: return "string";
        case Kind::List: return "list";
        case Kind::Object: return "dict";
        case Kind::Namespace: return "namespace";
        case Kind::Function: return "function";
    }
    return "?";
}

Value Value::none() {
    Value v;
    v.v_ = Null{};
    return v;
}
Value Value::boolean(bool b) {
    Value v;
    v.v_ = b;
    return v;
}
Value Value::integer(int64_t i) {
    Value v;
    v.v_ = i;
    return v;
}
Value Value::number(double d) {
    Value v;
    v.v_ = d;
    return v;
}
Value Value::string(std::string s) {
    Value v;
    v.v_ = Str{std::make_shared<const std::string>(std::move(s))};
    return v;
}
Value Value::list(std::shared_ptr<const List> l) {
    Value v;
    v.v_ = std::move(l);
    return v;
}
Value Value::object(std::shared_ptr<const Dict> d) {
    Value v;
    v.v_ = Obj{std::move(d)};
    return v;
}
Value Value::ns(std::shared_ptr<Dict> d) {
    Value v;
    v.v_ = Ns{std::move(d)};
    return v;
}
Value Value::function(std::shared_ptr<const Function> f) {
    Value v;
    v.v_ = std::move(f);
    return v;
}

const Dict& Value::dict() const {
    if (is(Kind::Namespace)) return *std::get<Ns>(v_).p;
    return *std::get<Obj>(v_).p;
}

const void* Value::identity() const {
    switch (kind()) {
        case Kind::List: return &list();
        case Kind::Object:
        case Kind::Namespace: return &dict();
        case Kind::Function: return &fn();
        default: return nullptr;
    }
}

const Value* Dict::find(std::string_view key) const {
    if (!index_.empty()) {
        const auto it = index_.find(key);
        return it == index_.end() ? nullptr : &entries_[it->second].second;
    }
    for (const auto& [k, v] : entries_) {
        if (k == key) return &v;
    }
    return nullptr;
}

Dict::Dict(std::vector<std::pair<std::string, Value>> distinct_entries) : entries_(std::move(distinct_entries)) {
    if (entries_.size() > kLinear) build_index();
}

void Dict::build_index() {
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
}

void Dict::set(const std::string& key, Value v) {
    if (Value* old = find_mut(key)) {
        *old = std::move(v);
        return;
    }
    entries_.emplace_back(key, std::move(v));
    if (entries_.size() <= kLinear) return;
    if (index_.empty()) build_index();
    else index_.emplace(key, entries_.size() - 1);
}

void Dict::clear() {
    index_.clear();
    entries_.clear();
}

void check_string_size(size_t bytes) {
    if (bytes > Limits::kStringBytes) {
        throw RuntimeError(fmt::format("string of {} bytes exceeds the limit of {}", bytes, Limits::kStringBytes));
    }
}

uint32_t value_depth(const Value& v) {
    switch (v.kind()) {
        case Kind::List: return v.list().depth;
        case Kind::Object: return v.dict().depth;
        case Kind::Namespace: return 1;
        default: return 0;
    }
}

namespace {

uint32_t checked_depth(uint32_t child_depth) {
    if (child_depth + 1 > Limits::kValueDepth) {
        throw RuntimeError(fmt::format("lists/dicts nested more than {} deep", Limits::kValueDepth));
    }
    return child_depth + 1;
}

}  // namespace

Value make_list(std::vector<Value> items, bool tuple) {
    if (items.size() > Limits::kItems) {
        throw RuntimeError(fmt::format("list of {} items exceeds the limit of {}", items.size(), Limits::kItems));
    }
    uint32_t child = 0;
    for (const auto& v : items) child = std::max(child, value_depth(v));
    auto l = std::make_shared<List>();
    l->items = std::move(items);
    l->depth = checked_depth(child);
    l->tuple = tuple;
    return Value::list(std::move(l));
}

Value make_object(Dict d) {
    uint32_t child = 0;
    for (const auto& [k, v] : d.entries()) child = std::max(child, value_depth(v));
    d.depth = checked_depth(child);
    return Value::object(std::make_shared<const Dict>(std::move(d)));
}

Value make_string(std::string s) {
    check_string_size(s.size());
    return Value::string(std::move(s));
}

bool truthy(const Value& v) {
    switch (v.kind()) {
        case Kind::Undefined:
        case Kind::Null: return false;
        case Kind::Bool: return v.as_bool();
        case Kind::Int: return v.as_int() != 0;
        case Kind::Float: return v.as_number() != 0 && !std::isnan(v.as_number());
        case Kind::String: return !v.str().empty();
        case Kind::List: return !v.list().items.empty();
        case Kind::Object: return v.dict().size() > 0;
        case Kind::Namespace:
        case Kind::Function: return true;
    }
    return false;
}

namespace {

// reference: integers are JavaScript numbers, so beyond 2^53 they print rounded.
std::string int_text(int64_t i) {
    constexpr int64_t kExact = int64_t(1) << 53;
    return i > kExact || i < -kExact ? js::number(double(i)) : std::to_string(i);
}

std::string float_display(double d) {
    if (d == 0 && std::signbit(d)) return "-0.0";
    // toFixed(1) for whole numbers below 1e21; above that JavaScript prints the exponent form.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e21) return fmt::format("{:.1f}", d);
    return js::number(d);
}

}  // namespace

std::string to_display(const Value& v) {
    switch (v.kind()) {
        // reference: none's payload is JavaScript's undefined too (only visible inside lists).
        case Kind::Undefined:
        case Kind::Null: return "undefined";
        case Kind::Bool: return v.as_bool() ? "true" : "false";
        case Kind::Int: return int_text(v.as_int());
        case Kind::Float: return float_display(v.as_number());
        case Kind::String: return v.str();
        case Kind::List:
        case Kind::Object:
        case Kind::Namespace: {
            JsonOptions o;
            o.undefined_as_null = false;
            return to_json(v, o);
        }
        case Kind::Function: break;
    }
    throw RuntimeError("cannot convert a function to a string");
}

std::string to_js_string(const Value& v) {
    switch (v.kind()) {
        case Kind::Float: return js::number(v.as_number());
        case Kind::Object:
        case Kind::Namespace: return "[object Map]";
        case Kind::List: {
            std::string out;
            for (size_t i = 0; i < v.list().items.size(); ++i) {
                if (i) out += ',';
                out += to_display(v.list().items[i]);
                check_string_size(out.size());
            }
            return out;
        }
        default: return to_display(v);
    }
}

namespace {

class JsonWriter {
public:
    JsonWriter(std::string& out, const JsonOptions& o) : out_(out), o_(o) {
        item_sep_ = o.custom_separators ? o.item_sep : o.indent ? "," : ", ";
        key_sep_ = o.custom_separators ? o.key_sep : ": ";
    }

    void write(const Value& v, uint32_t depth) {
        if (depth > Limits::kValueDepth) throw RuntimeError("tojson: value nested too deeply");
        switch (v.kind()) {
            case Kind::Undefined: out_ += o_.undefined_as_null ? "null" : "undefined"; break;
            case Kind::Null: out_ += "null"; break;
            case Kind::Bool: out_ += v.as_bool() ? "true" : "false"; break;
            case Kind::Int: out_ += int_text(v.as_int()); break;
            case Kind::Float: out_ += js::json_number(v.as_number()); break;
            case Kind::String: js::append_json_string(out_, v.str(), o_.ensure_ascii); break;
            case Kind::List:
                if (v.list().tuple) throw RuntimeError("cannot convert a tuple to JSON");
                write_list(v.list(), depth);
                break;
            case Kind::Object:
            case Kind::Namespace: write_dict(v.dict(), depth); break;
            case Kind::Function: throw RuntimeError("tojson: cannot convert a function to JSON");
        }
        check_string_size(out_.size());
    }

private:
    void newline(uint32_t depth) {
        if (!o_.indent) return;
        const size_t pad = size_t(o_.indent) * depth;
        check_string_size(out_.size() + 1 + pad);
        out_ += '\n';
        out_.append(pad, ' ');
    }

    void write_list(const List& l, uint32_t depth) {
        out_ += '[';
        for (size_t i = 0; i < l.items.size(); ++i) {
            if (i) out_ += item_sep_;
            newline(depth + 1);
            write(l.items[i], depth + 1);
        }
        if (!l.items.empty()) newline(depth);
        out_ += ']';
    }

    void write_dict(const Dict& d, uint32_t depth) {
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& e : d.entries()) entries.push_back(&e);
        if (o_.sort_keys) std::stable_sort(entries.begin(), entries.end(), locale_less);
        out_ += '{';
        for (size_t i = 0; i < entries.size(); ++i) {
            if (i) out_ += item_sep_;
            newline(depth + 1);
            js::append_json_string(out_, entries[i]->first, o_.ensure_ascii);
            out_ += key_sep_;
            write(entries[i]->second, depth + 1);
        }
        if (!entries.empty()) newline(depth);
        out_ += '}';
    }

    // The reference sorts with String.prototype.localeCompare. Approximation of its collation
    // for ASCII keys: case-insensitive first, then lower case before upper case.
    static bool locale_less(const std::pair<std::string, Value>* a, const std::pair<std::string, Value>* b) {
        const std::string la = js::to_lower(a->first), lb = js::to_lower(b->first);
        if (la != lb) return la < lb;
        return a->first > b->first;
    }

    std::string& out_;
    const JsonOptions& o_;
    std::string item_sep_, key_sep_;
};

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options) {
    std::string out;
    JsonWriter(out, options).write(v, 0);
    return out;
}

bool strict_equal(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) return a.as_number() == b.as_number();
    const auto nullish = [](const Value& v) { return v.is(Kind::Null) || v.is(Kind::Undefined); };
    if (nullish(a) || nullish(b)) return nullish(a) && nullish(b);  // both are JavaScript undefined
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
        case Kind::Undefined:
        case Kind::Null: return true;
        case Kind::Bool: return a.as_bool() == b.as_bool();
        case Kind::String: return a.str() == b.str();
        default: return a.identity() == b.identity();
    }
}

namespace {

bool is_compound(const Value& v) {
    return v.is(Kind::List) || v.is(Kind::Object) || v.is(Kind::Namespace) || v.is(Kind::Function);
}

double primitive_number(const Value& v) {
    if (v.is(Kind::Bool)) return v.as_bool() ? 1 : 0;
    if (v.is(Kind::String)) return js::to_number(v.str());
    return v.as_number();
}

}  // namespace

bool loose_equal(const Value& a, const Value& b) {
    const bool a_nullish = a.is(Kind::Null) || a.is(Kind::Undefined);
    const bool b_nullish = b.is(Kind::Null) || b.is(Kind::Undefined);
    if (a_nullish || b_nullish) return a_nullish && b_nullish;
    if (is_compound(a) && is_compound(b)) return a.identity() == b.identity();
    if (is_compound(a) || is_compound(b)) {
        // JavaScript turns the object into a primitive string first; functions never match.
        if (a.is(Kind::Function) || b.is(Kind::Function)) return false;
        return is_compound(a) ? loose_equal(Value::string(to_js_string(a)), b)
                              : loose_equal(a, Value::string(to_js_string(b)));
    }
    if (a.kind() == b.kind() || (a.is_number() && b.is_number())) return strict_equal(a, b);
    return primitive_number(a) == primitive_number(b);
}

}  // namespace celer::chat::jinja
