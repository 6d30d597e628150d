#include "agent/tools.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fcntl.h>
#include <fnmatch.h>
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

namespace celer::agent {
namespace {

// A NUL byte in the first 8 KiB marks a file as binary: the same test git and grep use.
constexpr size_t kBinaryProbe = 8 * 1024;
constexpr size_t kMaxReadBytes = 32u << 20;
constexpr size_t kReadMaxLines = 2000;
constexpr size_t kReadMaxBytes = 64 * 1024;
constexpr size_t kReadMaxLineBytes = 2000;
constexpr size_t kListMax = 1000;
constexpr size_t kSearchMaxMatches = 200;
constexpr size_t kSearchMaxFileBytes = 4u << 20;
constexpr size_t kSearchMaxLineBytes = 300;
// A regex that backtracks catastrophically on one line stops here instead of hanging the agent.
constexpr uint32_t kMatchLimit = 10'000'000;
constexpr size_t kDiffContext = 3;
// The LCS table is (n+1)(m+1) 32-bit cells for the changed middle: 4M cells is 16 MB, about
// 2,000 x 2,000 lines. Past that the diff shows the middle as removed, then added.
constexpr size_t kDiffMaxCells = 4'000'000;

// ---------------------------------------------------------------------------------------------
// Small helpers

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t end = std::min(s.find(sep, start), s.size());
        if (end > start) out.emplace_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// Lines of `text`, each with its '\n' when it has one, so that a last line without a newline
// differs from the same line with one.
std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    size_t start = 0;
    while (start < text.size()) {
        const size_t nl = text.find('\n', start);
        const size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
        lines.push_back(text.substr(start, end - start));
        start = end;
    }
    return lines;
}

std::string_view chomp(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

// The longest prefix of `s` of at most `max` bytes that does not split a UTF-8 character.
std::string_view utf8_prefix(std::string_view s, size_t max) {
    if (s.size() <= max) return s;
    size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    return s.substr(0, end);
}

bool is_binary(std::string_view content) {
    return std::memchr(content.data(), 0, std::min(content.size(), kBinaryProbe)) != nullptr;
}

std::string read_bytes(const fs::path& path, std::string_view shown) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(fmt::format("{}: cannot open", shown));
    in.seekg(0, std::ios::end);
    const auto size = static_cast<size_t>(in.tellg());
    if (size > kMaxReadBytes) throw Error(fmt::format("{}: too large ({} bytes; the limit is {} MiB)", shown, size, kMaxReadBytes >> 20));
    in.seekg(0);
    std::string s(size, '\0');
    in.read(s.data(), static_cast<std::streamsize>(size));
    s.resize(static_cast<size_t>(in.gcount()));
    return s;
}

std::string read_text(const fs::path& path, std::string_view shown) {
    std::string s = read_bytes(path, shown);
    if (is_binary(s)) throw Error(fmt::format("{}: binary file (it has NUL bytes); not shown", shown));
    return s;
}

bool inside(const fs::path& root, const fs::path& p) {
    return std::mismatch(root.begin(), root.end(), p.begin(), p.end()).first == root.end();
}

std::vector<std::string> segments(const fs::path& rel) {
    std::vector<std::string> out;
    for (const auto& part : rel) {
        const std::string s = part.string();
        if (!s.empty() && s != ".") out.push_back(s);
    }
    return out;
}

// The arguments of one tool call: untrusted JSON, so every field is checked and an error names it.
class Args {
public:
    Args(std::string_view tool, const json& j) : tool_(tool), j_(j) {
        if (!j.is_object()) throw Error(fmt::format("{}: the arguments must be a JSON object", tool));
    }
    const json* get(const char* field) const {
        const auto it = j_.find(field);
        return it == j_.end() || it->is_null() ? nullptr : &*it;
    }
    std::optional<std::string> text(const char* field, bool required) const {
        const json* v = get(field);
        if (!v) {
            if (required) throw Error(fmt::format("{}: {}: missing (a string is required)", tool_, field));
            return std::nullopt;
        }
        if (!v->is_string()) throw Error(fmt::format("{}: {}: expected a string", tool_, field));
        return v->get<std::string>();
    }
    std::optional<size_t> positive(const char* field) const {
        const json* v = get(field);
        if (!v) return std::nullopt;
        if (v->is_number_unsigned() && v->get<uint64_t>() >= 1) return static_cast<size_t>(std::min<uint64_t>(v->get<uint64_t>(), SIZE_MAX));
        if (v->is_number_integer() && v->get<int64_t>() >= 1) return static_cast<size_t>(v->get<int64_t>());
        throw Error(fmt::format("{}: {}: expected an integer >= 1", tool_, field));
    }
    std::string_view tool() const { return tool_; }
    // The path argument `field` resolved in `ws`, its errors prefixed with the tool's name.
    fs::path path(const Workspace& ws, const char* field, bool required, bool must_exist) const {
        const std::string p = text(field, required).value_or(".");
        try {
            return ws.resolve(p, must_exist);
        } catch (const Error& e) {
            throw Error(fmt::format("{}: {}", tool_, e.what()));
        }
    }

private:
    std::string_view tool_;
    const json& j_;
};

// ---------------------------------------------------------------------------------------------
// Globs, shared by .gitignore patterns and the `pattern`/`glob` arguments

// `pat` and `path` are '/'-separated segments. "**" matches any number of segments; as the last
// segment it needs at least one ("dir/**" is what is inside dir, not dir itself). Other segments
// are fnmatch patterns, so `*` never crosses a '/'.
bool glob_match(std::span<const std::string> pat, std::span<const std::string> path) {
    if (pat.empty()) return path.empty();
    if (pat[0] == "**") {
        if (pat.size() == 1) return !path.empty();
        for (size_t skip = 0; skip <= path.size(); ++skip)
            if (glob_match(pat.subspan(1), path.subspan(skip))) return true;
        return false;
    }
    return !path.empty() && fnmatch(pat[0].c_str(), path[0].c_str(), 0) == 0 && glob_match(pat.subspan(1), path.subspan(1));
}

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

// ---------------------------------------------------------------------------------------------
// .gitignore

struct IgnoreRule {
    std::vector<std::string> segs;  // a pattern without '/' (but a trailing one) gets a leading "**"
    bool negate = false;
    bool dir_only = false;
};

std::optional<IgnoreRule> parse_ignore_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && line.back() == ' ' && !(line.size() >= 2 && line[line.size() - 2] == '\\')) line.remove_suffix(1);
    if (line.empty() || line[0] == '#') return std::nullopt;
    IgnoreRule r;
    if (line[0] == '!') {
        r.negate = true;
        line.remove_prefix(1);
    }
    if (!line.empty() && line.back() == '/') r.dir_only = true;
    while (!line.empty() && line.back() == '/') line.remove_suffix(1);
    // git anchors a pattern to its .gitignore's folder when a '/' remains at the start or middle.
    const bool anchored = line.find('/') != std::string_view::npos;
    r.segs = split(line, '/');
    if (r.segs.empty()) return std::nullopt;
    if (!anchored) r.segs.insert(r.segs.begin(), "**");
    return r;
}

