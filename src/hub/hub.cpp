#include "hub/hub.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "hub/http.h"
#include "hub/sha256.h"
#include "util/error.h"

namespace celer::hub {
namespace fs = std::filesystem;

namespace {

// Retries after a failure with no progress since the previous one: 0.5, 1, 2, 4 and 8 s apart,
// long enough to ride out a dropped connection or a CDN hiccup, short enough to give up in 16 s.
constexpr int kMaxRetries = 5;

struct RemoteFile {
    uint64_t size = 0;
    std::string sha256;  // empty for a file stored without LFS: only its size can be checked
};

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

std::string trimmed(std::string s) {
    const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
    s.erase(std::find_if_not(s.rbegin(), s.rend(), space).base(), s.end());
    s.erase(s.begin(), std::find_if_not(s.begin(), s.end(), space));
    return s;
}

void wait_before_retry(int failures, const std::string& why, const PullOptions& o) {
    const double seconds = std::min(8.0, 0.5 * double(1 << failures));
    o.note(fmt::format("{}; retrying in {} s", why, seconds));
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// Turns a hub error reply into a message that says what to do about it.
[[noreturn]] void throw_hub_error(const Response& r, const ModelRef& ref) {
    const std::string says = r.error_message.empty() ? "" : fmt::format(" (the hub says: {})", r.error_message);
    const std::string no_token = token().empty() ? "set HF_TOKEN to an access token from https://huggingface.co/settings/tokens"
                                                 : "the token in HF_TOKEN has no access to it";
    if (r.error_code == "GatedRepo")
        throw Error(fmt::format("{} is gated: accept its terms at {}/{}, and {}{}", ref.repo, endpoint(), ref.repo, no_token, says));
    if (r.error_code == "RepoNotFound")
        throw Error(fmt::format("{}: no such repository (or it is private: {}){}", ref.repo, no_token, says));
    if (r.error_code == "EntryNotFound")
        throw Error(fmt::format("{}@{}: no file {}{}", ref.repo, ref.revision, ref.file, says));
    if (r.error_code == "RevisionNotFound")
        throw Error(fmt::format("{}: no such revision '{}'{}", ref.repo, ref.revision, says));
    if (r.status == 401 || r.status == 403)
        throw Error(fmt::format("{}: access denied (HTTP {}): the repository is private or gated, or does not exist; {}{}", ref.repo,
                                r.status, no_token, says));
    if (r.status == 404) throw Error(fmt::format("{}: no such repository or revision '{}'{}", ref.repo, ref.revision, says));
    throw Error(fmt::format("{}: HTTP {} from {}{}: {}", ref.repo, r.status, endpoint(), says, r.body.substr(0, 200)));
}

// The tree API, retried like a download, except that a host that cannot be reached at all ends
// it at once: offline is an answer, not a hiccup.
Response get_tree(const Http& http, const std::string& url, const PullOptions& o) {
    for (int failures = 0;; ++failures) {
        std::string why;
        try {
            Response r = http.get(url);
            if ((r.status < 500 && r.status != 429) || failures == kMaxRetries) return r;
            why = fmt::format("HTTP {} from {}", r.status, url);
        } catch (const TransferError& e) {
            if (e.unreachable) throw Error(fmt::format("cannot reach {} ({}); {}", endpoint(), e.what(), local_models_line()));
            if (failures == kMaxRetries) throw Error(fmt::format("{}: {}", url, e.what()));
            why = e.what();
        }
        wait_before_retry(failures, why, o);
    }
}

// The file's entry in its folder's listing: [{type, path, size, oid, lfs: {oid, size}}, ...],
// lfs.oid being the sha256 of the content.
RemoteFile pick_file(const nlohmann::json& tree, const ModelRef& ref) {
    if (!tree.is_array()) throw Error(fmt::format("{}: unexpected reply from the tree API", ref.repo));
    const std::string split_prefix = ref.file.substr(0, ref.file.size() - 5) + "-00001-of-";
    std::vector<std::string> ggufs;
    bool split = false;
    for (const auto& e : tree) {
        if (!e.is_object() || e.value("type", "") != "file") continue;
        const std::string path = e.value("path", "");
        if (path == ref.file) {
            const auto& lfs = e.contains("lfs") && e["lfs"].is_object() ? e["lfs"] : e;
            RemoteFile f{lfs.value("size", uint64_t(0)), e.contains("lfs") ? lfs.value("oid", "") : ""};
            const bool hex = std::all_of(f.sha256.begin(), f.sha256.end(), [](char c) { return std::isxdigit(uint8_t(c)); });
            if (!f.sha256.empty() && (f.sha256.size() != 64 || !hex))
                throw Error(fmt::format("{}: the hub's sha256 of {} is not one: '{}'", ref.repo, ref.file, f.sha256));
            std::transform(f.sha256.begin(), f.sha256.end(), f.sha256.begin(), [](char c) { return char(std::tolower(c)); });
            return f;
        }
        split |= path.starts_with(split_prefix);
        if (path.ends_with(".gguf")) ggufs.push_back(path.substr(path.rfind('/') + 1));
    }
    const std::string where = fmt::format("{}@{}", ref.repo, ref.revision);
    if (split)
        throw Error(fmt::format("{}: {} is split into several files ({}...); split GGUF files are not supported yet", where, ref.file,
                                split_prefix));
    const std::string folder = ref.folder().empty() ? "the top folder" : ref.folder();
    if (ggufs.empty()) throw Error(fmt::format("{}: no file {}, and no .gguf files in {}", where, ref.file, folder));
    throw Error(fmt::format("{}: no file {}; the .gguf files in {}: {}{}", where, ref.file, folder, fmt::join(ggufs, ", "),
                            ref.short_name.empty() ? "" : " (choose one with --quant, or name it with hf://)"));
}

RemoteFile find_remote_file(const Http& http, const ModelRef& ref, const PullOptions& o) {
    std::string url = fmt::format("{}/api/models/{}/tree/{}", endpoint(), ref.repo, url_encode(ref.revision, false));
    if (!ref.folder().empty()) url += "/" + url_encode(ref.folder(), true);
    const Response r = get_tree(http, url, o);
    if (r.status != 200) throw_hub_error(r, ref);
    try {
        return pick_file(nlohmann::json::parse(r.body), ref);
    } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("{}: unexpected reply from {}: {}", ref.repo, url, e.what()));
    }
}

std::string resolve_url(const ModelRef& ref) {
    return fmt::format("{}/{}/resolve/{}/{}", endpoint(), ref.repo, url_encode(ref.revision, false), url_encode(ref.file, true));
}

class Fd {
public:
    Fd(const fs::path& p, int flags) : fd_(::open(p.c_str(), flags | O_CLOEXEC, 0644)) {
        if (fd_ < 0) throw Error(fmt::format("{}: cannot open: {}", p.string(), std::strerror(errno)));
    }
    ~Fd() { ::close(fd_); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// An exclusive flock on FILE.lock for the whole download, so that two pulls of one file never
// write the same .partial: the second waits, then finds the file done. The holder unlinks the
// lock file before releasing it; a waiter that then holds a lock on an unlinked file tries again.
class FileLock {
public:
    FileLock(const fs::path& p, const std::function<void()>& on_wait) : path_(p) {
        for (bool waited = false;;) {
            fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (fd_ < 0) throw Error(fmt::format("{}: cannot open: {}", p.string(), std::strerror(errno)));
            if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
                if (!std::exchange(waited, true)) on_wait();
                while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {}
            }
            struct stat held {}, named {};
            if (::fstat(fd_, &held) == 0 && ::stat(p.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
                held.st_dev == named.st_dev)
                return;
            ::close(fd_);
        }
    }
    ~FileLock() {
        ::unlink(path_.c_str());
        ::close(fd_);
    }
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    fs::path path_;
    int fd_ = -1;
};

// Fills `partial` up to the file's size, resuming from what is there, and retrying a broken
// transfer from where it broke. Keeps the .partial when it gives up, for the next try.
void download(const Http& http, const ModelRef& ref, const RemoteFile& rf, const fs::path& partial, const PullOptions& o) {
    const std::string url = resolve_url(ref);
    const Fd fd(partial, O_WRONLY | O_CREAT);
    uint64_t offset = fs::file_size(partial);
    if (offset > rf.size) {
        if (::ftruncate(fd.get(), 0) != 0) throw Error(fmt::format("{}: cannot truncate", partial.string()));
        offset = 0;
    }
    if (offset > 0 && offset < rf.size) o.note(fmt::format("resuming at {} of {}", format_size(offset), format_size(rf.size)));
    const auto progress = [&](uint64_t done) { o.progress(done, rf.size); };
    for (int failures = 0; offset < rf.size;) {
        const uint64_t before = offset;
        std::string why;
        try {
            const Response r = http.download(url, fd.get(), offset, progress);
            if (r.status == 416) {
                if (::ftruncate(fd.get(), 0) != 0) throw Error(fmt::format("{}: cannot truncate", partial.string()));
                offset = 0;
                why = "the server refused the byte range";
            } else if (r.status >= 500 || r.status == 429 || r.status == 408) {
                why = fmt::format("HTTP {}", r.status);
            } else if (r.status != 200 && r.status != 206) {
                throw_hub_error(r, ref);
            } else if (offset < rf.size) {
                why = fmt::format("the transfer ended at byte {} of {}", offset, rf.size);
            }
        } catch (const TransferError& e) {
            why = e.what();
        }
        if (why.empty()) break;
        if (offset > before) failures = 0;
        if (failures == kMaxRetries)
            throw Error(fmt::format("downloading {} failed {} times in a row, the last time: {}; run the same command again to "
                                    "resume from byte {}",
                                    url, kMaxRetries + 1, why, offset));
        wait_before_retry(failures++, fmt::format("{} (at byte {})", why, offset), o);
    }
    if (::fsync(fd.get()) != 0) throw Error(fmt::format("{}: fsync failed: {}", partial.string(), std::strerror(errno)));
}

// Checks the size and the sha256 the hub published; a file that fails is deleted, never kept.
void verify(const fs::path& partial, const RemoteFile& rf, const ModelRef& ref, const PullOptions& o) {
    const uint64_t size = fs::file_size(partial);
    std::string problem;
    if (size != rf.size) {
        problem = fmt::format("size mismatch: expected {} bytes, got {}", rf.size, size);
    } else if (!rf.sha256.empty()) {
        o.note("checking sha256");
        const std::string got = sha256_file(partial.string());
        if (got != rf.sha256) problem = fmt::format("sha256 mismatch: expected {}, got {}", rf.sha256, got);
    }
    if (problem.empty()) return;
    fs::remove(partial);
    throw Error(fmt::format("{}: {}; the download was deleted (run the command again to retry)", ref.uri(), problem));
}

std::string now_utc() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The record goes first, then the rename: a file under its final name always has one.
void install(const fs::path& partial, const fs::path& dest, const ModelRef& ref, const RemoteFile& rf) {
    write_meta(dest, PulledMeta{ref.repo, ref.file, ref.revision, rf.sha256, rf.size, now_utc(), resolve_url(ref)});
    fs::rename(partial, dest);
    const Fd dir(dest.parent_path(), O_RDONLY | O_DIRECTORY);
    ::fsync(dir.get());  // makes the rename durable; a failure here loses nothing already verified
}

fs::path pull_locked(const ModelRef& ref, const PullOptions& o) {
    const fs::path dest = cache_path(ref);
    const FileLock lock(dest.string() + ".lock", [&] { o.note(fmt::format("waiting for another celer pull of {}", ref.uri())); });
    if (is_pulled(ref)) return dest;  // the pull we waited for did it
    const Http http(token());
    const RemoteFile rf = find_remote_file(http, ref, o);
    o.note(fmt::format("pulling {} ({})", ref.uri(), format_size(rf.size)));
    const fs::path partial = dest.string() + ".partial";
    download(http, ref, rf, partial, o);
    verify(partial, rf, ref, o);
    install(partial, dest, ref, rf);
    return dest;
}

}  // namespace

std::string endpoint() {
    std::string e = env("HF_ENDPOINT") ? env("HF_ENDPOINT") : "https://huggingface.co";
    while (e.ends_with('/')) e.pop_back();
    return e;
}

std::string token() {
    if (const char* t = env("HF_TOKEN")) return trimmed(t);
    if (const char* t = env("HUGGING_FACE_HUB_TOKEN")) return trimmed(t);
    fs::path file;
    if (const char* p = env("HF_TOKEN_PATH")) file = p;
    else if (const char* h = env("HF_HOME")) file = fs::path(h) / "token";
    else if (const char* x = env("XDG_CACHE_HOME")) file = fs::path(x) / "huggingface" / "token";
    else if (const char* home = env("HOME")) file = fs::path(home) / ".cache" / "huggingface" / "token";
    std::ifstream in(file);
    std::string t;
    std::getline(in, t);
    return trimmed(t);
}

fs::path pull(const ModelRef& ref, const PullOptions& o) {
    const fs::path dest = cache_path(ref);
    if (is_pulled(ref)) return dest;
    if (env("HF_HUB_OFFLINE") && std::string_view(env("HF_HUB_OFFLINE")) != "0")
        throw Error(fmt::format("{} is not in the cache, and HF_HUB_OFFLINE is set; {}", ref.uri(), local_models_line()));
    fs::create_directories(dest.parent_path());
    try {
        return pull_locked(ref, o);
    } catch (...) {
        prune_empty_dirs(dest.parent_path());  // a misspelt name leaves no folders behind
        throw;
    }
}

std::optional<std::string> resolve_model_arg(std::string_view arg) {
    std::error_code ec;
    if (fs::exists(fs::path(arg), ec)) return std::nullopt;
    if (const auto p = local_model_path(arg)) return p->string();
    if (!is_hub_name(arg)) return std::nullopt;
    resolve_name(arg);  // a name that cannot be resolved says why
    throw Error(fmt::format("{} is not in the cache ({}); download it first: celer pull {}", arg, models_dir().string(), arg));
}

}  // namespace celer::hub
