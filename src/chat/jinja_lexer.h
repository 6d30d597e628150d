// Jinja template source -> tokens.
//
// Whitespace handling follows @huggingface/jinja exactly, because it decides every byte of the
// prompt: the source first loses one trailing newline, then lstrip_blocks and trim_blocks are
// applied as text rewrites (both on, as transformers renders chat templates), then
// {% generation %} tags are removed; `{%-`/`-%}` strip while tokenizing. Tokens keep their
// byte offset in the original source for error messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace celer::chat::jinja {

enum class Tok {
    Text, Comment,                        // outside tags
    OpenStmt, CloseStmt, OpenExpr, CloseExpr,
    Number, String, Name,                 // a Number may carry a sign: "-1" after `(`, `[`, `,`, ...
    LParen, RParen, LBracket, RBracket, LBrace, RBrace,
    Comma, Dot, Colon, Pipe, Equals,
    Additive, Multiplicative, Power, Comparison, Unary,
    End,                                  // sentinel after the last token
};
const char* tok_name(Tok t);

struct Token {
    Tok type;
    std::string text;  // for String: the unescaped value
    uint32_t pos;      // byte offset in the original source
};

// Throws celer::Error with line and column on a malformed template.
std::vector<Token> tokenize(std::string_view source);

}  // namespace celer::chat::jinja
