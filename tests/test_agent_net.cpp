// celer code's protocol parsers (HTTP responses, SSE, WebSocket frames) and its transcript.
// Network input arrives in arbitrary pieces, so every parser is fed each input whole, byte by
// byte, and split at every position, and must give the same result each way.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "agent/net.h"
#include "agent/transcript.h"
#include "util/error.h"

using namespace celer::agent;

namespace {

// Every way of cutting `s` in two, plus one byte at a time.
std::vector<std::vector<std::string>> splits(const std::string& s) {
    std::vector<std::vector<std::string>> out;
    for (size_t i = 0; i <= s.size(); ++i) out.push_back({s.substr(0, i), s.substr(i)});
    std::vector<std::string> bytes;
    for (char c : s) bytes.emplace_back(1, c);
    out.push_back(bytes);
    return out;
}

std::string server_frame(uint8_t first, const std::string& payload) {
    std::string f(1, char(first));
    if (payload.size() < 126) {
        f += char(payload.size());
    } else if (payload.size() < 65536) {
        f += char(126);
        f += char(payload.size() >> 8);
        f += char(payload.size() & 0xff);
    } else {
        f += char(127);
        for (int i = 7; i >= 0; --i) f += char((uint64_t(payload.size()) >> (8 * i)) & 0xff);
    }
    return f + payload;
}

// Unmasks a client frame (the tests' stand-in for a server reading it).
std::string unmask(const std::string& f, uint8_t& opcode) {
    opcode = uint8_t(f[0]) & 0x0f;
    EXPECT_TRUE(uint8_t(f[1]) & 0x80) << "client frames are masked";
    uint64_t len = uint8_t(f[1]) & 0x7f;
    size_t at = 2;
    if (len == 126) {
        len = (uint64_t(uint8_t(f[2])) << 8) | uint8_t(f[3]);
        at = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | uint8_t(f[2 + size_t(i)]);
        at = 10;
    }
    const std::string mask = f.substr(at, 4);
    std::string p = f.substr(at + 4);
    EXPECT_EQ(p.size(), len);
    for (size_t i = 0; i < p.size(); ++i) p[i] = char(uint8_t(p[i]) ^ uint8_t(mask[i % 4]));
    return p;
}

}  // namespace

TEST(AgentNet, UrlsAsOpenAIClientsTakeThem) {
    Url u = Url::parse("http://127.0.0.1:8080/v1/");
    EXPECT_EQ(u.host, "127.0.0.1");
    EXPECT_EQ(u.port, "8080");
    EXPECT_EQ(u.base_path, "/v1");
    u = Url::parse("http://localhost:9");
    EXPECT_EQ(u.base_path, "/v1");
    u = Url::parse("http://[::1]:7000/api/v1");
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.host_header(), "[::1]:7000");
    EXPECT_EQ(u.base_path, "/api/v1");
    EXPECT_EQ(Url::parse("http://example.com").port, "80");
    for (const char* bad : {"https://x:1", "ftp://x", "http://", "http://x:abc", "http://:80", "http://x:123456"})
        EXPECT_THROW(Url::parse(bad), celer::Error) << bad;
}

TEST(AgentNet, HttpChunkedBodyAnySplit) {
    const std::string resp =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for (const auto& parts : splits(resp)) {
        HttpResponseParser p;
        std::string body;
        for (const std::string& s : parts) body += p.feed(s);
        EXPECT_TRUE(p.done());
        EXPECT_EQ(p.status(), 200);
        EXPECT_EQ(p.header("content-type").value_or(""), "text/event-stream");
        EXPECT_EQ(body, "hello world!");
    }
}

TEST(AgentNet, HttpLengthAndCloseFraming) {
    HttpResponseParser a;
    EXPECT_EQ(a.feed("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef"), "abc");
    EXPECT_TRUE(a.done());
    EXPECT_EQ(a.status(), 404);

    HttpResponseParser b;
    EXPECT_EQ(b.feed("HTTP/1.0 200 OK\r\n\r\nsome"), "some");
    EXPECT_EQ(b.feed(" more"), " more");
    EXPECT_FALSE(b.done());
    b.eof();
    EXPECT_TRUE(b.done());

    HttpResponseParser c;  // cut short: an error, not a silently short body
    c.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    EXPECT_THROW(c.eof(), celer::Error);

    HttpResponseParser d;
    d.feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi");
    EXPECT_TRUE(d.done());
    EXPECT_EQ(d.take_leftover(), "\x81\x02hi");
}

