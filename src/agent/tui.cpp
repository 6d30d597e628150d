#include "agent/tui.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cwchar>

#include <fmt/format.h>
#include <locale.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace celer::agent {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kDim = "\x1b[2m", kCyan = "\x1b[36m", kYellow = "\x1b[33m", kReverse = "\x1b[7m", kReset = "\x1b[0m";
// Two Ctrl-C this close together exit.
constexpr auto kDoubleCtrlC = std::chrono::seconds(2);
// A lone ESC is the Esc key unless the rest of an escape sequence follows within this time.
constexpr int kEscWaitMs = 30;

// The terminal's settings, for a signal that ends the process to put back (one Tui at a time).
int g_tty_fd = -1;
termios g_tty_saved{};

void restore_and_reraise(int sig) {
    if (g_tty_fd >= 0) ::tcsetattr(g_tty_fd, TCSANOW, &g_tty_saved);
    static const char nl[] = "\r\n";
    (void)!::write(STDOUT_FILENO, nl, 2);
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

// Decodes one UTF-8 character at s[i] (advancing i); U+FFFD for a malformed byte.
char32_t next_char(std::string_view s, size_t& i) {
    const unsigned char c = static_cast<unsigned char>(s[i++]);
    if (c < 0x80) return c;
    const int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
    if (extra < 0) return 0xfffd;
    char32_t cp = c & (0x3f >> extra);
    for (int k = 0; k < extra; ++k) {
        if (i >= s.size() || (static_cast<unsigned char>(s[i]) & 0xc0) != 0x80) return 0xfffd;
        cp = (cp << 6) | (static_cast<unsigned char>(s[i++]) & 0x3f);
    }
    return cp;
}

// Columns one character takes: wcwidth under a UTF-8 locale (CJK and emoji take two,
// combining marks none); 1 when no UTF-8 locale exists.
int char_width(char32_t cp) {
    static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(nullptr));
    if (cp < 0x80) return cp >= 0x20 ? 1 : 0;
    if (!utf8) return 1;
    const locale_t old = ::uselocale(utf8);
    const int w = ::wcwidth(wchar_t(cp));
    ::uselocale(old);
    return w < 0 ? 0 : w;
}

// Columns `s` takes on screen: colour sequences take none.
size_t visible_width(std::string_view s) {
    size_t w = 0;
    for (size_t i = 0; i < s.size();) {
        if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
            i += 2;
            while (i < s.size() && !(s[i] >= 0x40 && s[i] <= 0x7e)) ++i;
            ++i;
        } else if (s[i] == '\t') {
            w = (w / 8 + 1) * 8;
            ++i;
        } else {
            w += size_t(char_width(next_char(s, i)));
        }
    }
    return w;
}

// Text from the model or a command, made safe to print: C0 controls other than \n, \t and \r
// dropped, and every escape sequence (cursor moves, screen clears, OSC 52 clipboard writes, ...)
// except colour (SGR, when `sgr`), so nothing it prints can move the footer or the terminal.
// Text streams in pieces: a sequence cut at the end is left in `rest` for the next piece.
std::string sanitize(std::string_view in, bool sgr, std::string& rest) {
    constexpr size_t kMaxSequence = 512;  // longer "sequences" are dropped, not buffered
    std::string out;
    out.reserve(in.size());
    rest.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(in[i]);
        if (c == 0x1b) {
            const auto cut = [&] {
                if (in.size() - i < kMaxSequence) rest.assign(in.substr(i));
            };
            if (i + 1 == in.size()) {
                cut();
                break;
            }
            if (in[i + 1] == '[') {
                size_t j = i + 2;
                while (j < in.size() && !(in[j] >= 0x40 && in[j] <= 0x7e)) ++j;
                if (j == in.size()) {
                    cut();
                    break;
                }
                if (sgr && in[j] == 'm') out.append(in.substr(i, j + 1 - i));
                i = j;
            } else if (in[i + 1] == ']') {  // OSC: to BEL or ESC '\'
                size_t j = i + 2;
                while (j < in.size() && in[j] != '\a' && !(in[j] == '\x1b' && j + 1 < in.size() && in[j + 1] == '\\')) ++j;
                if (j >= in.size() || (in[j] == '\x1b' && j + 1 >= in.size())) {
                    cut();
                    break;
                }
                i = in[j] == '\x1b' ? j + 1 : j;
            } else {
                ++i;
            }
        } else if (c >= 0x20 && c != 0x7f) {
            out += char(c);
        } else if (c == '\n' || c == '\t' || c == '\r') {
            out += char(c);
        }
    }
    return out;
}

