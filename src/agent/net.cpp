#include "agent/net.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::agent {

namespace {

constexpr size_t kMaxHead = 64 * 1024;

bool iequal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

}  // namespace

Url Url::parse(std::string_view text) {
    Url u;
    std::string_view rest = text;
    if (rest.starts_with("https://")) throw Error(fmt::format("--url {}: https is not supported; use http:// (a local server)", text));
    if (rest.starts_with("http://"))
        rest.remove_prefix(7);
    else if (rest.starts_with("ws://"))
        rest.remove_prefix(5);
    else if (rest.find("://") != std::string_view::npos)
        throw Error(fmt::format("--url {}: only http:// URLs are supported", text));
    const size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (authority.empty()) throw Error(fmt::format("--url {}: no host", text));
    if (authority.front() == '[') {  // [::1]:8080
        const size_t close = authority.find(']');
        if (close == std::string_view::npos) throw Error(fmt::format("--url {}: unclosed '['", text));
        u.host = std::string(authority.substr(1, close - 1));
        authority.remove_prefix(close + 1);
        u.port = authority.starts_with(":") ? std::string(authority.substr(1)) : "80";
    } else {
        const size_t colon = authority.rfind(':');
        u.host = std::string(authority.substr(0, colon));
        u.port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
    }
    if (u.host.empty() || u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos || u.port.size() > 5)
        throw Error(fmt::format("--url {}: expected http://HOST:PORT[/PATH]", text));
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    u.base_path = path.empty() ? "/v1" : std::string(path);
    return u;
}

// ---- HTTP responses ---------------------------------------------------------------------------

std::optional<std::string> HttpResponseParser::header(std::string_view name) const {
    for (const auto& [k, v] : headers_)
        if (iequal(k, name)) return v;
    return std::nullopt;
}

void HttpResponseParser::parse_head(std::string_view head) {
    size_t eol = head.find("\r\n");
    const std::string_view status_line = head.substr(0, eol);
    if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ')
        throw Error(fmt::format("HTTP: malformed status line '{}'", status_line.substr(0, 80)));
    const std::string_view code = status_line.substr(9, 3);
    if (code.find_first_not_of("0123456789") != std::string_view::npos) throw Error("HTTP: malformed status code");
    status_ = std::stoi(std::string(code));
    while (eol != std::string_view::npos) {
        const size_t start = eol + 2;
        eol = head.find("\r\n", start);
        const std::string_view line = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
        if (line.empty()) continue;
        const size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) throw Error("HTTP: malformed header line");
        headers_.emplace_back(std::string(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
    }
    const std::optional<std::string> te = header("Transfer-Encoding");
    const std::optional<std::string> cl = header("Content-Length");
    if (te && te->find("chunked") != std::string::npos) {
        framing_ = Framing::Chunked;
    } else if (cl) {
        if (cl->empty() || cl->size() > 15 || cl->find_first_not_of("0123456789") != std::string::npos)
            throw Error("HTTP: malformed Content-Length");
        framing_ = Framing::Length;
        remaining_ = std::stoull(*cl);
    } else {
        framing_ = (status_ == 204 || status_ == 304 || status_ / 100 == 1) ? Framing::Length : Framing::Close;
        remaining_ = 0;
    }
    if (framing_ == Framing::Length && remaining_ == 0) done_ = true;
}

std::string HttpResponseParser::feed(std::string_view bytes) {
    if (done_) return {};
    if (headers_done_) return body_from(bytes);
    buf_.append(bytes);
    const size_t end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) {
        if (buf_.size() > kMaxHead) throw Error("HTTP: response headers over 64 KiB");
        return {};
    }
    parse_head(std::string_view(buf_).substr(0, end));
    headers_done_ = true;
    std::string rest = buf_.substr(end + 4);
    buf_.clear();
    if (done_) {
        buf_ = std::move(rest);  // a 101's bytes after the head belong to the next protocol
        return {};
    }
    return body_from(rest);
}

std::string HttpResponseParser::body_from(std::string_view bytes) {
    std::string out;
    if (framing_ == Framing::Close) {
        out.append(bytes);
        return out;
    }
    if (framing_ == Framing::Length) {
        const size_t n = size_t(std::min<unsigned long long>(remaining_, bytes.size()));
        out.append(bytes.substr(0, n));
        remaining_ -= n;
        if (remaining_ == 0) done_ = true;
        return out;
    }
    buf_.append(bytes);
    size_t pos = 0;
    while (!done_) {
        if (chunk_ == ChunkState::Data) {
            const size_t n = size_t(std::min<unsigned long long>(remaining_, buf_.size() - pos));
            out.append(buf_, pos, n);
            pos += n;
            remaining_ -= n;
            if (remaining_ > 0) break;
            chunk_ = ChunkState::DataEnd;
            continue;
        }
        const size_t eol = buf_.find("\r\n", pos);
        if (eol == std::string::npos) {
            if (buf_.size() - pos > 4096) throw Error("HTTP: malformed chunked body");
            break;
        }
        const std::string_view line = std::string_view(buf_).substr(pos, eol - pos);
        pos = eol + 2;
        if (chunk_ == ChunkState::DataEnd) {
            if (!line.empty()) throw Error("HTTP: chunk not followed by CRLF");
            chunk_ = ChunkState::Size;
        } else if (chunk_ == ChunkState::Size) {
            const std::string_view hex = trim(line.substr(0, line.find(';')));
            if (hex.empty() || hex.size() > 12 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string_view::npos)
                throw Error("HTTP: malformed chunk size");
            remaining_ = std::stoull(std::string(hex), nullptr, 16);
            chunk_ = remaining_ == 0 ? ChunkState::Trailer : ChunkState::Data;
        } else if (line.empty()) {  // the blank line after the trailers
            done_ = true;
        }
    }
    buf_.erase(0, pos);
    return out;
}

