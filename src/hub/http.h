// The little HTTP the hub client needs, over libcurl: a GET into memory (the metadata API) and a
// resumable GET into a file (the model). Proxies come from the environment (http_proxy,
// https_proxy, no_proxy), as libcurl reads them itself.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "util/error.h"

namespace celer::hub {

// A transfer that failed below HTTP: DNS, connect, reset, stall. `unreachable` when no
// connection was ever made (no such host, refused, no route), which retrying soon will not fix.
class TransferError : public Error {
public:
    TransferError(const std::string& what, bool unreachable) : Error(what), unreachable(unreachable) {}
    bool unreachable;
};

struct Response {
    long status = 0;
    std::string body;           // the whole body for get(); the first few KiB of an error for download()
    std::string error_code;     // the hub's X-Error-Code header (RepoNotFound, GatedRepo, ...)
    std::string error_message;  // and its X-Error-Message
};

class Http {
public:
    // `token`, when not empty, goes as a bearer token to the host of each request's first URL;
    // libcurl drops it when a redirect leads to another host, port or scheme (the CDN).
    explicit Http(std::string token) : token_(std::move(token)) {}

    Response get(const std::string& url) const;

    // Writes the body of `url` into `fd` from byte `offset`, asking for the rest with a Range
    // request: 206 continues there, 200 starts the file again at zero. `offset` is updated as
    // bytes land; `on_bytes(offset)` is called after each write. Other statuses write nothing.
    Response download(const std::string& url, int fd, uint64_t& offset, const std::function<void(uint64_t)>& on_bytes) const;

private:
    std::string token_;
};

// RFC 3986 percent-encoding of everything but the unreserved characters (and '/' if keep_slash).
std::string url_encode(const std::string& s, bool keep_slash);

}  // namespace celer::hub
