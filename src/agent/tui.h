// The terminal front end: output scrolls as in any shell (so it stays in the scrollback), and
// the last lines of the screen are a footer redrawn after each write: the assistant's line
// being typed, a status line (model, transport, phase, token rate, context use, approval mode)
// and the input line. The user can type while the agent works; Enter queues a redirect, Esc
// (or one Ctrl-C) interrupts, two Ctrl-C within two seconds exit.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <termios.h>

#include "agent/agent.h"

namespace celer::agent {

class Tui final : public Ui {
public:
    Tui(std::string title, int in_fd, int out_fd);
    ~Tui() override;

    void assistant_text(std::string_view delta) override;
    void assistant_end() override;
    void info(std::string_view text) override;
    void command_output(std::string_view chunk) override;
    void status(const AgentStatus& s) override;
    Answer ask(std::string_view question) override;
    int input_fd() const override { return in_; }
    InputEvent poll_input() override;

    // Waits for the next line typed at the prompt; nullopt when the user exits.
    std::optional<std::string> read_line();
    // Another descriptor to serve while waiting for keys (the model's connection).
    void set_idle(std::function<int()> fd, std::function<void()> service) {
        idle_fd_ = std::move(fd);
        idle_service_ = std::move(service);
    }
    void set_title(std::string t);
    // Plain text printed above the footer (user messages echoed, help).
    void print(std::string_view text);

private:
    void write(std::string_view s) const;
    // Writes `text` above the footer. Controls are removed (`sgr`: colour sequences kept); '\r'
    // restarts the line, as progress bars expect; `style` colours the lines it starts.
    void output(std::string_view text, bool sgr, std::string_view style = {});
    void commit_partial();
    void erase_footer();
    void draw_footer();
    void redraw();
    int columns() const;
    // Reads what the terminal sent (waiting up to `wait_ms` for the first byte) and turns it
    // into events: `busy` says whether the agent is working (Enter queues, Ctrl-C interrupts).
    void read_keys(int wait_ms, bool busy);

    int in_, out_;
    termios saved_{};
    bool raw_ = false;
    std::string title_;
    std::string status_text_;
    std::string partial_;  // the output line not yet ended by '\n'
    std::string partial_style_;
    bool pending_cr_ = false;
    std::string escape_rest_;  // an escape sequence cut between two pieces of output
    std::string input_;
    std::string pending_bytes_;
    int footer_rows_ = 0;
    bool busy_ = false;
    std::deque<InputEvent> events_;
    std::optional<std::chrono::steady_clock::time_point> last_ctrl_c_;
    std::function<int()> idle_fd_;
    std::function<void()> idle_service_;
    // Waits for a key (up to `ms`, -1: forever), serving the idle descriptor if asked.
    bool wait_key(int ms, bool serve_idle);
};

// --exec: the answer on stdout, everything else on stderr, nothing read from the terminal.
class ExecUi final : public Ui {
public:
    void assistant_text(std::string_view delta) override;
    void assistant_end() override;
    void info(std::string_view text) override;
    void command_output(std::string_view chunk) override;
    void status(const AgentStatus&) override {}
    Answer ask(std::string_view) override { return Answer::No; }
    int input_fd() const override { return -1; }
    InputEvent poll_input() override { return {}; }

private:
    bool line_open_ = false;
};

}  // namespace celer::agent
