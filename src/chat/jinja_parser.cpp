// Statement half of the parser: text, {{ }}, and the {% %} tags celer supports.
#include "chat/jinja_parser.h"

#include <algorithm>

#include <fmt/format.h>

#include "chat/jinja_error.h"
#include "chat/jinja_parser_impl.h"

namespace celer::chat::jinja {

Program parse(std::string_view source) {
    Program p;
    p.source = source;
    p.body = Parser(source, tokenize(source)).parse_template();
    return p;
}

bool Parser::is_tag(std::initializer_list<std::string_view> names) const {
    if (!is(Tok::OpenStmt) || peek(1).type != Tok::Name) return false;
    return std::find(names.begin(), names.end(), peek(1).text) != names.end();
}

const Token& Parser::next() {
    const Token& t = peek();
    if (t.type != Tok::End) ++i_;
    return t;
}

const Token& Parser::expect(Tok t, std::string_view context) {
    if (!is(t)) fail(peek().pos, fmt::format("expected {} {}, found {}", tok_name(t), context, describe(peek())));
    return next();
}

std::unique_ptr<Stmt> Parser::make_stmt(StmtKind kind, uint32_t pos) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->pos = pos;
    return s;
}

void Parser::fail(uint32_t pos, const std::string& what) const { fail_at(source_, pos, what); }

std::string Parser::describe(const Token& t) {
    switch (t.type) {
        case Tok::End:
        case Tok::Text:
        case Tok::Comment: return tok_name(t.type);
        case Tok::String: return "a string";
        default: return fmt::format("'{}'", t.text);
    }
}

Parser::Nest::Nest(Parser& p, uint32_t pos) : p_(p) {
    if (++p_.nesting_ > Limits::kNesting) {
        --p_.nesting_;
        p_.fail(pos, fmt::format("template nested more than {} levels deep", Limits::kNesting));
    }
}

Body Parser::parse_template() {
    Body body;
    while (!is(Tok::End)) {
        if (auto s = parse_node()) body.push_back(std::move(s));
    }
    return body;
}

Body Parser::parse_until(std::initializer_list<std::string_view> stop, const Token& open, std::string_view tag) {
    Body body;
    while (!is_tag(stop)) {
        if (is(Tok::End)) fail(open.pos, fmt::format("'{{% {} %}}' is never closed with '{{% end{} %}}'", tag, tag));
        if (auto s = parse_node()) body.push_back(std::move(s));
    }
    return body;
}

void Parser::close_tag(std::string_view name) {
    expect(Tok::OpenStmt, fmt::format("to open '{{% {} %}}'", name));
    if (!is_name(name)) fail(peek().pos, fmt::format("expected '{}', found {}", name, describe(peek())));
    next();
    expect(Tok::CloseStmt, fmt::format("to close '{{% {} %}}'", name));
}

// Text, a comment (dropped: it renders nothing), {{ expression }} or a {% tag %}.
std::unique_ptr<Stmt> Parser::parse_node() {
    const Token& t = peek();
    switch (t.type) {
        case Tok::Text: {
            auto s = make_stmt(StmtKind::Text, t.pos);
            s->text = next().text;
            return s;
        }
        case Tok::Comment: next(); return nullptr;
        case Tok::OpenStmt: return parse_tag();
        case Tok::OpenExpr: {
            next();
            auto s = make_stmt(StmtKind::Output, t.pos);
            s->expr = expression();
            expect(Tok::CloseExpr, "to close '{{'");
            return s;
        }
        default: fail(t.pos, fmt::format("unexpected {}", describe(t)));
    }
}

std::unique_ptr<Stmt> Parser::parse_tag() {
    const Token& open = next();
    if (!is(Tok::Name)) fail(peek().pos, fmt::format("expected a tag name after '{{%', found {}", describe(peek())));
    const std::string& name = peek().text;
    if (name == "if") return parse_if(open);
    if (name == "for") return parse_for(open);
    if (name == "set") return parse_set(open);
    if (name == "macro") return parse_macro(open);
    if (name == "filter") return parse_filter_block(open);
    if (name == "break") return parse_loop_control(open, StmtKind::Break);
    if (name == "continue") return parse_loop_control(open, StmtKind::Continue);
    static constexpr std::string_view kClosers[] = {"elif", "else", "endif", "endfor", "endset", "endmacro", "endfilter"};
    if (std::find(std::begin(kClosers), std::end(kClosers), name) != std::end(kClosers)) {
        fail(open.pos, fmt::format("'{{% {} %}}' without a matching opening tag", name));
    }
    fail(open.pos, fmt::format("unsupported tag '{{% {} %}}'", name));
}

