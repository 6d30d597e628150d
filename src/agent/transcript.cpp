#include "agent/transcript.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>

#include <fmt/format.h>
#include <unistd.h>

#include "util/error.h"

namespace celer::agent {

namespace fs = std::filesystem;

Transcript::Transcript(const fs::path& path) : path_(path) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    f_ = std::fopen(path.c_str(), "abe");  // close-on-exec: no command the agent runs may write to it
    if (!f_) throw Error(fmt::format("cannot write the transcript {}: {}", path.string(), std::strerror(errno)));
}

Transcript::~Transcript() {
    if (f_) std::fclose(f_);
}

void Transcript::write(const json& record, bool sync) {
    const std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::fwrite(line.data(), 1, line.size(), f_);
    std::fflush(f_);  // in the kernel now: a crash of this process loses nothing
    if (sync) ::fsync(fileno(f_));
}

void Transcript::session(const std::string& workspace, const std::string& model) {
    char when[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    write({{"type", "session"}, {"version", 1}, {"workspace", workspace}, {"model", model}, {"started", when}}, true);
}

void Transcript::item(const json& item) { write({{"type", "item"}, {"item", item}}, true); }
void Transcript::delta(const std::string& text) { write({{"type", "delta"}, {"text", text}}, false); }
void Transcript::clear() { write({{"type", "clear"}}, true); }

LoadedSession load_transcript(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(fmt::format("cannot read the transcript {}", path.string()));
    LoadedSession s;
    std::string pending;
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(in, line)) lines.push_back(line);
    for (size_t i = 0; i < lines.size(); ++i) {
        const json r = json::parse(lines[i], nullptr, false);
        const std::string type = r.is_object() && r.contains("type") && r["type"].is_string() ? r["type"].get<std::string>() : "";
        if (type == "session") {
            if (r.contains("workspace") && r["workspace"].is_string()) s.workspace = r["workspace"];
        } else if (type == "item" && r.contains("item") && r["item"].is_object()) {
            s.items.push_back(r["item"]);
            pending.clear();
        } else if (type == "delta" && r.contains("text") && r["text"].is_string()) {
            pending += r["text"].get<std::string>();
        } else if (type == "clear") {
            s.items.clear();
            pending.clear();
        } else if (i + 1 < lines.size() || !lines[i].empty()) {
            ++s.skipped_lines;
        }
    }
    if (!pending.empty()) {
        s.cut_short = true;
        s.items.push_back({{"type", "message"},
                           {"role", "assistant"},
                           {"content", json::array({{{"type", "output_text"}, {"text", pending}}})}});
    }
    return s;
}

fs::path sessions_dir() {
    if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x) return fs::path(x) / "celer" / "sessions";
    const char* home = std::getenv("HOME");
    return fs::path(home && *home ? home : "/tmp") / ".local" / "state" / "celer" / "sessions";
}

fs::path new_transcript_path() {
    char when[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::strftime(when, sizeof when, "%Y%m%d-%H%M%S", &tm);
    return sessions_dir() / fmt::format("{}-{}.jsonl", when, ::getpid());
}

fs::path latest_transcript(const std::string& workspace) {
    std::error_code ec;
    fs::path best;
    fs::file_time_type best_time{};
    for (const auto& e : fs::directory_iterator(sessions_dir(), ec)) {
        if (e.path().extension() != ".jsonl") continue;
        std::ifstream in(e.path());
        std::string first;
        std::getline(in, first);
        const json r = json::parse(first, nullptr, false);
        if (!r.is_object() || !r.contains("workspace") || !r["workspace"].is_string() || r["workspace"] != workspace) continue;
        const auto t = fs::last_write_time(e.path(), ec);
        if (best.empty() || t > best_time) {
            best = e.path();
            best_time = t;
        }
    }
    return best;
}

}  // namespace celer::agent
