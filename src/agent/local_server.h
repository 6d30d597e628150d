// `celer code -m MODEL`: a `celer serve` of this same binary on a free loopback port, started
// for the session and stopped with it (also when the agent dies: the child gets SIGTERM).
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace celer::agent {

class LocalServer {
public:
    // Starts `celer serve -m model --host 127.0.0.1 --port 0 extra...`, waits until it listens and
    // /health answers 200. Its log goes to `log_path`. Throws celer::Error with the log's tail
    // when it exits or does not come up within `timeout_s`.
    LocalServer(const std::string& model, const std::vector<std::string>& extra, const std::string& log_path, int timeout_s);
    ~LocalServer();
    LocalServer(const LocalServer&) = delete;
    LocalServer& operator=(const LocalServer&) = delete;

    const std::string& url() const { return url_; }  // "http://127.0.0.1:PORT/v1"

private:
    void wait_ready(const std::string& log_path, int timeout_s);
    pid_t pid_ = -1;
    std::string url_;
};

}  // namespace celer::agent
