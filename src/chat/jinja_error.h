// Errors and resource limits shared by the Jinja lexer, parser and evaluator.
//
// Templates come from model files, so they are untrusted input: every way a template can make
// the interpreter recurse, loop or allocate has a bound here, and running into one is a
// celer::Error like any other template mistake, never a crash or a hang.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace celer::chat::jinja {

struct Limits {
    static constexpr size_t kSourceBytes = size_t(1) << 20;  // real chat templates are < 64 KiB
    // Parser recursion (nested brackets, blocks, `not`, unary signs) and AST height; real
    // templates nest < 10 deep. A bracket level costs ~14 parser frames.
    static constexpr int kNesting = 128;
    static constexpr uint32_t kExprHeight = 256;
    // Evaluation recursion: statements, expressions and macro calls together. Hitting every
    // limit at once (deep macro recursion through 128 brackets) was measured to need under
    // 2 MiB of stack in an ASan build, a quarter of the 8 MiB a Linux thread gets.
    static constexpr int kEvalDepth = 512;
    // Expression evaluations plus loop iterations per render: a 1000-message conversation
    // through Qwen3's template takes ~0.3M, so 5M leaves room without allowing minutes of work.
    static constexpr size_t kSteps = 5'000'000;
    static constexpr size_t kStringBytes = size_t(32) << 20;   // any one string, and the output
    // All strings and lists built in one render (see Evaluator::charge), which bounds both
    // time and memory; a 1000-message conversation builds a few MiB.
    static constexpr size_t kProducedBytes = size_t(256) << 20;
    static constexpr size_t kItems = 1'000'000;                // any one list
    static constexpr uint32_t kValueDepth = 256;               // nesting of lists and dicts
};

// A failure with no position yet (raised by value operations and built-in functions); the
// evaluator catches it at the innermost expression and rethrows it as a positioned Error.
class RuntimeError : public std::runtime_error {
public:
    explicit RuntimeError(const std::string& what) : std::runtime_error(what) {}
};

// Throws celer::Error("chat template: line L, column C: what"); offset is a byte offset into
// the template source, the column counts code points.
[[noreturn]] void fail_at(std::string_view source, size_t offset, const std::string& what);

}  // namespace celer::chat::jinja
