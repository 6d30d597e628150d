#include "agent/transport.h"

#include <optional>
#include <random>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::agent {

namespace {

constexpr int kConnectMs = 5000;

json error_event(std::string message) {
    return {{"type", "error"}, {"error", {{"message", std::move(message)}}}};
}

// The message of an error response body ({"error": {"message": ...}}), else the body itself.
std::string error_message(int status, const std::string& body) {
    const json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string())
        return fmt::format("HTTP {}: {}", status, j["error"]["message"].get<std::string>());
    return fmt::format("HTTP {}: {}", status, body.substr(0, 300));
}

std::string random_bytes(size_t n) {
    static thread_local std::mt19937 rng{std::random_device{}()};
    std::string s(n, '\0');
    for (char& c : s) c = char(rng() & 0xff);
    return s;
}

uint32_t random_mask() {
    static thread_local std::mt19937 rng{std::random_device{}()};
    return uint32_t(rng());
}

std::string auth_header(const std::string& key) { return key.empty() ? std::string() : fmt::format("Authorization: Bearer {}\r\n", key); }

// Reads a response head within the connect timeout (the handshake is the only blocking read).
HttpResponseParser read_head(Socket& s, std::string& body) {
    HttpResponseParser p;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kConnectMs);
    while (!p.headers_done()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0 || !s.wait_readable(int(left))) throw Error("the server did not answer the WebSocket handshake");
        std::string bytes;
        const bool open = s.read_available(bytes);
        body += p.feed(bytes);
        if (!open && !p.headers_done()) throw Error("the server closed the connection during the WebSocket handshake");
        if (!open) break;
    }
    return p;
}

class WsTransport final : public Transport {
public:
    WsTransport(Url url, std::string key) : url_(std::move(url)), key_(std::move(key)) { connect(); }

    // The socket sat idle since the last response (at the prompt, during a command): the
    // server may have pinged it or closed it meanwhile, so that is read first, and a socket
    // that is gone or fails to take the message is replaced once.
    void start(json request) override {
        request["type"] = "response.create";
        request["stream"] = true;
        const std::string text = request.dump(-1, ' ', false, json::error_handler_t::replace);
        running_ = false;
        drain_idle();
        for (int attempt = 0;; ++attempt) {
            try {
                if (!sock_) connect();
                send(WsMessage::Text, text);
                break;
            } catch (const Error&) {
                sock_.reset();
                if (attempt == 1) throw;
            }
        }
        running_ = true;
        cancel_sent_ = false;
    }
    int fd() const override { return sock_ ? sock_->fd() : -1; }

    std::vector<json> read_events() override {
        std::vector<json> out;
        if (!sock_) return out;
        std::string bytes;
        const bool open = sock_->read_available(bytes);
        try {
            for (WsMessage& m : parser_.feed(bytes)) {
                if (m.kind == WsMessage::Ping) {
                    send(WsMessage::Pong, m.payload);
                } else if (m.kind == WsMessage::Close) {
                    drop(out, "the server closed the WebSocket");
                    return out;
                } else if (m.kind == WsMessage::Text) {
                    json e = json::parse(m.payload, nullptr, false);
                    if (!e.is_object()) {
                        drop(out, "the server sent a message that is not a JSON object");
                        return out;
                    }
                    // The answer to a cancel that crossed the response's own end: not this
                    // response's final event, nor the next one's.
                    if (not_running_reply(e)) continue;
                    if (!running_) continue;  // an abandoned response's tail
                    if (is_final_event(e)) running_ = false;
                    out.push_back(std::move(e));
                }
            }
        } catch (const Error& e) {
            drop(out, e.what());
            return out;
        }
        if (!open) drop(out, "the server closed the connection");
        return out;
    }

    void cancel() override {
        if (!sock_ || !running_ || cancel_sent_) return;
        cancel_sent_ = true;
        try {
            send(WsMessage::Text, R"({"type":"response.cancel"})");
        } catch (const Error&) {
            sock_.reset();  // the next read reports the response as ended
        }
    }
    void abandon() override {
        sock_.reset();
        running_ = false;
    }
    bool persistent() const override { return true; }
    std::string name() const override { return "websocket"; }
    void service_idle() override {
        if (running_)
            abandon();  // no response should run now; whatever it sends must not spin the poll
        else
            drain_idle();
    }

private:
    void connect() {
        auto s = std::make_unique<Socket>(url_.host, url_.port, kConnectMs);
        const std::string nonce = base64(random_bytes(16));
        s->write_all(fmt::format("GET {}/responses HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
                                 url_.base_path, url_.host_header(), nonce, auth_header(key_)));
        std::string body;
        HttpResponseParser head = read_head(*s, body);
        if (head.status() != 101) throw Error(fmt::format("WebSocket refused ({})", error_message(head.status(), body)));
        if (head.header("Sec-WebSocket-Accept").value_or("") != ws_accept_for(nonce))
            throw Error("WebSocket handshake: wrong Sec-WebSocket-Accept");
        parser_ = WsParser();
        sock_ = std::move(s);
        pending_ = head.take_leftover();
        if (!pending_.empty()) {
            // Bytes that came with the handshake are replayed through the parser on first read.
            std::vector<WsMessage> early = parser_.feed(pending_);
            pending_.clear();
            for (auto& m : early) {
                if (m.kind == WsMessage::Ping) send(WsMessage::Pong, m.payload);
                if (m.kind == WsMessage::Close) throw Error("the server closed the WebSocket right after accepting it");
            }
        }
    }
    void send(WsMessage::Kind kind, std::string_view payload) { sock_->write_all(ws_frame(kind, payload, random_mask())); }
    void drop(std::vector<json>& out, const std::string& why) {
        sock_.reset();
        if (running_) out.push_back(error_event(why));
        running_ = false;
    }
    // Answers pings and notices a close or a dead connection while no response runs.
    void drain_idle() {
        if (sock_ && sock_->wait_readable(0)) (void)read_events();
    }
    static bool not_running_reply(const json& e) {
        if (!e.contains("type") || e["type"] != "error") return false;
        const auto code_is = [](const json& j) { return j.is_object() && j.contains("code") && j["code"] == "response_not_running"; };
        return code_is(e) || (e.contains("error") && code_is(e["error"]));
    }

