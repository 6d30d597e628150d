// Syntax tree of a parsed template: plain structs, one per node, fields named by role.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja_value.h"

namespace celer::chat::jinja {

enum class ExprKind {
    Literal,  // literal
    Name,     // name
    List,     // items
    Tuple,    // items
    Dict,     // entries
    Member,   // lhs[rhs], lhs.name (rhs is then a string literal), lhs[a:b:c] (rhs is a Slice)
    Slice,    // items: start, stop, step (null when left out)
    Call,     // lhs(args)
    Unary,    // op lhs
    Binary,   // lhs op rhs
    Filter,   // lhs | name(args)
    Test,     // lhs is [not] name
    Ternary,  // lhs if cond else rhs
    Select,   // lhs if cond (undefined when cond is false; `for x in xs if cond` filters)
};

enum class Op {
    Add, Sub, Mul, Div, FloorDiv, Mod, Pow, Concat,
    Eq, Ne, Lt, Gt, Le, Ge, In, NotIn,
    And, Or, Not, Neg, Pos,
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Arg {
    enum class Kind { Positional, Keyword, Spread, KeywordSpread };  // x, k=x, *x, **x
    Kind kind = Kind::Positional;
    std::string name;  // Keyword
    ExprPtr value;
};

struct Expr {
    ExprKind kind = ExprKind::Literal;
    uint32_t pos = 0;     // byte offset in the template source, for error messages
    uint32_t height = 1;  // of this subtree; bounded so evaluation cannot exhaust the stack
    Op op = Op::Add;
    std::string name;     // Name; Filter and Test names
    Value literal;
    bool negated = false;    // Test written `is not`
    bool computed = false;   // Member written with brackets
    bool has_args = false;   // Filter written with parentheses
    ExprPtr lhs, rhs, cond;
    std::vector<ExprPtr> items;
    std::vector<std::pair<ExprPtr, ExprPtr>> entries;
    std::vector<Arg> args;
};

enum class StmtKind { Text, Output, If, For, Set, Macro, FilterBlock, Break, Continue };

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Branch {  // `if`/`elif` condition and body
    ExprPtr cond;
    Body body;
};

struct Param {  // macro parameter, with its default value if any
    std::string name;
    ExprPtr default_value;
};

struct Stmt {
    StmtKind kind = StmtKind::Text;
    uint32_t pos = 0;
    std::string text;                // Text: the text; Macro: the name
    ExprPtr expr;                    // Output: value; For: iterable; Set: value (null: block set);
                                     // FilterBlock: a Filter without operand, applied to the body
    ExprPtr target;                  // Set: name, tuple of names, or namespace attribute
    ExprPtr filter;                  // For: the `if` after the iterable, if any
    std::vector<std::string> vars;   // For: loop variables
    bool unpack = false;             // For: `for a, b in ...`
    std::vector<Branch> branches;    // If: if + elifs, in order
    std::vector<Param> params;       // Macro
    Body body;                       // For, Set (block), Macro, FilterBlock
    Body orelse;                     // If: else; For: else (no iteration)
};

struct Program {
    std::string source;  // for line/column in runtime errors
    Body body;
};

}  // namespace celer::chat::jinja
