#include "server/api.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>

namespace celer::server {
namespace {

// ChatML, as Qwen writes it, with tools in the Hermes format Qwen2.5 was trained on.
constexpr std::string_view kChatMl = R"({%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}{% else %}You are a helpful assistant.{% endif %}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}{%- for message in messages %}{%- if message.role == 'system' %}{%- if not loop.first %}<|im_start|>system
{{ message.content }}<|im_end|>
{% endif %}{%- elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{% if message.content %}{{ message.content }}{% endif %}{%- if message.tool_calls %}{% for tc in message.tool_calls %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments }}}
</tool_call>{% endfor %}{% endif %}<|im_end|>
{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %})";

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const json* member(const json& body, const char* name) {
    auto it = body.find(name);
    return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& body, const char* name, double def, double lo, double hi) {
    const json* v = member(body, name);
    if (!v) return def;
    if (!v->is_number()) bad(name, fmt::format("'{}' must be a number", name));
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) bad(name, fmt::format("'{}' must be between {} and {}", name, lo, hi));
    return x;
}

// A string member, or "" when absent or not a string.
std::string str_or(const json& o, const char* name) {
    auto it = o.find(name);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool boolean(const json& body, const char* name, bool def) {
    const json* v = member(body, name);
    if (!v) return def;
    if (!v->is_boolean()) bad(name, fmt::format("'{}' must be a boolean", name));
    return v->get<bool>();
}

// Message content: a string, or a list of parts whose text parts are joined.
std::string content_text(const json& c, const std::string& param) {
    if (c.is_null()) return {};
    if (c.is_string()) return c.get<std::string>();
    if (!c.is_array()) bad(param, "content must be a string or a list of parts");
    std::string out;
    for (const auto& part : c) {
        if (part.is_string()) {
            out += part.get<std::string>();
            continue;
        }
        if (!part.is_object()) bad(param, "each content part must be an object");
        const auto type = str_or(part, "type");
        if (type == "text" || type == "input_text" || type == "output_text" || type == "refusal") {
            const json* t = member(part, type == "refusal" ? "refusal" : "text");
            if (!t || !t->is_string()) bad(param, fmt::format("a '{}' part needs a string 'text'", type));
            out += t->get<std::string>();
        } else if (type.empty()) {
            bad(param, "each content part needs a 'type'");
        } else {
            throw ApiError(400, fmt::format("content parts of type '{}' are not supported by this model", type), param);
        }
    }
    return out;
}

// OpenAI's Predicted Outputs: {"type": "content", "content": text or text parts}, the text the
// answer is expected to repeat much of (a file being edited). Its tokens seed the speculation.
std::vector<TokenId> prediction_tokens(const json& body, const ModelContext& m) {
    const json* p = member(body, "prediction");
    if (!p || p->is_null()) return {};
    if (!p->is_object() || str_or(*p, "type") != "content" || !p->contains("content"))
        bad("prediction", "'prediction' must be {\"type\": \"content\", \"content\": ...}");
    return m.vocab().encode(content_text((*p)["content"], "prediction.content"));
}

}  // namespace

json error_body(const std::string& message, const std::string& type, const std::string& param, const std::string& code) {
    json e;
    e["message"] = message;
    e["type"] = type;
    e["param"] = param.empty() ? json(nullptr) : json(param);
    e["code"] = code.empty() ? json(nullptr) : json(code);
    return json{{"error", e}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json parse_body(std::string_view body) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
    }
    if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
    return j;
}

std::string random_id(std::string_view prefix) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char kAlnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string id(prefix);
    for (int i = 0; i < 24; ++i) id += kAlnum[rng() % 62];
    return id;
}

ModelContext::ModelContext(const Engine& engine, std::string model_id, std::string chat_template)
    : vocab_(engine.model().vocab), id_(std::move(model_id)) {
    if (vocab_.bos() >= 0) bos_text_ = std::string(vocab_.token(vocab_.bos()));
    if (vocab_.eos() >= 0) eos_text_ = std::string(vocab_.token(vocab_.eos()));
    tmpl_ = std::make_unique<chat::Template>(chat_template.empty() ? kChatMl : std::string_view(chat_template));
}

