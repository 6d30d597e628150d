#include "chat/jinja.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "chat/jinja_error.h"
#include "chat/jinja_eval.h"
#include "chat/jinja_parser.h"
#include "util/error.h"

namespace celer::chat {

namespace {

using jinja::Kind;
using jinja::Value;

template <class Json>
Value from_json(const Json& j, uint32_t depth) {
    if (depth > jinja::Limits::kValueDepth) throw jinja::RuntimeError("nested too deeply");
    switch (j.type()) {
        case Json::value_t::null: return Value::none();
        case Json::value_t::boolean: return Value::boolean(j.template get<bool>());
        case Json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
        case Json::value_t::number_unsigned: {
            const auto u = j.template get<uint64_t>();
            return u <= uint64_t(INT64_MAX) ? Value::integer(int64_t(u)) : Value::number(double(u));
        }
        case Json::value_t::number_float: {
            // The reference sees JSON through JavaScript, where 2.0 is the integer 2.
            const double d = j.template get<double>();
            if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.2e18) return Value::integer(int64_t(d));
            return Value::number(d);
        }
        case Json::value_t::string: return jinja::make_string(j.template get<std::string>());
        case Json::value_t::array: {
            std::vector<Value> items;
            for (const auto& item : j) items.push_back(from_json(item, depth + 1));
            return jinja::make_list(std::move(items));
        }
        case Json::value_t::object: {
            std::vector<std::pair<std::string, Value>> entries;
            for (const auto& [k, v] : j.items()) entries.emplace_back(k, from_json(v, depth + 1));
            return jinja::make_object(jinja::Dict(std::move(entries)));
        }
        default: throw jinja::RuntimeError("binary values are not supported");
    }
}

template <class Json>
std::string render_json(const jinja::Program& program, const Json& context) {
    if (!context.is_object()) throw Error("chat template: context: must be a JSON object");
    std::vector<std::pair<std::string, Value>> vars;
    for (const auto& [k, v] : context.items()) {
        try {
            vars.emplace_back(k, from_json(v, 0));
        } catch (const jinja::RuntimeError& e) {
            throw Error(fmt::format("chat template: context: {}: {}", k, e.what()));
        }
    }
    return jinja::render(program, vars);
}

}  // namespace

Template::Template(std::string_view source) : program_(std::make_shared<const jinja::Program>(jinja::parse(source))) {}

std::string Template::render(const nlohmann::ordered_json& context) const { return render_json(*program_, context); }
std::string Template::render(const nlohmann::json& context) const { return render_json(*program_, context); }

}  // namespace celer::chat