void HttpResponseParser::eof() {
    if (!headers_done_) throw Error("HTTP: the connection closed before a response");
    if (framing_ == Framing::Close) done_ = true;
    if (!done_) throw Error("HTTP: the connection closed in the middle of the response");
}

// ---- Server-Sent Events -----------------------------------------------------------------------

std::vector<std::string> SseParser::feed(std::string_view bytes) {
    std::vector<std::string> events;
    const auto end_line = [&] {
        const std::string_view line = line_;
        if (line.empty()) {
            if (has_data_) events.push_back(std::move(data_));
            data_.clear();
            has_data_ = false;
        } else if (line.starts_with("data")) {
            std::string_view v = line.substr(4);
            if (v.empty() || v.front() == ':') {
                if (!v.empty()) v.remove_prefix(1);
                if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
                if (has_data_) data_ += '\n';
                data_.append(v);
                has_data_ = true;
            }
        }
        line_.clear();
    };
    for (const char c : bytes) {
        if (after_cr_) {
            after_cr_ = false;
            if (c == '\n') continue;
        }
        if (c == '\r') {
            after_cr_ = true;
            end_line();
        } else if (c == '\n') {
            end_line();
        } else {
            if (line_.size() > (64u << 20)) throw Error("SSE: a line over 64 MiB");
            line_ += c;
        }
    }
    return events;
}

// ---- WebSocket --------------------------------------------------------------------------------

std::vector<WsMessage> WsParser::feed(std::string_view bytes) {
    buf_.append(bytes);
    std::vector<WsMessage> out;
    size_t pos = 0;
    for (;;) {
        const std::string_view b = std::string_view(buf_).substr(pos);
        if (b.size() < 2) break;
        const auto byte = [&](size_t i) { return static_cast<uint8_t>(b[i]); };
        const bool fin = byte(0) & 0x80;
        const uint8_t opcode = byte(0) & 0x0f;
        if (byte(0) & 0x70) throw Error("WebSocket: reserved bits set");
        if (byte(1) & 0x80) throw Error("WebSocket: a server frame is masked");
        uint64_t len = byte(1) & 0x7f;
        size_t head = 2;
        if (len == 126) {
            if (b.size() < 4) break;
            len = (uint64_t(byte(2)) << 8) | byte(3);
            head = 4;
        } else if (len == 127) {
            if (b.size() < 10) break;
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | byte(2 + size_t(i));
            head = 10;
        }
        if (len > max_ || message_.size() + len > max_) throw Error("WebSocket: a message over the size limit");
        if (b.size() < head + len) break;
        const std::string_view payload = b.substr(head, size_t(len));
        pos += head + size_t(len);
        if (opcode >= 8) {
            if (!fin || len > 125 || (opcode != 8 && opcode != 9 && opcode != 10)) throw Error("WebSocket: malformed control frame");
            out.push_back({WsMessage::Kind(opcode), std::string(payload)});
            continue;
        }
        if (opcode == 0) {
            if (message_kind_ == 0) throw Error("WebSocket: a continuation frame with no message open");
        } else if (opcode == 1 || opcode == 2) {
            if (message_kind_ != 0) throw Error("WebSocket: a new message inside a fragmented one");
            message_kind_ = opcode;
        } else {
            throw Error(fmt::format("WebSocket: unknown opcode {}", opcode));
        }
        message_.append(payload);
        if (fin) {
            out.push_back({WsMessage::Kind(message_kind_), std::move(message_)});
            message_.clear();
            message_kind_ = 0;
        }
    }
    buf_.erase(0, pos);
    return out;
}

std::string ws_frame(WsMessage::Kind kind, std::string_view payload, uint32_t mask) {
    std::string f;
    f += char(0x80 | uint8_t(kind));
    const uint64_t n = payload.size();
    if (n < 126) {
        f += char(0x80 | n);
    } else if (n < 65536) {
        f += char(0x80 | 126);
        f += char(n >> 8);
        f += char(n & 0xff);
    } else {
        f += char(0x80 | 127);
        for (int i = 7; i >= 0; --i) f += char((n >> (8 * i)) & 0xff);
    }
    const uint8_t m[4] = {uint8_t(mask >> 24), uint8_t(mask >> 16), uint8_t(mask >> 8), uint8_t(mask)};
    f.append(reinterpret_cast<const char*>(m), 4);
    for (size_t i = 0; i < payload.size(); ++i) f += char(uint8_t(payload[i]) ^ m[i % 4]);
    return f;
}

