// celer serve: OpenAI-compatible HTTP/1.1 and WebSocket on one Boost.Beast/Asio stack. One
// network thread runs every connection as a coroutine; the Scheduler's thread runs the model.
// Routes: /health, /metrics, /v1/models, /v1/chat/completions, /v1/completions (with `suffix`:
// fill-in-the-middle), /v1/responses (SSE, WebSocket on GET with Upgrade), /v1/responses/{id}
// (GET, DELETE) and /v1/responses/{id}/cancel.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "server/api.h"
#include "server/scheduler.h"
#include "server/store.h"

namespace celer::server {

struct ServerOptions {
    std::string host = "127.0.0.1";  // loopback unless told otherwise
    uint16_t port = 8080;            // 0: any free port (printed on stderr)
    std::string api_key;             // non-empty: every route but /health needs "Bearer KEY"
    size_t max_body = 32u << 20;     // bytes of a request body or WebSocket message
    size_t max_header = 64u << 10;   // bytes of a request's header block
    int max_connections = 512;
    int idle_timeout_s = 300;        // a connection that sends nothing for this long is closed
    Limits limits;
};

class Server {
public:
    Server(Scheduler& scheduler, const ModelContext& model, ResponseStore& store, const ServerOptions& opt);
    ~Server();

    // Binds and listens (throws celer::Error if it cannot); returns the port.
    uint16_t listen();
    // Serves until SIGINT/SIGTERM or stop(): then stops accepting, cancels what is running and
    // returns once every stream has ended (at most a few seconds).
    void run();
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace celer::server
