// libFuzzer target: arbitrary bytes as an HTTP request (Beast's parser with the server's
// limits) whose body then goes through every OpenAI request parser the server has: Chat
// Completions, Completions (with FIM), Responses, and the tool-call parser on model output.
// Requests come from the network, so any crash, sanitizer report, hang, or exception other
// than celer::Error (ApiError is one) is a bug.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include <boost/beast/http.hpp>
#include <unistd.h>

#include "server/api.h"
#include "tools/synth.h"

namespace {

namespace http = boost::beast::http;
using celer::server::json;

struct Fixture {
    std::unique_ptr<celer::Engine> engine;
    std::unique_ptr<celer::server::ModelContext> model;
    Fixture() {
        const auto path = std::filesystem::temp_directory_path() / ("celer-request-fuzz-" + std::to_string(::getpid()) + ".gguf");
        celer::synth::Options o;
        o.shape = "micro-llama";
        o.type = "f32";
        celer::synth::write_model(o, path.string());
        celer::EngineOptions eo;
        eo.n_threads = 1;
        eo.n_ctx = 8;
        engine = std::make_unique<celer::Engine>(path.string(), eo);
        model = std::make_unique<celer::server::ModelContext>(*engine, "micro", "");
        std::filesystem::remove(path);
    }
};

const Fixture& fixture() {
    static const Fixture f;
    return f;
}

void parse_bodies(std::string_view body) {
    const auto& m = *fixture().model;
    const celer::server::Limits lim{.max_tokens = 64, .max_messages = 64};
    (void)celer::server::parse_tool_calls(body);
    json j;
    try {
        j = celer::server::parse_body(body);
    } catch (const celer::Error&) {
        return;
    }
    try {
        (void)celer::server::parse_chat(j, m, lim);
    } catch (const celer::Error&) {
    }
    try {
        // The same request fitted into a small context by dropping turns (--ctx-overflow drop-turns).
        celer::server::Limits tight = lim;
        tight.ctx = 48;
        tight.drop_turns = true;
        (void)celer::server::parse_chat(j, m, tight);
    } catch (const celer::Error&) {
    }
    try {
        (void)celer::server::parse_completion(j, m, lim);
    } catch (const celer::Error&) {
    }
    try {
        if (j.is_object() && j.contains("input")) (void)celer::server::parse_steer_input(j["input"]);
    } catch (const celer::Error&) {
    }
    try {
        const auto r = celer::server::parse_responses(j, lim);
        (void)m.chat_prompt(celer::server::items_to_messages(r.input, r.instructions), r.tools);
    } catch (const celer::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)fixture();
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    // Bodies alone half the time (mutations then stay in JSON); whole requests otherwise.
    if (size > 0 && data[0] == '{') {
        parse_bodies(in);
        return 0;
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(64 << 10);
    parser.body_limit(1 << 20);
    parser.eager(true);
    boost::system::error_code ec;
    size_t used = 0;
    while (used < in.size() && !parser.is_done()) {
        const size_t n = parser.put(boost::asio::buffer(in.data() + used, in.size() - used), ec);
        if (ec == http::error::need_more) break;
        if (ec) return 0;
        if (n == 0) break;
        used += n;
    }
    if (parser.is_done()) parse_bodies(parser.get().body());
    return 0;
}
