#include "agent/local_server.h"

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "agent/net.h"
#include "util/error.h"

namespace celer::agent {

namespace {

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(s.size() - n); }

}  // namespace

LocalServer::LocalServer(const std::string& model, const std::vector<std::string>& extra, const std::string& log_path, int timeout_s) {
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log < 0) throw Error(fmt::format("cannot write the server log {}", log_path));
    std::vector<std::string> args = {"celer", "serve", "-m", model, "--host", "127.0.0.1", "--port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
        ::close(log);
        throw Error("cannot start the local server: fork failed");
    }
    if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) _exit(1);  // the agent died before prctl took effect
        const int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::dup2(log, 1);
        ::dup2(log, 2);
        ::setpgid(0, 0);  // the terminal's Ctrl-C is the agent's to handle, not the server's
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv("/proc/self/exe", argv.data());
        _exit(127);
    }
    ::close(log);
    try {
        wait_ready(log_path, timeout_s);
    } catch (...) {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        throw;
    }
}

void LocalServer::wait_ready(const std::string& log_path, int timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    const std::string marker = "listening on http://";
    while (url_.empty()) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw Error(fmt::format("the local server exited while starting:\n{}", tail(read_all(log_path), 2000)));
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw Error(fmt::format("the local server did not start within {} s (log: {})", timeout_s, log_path));
        const std::string logtext = read_all(log_path);
        if (const size_t at = logtext.find(marker); at != std::string::npos) {
            const size_t end = logtext.find_first_of(" \n", at + marker.size());
            if (end != std::string::npos) url_ = "http://" + logtext.substr(at + marker.size(), end - at - marker.size()) + "/v1";
        }
        if (url_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const Url u = Url::parse(url_);
    for (;;) {
        try {
            if (http_request(u, "GET", "/health", "", "", 2000).status == 200) break;
        } catch (const Error&) {
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw Error(fmt::format("the local server did not become ready within {} s (log: {})", timeout_s, log_path));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

LocalServer::~LocalServer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
}

}  // namespace celer::agent
