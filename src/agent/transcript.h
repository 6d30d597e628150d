// The session transcript: one JSON object per line, appended and flushed as the session goes,
// so a crash (or a kill) loses nothing that reached the screen. `--resume` reads it back.
//
//   {"type":"session","version":1,"workspace":"/abs/path","model":"...","started":"..."}
//   {"type":"item","item":{...}}   a conversation item, as the Responses API takes it as input
//   {"type":"delta","text":"..."}  assistant text as it streamed (superseded by the next item)
//   {"type":"clear"}               /clear or /compact: the items before it are forgotten
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace celer::agent {

using nlohmann::json;

struct LoadedSession {
    std::string workspace;
    std::vector<json> items;
    bool cut_short = false;  // it ended in streamed text with no item after it (a crash)
    size_t skipped_lines = 0;
};

class Transcript {
public:
    // Appends to `path` (created with its folders if missing).
    explicit Transcript(const std::filesystem::path& path);
    ~Transcript();
    Transcript(const Transcript&) = delete;
    Transcript& operator=(const Transcript&) = delete;

    const std::filesystem::path& path() const { return path_; }
    void session(const std::string& workspace, const std::string& model);
    void item(const json& item);
    void delta(const std::string& text);
    void clear();

private:
    void write(const json& record, bool sync);
    std::filesystem::path path_;
    std::FILE* f_ = nullptr;
};

// Reads a transcript back: the items after the last "clear", with streamed text that no item
// closed turned into an assistant message. A damaged last line (cut by a crash) is skipped;
// damage elsewhere is skipped and counted.
LoadedSession load_transcript(const std::filesystem::path& path);

// $XDG_STATE_HOME/celer/sessions (default ~/.local/state/celer/sessions).
std::filesystem::path sessions_dir();
// A new transcript's path in sessions_dir(): "YYYYmmdd-HHMMSS-PID.jsonl".
std::filesystem::path new_transcript_path();
// The newest transcript in sessions_dir() whose session ran in `workspace`, or "".
std::filesystem::path latest_transcript(const std::string& workspace);

}  // namespace celer::agent
