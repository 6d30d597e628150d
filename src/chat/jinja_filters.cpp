// Filters (`x | name`, `x | name(args)`) and tests (`x is name`).
//
// reference: @huggingface/jinja picks a filter by the operand's type and by whether it was
// written with parentheses, and the two forms differ (`| int` floors a float, `| int(0)`
// returns it unchanged). The dispatch below keeps that shape so outputs match; a filter
// that does not exist for a type is an error, as it is there.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include <fmt/format.h>

#include "chat/jinja_builtins.h"
#include "chat/jinja_error.h"
#include "chat/jinja_js.h"

namespace celer::chat::jinja {

namespace {

[[noreturn]] void no_filter(const std::string& name, const Value& v) {
    throw RuntimeError(fmt::format("unknown filter '{}' for {}", name, kind_name(v.kind())));
}

Value method(const std::string& name, const Value& self, const CallArgs& args, RenderState& state) {
    Function f;
    f.type = Function::Type::Method;
    f.name = name;
    f.self = self;
    return call_method(f, args, state);
}

const Value& expect_kind(const Value* v, Kind kind, const Value& fallback, std::string_view what) {
    if (!v) return fallback;
    if (!v->is(kind)) throw RuntimeError(fmt::format("{} must be {}, not {}", what, kind_name(kind), kind_name(v->kind())));
    return *v;
}

Value tojson(const Value& v, const CallArgs* args) {
    JsonOptions o;
    if (args) {  // reference: only keyword arguments count
        if (const Value* indent = args->keyword_arg("indent"); indent && !indent->is(Kind::Null)) {
            o.indent = expect_kind(indent, Kind::Int, {}, "tojson indent").as_int();
            if (o.indent < 0) throw RuntimeError("tojson indent must not be negative");
        }
        o.ensure_ascii = expect_kind(args->keyword_arg("ensure_ascii"), Kind::Bool, Value::boolean(false), "tojson ensure_ascii").as_bool();
        o.sort_keys = expect_kind(args->keyword_arg("sort_keys"), Kind::Bool, Value::boolean(false), "tojson sort_keys").as_bool();
        if (const Value* sep = args->keyword_arg("separators"); sep && !sep->is(Kind::Null)) {
            const auto& items = expect_kind(sep, Kind::List, {}, "tojson separators").list().items;
            if (items.size() != 2 || !items[0].is(Kind::String) || !items[1].is(Kind::String)) {
                throw RuntimeError("tojson separators must be a pair of strings");
            }
            o.custom_separators = true;
            o.item_sep = items[0].str();
            o.key_sep = items[1].str();
        }
    }
    return make_string(to_json(v, o));
}

Value indent(const std::string& s, int64_t width, bool first, bool blank) {
    if (width < 0 || size_t(width) > Limits::kStringBytes) throw RuntimeError("indent width out of range");
    const size_t lines = size_t(std::count(s.begin(), s.end(), '\n')) + 1;
    check_string_size(s.size() + lines * size_t(width));
    std::string out;
    size_t start = 0;
    for (size_t i = 0; i < lines; ++i) {
        size_t end = s.find('\n', start);
        if (end == std::string::npos) end = s.size();
        const std::string_view line(s.data() + start, end - start);
        if (i) out += '\n';
        if ((first || i > 0) && (blank || !line.empty())) out.append(size_t(width), ' ');
        out += line;
        start = end + 1;
    }
    return Value::string(std::move(out));
}

// Value at a dotted attribute path ("a.b", "items.0"), as sort(attribute=) and map use it.
Value attribute_path(const Value& item, std::string_view path) {
    Value v = item;
    size_t start = 0;
    while (true) {
        const size_t dot = path.find('.', start);
        const std::string_view part = path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (v.is_mapping_like()) {
            const Value* f = v.dict().find(part);
            v = f ? *f : Value{};
        } else if (v.is(Kind::List)) {
            const double index = js::parse_int(part);
            if (!(index >= 0 && index < double(v.list().items.size()))) return {};
            v = v.list().items[size_t(index)];
        } else {
            return {};
        }
        if (dot == std::string_view::npos) return v;
        start = dot + 1;
    }
}

Value sort_list(const std::vector<Value>& items, const CallArgs* args) {
    const Value no = Value::boolean(false);
    const bool reverse = args ? expect_kind(args->get(0, "reverse"), Kind::Bool, no, "sort reverse").as_bool() : false;
    const bool case_sensitive =
        args ? expect_kind(args->get(1, "case_sensitive"), Kind::Bool, no, "sort case_sensitive").as_bool() : false;
    const Value* attr = args ? args->get(2, "attribute") : nullptr;
    if (attr && !(attr->is(Kind::String) || attr->is(Kind::Int) || attr->is(Kind::Null))) {
        throw RuntimeError("sort attribute must be a string, an integer or none");
    }
    const auto key = [&](const Value& v) {
        if (!attr || attr->is(Kind::Null)) return v;
        return attribute_path(v, attr->is(Kind::Int) ? std::to_string(attr->as_int()) : attr->str());
    };
    std::vector<Value> out = items;
    std::stable_sort(out.begin(), out.end(), [&](const Value& a, const Value& b) {
        const int c = compare_values(key(a), key(b), case_sensitive);
        return reverse ? c > 0 : c < 0;
    });
    return make_list(std::move(out));
}

Value unique(const std::vector<Value>& items) {
    // reference: a JavaScript Set of the payloads: numbers by value, lists/dicts by identity.
    std::unordered_set<std::string> seen;
    std::vector<Value> out;
    for (const auto& v : items) {
        const Kind kind = v.is_number() ? Kind::Float : v.is(Kind::Null) ? Kind::Undefined : v.kind();
        std::string k = fmt::format("{}:", int(kind));
        if (v.is_number()) k += js::number(v.as_number());
        else if (v.is(Kind::String)) k += v.str();
        else if (v.is(Kind::Bool)) k += v.as_bool() ? '1' : '0';
        else k += fmt::format("{}", v.identity());
        if (seen.insert(std::move(k)).second) out.push_back(v);
    }
    return make_list(std::move(out));
}

Value select_attr(const std::string& name, const std::vector<Value>& items, const CallArgs& args) {
    const bool select = name == "selectattr";
    for (const auto& v : items) {
        if (!v.is_mapping_like()) throw RuntimeError(fmt::format("{} needs a list of dicts", name));
    }
    const Value* attr = args.get(0, "");
    const Value* test = args.get(1, "");
    const Value* arg = args.get(2, "");
    if (!attr || !attr->is(Kind::String) || (test && !test->is(Kind::String))) {
        throw RuntimeError(fmt::format("{} takes an attribute name and an optional test name", name));
    }
    std::vector<Value> out;
    for (const auto& v : items) {
        const Value* a = v.dict().find(attr->str());
        const Value none_arg;
        const bool hit = a && (test ? apply_test(test->str(), *a, arg ? arg : &none_arg) : truthy(*a));
        if (hit == select) out.push_back(v);
    }
    return make_list(std::move(out));
}

Value map_attr(const std::vector<Value>& items, const CallArgs& args) {
    const Value* attr = args.keyword_arg("attribute");
    if (!attr) throw RuntimeError("map without attribute= is not supported");
    if (!attr->is(Kind::String)) throw RuntimeError("map attribute must be a string");
    const Value* fallback = args.keyword_arg("default");
    std::vector<Value> out;
    for (const auto& v : items) {
        if (!v.is_mapping_like()) throw RuntimeError("map(attribute=...) needs a list of dicts");
        Value r = attribute_path(v, attr->str());
        out.push_back(r.is(Kind::Undefined) && fallback ? *fallback : r);
    }
    return make_list(std::move(out));
}

Value to_int(double d) {
    if (!(std::fabs(d) < 9.2e18)) throw RuntimeError("int: value out of range");
    return Value::integer(int64_t(d));
}

Value list_filter(const std::string& name, const Value& v, const CallArgs* args) {
    const auto& items = v.list().items;
    if (args) {
        if (name == "sort") return sort_list(items, args);
        if (name == "selectattr" || name == "rejectattr") return select_attr(name, items, *args);
        if (name == "map") return map_attr(items, *args);
        no_filter(name, v);
    }
    if (name == "list") return v;
    if (name == "first") return items.empty() ? Value{} : items.front();
    if (name == "last") return items.empty() ? Value{} : items.back();
    if (name == "length") return Value::integer(int64_t(items.size()));
    if (name == "reverse") return make_list(std::vector<Value>(items.rbegin(), items.rend()));
    if (name == "sort") return sort_list(items, nullptr);
    if (name == "join") return make_string(join_values(items, ""));
    if (name == "unique") return unique(items);
    if (name == "string") return make_string(to_display(v));
    no_filter(name, v);
}

Value string_filter(const std::string& name, const Value& v, const CallArgs* args, RenderState& state) {
    const std::string& s = v.str();
    if (args) {
        if (name == "indent") {
            const Value four = Value::integer(4);
            const int64_t width = expect_kind(args->get(0, "width"), Kind::Int, four, "indent width").as_int();
            const Value* first = args->get(1, "first");
            const Value* blank = args->get(2, "blank");
            return indent(s, width, first && truthy(*first), blank && truthy(*blank));
        }
        if (name == "replace") return method("replace", v, *args, state);
        no_filter(name, v);
    }
    if (name == "length" || name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
        return name == "length" ? Value::integer(int64_t(js::utf16_length(s))) : method(name, v, {}, state);
    }
    if (name == "trim") return Value::string(std::string(js::trim(s, true, true)));
    if (name == "indent") return indent(s, 4, false, false);
    if (name == "join" || name == "string") return v;
    if (name == "int") {
        const double d = js::parse_int(s);
        return std::isnan(d) ? Value::integer(0) : to_int(d);
    }
    if (name == "float") {
        const double d = js::parse_float(s);
        return Value::number(std::isnan(d) ? 0.0 : d);
    }
    no_filter(name, v);
}

Value plain_filter(const std::string& name, const Value& v, RenderState& state) {
    switch (v.kind()) {
        case Kind::Int:
        case Kind::Float:
            if (name == "abs") {
                if (v.is(Kind::Float)) return Value::number(std::fabs(v.as_number()));
                if (v.as_int() == INT64_MIN) throw RuntimeError("integer overflow");
                return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
            }
            if (name == "int") return v.is(Kind::Int) ? v : to_int(std::floor(v.as_number()));
            if (name == "float") return Value::number(v.as_number());
            if (name == "string") return Value::string(to_display(v));
            break;
        case Kind::Object:
            if (name == "items") return make_list(dict_items(v.dict()));
            if (name == "length") return Value::integer(int64_t(v.dict().size()));
            if (!builtin_attribute(v, name).is(Kind::Undefined)) return method(name, v, {}, state);
            break;
        case Kind::Bool:
            if (name == "bool") return v;
            if (name == "int") return Value::integer(v.as_bool() ? 1 : 0);
            if (name == "float") return Value::number(v.as_bool() ? 1.0 : 0.0);
            if (name == "string") return Value::string(v.as_bool() ? "true" : "false");
            break;
        default: break;
    }
    throw RuntimeError(fmt::format("filter '{}' cannot be applied to {}", name, kind_name(v.kind())));
}

Value number_conversion(const std::string& name, const Value& v, const CallArgs& args) {
    const bool is_int = name == "int";
    const Value* given = args.get(0, "default");
    const Value fallback = given ? *given : is_int ? Value::integer(0) : Value::number(0.0);
    if (v.is(Kind::String)) {
        const double d = is_int ? js::parse_int(v.str()) : js::parse_float(v.str());
        if (std::isnan(d)) return fallback;
        return is_int ? to_int(d) : Value::number(d);
    }
    if (v.is_number()) return v;  // reference: returned unchanged, even int(3.7)
    if (v.is(Kind::Bool)) return is_int ? Value::integer(v.as_bool()) : Value::number(v.as_bool() ? 1.0 : 0.0);
    throw RuntimeError(fmt::format("filter '{}' cannot be applied to {}", name, kind_name(v.kind())));
}

Value join(const Value& v, const CallArgs& args) {
    const Value empty = Value::string("");
    const std::string& sep = expect_kind(args.get(0, "separator"), Kind::String, empty, "join separator").str();
    if (v.is(Kind::List)) return make_string(join_values(v.list().items, sep));
    if (!v.is(Kind::String)) throw RuntimeError(fmt::format("filter 'join' cannot be applied to {}", kind_name(v.kind())));
    // A string joins its code points.
    const std::string& s = v.str();
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (i) out += sep;
        size_t len = 0;
        js::decode(s, i, &len);
        out.append(s, i, len);
        check_string_size(out.size());
        i += len;
    }
    return Value::string(std::move(out));
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, const CallArgs* args, RenderState& state) {
    if (name == "safe") return v;
    if (name == "tojson") return tojson(v, args);
    if (name == "default" || name == "d") {
        // Extensions, as in Python's Jinja: `| default` without parentheses and the `d` alias
        // (the reference only knows `default(...)`).
        const Value empty = Value::string("");
        const Value* fallback = args ? args->get(0, "default_value") : nullptr;
        const Value* boolean = args ? args->get(1, "boolean") : nullptr;
        const bool use_truthiness = expect_kind(boolean, Kind::Bool, Value::boolean(false), "default boolean").as_bool();
        const bool replace = v.is(Kind::Undefined) || (use_truthiness && !truthy(v));
        return replace ? (fallback ? *fallback : empty) : v;
    }
    if (args && name == "join") return join(v, *args);
    if (args && (name == "int" || name == "float")) return number_conversion(name, v, *args);
    if (v.is(Kind::List)) return list_filter(name, v, args);
    if (v.is(Kind::String)) return string_filter(name, v, args, state);
    if (args && v.is(Kind::Object) && !builtin_attribute(v, name).is(Kind::Undefined)) {
        return method(name, v, *args, state);
    }
    if (args) throw RuntimeError(fmt::format("filter '{}' cannot be applied to {}", name, kind_name(v.kind())));
    return plain_filter(name, v, state);
}

bool apply_test(std::string_view name, const Value& v, const Value* arg) {
    const auto parity = [&](int r) {
        if (!v.is(Kind::Int)) throw RuntimeError(fmt::format("test '{}' needs an integer, not {}", name, kind_name(v.kind())));
        return (v.as_int() % 2 != 0) == (r == 1);
    };
    if (name == "defined") return !v.is(Kind::Undefined);
    if (name == "undefined") return v.is(Kind::Undefined);
    if (name == "none") return v.is(Kind::Null);
    if (name == "boolean") return v.is(Kind::Bool);
    if (name == "true") return v.is(Kind::Bool) && v.as_bool();
    if (name == "false") return v.is(Kind::Bool) && !v.as_bool();
    if (name == "string") return v.is(Kind::String);
    if (name == "number") return v.is_number();
    if (name == "integer") return v.is(Kind::Int);
    if (name == "callable") return v.is(Kind::Function);
    // reference: a namespace is not a mapping; a dict and a tuple are not iterable.
    if (name == "mapping") return v.is(Kind::Object);
    if (name == "iterable") return (v.is(Kind::List) && !v.list().tuple) || v.is(Kind::String);
    if (name == "sequence") return v.is(Kind::List) || v.is(Kind::Object) || v.is(Kind::String);
    if (name == "lower") return v.is(Kind::String) && v.str() == js::to_lower(v.str());
    if (name == "upper") return v.is(Kind::String) && v.str() == js::to_upper(v.str());
    if (name == "odd") return parity(1);
    if (name == "even") return parity(0);
    if (name == "equalto" || name == "eq") return strict_equal(v, arg ? *arg : Value{});
    throw RuntimeError(fmt::format("unknown test '{}'", name));
}

}  // namespace celer::chat::jinja
