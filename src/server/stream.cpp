#include "server/stream.h"

#include <ctime>

namespace celer::server {
namespace {

int64_t unix_now() { return int64_t(std::time(nullptr)); }

std::string finish_reason(Finish f) { return f == Finish::Length ? "length" : "stop"; }

json chat_logprobs(const std::vector<TokenLogprob>& lps) {
    json content = json::array();
    for (const auto& l : lps) {
        json top = json::array();
        for (const auto& [tok, lp] : l.top)
            top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", std::vector<uint8_t>(tok.begin(), tok.end())}});
        content.push_back({{"token", l.token},
                           {"logprob", l.logprob},
                           {"bytes", std::vector<uint8_t>(l.token.begin(), l.token.end())},
                           {"top_logprobs", top}});
    }
    return {{"content", content}};
}

json completion_logprobs(const std::vector<TokenLogprob>& lps, size_t offset) {
    json tokens = json::array(), lp = json::array(), top = json::array(), offsets = json::array();
    for (const auto& l : lps) {
        tokens.push_back(l.token);
        lp.push_back(l.logprob);
        json t = json::object();
        for (const auto& [tok, p] : l.top) t[tok] = p;
        top.push_back(t);
        offsets.push_back(offset);
        offset += l.token.size();
    }
    return {{"tokens", tokens}, {"token_logprobs", lp}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool stream) {
    json a = json::array();
    for (size_t i = 0; i < calls.size(); ++i) {
        json c = {{"id", random_id("call_")}, {"type", "function"}, {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
        if (stream) c["index"] = i;
        a.push_back(std::move(c));
    }
    return a;
}

}  // namespace

std::string ToolTextSplitter::push(const std::string& text) {
    all_ += text;
    if (!tools_) return text;
    if (in_call_) return {};
    pending_ += text;
    if (const size_t at = pending_.find(kToolCallOpen); at != std::string::npos) {
        in_call_ = true;
        std::string out = pending_.substr(0, at);
        pending_.clear();
        return out;
    }
    // Hold back a tail that could be the start of "<tool_call>".
    size_t keep = 0;
    for (size_t n = std::min(pending_.size(), kToolCallOpen.size() - 1); n > 0; --n)
        if (pending_.compare(pending_.size() - n, n, kToolCallOpen, 0, n) == 0) {
            keep = n;
            break;
        }
    std::string out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
}

ParsedOutput ToolTextSplitter::finish(std::string& unsent) const {
    unsent.clear();
    if (!tools_) return {all_, {}};
    ParsedOutput p = parse_tool_calls(all_);
    if (p.calls.empty()) {
        unsent = pending_;  // a held "<tool" that never became a call
        p.content = all_;
    }
    return p;
}

json usage_chat(const Generation& g) {
    return {{"prompt_tokens", g.prompt_tokens()},
            {"completion_tokens", g.completion_tokens()},
            {"total_tokens", g.prompt_tokens() + g.completion_tokens()},
            {"prompt_tokens_details", {{"cached_tokens", g.cached_tokens()}}},
            {"completion_tokens_details",
             {{"reasoning_tokens", 0},
              {"accepted_prediction_tokens", g.accepted_guesses()},
              {"rejected_prediction_tokens", g.rejected_guesses()}}}};
}

json timings(const Generation& g) {
    return {{"prompt_n", g.prompt_tokens() - g.cached_tokens()},
            {"prompt_ms", g.prompt_s() * 1e3},
            {"predicted_n", g.completion_tokens()},
            {"predicted_ms", g.decode_s() * 1e3}};
}

json usage_responses(const Generation& g) {
    return {{"input_tokens", g.prompt_tokens()},
            {"input_tokens_details", {{"cached_tokens", g.cached_tokens()}}},
            {"output_tokens", g.completion_tokens()},
            {"output_tokens_details", {{"reasoning_tokens", 0}}},
            {"total_tokens", g.prompt_tokens() + g.completion_tokens()}};
}

// ---- Chat Completions --------------------------------------------------------------------------

ChatOutput::ChatOutput(std::string model, bool tools, bool logprobs, bool include_usage)
    : id_(random_id("chatcmpl-")), model_(std::move(model)), created_(unix_now()), logprobs_(logprobs), include_usage_(include_usage),
      split_(tools) {}

json ChatOutput::chunk(json delta, json finish, json logprobs) const {
    json choice = {{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish)}};
    return {{"id", id_},
            {"object", "chat.completion.chunk"},
            {"created", created_},
            {"model", model_},
            {"system_fingerprint", "celer"},
            {"choices", json::array({std::move(choice)})}};
}

std::string ChatOutput::first_chunk() const { return dump(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr)); }

std::vector<std::string> ChatOutput::add(const Generation::Chunk& c) {
    for (const auto& l : c.logprobs) all_logprobs_.push_back(l);
    const std::string text = split_.push(c.text);
    if (text.empty() && c.logprobs.empty()) return {};
    return {dump(chunk({{"content", text}}, nullptr, c.logprobs.empty() ? json(nullptr) : chat_logprobs(c.logprobs)))};
}

std::vector<std::string> ChatOutput::finish_stream(const Generation& g) {
    std::vector<std::string> out;
    if (g.finish() == Finish::Error) {
        out.push_back(dump(error_body(g.error(), "server_error")));
    } else {
        std::string unsent;
        const ParsedOutput p = split_.finish(unsent);
        if (!unsent.empty()) out.push_back(dump(chunk({{"content", unsent}}, nullptr, nullptr)));
        std::string reason = finish_reason(g.finish());
        if (!p.calls.empty()) {
            out.push_back(dump(chunk({{"tool_calls", tool_calls_json(p.calls, true)}}, nullptr, nullptr)));
            reason = "tool_calls";
        }
        json last = chunk(json::object(), reason, nullptr);
        last["timings"] = timings(g);
        out.push_back(dump(last));
        if (include_usage_) {
            json u = chunk(json::object(), nullptr, nullptr);
            u["choices"] = json::array();
            u["usage"] = usage_chat(g);
            out.push_back(dump(u));
        }
    }
    out.emplace_back("[DONE]");
    return out;
}

json ChatOutput::object(const Generation& g) {
    std::string unsent;
    const ParsedOutput p = split_.finish(unsent);
    json msg = {{"role", "assistant"}, {"content", p.calls.empty() || !p.content.empty() ? json(p.content) : json(nullptr)}};
    if (!p.calls.empty()) msg["tool_calls"] = tool_calls_json(p.calls, false);
    json choice = {{"index", 0},
                   {"message", std::move(msg)},
                   {"logprobs", logprobs_ ? chat_logprobs(all_logprobs_) : json(nullptr)},
                   {"finish_reason", p.calls.empty() ? finish_reason(g.finish()) : "tool_calls"}};
    return {{"id", id_},
            {"object", "chat.completion"},
            {"created", created_},
            {"model", model_},
            {"system_fingerprint", "celer"},
            {"choices", json::array({std::move(choice)})},
            {"usage", usage_chat(g)},
            {"timings", timings(g)}};
}

// ---- Completions -------------------------------------------------------------------------------

CompletionOutput::CompletionOutput(std::string model, bool logprobs, bool include_usage, std::string echo)
    : id_(random_id("cmpl-")), model_(std::move(model)), created_(unix_now()), logprobs_(logprobs), include_usage_(include_usage),
      echo_(std::move(echo)), offset_(echo_.size()) {}

json CompletionOutput::chunk(std::string text, json finish, json logprobs) const {
    json choice = {{"text", std::move(text)}, {"index", 0}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish)}};
    return {{"id", id_}, {"object", "text_completion"}, {"created", created_}, {"model", model_}, {"choices", json::array({std::move(choice)})}};
}