TEST(AgentNet, HttpMalformedIsAnError) {
    for (const char* bad : {"HTTP/1.1 2x0 OK\r\n\r\n", "SMTP 220 hi\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n"}) {
        HttpResponseParser p;
        EXPECT_THROW(p.feed(bad), celer::Error) << bad;
    }
    HttpResponseParser big;
    EXPECT_THROW(big.feed("HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'a')), celer::Error);
}

TEST(AgentNet, SseEventsAnySplit) {
    const std::string stream =
        ": a comment\r\nevent: response.created\r\ndata: {\"a\":1}\r\n\r\n"
        "data:{\"b\":2}\n\ndata: line one\ndata: line two\n\nid: 7\n\ndata: [DONE]\r\r";
    const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}", "line one\nline two", "[DONE]"};
    for (const auto& parts : splits(stream)) {
        SseParser p;
        std::vector<std::string> got;
        for (const std::string& s : parts)
            for (std::string& e : p.feed(s)) got.push_back(std::move(e));
        EXPECT_EQ(got, want);
    }
}

TEST(AgentNet, WebSocketMessagesAnySplit) {
    const std::string big(70000, 'x');
    const std::string mid(300, 'y');
    const std::string stream = server_frame(0x81, "{\"type\":\"one\"}") + server_frame(0x01, "frag") + server_frame(0x89, "ping!") +
                               server_frame(0x00, "mented") + server_frame(0x80, "") + server_frame(0x81, mid) + server_frame(0x82, big) +
                               server_frame(0x88, "\x03\xe8");
    std::vector<std::vector<std::string>> cuts = {{stream}};
    for (size_t i : {1u, 2u, 3u, 17u, 40u, 330u, 340u, 70010u}) cuts.push_back({stream.substr(0, i), stream.substr(i)});
    for (const auto& parts : cuts) {
        WsParser p;
        std::vector<WsMessage> got;
        for (const std::string& s : parts)
            for (WsMessage& m : p.feed(s)) got.push_back(std::move(m));
        ASSERT_EQ(got.size(), 6u);
        EXPECT_EQ(got[0].payload, "{\"type\":\"one\"}");
        EXPECT_EQ(got[1].kind, WsMessage::Ping);  // control frames may come between fragments
        EXPECT_EQ(got[2].payload, "fragmented");
        EXPECT_EQ(got[3].payload, mid);
        EXPECT_EQ(got[4].kind, WsMessage::Binary);
        EXPECT_EQ(got[4].payload.size(), big.size());
        EXPECT_EQ(got[5].kind, WsMessage::Close);
    }
}

TEST(AgentNet, WebSocketViolationsAreErrors) {
    const std::vector<std::string> bad = {
        std::string("\x81\x82\x01\x02\x03\x04", 6) + "ab",  // masked by the server
        server_frame(0x80, "x"),                       // continuation with nothing open
        server_frame(0x09, "x"),                       // fragmented ping
        server_frame(0xC1, "x"),                       // reserved bit
        server_frame(0x83, "x"),                       // unknown opcode
        server_frame(0x01, "a") + server_frame(0x81, "b"),
    };
    for (const std::string& b : bad) {
        WsParser p;
        EXPECT_THROW(p.feed(b), celer::Error);
    }
    WsParser small(16);
    EXPECT_THROW(small.feed(server_frame(0x81, std::string(17, 'z'))), celer::Error);
}

TEST(AgentNet, ClientFramesAreMaskedAndRoundTrip) {
    for (const size_t n : {0u, 5u, 125u, 126u, 65535u, 65536u}) {
        const std::string payload(n, 'q');
        uint8_t op = 0;
        EXPECT_EQ(unmask(ws_frame(WsMessage::Text, payload, 0xdeadbeef), op), payload);
        EXPECT_EQ(op, 1);
    }
}

TEST(AgentNet, HandshakeAcceptKeyOfRfc6455) {
    EXPECT_EQ(ws_accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");  // RFC 6455 section 1.3
    const auto hex = [](const std::string& d) {
        std::string h;
        for (unsigned char c : d) h += fmt::format("{:02x}", c);
        return h;
    };
    EXPECT_EQ(hex(sha1("abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");  // FIPS 180 examples
    EXPECT_EQ(hex(sha1("")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    EXPECT_EQ(hex(sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    EXPECT_EQ(hex(sha1(std::string(1000000, 'a'))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    EXPECT_EQ(base64(""), "");
    EXPECT_EQ(base64("f"), "Zg==");
    EXPECT_EQ(base64("fo"), "Zm8=");
    EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
}

TEST(AgentTranscript, RoundTripClearAndCrash) {
    const auto dir = std::filesystem::temp_directory_path() / ("celer-transcript-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "s.jsonl";
    {
        Transcript t(path);
        t.session("/work/x", "m");
        t.item({{"type", "message"}, {"role", "user"}, {"content", "old"}});
        t.clear();
        t.item({{"type", "message"}, {"role", "user"}, {"content", "hello"}});
        t.delta("Hel");
        t.item({{"type", "message"}, {"role", "assistant"}, {"content", "Hello"}});
        t.item({{"type", "message"}, {"role", "user"}, {"content", "more"}});
        t.delta("Once upon");
        t.delta(" a time");
    }
    {  // a crash in the middle of writing a line
        std::ofstream f(path, std::ios::app);
        f << "{\"type\":\"delta\",\"te";
    }
    const LoadedSession s = load_transcript(path);
    EXPECT_EQ(s.workspace, "/work/x");
    ASSERT_EQ(s.items.size(), 4u);
    EXPECT_EQ(s.items[0]["content"], "hello");
    EXPECT_EQ(s.items[1]["content"], "Hello");
    EXPECT_TRUE(s.cut_short);
    EXPECT_EQ(s.items[3]["role"], "assistant");
    EXPECT_EQ(s.items[3]["content"][0]["text"], "Once upon a time");
    EXPECT_EQ(s.skipped_lines, 1u);
    std::filesystem::remove_all(dir);
}