std::unique_ptr<Stmt> Parser::parse_if(const Token& open) {
    Nest nest(*this, open.pos);
    next();  // if
    auto s = make_stmt(StmtKind::If, open.pos);
    while (true) {
        Branch b;
        b.cond = expression();
        expect(Tok::CloseStmt, "to close '{% if %}'");
        b.body = parse_until({"elif", "else", "endif"}, open, "if");
        s->branches.push_back(std::move(b));
        if (!is_tag({"elif"})) break;
        next();
        next();
    }
    if (is_tag({"else"})) {
        next();
        next();
        expect(Tok::CloseStmt, "to close '{% else %}'");
        s->orelse = parse_until({"endif"}, open, "if");
    }
    close_tag("endif");
    return s;
}

std::unique_ptr<Stmt> Parser::parse_for(const Token& open) {
    Nest nest(*this, open.pos);
    next();  // for
    auto s = make_stmt(StmtKind::For, open.pos);
    const bool parenthesized = is(Tok::LParen);
    if (parenthesized) next();
    while (true) {
        s->vars.push_back(expect(Tok::Name, "as the loop variable").text);
        if (!is(Tok::Comma)) break;
        next();
    }
    if (parenthesized) expect(Tok::RParen, "after the loop variables");
    s->unpack = s->vars.size() > 1;
    if (!is_name("in")) fail(peek().pos, fmt::format("expected 'in' after the loop variables, found {}", describe(peek())));
    next();
    s->expr = expression();
    if (s->expr->kind == ExprKind::Select) {  // for x in xs if cond
        s->filter = std::move(s->expr->cond);
        s->expr = std::move(s->expr->lhs);
    }
    expect(Tok::CloseStmt, "to close '{% for %}'");
    ++loop_depth_;
    s->body = parse_until({"endfor", "else"}, open, "for");
    --loop_depth_;
    if (is_tag({"else"})) {
        next();
        next();
        expect(Tok::CloseStmt, "to close '{% else %}'");
        s->orelse = parse_until({"endfor"}, open, "for");
    }
    close_tag("endfor");
    return s;
}

void Parser::check_assignable(const Expr& t) const {
    if (t.kind == ExprKind::Name) return;
    if (t.kind == ExprKind::Tuple) {
        for (const auto& item : t.items) {
            if (item->kind != ExprKind::Name) fail(item->pos, "can only unpack into names");
        }
        return;
    }
    if (t.kind == ExprKind::Member && !t.computed) return;  // ns.attr (checked to be a namespace when run)
    fail(t.pos, "cannot assign to this expression; expected a name, names, or namespace.attribute");
}

std::unique_ptr<Stmt> Parser::parse_set(const Token& open) {
    next();  // set
    auto s = make_stmt(StmtKind::Set, open.pos);
    s->target = expression_sequence();
    check_assignable(*s->target);
    if (is(Tok::Equals)) {
        next();
        s->expr = expression_sequence();
        expect(Tok::CloseStmt, "to close '{% set %}'");
        return s;
    }
    Nest nest(*this, open.pos);
    expect(Tok::CloseStmt, "or '=' in '{% set %}'");
    s->body = parse_until({"endset"}, open, "set");
    close_tag("endset");
    return s;
}

std::unique_ptr<Stmt> Parser::parse_macro(const Token& open) {
    Nest nest(*this, open.pos);
    next();  // macro
    auto s = make_stmt(StmtKind::Macro, open.pos);
    s->text = expect(Tok::Name, "as the macro name").text;
    s->params = parameters();
    expect(Tok::CloseStmt, "to close '{% macro %}'");
    const int outer_loops = std::exchange(loop_depth_, 0);  // a macro body is not inside the caller's loop
    s->body = parse_until({"endmacro"}, open, "macro");
    loop_depth_ = outer_loops;
    close_tag("endmacro");
    return s;
}

std::unique_ptr<Stmt> Parser::parse_filter_block(const Token& open) {
    Nest nest(*this, open.pos);
    next();  // filter
    auto s = make_stmt(StmtKind::FilterBlock, open.pos);
    const Token& name = expect(Tok::Name, "as the filter name");
    auto f = node(ExprKind::Filter, name.pos);
    f->name = name.text;
    if (is(Tok::LParen)) {
        f->has_args = true;
        f->args = arguments();
    }
    s->expr = finish(std::move(f));
    expect(Tok::CloseStmt, "to close '{% filter %}'");
    s->body = parse_until({"endfilter"}, open, "filter");
    close_tag("endfilter");
    return s;
}

std::unique_ptr<Stmt> Parser::parse_loop_control(const Token& open, StmtKind kind) {
    const std::string name = next().text;
    if (loop_depth_ == 0) fail(open.pos, fmt::format("'{{% {} %}}' outside a for loop", name));
    expect(Tok::CloseStmt, fmt::format("to close '{{% {} %}}'", name));
    return make_stmt(kind, open.pos);
}

}  // namespace celer::chat::jinja
