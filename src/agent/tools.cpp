// The read-only tools (read_file, list_files, search) and the definitions the model is given.
#include "agent/tools.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <span>
#include <unordered_map>

#include <fmt/format.h>

#include "util/error.h"


#include "agent/tool_support.h"

namespace celer::agent {

using namespace detail;

namespace {

constexpr size_t kReadMaxLines = 2000;
constexpr size_t kReadMaxBytes = 64 * 1024;
constexpr size_t kReadMaxLineBytes = 2000;
constexpr size_t kListMax = 1000;
constexpr size_t kSearchMaxMatches = 200;
constexpr size_t kSearchMaxFileBytes = 4u << 20;
constexpr size_t kSearchMaxLineBytes = 300;
// A regex that backtracks catastrophically on one line stops here instead of hanging the agent.
constexpr uint32_t kMatchLimit = 10'000'000;

// A file filter from the model: without '/', it matches file names at any depth ("*.py"); with
// one, paths relative to the listed folder or to the root (models write either).
class FileFilter {
public:
    explicit FileFilter(const std::optional<std::string>& pattern) {
        if (!pattern || pattern->empty()) return;
        std::string_view p = *pattern;
        while (p.starts_with("./")) p.remove_prefix(2);
        active_ = true;
        segs_ = split(p, '/');
        if (p.find('/') == std::string_view::npos) segs_.insert(segs_.begin(), "**");
    }
    bool matches(const std::vector<std::string>& from_root, const std::vector<std::string>& from_folder) const {
        return !active_ || glob_match(segs_, from_root) || glob_match(segs_, from_folder);
    }

private:
    bool active_ = false;
    std::vector<std::string> segs_;
};

}  // namespace

namespace {

// Files under `folder` (relative to the root, sorted), not descending into ignored folders.
// `regular_only` leaves out symlinks, which search must not follow out of the workspace.
std::vector<std::string> walk_files(const Workspace& ws, const fs::path& folder, const FileFilter& filter, bool regular_only) {
    std::vector<std::string> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const fs::path& path = it->path();
        std::error_code sec;
        const fs::file_status st = it->symlink_status(sec);
        if (sec) continue;
        if (fs::is_directory(st)) {
            if (ws.ignored(path, true)) it.disable_recursion_pending();
            continue;
        }
        if (regular_only && !fs::is_regular_file(st)) continue;
        if (ws.ignored(path, false)) continue;
        const std::string rel = ws.relative(path);
        if (filter.matches(split(rel, '/'), segments(path.lexically_relative(folder)))) files.push_back(rel);
    }
    std::sort(files.begin(), files.end());
    return files;
}

// A compiled PCRE2 pattern with its match data, freed on every path.
class Regex {
public:
    explicit Regex(const std::string& pattern) {
        int err = 0;
        PCRE2_SIZE at = 0;
        // MATCH_INVALID_UTF: a file that is not valid UTF-8 is still searched, not an error.
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
        if (!code_) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            throw Error(fmt::format("search: pattern: {} at offset {}", reinterpret_cast<const char*>(msg), at));
        }
        pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // the interpreter runs when JIT is unavailable
        data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
        context_ = pcre2_match_context_create(nullptr);
        if (!data_ || !context_) throw Error("search: out of memory");
        pcre2_set_match_limit(context_, kMatchLimit);
    }
    ~Regex() {
        pcre2_match_context_free(context_);
        pcre2_match_data_free(data_);
        pcre2_code_free(code_);
    }
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    bool find(std::string_view line, std::string_view where) {
        const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(line.data()), line.size(), 0, 0, data_, context_);
        if (rc >= 0) return true;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
            throw Error(fmt::format("search: pattern: too much backtracking at {}; simplify the pattern", where));
        return false;
    }

private:
    pcre2_code* code_ = nullptr;
    pcre2_match_data* data_ = nullptr;
    pcre2_match_context* context_ = nullptr;
};

