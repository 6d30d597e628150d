// How the agent reaches a model: a Responses endpoint over a persistent WebSocket (one
// connection for the whole session; each turn a `response.create` message), or, where the
// server has no WebSocket, one streaming HTTP POST (SSE) per turn. Both give the same event
// objects, read without blocking so the agent can poll the terminal beside them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/net.h"

namespace celer::agent {

using nlohmann::json;

class Transport {
public:
    virtual ~Transport() = default;
    // Starts a response for `request` (a Responses create body; `stream` is set here).
    virtual void start(json request) = 0;
    // The descriptor to poll for POLLIN while a response runs (-1: none; read_events may still
    // have an event, so callers poll with a timeout).
    virtual int fd() const = 0;
    // The events that arrived (non-blocking). After the connection broke, or it ended without a
    // final event, the last event is a synthesised {"type": "error", ...}.
    virtual std::vector<json> read_events() = 0;
    // Asks the server to stop the running response; its final event still follows (WebSocket),
    // or a synthesised "response.incomplete" with status "cancelled" (SSE: the connection is
    // closed, which is how an HTTP server learns of it).
    virtual void cancel() = 0;
    // Gives up on the running response without waiting for its end (a cancelled response that
    // did not finish in time): whatever it still sends is never reported.
    virtual void abandon() = 0;
    // True when the server keeps the conversation between turns (previous_response_id works
    // without the server storing responses to disk).
    virtual bool persistent() const = 0;
    // Between responses: answers the server's pings and notices a closed connection, so a
    // session idle at the prompt (or in a long command) keeps its connection and the state the
    // server holds for it. Call when fd() is readable.
    virtual void service_idle() {}
    virtual std::string name() const = 0;
};

// "ws", "sse" or "auto" (a WebSocket when the server accepts one, else SSE).
std::unique_ptr<Transport> connect_transport(const Url& url, const std::string& api_key, const std::string& kind);

// A final event: response.completed, response.incomplete, response.failed, error.
bool is_final_event(const json& e);

}  // namespace celer::agent
