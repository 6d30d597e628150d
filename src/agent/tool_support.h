// Pieces the agent's tools share (tools.cpp, workspace.cpp, patch.cpp): reading files, globs,
// and checking a tool call's untrusted arguments. Not part of the agent's interface.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/tools.h"
#include "util/error.h"

namespace celer::agent::detail {

// A NUL byte in the first 8 KiB marks a file as binary: the same test git and grep use.
inline constexpr size_t kBinaryProbe = 8 * 1024;
inline constexpr size_t kMaxReadBytes = 32u << 20;

std::vector<std::string> split(std::string_view s, char sep);
// Lines of `text`, each with its '\n' when it has one, so that a last line without a newline
// differs from the same line with one.
std::vector<std::string_view> split_lines(std::string_view text);
std::string_view chomp(std::string_view line);
// The longest prefix of `s` of at most `max` bytes that does not split a UTF-8 character.
std::string_view utf8_prefix(std::string_view s, size_t max);
bool is_binary(std::string_view content);
// A file's bytes (at most kMaxReadBytes); errors name it as `shown`.
std::string read_bytes(const fs::path& path, std::string_view shown);
// The same, refusing binary files.
std::string read_text(const fs::path& path, std::string_view shown);
bool inside(const fs::path& root, const fs::path& p);
std::vector<std::string> segments(const fs::path& rel);

// `pat` and `path` are '/'-separated segments. "**" matches any number of segments; as the last
// segment it needs at least one ("dir/**" is what is inside dir, not dir itself). Other segments
// are fnmatch patterns, so `*` never crosses a '/'.
bool glob_match(std::span<const std::string> pat, std::span<const std::string> path);

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

}  // namespace celer::agent::detail
