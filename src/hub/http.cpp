#include "hub/http.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <curl/curl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace celer::hub {
namespace {

// A metadata reply is a few KiB; a cap keeps a misbehaving server from filling memory.
constexpr size_t kMaxBody = 64u << 20;
constexpr size_t kMaxErrorBody = 4096;

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    return true;
}

// What both callbacks see of the response in progress. Following a redirect starts a new
// response, so everything here is reset at each status line.
struct Transfer {
    CURL* curl = nullptr;
    Response r;
    std::string content_range;
    bool in_body = false;  // the first body byte of the current response has been seen
    std::string fatal;     // why a callback stopped the transfer (not a network failure)
    // download() only:
    int fd = -1;
    uint64_t* offset = nullptr;
    const std::function<void(uint64_t)>* on_bytes = nullptr;
};

size_t on_header(char* p, size_t size, size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const std::string_view line(p, size * n);
    if (line.starts_with("HTTP/")) {
        t.r = Response{};
        t.content_range.clear();
        t.in_body = false;
        return line.size();
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return line.size();
    const auto name = trim(line.substr(0, colon));
    const auto value = std::string(trim(line.substr(colon + 1)));
    if (iequals(name, "x-error-code")) t.r.error_code = value;
    else if (iequals(name, "x-error-message")) t.r.error_message = value;
    else if (iequals(name, "content-range")) t.content_range = value;
    return line.size();
}

size_t on_text(char* p, size_t size, size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    if (t.r.body.size() + size * n > kMaxBody) {
        t.fatal = fmt::format("the reply is larger than {} MiB", kMaxBody >> 20);
        return 0;
    }
    t.r.body.append(p, size * n);
    return size * n;
}

// "bytes START-END/TOTAL" -> START.
uint64_t range_start(const std::string& content_range) {
    if (!content_range.starts_with("bytes ")) return UINT64_MAX;
    char* end = nullptr;
    const unsigned long long start = std::strtoull(content_range.c_str() + 6, &end, 10);
    return *end == '-' ? start : UINT64_MAX;
}

// The first byte of a response decides where its bytes go: 206 continues at the offset asked
// for, 200 is the whole file again, anything else is an error whose body is kept for the message.
bool start_body(Transfer& t) {
    t.in_body = true;
    curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &t.r.status);
    if (t.r.status == 200 && *t.offset != 0) {
        if (::ftruncate(t.fd, 0) != 0) {
            t.fatal = fmt::format("cannot truncate the download: {}", std::strerror(errno));
            return false;
        }
        *t.offset = 0;
    }
    if (t.r.status == 206 && range_start(t.content_range) != *t.offset) {
        t.fatal = fmt::format("asked for bytes from {} and got Content-Range '{}'", *t.offset, t.content_range);
        return false;
    }
    return true;
}

size_t on_file(char* p, size_t size, size_t n, void* user) {
    auto& t = *static_cast<Transfer*>(user);
    const size_t len = size * n;
    if (!t.in_body && !start_body(t)) return 0;
    if (t.r.status != 200 && t.r.status != 206) {
        t.r.body.append(p, std::min(len, kMaxErrorBody - std::min(kMaxErrorBody, t.r.body.size())));
        return len;
    }
    for (size_t done = 0; done < len;) {
        const ssize_t w = ::pwrite(t.fd, p + done, len - done, off_t(*t.offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            t.fatal = fmt::format("cannot write the download: {}", std::strerror(errno));
            return 0;
        }
        done += size_t(w);
    }
    *t.offset += len;
    (*t.on_bytes)(*t.offset);
    return len;
}

bool unreachable(CURLcode rc) {
    return rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_COULDNT_CONNECT;
}

// One request: the options every hub request shares, then perform. Throws TransferError when
// curl fails, or Error when a callback stopped it.
class Request {
public:
    Request(const std::string& url, const std::string& token, Transfer& t) : t_(t) {
        // curl_global_init is not thread-safe on old libcurls; a function-local static runs it once.
        static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (init != CURLE_OK || !(c_ = curl_easy_init())) throw Error("cannot initialise libcurl");
        t.curl = c_;
        curl_easy_setopt(c_, CURLOPT_URL, url.c_str());
        curl_easy_setopt(c_, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c_, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(c_, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c_, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c_, CURLOPT_CONNECTTIMEOUT, 30L);
        // A transfer under 1 KB/s for 30 s is treated as dead, so the caller retries it rather than hang.
        curl_easy_setopt(c_, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(c_, CURLOPT_LOW_SPEED_TIME, 30L);
        curl_easy_setopt(c_, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c_, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(c_, CURLOPT_USERAGENT, "celer");
        curl_easy_setopt(c_, CURLOPT_ERRORBUFFER, err_);
        curl_easy_setopt(c_, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c_, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(c_, CURLOPT_WRITEDATA, &t);
        // A custom Authorization header is sent only to the first URL's host, port and scheme
        // (libcurl >= 7.83 without CURLOPT_UNRESTRICTED_AUTH), so the CDN a download is
        // redirected to never sees the token.
        if (!token.empty()) {
            headers_ = curl_slist_append(nullptr, fmt::format("Authorization: Bearer {}", token).c_str());
            curl_easy_setopt(c_, CURLOPT_HTTPHEADER, headers_);
        }
    }
    ~Request() {
        curl_slist_free_all(headers_);
        curl_easy_cleanup(c_);
    }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;

    CURL* handle() { return c_; }

    void perform() {
        const CURLcode rc = curl_easy_perform(c_);
        if (!t_.fatal.empty()) throw Error(t_.fatal);
        if (rc != CURLE_OK) throw TransferError(err_[0] ? err_ : curl_easy_strerror(rc), unreachable(rc));
        curl_easy_getinfo(c_, CURLINFO_RESPONSE_CODE, &t_.r.status);
    }

private:
    Transfer& t_;
    CURL* c_ = nullptr;
    curl_slist* headers_ = nullptr;
    char err_[CURL_ERROR_SIZE] = {};
};

}  // namespace

Response Http::get(const std::string& url) const {
    Transfer t;
    Request req(url, token_, t);
    curl_easy_setopt(req.handle(), CURLOPT_WRITEFUNCTION, on_text);
    curl_easy_setopt(req.handle(), CURLOPT_ACCEPT_ENCODING, "");
    req.perform();
    return t.r;
}

Response Http::download(const std::string& url, int fd, uint64_t& offset, const std::function<void(uint64_t)>& on_bytes) const {
    Transfer t;
    t.fd = fd;
    t.offset = &offset;
    t.on_bytes = &on_bytes;
    Request req(url, token_, t);
    curl_easy_setopt(req.handle(), CURLOPT_WRITEFUNCTION, on_file);
    const std::string range = fmt::format("{}-", offset);
    if (offset) curl_easy_setopt(req.handle(), CURLOPT_RANGE, range.c_str());
    req.perform();
    // An empty body never reached on_file: a 200 for an empty file must still truncate.
    if (!t.in_body && t.r.status == 200 && offset) {
        if (::ftruncate(fd, 0) != 0) throw Error(fmt::format("cannot truncate: {}", std::strerror(errno)));
        offset = 0;
    }
    return t.r;
}

std::string url_encode(const std::string& s, bool keep_slash) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) out += char(c);
        else out += fmt::format("%{:02X}", c);
    }
    return out;
}

}  // namespace celer::hub
