// The tools `celer code` offers the model through function calling, and the workspace they act
// in. Every path the model names is resolved inside the workspace root (no `..`, no absolute
// path or symlink leading out); edits are atomic (a temporary file in the same folder, then
// rename) and keep what they replaced so /undo can put it back.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace celer::agent {

namespace fs = std::filesystem;
using nlohmann::json;

// What a tool call produced: the text sent back to the model (bounded in size) and the text
// shown to the user (may be longer, may carry ANSI colour when `color` was asked for).
struct ToolResult {
    bool ok = true;
    std::string for_model;
    std::string for_user;
};

class Workspace {
public:
    // `root` must be an existing folder; it is made canonical.
    explicit Workspace(const fs::path& root);
    const fs::path& root() const { return root_; }

    // A path the model named (relative to the root, or absolute) as a canonical path inside the
    // root. Throws celer::Error ("outside the workspace: ...") when it, or any symlink on the way,
    // leads out of the root. `must_exist=false` allows a file that does not exist yet (its
    // existing parent folders are still checked).
    fs::path resolve(std::string_view path, bool must_exist) const;
    // The path relative to the root with '/' separators ("." for the root).
    std::string relative(const fs::path& p) const;
    // True for `.git` and for paths matched by the root's .gitignore (and .gitignore files in
    // folders below it): `*`, `?`, `[...]`, `**`, a leading `/` anchors, a trailing `/` matches
    // folders only, `!` re-includes, `#` comments.
    bool ignored(const fs::path& p, bool is_dir) const;

private:
    // Parsed .gitignore files by folder, re-read when a file changes; shared by copies.
    struct IgnoreCache;
    fs::path root_;
    std::shared_ptr<IgnoreCache> ignore_cache_;
};

// The tools' definitions for a Responses request's "tools" array:
// [{"type": "function", "name": ..., "description": ..., "parameters": {JSON schema}}, ...]
// read_file, list_files, search, apply_patch, run_command.
json tool_definitions();

// True for tools that change files or run programs (they need approval unless automatic).
bool tool_writes(std::string_view name);

// read_file {path, offset?: first line (1-based), limit?: line count}: numbered lines, at most
// 2,000 lines or 64 KiB, saying so when cut.
ToolResult read_file(const Workspace& ws, const json& args);
// list_files {path?: folder (default root), pattern?: glob like "src/**/*.cpp"}: files under it,
// not ignored, sorted, at most 1,000 entries.
ToolResult list_files(const Workspace& ws, const json& args);
// search {pattern: regular expression (PCRE2), path?: folder or file, glob?: file filter}:
// "path:line: text" for each matching line of non-ignored text files, at most 200 matches.
ToolResult search(const Workspace& ws, const json& args);

// One applied edit: the file and what it held before (nullopt: the file did not exist).
struct UndoRecord {
    fs::path path;
    std::optional<std::string> before;
};

// apply_patch {path, edits: [{search, replace}, ...]}. Each `search` text must occur exactly
// once in the file as it is after the edits before it (else nothing is written and the error
// says which edit failed and why: not found, or found N times); an edit with an empty `search`
// on a file that does not exist creates it with `replace`. All edits are applied in memory,
// then written atomically. On success, `undo` receives the file's previous state and
// for_user shows a coloured diff (`color`) of the change.
ToolResult apply_patch(const Workspace& ws, const json& args, std::vector<UndoRecord>& undo, bool color);
// Restores the last record (atomically) and pops it; returns a line saying what it did.
std::string undo_last(const Workspace& ws, std::vector<UndoRecord>& undo);

// A line diff of `before` -> `after` with 3 lines of context, "--- a/path" / "+++ b/path" and
// "@@" hunk headers; removed lines red, added green when `color`.
std::string render_diff(std::string_view path, std::string_view before, std::string_view after, bool color);

// Writes `content` to `path` atomically: a temporary file in the same folder, flushed, then
// renamed over it (keeping the old file's permissions when it existed).
void write_atomic(const fs::path& path, std::string_view content);

}  // namespace celer::agent
