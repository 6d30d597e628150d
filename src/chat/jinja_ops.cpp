// Operator semantics, in the order the reference checks its cases (the first that applies
// wins): equality, undefined/none operands, `~`, `**`, numbers, lists, membership, strings.
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "chat/jinja_builtins.h"
#include "chat/jinja_error.h"

namespace celer::chat::jinja {

namespace {

const char* op_text(Op op) {
    switch (op) {
        case Op::Add: case Op::Pos: return "+";
        case Op::Sub: case Op::Neg: return "-";
        case Op::Mul: return "*";
        case Op::Div: return "/";
        case Op::FloorDiv: return "//";
        case Op::Mod: return "%";
        case Op::Pow: return "**";
        case Op::Concat: return "~";
        case Op::Eq: return "==";
        case Op::Ne: return "!=";
        case Op::Lt: return "<";
        case Op::Gt: return ">";
        case Op::Le: return "<=";
        case Op::Ge: return ">=";
        case Op::In: return "in";
        case Op::NotIn: return "not in";
        case Op::And: return "and";
        case Op::Or: return "or";
        case Op::Not: return "not";
    }
    return "?";
}

[[noreturn]] void unsupported(Op op, const Value& l, const Value& r) {
    throw RuntimeError(fmt::format("unsupported operator '{}' between {} and {}", op_text(op), kind_name(l.kind()),
                                   kind_name(r.kind())));
}

[[noreturn]] void overflow() { throw RuntimeError("integer overflow"); }

// Integers are exact int64 here (JavaScript would round past 2^53); overflow is an error.
Value int_arith(Op op, int64_t a, int64_t b) {
    int64_t r = 0;
    switch (op) {
        case Op::Add: if (__builtin_add_overflow(a, b, &r)) overflow(); return Value::integer(r);
        case Op::Sub: if (__builtin_sub_overflow(a, b, &r)) overflow(); return Value::integer(r);
        case Op::Mul: if (__builtin_mul_overflow(a, b, &r)) overflow(); return Value::integer(r);
        case Op::FloorDiv: {
            if (b == 0) throw RuntimeError("integer division by zero");
            if (a == INT64_MIN && b == -1) overflow();
            int64_t q = a / b;
            if ((a % b != 0) && ((a < 0) != (b < 0))) --q;  // round toward negative infinity
            return Value::integer(q);
        }
        case Op::Mod:  // reference: JavaScript's %, which keeps the dividend's sign (-7 % 2 == -1)
            if (b == 0) throw RuntimeError("integer modulo by zero");
            return Value::integer(b == -1 ? 0 : a % b);
        default: return {};
    }
}

// Numbers on both sides; Undefined when the operator does not apply to numbers.
Value numeric(Op op, const Value& l, const Value& r) {
    if (l.is(Kind::Int) && r.is(Kind::Int)) {
        const int64_t a = l.as_int(), b = r.as_int();
        switch (op) {
            case Op::Lt: return Value::boolean(a < b);
            case Op::Gt: return Value::boolean(a > b);
            case Op::Le: return Value::boolean(a <= b);
            case Op::Ge: return Value::boolean(a >= b);
            case Op::Div: return Value::number(double(a) / double(b));
            default: return int_arith(op, a, b);
        }
    }
    const double a = l.as_number(), b = r.as_number();
    switch (op) {
        case Op::Add: return Value::number(a + b);
        case Op::Sub: return Value::number(a - b);
        case Op::Mul: return Value::number(a * b);
        case Op::Div: return Value::number(a / b);
        case Op::FloorDiv: return Value::number(std::floor(a / b));
        case Op::Mod: return Value::number(std::fmod(a, b));
        case Op::Lt: return Value::boolean(a < b);
        case Op::Gt: return Value::boolean(a > b);
        case Op::Le: return Value::boolean(a <= b);
        case Op::Ge: return Value::boolean(a >= b);
        default: return {};
    }
}

bool numeric_like(const Value& v) { return v.is_number() || v.is(Kind::Bool); }
double numeric_value(const Value& v) { return v.is(Kind::Bool) ? (v.as_bool() ? 1 : 0) : v.as_number(); }

Value power(const Value& l, const Value& r) {
    const double a = numeric_value(l), b = numeric_value(r);
    if (a == 0 && b < 0) throw RuntimeError("0 cannot be raised to a negative power");
    if (l.is(Kind::Float) || r.is(Kind::Float) || b < 0) {
        const double p = std::pow(a, b);
        if (!std::isfinite(p)) throw RuntimeError("exponentiation result is not a finite real number");
        return Value::number(p);
    }
    // Exact integer power by squaring.
    const auto exact = [](const Value& v) { return v.is(Kind::Bool) ? int64_t(v.as_bool()) : v.as_int(); };
    int64_t base = exact(l), result = 1;
    for (int64_t e = exact(r); e > 0; e >>= 1) {
        if ((e & 1) && __builtin_mul_overflow(result, base, &result)) overflow();
        if (e > 1 && __builtin_mul_overflow(base, base, &base)) overflow();
    }
    return Value::integer(result);
}

Value concat_strings(const std::string& a, const std::string& b) {
    check_string_size(a.size() + b.size());
    return Value::string(a + b);
}

bool contains(const Value& container, const Value& item) {
    if (container.is(Kind::List)) {
        for (const auto& v : container.list().items) {
            if (strict_equal(v, item)) return true;
        }
        return false;
    }
    if (container.is(Kind::String)) return find_bytes(container.str(), item.str(), 0) != std::string::npos;
    return container.dict().find(item.str()) != nullptr;
}

}  // namespace

size_t find_bytes(std::string_view haystack, std::string_view needle, size_t from) {
    if (from > haystack.size()) return std::string_view::npos;
    if (needle.empty()) return from;
    // glibc's memmem is the two-way algorithm: linear time, where std::string::find is
    // quadratic on inputs like "aaa...ab" that a hostile template can build.
    const void* p = memmem(haystack.data() + from, haystack.size() - from, needle.data(), needle.size());
    return p ? size_t(static_cast<const char*>(p) - haystack.data()) : std::string_view::npos;
}

Value binary_op(Op op, const Value& l, const Value& r) {
    if (op == Op::Eq) return Value::boolean(loose_equal(l, r));
    if (op == Op::Ne) return Value::boolean(!loose_equal(l, r));
    const bool membership = op == Op::In || op == Op::NotIn;
    if (l.is(Kind::Undefined) || r.is(Kind::Undefined)) {
        // reference: `x in undefined` is false rather than an error.
        if (r.is(Kind::Undefined) && membership) return Value::boolean(op == Op::NotIn);
        throw RuntimeError(fmt::format("operator '{}' on an undefined value", op_text(op)));
    }
    if (l.is(Kind::Null) || r.is(Kind::Null)) throw RuntimeError(fmt::format("operator '{}' on none", op_text(op)));
    if (op == Op::Concat) return concat_strings(to_js_string(l), to_js_string(r));
    if (op == Op::Pow && numeric_like(l) && numeric_like(r)) return power(l, r);
    if (l.is_number() && r.is_number()) {
        Value v = numeric(op, l, r);
        if (!v.is(Kind::Undefined)) return v;
    } else if (l.is(Kind::List) && r.is(Kind::List)) {
        if (op == Op::Add) {
            std::vector<Value> items = l.list().items;
            items.insert(items.end(), r.list().items.begin(), r.list().items.end());
            return make_list(std::move(items));
        }
    } else if (r.is(Kind::List) && membership) {
        return Value::boolean(contains(r, l) == (op == Op::In));
    }
    if (op == Op::Add && (l.is(Kind::String) || r.is(Kind::String))) {
        return concat_strings(to_js_string(l), to_js_string(r));
    }
    if (membership && l.is(Kind::String) && (r.is(Kind::String) || r.is(Kind::Object))) {
        return Value::boolean(contains(r, l) == (op == Op::In));
    }
    unsupported(op, l, r);
}

Value unary_op(Op op, const Value& v) {
    if (op == Op::Not) return Value::boolean(!truthy(v));
    if (v.is(Kind::Float)) return Value::number(op == Op::Neg ? -v.as_number() : v.as_number());
    if (v.is(Kind::Int) || v.is(Kind::Bool)) {
        const int64_t i = v.is(Kind::Bool) ? int64_t(v.as_bool()) : v.as_int();
        if (op == Op::Pos) return Value::integer(i);
        if (i == INT64_MIN) overflow();
        return Value::integer(-i);
    }
    throw RuntimeError(fmt::format("unsupported operator '{}' for {}", op_text(op), kind_name(v.kind())));
}

}  // namespace celer::chat::jinja
