// celer code: the terminal coding agent (src/agent). This file only wires flags to it: which
// server (a local `celer serve` on -m MODEL, or --url), the workspace, the transcript, and
// the front end (the TUI, or --exec for scripts).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/local_server.h"
#include "agent/net.h"
#include "agent/sandbox.h"
#include "agent/transcript.h"
#include "agent/tui.h"
#include "cli/commands.h"
#include "util/error.h"

namespace celer::cli {

namespace {

namespace fs = std::filesystem;
using namespace celer::agent;

constexpr std::string_view kHelp = R"(commands:
  /undo             put back the file the last edit changed
  /clear            forget the conversation
  /compact          replace the conversation by the model's summary of it
  /model [NAME]     show or set the model name sent to the server
  /exit             leave (also Ctrl-D, or Ctrl-C twice)
keys: Esc (or Ctrl-C) stops the model or the running command; what you type while it works is
queued and sent at its next step, or at once with Esc.)";

struct ServerInfo {
    std::string model;
    long long context_window = 0;
};

// The first model the server lists, and its context length where it says (vLLM and celer:
// max_model_len; others: context_length / context_window).
ServerInfo ask_models(const Url& url, const std::string& key) {
    ServerInfo info;
    try {
        const HttpResult r = http_request(url, "GET", url.base_path + "/models", "", key, 5000);
        const json j = json::parse(r.body, nullptr, false);
        if (r.status != 200 || !j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) return info;
        const json& m = j["data"][0];
        if (m.contains("id") && m["id"].is_string()) info.model = m["id"];
        for (const char* k : {"max_model_len", "context_length", "context_window"})
            if (m.contains(k) && m[k].is_number_integer()) info.context_window = m[k].get<long long>();
    } catch (const Error&) {
    }
    return info;
}

std::string last_assistant_text(const std::vector<json>& items) {
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
        const json& i = *it;
        if (i.value("type", "") != "message" || i.value("role", "") != "assistant" || !i.contains("content") || !i["content"].is_array()) continue;
        std::string text;
        for (const json& p : i["content"])
            if (p.is_object() && p.contains("text") && p["text"].is_string()) text += p["text"].get<std::string>();
        return text;
    }
    return {};
}

// The TUI's read-eval loop: slash commands here, everything else to the agent.
void interactive(Agent& agent, Tui& tui) {
    while (std::optional<std::string> line = tui.read_line()) {
        const std::string& l = *line;
        if (l == "/exit" || l == "/quit") return;
        if (l == "/help") {
            tui.print(kHelp);
        } else if (l == "/undo") {
            try {
                tui.info(agent.undo());
            } catch (const Error& e) {
                tui.info(fmt::format("undo: {}", e.what()));
            }
        } else if (l == "/clear") {
            agent.clear();
            tui.info("the conversation is cleared");
        } else if (l == "/compact") {
            if (!agent.compact()) return;
        } else if (l == "/model" || l.starts_with("/model ")) {
            if (l.size() > 7) agent.set_model(l.substr(7));
            tui.info(fmt::format("model: {}", agent.config().model));
            tui.set_title(fmt::format("celer code │ {} │ {} │ approval {}", agent.config().model, agent.transport_name(),
                                      approval_name(agent.config().approval)));
        } else if (l.starts_with("/")) {
            tui.info(fmt::format("unknown command {}; /help lists them", l));
        } else {
            tui.print(fmt::format("\x1b[1m> {}\x1b[0m", l));
            if (!agent.submit(l)) return;
        }
    }
}

}  // namespace

