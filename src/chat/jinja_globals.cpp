// The global functions (namespace, range, raise_exception, strftime_now) and the per-render
// bookkeeping.
#include <ctime>

#include <fmt/format.h>

#include "chat/jinja_builtins.h"
#include "chat/jinja_error.h"

namespace celer::chat::jinja {

RenderState::~RenderState() {
    for (auto& ns : namespaces_) ns->clear();
}

void RenderState::step() {
    if (++steps_ > Limits::kSteps) {
        throw RuntimeError(fmt::format("template took more than {} steps (an endless loop?)", Limits::kSteps));
    }
}

void RenderState::produced(size_t bytes) {
    produced_ += bytes;
    if (produced_ > Limits::kProducedBytes) {
        throw RuntimeError(fmt::format("template built more than {} bytes of strings", Limits::kProducedBytes));
    }
}

Value RenderState::new_namespace(Dict entries) {
    namespaces_.push_back(std::make_shared<Dict>(std::move(entries)));
    return Value::ns(namespaces_.back());
}

const std::vector<std::string_view>& global_function_names() {
    static const std::vector<std::string_view> names{"namespace", "range", "raise_exception", "strftime_now"};
    return names;
}

namespace {

Value make_namespace(const CallArgs& args, RenderState& state) {
    if (args.positional.size() > 1) throw RuntimeError("namespace() takes at most one positional argument");
    Dict d;
    if (!args.positional.empty()) {
        const Value& src = args.positional[0];
        if (src.is(Kind::Object)) {
            for (const auto& [k, v] : src.dict().entries()) d.set(k, v);
        } else if (src.is(Kind::List)) {
            for (const auto& pair : src.list().items) {
                if (!pair.is(Kind::List) || pair.list().items.size() != 2 || !pair.list().items[0].is(Kind::String)) {
                    throw RuntimeError("namespace() expects a dict or a list of [key, value] pairs");
                }
                d.set(pair.list().items[0].str(), pair.list().items[1]);
            }
        } else {
            throw RuntimeError(fmt::format("namespace() cannot take a {}", kind_name(src.kind())));
        }
    }
    for (const auto& [k, v] : args.keyword) d.set(k, v);
    return state.new_namespace(std::move(d));
}

Value range(const CallArgs& args) {
    for (const auto& a : args.positional) {
        if (!a.is(Kind::Int)) throw RuntimeError("range() takes integers");
    }
    const size_t n = args.positional.size();
    if (n == 0 || n > 3 || !args.keyword.empty()) throw RuntimeError("range() takes 1 to 3 integers");
    const int64_t start = n == 1 ? 0 : args.positional[0].as_int();
    const int64_t stop = n == 1 ? args.positional[0].as_int() : args.positional[1].as_int();
    const int64_t step = n == 3 ? args.positional[2].as_int() : 1;
    if (step == 0) throw RuntimeError("range() step must not be zero");
    const __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
    const __int128 count = span <= 0 ? 0 : (span + (step > 0 ? step : -__int128(step)) - 1) / (step > 0 ? step : -__int128(step));
    if (count > __int128(Limits::kItems)) throw RuntimeError(fmt::format("range() of more than {} numbers", Limits::kItems));
    std::vector<Value> out;
    for (__int128 i = 0; i < count; ++i) out.push_back(Value::integer(int64_t(start + i * step)));
    return make_list(std::move(out));
}

// reference: a small strftime of the local time with %Y %m %d %b %B %H %M %% (month names in
// English); other directives are left as written.
Value strftime_now(const CallArgs& args) {
    if (args.positional.empty() || !args.positional[0].is(Kind::String)) throw RuntimeError("strftime_now() takes a format string");
    static constexpr const char* kMonths[] = {"January", "February", "March", "April", "May", "June", "July",
                                             "August", "September", "October", "November", "December"};
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    const std::string& f = args.positional[0].str();
    std::string out;
    for (size_t i = 0; i < f.size(); ++i) {
        if (f[i] != '%' || i + 1 >= f.size()) {
            out += f[i];
            continue;
        }
        const char c = f[++i];
        switch (c) {
            case 'Y': out += std::to_string(tm.tm_year + 1900); break;
            case 'm': out += fmt::format("{:02}", tm.tm_mon + 1); break;
            case 'd': out += fmt::format("{:02}", tm.tm_mday); break;
            case 'b': out += std::string(kMonths[tm.tm_mon]).substr(0, 3); break;
            case 'B': out += kMonths[tm.tm_mon]; break;
            case 'H': out += fmt::format("{:02}", tm.tm_hour); break;
            case 'M': out += fmt::format("{:02}", tm.tm_min); break;
            case '%': out += '%'; break;
            default: out += '%', out += c;
        }
    }
    return Value::string(std::move(out));
}

}  // namespace

Value call_global(const std::string& name, const CallArgs& args, RenderState& state) {
    if (name == "namespace") return make_namespace(args, state);
    if (name == "range") return range(args);
    if (name == "strftime_now") return strftime_now(args);
    // raise_exception: the template's own error message, as the reference reports it.
    const bool given = !args.positional.empty() && !args.positional[0].is(Kind::Undefined) && !args.positional[0].is(Kind::Null);
    const std::string message = given ? to_js_string(args.positional[0]) : "";
    throw RuntimeError("raise_exception: " + message);
}

}  // namespace celer::chat::jinja
