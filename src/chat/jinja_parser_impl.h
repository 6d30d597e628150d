// The recursive-descent parser behind parse(), shared by its two halves: statements
// (jinja_parser.cpp) and expressions (jinja_parse_expr.cpp). Internal to src/chat.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace celer::chat::jinja {

class Parser {
public:
    Parser(std::string_view source, std::vector<Token> tokens) : source_(source), toks_(std::move(tokens)) {}

    Body parse_template();

private:
    // Token access. The token list ends with Tok::End, which peek() never moves past.
    const Token& peek(size_t ahead = 0) const { return toks_[std::min(i_ + ahead, toks_.size() - 1)]; }
    bool is(Tok t) const { return peek().type == t; }
    bool is_name(std::string_view name, size_t ahead = 0) const {
        return peek(ahead).type == Tok::Name && peek(ahead).text == name;
    }
    bool is_tag(std::initializer_list<std::string_view> names) const;
    const Token& next();
    const Token& expect(Tok t, std::string_view context);
    [[noreturn]] void fail(uint32_t pos, const std::string& what) const;
    static std::string describe(const Token& t);

    // Counts recursion so that hostile nesting ends in an Error, not a stack overflow.
    class Nest {
    public:
        Nest(Parser& p, uint32_t pos);
        ~Nest() { --p_.nesting_; }
        Nest(const Nest&) = delete;
        Nest& operator=(const Nest&) = delete;

    private:
        Parser& p_;
    };

    // Statements.
    std::unique_ptr<Stmt> parse_node();
    std::unique_ptr<Stmt> parse_tag();
    std::unique_ptr<Stmt> parse_if(const Token& open);
    std::unique_ptr<Stmt> parse_for(const Token& open);
    std::unique_ptr<Stmt> parse_set(const Token& open);
    std::unique_ptr<Stmt> parse_macro(const Token& open);
    std::unique_ptr<Stmt> parse_filter_block(const Token& open);
    std::unique_ptr<Stmt> parse_loop_control(const Token& open, StmtKind kind);
    // Nodes up to one of the `stop` tags (not consumed); `tag` names the block for errors.
    Body parse_until(std::initializer_list<std::string_view> stop, const Token& open, std::string_view tag);
    static std::unique_ptr<Stmt> make_stmt(StmtKind kind, uint32_t pos);
    void close_tag(std::string_view name);
    void check_assignable(const Expr& target) const;

    // Expressions, lowest precedence first.
    ExprPtr expression();
    ExprPtr expression_sequence();  // `a, b` is a tuple
    ExprPtr or_expr();
    ExprPtr and_expr();
    ExprPtr not_expr();
    ExprPtr comparison();
    ExprPtr additive();
    ExprPtr multiplicative();
    ExprPtr power();
    ExprPtr test();
    ExprPtr filter();
    ExprPtr unary();
    ExprPtr postfix();
    ExprPtr primary();
    ExprPtr subscript(uint32_t pos);
    ExprPtr number(const Token& t);
    std::vector<Arg> arguments();
    std::vector<Param> parameters();

    ExprPtr node(ExprKind kind, uint32_t pos) const;
    ExprPtr binary(Op op, ExprPtr lhs, ExprPtr rhs, uint32_t pos) const;
    ExprPtr finish(ExprPtr e) const;  // computes the height and enforces its limit

    std::string_view source_;
    std::vector<Token> toks_;
    size_t i_ = 0;
    int nesting_ = 0;
    int loop_depth_ = 0;  // `break`/`continue` are only valid inside a for body
};

}  // namespace celer::chat::jinja
