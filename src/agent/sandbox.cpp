#include "agent/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::agent {
namespace fs = std::filesystem;
namespace {

std::string find_on_path(const std::string& name) {
    const char* env = std::getenv("PATH");
    const std::string path = env && *env ? env : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= path.size()) {
        const size_t end = std::min(path.find(':', start), path.size());
        const std::string dir = end > start ? path.substr(start, end - start) : ".";
        const std::string candidate = dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return "";
}

[[noreturn]] void child_failed(int report_fd) {
    const int e = errno;
    [[maybe_unused]] const ssize_t n = ::write(report_fd, &e, sizeof e);
    ::_exit(127);
}

// Runs in the forked child, so only async-signal-safe calls: the parent may have other threads,
// and one of them may hold the allocator's lock at the fork.
[[noreturn]] void exec_child(const char* exe, char* const* argv, const char* dir, int out_fd, int report_fd) {
    ::setpgid(0, 0);
    // Ignored signals and the signal mask survive exec. An agent that ignores SIGPIPE (as network
    // code does) would otherwise hand that on, and `yes | head` would never end.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD}) ::signal(sig, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0) child_failed(report_fd);
    if (::chdir(dir) != 0) child_failed(report_fd);
    ::execv(exe, argv);
    child_failed(report_fd);
}

void close_pair(int fds[2]) {
    ::close(fds[0]);
    ::close(fds[1]);
}

}  // namespace

std::vector<std::string> sandbox_argv(const CommandSpec& spec) {
    std::error_code ec;
    fs::path ws = fs::weakly_canonical(fs::absolute(spec.workspace), ec);
    if (ec) ws = fs::absolute(spec.workspace);
    const std::string w = ws.string();
    // --new-session: without a controlling terminal the command cannot push keystrokes into the
    // agent's terminal (TIOCSTI). The process group stays killable: --die-with-parent takes the
    // sandbox down with the bwrap process that kill() hits.
    std::vector<std::string> argv = {"bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"};
    if (!spec.allow_network) argv.push_back("--unshare-net");
    // bwrap mounts in argument order: the tmpfs on /tmp comes before the workspace bind, or it
    // would hide a workspace that lives under /tmp.
    for (const char* a : {"--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"}) argv.push_back(a);
    for (const std::string& a : {std::string("--bind"), w, w}) argv.push_back(a);
    if (fs::exists(fs::symlink_status(ws / ".git", ec))) {
        const std::string git = (ws / ".git").string();
        for (const std::string& a : {std::string("--ro-bind"), git, git}) argv.push_back(a);
    }
    for (const std::string& a : {std::string("--chdir"), w, std::string("--"), std::string("/bin/sh"), std::string("-c"), spec.command}) argv.push_back(a);
    return argv;
}

std::string sandbox_problem() {
    // Asked once per process: the answer does not change while the agent runs.
    static const std::string problem = []() -> std::string {
        if (find_on_path("bwrap").empty()) return "bwrap (bubblewrap) is not installed or not on PATH";
        try {
            std::error_code ec;
            const fs::path tmp = fs::temp_directory_path(ec);
            RunningCommand probe(CommandSpec{"true", ec ? fs::path("/") : tmp, false, true});
            std::string out;
            for (int waited_ms = 0; probe.read_available(out); waited_ms += 100) {
                if (waited_ms > 10'000) {
                    probe.kill();
                    return "bwrap did not finish `true` within 10 s";
                }
                pollfd p{probe.fd(), POLLIN, 0};
                ::poll(&p, 1, 100);
            }
            const int status = probe.wait();
            if (status == 0) return "";
            const std::string first_line = out.substr(0, out.find('\n'));
            return fmt::format("bwrap cannot create a sandbox here (exit status {}): {}", status, first_line);
        } catch (const Error& e) {
            return e.what();
        }
    }();
    return problem;
}

