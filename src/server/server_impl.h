// The server's state and its HTTP routes, shared by server.cpp (connections, dispatch, the
// accept loop, stopping) and websocket.cpp (the WebSocket mode of the Responses API).
#pragma once

#include "server/server.h"
#include "server/stream.h"

#include <array>
#include <chrono>
#include <csignal>
#include <ctime>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/beast.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>

namespace celer::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ws = beast::websocket;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;
using Request = http::request<http::string_body>;
using clock_type = std::chrono::steady_clock;

// Helpers of the server's parts (server.cpp, websocket.cpp).
namespace detail {

inline int64_t unix_now() { return int64_t(std::time(nullptr)); }

// A cumulative histogram in Prometheus' shape.
class Histogram {
public:
    explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
    void observe(double v) {
        std::lock_guard lock(mu_);
        size_t i = 0;
        while (i < bounds_.size() && v > bounds_[i]) ++i;
        ++counts_[i];
        sum_ += v;
        ++n_;
    }
    void write(std::string& out, const char* name, const char* help) const {
        std::lock_guard lock(mu_);
        out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
        uint64_t cum = 0;
        for (size_t i = 0; i < bounds_.size(); ++i) {
            cum += counts_[i];
            out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
        }
        out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, n_, name, sum_, name, n_);
    }

private:
    mutable std::mutex mu_;
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;
    double sum_ = 0;
    uint64_t n_ = 0;
};

// Wakes a coroutine on the network thread when the scheduler's thread produced something.
// The network thread is the only one touching `ready` and the timer.
struct Waiter {
    explicit Waiter(net::any_io_executor ex) : timer(ex) {}
    net::steady_timer timer;
    bool ready = false;
};

inline void hook(Generation& g, const std::shared_ptr<Waiter>& w) {
    g.on_ready([w, ex = w->timer.get_executor()] {
        net::post(ex, [w] {
            w->ready = true;
            w->timer.cancel();
        });
    });
}

// Waits for the next output; true once the generation has ended and everything was taken.
inline awaitable<bool> next_chunk(Generation& g, Waiter& w, Generation::Chunk& c) {
    for (;;) {
        w.ready = false;
        const bool done = g.take(c);
        if (done || !c.text.empty() || !c.logprobs.empty()) co_return done;
        w.timer.expires_at(clock_type::time_point::max());
        boost::system::error_code ec;
        co_await w.timer.async_wait(net::redirect_error(use_awaitable, ec));
    }
}

}  // namespace detail
using namespace detail;

struct Server::Impl {
    Impl(Scheduler& s, const ModelContext& m, ResponseStore& st, const ServerOptions& o)
        : sched(s), model(m), store(st), opt(o), acceptor(io), signals(io, SIGINT, SIGTERM) {
        opt.limits.ctx = sched.slot_ctx();
    }

    Scheduler& sched;
    const ModelContext& model;
    ResponseStore& store;
    ServerOptions opt;
    bool stopping = false;
    int connections = 0;
    // Every open socket, so that stopping can end the reads of idle keep-alive connections.
    std::set<tcp::socket*> sockets;
    struct Registered {
        std::set<tcp::socket*>& set;
        tcp::socket* s;
        Registered(std::set<tcp::socket*>& set_, tcp::socket& sock) : set(set_), s(&sock) { set.insert(s); }
        ~Registered() { set.erase(s); }
    };
    // Responses running now, for GET and cancel by id.
    std::unordered_map<std::string, std::shared_ptr<Generation>> running;