std::vector<std::string> CompletionOutput::start() const {
    if (echo_.empty()) return {};
    return {dump(chunk(echo_, nullptr, nullptr))};
}

std::vector<std::string> CompletionOutput::add(const Generation::Chunk& c) {
    for (const auto& l : c.logprobs) all_logprobs_.push_back(l);
    text_ += c.text;
    if (c.text.empty() && c.logprobs.empty()) return {};
    std::string payload = dump(chunk(c.text, nullptr, logprobs_ ? completion_logprobs(c.logprobs, offset_) : json(nullptr)));
    offset_ += c.text.size();
    return {std::move(payload)};
}

std::vector<std::string> CompletionOutput::finish_stream(const Generation& g) const {
    std::vector<std::string> out;
    if (g.finish() == Finish::Error) {
        out.push_back(dump(error_body(g.error(), "server_error")));
    } else {
        out.push_back(dump(chunk("", finish_reason(g.finish()), nullptr)));
        if (include_usage_) {
            json u = chunk("", nullptr, nullptr);
            u["choices"] = json::array();
            u["usage"] = usage_chat(g);
            out.push_back(dump(u));
        }
    }
    out.emplace_back("[DONE]");
    return out;
}

json CompletionOutput::object(const Generation& g) const {
    json out = chunk(echo_ + text_, finish_reason(g.finish()), logprobs_ ? completion_logprobs(all_logprobs_, echo_.size()) : json(nullptr));
    out["usage"] = usage_chat(g);
    return out;
}