int cmd_code(Args& a) {
    AgentConfig cfg;
    const std::optional<std::string> model_file = a.value({"-m", "--model"});
    const std::optional<std::string> url_text = a.value({"--url"});
    const std::string api_key = a.value_or({"--api-key"}, "");
    const fs::path workspace = a.value_or({"--workspace", "-C"}, fs::current_path().string());
    cfg.approval = parse_approval(a.value_or({"--approval"}, "writes"));
    cfg.allow_network = a.flag({"--allow-network"});
    cfg.sandbox = !a.flag({"--no-sandbox"});
    const std::string transport_kind = a.value_or({"--transport"}, "auto");
    const std::optional<std::string> task = a.value({"--exec"});
    const bool resume = a.flag({"--resume"});
    const std::optional<std::string> session_file = a.value({"--session"});
    const std::optional<std::string> model_name = a.value({"--model-name"});
    cfg.max_steps = int(a.int_or({"--max-steps"}, cfg.max_steps, 1, 10000));
    cfg.command_timeout_s = int(a.int_or({"--command-timeout"}, cfg.command_timeout_s, 1, 86400));
    cfg.max_output_tokens = a.int_or({"--max-output-tokens"}, 0, 0, 1 << 24);
    std::vector<std::string> serve_extra;
    if (auto t = a.value({"-t", "--threads"})) serve_extra.insert(serve_extra.end(), {"-t", *t});
    if (auto c = a.value({"-c", "--ctx-size"})) serve_extra.insert(serve_extra.end(), {"-c", *c});
    a.finish();

    if (model_file && url_text) throw Error("give either -m MODEL (a local server) or --url URL, not both");
    if (!model_file && !url_text) throw Error("give -m MODEL.gguf (celer starts a local server) or --url http://HOST:PORT/v1");
    if (cfg.sandbox) {
        if (const std::string why = sandbox_problem(); !why.empty())
            throw Error(fmt::format("the command sandbox cannot run: {} (install bubblewrap, or pass --no-sandbox to run commands unconfined)", why));
    }
    // A reader that goes away (`celer code --exec ... | head`) ends the output, not the agent
    // in the middle of a command.
    std::signal(SIGPIPE, SIG_IGN);
    const bool terminal = !task && ::isatty(0) && ::isatty(1);
    if (!task && !terminal) throw Error("no terminal: give the task with --exec \"...\"");
    Workspace ws(workspace);

    std::optional<LoadedSession> loaded;
    fs::path transcript_path;
    if (resume) {
        transcript_path = session_file ? fs::path(*session_file) : latest_transcript(ws.root().string());
        if (transcript_path.empty()) throw Error(fmt::format("--resume: no earlier session in {} for {}", sessions_dir().string(), ws.root().string()));
        loaded = load_transcript(transcript_path);
    } else {
        transcript_path = session_file ? fs::path(*session_file) : new_transcript_path();
    }

    std::unique_ptr<LocalServer> local;
    if (model_file) {
        const fs::path log = sessions_dir() / fmt::format("serve-{}.log", ::getpid());
        fs::create_directories(log.parent_path());
        fmt::print(stderr, "celer code: starting celer serve on {} (log: {})\n", *model_file, log.string());
        local = std::make_unique<LocalServer>(*model_file, serve_extra, log.string(), 600);
    }
    const Url url = Url::parse(local ? local->url() : *url_text);
    const ServerInfo info = ask_models(url, api_key);
    cfg.model = model_name ? *model_name : !info.model.empty() ? info.model : "celer";
    cfg.context_window = info.context_window;
    cfg.color = terminal;
    cfg.deny_unasked = !terminal && cfg.approval != Approval::Auto;

    Transcript transcript(transcript_path);
    if (!loaded) transcript.session(ws.root().string(), cfg.model);
    std::unique_ptr<Transport> transport = connect_transport(url, api_key, transport_kind);
    const std::string title = fmt::format("celer code │ {} │ {} │ approval {}", cfg.model, transport->name(), approval_name(cfg.approval));

    if (task) {
        ExecUi ui;
        fmt::print(stderr, "celer code: {} ({}), transcript {}\n", url.host_header(), transport->name(), transcript_path.string());
        Agent agent(cfg, std::move(transport), std::move(ws), ui, &transcript);
        if (loaded) agent.load(loaded->items);
        agent.submit(*task);
        return 0;
    }
    Tui tui(title, 0, 1);
    Agent agent(cfg, std::move(transport), std::move(ws), tui, &transcript);
    tui.set_idle([&agent] { return agent.idle_fd(); }, [&agent] { agent.service_idle(); });
    tui.print(fmt::format("celer code in {} — transcript {}; /help for commands", agent.workspace().root().string(), transcript_path.string()));
    if (loaded) {
        agent.load(loaded->items);
        tui.info(fmt::format("resumed {} items{}", loaded->items.size(), loaded->cut_short ? " (the last answer was cut short)" : ""));
        if (const std::string last = last_assistant_text(loaded->items); !last.empty()) tui.print(last);
    }
    interactive(agent, tui);
    return 0;
}

}  // namespace celer::cli