// The last `cols` columns of plain text (for an input line longer than the screen).
std::string tail_columns(const std::string& s, size_t cols) {
    size_t w = 0, i = s.size();
    while (i > 0) {
        size_t start = i - 1;
        while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xc0) == 0x80) --start;
        size_t k = start;
        const int cw = char_width(next_char(s, k));
        if (w + size_t(cw) > cols) break;
        w += size_t(cw);
        i = start;
    }
    return s.substr(i);
}

// The first `cols` columns (status lines never wrap: the footer's height must stay known).
std::string head_columns(const std::string& s, size_t cols) {
    size_t w = 0, i = 0;
    while (i < s.size()) {
        size_t k = i;
        const int cw = char_width(next_char(s, k));
        if (w + size_t(cw) > cols) break;
        w += size_t(cw);
        i = k;
    }
    return s.substr(0, i);
}

void pop_utf8(std::string& s) {
    while (!s.empty()) {
        const unsigned char c = static_cast<unsigned char>(s.back());
        s.pop_back();
        if ((c & 0xc0) != 0x80) break;
    }
}

}  // namespace

Tui::Tui(std::string title, int in_fd, int out_fd) : in_(in_fd), out_(out_fd), title_(std::move(title)) {
    if (::tcgetattr(in_, &saved_) == 0) {
        termios t = saved_;
        // No line editing, echo or signals (the agent reads Esc and Ctrl-C itself); output
        // processing stays on, so '\n' still returns the carriage.
        t.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG | IEXTEN);
        t.c_iflag &= ~tcflag_t(IXON | ICRNL | INLCR);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        raw_ = ::tcsetattr(in_, TCSAFLUSH, &t) == 0;
        if (raw_) {
            g_tty_fd = in_;
            g_tty_saved = saved_;
            for (const int sig : {SIGTERM, SIGHUP, SIGQUIT}) std::signal(sig, restore_and_reraise);
        }
    }
    draw_footer();
}

Tui::~Tui() {
    erase_footer();
    if (!partial_.empty()) write(partial_style_ + partial_ + std::string(kReset) + "\r\n");
    if (raw_) {
        ::tcsetattr(in_, TCSAFLUSH, &saved_);
        g_tty_fd = -1;
        for (const int sig : {SIGTERM, SIGHUP, SIGQUIT}) std::signal(sig, SIG_DFL);
    }
}

