#include "chat/jinja_error.h"

#include <fmt/format.h>

#include "util/error.h"

namespace celer::chat::jinja {

void fail_at(std::string_view source, size_t offset, const std::string& what) {
    offset = std::min(offset, source.size());
    size_t line = 1, column = 1;
    for (size_t i = 0; i < offset; ++i) {
        const auto c = static_cast<unsigned char>(source[i]);
        if (c == '\n') {
            ++line;
            column = 1;
        } else if ((c & 0xC0) != 0x80) {  // count code points, not continuation bytes
            ++column;
        }
    }
    throw Error(fmt::format("chat template: line {}, column {}: {}", line, column, what));
}

}  // namespace celer::chat::jinja
