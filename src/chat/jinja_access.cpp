// Attribute access, subscripts and slices: obj.name, obj[key], obj[start:stop:step].
#include <algorithm>

#include <fmt/format.h>

#include "chat/jinja_builtins.h"
#include "chat/jinja_error.h"
#include "chat/jinja_js.h"

namespace celer::chat::jinja {

// reference: slicing follows Python except that an explicit stop of -1 with a negative step
// means "through the first element".
Value slice_of(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
    for (const Value* v : {&start_v, &stop_v, &step_v}) {
        if (!v->is(Kind::Int) && !v->is(Kind::Undefined)) throw RuntimeError("slice bounds must be integers");
    }
    // Strings slice by code point (the reference slices Array.from(string)); starts[i] is where
    // code point i begins, 4 bytes per code point rather than a string per character.
    std::vector<uint32_t> starts;
    if (obj.is(Kind::String)) {
        for (size_t i = 0; i < obj.str().size();) {
            starts.push_back(uint32_t(i));
            size_t len = 0;
            js::decode(obj.str(), i, &len);
            i += len;
        }
        starts.push_back(uint32_t(obj.str().size()));
    } else if (!obj.is(Kind::List)) {
        throw RuntimeError(fmt::format("cannot slice a {}", kind_name(obj.kind())));
    }
    const int64_t n = obj.is(Kind::String) ? int64_t(starts.size()) - 1 : int64_t(obj.list().items.size());
    int64_t step = step_v.is(Kind::Int) ? step_v.as_int() : 1;
    step = std::clamp<int64_t>(step, -(n + 2), n + 2);  // any larger stride takes one element at most
    int64_t start = 0, stop = 0;
    if (step >= 0) {
        start = start_v.is(Kind::Int) ? start_v.as_int() : 0;
        stop = stop_v.is(Kind::Int) ? stop_v.as_int() : n;
        start = start < 0 ? std::max<int64_t>(n + start, 0) : std::min(start, n);
        stop = stop < 0 ? std::max<int64_t>(n + stop, 0) : std::min(stop, n);
    } else {
        start = start_v.is(Kind::Int) ? start_v.as_int() : n - 1;
        stop = stop_v.is(Kind::Int) ? stop_v.as_int() : -1;
        start = start < 0 ? std::max<int64_t>(n + start, -1) : std::min(start, n - 1);
        stop = stop < -1 ? std::max<int64_t>(n + stop, -1) : std::min(stop, n - 1);
    }
    const int64_t dir = step > 0 ? 1 : step < 0 ? -1 : 0;
    if (obj.is(Kind::String)) {
        std::string out;
        for (int64_t i = start; dir * i < dir * stop; i += step) {
            out.append(obj.str(), starts[size_t(i)], starts[size_t(i) + 1] - starts[size_t(i)]);
        }
        return Value::string(std::move(out));
    }
    std::vector<Value> out;
    for (int64_t i = start; dir * i < dir * stop; i += step) out.push_back(obj.list().items[size_t(i)]);
    return make_list(std::move(out));
}

// obj.name / obj[key]: dict entries first, then built-in attributes (methods, length).
Value member_of(const Value& obj, const Value& key) {
    if (obj.is_mapping_like()) {
        if (!key.is(Kind::String)) throw RuntimeError(fmt::format("dict keys are strings, not {}", kind_name(key.kind())));
        if (const Value* v = obj.dict().find(key.str())) return *v;
        return obj.is(Kind::Object) ? builtin_attribute(obj, key.str()) : Value{};
    }
    if ((obj.is(Kind::List) || obj.is(Kind::String)) && key.is(Kind::Int)) {
        const int64_t i = key.as_int();
        if (obj.is(Kind::String)) {
            std::string ch;
            return js::utf16_at(obj.str(), i, &ch) ? Value::string(std::move(ch)) : Value{};
        }
        const auto n = int64_t(obj.list().items.size());
        const int64_t k = i < 0 ? i + n : i;
        return k >= 0 && k < n ? obj.list().items[size_t(k)] : Value{};
    }
    // reference: attributes of none and undefined are undefined, not an error.
    if (!key.is(Kind::String)) {
        throw RuntimeError(fmt::format("cannot index a {} with a {}", kind_name(obj.kind()), kind_name(key.kind())));
    }
    return builtin_attribute(obj, key.str());
}

}  // namespace celer::chat::jinja
