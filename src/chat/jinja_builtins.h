// What the language gives a template beyond its syntax: operators, filters, tests, string
// and dict methods, and global functions. Each follows @huggingface/jinja (the reference
// celer matches byte for byte), including where that differs from Python's Jinja; those
// places are marked "reference:" in the implementation. All of them throw RuntimeError,
// which the evaluator turns into an Error at the position of the expression.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace celer::chat::jinja {

// Per-render bookkeeping shared by the evaluator and the built-ins.
class RenderState {
public:
    RenderState() = default;
    RenderState(const RenderState&) = delete;
    RenderState& operator=(const RenderState&) = delete;
    // Namespaces are the only mutable values, so the only way a template can build a cycle of
    // shared pointers (`ns.self = ns`) or a chain too deep to destroy recursively; emptying
    // them all here, one by one, leaves neither behind.
    ~RenderState();

    void step();                 // one unit of work; throws past Limits::kSteps
    void produced(size_t bytes);  // bytes of strings/lists built; throws past Limits::kProducedBytes
    Value new_namespace(Dict entries);

private:
    size_t steps_ = 0;
    size_t produced_ = 0;
    std::vector<std::shared_ptr<Dict>> namespaces_;
};

struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keyword;

    const Value* keyword_arg(std::string_view name) const;
    // Positional argument i, else the keyword `name`, else null.
    const Value* get(size_t i, std::string_view name) const;
};

// Operators other than `and`/`or`/`not`, which the evaluator short-circuits.
Value binary_op(Op op, const Value& lhs, const Value& rhs);
Value unary_op(Op op, const Value& operand);

// obj.name and obj[key] (dict entries first, then built-in attributes); obj[start:stop:step]
// with Undefined for a left-out part.
Value member_of(const Value& obj, const Value& key);
Value slice_of(const Value& obj, const Value& start, const Value& stop, const Value& step);

// `x | name` (args null) or `x | name(args)`.
Value apply_filter(const std::string& name, const Value& operand, const CallArgs* args, RenderState& state);
// `x is name`; `arg` is the second operand of equalto (given by selectattr/rejectattr).
bool apply_test(std::string_view name, const Value& operand, const Value* arg);

// Attribute of a non-dict value or a dict's method: string methods and `length`, dict
// get/items/keys/values/dictsort. Undefined when there is none.
Value builtin_attribute(const Value& self, std::string_view name);
Value call_method(const Function& method, const CallArgs& args, RenderState& state);

// Globals every render starts with (besides true/false/none): namespace, range,
// raise_exception, strftime_now.
const std::vector<std::string_view>& global_function_names();
Value call_global(const std::string& name, const CallArgs& args, RenderState& state);

// Shared by filters and methods.
std::vector<Value> dict_items(const Dict& d);   // [key, value] pair lists
int compare_values(const Value& a, const Value& b, bool case_sensitive);  // for sort/dictsort
std::string join_values(const std::vector<Value>& items, std::string_view sep);
Value replace_in(const std::string& s, const std::string& old, const std::string& with, int64_t count);
size_t find_bytes(std::string_view haystack, std::string_view needle, size_t from);  // linear time

}  // namespace celer::chat::jinja