void Tui::write(std::string_view s) const {
    while (!s.empty()) {
        const ssize_t n = ::write(out_, s.data(), s.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        s.remove_prefix(size_t(n));
    }
}

int Tui::columns() const {
    winsize ws{};
    if (::ioctl(out_, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

void Tui::erase_footer() {
    if (footer_rows_ == 0) return;
    std::string s = "\r";
    if (footer_rows_ > 1) s += fmt::format("\x1b[{}A", footer_rows_ - 1);
    s += "\x1b[J";
    write(s);
    footer_rows_ = 0;
}

void Tui::draw_footer() {
    const size_t cols = size_t(columns());
    std::string s;
    int rows = 0;
    if (!partial_.empty()) {
        s += partial_style_ + partial_;
        s += kReset;
        s += "\r\n";
        rows += std::max(1, int((visible_width(partial_) + cols - 1) / cols));
    }
    const std::string status = head_columns(fmt::format(" {} │ {}", title_, status_text_), cols - 1);
    s += fmt::format("{}{}{}\r\n", kReverse, status, kReset);
    const std::string prompt = busy_ ? "… " : "> ";
    s += prompt + tail_columns(input_, cols - 1 - visible_width(prompt));
    rows += 2;
    write(s);
    footer_rows_ = rows;
}

void Tui::redraw() {
    erase_footer();
    draw_footer();
}

void Tui::commit_partial() {
    write(partial_style_ + partial_ + std::string(kReset) + "\r\n");
    partial_.clear();
}

void Tui::output(std::string_view text, bool sgr, std::string_view style) {
    erase_footer();
    winsize w{};
    const size_t rows = ::ioctl(out_, TIOCGWINSZ, &w) == 0 && w.ws_row > 6 ? w.ws_row : 24;
    // A line taller than the screen could not be erased and redrawn (the cursor stops at the
    // top): past this many columns it is ended where it stands.
    const size_t max_cols = size_t(columns()) * (rows - 4);
    std::string input = std::move(escape_rest_);
    input.append(text);
    for (const char c : sanitize(input, sgr, escape_rest_)) {
        if (pending_cr_) {
            pending_cr_ = false;
            if (c != '\n') partial_.clear();  // a bare '\r' restarts the line (progress bars)
        }
        if (c == '\r') {
            pending_cr_ = true;
            continue;
        }
        if (partial_.empty()) partial_style_ = std::string(style);
        if (c == '\n') {
            commit_partial();
            continue;
        }
        partial_ += c;
        if (partial_.size() > max_cols && visible_width(partial_) > max_cols) commit_partial();
    }
    draw_footer();
}

void Tui::print(std::string_view text) {
    if (!partial_.empty()) output("\n", false);
    output(text, true);
    if (!text.empty() && text.back() != '\n') output("\n", false);
}

void Tui::assistant_text(std::string_view delta) { output(delta, false); }

void Tui::assistant_end() {
    if (!partial_.empty()) output("\n", false);
}

void Tui::info(std::string_view text) {
    if (!partial_.empty()) output("\n", false);
    std::string s;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t nl = text.find('\n', start);
        const std::string_view line = text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
        if (!(nl == std::string_view::npos && line.empty() && start > 0))
            s += fmt::format("{}{}{}{}\n", kCyan, start == 0 ? "● " : "  ", line, kReset);
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }
    output(s, true);
}

void Tui::command_output(std::string_view chunk) { output(chunk, true, kDim); }

void Tui::status(const AgentStatus& st) {
    busy_ = st.phase != "ready";
    std::string s = st.phase;
    if (st.tok_s > 0) s += fmt::format(" │ {:.1f} tok/s", st.tok_s);
    if (st.context_window > 0)
        s += fmt::format(" │ ctx {}/{} ({:.0f}%)", st.context_used, st.context_window, 100.0 * double(st.context_used) / double(st.context_window));
    else if (st.context_used > 0)
        s += fmt::format(" │ ctx {}", st.context_used);
    if (st.queued > 0) s += fmt::format(" │ {} queued", st.queued);
    s += busy_ ? " │ Esc: stop" : " │ /help";
    status_text_ = std::move(s);
    redraw();
}

void Tui::set_title(std::string t) {
    title_ = std::move(t);
    redraw();
}

bool Tui::wait_key(int ms, bool serve_idle) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms < 0 ? 0 : ms);
    for (;;) {
        pollfd p[2] = {{in_, POLLIN, 0}, {serve_idle && idle_fd_ ? idle_fd_() : -1, POLLIN, 0}};
        const int left = ms < 0 ? -1 : int(std::max<long long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
        if (::poll(p, 2, left) <= 0) return false;
        if (p[1].revents && idle_service_) idle_service_();
        if (p[0].revents) return true;
        if (ms >= 0 && Clock::now() >= deadline) return false;
    }
}

void Tui::read_keys(int wait_ms, bool busy) {
    // While the agent works, its loop reads the connection itself.
    if (!wait_key(wait_ms, !busy)) return;
    char buf[4096];
    const ssize_t n = ::read(in_, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {  // the terminal went away
        events_.push_back({InputEvent::Exit, {}});
        return;
    }
    if (n < 0) return;
    pending_bytes_.append(buf, size_t(n));
    bool edited = false;
    size_t i = 0;
    while (i < pending_bytes_.size()) {
        const unsigned char c = static_cast<unsigned char>(pending_bytes_[i]);
        if (c == 0x1b) {
            if (i + 1 == pending_bytes_.size()) {
                pollfd q{in_, POLLIN, 0};
                if (::poll(&q, 1, kEscWaitMs) > 0) {
                    const ssize_t m = ::read(in_, buf, sizeof buf);
                    if (m > 0) {
                        pending_bytes_.append(buf, size_t(m));
                        continue;
                    }
                }
                events_.push_back({InputEvent::Interrupt, {}});
                ++i;
                continue;
            }
            const char next = pending_bytes_[i + 1];
            if (next == 0x1b) {  // Esc pressed, then another key sequence or Esc
                events_.push_back({InputEvent::Interrupt, {}});
                ++i;
                continue;
            }
            if (next == '[' || next == 'O') {  // a key's escape sequence (arrows, ...): skipped
                size_t j = i + 2;
                while (j < pending_bytes_.size() && !(pending_bytes_[j] >= 0x40 && pending_bytes_[j] <= 0x7e)) ++j;
                if (j == pending_bytes_.size()) break;  // the rest comes with the next read
                i = j + 1;
            } else {
                i += 2;  // Alt+key
            }
            continue;
        }
        ++i;
        if (c == 0x03) {  // Ctrl-C
            const auto now = Clock::now();
            const bool twice = last_ctrl_c_ && now - *last_ctrl_c_ < kDoubleCtrlC;
            last_ctrl_c_ = now;
            if (twice) {
                events_.push_back({InputEvent::Exit, {}});
            } else if (busy) {
                events_.push_back({InputEvent::Interrupt, {}});
            } else if (!input_.empty()) {
                input_.clear();
                edited = true;
            } else {
                info("press Ctrl-C again to exit");
            }
        } else if (c == 0x04) {  // Ctrl-D on an empty line
            if (input_.empty() && !busy) events_.push_back({InputEvent::Exit, {}});
        } else if (c == '\r' || c == '\n') {
            if (!input_.empty()) events_.push_back({InputEvent::Line, std::move(input_)});
            input_.clear();
            edited = true;
        } else if (c == 0x7f || c == 0x08) {
            pop_utf8(input_);
            edited = true;
        } else if (c == 0x15) {  // Ctrl-U
            input_.clear();
            edited = true;
        } else if (c == '\t') {
            input_ += ' ';
            edited = true;
        } else if (c >= 0x20) {
            input_ += char(c);
            edited = true;
        }
    }
    pending_bytes_.erase(0, std::min(i, pending_bytes_.size()));
    if (edited) redraw();
}

InputEvent Tui::poll_input() {
    if (events_.empty()) read_keys(0, true);
    if (events_.empty()) return {};
    InputEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

std::optional<std::string> Tui::read_line() {
    for (;;) {
        while (!events_.empty()) {
            InputEvent e = std::move(events_.front());
            events_.pop_front();
            if (e.kind == InputEvent::Exit) return std::nullopt;
            if (e.kind == InputEvent::Line) return e.text;
        }
        read_keys(-1, false);
    }
}

Answer Tui::ask(std::string_view question) {
    // Keys typed before the question shows were meant for something else: a 'y' in them must
    // not approve a command. Dropped before it shows, so an answer to it is never lost.
    ::tcflush(in_, TCIFLUSH);
    pending_bytes_.clear();
    info(fmt::format("allow? {}", question));
    output(fmt::format("{}  [y] yes  [n] no  [Esc] stop{}\n", kYellow, kReset), true);
    for (;;) {
        if (!wait_key(-1, true)) continue;
        char c = 0;
        const ssize_t n = ::read(in_, &c, 1);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            events_.push_back({InputEvent::Exit, {}});
            return Answer::Interrupt;
        }
        if (n < 0) continue;
        if (c == 'y' || c == 'Y') {
            info("approved");
            return Answer::Yes;
        }
        if (c == 'n' || c == 'N') return Answer::No;
        if (c == 0x03) {
            const auto now = Clock::now();
            if (last_ctrl_c_ && now - *last_ctrl_c_ < kDoubleCtrlC) events_.push_back({InputEvent::Exit, {}});
            last_ctrl_c_ = now;
            return Answer::Interrupt;
        }
        if (c == 0x1b) {
            // Drain an escape sequence's tail, if this ESC began one.
            pollfd q{in_, POLLIN, 0};
            char rest[64];
            if (::poll(&q, 1, kEscWaitMs) > 0 && ::read(in_, rest, sizeof rest) > 0) continue;
            return Answer::Interrupt;
        }
    }
}

void ExecUi::assistant_text(std::string_view delta) {
    std::fwrite(delta.data(), 1, delta.size(), stdout);
    std::fflush(stdout);
    if (!delta.empty()) line_open_ = delta.back() != '\n';
}

void ExecUi::assistant_end() {
    if (line_open_) std::fputc('\n', stdout);
    std::fflush(stdout);
    line_open_ = false;
}

void ExecUi::info(std::string_view text) {
    fmt::print(stderr, "● {}\n", text);
    std::fflush(stderr);
}

void ExecUi::command_output(std::string_view chunk) {
    std::fwrite(chunk.data(), 1, chunk.size(), stderr);
    std::fflush(stderr);
}

}  // namespace celer::agent
