// Runs a parsed template against the caller's variables.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"

namespace celer::chat::jinja {

// Throws celer::Error naming the line and column of the construct that failed.
std::string render(const Program& program, const std::vector<std::pair<std::string, Value>>& context);

}  // namespace celer::chat::jinja
