// The text rewrites @huggingface/jinja applies before tokenizing (see jinja_lexer.h), kept
// apart from the tokenizer because they work on raw text, line by line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace celer::chat::jinja {

// Rewritten text; origin[i] is the offset in the original source of text[i], and
// origin[text.size()] the source's length. Every rewrite only deletes, so this maps back.
struct MappedText {
    std::string text;
    std::vector<uint32_t> origin;
};

MappedText preprocess(std::string_view source);

}  // namespace celer::chat::jinja
