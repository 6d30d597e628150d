// Workspace: the one gate every path the model names goes through, and .gitignore matching.
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "agent/tool_support.h"
#include "agent/tools.h"

namespace celer::agent {

using namespace detail;

namespace {

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

}  // namespace celer::agent
