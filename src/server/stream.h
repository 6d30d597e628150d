// What the server sends back, apart from any socket: a generation's output turned into Chat
// Completions chunks, Completions chunks, or Responses events, streamed piece by piece or as one
// object at the end. The network code only moves these payloads; keeping them here keeps the
// coroutines free of JSON building and makes the formats testable without a socket.
#pragma once

#include <string>
#include <vector>

#include "server/api.h"
#include "server/scheduler.h"

namespace celer::server {

// Streams text as content until a tool call may begin; what follows is held for parsing.
class ToolTextSplitter {
public:
    explicit ToolTextSplitter(bool tools) : tools_(tools) {}
    // The text that may go out as content now.
    std::string push(const std::string& text);
    // At the end: the parsed output, and in `unsent` the content held back and not yet sent.
    ParsedOutput finish(std::string& unsent) const;

private:
    bool tools_;
    bool in_call_ = false;
    std::string all_, pending_;
};

json usage_chat(const Generation& g);
json usage_responses(const Generation& g);
// Where the time went (as llama-server reports it; an extension clients ignore): prompt tokens
// run and their ms, tokens generated and their ms.
json timings(const Generation& g);

// Chat Completions: chunk payloads ("data: " lines) when streaming, the object otherwise.
class ChatOutput {
public:
    ChatOutput(std::string model, bool tools, bool logprobs, bool include_usage);
    std::string first_chunk() const;  // the assistant role, empty content
    // Payloads for new output (none while a tool call is being held).
    std::vector<std::string> add(const Generation::Chunk& c);
    // The rest: held content, tool calls, the finish reason, usage if asked, and "[DONE]".
    std::vector<std::string> finish_stream(const Generation& g);
    json object(const Generation& g);

private:
    json chunk(json delta, json finish, json logprobs) const;
    std::string id_, model_;
    int64_t created_;
    bool logprobs_, include_usage_;
    ToolTextSplitter split_;
    std::vector<TokenLogprob> all_logprobs_;
};

// Completions (with `echo`): the same for text_completion objects.
class CompletionOutput {
public:
    CompletionOutput(std::string model, bool logprobs, bool include_usage, std::string echo);
    std::vector<std::string> start() const;  // the echoed prompt, if any
    std::vector<std::string> add(const Generation::Chunk& c);
    std::vector<std::string> finish_stream(const Generation& g) const;
    json object(const Generation& g) const;

private:
    json chunk(std::string text, json finish, json logprobs) const;
    std::string id_, model_;
    int64_t created_;
    bool logprobs_, include_usage_;
    std::string echo_, text_;
    size_t offset_;  // bytes of text streamed so far (logprobs' text_offset)
    std::vector<TokenLogprob> all_logprobs_;
};

// Responses: every event of one response in order, numbered; the response object as it ends.
class ResponseOutput {
public:
    // `response` is the in-progress object (id, model, tools, ...).
    ResponseOutput(json response, bool tools);
    std::vector<json> start();  // response.created, response.in_progress
    std::vector<json> add(const Generation::Chunk& c);
    // The closing events: text done, tool-call items, then response.completed (or .incomplete,
    // .failed). Fills response() and output().
    std::vector<json> finish(const Generation& g);
    const json& response() const { return r_; }
    const json& output() const { return output_; }
    const std::string& id() const;
    // A cancel that ends it was a steer: it ends incomplete, reason "steered", not cancelled.
    void set_steered() { steered_ = true; }

private:
    json event(const char* type, json fields);
    void delta(const std::string& d, std::vector<json>& out);
    json r_, output_ = json::array();
    ToolTextSplitter split_;
    std::string msg_id_, text_;
    bool msg_open_ = false;
    bool steered_ = false;
    int seq_ = 0;
};

}  // namespace celer::server
