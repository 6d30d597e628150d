#include "agent/agent.h"

#include <poll.h>

#include <fmt/format.h>

#include "agent/sandbox.h"
#include "util/error.h"

namespace celer::agent {

namespace {

using Clock = std::chrono::steady_clock;

// A command's output is kept for the model up to this size; beyond it only the first and last
// halves stay (the model sees at most max_tool_output of it anyway; `yes` must not fill memory).
constexpr size_t kKeepOutput = 4u << 20;

void keep_bounded(std::string& output, size_t& omitted) {
    if (output.size() <= kKeepOutput + kKeepOutput / 2) return;
    const size_t drop = output.size() - kKeepOutput;
    output.erase(kKeepOutput / 2, drop);
    omitted += drop;
}

// How long a cancelled response may take to send its final event before the agent stops
// waiting for it (the server may be stuck; the user asked to stop now).
constexpr auto kCancelGrace = std::chrono::seconds(3);

json user_message(const std::string& text) {
    return {{"type", "message"}, {"role", "user"}, {"content", json::array({{{"type", "input_text"}, {"text", text}}})}};
}

json assistant_message(const std::string& text) {
    return {{"type", "message"}, {"role", "assistant"}, {"content", json::array({{{"type", "output_text"}, {"text", text}}})}};
}

std::string str_field(const json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::string join_queued(std::deque<std::string>& q) {
    std::string s;
    for (const std::string& t : q) s += (s.empty() ? "" : "\n") + t;
    q.clear();
    return s;
}

// The first lines of a tool's output for the screen (the model gets the whole, bounded text).
std::string head_lines(const std::string& s, int n) {
    size_t pos = 0;
    for (int i = 0; i < n && pos != std::string::npos; ++i) {
        pos = s.find('\n', pos);
        if (pos != std::string::npos) ++pos;
    }
    if (pos == std::string::npos || pos >= s.size()) return s;
    size_t lines = 0;
    for (size_t i = pos; i < s.size(); ++i) lines += s[i] == '\n';
    return s.substr(0, pos) + fmt::format("  ... ({} more lines)\n", lines + (s.back() != '\n'));
}

}  // namespace

Approval parse_approval(std::string_view s) {
    if (s == "ask") return Approval::Ask;
    if (s == "writes") return Approval::Writes;
    if (s == "auto") return Approval::Auto;
    throw Error(fmt::format("--approval {}: expected ask, writes or auto", s));
}

std::string_view approval_name(Approval a) {
    switch (a) {
        case Approval::Ask: return "ask";
        case Approval::Writes: return "writes";
        case Approval::Auto: return "auto";
    }
    return "?";
}

std::string default_instructions(const Workspace& ws) {
    return fmt::format(
        "You are celer code, a coding assistant working in the folder {}. Use the tools to look at the "
        "code before changing it: list_files and search to find things, read_file to read them. Change "
        "files only with apply_patch, giving search texts copied exactly from the file. Run builds and "
        "tests with run_command; commands run in a sandbox where only this folder is writable and the "
        "network is off. Keep answers short; say what you changed and how you checked it.",
        ws.root().string());
}

Agent::Agent(AgentConfig cfg, std::unique_ptr<Transport> transport, Workspace ws, Ui& ui, Transcript* transcript)
    : cfg_(std::move(cfg)), transport_(std::move(transport)), ws_(std::move(ws)), ui_(ui), transcript_(transcript) {
    if (cfg_.instructions.empty()) cfg_.instructions = default_instructions(ws_);
    status_.context_window = cfg_.context_window;
    set_phase("ready");
}

void Agent::load(std::vector<json> items) {
    items_ = std::move(items);
    last_response_id_.clear();
    // A session that ended inside a tool call (a crash, an exit) left calls with no output;
    // servers refuse a conversation like that, so each gets one saying what happened.
    std::vector<std::string> open;
    for (const json& i : items_) {
        const std::string id = str_field(i, "call_id");
        if (str_field(i, "type") == "function_call") open.push_back(id);
        if (str_field(i, "type") == "function_call_output") std::erase(open, id);
    }
    for (const std::string& id : open) add({{"type", "function_call_output"}, {"call_id", id}, {"output", "Not run: the session ended first."}});
}

void Agent::add(json item) {
    if (transcript_) transcript_->item(item);
    items_.push_back(std::move(item));
}

void Agent::set_phase(std::string p) {
    status_.phase = std::move(p);
    status_.queued = queued_.size();
    ui_.status(status_);
}

void Agent::clear() {
    items_.clear();
    queued_.clear();
    undo_.clear();
    last_response_id_.clear();
    status_.context_used = 0;
    if (transcript_) transcript_->clear();
    set_phase("ready");
}

std::string Agent::undo() {
    const std::string what = undo_last(ws_, undo_);
    add(user_message(fmt::format("(The user reverted your last edit: {})", what)));
    return what;
}

json Agent::build_request(bool summarise) {
    json r = {{"model", cfg_.model}, {"instructions", cfg_.instructions}};
    if (cfg_.max_output_tokens > 0) r["max_output_tokens"] = cfg_.max_output_tokens;
    json input = json::array();
    size_t from = 0;
    if (!summarise && transport_->persistent() && !last_response_id_.empty() && items_at_last_response_ <= items_.size()) {
        r["previous_response_id"] = last_response_id_;
        from = items_at_last_response_;
    }
    for (size_t i = from; i < items_.size(); ++i) input.push_back(items_[i]);
    if (summarise) {
        input.push_back(user_message(
            "Summarise this conversation for yourself so you can continue it later: the task, what was "
            "done (files changed, commands run and their results), what is left. Be brief and exact."));
    } else {
        r["tools"] = tool_definitions();
    }
    r["input"] = std::move(input);
    return r;
}

bool Agent::check_input(bool& exit) {
    bool interrupted = false;
    for (;;) {
        InputEvent ev = ui_.poll_input();
        if (ev.kind == InputEvent::None) return interrupted;
        if (ev.kind == InputEvent::Line && ev.text.starts_with("/")) {
            ui_.info(fmt::format("{}: commands run when the agent is ready (not queued)", ev.text));
        } else if (ev.kind == InputEvent::Line) {
            queued_.push_back(std::move(ev.text));
            ui_.info(fmt::format("queued: {} (sent at the next step; Esc sends it now)", queued_.back()));
            set_phase(status_.phase);
        } else if (ev.kind == InputEvent::Interrupt) {
            interrupted = true;
        } else {
            exit = true;
            interrupted = true;
        }
    }
}

Agent::Response Agent::stream_response(const json& request) {
    Response r;
    try {
        transport_->start(request);
    } catch (const Error& e) {
        r.error = e.what();
        return r;
    }
    set_phase("thinking");
    const Clock::time_point start = Clock::now();
    std::optional<Clock::time_point> first_token, cancelled_at;
    long long deltas = 0;
    for (bool done = false; !done;) {
        pollfd fds[2] = {{transport_->fd(), POLLIN, 0}, {ui_.input_fd(), POLLIN, 0}};
        ::poll(fds, 2, 100);
        bool exit = false;
        if (check_input(exit) && !cancelled_at) {
            r.interrupted = true;
            r.exit = exit;
            cancelled_at = Clock::now();
            transport_->cancel();
            set_phase(exit ? "exiting" : "interrupting");
        }
        r.exit = r.exit || exit;
        for (const json& e : transport_->read_events()) {
            const std::string type = str_field(e, "type");
            if (type == "response.output_text.delta") {
                const std::string d = str_field(e, "delta");
                if (!first_token) {
                    first_token = Clock::now();
                    set_phase("streaming");
                }
                ++deltas;
                r.text += d;
                if (!cancelled_at) ui_.assistant_text(d);
                if (transcript_) transcript_->delta(d);
            } else if (type == "response.output_item.done" && e.contains("item") && str_field(e["item"], "type") == "function_call") {
                r.calls.push_back(e["item"]);
            } else if (is_final_event(e)) {
                done = true;
                if (type == "error") {
                    r.error = e.contains("error") ? str_field(e["error"], "message") : "error";
                    if (r.error.empty()) r.error = e.dump();
                } else if (e.contains("response") && e["response"].is_object()) {
                    const json& resp = e["response"];
                    r.id = str_field(resp, "id");
                    r.status = str_field(resp, "status");
                    if (resp.contains("usage") && resp["usage"].is_object()) r.usage = resp["usage"];
                    if (type == "response.failed")
                        r.error = resp.contains("error") ? str_field(resp["error"], "message") : "the response failed";
                }
            }
        }
        if (cancelled_at && Clock::now() - *cancelled_at > kCancelGrace) {
            transport_->abandon();
            break;
        }
        if (first_token && deltas > 1) {
            const double secs = std::chrono::duration<double>(Clock::now() - *first_token).count();
            if (secs > 0.25) {
                status_.tok_s = double(deltas - 1) / secs;
                if (deltas % 16 == 0) set_phase(status_.phase);
            }
        }
    }
    if (r.usage.is_object()) {
        const auto count = [&](const char* k) { return r.usage.contains(k) && r.usage[k].is_number_integer() ? r.usage[k].get<long long>() : 0LL; };
        const long long in = count("input_tokens"), out = count("output_tokens");
        status_.context_used = in + out;
        if (first_token && out > 1) {
            const double secs = std::chrono::duration<double>(Clock::now() - *first_token).count();
            if (secs > 0) status_.tok_s = double(out - 1) / secs;
        }
    }
    (void)start;
    return r;
}

bool Agent::submit(const std::string& user_text) {
    add(user_message(user_text));
    const bool go_on = run_turn();
    set_phase("ready");
    return go_on;
}

void Agent::drop_queued() {
    if (queued_.empty()) return;
    ui_.info(fmt::format("not sent: {}", join_queued(queued_)));
    set_phase(status_.phase);
}

bool Agent::run_turn() {
    bool retried = false;
    for (int step = 0; step < cfg_.max_steps; ++step) {
        Response r = stream_response(build_request(false));
        if (!r.error.empty() && !retried && r.text.empty() && r.error.find("revious response") != std::string::npos) {
            last_response_id_.clear();  // the server forgot it: send the whole conversation
            retried = true;
            --step;
            continue;
        }
        if (!r.text.empty()) {
            add(assistant_message(r.text));
            ui_.assistant_end();
        }
        if (r.exit) return false;
        if (r.interrupted) {
            last_response_id_.clear();
            if (!queued_.empty()) {
                const std::string redirect = join_queued(queued_);
                ui_.info(fmt::format("interrupted; redirecting: {}", redirect));
                add(user_message(redirect));
                continue;
            }
            ui_.info("interrupted");
            return true;
        }
        if (!r.error.empty()) {
            last_response_id_.clear();
            ui_.info(fmt::format("error: {}", r.error));
            drop_queued();
            return true;
        }
        for (const json& c : r.calls)
            add({{"type", "function_call"}, {"call_id", str_field(c, "call_id")}, {"name", str_field(c, "name")},
                 {"arguments", str_field(c, "arguments")}});
        if (r.status == "completed" && !r.id.empty()) {
            last_response_id_ = r.id;
            items_at_last_response_ = items_.size();
        } else {
            last_response_id_.clear();
        }
        if (r.calls.empty() && queued_.empty()) return true;
        for (size_t i = 0; i < r.calls.size(); ++i) {
            bool interrupted = false, exit = false;
            const std::string out = run_tool(r.calls[i], interrupted, exit);
            add({{"type", "function_call_output"}, {"call_id", str_field(r.calls[i], "call_id")}, {"output", out}});
            if (!interrupted) continue;
            for (size_t j = i + 1; j < r.calls.size(); ++j)
                add({{"type", "function_call_output"}, {"call_id", str_field(r.calls[j], "call_id")}, {"output", "Not run: the user interrupted."}});
            if (exit) return false;
            if (queued_.empty()) {
                ui_.info("interrupted");
                return true;
            }
            break;
        }
        if (!queued_.empty()) {
            const std::string redirect = join_queued(queued_);
            ui_.info(fmt::format("sending: {}", redirect));
            add(user_message(redirect));
        }
    }
    ui_.info(fmt::format("stopped after {} model calls for one message (--max-steps)", cfg_.max_steps));
    drop_queued();
    return true;
}

std::string Agent::run_tool(const json& call, bool& interrupted, bool& exit) {
    const std::string name = str_field(call, "name");
    const json args = json::parse(str_field(call, "arguments"), nullptr, false);
    if (!args.is_object()) {
        ui_.info(fmt::format("{}: the model sent arguments that are not a JSON object", name));
        return "Error: the arguments are not a JSON object.";
    }
    static const std::vector<std::string> known = {"read_file", "list_files", "search", "apply_patch", "run_command"};
    if (std::find(known.begin(), known.end(), name) == known.end()) {
        ui_.info(fmt::format("the model called an unknown tool '{}'", name));
        return fmt::format("Error: there is no tool named '{}'.", name);
    }
    const bool needs = cfg_.approval == Approval::Ask || (cfg_.approval == Approval::Writes && tool_writes(name));
    if (needs) {
        std::string what;
        if (name == "run_command") {
            what = fmt::format("run `{}`{}", str_field(args, "command"), cfg_.sandbox ? " (sandboxed)" : " (NOT sandboxed)");
        } else if (name == "apply_patch") {
            what = fmt::format("edit {}", str_field(args, "path"));
            if (args.contains("edits") && args["edits"].is_array())
                for (const json& e : args["edits"])
                    what += "\n" + render_diff(str_field(args, "path"), str_field(e, "search"), str_field(e, "replace"), cfg_.color);
        } else {
            what = fmt::format("{} {}", name, args.dump());
        }
        if (cfg_.deny_unasked) {
            ui_.info(fmt::format("denied (no one to ask; --approval auto allows it): {}", what));
            return "Denied: this call needs the user's approval and no one can give it in this mode.";
        }
        set_phase("waiting for approval");
        const Answer a = ui_.ask(what);
        if (a == Answer::Interrupt) {
            interrupted = true;
            return "The user interrupted instead of answering.";
        }
        if (a == Answer::No) {
            ui_.info("denied");
            return "The user denied this call. Ask what they want instead, or try another way.";
        }
    }
    try {
        if (name == "run_command") return run_command(args, interrupted, exit);
        set_phase(name);
        if (name == "apply_patch") {
            ToolResult r = apply_patch(ws_, args, undo_, cfg_.color);
            ui_.info(r.for_user);
            return r.for_model;
        }
        ToolResult r = name == "read_file" ? read_file(ws_, args) : name == "list_files" ? list_files(ws_, args) : search(ws_, args);
        std::string shown = fmt::format("{} {}", name, args.dump());
        if (name != "read_file") shown += "\n" + head_lines(r.for_user, 8);
        ui_.info(shown);
        return r.for_model;
    } catch (const Error& e) {
        const std::string what = e.what();
        ui_.info(what.starts_with(name + ":") ? what : fmt::format("{}: {}", name, what));
        return fmt::format("Error: {}", what);
    }
}

std::string Agent::run_command(const json& args, bool& interrupted, bool& exit) {
    CommandSpec spec;
    spec.command = str_field(args, "command");
    if (spec.command.empty()) throw Error("run_command needs a non-empty 'command' string");
    spec.workspace = ws_.root();
    spec.allow_network = cfg_.allow_network;
    spec.sandbox = cfg_.sandbox;
    int timeout_s = cfg_.command_timeout_s;
    if (args.contains("timeout_s") && args["timeout_s"].is_number_integer())
        timeout_s = std::clamp(args["timeout_s"].get<int>(), 1, cfg_.command_timeout_s);
    ui_.info(fmt::format("$ {}", spec.command));
    set_phase("running command");
    RunningCommand cmd(spec);
    std::string output;
    size_t omitted = 0;
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(timeout_s);
    std::string note;
    for (;;) {
        pollfd fds[3] = {{cmd.fd(), POLLIN, 0}, {ui_.input_fd(), POLLIN, 0}, {transport_->fd(), POLLIN, 0}};
        ::poll(fds, 3, 100);
        if (fds[2].revents) transport_->service_idle();
        std::string chunk;
        const bool open = cmd.read_available(chunk);
        if (!chunk.empty()) {
            output += chunk;
            ui_.command_output(chunk);
            keep_bounded(output, omitted);
        }
        if (!open) break;
        if (check_input(exit)) {
            cmd.kill();
            interrupted = true;
            note = "[stopped: the user interrupted the command]";
            break;
        }
        if (Clock::now() > deadline) {
            cmd.kill();
            note = fmt::format("[stopped: the command ran over {} s]", timeout_s);
            break;
        }
    }
    const int status = cmd.wait();
    if (!note.empty()) ui_.info(note);
    ui_.info(fmt::format("[exit status {}]", status));
    if (omitted > 0) {  // put the marker where the bytes were dropped, for truncate_output to keep
        const size_t mid = kKeepOutput / 2;
        output.insert(mid, fmt::format("\n[... {} bytes omitted ...]\n", omitted));
    }
    std::string for_model = truncate_output(output, cfg_.max_tool_output);
    if (!for_model.empty() && for_model.back() != '\n') for_model += '\n';
    for_model += note.empty() ? "" : note + "\n";
    for_model += fmt::format("[exit status {}]", status);
    return for_model;
}

bool Agent::compact() {
    if (items_.empty()) return true;
    Response r = stream_response(build_request(true));
    if (!r.text.empty()) ui_.assistant_end();
    if (r.exit) return false;
    if (r.interrupted || !r.error.empty() || r.text.empty()) {
        ui_.info(r.error.empty() ? "compact: stopped; the conversation is unchanged" : fmt::format("compact: {}", r.error));
        return true;
    }
    std::vector<UndoRecord> keep = std::move(undo_);
    clear();
    undo_ = std::move(keep);
    add(user_message("Summary of the conversation so far (earlier turns were compacted):\n" + r.text));
    ui_.info("compacted: the summary above replaces the conversation");
    return true;
}

}  // namespace celer::agent