RunningCommand::RunningCommand(const CommandSpec& spec) {
    std::vector<std::string> args;
    std::string exe;
    if (spec.sandbox) {
        args = sandbox_argv(spec);
        exe = find_on_path("bwrap");
        if (exe.empty()) throw Error("run_command: bwrap (bubblewrap) is not on PATH; install it or run without the sandbox");
    } else {
        args = {"/bin/sh", "-c", spec.command};
        exe = "/bin/sh";
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string dir = spec.workspace.string();

    int out[2], report[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw Error(fmt::format("run_command: pipe: {}", std::strerror(errno)));
    if (::pipe2(report, O_CLOEXEC) != 0) {
        close_pair(out);
        throw Error(fmt::format("run_command: pipe: {}", std::strerror(errno)));
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int e = errno;
        close_pair(out);
        close_pair(report);
        throw Error(fmt::format("run_command: fork: {}", std::strerror(e)));
    }
    if (pid == 0) exec_child(exe.c_str(), argv.data(), dir.c_str(), out[1], report[1]);

    // Both sides set the group, so a kill() right after the constructor reaches it however the
    // two processes were scheduled. EACCES once the child has exec'd is expected.
    ::setpgid(pid, pid);
    ::close(out[1]);
    ::close(report[1]);
    // The report pipe closes on a successful exec (CLOEXEC) and carries errno when it failed.
    int child_errno = 0;
    ssize_t n;
    do n = ::read(report[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    ::close(report[0]);
    pid_ = pid;
    fd_ = out[0];
    if (n == sizeof child_errno) {
        wait();
        ::close(fd_);
        fd_ = -1;
        throw Error(fmt::format("run_command: cannot start {} in {}: {}", exe, dir, std::strerror(child_errno)));
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

RunningCommand::~RunningCommand() {
    if (pid_ > 0 && !reaped_) {
        kill();
        wait();
    }
    if (fd_ >= 0) ::close(fd_);
}

bool RunningCommand::read_available(std::string& out) {
    if (fd_ < 0) return false;
    // A bound per call keeps a command that writes without pause from holding the agent here.
    char buf[64 * 1024];
    for (size_t taken = 0; taken < (1u << 20);) {
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n > 0) {
            out.append(buf, size_t(n));
            taken += size_t(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            ::close(fd_);
            fd_ = -1;
            return false;
        }
    }
    return true;
}

void RunningCommand::kill() {
    // Until it is reaped the group id cannot be reused, so this never hits a stranger.
    if (pid_ > 0 && !reaped_) ::killpg(pid_, SIGKILL);
}

int RunningCommand::wait() {
    if (reaped_) return status_;
    int st = 0;
    pid_t r;
    do r = ::waitpid(pid_, &st, 0);
    while (r < 0 && errno == EINTR);
    reaped_ = true;
    if (r < 0) status_ = -1;  // reaped elsewhere (SIGCHLD ignored): the status is lost
    else if (WIFEXITED(st)) status_ = WEXITSTATUS(st);
    else if (WIFSIGNALED(st)) status_ = 128 + WTERMSIG(st);
    else status_ = -1;
    return status_;
}

namespace {

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

std::string truncate_output(std::string_view out, size_t max_bytes) {
    if (out.size() <= max_bytes) return std::string(out);
    // Room for the marker line, sized for the largest counts it could show.
    const size_t total_lines = size_t(std::count(out.begin(), out.end(), '\n')) + 1;
    const size_t reserve = fmt::format("\n[... {} bytes ({} lines) omitted ...]\n", out.size(), total_lines).size();
    const size_t budget = max_bytes > reserve ? max_bytes - reserve : 0;
    const size_t head_max = budget / 2, tail_max = budget - head_max;

    // The head ends after a newline in the second half of its room, else at a character boundary.
    size_t head = head_max;
    const size_t nl = head_max ? out.rfind('\n', head_max - 1) : std::string_view::npos;
    if (nl != std::string_view::npos && nl + 1 >= head_max / 2) head = nl + 1;
    else
        while (head > 0 && continuation(out[head])) --head;

    // The tail starts after a newline in the first half of its room, else at a character boundary.
    size_t tail = out.size() - tail_max;
    const size_t tnl = out.find('\n', tail > 0 ? tail - 1 : 0);
    if (tail_max > 0 && tnl != std::string_view::npos && tnl + 1 <= tail + tail_max / 2) tail = tnl + 1;
    else
        while (tail < out.size() && continuation(out[tail])) ++tail;
    tail = std::max(tail, head);

    const std::string_view omitted = out.substr(head, tail - head);
    const size_t lines = size_t(std::count(omitted.begin(), omitted.end(), '\n')) + (omitted.empty() || omitted.back() == '\n' ? 0 : 1);
    std::string result(out.substr(0, head));
    if (!result.empty() && result.back() != '\n') result += '\n';
    result += fmt::format("[... {} bytes ({} lines) omitted ...]\n", omitted.size(), lines);
    result += out.substr(tail);
    return result;
}

}  // namespace celer::agent