std::string base64(std::string_view bytes) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
        for (int k = 3; k >= 0; --k) out += kAlphabet[(v >> (6 * k)) & 63];
    }
    if (i < bytes.size()) {
        uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
        if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

// SHA-1 (FIPS 180-4), needed only for the handshake's accept key: its weakness as a hash does
// not matter there, and writing it here keeps Boost's internal headers out of the agent.
std::string sha1(std::string_view msg) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    std::string m(msg);
    const uint64_t bits = uint64_t(msg.size()) * 8;
    m += char(0x80);
    while (m.size() % 64 != 56) m += char(0);
    for (int i = 7; i >= 0; --i) m += char((bits >> (8 * i)) & 0xff);
    const auto rol = [](uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
    for (size_t block = 0; block < m.size(); block += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; ++i)
            w[i] = (uint32_t(uint8_t(m[block + 4 * size_t(i)])) << 24) | (uint32_t(uint8_t(m[block + 4 * size_t(i) + 1])) << 16) |
                   (uint32_t(uint8_t(m[block + 4 * size_t(i) + 2])) << 8) | uint32_t(uint8_t(m[block + 4 * size_t(i) + 3]));
        for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; ++i) {
            const uint32_t f = i < 20 ? (b & c) | (~b & d) : i < 40 ? b ^ c ^ d : i < 60 ? (b & c) | (b & d) | (c & d) : b ^ c ^ d;
            const uint32_t k = i < 20 ? 0x5A827999 : i < 40 ? 0x6ED9EBA1 : i < 60 ? 0x8F1BBCDC : 0xCA62C1D6;
            const uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    std::string out;
    for (const uint32_t word : h)
        for (int k = 3; k >= 0; --k) out += char((word >> (8 * k)) & 0xff);
    return out;
}

std::string ws_accept_for(std::string_view key) {
    return base64(sha1(std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));  // RFC 6455's GUID
}

// ---- sockets ----------------------------------------------------------------------------------

Socket::Socket(const std::string& host, const std::string& port, int timeout_ms) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw Error(fmt::format("cannot connect to {}:{}: {}", host, port, gai_strerror(rc)));
    std::string why = "no address";
    for (addrinfo* ai = res; ai && fd_ < 0; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) continue;
        int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            rc = ::poll(&p, 1, timeout_ms);
            int err = 0;
            socklen_t len = sizeof err;
            if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
                rc = 0;
            } else {
                errno = rc == 0 ? ETIMEDOUT : err;
                rc = -1;
            }
        }
        if (rc == 0) {
            fd_ = fd;
            const int one = 1;
            ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // deltas are small and urgent
        } else {
            why = std::strerror(errno);
            ::close(fd);
        }
    }
    freeaddrinfo(res);
    if (fd_ < 0) throw Error(fmt::format("cannot connect to {}:{}: {}", host, port, why));
}

Socket::~Socket() {
    if (fd_ >= 0) ::close(fd_);
}

void Socket::write_all(std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n > 0) {
            bytes.remove_prefix(size_t(n));
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd_, POLLOUT, 0};
            if (::poll(&p, 1, 10000) <= 0) throw Error("the server stopped reading (send timed out)");
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            throw Error(fmt::format("the connection to the server broke: {}", std::strerror(errno)));
        }
    }
}

bool Socket::read_available(std::string& out) {
    char buf[16384];
    for (;;) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) {
            out.append(buf, size_t(n));
            continue;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == ECONNRESET) return false;
        throw Error(fmt::format("reading from the server: {}", std::strerror(errno)));
    }
}

bool Socket::wait_readable(int timeout_ms) const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
}

HttpResult http_request(const Url& url, std::string_view method, std::string_view path, std::string_view body,
                        const std::string& api_key, int timeout_ms) {
    Socket s(url.host, url.port, timeout_ms);
    std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n", method, path,
                                  url.host_header());
    if (!api_key.empty()) req += fmt::format("Authorization: Bearer {}\r\n", api_key);
    if (!body.empty() || method == "POST")
        req += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", body.size());
    req += "\r\n";
    req.append(body);
    s.write_all(req);
    HttpResponseParser p;
    HttpResult r;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!p.done()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0 || !s.wait_readable(int(left))) throw Error(fmt::format("{} {}: no answer within {} ms", method, path, timeout_ms));
        std::string bytes;
        const bool open = s.read_available(bytes);
        r.body += p.feed(bytes);
        if (!open) {
            p.eof();
            break;
        }
    }
    r.status = p.status();
    return r;
}

}  // namespace celer::agent