using IgnoreRules = std::shared_ptr<const std::vector<IgnoreRule>>;

}  // namespace

struct Workspace::IgnoreCache {
    // Inode, size and mtime: write_atomic's rename gives an edited file a new inode, so an edit
    // is seen even within the mtime's granularity.
    struct Stamp {
        ino_t ino = 0;
        off_t size = -1;
        timespec mtime{};
        bool operator==(const Stamp& o) const {
            return ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
        }
    };
    struct Entry {
        Stamp stamp;
        IgnoreRules rules;
    };
    std::mutex mu;
    std::unordered_map<std::string, Entry> by_folder;  // key: folder relative to the root

    IgnoreRules rules_for(const fs::path& folder, const std::string& key) {
        const fs::path file = folder / ".gitignore";
        struct stat st {};
        Stamp stamp;
        const bool exists = ::stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode);
        if (exists) stamp = {st.st_ino, st.st_size, st.st_mtim};
        {
            std::lock_guard lock(mu);
            const auto it = by_folder.find(key);
            if (it != by_folder.end() && it->second.stamp == stamp) return it->second.rules;
        }
        auto rules = std::make_shared<std::vector<IgnoreRule>>();
        std::ifstream in(file);
        for (std::string line; exists && std::getline(in, line);)
            if (auto r = parse_ignore_line(line)) rules->push_back(std::move(*r));
        std::lock_guard lock(mu);
        by_folder[key] = {stamp, rules};
        return rules;
    }
};

