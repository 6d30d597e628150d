// The tree-walking evaluator: statements write into an output string, expressions produce
// Values. Scoping follows the reference: a for loop opens one scope for all its iterations
// (so a `set` inside the loop is gone after it, and persists across iterations), `if` opens
// none, and a macro body runs in a scope whose parent is the caller's.
#include "chat/jinja_eval.h"

#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>

#include "chat/jinja_builtins.h"
#include "chat/jinja_error.h"
#include "chat/jinja_js.h"
#include "util/error.h"

namespace celer::chat::jinja {

namespace {

class Scope {
public:
    explicit Scope(const Scope* parent) : parent_(parent) {}

    const Value* find(const std::string& name) const {
        for (const Scope* s = this; s; s = s->parent_) {
            const auto it = s->vars_.find(name);
            if (it != s->vars_.end()) return &it->second;
        }
        return nullptr;
    }
    void set(const std::string& name, Value v) { vars_[name] = std::move(v); }

private:
    const Scope* parent_;
    std::unordered_map<std::string, Value> vars_;
};

enum class Flow { Normal, Break, Continue };

class Evaluator {
public:
    explicit Evaluator(const Program& p) : p_(p) {}
    std::string run(const std::vector<std::pair<std::string, Value>>& context);

private:
    // Bounds recursion through nested statements, expressions and macro calls.
    class Depth {
    public:
        explicit Depth(int& depth) : depth_(depth) {
            if (++depth_ > Limits::kEvalDepth) {
                --depth_;
                throw RuntimeError(fmt::format("template recursion deeper than {}", Limits::kEvalDepth));
            }
        }
        ~Depth() { --depth_; }
        Depth(const Depth&) = delete;
        Depth& operator=(const Depth&) = delete;

    private:
        int& depth_;
    };

    Flow exec_body(const Body& body, Scope& scope, std::string& out);
    Flow exec(const Stmt& s, Scope& scope, std::string& out);
    Flow exec_node(const Stmt& s, Scope& scope, std::string& out);
    Flow exec_for(const Stmt& s, Scope& scope, std::string& out);
    Flow exec_set(const Stmt& s, Scope& scope);
    static void append(std::string& out, std::string_view text);

    Value eval(const Expr& e, Scope& scope);
    Value eval_node(const Expr& e, Scope& scope);
    Value eval_call(const Expr& e, Scope& scope);
    Value eval_member(const Expr& e, Scope& scope);
    Value eval_dict(const Expr& e, Scope& scope);
    Value filter(const Expr& f, const Value& operand, Scope& scope);
    CallArgs eval_args(const std::vector<Arg>& args, Scope& scope);
    Value call_macro(const Stmt& macro, const CallArgs& args, Scope& caller);
    void charge(const Value& v);

