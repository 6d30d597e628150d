// celer serve's network layer: connections, request dispatch, the accept loop and stopping.
// The server's state and HTTP routes are in server_impl.h, the WebSocket mode in websocket.cpp.
#include "server/server_impl.h"

namespace celer::server {

awaitable<void> Server::Impl::dispatch(beast::tcp_stream& s, const Request& req, std::string& route) {
    std::string_view target = req.target();
    if (const size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    std::string path(target);
    if (path.starts_with("/v1/")) path.erase(0, 3);  // "/v1/chat/completions" and "/chat/completions" alike
    const auto method = req.method();
    route = path;
    if (path == "/health" && method == http::verb::get) co_return co_await health(s, req);
    if (!authorized(req)) throw ApiError(401, "Incorrect API key provided.", {}, "invalid_request_error", "invalid_api_key");
    if (path == "/models" && method == http::verb::get) co_return co_await models(s, req);
    if (path == "/metrics" && method == http::verb::get) co_return co_await metrics(s, req);
    if (path == "/chat/completions" && method == http::verb::post) co_return co_await chat(s, req);
    if (path == "/completions" && method == http::verb::post) co_return co_await completions(s, req);
    if (path == "/responses" && method == http::verb::post) co_return co_await responses(s, req);
    if (path.starts_with("/responses/")) {
        std::string id = path.substr(11);
        bool cancel = false;
        if (id.ends_with("/cancel")) {
            id.resize(id.size() - 7);
            cancel = true;
        }
        route = cancel ? "/responses/{id}/cancel" : "/responses/{id}";
        if (!id.empty() && id.find('/') == std::string::npos &&
            ((cancel && method == http::verb::post) || (!cancel && (method == http::verb::get || method == http::verb::delete_))))
            co_return co_await response_by_id(s, req, id, cancel);
    }
    route = "other";
    throw ApiError(404, fmt::format("Unknown request URL: {} {}", std::string(req.method_string()), std::string(req.target())), {},
                   "invalid_request_error", "unknown_url");
}

awaitable<void> Server::Impl::connection(tcp::socket sock) {
    ++connections;
    struct Count {
        int& n;
        ~Count() { --n; }
    } count_guard{connections};
    beast::tcp_stream s(std::move(sock));
    std::optional<Registered> reg(std::in_place, sockets, s.socket());
    beast::flat_buffer buf;
    try {
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(uint32_t(opt.max_header));
            parser.body_limit(opt.max_body);
            s.expires_after(std::chrono::seconds(opt.idle_timeout_s));
            boost::system::error_code ec;
            co_await http::async_read(s, buf, parser, net::redirect_error(use_awaitable, ec));
            if (ec == http::error::end_of_stream || ec == net::error::eof || ec == beast::error::timeout || ec == net::error::connection_reset) co_return;
            if (ec) {
                const bool body = ec == http::error::body_limit, header = ec == http::error::header_limit;
                const int st = body ? 413 : header ? 431 : 400;
                const std::string msg = body     ? fmt::format("the request body exceeds {} bytes", opt.max_body)
                                        : header ? fmt::format("the request header exceeds {} bytes", opt.max_header)
                                                 : fmt::format("malformed HTTP request: {}", ec.message());
                http::response<http::string_body> res{http::status(st), 11};
                res.set(http::field::content_type, "application/json");
                res.keep_alive(false);
                res.body() = dump(error_body(msg, "invalid_request_error"));
                res.prepare_payload();
                count("bad request", st);
                co_await http::async_write(s, res, net::redirect_error(use_awaitable, ec));
                s.socket().shutdown(tcp::socket::shutdown_both, ec);
                co_return;
            }
            Request req = parser.release();
            s.expires_never();
            if (ws::is_upgrade(req)) {
                std::string_view t = req.target();
                t = t.substr(0, t.find('?'));
                if ((t == "/v1/responses" || t == "/responses") && authorized(req)) {
                    count("ws upgrade", 101);
                    reg.reset();
                    co_await websocket(std::move(s), std::move(req));
                    co_return;
                }
                const int st = authorized(req) ? 404 : 401;
                const json body = error_body(st == 401 ? "Incorrect API key provided." : "WebSocket is served on /v1/responses only",
                                             "invalid_request_error");
                co_await send_json(s, req, st, body);
                co_return;
            }
            const auto t0 = clock_type::now();
            std::string route;
            int status = 200;
            const std::optional<ApiError> err = co_await refusal_of([&]() -> awaitable<void> { co_await dispatch(s, req, route); });
            if (err) {
                status = err->status;
                co_await send_error(s, req, *err);
            }
            count(route, status);
            request_seconds.observe(std::chrono::duration<double>(clock_type::now() - t0).count());
            if (!req.keep_alive() || stopping) break;
        }
        boost::system::error_code ec;
        s.socket().shutdown(tcp::socket::shutdown_send, ec);
    } catch (const std::exception&) {
        // The peer went away or the socket broke mid-write: the generation was cancelled in
        // drive(); nothing else to do.
    }
}

awaitable<void> Server::Impl::accept_loop() {
    for (;;) {
        boost::system::error_code ec;
        tcp::socket sock = co_await acceptor.async_accept(net::redirect_error(use_awaitable, ec));
        if (ec) {
            if (stopping || ec == net::error::operation_aborted) co_return;
            continue;  // EMFILE and friends: keep serving the connections we have
        }
        if (connections >= opt.max_connections) {
            // Refuse with a proper response rather than silence.
            const std::string body = dump(error_body(fmt::format("too many connections (limit {})", opt.max_connections), "server_error"));
            const std::string res = fmt::format("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                              "Content-Length: {}\r\n\r\n{}",
                              body.size(), body);
            net::write(sock, net::buffer(res), ec);
            sock.close(ec);
            continue;
        }
        // Every event is one small write that must leave at once: no Nagle delay.
        sock.set_option(tcp::no_delay(true), ec);
        net::co_spawn(io, connection(std::move(sock)), net::detached);
    }
}

void Server::Impl::begin_stop() {
    if (stopping) return;
    stopping = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    signals.cancel(ec);
    sched.cancel_all();
    for (auto& [id, g] : running) g->cancel();
    for (tcp::socket* sock : sockets) sock->shutdown(tcp::socket::shutdown_receive, ec);
    // Streams send their final events and close; the loop ends when no connection is left,
    // or after 3 s whatever is still open.
    drain(clock_type::now() + std::chrono::seconds(3));
}

void Server::Impl::drain(clock_type::time_point deadline) {
    if (connections == 0 || clock_type::now() >= deadline) {
        io.stop();
        return;
    }
    auto t = std::make_shared<net::steady_timer>(io, std::chrono::milliseconds(10));
    t->async_wait([this, t, deadline](const boost::system::error_code&) { drain(deadline); });
}

Server::Server(Scheduler& scheduler, const ModelContext& model, ResponseStore& store, const ServerOptions& opt)
    : impl_(std::make_unique<Impl>(scheduler, model, store, opt)) {}

Server::~Server() = default;

uint16_t Server::listen() {
    Impl& m = *impl_;
    boost::system::error_code ec;
    const auto addr = net::ip::make_address(m.opt.host, ec);
    if (ec) throw Error(fmt::format("--host {}: not an IP address", m.opt.host));
    const tcp::endpoint ep(addr, m.opt.port);
    m.acceptor.open(ep.protocol(), ec);
    if (!ec) m.acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) m.acceptor.bind(ep, ec);
    if (!ec) m.acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw Error(fmt::format("cannot listen on {}:{}: {}", m.opt.host, m.opt.port, ec.message()));
    return m.acceptor.local_endpoint().port();
}

void Server::run() {
    Impl& m = *impl_;
    m.signals.async_wait([&m](const boost::system::error_code& ec, int) {
        if (!ec) m.begin_stop();
    });
    net::co_spawn(m.io, m.accept_loop(), net::detached);
    m.io.run();
}

void Server::stop() {
    net::post(impl_->io, [m = impl_.get()] { m->begin_stop(); });
}

}  // namespace celer::server
