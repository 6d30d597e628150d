// apply_patch and /undo: search/replace edits checked in memory, written atomically, shown as a
// line diff.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <span>

#include "agent/tool_support.h"
#include "agent/tools.h"

namespace celer::agent {

using namespace detail;

namespace {

constexpr size_t kDiffContext = 3;
// The LCS table is (n+1)(m+1) 32-bit cells for the changed middle: 4M cells is 16 MB, about
// 2,000 x 2,000 lines. Past that the diff shows the middle as removed, then added.
constexpr size_t kDiffMaxCells = 4'000'000;

}  // namespace

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
    // Appended piecewise: GCC 12 at -O3 warns falsely (-Wrestrict) on "." + name + "...".
    std::string name = ".";
    name += path.filename().string();
    name += ".celer-XXXXXX";
    tmp.path = (folder / name).string();
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

}  // namespace celer::agent