    const Program& p_;
    RenderState state_;
    int depth_ = 0;
};

// ---- statements ----

void Evaluator::append(std::string& out, std::string_view text) {
    check_string_size(out.size() + text.size());
    out += text;
}

Flow Evaluator::exec_body(const Body& body, Scope& scope, std::string& out) {
    for (const auto& s : body) {
        const Flow f = exec(*s, scope, out);
        if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
}

Flow Evaluator::exec(const Stmt& s, Scope& scope, std::string& out) {
    try {
        Depth depth(depth_);
        return exec_node(s, scope, out);
    } catch (const RuntimeError& e) {
        fail_at(p_.source, s.pos, e.what());
    }
}

Flow Evaluator::exec_node(const Stmt& s, Scope& scope, std::string& out) {
    switch (s.kind) {
        case StmtKind::Text: append(out, s.text); return Flow::Normal;
        case StmtKind::Output: {
            const Value v = eval(*s.expr, scope);
            if (!v.is(Kind::Null) && !v.is(Kind::Undefined)) append(out, to_display(v));
            return Flow::Normal;
        }
        case StmtKind::If:
            for (const auto& b : s.branches) {
                if (truthy(eval(*b.cond, scope))) return exec_body(b.body, scope, out);
            }
            return exec_body(s.orelse, scope, out);
        case StmtKind::For: return exec_for(s, scope, out);
        case StmtKind::Set: return exec_set(s, scope);
        case StmtKind::Macro: {
            auto f = std::make_shared<Function>();
            f->type = Function::Type::Macro;
            f->name = s.text;
            f->macro = &s;
            scope.set(s.text, Value::function(std::move(f)));
            return Flow::Normal;
        }
        case StmtKind::FilterBlock: {
            std::string text;
            const Flow f = exec_body(s.body, scope, text);
            if (f != Flow::Normal) return f;
            const Value v = filter(*s.expr, Value::string(std::move(text)), scope);
            if (!v.is(Kind::Null) && !v.is(Kind::Undefined)) append(out, to_display(v));
            return Flow::Normal;
        }
        case StmtKind::Break: return Flow::Break;
        case StmtKind::Continue: return Flow::Continue;
    }
    return Flow::Normal;
}

Value loop_object(const std::vector<Value>& items, size_t i) {
    const auto n = int64_t(items.size()), k = int64_t(i);
    return make_object(Dict({
        {"index", Value::integer(k + 1)},
        {"index0", Value::integer(k)},
        {"revindex", Value::integer(n - k)},
        {"revindex0", Value::integer(n - k - 1)},
        {"first", Value::boolean(k == 0)},
        {"last", Value::boolean(k == n - 1)},
        {"length", Value::integer(n)},
        {"previtem", k > 0 ? items[i - 1] : Value{}},
        {"nextitem", k < n - 1 ? items[i + 1] : Value{}},
    }));
}

void bind_loop_vars(const Stmt& s, const Value& item, Scope& scope) {
    if (!s.unpack) return scope.set(s.vars[0], item);
    for (size_t j = 0; j < s.vars.size(); ++j) scope.set(s.vars[j], item.list().items[j]);
}

Flow Evaluator::exec_for(const Stmt& s, Scope& scope, std::string& out) {
    Scope loop_scope(&scope);
    const Value iterable = eval(*s.expr, loop_scope);
    std::vector<Value> all;
    if (iterable.is(Kind::Object)) {
        for (const auto& [k, v] : iterable.dict().entries()) all.push_back(Value::string(k));
    } else if (iterable.is(Kind::List)) {
        all = iterable.list().items;
    } else {
        throw RuntimeError(fmt::format("for loop over {}; expected a list or a dict", kind_name(iterable.kind())));
    }
    std::vector<Value> items;
    for (const auto& v : all) {
        state_.step();
        if (s.unpack && (!v.is(Kind::List) || v.list().items.size() != s.vars.size())) {
            throw RuntimeError(fmt::format("cannot unpack {} into {} loop variables", kind_name(v.kind()), s.vars.size()));
        }
        if (s.filter) {
            Scope test_scope(&loop_scope);
            bind_loop_vars(s, v, test_scope);
            if (!truthy(eval(*s.filter, test_scope))) continue;
        }
        items.push_back(v);
    }
    // reference: the else block runs unless some iteration finished its body normally (an
    // iteration left by break or continue does not count).
    bool iterated = false;
    for (size_t i = 0; i < items.size(); ++i) {
        state_.step();
        loop_scope.set("loop", loop_object(items, i));
        bind_loop_vars(s, items[i], loop_scope);
        const Flow f = exec_body(s.body, loop_scope, out);
        if (f == Flow::Break) break;
        if (f == Flow::Continue) continue;
        iterated = true;
    }
    return iterated ? Flow::Normal : exec_body(s.orelse, loop_scope, out);
}

Flow Evaluator::exec_set(const Stmt& s, Scope& scope) {
    Value v;
    if (s.expr) {
        v = eval(*s.expr, scope);
    } else {
        std::string text;
        const Flow f = exec_body(s.body, scope, text);
        if (f != Flow::Normal) return f;
        v = Value::string(std::move(text));
    }
    const Expr& t = *s.target;
    if (t.kind == ExprKind::Name) {
        scope.set(t.name, std::move(v));
    } else if (t.kind == ExprKind::Tuple) {
        if (!v.is(Kind::List) || v.list().items.size() != t.items.size()) {
            throw RuntimeError(fmt::format("cannot unpack {} into {} names", kind_name(v.kind()), t.items.size()));
        }
        for (size_t i = 0; i < t.items.size(); ++i) scope.set(t.items[i]->name, v.list().items[i]);
    } else {  // ns.attr
        const Value target = eval(*t.lhs, scope);
        if (!target.is(Kind::Namespace)) {
            throw RuntimeError(fmt::format("cannot set an attribute of a {}; only of a namespace()", kind_name(target.kind())));
        }
        target.ns_dict().set(t.rhs->literal.str(), std::move(v));
    }
    return Flow::Normal;
}

// ---- expressions ----

// Whether e makes a new string or list, rather than handing on one that exists (a variable,
// an attribute, a branch of `if`), which would charge the same bytes again at every use.
bool builds_value(const Expr& e) {
    switch (e.kind) {
        case ExprKind::Binary:
        case ExprKind::Call:
        case ExprKind::Filter:
        case ExprKind::List:
        case ExprKind::Tuple:
        case ExprKind::Dict: return true;
        case ExprKind::Member: return e.rhs->kind == ExprKind::Slice;
        default: return false;
    }
}

Value Evaluator::eval(const Expr& e, Scope& scope) {
    try {
        Depth depth(depth_);
        state_.step();
        Value v = eval_node(e, scope);
        if (builds_value(e)) charge(v);
        return v;
    } catch (const RuntimeError& err) {
        fail_at(p_.source, e.pos, err.what());
    }
}

// Work and memory are bounded by charging every string and list an expression builds, with
// a per-allocation overhead so that many small values cost what they occupy.
void Evaluator::charge(const Value& v) {
    constexpr size_t kOverhead = 64;  // shared_ptr control block, std::string, allocator slack
    if (v.is(Kind::String)) state_.produced(v.str().size() + kOverhead);
    else if (v.is(Kind::List)) state_.produced(v.list().items.size() * kOverhead);
}

Value Evaluator::eval_node(const Expr& e, Scope& scope) {
    switch (e.kind) {
        case ExprKind::Literal: return e.literal;
        case ExprKind::Name: {
            const Value* v = scope.find(e.name);
            return v ? *v : Value{};
        }
        case ExprKind::List:
        case ExprKind::Tuple: {
            std::vector<Value> items;
            for (const auto& item : e.items) items.push_back(eval(*item, scope));
            return make_list(std::move(items), e.kind == ExprKind::Tuple);
        }
        case ExprKind::Dict: return eval_dict(e, scope);
        case ExprKind::Member: return eval_member(e, scope);
        case ExprKind::Slice: break;  // only inside Member
        case ExprKind::Call: return eval_call(e, scope);
        case ExprKind::Unary: return unary_op(e.op, eval(*e.lhs, scope));
        case ExprKind::Binary: {
            Value l = eval(*e.lhs, scope);
            if (e.op == Op::And) return truthy(l) ? eval(*e.rhs, scope) : l;
            if (e.op == Op::Or) return truthy(l) ? l : eval(*e.rhs, scope);
            return binary_op(e.op, l, eval(*e.rhs, scope));
        }
        case ExprKind::Filter: return filter(e, eval(*e.lhs, scope), scope);
        case ExprKind::Test: return Value::boolean(apply_test(e.name, eval(*e.lhs, scope), nullptr) != e.negated);
        case ExprKind::Ternary: return truthy(eval(*e.cond, scope)) ? eval(*e.lhs, scope) : eval(*e.rhs, scope);
        case ExprKind::Select: return truthy(eval(*e.cond, scope)) ? eval(*e.lhs, scope) : Value{};
    }
    throw RuntimeError("slice outside a subscript");
}

Value Evaluator::filter(const Expr& f, const Value& operand, Scope& scope) {
    if (!f.has_args) return apply_filter(f.name, operand, nullptr, state_);
    const CallArgs args = eval_args(f.args, scope);
    return apply_filter(f.name, operand, &args, state_);
}

Value Evaluator::eval_dict(const Expr& e, Scope& scope) {
    Dict d;
    for (const auto& [k, v] : e.entries) {
        const Value key = eval(*k, scope);
        if (!key.is(Kind::String)) throw RuntimeError(fmt::format("dict keys must be strings, not {}", kind_name(key.kind())));
        d.set(key.str(), eval(*v, scope));
    }
    return make_object(std::move(d));
}

CallArgs Evaluator::eval_args(const std::vector<Arg>& args, Scope& scope) {
    CallArgs out;
    // Like Python, every positional argument is evaluated before any keyword argument.
    for (const auto& a : args) {
        if (a.kind == Arg::Kind::Positional) out.positional.push_back(eval(*a.value, scope));
        if (a.kind != Arg::Kind::Spread) continue;
        const Value v = eval(*a.value, scope);
        if (!v.is(Kind::List)) throw RuntimeError(fmt::format("'*' needs a list, not {}", kind_name(v.kind())));
        out.positional.insert(out.positional.end(), v.list().items.begin(), v.list().items.end());
    }
    const auto add = [&](const std::string& name, Value v) {
        if (out.keyword_arg(name)) throw RuntimeError(fmt::format("keyword argument '{}' given twice", name));
        out.keyword.emplace_back(name, std::move(v));
    };
    for (const auto& a : args) {
        if (a.kind == Arg::Kind::Keyword) add(a.name, eval(*a.value, scope));
        if (a.kind != Arg::Kind::KeywordSpread) continue;
        const Value v = eval(*a.value, scope);
        if (!v.is(Kind::Object)) throw RuntimeError(fmt::format("'**' needs a dict, not {}", kind_name(v.kind())));
        for (const auto& [k, val] : v.dict().entries()) add(k, val);
    }
    return out;
}

Value Evaluator::eval_call(const Expr& e, Scope& scope) {
    const CallArgs args = eval_args(e.args, scope);
    const Value fn = eval(*e.lhs, scope);
    if (!fn.is(Kind::Function)) {
        const std::string what = e.lhs->kind == ExprKind::Name ? fmt::format("'{}'", e.lhs->name) : "the called value";
        throw RuntimeError(fmt::format("{} is {}, not a function", what, kind_name(fn.kind())));
    }
    const Function& f = fn.fn();
    switch (f.type) {
        case Function::Type::Global: return call_global(f.name, args, state_);
        case Function::Type::Method: return call_method(f, args, state_);
        case Function::Type::Macro: return call_macro(*f.macro, args, scope);
    }
    return {};
}

Value Evaluator::call_macro(const Stmt& m, const CallArgs& args, Scope& caller) {
    if (args.positional.size() > m.params.size()) {
        throw RuntimeError(fmt::format("macro '{}' takes at most {} arguments", m.text, m.params.size()));
    }
    for (const auto& kw : args.keyword) {
        const bool known = std::any_of(m.params.begin(), m.params.end(), [&](const Param& p) { return p.name == kw.first; });
        if (!known) throw RuntimeError(fmt::format("macro '{}' has no parameter '{}'", m.text, kw.first));
    }
    Scope local(&caller);
    std::vector<const Param*> defaults;
    for (size_t i = 0; i < m.params.size(); ++i) {
        const Param& p = m.params[i];
        const Value* v = i < args.positional.size() ? &args.positional[i] : args.keyword_arg(p.name);
        if (!v && p.default_value) defaults.push_back(&p);
        local.set(p.name, v ? *v : Value{});
    }
    // Defaults see the other parameters already bound, as in the reference.
    for (const Param* p : defaults) local.set(p->name, eval(*p->default_value, local));
    std::string out;
    exec_body(m.body, local, out);
    return Value::string(std::move(out));
}

Value Evaluator::eval_member(const Expr& e, Scope& scope) {
    const Value obj = eval(*e.lhs, scope);
    if (e.rhs->kind != ExprKind::Slice) return member_of(obj, eval(*e.rhs, scope));
    Value bounds[3];
    for (size_t i = 0; i < 3; ++i) {
        if (e.rhs->items[i]) bounds[i] = eval(*e.rhs->items[i], scope);
    }
    return slice_of(obj, bounds[0], bounds[1], bounds[2]);
}

std::string Evaluator::run(const std::vector<std::pair<std::string, Value>>& context) {
    Scope globals(nullptr);
    globals.set("true", Value::boolean(true));
    globals.set("false", Value::boolean(false));
    globals.set("none", Value::none());
    globals.set("True", Value::boolean(true));
    globals.set("False", Value::boolean(false));
    globals.set("None", Value::none());
    for (const auto name : global_function_names()) {
        auto f = std::make_shared<Function>();
        f->name = name;
        const std::string key = f->name;
        globals.set(key, Value::function(std::move(f)));
    }
    for (const auto& [k, v] : context) {
        // reference: refuses ("Variable already declared") rather than hiding a built-in.
        if (globals.find(k)) throw Error(fmt::format("chat template: context variable '{}' clashes with a built-in", k));
        globals.set(k, v);
    }
    std::string out;
    exec_body(p_.body, globals, out);
    return out;
}

}  // namespace

std::string render(const Program& program, const std::vector<std::pair<std::string, Value>>& context) {
    return Evaluator(program).run(context);
}

}  // namespace celer::chat::jinja