// ---------------------------------------------------------------------------------------------
// Workspace

Workspace::Workspace(const fs::path& root) : ignore_cache_(std::make_shared<IgnoreCache>()) {
    std::error_code ec;
    root_ = fs::canonical(root, ec);
    if (ec || !fs::is_directory(root_)) throw Error(fmt::format("workspace: {}: not an existing folder", root.string()));
}

fs::path Workspace::resolve(std::string_view path, bool must_exist) const {
    if (path.empty()) throw Error("path: empty");
    if (path.find('\0') != std::string_view::npos) throw Error("path: contains a NUL byte");
    const fs::path p{std::string(path)};
    std::error_code ec;
    const fs::path full = fs::weakly_canonical(p.is_absolute() ? p : root_ / p, ec);
    if (ec) throw Error(fmt::format("{}: {}", path, ec.message()));
    if (!inside(root_, full)) throw Error(fmt::format("outside the workspace: {}", path));
    // weakly_canonical resolved every symlink that leads to something; one left on the path
    // dangles, and creating the file would create its target, wherever that points.
    for (fs::path q = full; q != root_ && inside(root_, q); q = q.parent_path())
        if (fs::is_symlink(fs::symlink_status(q, ec))) throw Error(fmt::format("outside the workspace: {} (through a dangling symlink)", path));
    if (must_exist && !fs::exists(full, ec)) throw Error(fmt::format("{}: no such file or folder", path));
    return full;
}

std::string Workspace::relative(const fs::path& p) const {
    const fs::path rel = (p.is_absolute() ? p : root_ / p).lexically_normal().lexically_relative(root_);
    return rel.empty() || rel == "." ? std::string(".") : rel.generic_string();
}

// Deeper .gitignore files come later and, within a file, later lines win, as in git. A path in
// an ignored folder stays ignored whatever a later `!` says: git never looks inside that folder.
bool Workspace::ignored(const fs::path& p, bool is_dir) const {
    const fs::path rel = (p.is_absolute() ? p : root_ / p).lexically_normal().lexically_relative(root_);
    if (rel.empty() || *rel.begin() == "..") return false;
    const std::vector<std::string> segs = segments(rel);
    if (std::find(segs.begin(), segs.end(), ".git") != segs.end()) return true;
    std::vector<IgnoreRules> rules;
    fs::path folder = root_;
    std::string key;
    for (size_t d = 0; d < segs.size(); ++d) {
        rules.push_back(ignore_cache_->rules_for(folder, key));
        folder /= segs[d];
        key += (d ? "/" : "") + segs[d];
    }
    const std::span<const std::string> all(segs);
    for (size_t k = 1; k <= segs.size(); ++k) {
        const bool dir = k < segs.size() || is_dir;
        bool ignore = false;
        for (size_t d = 0; d < k; ++d)
            for (const IgnoreRule& r : *rules[d])
                if ((dir || !r.dir_only) && glob_match(r.segs, all.subspan(d, k - d))) ignore = !r.negate;
        if (ignore) return true;
    }
    return false;
}

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
// Diff

