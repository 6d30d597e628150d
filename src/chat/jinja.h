// Chat templates: the subset of Jinja that models' `tokenizer.chat_template` uses, run by a
// small interpreter (lexer -> parser -> syntax tree -> evaluator) whose output matches
// @huggingface/jinja, the implementation transformers.js uses, byte for byte.
//
// Templates are untrusted (they come from model files): malformed or unsupported syntax,
// runtime type errors, raise_exception() and runaway recursion, loops or output all end in a
// celer::Error whose message names the line and column, never in a crash or a hang.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace celer::chat {

namespace jinja {
struct Program;
}

class Template {
public:
    explicit Template(std::string_view source);  // parses; throws celer::Error

    // `context` is a JSON object whose members become the template's variables: messages,
    // tools, add_generation_prompt, bos_token, eos_token, ... With ordered_json, dicts keep
    // the caller's key order, so tool schemas print as given (as in the reference, which keeps
    // JavaScript object order); nlohmann::json sorts keys. Throws celer::Error. The parsed
    // template is immutable, so render() may run on several threads at once.
    std::string render(const nlohmann::ordered_json& context) const;
    std::string render(const nlohmann::json& context) const;

private:
    std::shared_ptr<const jinja::Program> program_;
};

}  // namespace celer::chat