    Url url_;
    std::string key_;
    std::unique_ptr<Socket> sock_;
    WsParser parser_;
    std::string pending_;
    bool running_ = false;
    bool cancel_sent_ = false;
};

class SseTransport final : public Transport {
public:
    SseTransport(Url url, std::string key) : url_(std::move(url)), key_(std::move(key)) {}

    void start(json request) override {
        request["stream"] = true;
        const std::string body = request.dump(-1, ' ', false, json::error_handler_t::replace);
        sock_ = std::make_unique<Socket>(url_.host, url_.port, kConnectMs);
        sock_->write_all(fmt::format("POST {}/responses HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nConnection: close\r\n"
                                     "Content-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
                                     url_.base_path, url_.host_header(), body.size(), auth_header(key_)));
        sock_->write_all(body);
        http_ = HttpResponseParser();
        sse_ = SseParser();
        error_body_.clear();
        final_seen_ = false;
    }
    int fd() const override { return sock_ ? sock_->fd() : -1; }

    std::vector<json> read_events() override {
        std::vector<json> out;
        if (cancelled_) {
            cancelled_ = false;
            out.push_back({{"type", "response.incomplete"}, {"response", {{"status", "cancelled"}, {"output", json::array()}}}});
            return out;
        }
        if (!sock_) return out;
        std::string bytes;
        const bool open = sock_->read_available(bytes);
        try {
            const std::string body = http_.feed(bytes);
            if (http_.headers_done() && http_.status() != 200) {
                error_body_ += body;
                if (!open || http_.done()) return finish(out, error_message(http_.status(), error_body_));
                return out;
            }
            for (const std::string& data : sse_.feed(body)) {
                if (data == "[DONE]") continue;
                json e = json::parse(data, nullptr, false);
                if (!e.is_object()) e = error_event("the server sent an event that is not a JSON object");
                if (is_final_event(e)) final_seen_ = true;
                out.push_back(std::move(e));
            }
        } catch (const Error& e) {
            return finish(out, e.what());
        }
        if (!open || http_.done() || final_seen_) return finish(out, "the server ended the stream without a final event");
        return out;
    }

    // Closing the connection is how an HTTP server learns of a cancel; no event of its own
    // follows, so the next read gives the final event in its place.
    void cancel() override {
        if (!sock_ || final_seen_) return;
        sock_.reset();
        cancelled_ = true;
    }
    void abandon() override {
        sock_.reset();
        cancelled_ = false;
        final_seen_ = true;
    }
    bool persistent() const override { return false; }
    std::string name() const override { return "sse"; }

private:
    std::vector<json>& finish(std::vector<json>& out, const std::string& why) {
        sock_.reset();
        if (!final_seen_) out.push_back(error_event(why));
        final_seen_ = true;
        return out;
    }

    Url url_;
    std::string key_;
    std::unique_ptr<Socket> sock_;
    HttpResponseParser http_;
    SseParser sse_;
    std::string error_body_;
    bool final_seen_ = false;
    bool cancelled_ = false;
};

}  // namespace

bool is_final_event(const json& e) {
    const std::string t = e.is_object() && e.contains("type") && e["type"].is_string() ? e["type"].get<std::string>() : "";
    return t == "response.completed" || t == "response.incomplete" || t == "response.failed" || t == "error";
}

std::unique_ptr<Transport> connect_transport(const Url& url, const std::string& api_key, const std::string& kind) {
    if (kind == "sse") return std::make_unique<SseTransport>(url, api_key);
    if (kind == "ws") return std::make_unique<WsTransport>(url, api_key);
    if (kind != "auto") throw Error(fmt::format("--transport {}: expected ws, sse or auto", kind));
    try {
        return std::make_unique<WsTransport>(url, api_key);
    } catch (const Error& e) {
        const std::string why = e.what();
        if (why.starts_with("cannot connect")) throw;
        return std::make_unique<SseTransport>(url, api_key);
    }
}

}  // namespace celer::agent