    // Metrics (network thread, except the histograms).
    std::map<std::pair<std::string, int>, uint64_t> requests;  // (route, status)
    uint64_t ws_messages = 0, disconnects = 0, template_rewrites = 0, dropped_turns = 0;
    void note_dropped_turns(size_t n) {
        if (n == 0) return;
        if (dropped_turns == 0)
            fmt::print(stderr, "serve: a conversation outgrew the context; its oldest turns were dropped (--ctx-overflow "
                               "drop-turns; counted in celer_context_dropped_turns_total)\n");
        dropped_turns += n;
    }
    void note_template_rewrite() {
        if (template_rewrites++ == 0)
            fmt::print(stderr,
                       "serve: the chat template rendered a conversation's earlier turns differently on its next turn; the "
                       "prefix cache is reused only up to the first change (counted in celer_template_rewrites_total)\n");
    }
    Histogram ttft{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
    Histogram inter_token{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
    Histogram request_seconds{{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}};

    // Last, so destroyed first: the io_context destroys the coroutine frames still suspended in
    // it, whose guards touch the members above.
    net::io_context io{1};
    tcp::acceptor acceptor;
    net::signal_set signals;

    // ---- plumbing ----------------------------------------------------------------------------

    void count(const std::string& route, int status) { ++requests[{route, status}]; }

    http::response<http::string_body> make(const Request& req, http::status st, std::string body,
                                           std::string_view type = "application/json") {
        http::response<http::string_body> res{st, req.version()};
        res.set(http::field::server, "celer");
        res.set(http::field::content_type, type);
        res.keep_alive(req.keep_alive());
        res.body() = std::move(body);
        res.prepare_payload();
        return res;
    }

    awaitable<void> send_json(beast::tcp_stream& s, const Request& req, int status, const json& body) {
        auto res = make(req, http::status(status), dump(body));
        s.expires_after(std::chrono::seconds(opt.idle_timeout_s));
        co_await http::async_write(s, res, use_awaitable);
        s.expires_never();
    }

    awaitable<void> send_error(beast::tcp_stream& s, const Request& req, const ApiError& e) {
        co_await send_json(s, req, e.status, error_body(e.what(), e.type, e.param, e.code));
    }

    bool authorized(const Request& req) const {
        if (opt.api_key.empty()) return true;
        const auto h = req[http::field::authorization];
        return h.size() == opt.api_key.size() + 7 && h.substr(0, 7) == "Bearer " && h.substr(7) == opt.api_key;
    }

    // SSE over chunked transfer encoding.
    // Every write has a deadline: a client that stops reading (a zero TCP window) cannot hold
    // its connection, and its generation, forever.
    struct Sse {
        beast::tcp_stream& s;
        std::chrono::seconds timeout;
        bool started = false;
        awaitable<void> start(const Request& req) {
            s.expires_after(timeout);
            http::response<http::empty_body> res{http::status::ok, req.version()};
            res.set(http::field::server, "celer");
            res.set(http::field::content_type, "text/event-stream");
            res.set(http::field::cache_control, "no-cache");
            res.keep_alive(req.keep_alive());
            res.chunked(true);
            http::response_serializer<http::empty_body> sr{res};
            co_await http::async_write_header(s, sr, use_awaitable);
            started = true;
        }
        awaitable<void> data(const std::string& payload, std::string_view event = {}) {
            std::string frame;
            if (!event.empty()) frame = fmt::format("event: {}\n", event);
            frame += "data: ";
            frame += payload;
            frame += "\n\n";
            s.expires_after(timeout);
            co_await net::async_write(s, http::make_chunk(net::buffer(frame)), use_awaitable);
        }
        awaitable<void> end() {
            s.expires_after(timeout);
            co_await net::async_write(s, http::make_chunk_last(), use_awaitable);
            s.expires_never();
        }
    };

    // Queues a generation. `param` names the request field a refusal is about.
    std::shared_ptr<Generation> start(std::vector<TokenId> prompt, GenParams params, const std::shared_ptr<Waiter>& w,
                                      const char* param) {
        if (stopping) throw ApiError(503, "the server is shutting down", {}, "server_error", "shutting_down");
        if (prompt.size() >= sched.slot_ctx())
            throw ApiError(400,
                           fmt::format("This model's context holds {} tokens; the request has {} (with room for at least one to "
                                       "generate). Shorten the input or start the server with a larger --ctx-size.",
                                       sched.slot_ctx(), prompt.size()),
                           param, "invalid_request_error", "context_length_exceeded");
        auto g = std::make_shared<Generation>(std::move(prompt), std::move(params));
        hook(*g, w);
        try {
            sched.submit(g);
        } catch (const Error& e) {
            throw ApiError(503, e.what(), {}, "server_error", "server_busy");
        }
        return g;
    }

    // Cancels `g` as soon as the peer closes or resets `sock`, even while nothing is being
    // written (a long prompt, a request that is not streamed). Waits for readability and peeks:
    // bytes of a next request are left for the connection to read, and then the watch ends (it
    // would fire again at once): from there a failed or timed-out write is what notices.
    struct PeerWatch {
        bool running = true;  // the generation has not ended: the socket still exists
        bool gone = false;    // the peer closed
    };
    void watch_peer(tcp::socket& sock, const std::shared_ptr<Generation>& g, const std::shared_ptr<PeerWatch>& pw) {
        sock.async_wait(tcp::socket::wait_read, [this, &sock, g, pw](const boost::system::error_code& ec) {
            if (ec || !pw->running) return;
            char c;
            boost::system::error_code rec;
            const size_t n = sock.receive(net::buffer(&c, 1), tcp::socket::message_peek, rec);
            if (rec || n == 0) {
                g->cancel();
                pw->gone = true;
                ++disconnects;
            }
        });
    }

    // Runs a generation to its end, handing each piece of output to `on_chunk`; a peer that
    // goes away (a failed write, or a close seen by watch_peer) cancels it. Records the latency
    // histograms.
    template <typename F>
    awaitable<void> drive(const std::shared_ptr<Generation>& gp, tcp::socket* sock, Waiter& w, F on_chunk) {
        Generation& g = *gp;
        auto last = clock_type::now();
        bool first = true;
        auto pw = std::make_shared<PeerWatch>();
        struct Done {
            PeerWatch& pw;
            ~Done() { pw.running = false; }
        } done_guard{*pw};
        if (sock) watch_peer(*sock, gp, pw);
        try {
            for (;;) {
                Generation::Chunk c;
                const bool done = co_await next_chunk(g, w, c);
                const auto now = clock_type::now();
                if (!c.text.empty() || !c.logprobs.empty()) {
                    if (first) ttft.observe(g.ttft_s());
                    else inter_token.observe(std::chrono::duration<double>(now - last).count());
                    first = false;
                    last = now;
                }
                co_await on_chunk(c, done);
                if (done) break;
            }
        } catch (...) {
            g.cancel();
            if (!pw->gone) ++disconnects;
            throw;
        }
    }

    // Runs `work`, turning what the request got wrong (ApiError, celer::Error, malformed JSON)
    // into the refusal to answer with; anything else (a broken socket) propagates.
    template <typename F>
    static awaitable<std::optional<ApiError>> refusal_of(F work) {
        try {
            co_await work();
        } catch (const ApiError& e) {
            co_return e;
        } catch (const Error& e) {
            co_return ApiError(400, e.what());
        } catch (const json::exception& e) {
            co_return ApiError(400, fmt::format("malformed request: {}", e.what()));
        }
        co_return std::nullopt;
    }

    // ---- routes ------------------------------------------------------------------------------

    awaitable<void> health(beast::tcp_stream& s, const Request& req) {
        const json ok = {{"status", "ok"}};
        co_await send_json(s, req, 200, ok);
    }

    awaitable<void> models(beast::tcp_stream& s, const Request& req) {
        // max_model_len (vLLM's name): the tokens one sequence holds, so a client (celer code's
        // status line, Codex's model_context_window) can show and budget its context.
        json m = {{"id", model.id()}, {"object", "model"}, {"created", unix_now()}, {"owned_by", "celer"}, {"max_model_len", sched.slot_ctx()}};
        json list = {{"object", "list"}, {"data", json::array()}};
        list["data"].push_back(std::move(m));
        co_await send_json(s, req, 200, list);
    }

    awaitable<void> metrics(beast::tcp_stream& s, const Request& req) {
        const SchedulerStats& st = sched.stats();
        std::string out;
        out += "# HELP celer_requests_total HTTP requests by route and status.\n# TYPE celer_requests_total counter\n";
        for (const auto& [k, v] : requests) out += fmt::format("celer_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, v);
        const auto counter = [&](const char* name, const char* help, uint64_t v) {
            out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
        };
        const auto gauge = [&](const char* name, const char* help, double v) {
            out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
        };
        counter("celer_prompt_tokens_total", "Prompt tokens of admitted requests.", st.prompt_tokens.load());
        counter("celer_cached_tokens_total", "Prompt tokens found in a slot's cache (not prefilled).", st.cached_tokens.load());
        counter("celer_forked_prefix_tokens_total", "Cached prompt tokens shared from a running sequence's cache.", st.forked_tokens.load());
        counter("celer_kv_evicted_blocks_total", "Cached KV blocks evicted (least recently used) for new ones.", st.evicted_blocks.load());
        counter("celer_kv_out_of_blocks_total", "Sequences delayed or ended because the KV budget was spent.", st.out_of_kv.load());
        counter("celer_prefilled_tokens_total", "Prompt tokens run through the model.", st.prefilled_tokens.load());
        counter("celer_generated_tokens_total", "Tokens generated.", st.generated_tokens.load());
        counter("celer_steps_total", "Batched forward steps.", st.steps.load());
        counter("celer_spec_checks_total", "Decode steps of a sequence that checked guessed tokens (speculative decoding).", st.spec_checks.load());
        counter("celer_spec_drafted_tokens_total", "Tokens guessed by speculative decoding.", st.spec_drafted.load());
        counter("celer_spec_accepted_tokens_total", "Guessed tokens the model agreed with.", st.spec_accepted.load());
        counter("celer_generations_finished_total", "Generations that ended, for any reason.", st.finished.load());
        counter("celer_generations_cancelled_total", "Generations cancelled (client gone, cancel, shutdown).", st.cancelled.load());
        counter("celer_disconnects_total", "Streams whose client went away mid-generation.", disconnects);
        counter("celer_template_rewrites_total", "Turns whose rendered prompt did not extend the previous turn's.", template_rewrites);
        counter("celer_context_dropped_turns_total", "Oldest turns dropped to fit a conversation in the context (--ctx-overflow drop-turns).",
                dropped_turns);
        counter("celer_websocket_messages_total", "WebSocket messages received.", ws_messages);
        gauge("celer_generations_running", "Generations in a slot now.", double(st.active.load()));
        gauge("celer_generations_waiting", "Generations queued for a slot.", double(st.waiting.load()));
        gauge("celer_connections", "Open connections.", connections);
        gauge("celer_kv_bytes_used", "KV cache bytes holding tokens (running sequences and cached prefixes).", double(sched.kv_bytes_in_use()));
        gauge("celer_kv_cached_blocks", "KV blocks in the prefix tree.", double(st.kv_blocks_cached.load()));
        gauge("celer_kv_bytes_total", "KV cache bytes allocated.", double(sched.kv_bytes_total()));
        ttft.write(out, "celer_time_to_first_token_seconds", "Time from request to first token.");
        inter_token.write(out, "celer_inter_token_seconds", "Time between streamed tokens.");
        request_seconds.write(out, "celer_request_seconds", "Time from request to its last byte.");
        auto res = make(req, http::status::ok, std::move(out), "text/plain; version=0.0.4");
        co_await http::async_write(s, res, use_awaitable);
    }

    // Streams payloads as SSE, or collects the output and sends the object (Chat Completions
    // and Completions alike).
    template <typename Output>
    awaitable<void> reply(beast::tcp_stream& s, const Request& req, bool stream, const std::shared_ptr<Generation>& gp, Waiter& w,
                          Output& out, std::vector<std::string> first) {
        Generation& g = *gp;
        if (stream) {
            Sse sse{s, std::chrono::seconds(opt.idle_timeout_s)};
            co_await sse.start(req);
            for (const auto& p : first) co_await sse.data(p);
            co_await drive(gp, &s.socket(), w, [&](Generation::Chunk& c, bool done) -> awaitable<void> {
                for (const auto& p : out.add(c)) co_await sse.data(p);
                if (!done) co_return;
                for (const auto& p : out.finish_stream(g)) co_await sse.data(p);
                co_await sse.end();
            });
            co_return;
        }
        co_await drive(gp, &s.socket(), w, [&](Generation::Chunk& c, bool) -> awaitable<void> {
            out.add(c);
            co_return;
        });
        if (g.finish() == Finish::Error) throw ApiError(500, g.error(), {}, "server_error");
        const json obj = out.object(g);
        co_await send_json(s, req, 200, obj);
    }

    awaitable<void> chat(beast::tcp_stream& s, const Request& req) {
        const json body = parse_body(req.body());
        ChatRequest cr = parse_chat(body, model, opt.limits);
        note_dropped_turns(cr.dropped_turns);
        ChatOutput out(model.id(), cr.tools, cr.params.logprobs >= 0, cr.include_usage);
        auto w = std::make_shared<Waiter>(s.get_executor());
        auto g = start(std::move(cr.prompt), std::move(cr.params), w, "messages");
        std::vector<std::string> first(1, out.first_chunk());
        co_await reply(s, req, cr.stream, g, *w, out, std::move(first));
    }

    awaitable<void> completions(beast::tcp_stream& s, const Request& req) {
        const json body = parse_body(req.body());
        CompletionRequest cr = parse_completion(body, model, opt.limits);
        CompletionOutput out(model.id(), cr.params.logprobs >= 0, cr.include_usage, cr.echo ? cr.prompt_text : std::string());
        auto w = std::make_shared<Waiter>(s.get_executor());
        auto g = start(std::move(cr.prompt), std::move(cr.params), w, "prompt");
        co_await reply(s, req, cr.stream, g, *w, out, out.start());
    }

    // ---- Responses ---------------------------------------------------------------------------

    // Responses one WebSocket connection made with store=false: its later turns may continue
    // from them; nothing reaches the disk.
    // The most recently used kLocalResponses are kept.
    struct LocalResponses {
        static constexpr size_t kLocalResponses = 64;
        std::list<std::pair<std::string, json>> items;  // (id, context), most recent first
        void put(const std::string& id, json context) {
            items.emplace_front(id, std::move(context));
            if (items.size() > kLocalResponses) items.pop_back();
        }
        const json* get(const std::string& id) {
            for (auto it = items.begin(); it != items.end(); ++it)
                if (it->first == id) {
                    items.splice(items.begin(), items, it);
                    return &items.front().second;
                }
            return nullptr;
        }
    };

    // One WebSocket lane's prompt: what it rendered last and the model's tokens after it, so
    // that its next turn tokenizes only the new text and keeps the tokens the model produced.
    struct Session {
        PromptCache prompt;
        std::string prompt_of;  // the response that prompt was for
    };

    struct ResponseJob {
        std::string id;
        json response;  // the object, updated as it runs
        json context;   // every item through this turn's input
        bool store = true;
        bool stream = false;
        bool tools = false;
        std::vector<TokenId> prompt;
        GenParams params;
        std::shared_ptr<Waiter> w;
        std::shared_ptr<Generation> g;  // once begun
        json body;                   // the request (WebSocket only: a steered successor inherits it)
        const bool* steered = nullptr;  // set when a cancel that ends it was a steer
    };

    // Queues the job's generation; refusals (context too long, queue full) throw before any
    // byte of the answer is sent.
    void begin(ResponseJob& job, net::any_io_executor ex) {
        job.w = std::make_shared<Waiter>(ex);
        job.g = start(std::move(job.prompt), std::move(job.params), job.w, "input");
    }

    ResponseJob prepare_response(const json& body, LocalResponses* local, Session* session = nullptr) {
        ResponseJob job;
        ResponsesRequest rr = parse_responses(body, opt.limits);
        json context = json::array();
        const std::string& prev = rr.previous_response_id;
        if (!prev.empty()) {
            if (const json* c = local ? local->get(prev) : nullptr) {
                context = *c;
            } else if (auto rec = store.get(prev)) {
                try {
                    context = json::parse(rec->context);
                } catch (const json::exception&) {
                    throw ApiError(500, fmt::format("stored response '{}' is damaged", prev), "previous_response_id", "server_error");
                }
            } else {
                throw ApiError(404, fmt::format("Previous response with id '{}' not found.", prev), "previous_response_id",
                               "invalid_request_error", "previous_response_not_found");
            }
        }
        for (auto& it : rr.input) context.push_back(it);
        const std::string& instructions = rr.instructions;
        const json messages = items_to_messages(context, instructions);
        job.tools = !rr.tools.empty();
        size_t dropped = 0;
        job.prompt = model.fit_chat_prompt(messages, rr.tools, opt.limits, overflow_reserve(rr.params, opt.limits),
                                           session ? &session->prompt : nullptr, &dropped);
        note_dropped_turns(dropped);
        job.id = random_id("resp_");
        if (session) {
            // A turn continuing the lane's last response should render as that prompt plus
            // what followed; a template that rewrites history breaks the prefix there.
            if (!prev.empty() && prev == session->prompt_of && !session->prompt.extended && dropped == 0) note_template_rewrite();
            session->prompt_of = job.id;
            job.body = body;
        }
        job.params = std::move(rr.params);
        job.store = rr.store;
        job.stream = rr.stream;
        // generate: false (WebSocket warm-up): the input is prefilled and remembered, nothing is
        // generated, and the response completes with no output.
        if (!rr.generate) job.params.max_tokens = 0;
        job.context = std::move(context);
        json r;
        r["id"] = job.id;
        r["object"] = "response";
        r["created_at"] = unix_now();
        r["status"] = "in_progress";
        r["error"] = nullptr;
        r["incomplete_details"] = nullptr;
        r["instructions"] = instructions.empty() ? json(nullptr) : json(instructions);
        r["max_output_tokens"] = body.value("max_output_tokens", json(nullptr));
        r["model"] = model.id();
        r["output"] = json::array();
        r["parallel_tool_calls"] = body.value("parallel_tool_calls", json(true));
        r["previous_response_id"] = prev.empty() ? json(nullptr) : json(prev);
        r["store"] = job.store;
        r["temperature"] = job.params.sampler.temperature;
        r["text"] = body.value("text", json{{"format", {{"type", "text"}}}});
        r["tool_choice"] = body.value("tool_choice", json("auto"));
        r["tools"] = body.value("tools", json::array());
        r["top_p"] = job.params.sampler.top_p;
        r["truncation"] = "disabled";
        r["usage"] = nullptr;
        r["metadata"] = body.value("metadata", json::object());
        job.response = std::move(r);
        return job;
    }

    // Runs a response, sending its events through `emit` (SSE or WebSocket). The final object
    // is in job.response when it returns; the conversation through it is remembered (`local`,
    // and the store when asked).
    template <typename Emit>
    awaitable<void> run_response(ResponseJob& job, tcp::socket* sock, LocalResponses* local, Session* session, Emit emit) {
        Generation& g = *job.g;
        running[job.id] = job.g;
        struct Erase {
            Impl* self;
            std::string id;
            ~Erase() { self->running.erase(id); }
        } erase{this, job.id};

        ResponseOutput out(std::move(job.response), job.tools);
        for (const json& e : out.start()) co_await emit(e);
        co_await drive(job.g, sock, *job.w, [&](Generation::Chunk& c, bool) -> awaitable<void> {
            for (const json& e : out.add(c)) co_await emit(e);
        });
        if (job.steered && *job.steered) out.set_steered();
        const std::vector<json> last = out.finish(g);
        job.response = out.response();
        // The lane's next turn continues from the model's own tokens.
        if (session && session->prompt_of == job.id && g.finish() != Finish::Error) model.splice_output(session->prompt, g.output_tokens());
        json context = std::move(job.context);
        for (const auto& it : out.output()) context.push_back(it);
        if (local) local->put(job.id, context);
        if (job.store) {
            try {
                store.put(job.id, {dump(job.response), dump(context)});
            } catch (const Error& e) {
                fmt::print(stderr, "serve: {}\n", e.what());
            }
        }
        for (const json& e : last) co_await emit(e);
    }

    awaitable<void> responses(beast::tcp_stream& s, const Request& req) {
        const json body = parse_body(req.body());
        ResponseJob job = prepare_response(body, nullptr);
        begin(job, s.get_executor());
        if (job.stream) {
            Sse sse{s, std::chrono::seconds(opt.idle_timeout_s)};
            co_await sse.start(req);
            co_await run_response(job, &s.socket(), nullptr, nullptr, [&](const json& e) -> awaitable<void> {
                const std::string& type = e["type"].get_ref<const std::string&>();
                co_await sse.data(dump(e), type);
            });
            co_await sse.end();
            co_return;
        }
        co_await run_response(job, &s.socket(), nullptr, nullptr, [](const json&) -> awaitable<void> { co_return; });
        co_await send_json(s, req, 200, job.response);
    }

    awaitable<void> response_by_id(beast::tcp_stream& s, const Request& req, std::string id, bool cancel) {
        if (auto it = running.find(id); it != running.end()) {
            if (cancel && !it->second->cancel())
                throw ApiError(400, fmt::format("Response '{}' has already finished and cannot be cancelled.", id), "response_id");
            const json r = {{"id", id}, {"object", "response"}, {"status", cancel ? "cancelled" : "in_progress"}};
            co_await send_json(s, req, 200, r);
            co_return;
        }
        if (req.method() == http::verb::delete_) {
            if (!store.erase(id)) throw ApiError(404, fmt::format("No response found with id '{}'.", id), "response_id");
            const json r = {{"id", id}, {"object", "response"}, {"deleted", true}};
            co_await send_json(s, req, 200, r);
            co_return;
        }
        auto rec = store.get(id);
        if (!rec) throw ApiError(404, fmt::format("No response found with id '{}'.", id), "response_id");
        if (cancel) throw ApiError(400, fmt::format("Response '{}' has already finished and cannot be cancelled.", id), "response_id");
        co_await send_json(s, req, 200, json::parse(rec->response));
    }

    // ---- WebSocket mode (websocket.cpp) ---------------------------------------------------------
    //
    // Each text message is a client event: `response.create` (the fields of POST /v1/responses,
    // plus an optional `stream_id`), `response.steer`, or celer's `response.cancel`. A
    // `stream_id` names a lane: a lane runs its responses one at a time, in order; lanes run at
    // once, batched by the scheduler, and their events (which echo the stream_id) interleave.
    // A reader takes every message the moment it arrives, so that a cancel or a steer reaches
    // the running response at once; a writer is the only one that writes.

    static constexpr size_t kMaxLanes = 64;  // per connection; idle ones are forgotten first
    static constexpr size_t kSessionsKept = 8;  // recent responses' prompts kept for forks

    struct Steer {
        std::string id;
        json input;     // message items
        json original;  // as the client sent it, to hand back if it cannot be committed
    };

    // What a runner takes from its lane's queue.
    struct LaneMessage {
        json body;              // the parsed event; discarded when `text` could not be parsed
        std::string text;       // the raw message, kept only when it was malformed
        std::vector<Steer> steers;  // the steering input a successor carries (refused: returned)
    };

    struct Lane {
        std::string stream_id;
        std::deque<LaneMessage> queue;
        bool busy = false;  // a runner is working through the queue
        std::shared_ptr<Generation> running;
        std::string running_id, last_id;
        std::vector<Steer> steers;  // accepted for the running response
        bool steered = false;       // a steer stopped the running response
        Session session;
        uint64_t used = 0;
    };

    awaitable<void> websocket(beast::tcp_stream stream, Request req);  // websocket.cpp

    // ---- connections (server.cpp) ----------------------------------------------------------

    awaitable<void> dispatch(beast::tcp_stream& s, const Request& req, std::string& route);
    awaitable<void> connection(tcp::socket sock);
    awaitable<void> accept_loop();
    void begin_stop();
    void drain(clock_type::time_point deadline);
};

}  // namespace celer::server
