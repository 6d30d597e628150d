// run_command: a shell command run inside a bubblewrap sandbox. The workspace is writable,
// everything else (and the workspace's .git) read-only, /tmp private, the network off unless
// allowed, and the process dies with the agent. The command runs without blocking the agent:
// its merged stdout/stderr come through a non-blocking pipe the agent polls beside the
// terminal, so Esc can stop it.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace celer::agent {

struct CommandSpec {
    std::string command;                  // run by /bin/sh -c
    std::filesystem::path workspace;      // writable, and the working directory
    bool allow_network = false;
    bool sandbox = true;                  // false: run without bubblewrap (--no-sandbox)
};

// The bwrap argument vector (argv[0] = "bwrap") that runs `spec` sandboxed.
std::vector<std::string> sandbox_argv(const CommandSpec& spec);

// Why the sandbox cannot run here ("" when it can): bwrap missing, or it fails to start.
std::string sandbox_problem();

class RunningCommand {
public:
    // Starts the command in its own process group. Throws celer::Error when it cannot start.
    explicit RunningCommand(const CommandSpec& spec);
    ~RunningCommand();  // kills and reaps the process group if still running
    RunningCommand(const RunningCommand&) = delete;
    RunningCommand& operator=(const RunningCommand&) = delete;

    int fd() const { return fd_; }  // poll for POLLIN; -1 once output ended
    // Appends what output is available now to `out` without blocking; false once the output
    // has ended (the pipe closed).
    bool read_available(std::string& out);
    void kill();  // SIGKILL to the whole process group
    // Waits for the process; its exit status, or 128 + signal number.
    int wait();

private:
    pid_t pid_ = -1;
    int fd_ = -1;
    bool reaped_ = false;
    int status_ = 0;
};

// Output for the model: whole when it fits in `max_bytes`, else its head and tail with a line
// "[... N bytes (M lines) omitted ...]" between, cut at line boundaries where possible, and
// never splitting a UTF-8 character.
std::string truncate_output(std::string_view out, size_t max_bytes);

}  // namespace celer::agent