std::vector<TokenId> ModelContext::fit_chat_prompt(const json& messages, const json& tools, const Limits& lim, size_t reserve,
                                                   PromptCache* cache, size_t* dropped) const {
    *dropped = 0;
    std::vector<TokenId> ids = chat_prompt(messages, tools, cache);
    if (!lim.drop_turns || lim.ctx == 0 || !messages.is_array()) return ids;
    reserve = std::clamp<size_t>(reserve, 1, std::max<size_t>(1, lim.ctx / 2));
    if (ids.size() + reserve <= lim.ctx) return ids;
    // Turn starts after the leading system messages: the first message after them, then every
    // user message.
    size_t lead = 0;
    while (lead < messages.size() && messages[lead].value("role", "") == "system") ++lead;
    std::vector<size_t> starts;
    for (size_t i = lead; i < messages.size(); ++i)
        if (i == lead || messages[i].value("role", "") == "user") starts.push_back(i);
    if (starts.size() < 2) return ids;
    const auto without = [&](size_t d) {  // the messages without the oldest d turns
        json m = json::array();
        for (size_t i = 0; i < lead; ++i) m.push_back(messages[i]);
        for (size_t i = starts[d]; i < messages.size(); ++i) m.push_back(messages[i]);
        return m;
    };
    // Fewer turns never render longer: the fewest dropped that fit, by bisection.
    size_t lo = 1, hi = starts.size() - 1;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (chat_prompt(without(mid), tools).size() + reserve <= lim.ctx) hi = mid;
        else lo = mid + 1;
    }
    *dropped = lo;
    return chat_prompt(without(lo), tools, cache);
}

std::vector<TokenId> ModelContext::chat_prompt(const json& messages, const json& tools, PromptCache* cache) const {
    json ctx;
    ctx["messages"] = messages;
    if (tools.is_array() && !tools.empty()) ctx["tools"] = tools;
    ctx["add_generation_prompt"] = true;
    ctx["bos_token"] = bos_text_;
    ctx["eos_token"] = eos_text_;
    std::string text;
    try {
        text = tmpl_->render(ctx);
    } catch (const Error& e) {
        throw ApiError(400, fmt::format("the chat template failed on these messages: {}", e.what()), "messages");
    }
    std::vector<TokenId> ids;
    const bool bos = vocab_.add_bos() && vocab_.bos() >= 0 && !(bos_text_.size() && text.starts_with(bos_text_));
    if (bos) ids.push_back(vocab_.bos());
    // From the cache: every token up to the last control token inside the common prefix.
    size_t keep = 0, offset = 0;
    if (cache && !cache->ends.empty() && cache->tokens.size() == cache->ends.size() && !cache->tokens.empty() &&
        (cache->tokens[0] == vocab_.bos()) == bos) {
        const size_t lcp = size_t(std::mismatch(text.begin(), text.end(), cache->text.begin(), cache->text.end()).first - text.begin());
        // A cut is exact after a control token. After spliced output (or the prompt's last
        // token) it is also taken where the new text goes on with a control token: the
        // tokenizer splits there, and the output keeps the model's tokens.
        for (size_t i = cache->tokens.size(); i-- > (bos ? 1 : 0);) {
            if (cache->ends[i] > lcp) continue;
            const TokenAttr a = vocab_.attr(cache->tokens[i]);
            const bool output = i + 1 >= cache->n_prompt;
            if (a == TokenAttr::Control || a == TokenAttr::UserDefined || (output && vocab_.special_at(text, cache->ends[i], true) >= 0)) {
                keep = i + 1;
                offset = cache->ends[i];
                break;
            }
        }
    }
    if (keep > 0) ids.assign(cache->tokens.begin(), cache->tokens.begin() + long(keep));
    const auto body = vocab_.encode(std::string_view(text).substr(offset), true);
    ids.insert(ids.end(), body.begin(), body.end());
    if (cache) {
        // Token ends for the new part; byte-level vocabularies give back the text exactly, others
        // (SentencePiece adds and rewrites spaces) leave the offsets unknown and the cache unused.
        std::vector<size_t> ends(cache->ends.begin(), cache->ends.begin() + long(keep));
        if (keep == 0 && bos) ends.push_back(0);
        size_t at = offset;
        for (size_t i = ends.size(); i < ids.size(); ++i) ends.push_back(at += vocab_.piece(ids[i], true).size());
        const bool exact = vocab_.kind() == VocabKind::Bpe && at == text.size();
        cache->reused = keep;
        cache->extended = text.starts_with(cache->text);
        cache->text = std::move(text);
        cache->tokens = ids;
        cache->ends = exact ? std::move(ends) : std::vector<size_t>();
        cache->n_prompt = ids.size();
    }
    return ids;
}

