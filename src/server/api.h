// The OpenAI wire formats, apart from any socket: request bodies of Chat Completions,
// Completions (with fill-in-the-middle) and Responses checked and turned into a prompt and
// generation parameters, the model's tool-call text parsed back into calls, and the error
// object. Everything here is pure, so that it can be unit-tested and fuzzed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "server/scheduler.h"
#include "util/error.h"

namespace celer::server {

using json = nlohmann::ordered_json;

// A request the client got wrong: HTTP status plus OpenAI's error fields.
class ApiError : public Error {
public:
    ApiError(int status, const std::string& message, std::string param = {}, std::string type = "invalid_request_error",
             std::string code = {})
        : Error(message), status(status), param(std::move(param)), type(std::move(type)), code(std::move(code)) {}
    int status;
    std::string param, type, code;
};

// {"error": {"message", "type", "param", "code"}}
json error_body(const std::string& message, const std::string& type, const std::string& param = {}, const std::string& code = {});

// JSON text that never throws on invalid UTF-8 in model output (replaced by U+FFFD).
std::string dump(const json& j);
// Parses a request body; malformed JSON or a non-object is a 400.
json parse_body(std::string_view body);

struct Limits {
    // Tokens one request may generate: asks beyond it are clamped, and a request that does not
    // say generates until its end, this limit, or a full context (OpenAI's behaviour).
    int max_tokens = 1 << 30;
    size_t max_messages = 4096;
    size_t max_stop = 16;
    // Positions one sequence holds (0: unknown). A chat prompt that leaves no room in them is
    // refused (context_length_exceeded), or with drop_turns (`--ctx-overflow drop-turns`) loses
    // its oldest turns until it leaves room to generate (fit_chat_prompt).
    size_t ctx = 0;
    bool drop_turns = false;
};

// The prompt a session rendered last and its tokens, so that its next turn tokenizes only the
// text after the last control token the two prompts share (a 40 KB agent prompt then costs the
// tokenizer just the new messages). Control tokens split the text before the tokenizer runs, so
// what follows one is tokenized the same whatever precedes it: the result is exact. The cache
// may also end with a response's generated tokens (splice_output); those are kept up to where
// the new text starts a control token, so a continuation sees the tokens the model produced.
struct PromptCache {
    std::string text;
    std::vector<TokenId> tokens;
    std::vector<size_t> ends;  // where each token ends in `text`; empty when unknown
    size_t n_prompt = 0;       // tokens from the template's text; those after it are spliced output
    size_t reused = 0;         // tokens taken from the cache by the last call (a statistic)
    // Whether the last call's text began with the text before it: false when a chat template
    // rewrote earlier turns (dropping reasoning, moving a system prompt), which costs the prefix
    // cache everything after the first change.
    bool extended = true;
};

// What the API needs to know about the model being served.
class ModelContext {
public:
    // `chat_template` empty: ChatML, which Qwen and most code models use.
    ModelContext(const Engine& engine, std::string model_id, std::string chat_template);