// Appends "path:line: text" for each matching line of `content`; false once the cap is reached.
bool search_file(Regex& re, const std::string& rel, std::string_view content, std::string& out, size_t& matches) {
    size_t number = 0;
    for (std::string_view line : split_lines(content)) {
        ++number;
        line = chomp(line);
        if (!re.find(line, fmt::format("{}:{}", rel, number))) continue;
        if (matches == kSearchMaxMatches) return false;
        ++matches;
        const std::string_view shown = utf8_prefix(line, kSearchMaxLineBytes);
        out += fmt::format("{}:{}: {}{}\n", rel, number, shown, shown.size() < line.size() ? "…" : "");
    }
    return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Read-only tools

ToolResult read_file(const Workspace& ws, const json& args) {
    const Args a("read_file", args);
    const fs::path full = a.path(ws, "path", true, true);
    const size_t offset = a.positive("offset").value_or(1);
    const size_t limit = std::min(a.positive("limit").value_or(kReadMaxLines), kReadMaxLines);
    const std::string rel = ws.relative(full);
    if (fs::is_directory(full)) throw Error(fmt::format("read_file: {}: is a folder (use list_files)", rel));
    if (!fs::is_regular_file(full)) throw Error(fmt::format("read_file: {}: not a regular file", rel));
    const std::string content = read_text(full, "read_file: " + rel);
    const std::vector<std::string_view> lines = split_lines(content);
    if (lines.empty()) return {true, fmt::format("({} is empty)", rel), fmt::format("Read {} (empty)", rel)};
    if (offset > lines.size()) throw Error(fmt::format("read_file: offset: {} is past the end of {} ({} lines)", offset, rel, lines.size()));

    std::string out;
    size_t last = offset - 1;  // the last line shown, 1-based
    while (last < lines.size() && last - (offset - 1) < limit) {
        const std::string_view line = chomp(lines[last]);
        const std::string_view shown = utf8_prefix(line, kReadMaxLineBytes);
        std::string entry = fmt::format("{:>5}\t{}{}\n", last + 1, shown, shown.size() < line.size() ? " [... line cut]" : "");
        if (out.size() + entry.size() > kReadMaxBytes) break;
        out += entry;
        ++last;
    }
    if (last < lines.size())
        out += fmt::format("[showing lines {}-{} of {}; read on with offset={}]\n", offset, last, lines.size(), last + 1);
    return {true, std::move(out), fmt::format("Read {} (lines {}-{} of {})", rel, offset, last, lines.size())};
}

ToolResult list_files(const Workspace& ws, const json& args) {
    const Args a("list_files", args);
    const fs::path folder = a.path(ws, "path", false, true);
    const std::string rel = ws.relative(folder);
    if (!fs::is_directory(folder)) throw Error(fmt::format("list_files: {}: not a folder", rel));
    if (ws.ignored(folder, true)) return {true, fmt::format("(no files: {} is ignored by .gitignore)", rel), fmt::format("Listed {}: ignored", rel)};
    const std::vector<std::string> files = walk_files(ws, folder, FileFilter(a.text("pattern", false)), false);
    std::string out;
    for (size_t i = 0; i < files.size() && i < kListMax; ++i) out += files[i] + "\n";
    if (files.empty()) out = "(no files)\n";
    if (files.size() > kListMax) out += fmt::format("[... {} more files not shown; narrow the path or pattern]\n", files.size() - kListMax);
    return {true, std::move(out), fmt::format("Listed {}: {} files", rel, files.size())};
}

ToolResult search(const Workspace& ws, const json& args) {
    const Args a("search", args);
    const std::string pattern = *a.text("pattern", true);
    Regex re(pattern);
    const fs::path target = a.path(ws, "path", false, true);
    const std::string rel = ws.relative(target);
    std::string out;
    size_t matches = 0;
    if (!fs::is_directory(target)) {
        if (!fs::is_regular_file(target)) throw Error(fmt::format("search: {}: not a regular file", rel));
        if (fs::file_size(target) > kSearchMaxFileBytes) throw Error(fmt::format("search: {}: over 4 MiB; not searched", rel));
        search_file(re, rel, read_text(target, "search: " + rel), out, matches);
    } else {
        if (ws.ignored(target, true)) return {true, fmt::format("(no matches: {} is ignored by .gitignore)", rel), fmt::format("Searched {}: ignored", rel)};
        for (const std::string& file : walk_files(ws, target, FileFilter(a.text("glob", false)), true)) {
            const fs::path path = ws.root() / file;
            std::error_code ec;
            const auto size = fs::file_size(path, ec);
            if (ec || size > kSearchMaxFileBytes) continue;
            std::string content;
            try {
                content = read_bytes(path, file);
            } catch (const Error&) {
                continue;  // unreadable (permissions, vanished): not the model's concern
            }
            if (is_binary(content)) continue;
            if (!search_file(re, file, content, out, matches)) {
                out += fmt::format("[stopped at {} matches; narrow the pattern, path or glob]\n", kSearchMaxMatches);
                break;
            }
        }
    }
    if (matches == 0) out = "(no matches)\n";
    return {true, std::move(out), fmt::format("Searched {} for /{}/: {} matches", rel, pattern, matches)};
}

// ---------------------------------------------------------------------------------------------
// Definitions for the model

namespace {

json function(const char* name, const char* description, json properties, json required) {
    return {{"type", "function"},
            {"name", name},
            {"description", description},
            {"parameters", {{"type", "object"}, {"properties", std::move(properties)}, {"required", std::move(required)}, {"additionalProperties", false}}}};
}

json string_param(const char* description) { return {{"type", "string"}, {"description", description}}; }
json integer_param(const char* description) { return {{"type", "integer"}, {"minimum", 1}, {"description", description}}; }

}  // namespace

json tool_definitions() {
    json tools = json::array();
    tools.push_back(function(
        "read_file",
        "Read a text file of the workspace. Returns numbered lines, each as the line number, a tab, then the text; at most 2,000 "
        "lines or 64 KiB per call (lines over 2,000 bytes are cut). Page through long files with offset and limit.",
        {{"path", string_param("File path, relative to the workspace root.")},
         {"offset", integer_param("First line to return, 1-based (default 1).")},
         {"limit", integer_param("Number of lines to return (default and maximum 2000).")}},
        {"path"}));
    tools.push_back(function(
        "list_files",
        "List the files under a folder of the workspace, leaving out .git and whatever .gitignore excludes. Returns sorted paths "
        "relative to the workspace root, one per line, at most 1,000.",
        {{"path", string_param("Folder to list, relative to the workspace root (default: the root).")},
         {"pattern", string_param("Optional glob filter. `*` and `?` stay within one folder, `**` spans folders. Without a `/` it "
                                  "matches file names at any depth (\"*.py\"); with one, paths relative to the root (\"src/**/*.cpp\").")}},
        {}));
    tools.push_back(function(
        "search",
        "Search file contents with a regular expression (PCRE2 syntax, UTF-8), one line at a time, in the files .gitignore does "
        "not exclude. Returns `path:line: text` for each matching line, at most 200 matches; binary files and files over 4 MiB are "
        "skipped.",
        {{"pattern", string_param("Regular expression, matched against each line (escape literal characters such as `(` or `.`).")},
         {"path", string_param("Folder or file to search, relative to the workspace root (default: the root).")},
         {"glob", string_param("Optional file filter, as list_files' pattern (\"*.h\", \"src/**/*.cpp\").")}},
        {"pattern"}));
    tools.push_back(function(
        "apply_patch",
        "Edit or create one file by exact search and replace. Each edit's `search` must be copied exactly from the file as it is now "
        "(whitespace, indentation and line breaks included, without read_file's line numbers) and must occur exactly once: include "
        "enough surrounding lines to make it unique. Edits apply in order, each to the result of the ones before. If any edit does "
        "not match exactly once, nothing is written and the error says which one failed. To create a file, give one edit with an "
        "empty `search` and the whole content as `replace`. To delete text, use an empty `replace`. Files inside .git cannot be "
        "edited.",
        {{"path", string_param("File path, relative to the workspace root.")},
         {"edits",
          {{"type", "array"},
           {"minItems", 1},
           {"description", "The edits, applied in order."},
           {"items",
            {{"type", "object"},
             {"properties",
              {{"search", string_param("Exact text to find, occurring once (empty only to create a new file).")},
               {"replace", string_param("Text to put in its place.")}}},
             {"required", {"search", "replace"}},
             {"additionalProperties", false}}}}}},
        {"path", "edits"}));
    tools.push_back(function(
        "run_command",
        "Run a shell command with /bin/sh -c in the workspace folder; returns its exit status and its combined stdout and stderr "
        "(long output keeps its head and tail). It runs sandboxed: only the workspace is writable (its .git is read-only), /tmp is "
        "private and starts empty, and the network is off unless the user allowed it. stdin is empty, so avoid interactive commands.",
        {{"command", string_param("The shell command, e.g. \"make -j4 && ./run_tests\".")},
         {"timeout_s", integer_param("Seconds before the command is stopped (optional; the agent has a default).")}},
        {"command"}));
    return tools;
}

bool tool_writes(std::string_view name) { return name == "apply_patch" || name == "run_command"; }

}  // namespace celer::agent
