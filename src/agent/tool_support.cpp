#include "agent/tool_support.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstring>
#include <fstream>

namespace celer::agent::detail {

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


}  // namespace celer::agent::detail