void ModelContext::splice_output(PromptCache& cache, const std::vector<TokenId>& output) const {
    if (cache.ends.empty() || cache.ends.size() != cache.tokens.size() || cache.ends.back() != cache.text.size()) return;
    for (const TokenId t : output) {
        cache.text += vocab_.piece(t, true);
        cache.tokens.push_back(t);
        cache.ends.push_back(cache.text.size());
    }
}

std::vector<TokenId> ModelContext::text_prompt(std::string_view text) const {
    std::vector<TokenId> ids;
    if (vocab_.add_bos() && vocab_.bos() >= 0) ids.push_back(vocab_.bos());
    const auto body = vocab_.encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

std::vector<TokenId> ModelContext::fim_prompt(std::string_view prefix, std::string_view suffix) const {
    if (!vocab_.fim().available())
        throw ApiError(400, fmt::format("model '{}' has no fill-in-the-middle tokens; 'suffix' cannot be used", id_), "suffix");
    std::vector<TokenId> ids;
    if (vocab_.add_bos() && vocab_.bos() >= 0) ids.push_back(vocab_.bos());
    const auto body = vocab_.fim_prompt(prefix, suffix);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

GenParams gen_params(const json& body, const Limits& lim, const char* max_tokens_field) {
    GenParams p;
    SamplerParams& s = p.sampler;
    s.temperature = float(number(body, "temperature", 1.0, 0, 2));
    s.top_p = float(number(body, "top_p", 1.0, 0, 1));
    s.top_k = int(number(body, "top_k", 0, 0, 1 << 20));  // an extension llama.cpp and vLLM accept
    s.min_p = float(number(body, "min_p", 0, 0, 1));
    s.presence_penalty = float(number(body, "presence_penalty", 0, -2, 2));
    s.frequency_penalty = float(number(body, "frequency_penalty", 0, -2, 2));
    s.repeat_penalty = float(number(body, "repetition_penalty", 1, 0.01, 100));
    if (const json* seed = member(body, "seed")) {
        if (!seed->is_number_integer()) bad("seed", "'seed' must be an integer");
        s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : uint64_t(seed->get<int64_t>());
    } else {
        s.seed = std::random_device{}();
        s.seed = s.seed << 32 | std::random_device{}();
    }
    p.max_tokens = lim.max_tokens;
    for (const char* f : {max_tokens_field, "max_tokens"}) {
        if (const json* v = member(body, f)) {
            if (!v->is_number_integer() || v->get<int64_t>() < 1)
                bad(f, fmt::format("'{}' must be a positive integer", f));
            p.max_tokens = int(std::min<int64_t>(v->get<int64_t>(), lim.max_tokens));
            break;
        }
    }
    if (const json* st = member(body, "stop")) {
        if (st->is_string()) {
            p.stop.push_back(st->get<std::string>());
        } else if (st->is_array()) {
            if (st->size() > lim.max_stop) bad("stop", fmt::format("at most {} stop sequences", lim.max_stop));
            for (const auto& x : *st) {
                if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings");
                p.stop.push_back(x.get<std::string>());
            }
        } else {
            bad("stop", "'stop' must be a string or a list of strings");
        }
        std::erase_if(p.stop, [](const std::string& x) { return x.empty(); });
    }
    return p;
}

size_t overflow_reserve(const GenParams& p, const Limits& lim) {
    return p.max_tokens > 0 && p.max_tokens < lim.max_tokens ? size_t(p.max_tokens) : lim.ctx / 4;
}

ChatRequest parse_chat(const json& body, const ModelContext& m, const Limits& lim) {
    ChatRequest r;
    const json* msgs = member(body, "messages");
    if (!msgs || !msgs->is_array() || msgs->empty()) bad("messages", "'messages' must be a non-empty list");
    if (msgs->size() > lim.max_messages) bad("messages", fmt::format("at most {} messages", lim.max_messages));
    json messages = json::array();
    for (size_t i = 0; i < msgs->size(); ++i) {
        const json& in = (*msgs)[i];
        const std::string param = fmt::format("messages[{}]", i);
        if (!in.is_object()) bad(param, "each message must be an object");
        const json* role = member(in, "role");
        if (!role || !role->is_string()) bad(param + ".role", "each message needs a string 'role'");
        std::string r_ = role->get<std::string>();
        if (r_ != "system" && r_ != "developer" && r_ != "user" && r_ != "assistant" && r_ != "tool" && r_ != "function")
            bad(param + ".role", fmt::format("unknown role '{}'", r_));
        if (r_ == "developer") r_ = "system";  // what the open templates know
        if (r_ == "function") r_ = "tool";
        json out;
        out["role"] = r_;
        out["content"] = content_text(in.contains("content") ? in["content"] : json(nullptr), param + ".content");
        if (const json* tc = member(in, "tool_calls")) {
            if (!tc->is_array()) bad(param + ".tool_calls", "'tool_calls' must be a list");
            json calls = json::array();
            for (const auto& c : *tc) {
                if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) bad(param + ".tool_calls", "each tool call needs a 'function'");
                const json& f = c["function"];
                if (!f.contains("name") || !f["name"].is_string()) bad(param + ".tool_calls", "each tool call needs a function name");
                std::string args = f.contains("arguments") && f["arguments"].is_string() ? f["arguments"].get<std::string>() : "{}";
                calls.push_back({{"id", str_or(c, "id")}, {"type", "function"}, {"function", {{"name", f["name"]}, {"arguments", args}}}});
            }
            out["tool_calls"] = calls;
        }
        if (const json* id = member(in, "tool_call_id"); id && id->is_string()) out["tool_call_id"] = *id;
        if (const json* n = member(in, "name"); n && n->is_string()) out["name"] = *n;
        messages.push_back(std::move(out));
    }
    json tools = json::array();
    if (const json* t = member(body, "tools")) {
        if (!t->is_array()) bad("tools", "'tools' must be a list");
        for (const auto& tool : *t) {
            if (!tool.is_object() || str_or(tool, "type") != "function" || !tool.contains("function") ||
                !tool["function"].is_object() || !tool["function"].contains("name"))
                bad("tools", "each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
            tools.push_back(tool);
        }
    }
    bool use_tools = !tools.empty();
    if (const json* tc = member(body, "tool_choice")) {
        if (tc->is_string()) {
            const auto s = tc->get<std::string>();
            if (s == "none") use_tools = false;
            else if (s != "auto" && s != "required") bad("tool_choice", "'tool_choice' must be none, auto, required or a function");
        } else if (!tc->is_object()) {
            bad("tool_choice", "'tool_choice' must be none, auto, required or a function");
        }
    }
    r.tools = use_tools;
    r.params = gen_params(body, lim, "max_completion_tokens");
    r.prompt = m.fit_chat_prompt(messages, use_tools ? tools : json::array(), lim, overflow_reserve(r.params, lim), nullptr,
                                 &r.dropped_turns);
    r.stream = boolean(body, "stream", false);
    if (const json* so = member(body, "stream_options")) {
        if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
        r.include_usage = boolean(*so, "include_usage", false);
    }
    if (boolean(body, "logprobs", false)) {
        r.params.logprobs = int(number(body, "top_logprobs", 0, 0, 20));
    }
    if (const json* n = member(body, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1))
        bad("n", "only n = 1 is supported");
    r.params.prediction = prediction_tokens(body, m);
    return r;
}

CompletionRequest parse_completion(const json& body, const ModelContext& m, const Limits& lim) {
    CompletionRequest r;
    const json* p = member(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    std::string suffix;
    if (const json* s = member(body, "suffix")) {
        if (!s->is_string()) bad("suffix", "'suffix' must be a string");
        suffix = s->get<std::string>();
    }
    if (p->is_string()) {
        r.prompt_text = p->get<std::string>();
        r.prompt = member(body, "suffix") ? m.fim_prompt(r.prompt_text, suffix) : m.text_prompt(r.prompt_text);
    } else if (p->is_array() && !p->empty() && std::all_of(p->begin(), p->end(), [](const json& x) { return x.is_number_integer(); })) {
        if (member(body, "suffix")) bad("suffix", "'suffix' needs a text prompt");
        for (const auto& x : *p) {
            const int64_t id = x.get<int64_t>();
            if (id < 0 || size_t(id) >= m.vocab().size()) bad("prompt", fmt::format("token id {} is outside the vocabulary", id));
            r.prompt.push_back(TokenId(id));
        }
    } else {
        bad("prompt", "'prompt' must be a string, a list of one string, or a list of token ids");
    }
    if (r.prompt.empty()) bad("prompt", "the prompt is empty");
    r.params = gen_params(body, lim, "max_tokens");
    if (!member(body, "max_tokens")) r.params.max_tokens = std::min(16, lim.max_tokens);  // OpenAI's default here
    r.stream = boolean(body, "stream", false);
    r.echo = boolean(body, "echo", false);
    if (const json* so = member(body, "stream_options")) {
        if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
        r.include_usage = boolean(*so, "include_usage", false);
    }
    if (const json* lp = member(body, "logprobs")) {
        if (!lp->is_number_integer() || lp->get<int64_t>() < 0 || lp->get<int64_t>() > 5) bad("logprobs", "'logprobs' must be an integer from 0 to 5");
        r.params.logprobs = int(lp->get<int64_t>());
    }
    if (const json* n = member(body, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1)) bad("n", "only n = 1 is supported");
    r.params.prediction = prediction_tokens(body, m);
    return r;
}

ParsedOutput parse_tool_calls(std::string_view text) {
    constexpr std::string_view kClose = "</tool_call>";
    ParsedOutput out;
    size_t pos = 0;
    while (pos < text.size()) {
        const size_t open = text.find(kToolCallOpen, pos);
        if (open == std::string_view::npos) {
            out.content += text.substr(pos);
            break;
        }
        out.content += text.substr(pos, open - pos);
        const size_t body = open + kToolCallOpen.size();
        size_t close = text.find(kClose, body);
        const size_t end = close == std::string_view::npos ? text.size() : close;
        const size_t next = close == std::string_view::npos ? text.size() : close + kClose.size();
        bool ok = false;
        try {
            const json call = json::parse(text.substr(body, end - body));
            if (call.is_object() && call.contains("name") && call["name"].is_string()) {
                ToolCall tc;
                tc.name = call["name"].get<std::string>();
                const json args = call.contains("arguments") ? call["arguments"] : call.value("parameters", json::object());
                tc.arguments = args.is_string() ? args.get<std::string>() : dump(args);
                out.calls.push_back(std::move(tc));
                ok = true;
            }
        } catch (const json::exception&) {
        }
        if (!ok) out.content += text.substr(open, next - open);
        pos = next;
    }
    const auto first = out.content.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) {
        out.content.clear();
    } else {
        out.content.erase(0, first);
        out.content.erase(out.content.find_last_not_of(" \t\r\n") + 1);
    }
    return out;
}

json input_items(const json& input) {
    if (input.is_string()) return json::array({{{"type", "message"}, {"role", "user"}, {"content", input}}});
    if (!input.is_array()) bad("input", "'input' must be a string or a list of items");
    return input;
}

json items_to_messages(const json& items, const std::string& instructions) {
    json messages = json::array();
    if (!instructions.empty()) messages.push_back({{"role", "system"}, {"content", instructions}});
    for (size_t i = 0; i < items.size(); ++i) {
        const json& it = items[i];
        const std::string param = fmt::format("input[{}]", i);
        if (!it.is_object()) bad(param, "each input item must be an object");
        std::string type = str_or(it, "type");
        if (type.empty() && it.contains("role")) type = "message";  // EasyInputMessage
        if (type == "message") {
            const json* role = member(it, "role");
            if (!role || !role->is_string()) bad(param + ".role", "a message item needs a string 'role'");
            std::string r = role->get<std::string>();
            if (r == "developer") r = "system";
            if (r != "system" && r != "user" && r != "assistant") bad(param + ".role", fmt::format("unknown role '{}'", r));
            messages.push_back({{"role", r}, {"content", content_text(it.contains("content") ? it["content"] : json(nullptr), param + ".content")}});
        } else if (type == "function_call") {
            const json* name = member(it, "name");
            if (!name || !name->is_string()) bad(param + ".name", "a function_call item needs a string 'name'");
            const json* args = member(it, "arguments");
            json call = {{"id", str_or(it, "call_id")},
                         {"type", "function"},
                         {"function", {{"name", *name}, {"arguments", args && args->is_string() ? args->get<std::string>() : "{}"}}}};
            // Consecutive calls belong to one assistant turn.
            if (!messages.empty() && messages.back()["role"] == "assistant" && messages.back().contains("tool_calls"))
                messages.back()["tool_calls"].push_back(call);
            else
                messages.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", json::array({call})}});
        } else if (type == "function_call_output") {
            const json* out = member(it, "output");
            if (!out) bad(param + ".output", "a function_call_output item needs 'output'");
            messages.push_back({{"role", "tool"},
                                {"tool_call_id", str_or(it, "call_id")},
                                {"content", out->is_string() ? out->get<std::string>() : content_text(*out, param + ".output")}});
        } else if (type.empty()) {
            bad(param + ".type", "each input item needs a 'type'");
        }
        // Other item types (reasoning, web_search_call, item_reference, ...) carry nothing this
        // model can use: ignored, as OpenAI documents for items a model does not take.
    }
    return messages;
}

json responses_tools_to_chat(const json& tools) {
    json out = json::array();
    if (tools.is_null()) return out;
    if (!tools.is_array()) bad("tools", "'tools' must be a list");
    for (const auto& t : tools) {
        if (!t.is_object()) bad("tools", "each tool must be an object");
        if (str_or(t, "type") != "function") continue;
        if (!t.contains("name") || !t["name"].is_string()) bad("tools", "a function tool needs a string 'name'");
        json f = {{"name", t["name"]}};
        if (t.contains("description")) f["description"] = t["description"];
        if (t.contains("parameters")) f["parameters"] = t["parameters"];
        out.push_back({{"type", "function"}, {"function", f}});
    }
    return out;
}

ResponsesRequest parse_responses(const json& body, const Limits& lim) {
    ResponsesRequest r;
    const json* input = member(body, "input");
    if (!input) bad("input", "'input' is required");
    r.input = input_items(*input);
    if (const json* ins = member(body, "instructions")) {
        if (!ins->is_string()) bad("instructions", "'instructions' must be a string");
        r.instructions = ins->get<std::string>();
    }
    if (const json* prev = member(body, "previous_response_id")) {
        if (!prev->is_string() || prev->get<std::string>().empty()) bad("previous_response_id", "'previous_response_id' must be a response id");
        r.previous_response_id = prev->get<std::string>();
    }
    r.tools = responses_tools_to_chat(body.contains("tools") ? body["tools"] : json(nullptr));
    if (const json* tc = member(body, "tool_choice")) {
        if (tc->is_string()) {
            const auto c = tc->get<std::string>();
            if (c == "none") r.tools = json::array();
            else if (c != "auto" && c != "required") bad("tool_choice", "'tool_choice' must be none, auto, required or a tool");
        } else if (!tc->is_object()) {
            bad("tool_choice", "'tool_choice' must be none, auto, required or a tool");
        }
    }
    r.store = boolean(body, "store", true);
    r.stream = boolean(body, "stream", false);
    r.generate = boolean(body, "generate", true);
    r.params = gen_params(body, lim, "max_output_tokens");
    // Checked now so that a malformed conversation is refused before anything runs.
    (void)items_to_messages(r.input, r.instructions);
    return r;
}

json parse_steer_input(const json& in) {
    const auto refuse = [](std::string why) { return ApiError(400, std::move(why), "input", "invalid_request_error", "invalid_input"); };
    if (in.is_string()) {
        if (in.get_ref<const std::string&>().empty()) throw refuse("'input' is empty");
        return json::array({{{"type", "message"}, {"role", "user"}, {"content", in}}});
    }
    if (!in.is_array() || in.empty()) throw refuse("'input' must be a string or a non-empty array of user messages");
    json items = json::array();
    for (const json& m : in) {
        if (!m.is_object()) throw refuse("each input item must be an object");
        for (const auto& [k, v] : m.items())
            if (k != "type" && k != "role" && k != "content") throw refuse(fmt::format("input items may hold only type, role and content, not '{}'", k));
        if (m.contains("type") && m["type"] != "message") throw refuse("only messages can steer a response");
        if (!m.contains("role") || m["role"] != "user") throw refuse("only user messages can steer a response");
        const json* c = m.contains("content") ? &m["content"] : nullptr;
        if (!c || !(c->is_string() || c->is_array())) throw refuse("a message's 'content' must be a string or an array of parts");
        if (c->is_array())
            for (const json& part : *c)
                if (!part.is_object() || !part.contains("type") || part["type"] != "input_text" || !part.contains("text") || !part["text"].is_string())
                    throw refuse("this server steers with text only (input_text parts)");
        items.push_back({{"type", "message"}, {"role", "user"}, {"content", *c}});
    }
    return items;
}

}  // namespace celer::server
