// The agent loop, apart from any terminal: send the conversation to the model, stream its text
// to the front end, run the tools it calls (asking approval as the mode says), send the results
// back, and repeat until the model answers without calling a tool. The user can interrupt at
// any point (the running response is cancelled, the running command killed) and redirect: what
// they type while the agent works is queued and sent at the next step, or at once on interrupt.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/tools.h"
#include "agent/transcript.h"
#include "agent/transport.h"

namespace celer::agent {

enum class Approval {
    Ask,     // every tool call
    Writes,  // apply_patch and run_command (reads run freely)
    Auto,    // nothing asked: commands run inside the sandbox
};
Approval parse_approval(std::string_view s);
std::string_view approval_name(Approval a);

struct AgentConfig {
    std::string model = "celer";
    std::string instructions;  // the system prompt; empty: the built-in one
    Approval approval = Approval::Writes;
    bool allow_network = false;
    bool sandbox = true;
    bool color = false;
    bool deny_unasked = false;  // no one can answer (--exec): calls needing approval are denied
    size_t max_tool_output = 16 * 1024;  // bytes of a tool's output sent to the model
    int max_steps = 64;                  // model calls for one user message
    int command_timeout_s = 600;
    long long max_output_tokens = 0;     // per model call (0: the server's default)
    long long context_window = 0;        // tokens, when the server says (0: unknown)
};

// What the status line shows.
struct AgentStatus {
    std::string phase;  // "ready", "thinking", "streaming", "running command", ...
    double tok_s = 0;
    long long context_used = 0;
    long long context_window = 0;
    size_t queued = 0;
};

enum class Answer { Yes, No, Interrupt };

struct InputEvent {
    enum Kind { None, Interrupt, Exit, Line } kind = None;
    std::string text;
};

// The front end: the TUI, or plain streams for --exec.
class Ui {
public:
    virtual ~Ui() = default;
    virtual void assistant_text(std::string_view delta) = 0;
    virtual void assistant_end() = 0;
    virtual void info(std::string_view text) = 0;         // a line about tools, results, notices
    virtual void command_output(std::string_view chunk) = 0;
    virtual void status(const AgentStatus& s) = 0;
    virtual Answer ask(std::string_view question) = 0;    // blocks until answered
    virtual int input_fd() const = 0;                     // -1: no input while working
    virtual InputEvent poll_input() = 0;                  // non-blocking
};

class Agent {
public:
    Agent(AgentConfig cfg, std::unique_ptr<Transport> transport, Workspace ws, Ui& ui, Transcript* transcript);

    // Runs one user message to the end of the turn (or an interrupt). False when the user asked
    // to exit meanwhile.
    bool submit(const std::string& user_text);
    // Continues a resumed conversation that ended waiting for the model (or tool results).
    void load(std::vector<json> items);

    std::string undo();
    void clear();
    // Asks the model to summarise the conversation and keeps only the summary.
    bool compact();
    void set_model(std::string m) { cfg_.model = std::move(m); }
    const AgentConfig& config() const { return cfg_; }
    const std::vector<json>& items() const { return items_; }
    const AgentStatus& status() const { return status_; }
    Workspace& workspace() { return ws_; }
    std::string transport_name() const { return transport_->name(); }
    // The connection to watch while the agent waits for the user (-1: none), and what to do when
    // it is readable: answer pings, notice a close.
    int idle_fd() const { return transport_->fd(); }
    void service_idle() { transport_->service_idle(); }

private:
    enum class Outcome { Done, ToolCalls, Interrupted, Failed, Exit };
    struct Response {
        std::string text;
        std::vector<json> calls;  // function_call items
        std::string id;
        std::string status;
        json usage;
        bool interrupted = false;
        bool exit = false;
        std::string error;
    };

    bool run_turn();
    Response stream_response(const json& request);
    json build_request(bool summarise);
    void add(json item);
    // Polls the terminal: handles a typed line (queued), an interrupt, an exit. True on interrupt.
    bool check_input(bool& exit);
    // A tool call's output for the model; sets `interrupted` when the user stopped it.
    std::string run_tool(const json& call, bool& interrupted, bool& exit);
    std::string run_command(const json& args, bool& interrupted, bool& exit);
    void set_phase(std::string p);
    // Queued input that no step will send (the turn ended in an error): said, then dropped.
    void drop_queued();

    AgentConfig cfg_;
    std::unique_ptr<Transport> transport_;
    Workspace ws_;
    Ui& ui_;
    Transcript* transcript_;
    std::vector<json> items_;
    std::vector<UndoRecord> undo_;
    std::deque<std::string> queued_;
    AgentStatus status_;
    // Server-side state: the last response the server holds, and how many items it covers.
    std::string last_response_id_;
    size_t items_at_last_response_ = 0;
};

// The built-in system prompt.
std::string default_instructions(const Workspace& ws);

}  // namespace celer::agent
