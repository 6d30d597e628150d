// Tokens -> syntax tree, with the grammar and operator precedence of @huggingface/jinja:
//   a if c else b  <  or  <  and  <  not  <  comparisons, in, not in  <  + - ~  <  * / // %
//   <  **  <  is  <  |filter  <  unary + -  <  . [] ()  <  literals, names, ( ), [ ], { }
// (a filter binds tighter than `+`, so `'x' + s | trim` trims s only.)
#pragma once

#include <string_view>

#include "chat/jinja_ast.h"

namespace celer::chat::jinja {

// Throws celer::Error with line, column and the construct at fault.
Program parse(std::string_view source);

}  // namespace celer::chat::jinja
