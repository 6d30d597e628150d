// Runtime values of the Jinja interpreter.
//
// Lists, dicts and namespaces are shared by pointer, as in the reference implementation
// (JavaScript objects): `==` between two dicts compares identity, and templates rely on it
// (Mistral's `message == user_messages[-1]` picks out one message, not every equal one).
// Lists and dicts are never changed after they are built; namespaces are the only mutable
// values, which is why only they can form reference cycles (see RenderState).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace celer::chat::jinja {

struct Stmt;
struct List;
class Dict;
struct Function;

// In variant order. Int and Float are both JavaScript numbers in the reference but print
// differently ({{ 2.0 }} is "2.0"), so the distinction is kept.
enum class Kind { Undefined, Null, Bool, Int, Float, String, List, Object, Namespace, Function };
const char* kind_name(Kind k);

class Value {
public:
    Value() = default;  // undefined
    static Value none();
    static Value boolean(bool b);
    static Value integer(int64_t i);
    static Value number(double d);
    static Value string(std::string s);
    static Value list(std::shared_ptr<const List> l);
    static Value object(std::shared_ptr<const Dict> d);
    static Value ns(std::shared_ptr<Dict> d);
    static Value function(std::shared_ptr<const Function> f);

    Kind kind() const { return Kind(v_.index()); }
    bool is(Kind k) const { return kind() == k; }
    bool is_number() const { return is(Kind::Int) || is(Kind::Float); }
    bool is_mapping_like() const { return is(Kind::Object) || is(Kind::Namespace); }

    bool as_bool() const { return std::get<bool>(v_); }
    int64_t as_int() const { return std::get<int64_t>(v_); }
    double as_number() const { return is(Kind::Int) ? double(as_int()) : std::get<double>(v_); }
    const std::string& str() const { return *std::get<Str>(v_).p; }
    const List& list() const { return *std::get<std::shared_ptr<const List>>(v_); }
    const Dict& dict() const;  // Object or Namespace
    Dict& ns_dict() const { return *std::get<Ns>(v_).p; }
    const Function& fn() const { return *std::get<std::shared_ptr<const Function>>(v_); }
    // Address of the shared payload of a list, dict, namespace or function (identity).
    const void* identity() const;

private:
    struct Undef {};
    struct Null {};
    struct Str {
        std::shared_ptr<const std::string> p;
    };
    struct Obj {
        std::shared_ptr<const Dict> p;
    };
    struct Ns {
        std::shared_ptr<Dict> p;
    };
    std::variant<Undef, Null, bool, int64_t, double, Str, std::shared_ptr<const List>, Obj, Ns,
                 std::shared_ptr<const Function>>
        v_;
};

struct List {
    std::vector<Value> items;
    uint32_t depth = 1;  // nesting height, bounded by Limits::kValueDepth
    // A tuple literal. reference: behaves as a list except that it is not `iterable` and
    // cannot be converted to JSON (so printing one is an error).
    bool tuple = false;
};

// String-keyed map that keeps insertion order, as JavaScript's Map and Python's dict do.
class Dict {
public:
    Dict() = default;
    // From entries whose keys are known to be distinct (a JSON object, a loop object).
    explicit Dict(std::vector<std::pair<std::string, Value>> distinct_entries);

    const Value* find(std::string_view key) const;
    void set(const std::string& key, Value v);  // replaces in place, or appends
    const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
    size_t size() const { return entries_.size(); }
    void clear();

    uint32_t depth = 1;  // as List::depth; meaningless for namespaces, which may change

private:
    Value* find_mut(std::string_view key) { return const_cast<Value*>(std::as_const(*this).find(key)); }

    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    std::vector<std::pair<std::string, Value>> entries_;
    // Built only once a dict outgrows a linear scan (messages have 2-4 keys, `loop` 9).
    std::unordered_map<std::string, size_t, Hash, std::equal_to<>> index_;
    static constexpr size_t kLinear = 16;  // `loop` has 9 entries: hashing them costs more than scanning
    void build_index();
};

// Something a template can call: a global (namespace, range, ...), a method bound to its
// receiver ("abc".upper), or a macro defined by the template.
struct Function {
    enum class Type { Global, Method, Macro };
    Type type = Type::Global;
    std::string name;
    Value self;                    // Method: the receiver
    const Stmt* macro = nullptr;   // Macro: its definition (the Template outlives every Value)
};

// Builders that enforce the size and nesting limits (throw RuntimeError).
Value make_list(std::vector<Value> items, bool tuple = false);
Value make_object(Dict d);
Value make_string(std::string s);
void check_string_size(size_t bytes);
uint32_t value_depth(const Value& v);

// Python/Jinja truthiness as the reference computes it (a namespace is always true).
bool truthy(const Value& v);

// How `{{ v }}` prints: floats keep a ".0", lists and dicts print as JSON (the caller skips
// none and undefined, which print nothing).
std::string to_display(const Value& v);
// What JavaScript's `String(v.value)` gives, used by `+`/`~` with a string operand: floats
// lose the ".0", lists join their elements with ",", dicts are "[object Map]".
std::string to_js_string(const Value& v);

struct JsonOptions {
    int64_t indent = 0;  // 0: one line
    bool ensure_ascii = false;
    bool sort_keys = false;
    bool custom_separators = false;
    std::string item_sep, key_sep;  // when custom_separators
    bool undefined_as_null = true;  // false for `string`/printing, which write "undefined"
};
std::string to_json(const Value& v, const JsonOptions& options = {});

// `==` is JavaScript's loose equality on the payloads (1 == "1", none == undefined);
// `in` and the equalto test use strict equality. Lists and dicts compare by identity.
bool loose_equal(const Value& a, const Value& b);
bool strict_equal(const Value& a, const Value& b);

}  // namespace celer::chat::jinja
