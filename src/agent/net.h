// The agent's side of HTTP/1.1, Server-Sent Events and WebSocket (RFC 6455), on plain POSIX
// sockets. The agent waits on the terminal, a running command and the model's stream at once
// with poll(2), so each parser here is incremental: it takes whatever bytes arrived and hands
// back what is complete, never blocking and never reading past what it was given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace celer::agent {

// An http:// base URL as OpenAI clients take it: "http://127.0.0.1:8080/v1". A URL without a
// path gets "/v1". https is refused with a clear error (put a local TLS proxy in front).
struct Url {
    std::string host;
    std::string port;
    std::string base_path;  // without a trailing '/', e.g. "/v1"
    static Url parse(std::string_view text);
    std::string host_header() const { return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port; }
};

// An HTTP/1.1 response read incrementally: status line, headers, then a body framed by
// Content-Length, chunked transfer coding, or the connection's end. Throws celer::Error on
// malformed input or a header block over 64 KiB.
class HttpResponseParser {
public:
    // Consumes `bytes`; returns the body bytes they completed (decoded from chunks).
    std::string feed(std::string_view bytes);
    // The connection ended: the body is complete when it was framed by the connection's end.
    void eof();
    bool headers_done() const { return headers_done_; }
    bool done() const { return done_; }
    int status() const { return status_; }
    // A header's value (name case-insensitive), or nullopt.
    std::optional<std::string> header(std::string_view name) const;
    // After a 101 (Switching Protocols): the bytes that followed the head, for the next protocol.
    std::string take_leftover() { return std::move(buf_); }

private:
    std::string body_from(std::string_view bytes);
    void parse_head(std::string_view head);

    std::string buf_;
    bool headers_done_ = false;
    bool done_ = false;
    int status_ = 0;
    std::vector<std::pair<std::string, std::string>> headers_;
    enum class Framing { Length, Chunked, Close } framing_ = Framing::Close;
    unsigned long long remaining_ = 0;  // Length: body bytes left; Chunked: bytes left in chunk
    enum class ChunkState { Size, Data, DataEnd, Trailer } chunk_ = ChunkState::Size;
};

// Server-Sent Events: returns the `data` of each complete event (several data lines joined by
// '\n'); comments and other fields are skipped. Lines end in \n, \r\n or \r.
class SseParser {
public:
    std::vector<std::string> feed(std::string_view bytes);

private:
    std::string line_;
    std::string data_;
    bool has_data_ = false;
    bool after_cr_ = false;
};

// A message or control frame the server sent.
struct WsMessage {
    enum Kind : uint8_t { Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 } kind = Text;
    std::string payload;
};

// Frames from a server (unmasked, RFC 6455 section 5): data frames are joined across
// continuation frames into whole messages; control frames come out as they arrive. Throws
// celer::Error on a protocol violation or a message over `max_message` bytes.
class WsParser {
public:
    explicit WsParser(size_t max_message = 64u << 20) : max_(max_message) {}
    std::vector<WsMessage> feed(std::string_view bytes);

private:
    std::string buf_;
    std::string message_;
    uint8_t message_kind_ = 0;  // 0: no fragmented message open
    size_t max_;
};

// A client frame (always masked, FIN set).
std::string ws_frame(WsMessage::Kind kind, std::string_view payload, uint32_t mask);
// SHA-1 of `msg` (20 bytes).
std::string sha1(std::string_view msg);
// The Sec-WebSocket-Accept value a server must answer to `key`.
std::string ws_accept_for(std::string_view key);
std::string base64(std::string_view bytes);

// A connected TCP socket, non-blocking after connect. Closed by the destructor.
class Socket {
public:
    // Connects within `timeout_ms`; throws celer::Error ("cannot connect to HOST:PORT: why").
    Socket(const std::string& host, const std::string& port, int timeout_ms);
    ~Socket();
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    int fd() const { return fd_; }
    // Writes everything, waiting (poll) while the socket is full; throws on error.
    void write_all(std::string_view bytes);
    // Appends what can be read now; false once the peer closed the connection.
    bool read_available(std::string& out);
    // Waits up to `timeout_ms` for bytes to read (or the peer closing); false on timeout.
    bool wait_readable(int timeout_ms) const;

private:
    int fd_ = -1;
};

// One blocking request (for /health, /v1/models): the status and body. Throws on failure.
struct HttpResult {
    int status = 0;
    std::string body;
};
HttpResult http_request(const Url& url, std::string_view method, std::string_view path, std::string_view body,
                        const std::string& api_key, int timeout_ms);

}  // namespace celer::agent