// ---- Responses ---------------------------------------------------------------------------------

ResponseOutput::ResponseOutput(json response, bool tools) : r_(std::move(response)), split_(tools), msg_id_(random_id("msg_")) {}

const std::string& ResponseOutput::id() const { return r_["id"].get_ref<const std::string&>(); }

json ResponseOutput::event(const char* type, json fields) {
    json e = {{"type", type}};
    for (auto& [k, v] : fields.items()) e[k] = std::move(v);
    e["sequence_number"] = seq_++;
    return e;
}

std::vector<json> ResponseOutput::start() {
    return {event("response.created", {{"response", r_}}), event("response.in_progress", {{"response", r_}})};
}

void ResponseOutput::delta(const std::string& d, std::vector<json>& out) {
    if (d.empty()) return;
    if (!msg_open_) {
        msg_open_ = true;
        out.push_back(event("response.output_item.added",
                            {{"output_index", 0},
                             {"item", {{"id", msg_id_}, {"type", "message"}, {"status", "in_progress"}, {"role", "assistant"}, {"content", json::array()}}}}));
        out.push_back(event("response.content_part.added", {{"item_id", msg_id_},
                                                             {"output_index", 0},
                                                             {"content_index", 0},
                                                             {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}}));
    }
    text_ += d;
    out.push_back(event("response.output_text.delta",
                        {{"item_id", msg_id_}, {"output_index", 0}, {"content_index", 0}, {"delta", d}, {"logprobs", json::array()}}));
}

std::vector<json> ResponseOutput::add(const Generation::Chunk& c) {
    std::vector<json> out;
    delta(split_.push(c.text), out);
    return out;
}

std::vector<json> ResponseOutput::finish(const Generation& g) {
    std::vector<json> out;
    const Finish fin = g.finish();
    if (fin == Finish::Error) {
        r_["status"] = "failed";
        r_["error"] = {{"code", "server_error"}, {"message", g.error()}};
    } else {
        std::string unsent;
        const ParsedOutput p = split_.finish(unsent);
        delta(unsent, out);
        if (msg_open_) {
            const json part = {{"type", "output_text"}, {"text", text_}, {"annotations", json::array()}};
            const json item = {{"id", msg_id_},
                               {"type", "message"},
                               {"status", fin == Finish::Stop ? "completed" : "incomplete"},
                               {"role", "assistant"},
                               {"content", json::array({part})}};
            out.push_back(event("response.output_text.done",
                                {{"item_id", msg_id_}, {"output_index", 0}, {"content_index", 0}, {"text", text_}, {"logprobs", json::array()}}));
            out.push_back(event("response.content_part.done", {{"item_id", msg_id_}, {"output_index", 0}, {"content_index", 0}, {"part", part}}));
            out.push_back(event("response.output_item.done", {{"output_index", 0}, {"item", item}}));
            output_.push_back(item);
        }
        for (const ToolCall& tc : p.calls) {
            const int index = int(output_.size());
            json item = {{"id", random_id("fc_")}, {"type", "function_call"}, {"status", "in_progress"},
                         {"arguments", ""},        {"call_id", random_id("call_")}, {"name", tc.name}};
            out.push_back(event("response.output_item.added", {{"output_index", index}, {"item", item}}));
            out.push_back(event("response.function_call_arguments.delta", {{"item_id", item["id"]}, {"output_index", index}, {"delta", tc.arguments}}));
            out.push_back(event("response.function_call_arguments.done",
                                {{"item_id", item["id"]}, {"output_index", index}, {"name", tc.name}, {"arguments", tc.arguments}}));
            item["status"] = "completed";
            item["arguments"] = tc.arguments;
            out.push_back(event("response.output_item.done", {{"output_index", index}, {"item", item}}));
            output_.push_back(std::move(item));
        }
        if (fin == Finish::Length) {
            r_["status"] = "incomplete";
            r_["incomplete_details"] = {{"reason", "max_output_tokens"}};
        } else if (fin == Finish::Cancelled && steered_) {
            r_["status"] = "incomplete";
            r_["incomplete_details"] = {{"reason", "steered"}};
        } else if (fin == Finish::Cancelled) {
            r_["status"] = "cancelled";
        } else {
            r_["status"] = "completed";
        }
    }
    r_["output"] = output_;
    r_["usage"] = usage_responses(g);
    r_["timings"] = timings(g);
    const std::string status = r_["status"];
    const char* type = status == "failed" ? "response.failed" : status == "completed" ? "response.completed" : "response.incomplete";
    out.push_back(event(type, {{"response", r_}}));
    return out;
}

}  // namespace celer::server
