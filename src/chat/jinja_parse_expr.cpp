// Expression half of the parser, one function per precedence level (see jinja_parser.h).
#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "chat/jinja_error.h"
#include "chat/jinja_parser_impl.h"

namespace celer::chat::jinja {

ExprPtr Parser::node(ExprKind kind, uint32_t pos) const {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
}

ExprPtr Parser::finish(ExprPtr e) const {
    uint32_t h = 0;
    const auto see = [&](const ExprPtr& c) {
        if (c) h = std::max(h, c->height);
    };
    see(e->lhs);
    see(e->rhs);
    see(e->cond);
    for (const auto& c : e->items) see(c);
    for (const auto& [k, v] : e->entries) see(k), see(v);
    for (const auto& a : e->args) see(a.value);
    e->height = h + 1;
    if (e->height > Limits::kExprHeight) {
        fail(e->pos, fmt::format("expression nested more than {} levels deep", Limits::kExprHeight));
    }
    return e;
}

ExprPtr Parser::binary(Op op, ExprPtr lhs, ExprPtr rhs, uint32_t pos) const {
    auto e = node(ExprKind::Binary, pos);
    e->op = op;
    e->lhs = std::move(lhs);
    e->rhs = std::move(rhs);
    return finish(std::move(e));
}

// `a if c else b`, or `a if c` (a Select: undefined when c is false).
ExprPtr Parser::expression() {
    Nest nest(*this, peek().pos);
    ExprPtr a = or_expr();
    if (!is_name("if")) return a;
    const uint32_t pos = next().pos;
    ExprPtr c = or_expr();
    auto e = node(ExprKind::Select, pos);
    if (is_name("else")) {
        next();
        e->kind = ExprKind::Ternary;
        e->rhs = expression();
    }
    e->lhs = std::move(a);
    e->cond = std::move(c);
    return finish(std::move(e));
}

ExprPtr Parser::expression_sequence() {
    ExprPtr first = expression();
    if (!is(Tok::Comma)) return first;
    auto t = node(ExprKind::Tuple, first->pos);
    t->items.push_back(std::move(first));
    while (is(Tok::Comma)) {
        next();
        t->items.push_back(expression());
    }
    return finish(std::move(t));
}

ExprPtr Parser::or_expr() {
    ExprPtr e = and_expr();
    while (is_name("or")) {
        const uint32_t pos = next().pos;
        e = binary(Op::Or, std::move(e), and_expr(), pos);
    }
    return e;
}

ExprPtr Parser::and_expr() {
    ExprPtr e = not_expr();
    while (is_name("and")) {
        const uint32_t pos = next().pos;
        e = binary(Op::And, std::move(e), not_expr(), pos);
    }
    return e;
}

ExprPtr Parser::not_expr() {
    if (!is_name("not")) return comparison();
    Nest nest(*this, peek().pos);
    auto e = node(ExprKind::Unary, next().pos);
    e->op = Op::Not;
    e->lhs = not_expr();
    return finish(std::move(e));
}

// Comparisons and membership share one level and associate to the left, as in the reference
// (no Python-style chaining: `a < b < c` is `(a < b) < c`).
ExprPtr Parser::comparison() {
    ExprPtr e = additive();
    while (true) {
        const uint32_t pos = peek().pos;
        Op op;
        if (is_name("not") && is_name("in", 1)) {
            next();
            op = Op::NotIn;
        } else if (is_name("in")) {
            op = Op::In;
        } else if (is(Tok::Comparison)) {
            const std::string& t = peek().text;
            op = t == "==" ? Op::Eq : t == "!=" ? Op::Ne : t == "<" ? Op::Lt : t == ">" ? Op::Gt : t == "<=" ? Op::Le : Op::Ge;
        } else {
            return e;
        }
        next();
        e = binary(op, std::move(e), additive(), pos);
    }
}

ExprPtr Parser::additive() {
    ExprPtr e = multiplicative();
    while (is(Tok::Additive)) {
        const Token& t = next();
        const Op op = t.text == "+" ? Op::Add : t.text == "-" ? Op::Sub : Op::Concat;
        e = binary(op, std::move(e), multiplicative(), t.pos);
    }
    return e;
}

ExprPtr Parser::multiplicative() {
    ExprPtr e = power();
    while (is(Tok::Multiplicative)) {
        const Token& t = next();
        const Op op = t.text == "*" ? Op::Mul : t.text == "/" ? Op::Div : t.text == "//" ? Op::FloorDiv : Op::Mod;
        e = binary(op, std::move(e), power(), t.pos);
    }
    return e;
}

// Jinja's ** associates to the left: 2 ** 3 ** 2 == 64.
ExprPtr Parser::power() {
    ExprPtr e = test();
    while (is(Tok::Power)) {
        const uint32_t pos = next().pos;
        e = binary(Op::Pow, std::move(e), test(), pos);
    }
    return e;
}

ExprPtr Parser::test() {
    ExprPtr e = filter();
    while (is_name("is")) {
        auto t = node(ExprKind::Test, next().pos);
        if (is_name("not")) {
            next();
            t->negated = true;
        }
        t->name = expect(Tok::Name, "as the test name after 'is'").text;
        if (is(Tok::LParen)) fail(peek().pos, fmt::format("tests with arguments ('{}(...)') are not supported", t->name));
        t->lhs = std::move(e);
        e = finish(std::move(t));
    }
    return e;
}

ExprPtr Parser::filter() {
    ExprPtr e = unary();
    while (is(Tok::Pipe)) {
        next();
        const Token& name = expect(Tok::Name, "as the filter name after '|'");
        auto f = node(ExprKind::Filter, name.pos);
        f->name = name.text;
        if (is(Tok::LParen)) {
            f->has_args = true;
            f->args = arguments();
        }
        f->lhs = std::move(e);
        e = finish(std::move(f));
    }
    return e;
}

ExprPtr Parser::unary() {
    const Token& t = peek();
    if ((t.type == Tok::Unary || t.type == Tok::Additive) && (t.text == "-" || t.text == "+")) {
        Nest nest(*this, t.pos);
        next();
        auto e = node(ExprKind::Unary, t.pos);
        e->op = t.text == "-" ? Op::Neg : Op::Pos;
        e->lhs = unary();
        return finish(std::move(e));
    }
    return postfix();
}

// Attribute access, subscripts and calls, in any order: a.b[0](x).c
ExprPtr Parser::postfix() {
    ExprPtr e = primary();
    while (true) {
        const Token& t = peek();
        if (t.type == Tok::Dot) {
            next();
            auto m = node(ExprKind::Member, t.pos);
            const Token& key = next();
            if (key.type == Tok::Name) {
                m->rhs = node(ExprKind::Literal, key.pos);
                m->rhs->literal = Value::string(key.text);
            } else if (key.type == Tok::Number && key.text.find('.') == std::string::npos) {
                m->rhs = number(key);
            } else {
                fail(key.pos, fmt::format("expected an attribute name after '.', found {}", describe(key)));
            }
            m->lhs = std::move(e);
            e = finish(std::move(m));
        } else if (t.type == Tok::LBracket) {
            next();
            auto m = node(ExprKind::Member, t.pos);
            m->computed = true;
            m->rhs = subscript(t.pos);
            expect(Tok::RBracket, "to close '['");
            m->lhs = std::move(e);
            e = finish(std::move(m));
        } else if (t.type == Tok::LParen) {
            auto c = node(ExprKind::Call, t.pos);
            c->args = arguments();
            c->lhs = std::move(e);
            e = finish(std::move(c));
        } else {
            return e;
        }
    }
}

// Inside [ ]: an index, or a slice start:stop:step with any part left out.
ExprPtr Parser::subscript(uint32_t pos) {
    std::vector<ExprPtr> parts;
    bool slice = false;
    while (!is(Tok::RBracket)) {
        if (is(Tok::End)) fail(pos, "'[' is never closed");
        if (parts.size() == 3) fail(peek().pos, "a slice has at most three parts");
        if (is(Tok::Colon)) {
            parts.emplace_back();
            next();
            slice = true;
            continue;
        }
        parts.push_back(expression());
        if (is(Tok::Colon)) {
            next();
            slice = true;
        } else if (!is(Tok::RBracket)) {
            fail(peek().pos, fmt::format("expected ']' or ':' in a subscript, found {}", describe(peek())));
        }
    }
    if (parts.empty()) fail(pos, "expected an index or a slice inside '[]'");
    if (!slice) return std::move(parts[0]);
    auto s = node(ExprKind::Slice, pos);
    parts.resize(3);
    s->items = std::move(parts);
    return finish(std::move(s));
}

ExprPtr Parser::number(const Token& t) {
    auto e = node(ExprKind::Literal, t.pos);
    std::string_view text = t.text;
    if (text.starts_with('+')) text.remove_prefix(1);
    const char* end = text.data() + text.size();
    if (text.find('.') != std::string_view::npos) {
        double d = 0;
        std::from_chars(text.data(), end, d);
        e->literal = Value::number(d);
    } else {
        int64_t i = 0;
        const auto r = std::from_chars(text.data(), end, i);
        if (r.ec != std::errc() || r.ptr != end) fail(t.pos, fmt::format("integer literal {} is out of range", t.text));
        e->literal = Value::integer(i);
    }
    return e;
}

ExprPtr Parser::primary() {
    const Token& t = next();
    switch (t.type) {
        case Tok::Number: return number(t);
        case Tok::String: {
            std::string s = t.text;
            while (is(Tok::String)) s += next().text;  // adjacent literals concatenate
            auto e = node(ExprKind::Literal, t.pos);
            e->literal = Value::string(std::move(s));
            return e;
        }
        case Tok::Name: {
            auto e = node(ExprKind::Name, t.pos);
            e->name = t.text;
            return e;
        }
        case Tok::LParen: {
            ExprPtr e = expression_sequence();
            expect(Tok::RParen, "to close '('");
            return e;
        }
        case Tok::LBracket: {
            auto e = node(ExprKind::List, t.pos);
            while (!is(Tok::RBracket)) {
                if (is(Tok::End)) fail(t.pos, "'[' is never closed");
                e->items.push_back(expression());
                if (is(Tok::Comma)) next();
            }
            next();
            return finish(std::move(e));
        }
        case Tok::LBrace: {
            auto e = node(ExprKind::Dict, t.pos);
            while (!is(Tok::RBrace)) {
                if (is(Tok::End)) fail(t.pos, "'{' is never closed");
                ExprPtr key = expression();
                expect(Tok::Colon, "between a key and its value");
                e->entries.emplace_back(std::move(key), expression());
                if (is(Tok::Comma)) next();
            }
            next();
            return finish(std::move(e));
        }
        default: fail(t.pos, fmt::format("expected an expression, found {}", describe(t)));
    }
}

std::vector<Arg> Parser::arguments() {
    const uint32_t open = expect(Tok::LParen, "to start the arguments").pos;
    std::vector<Arg> args;
    bool keyword = false, spread = false;
    while (!is(Tok::RParen)) {
        if (is(Tok::End)) fail(open, "'(' is never closed");
        Arg a;
        if (is(Tok::Power)) {
            next();
            a.kind = Arg::Kind::KeywordSpread;
            a.value = expression();
            args.push_back(std::move(a));
            if (is(Tok::Comma)) next();
            if (!is(Tok::RParen)) fail(peek().pos, "'**' must unpack the last argument");
            break;
        }
        if (is(Tok::Multiplicative) && peek().text == "*") {
            if (spread) fail(peek().pos, "only one '*' argument is allowed");
            next();
            spread = true;
            a.kind = Arg::Kind::Spread;
            a.value = expression();
        } else {
            a.value = expression();
            if (is(Tok::Equals)) {
                if (a.value->kind != ExprKind::Name) fail(peek().pos, "expected a name before '=' in a keyword argument");
                next();
                a.kind = Arg::Kind::Keyword;
                a.name = a.value->name;
                a.value = expression();
                keyword = true;
            } else if (keyword || spread) {
                fail(a.value->pos, "positional argument after a keyword or '*' argument");
            }
        }
        args.push_back(std::move(a));
        if (is(Tok::Comma)) next();
    }
    next();
    return args;
}

std::vector<Param> Parser::parameters() {
    const uint32_t open = expect(Tok::LParen, "after the macro name").pos;
    std::vector<Param> params;
    while (!is(Tok::RParen)) {
        if (is(Tok::End)) fail(open, "'(' is never closed");
        Param p;
        const Token& name = expect(Tok::Name, "as a parameter name");
        p.name = name.text;
        for (const auto& q : params) {
            if (q.name == p.name) fail(name.pos, fmt::format("duplicate parameter '{}'", p.name));
        }
        if (is(Tok::Equals)) {
            next();
            p.default_value = expression();
        } else if (!params.empty() && params.back().default_value) {
            fail(name.pos, fmt::format("parameter '{}' without a default follows one with a default", p.name));
        }
        params.push_back(std::move(p));
        if (is(Tok::Comma)) next();
    }
    next();
    return params;
}

}  // namespace celer::chat::jinja