namespace {

enum class Op : char { Keep = ' ', Del = '-', Add = '+' };

struct DiffLine {
    Op op;
    std::string_view text;  // with its '\n' when it has one
};

// The middle of a diff (after the common prefix and suffix) as an LCS edit script: deletions
// before insertions within each change, as diff(1) shows them.
void diff_middle(std::span<const std::string_view> a, std::span<const std::string_view> b, std::vector<DiffLine>& out) {
    const size_t n = a.size(), m = b.size();
    if (n * m > kDiffMaxCells) {
        for (auto l : a) out.push_back({Op::Del, l});
        for (auto l : b) out.push_back({Op::Add, l});
        return;
    }
    // Lines become integers first, so the table's n*m comparisons are integer compares.
    std::unordered_map<std::string_view, uint32_t> ids;
    std::vector<uint32_t> ia(n), ib(m);
    for (size_t i = 0; i < n; ++i) ia[i] = ids.emplace(a[i], uint32_t(ids.size())).first->second;
    for (size_t j = 0; j < m; ++j) ib[j] = ids.emplace(b[j], uint32_t(ids.size())).first->second;
    // lcs[i][j]: the LCS length of a[i..] and b[j..].
    std::vector<uint32_t> lcs((n + 1) * (m + 1), 0);
    auto at = [&](size_t i, size_t j) -> uint32_t& { return lcs[i * (m + 1) + j]; };
    for (size_t i = n; i-- > 0;)
        for (size_t j = m; j-- > 0;) at(i, j) = ia[i] == ib[j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    size_t i = 0, j = 0;
    while (i < n || j < m) {
        if (i < n && j < m && ia[i] == ib[j]) {
            out.push_back({Op::Keep, a[i++]});
            ++j;
        } else if (i < n && (j == m || at(i + 1, j) >= at(i, j + 1))) {
            out.push_back({Op::Del, a[i++]});
        } else {
            out.push_back({Op::Add, b[j++]});
        }
    }
}

std::vector<DiffLine> diff_lines(std::string_view before, std::string_view after) {
    const std::vector<std::string_view> a = split_lines(before), b = split_lines(after);
    size_t pre = 0;
    while (pre < a.size() && pre < b.size() && a[pre] == b[pre]) ++pre;
    size_t suf = 0;
    while (suf < a.size() - pre && suf < b.size() - pre && a[a.size() - 1 - suf] == b[b.size() - 1 - suf]) ++suf;
    std::vector<DiffLine> out;
    for (size_t i = 0; i < pre; ++i) out.push_back({Op::Keep, a[i]});
    diff_middle(std::span(a).subspan(pre, a.size() - pre - suf), std::span(b).subspan(pre, b.size() - pre - suf), out);
    for (size_t i = a.size() - suf; i < a.size(); ++i) out.push_back({Op::Keep, a[i]});
    return out;
}

// diff(1)'s range: "start,count", "start" alone for one line, and the line before for none.
std::string hunk_range(size_t lines_before, size_t count) {
    if (count == 1) return fmt::format("{}", lines_before + 1);
    return fmt::format("{},{}", count == 0 ? lines_before : lines_before + 1, count);
}

// A diff line as the terminal should show it: the file's own escape sequences or a lone '\r'
// could repaint the screen and hide what changed, so control characters become '?'.
std::string printable(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string out(line);
    for (char& c : out)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = '?';
    return out;
}

std::string render(std::string_view path, const std::vector<DiffLine>& lines, bool color) {
    std::vector<size_t> changes;
    for (size_t i = 0; i < lines.size(); ++i)
        if (lines[i].op != Op::Keep) changes.push_back(i);
    if (changes.empty()) return "";
    const char* bold = color ? "\x1b[1m" : "";
    const char* cyan = color ? "\x1b[36m" : "";
    const char* reset = color ? "\x1b[0m" : "";
    const std::string name = printable(path);
    std::string out = fmt::format("{}--- a/{}\n+++ b/{}{}\n", bold, name, name, reset);
    size_t old_line = 0, new_line = 0, pos = 0;  // lines of each side before `pos`
    for (size_t k = 0; k < changes.size(); ++k) {
        // Changes closer than two contexts share a hunk, which runs from kDiffContext lines before
        // its first change to as many after its last.
        const size_t first = changes[k];
        size_t last = first;
        while (k + 1 < changes.size() && changes[k + 1] - last <= 2 * kDiffContext + 1) last = changes[++k];
        const size_t start = std::max(pos, first >= kDiffContext ? first - kDiffContext : 0);
        const size_t end = std::min(lines.size(), last + kDiffContext + 1);
        for (; pos < start; ++pos) {
            old_line += lines[pos].op != Op::Add;
            new_line += lines[pos].op != Op::Del;
        }
        size_t old_count = 0, new_count = 0;
        for (size_t i = start; i < end; ++i) {
            old_count += lines[i].op != Op::Add;
            new_count += lines[i].op != Op::Del;
        }
        out += fmt::format("{}@@ -{} +{} @@{}\n", cyan, hunk_range(old_line, old_count), hunk_range(new_line, new_count), reset);
        for (; pos < end; ++pos) {
            const DiffLine& l = lines[pos];
            const bool newline = !l.text.empty() && l.text.back() == '\n';
            const char* on = !color ? "" : l.op == Op::Del ? "\x1b[31m" : l.op == Op::Add ? "\x1b[32m" : "";
            out += fmt::format("{}{}{}{}\n", on, char(l.op), printable(l.text), *on ? reset : "");
            if (!newline) out += "\\ No newline at end of file\n";
            old_line += l.op != Op::Add;
            new_line += l.op != Op::Del;
        }
    }
    return out;
}

}  // namespace

std::string render_diff(std::string_view path, std::string_view before, std::string_view after, bool color) {
    return render(path, diff_lines(before, after), color);
}

// ---------------------------------------------------------------------------------------------
// Writing: atomic replace, apply_patch, undo

namespace {

// Reading the umask without setting it: umask(2) can only swap, racing other threads' creates.
mode_t current_umask() {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.starts_with("Umask:")) return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
    return 022;
}

// The temporary file of write_atomic, removed unless it was renamed into place.
struct TempFile {
    int fd = -1;
    std::string path;
    bool renamed = false;
    ~TempFile() {
        if (fd >= 0) ::close(fd);
        if (!renamed) ::unlink(path.c_str());
    }
};

bool in_git_folder(const std::string& rel) {
    const std::vector<std::string> segs = split(rel, '/');
    return std::find(segs.begin(), segs.end(), ".git") != segs.end();
}

// Applies `edits` to `text` in memory; throws naming the first edit that does not match once.
void apply_edits(const Args& a, const std::string& rel, const json& edits, bool exists, std::string& text) {
    for (size_t i = 0; i < edits.size(); ++i) {
        const json& e = edits[i];
        if (!e.is_object()) throw Error(fmt::format("apply_patch: edits[{}]: expected an object {{search, replace}}", i));
        const Args edit(a.tool(), e);
        const auto field = [&](const char* name) {
            const json* v = edit.get(name);
            if (!v || !v->is_string()) throw Error(fmt::format("apply_patch: edits[{}].{}: expected a string", i, name));
            return v->get<std::string>();
        };
        const std::string search = field("search"), replace = field("replace");
        const std::string where = fmt::format("apply_patch: {}: edit {} of {}", rel, i + 1, edits.size());
        if (search.empty()) {
            if (!text.empty()) throw Error(where + ": empty search text, which only creates a new file; this one has content");
            text = replace;
            continue;
        }
        if (!exists && i == 0) throw Error(fmt::format("apply_patch: {}: no such file (to create it, use one edit with an empty search)", rel));
        size_t count = 0;
        const size_t at = text.find(search);
        for (size_t p = at; p != std::string::npos; p = text.find(search, p + 1)) ++count;
        if (count == 0)
            throw Error(where + ": search text not found (nothing was written; check whitespace and indentation, and what earlier edits changed)");
        if (count > 1) throw Error(fmt::format("{}: search text found {} times (nothing was written; add surrounding lines so it matches once)", where, count));
        text.replace(at, search.size(), replace);
    }
}

}  // namespace

