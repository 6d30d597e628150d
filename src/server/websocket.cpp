// The WebSocket mode of the Responses API (see server_impl.h): a reader that takes every client
// event as it arrives, a runner per lane, and one writer.
#include "server/server_impl.h"

namespace celer::server {

namespace {

json error_event(const ApiError& err) {
    return {{"type", "error"}, {"code", err.code.empty() ? json(nullptr) : json(err.code)}, {"message", err.what()},
            {"param", err.param.empty() ? json(nullptr) : json(err.param)}, {"sequence_number", 0},
            {"status", err.status}, {"error", error_body(err.what(), err.type, err.param, err.code)["error"]}};
}

json steer_failed(const std::string& steer_id, const std::string& target, const json& input, const char* code, const std::string& msg) {
    json steer = {{"previous_response_id", target}, {"input", input}};
    if (!steer_id.empty()) steer["id"] = steer_id;
    return {{"type", "response.steer.failed"}, {"sequence_number", 0}, {"steer", std::move(steer)}, {"error", {{"code", code}, {"message", msg}}}};
}

}  // namespace

awaitable<void> Server::Impl::websocket(beast::tcp_stream stream, Request req) {
    ws::stream<beast::tcp_stream> sock(std::move(stream));
    sock.set_option(ws::stream_base::timeout::suggested(beast::role_type::server));
    sock.read_message_max(opt.max_body);
    sock.set_option(ws::stream_base::decorator([](ws::response_type& res) { res.set(http::field::server, "celer"); }));
    const Registered reg(sockets, sock.next_layer().socket());
    co_await sock.async_accept(req, use_awaitable);
    sock.text(true);
    const auto ex = sock.get_executor();

    LocalResponses local;
    std::map<std::string, Lane> lanes;  // by stream_id ("": the lane of events without one)
    std::unordered_map<std::string, std::vector<Steer>> pending_steers;  // by response: waiting for tool output
    std::list<Session> sessions;  // the prompts of the last responses, most recent first, for forks
    uint64_t clock = 0;
    bool closed = false;
    int runners = 0;
    Waiter runners_done(ex);
    // Events to write, in order; a full queue holds back whoever sends (a client that does
    // not read slows its own responses down). Closed once the socket fails or at the end.
    using Channel = net::experimental::channel<void(boost::system::error_code, std::string)>;
    Channel out(ex, 64);

    const auto send = [&](json e, const std::string& stream_id) -> awaitable<void> {
        if (!stream_id.empty()) e["stream_id"] = stream_id;
        co_await out.async_send(boost::system::error_code{}, dump(e), use_awaitable);  // throws once closed
    };
    const auto send_quietly = [&](json e, const std::string& stream_id) -> awaitable<void> {
        if (!stream_id.empty()) e["stream_id"] = stream_id;
        boost::system::error_code ec;
        co_await out.async_send(boost::system::error_code{}, dump(e), net::redirect_error(use_awaitable, ec));
    };
    const auto cancel_all = [&] {
        for (auto& [id, lane] : lanes)
            if (lane.running) lane.running->cancel();
    };

    // Runs a response.create: the steering input queued for its parent comes first.
    const auto run_create = [&](Lane& lane, json body) -> awaitable<void> {
        body.erase("type");
        if (body.contains("response") && body["response"].is_object()) body = json(body["response"]);  // the beta envelope
        body.erase("stream_id");
        if (body.contains("previous_response_id") && body["previous_response_id"].is_string())
            if (auto it = pending_steers.find(body["previous_response_id"].get<std::string>()); it != pending_steers.end()) {
                json input = json::array();
                for (const Steer& st : it->second)
                    for (const json& m : st.input) input.push_back(m);
                if (body.contains("input") && body["input"].is_string())
                    input.push_back({{"type", "message"}, {"role", "user"}, {"content", body["input"]}});
                else if (body.contains("input") && body["input"].is_array())
                    for (const json& m : body["input"]) input.push_back(m);
                body["input"] = std::move(input);
                pending_steers.erase(it);
            }
        // A lane continuing a response that is not its last (one of another lane, an earlier
        // one of its own) starts from that response's prompt and the model's tokens in it.
        if (body.contains("previous_response_id") && body["previous_response_id"].is_string()) {
            const std::string& prev = body["previous_response_id"].get_ref<const std::string&>();
            if (lane.session.prompt_of != prev)
                for (auto it = sessions.begin(); it != sessions.end(); ++it)
                    if (it->prompt_of == prev) {
                        lane.session = *it;
                        break;
                    }
        }
        ResponseJob job = prepare_response(body, &local, &lane.session);
        lane.steered = false;
        job.steered = &lane.steered;
        begin(job, ex);
        lane.running = job.g;
        lane.running_id = job.id;
        struct Clear {
            Lane& lane;
            ~Clear() {
                lane.last_id = std::move(lane.running_id);
                lane.running.reset(), lane.running_id.clear();
            }
        } clear{lane};
        co_await run_response(job, nullptr, &local, &lane.session, [&](const json& e) -> awaitable<void> { co_await send(e, lane.stream_id); });
        if (lane.session.prompt_of == job.id) {
            sessions.push_front(lane.session);
            if (sessions.size() > kSessionsKept) sessions.pop_back();
        }
        if (lane.steers.empty()) co_return;
        // Steering input accepted while it ran: continue from it with that input, unless
        // the response waits for the client's tool results, which the input then joins.
        std::vector<Steer> steers = std::move(lane.steers);
        lane.steers.clear();
        json required = json::array();
        for (const json& it : job.response["output"])
            if (it.value("type", "") == "function_call")
                required.push_back({{"type", "function_call_output"}, {"call_id", it["call_id"]}, {"name", it["name"]}});
        if (!required.empty()) {
            for (const Steer& st : steers) {
                json e = {{"type", "response.steer.pending"}, {"sequence_number", 0}, {"steer", {{"id", st.id}, {"previous_response_id", job.id}}},
                          {"reason", "waiting_for_required_input"}, {"required_input", required}};
                co_await send(std::move(e), lane.stream_id);
            }
            auto& q = pending_steers[job.id];
            q.insert(q.end(), steers.begin(), steers.end());
            co_return;
        }
        json next = job.body;
        next["type"] = "response.create";
        next["previous_response_id"] = job.id;
        json input = json::array();
        for (const Steer& st : steers)
            for (const json& m : st.input) input.push_back(m);
        next["input"] = std::move(input);
        LaneMessage successor;
        successor.body = std::move(next);
        successor.steers = std::move(steers);
        lane.queue.push_front(std::move(successor));
    };

    const auto run_lane = [&](Lane& lane) -> awaitable<void> {
        struct Idle {
            Lane& lane;
            ~Idle() { lane.busy = false; }
        } idle{lane};
        while (!lane.queue.empty() && !closed) {
            LaneMessage m = std::move(lane.queue.front());
            lane.queue.pop_front();
            const std::string parent = m.steers.empty() ? std::string() : m.body["previous_response_id"].get<std::string>();
            const std::optional<ApiError> err = co_await refusal_of([&]() -> awaitable<void> {
                if (m.body.is_discarded()) (void)parse_body(m.text);  // throws the parser's message
                if (!m.body.is_object()) throw ApiError(400, "a WebSocket message must be a JSON object");
                const std::string type = m.body.contains("type") && m.body["type"].is_string() ? m.body["type"].get<std::string>() : "";
                if (type == "response.cancel")
                    throw ApiError(400, "no response is running on this connection (or not the one named)", "response_id", "invalid_request_error",
                                   "response_not_running");
                if (type != "response.create") throw ApiError(400, fmt::format("unsupported event type '{}'", type), "type");
                co_await run_create(lane, std::move(m.body));
            });
            if (err) {
                if (m.steers.empty()) {
                    json e = error_event(*err);
                    co_await send(std::move(e), lane.stream_id);
                } else {
                    for (const Steer& st : m.steers) {
                        json e = steer_failed(st.id, parent, st.original, "successor_creation_failed", err->what());
                        co_await send(std::move(e), lane.stream_id);
                    }
                }
            }
            count("ws /v1/responses", err ? err->status : 200);
        }
    };

    const auto lane_for = [&](const std::string& stream_id) -> Lane* {
        auto it = lanes.find(stream_id);
        if (it == lanes.end()) {
            if (lanes.size() >= kMaxLanes) {
                auto idle = lanes.end();
                for (auto j = lanes.begin(); j != lanes.end(); ++j)
                    if (!j->second.busy && j->second.queue.empty() && (idle == lanes.end() || j->second.used < idle->second.used)) idle = j;
                if (idle == lanes.end()) return nullptr;
                lanes.erase(idle);
            }
            it = lanes.emplace(stream_id, Lane{}).first;
            it->second.stream_id = stream_id;
        }
        it->second.used = ++clock;
        return &it->second;
    };
    const auto enqueue = [&](Lane& lane, LaneMessage m) {
        lane.queue.push_back(std::move(m));
        if (lane.busy) return;
        lane.busy = true;
        ++runners;
        net::co_spawn(ex, run_lane(lane), [&](std::exception_ptr) {
            // A send failed: the socket is gone, and the generation was cancelled in drive().
            if (--runners == 0) runners_done.timer.cancel();
        });
    };

    // response.cancel: {"response_id"?, "stream_id"?}. Stops the named response, or what runs
    // on the named lane (the default lane without one). One that comes too late (the response
    // ended, its last events maybe still being written) is answered by that lane's runner, in
    // order, with response_not_running.
    const auto on_cancel = [&](const json& j, LaneMessage m) {
        const std::string rid = j.contains("response_id") && j["response_id"].is_string() ? j["response_id"].get<std::string>() : "";
        const std::string sid = j.contains("stream_id") && j["stream_id"].is_string() ? j["stream_id"].get<std::string>() : "";
        Lane* target = nullptr;
        for (auto& [id, lane] : lanes) {
            if (rid.empty() ? id == sid : (lane.running_id == rid || lane.last_id == rid)) {
                target = &lane;
                break;
            }
        }
        if (target && target->running && (rid.empty() || target->running_id == rid) && target->running->cancel()) return true;
        if (!target) target = lane_for(rid.empty() ? sid : std::string());
        if (!target) return false;
        enqueue(*target, std::move(m));
        return true;
    };

    // response.steer: queues user input for the running response named, stops it at the next
    // token, and continues it with that input as a successor response on the same lane.
    const auto on_steer = [&](const json& j) -> awaitable<void> {
        const std::string target = j.contains("previous_response_id") && j["previous_response_id"].is_string()
                                       ? j["previous_response_id"].get<std::string>() : "";
        const json input = j.value("input", json());
        for (const auto& [k, v] : j.items())
            if (k != "type" && k != "previous_response_id" && k != "input") {
                json e = steer_failed("", target, input, "invalid_input", fmt::format("'{}' is not a field of response.steer", k));
                co_await send_quietly(std::move(e), "");
                co_return;
            }
        json items;
        std::string why;
        try {
            items = parse_steer_input(input);
        } catch (const ApiError& e) {
            why = e.what();
        }
        if (!why.empty()) {
            json e = steer_failed("", target, input, "invalid_input", why);
            co_await send_quietly(std::move(e), "");
            co_return;
        }
        Lane* lane = nullptr;
        for (auto& [id, l] : lanes)
            if (!target.empty() && l.running_id == target) lane = &l;
        if (!lane) {
            bool known = local.get(target) != nullptr;
            for (auto& [id, l] : lanes) known = known || (!target.empty() && l.last_id == target);
            // (Built before the co_await: GCC 12 loses a coroutine that awaits an expression
            // holding a conditional over temporaries.)
            json e = known ? steer_failed("", target, input, "response_already_completed",
                                          fmt::format("Response '{}' has completed; send a response.create that continues it.", target))
                           : steer_failed("", target, input, "response_not_found", fmt::format("No response '{}' is running on this connection.", target));
            co_await send_quietly(std::move(e), "");
            co_return;
        }
        if (lane->steers.size() >= 16) {
            json e = steer_failed("", target, input, "too_many_pending_steers", "16 steering inputs are already queued for this response");
            co_await send_quietly(std::move(e), lane->stream_id);
            co_return;
        }
        Steer st{random_id("steer_"), std::move(items), input};
        const std::string id = st.id;
        lane->steers.push_back(std::move(st));
        if (lane->running->cancel()) lane->steered = true;
        json accepted = {{"type", "response.steer.accepted"}, {"sequence_number", 0}, {"steer", {{"id", id}, {"previous_response_id", target}}}};
        co_await send_quietly(std::move(accepted), lane->stream_id);
    };

    const auto sid_of = [](const json& j) {
        return j.is_object() && j.contains("stream_id") && j["stream_id"].is_string() ? j["stream_id"].get<std::string>() : std::string();
    };
    const auto reader = [&]() -> awaitable<void> {
        for (;;) {
            beast::flat_buffer buf;
            boost::system::error_code ec;
            co_await sock.async_read(buf, net::redirect_error(use_awaitable, ec));
            if (ec) break;  // the client is gone: what runs for it stops
            ++ws_messages;
            std::string text = beast::buffers_to_string(buf.data());
            LaneMessage m;
            m.body = json::parse(text, nullptr, false);
            if (m.body.is_discarded()) m.text = std::move(text);
            const std::string type = m.body.is_object() && m.body.contains("type") && m.body["type"].is_string() ? m.body["type"].get<std::string>() : "";
            if (type == "response.steer") {
                co_await on_steer(m.body);
                continue;
            }
            const std::string sid = sid_of(m.body);
            if (type == "response.cancel") {
                const json j = m.body;
                if (on_cancel(j, std::move(m))) continue;
            } else if (Lane* lane = lane_for(sid)) {
                enqueue(*lane, std::move(m));
                continue;
            }
            json e = error_event(ApiError(400, fmt::format("too many streams on this connection (at most {} at once)", kMaxLanes), "stream_id",
                                          "invalid_request_error", "too_many_streams"));
            co_await send_quietly(std::move(e), sid);
        }
        closed = true;
        cancel_all();
        while (runners > 0) {
            runners_done.timer.expires_at(clock_type::time_point::max());
            boost::system::error_code ec;
            co_await runners_done.timer.async_wait(net::redirect_error(use_awaitable, ec));
        }
        out.close();
    };
    const auto writer = [&]() -> awaitable<void> {
        for (;;) {
            boost::system::error_code ec;
            const std::string e = co_await out.async_receive(net::redirect_error(use_awaitable, ec));
            if (ec) co_return;  // closed
            co_await sock.async_write(net::buffer(e), net::redirect_error(use_awaitable, ec));
            if (ec) {
                // The client is gone: senders fail from now on, and their generations stop.
                cancel_all();
                out.close();
                co_return;
            }
        }
    };
    using namespace boost::asio::experimental::awaitable_operators;
    co_await (reader() && writer());
}

}  // namespace celer::server