    const std::string& id() const { return id_; }
    const Vocab& vocab() const { return vocab_; }
    // Renders messages (and tools) through the chat template and tokenizes the result, control
    // tokens included; BOS in front when the vocabulary wants one and the template gave none.
    std::vector<TokenId> chat_prompt(const json& messages, const json& tools, PromptCache* cache = nullptr) const;
    // chat_prompt, and when lim.drop_turns is set and the prompt leaves fewer than `reserve`
    // of lim.ctx positions to generate: the leading system messages and the newest turns that
    // fit (a turn is a user message and everything after it up to the next one; the last turn
    // is always kept). *dropped says how many turns went. Without room for even one token the
    // caller refuses the request, as without dropping.
    std::vector<TokenId> fit_chat_prompt(const json& messages, const json& tools, const Limits& lim, size_t reserve,
                                         PromptCache* cache, size_t* dropped) const;
    // Appends what a response generated to the prompt it was generated from, so that the next
    // turn, whose rendered text continues with that output, keeps the model's own tokens (whose
    // KV is cached) instead of tokenizing the text again, which can split it differently.
    void splice_output(PromptCache& cache, const std::vector<TokenId>& output) const;
    std::vector<TokenId> text_prompt(std::string_view text) const;
    std::vector<TokenId> fim_prompt(std::string_view prefix, std::string_view suffix) const;

private:
    const Vocab& vocab_;
    std::string id_;
    std::string bos_text_, eos_text_;
    std::unique_ptr<chat::Template> tmpl_;
};

// Sampling and stopping fields shared by every endpoint (temperature, top_p, seed, stop,
// max_tokens / max_completion_tokens / max_output_tokens, penalties). OpenAI's defaults:
// temperature 1, top_p 1, no top-k, no min-p.
GenParams gen_params(const json& body, const Limits& lim, const char* max_tokens_field);
// Positions a chat prompt leaves free when turns are dropped to fit: the max_tokens asked
// for, or a quarter of the context when the request names none.
size_t overflow_reserve(const GenParams& p, const Limits& lim);

struct ChatRequest {
    std::vector<TokenId> prompt;
    GenParams params;
    bool stream = false;
    bool include_usage = false;
    bool tools = false;  // tool-call text is parsed into tool_calls
    size_t dropped_turns = 0;  // by --ctx-overflow drop-turns
};
ChatRequest parse_chat(const json& body, const ModelContext& m, const Limits& lim);

struct CompletionRequest {
    std::vector<TokenId> prompt;
    GenParams params;
    bool stream = false;
    bool include_usage = false;
    bool echo = false;
    std::string prompt_text;
};
CompletionRequest parse_completion(const json& body, const ModelContext& m, const Limits& lim);

// A tool call as the model wrote it.
struct ToolCall {
    std::string name;
    std::string arguments;  // JSON text
};
struct ParsedOutput {
    std::string content;  // text outside the calls, trimmed
    std::vector<ToolCall> calls;
};
// Hermes/Qwen style: <tool_call>{"name": ..., "arguments": {...}}</tool_call>, any number; a
// last block cut off by the end of generation counts if its JSON is whole. Blocks that do not
// parse stay in the content.
ParsedOutput parse_tool_calls(std::string_view text);
// Where streamed text must stop being forwarded as content because a tool call may start.
constexpr std::string_view kToolCallOpen = "<tool_call>";

// Responses API: the conversation so far as items (input and output items of earlier turns,
// then this turn's input), turned into chat messages for the template.
json items_to_messages(const json& items, const std::string& instructions);
// The input of a WebSocket response.steer: a non-empty string, or a non-empty array of user
// messages whose content is a string or input_text parts (this server steers with text). Gives
// the message items; throws ApiError (code invalid_input) saying what is wrong.
json parse_steer_input(const json& input);
// Responses' function tools ({type, name, description, parameters}) in Chat Completions' shape;
// other tool types (web_search, namespace, ...) are not offered to the model.
json responses_tools_to_chat(const json& tools);
// This turn's `input` (a string or a list of items) as a list of items; 400 if malformed.
json input_items(const json& input);

// prefix + 24 random letters and digits ("resp_", "chatcmpl-", ...).
std::string random_id(std::string_view prefix);

// POST /v1/responses (and a WebSocket response.create) checked: everything but the lookup of
// previous_response_id, which needs the store.
struct ResponsesRequest {
    json input;                        // this turn's items
    std::string instructions;
    std::string previous_response_id;  // "" when none
    json tools = json::array();        // function tools, Chat Completions' shape
    bool store = true;
    bool stream = false;
    bool generate = true;  // false: warm-up only (prefill, no output), as Codex sends first
    GenParams params;
};
ResponsesRequest parse_responses(const json& body, const Limits& lim);

}  // namespace celer::server