void write_atomic(const fs::path& path, std::string_view content) {
    const std::string shown = path.string();
    const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
    struct stat old {};
    const bool existed = ::stat(path.c_str(), &old) == 0;
    TempFile tmp;
    tmp.path = (folder / ("." + path.filename().string() + ".celer-XXXXXX")).string();
    tmp.fd = ::mkostemp(tmp.path.data(), O_CLOEXEC);
    if (tmp.fd < 0) {
        tmp.renamed = true;  // nothing to remove
        throw Error(fmt::format("{}: cannot create a temporary file: {}", shown, std::strerror(errno)));
    }
    const auto fail = [&](const char* what) { throw Error(fmt::format("{}: cannot write ({}): {}", shown, what, std::strerror(errno))); };
    for (size_t done = 0; done < content.size();) {
        const ssize_t n = ::write(tmp.fd, content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("write");
        done += size_t(n);
    }
    // mkstemp makes the file 0600; the edited file keeps its mode, a new one gets the usual one.
    if (::fchmod(tmp.fd, existed ? old.st_mode & 07777 : 0666 & ~current_umask()) != 0) fail("chmod");
    // Only root can give a file away; anyone else already owns what they are editing.
    if (existed && ::fchown(tmp.fd, old.st_uid, old.st_gid) != 0) errno = 0;
    if (::fsync(tmp.fd) != 0) fail("fsync");
    const int fd = tmp.fd;
    tmp.fd = -1;
    if (::close(fd) != 0) fail("close");
    if (::rename(tmp.path.c_str(), path.c_str()) != 0) fail("rename");
    tmp.renamed = true;
    // The rename itself is durable once the folder is synced; a failure here loses nothing now.
    const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
}

ToolResult apply_patch(const Workspace& ws, const json& args, std::vector<UndoRecord>& undo, bool color) {
    const Args a("apply_patch", args);
    const fs::path full = a.path(ws, "path", true, false);
    const json* edits = a.get("edits");
    if (!edits || !edits->is_array() || edits->empty()) throw Error("apply_patch: edits: expected a non-empty array of {search, replace}");
    const std::string rel = ws.relative(full);
    if (in_git_folder(rel)) throw Error(fmt::format("apply_patch: {}: refusing to edit inside .git", rel));
    std::error_code ec;
    const fs::file_status st = fs::status(full, ec);
    std::optional<std::string> before;
    if (fs::exists(st)) {
        if (!fs::is_regular_file(st)) throw Error(fmt::format("apply_patch: {}: not a regular file", rel));
        before = read_text(full, "apply_patch: " + rel);
    }
    std::string after = before.value_or("");
    apply_edits(a, rel, *edits, before.has_value(), after);
    if (before && *before == after) return {true, fmt::format("{}: the edits leave it unchanged; nothing written", rel), fmt::format("{}: unchanged", rel)};

    if (!before) {
        fs::create_directories(full.parent_path(), ec);
        if (ec) throw Error(fmt::format("apply_patch: {}: cannot create its folder: {}", rel, ec.message()));
    }
    write_atomic(full, after);
    undo.push_back({full, before});

    const std::string old = before.value_or("");  // the diff's lines are views into it
    const std::vector<DiffLine> diff = diff_lines(old, after);
    const size_t added = size_t(std::count_if(diff.begin(), diff.end(), [](const DiffLine& l) { return l.op == Op::Add; }));
    const size_t removed = size_t(std::count_if(diff.begin(), diff.end(), [](const DiffLine& l) { return l.op == Op::Del; }));
    std::string summary = before ? fmt::format("Edited {}: {} edit{}, +{} -{} lines", rel, edits->size(), edits->size() == 1 ? "" : "s", added, removed)
                                 : fmt::format("Created {} ({} lines)", rel, added);
    return {true, std::move(summary), render(rel, diff, color)};
}

std::string undo_last(const Workspace& ws, std::vector<UndoRecord>& undo) {
    if (undo.empty()) throw Error("undo: nothing to undo");
    const UndoRecord& last = undo.back();
    const std::string rel = ws.relative(last.path);
    std::string said;
    if (last.before) {
        write_atomic(last.path, *last.before);
        said = fmt::format("Restored {} to its state before the last edit", rel);
    } else {
        std::error_code ec;
        fs::remove(last.path, ec);
        if (ec) throw Error(fmt::format("undo: {}: cannot remove: {}", rel, ec.message()));
        said = fmt::format("Removed {} (the last edit created it)", rel);
    }
    undo.pop_back();
    return said;
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
