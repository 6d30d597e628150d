#include "hub/names.h"

#include <algorithm>
#include <cctype>
#include <span>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/error.h"

namespace celer::hub {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// A family of short names: which repository and file each size and quantisation lives in. The
// quantisations are the ones the publisher uploads; anything else would only be a 404 later.
struct Family {
    std::string_view name;
    std::string_view default_size;  // what the bare family name and ":latest" mean
    std::span<const std::string_view> sizes;
    std::span<const std::string_view> quants;
    std::string_view default_quant;
    std::string (*repo)(std::string_view size);
    std::string (*file)(std::string_view size, std::string_view quant);
};

constexpr std::string_view kQwenSizes[] = {"0.5b", "1.5b", "3b", "7b", "14b", "32b"};
constexpr std::string_view kQwenQuants[] = {"q2_k", "q3_k_m", "q4_0", "q4_k_m", "q5_0", "q5_k_m", "q6_k", "q8_0", "fp16"};
constexpr std::string_view kDeepseekSizes[] = {"1.3b", "6.7b", "33b"};
constexpr std::string_view kDeepseekQuants[] = {"q2_k",   "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_k_s",
                                                "q4_k_m", "q5_0",   "q5_k_s", "q5_k_m", "q6_k", "q8_0"};

// Qwen publishes GGUF files itself, only for the instruct models, with lowercase file names.
std::string qwen_repo(std::string_view size) { return fmt::format("Qwen/Qwen2.5-Coder-{}-Instruct-GGUF", upper(size)); }
std::string qwen_file(std::string_view size, std::string_view quant) {
    return fmt::format("qwen2.5-coder-{}-instruct-{}.gguf", size, quant);
}

// TheBloke's conversions keep DeepSeek's own spelling of the size in the repository name
// ("1.3b" but "6.7B" and "33B") and write the quantisation in capitals after a dot.
std::string deepseek_repo(std::string_view size) {
    return fmt::format("TheBloke/deepseek-coder-{}-instruct-GGUF", size == "1.3b" ? std::string(size) : upper(size));
}
std::string deepseek_file(std::string_view size, std::string_view quant) {
    return fmt::format("deepseek-coder-{}-instruct.{}.gguf", size, upper(quant));
}

const Family kFamilies[] = {
    {"qwen2.5-coder", "1.5b", kQwenSizes, kQwenQuants, "q4_k_m", qwen_repo, qwen_file},
    {"deepseek-coder", "1.3b", kDeepseekSizes, kDeepseekQuants, "q4_k_m", deepseek_repo, deepseek_file},
};

const Family* find_family(std::string_view name) {
    for (const auto& f : kFamilies)
        if (lower(name) == f.name) return &f;
    return nullptr;
}

bool contains(std::span<const std::string_view> list, std::string_view x) {
    return std::find(list.begin(), list.end(), x) != list.end();
}

std::string canonical(const Family& f, std::string_view size, std::string_view quant) {
    if (quant == f.default_quant) return fmt::format("{}:{}", f.name, size);
    return fmt::format("{}:{}-instruct-{}", f.name, size, quant);
}

// TAG is SIZE[-instruct|-base][-QUANT]; sizes and quantisations never contain '-'.
ModelRef resolve_short(const Family& f, std::string_view tag_in, std::string_view quant_override) {
    const std::string tag = lower(tag_in);
    std::vector<std::string> parts;
    for (size_t at = 0; at <= tag.size();) {
        const size_t dash = std::min(tag.find('-', at), tag.size());
        parts.push_back(tag.substr(at, dash - at));
        at = dash + 1;
    }
    std::string size = parts[0].empty() || parts[0] == "latest" ? std::string(f.default_size) : parts[0];
    size_t i = 1;
    if (i < parts.size() && parts[i] == "base")
        throw Error(fmt::format("{}:{}: short names stand for the instruct models' GGUF files (Qwen publishes GGUF for its "
                                "instruct models only); name any other file with hf://OWNER/REPO/FILE.gguf",
                                f.name, tag_in));
    if (i < parts.size() && parts[i] == "instruct") ++i;
    std::string quant = i < parts.size() ? parts[i++] : std::string(f.default_quant);
    if (i < parts.size()) throw Error(fmt::format("{}:{}: expected SIZE[-instruct][-QUANT]", f.name, tag_in));
    if (!quant_override.empty()) quant = lower(quant_override);
    if (!contains(f.sizes, size))
        throw Error(fmt::format("{}: no size '{}'; the sizes are {}", f.name, size, fmt::join(f.sizes, ", ")));
    if (!contains(f.quants, quant))
        throw Error(fmt::format("{}: no quantisation '{}'; there are {} (default {})", f.name, quant, fmt::join(f.quants, ", "),
                                f.default_quant));
    return ModelRef{f.repo(size), f.file(size, quant), "main", canonical(f, size, quant)};
}

bool is_repo_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; }

// Each segment becomes a directory in the cache, so nothing may climb out of it.
bool is_safe_segment(std::string_view s, bool repo_part) {
    if (s.empty() || s == "." || s == "..") return false;
    for (char c : s) {
        if (repo_part ? !is_repo_char(c) : (static_cast<unsigned char>(c) < 0x20 || c == '\\' || c == 0x7f)) return false;
    }
    return true;
}

// OWNER/REPO/PATH/FILE.gguf[@REVISION]
ModelRef parse_repo_path(std::string_view s, bool allow_revision) {
    const std::string whole(s);
    std::string revision = "main";
    if (const size_t at = s.rfind('@'); allow_revision && at != std::string_view::npos) {
        revision = std::string(s.substr(at + 1));
        s = s.substr(0, at);
        if (revision.empty() || std::any_of(revision.begin(), revision.end(), [](char c) { return c <= ' ' || c == 0x7f; }))
            throw Error(fmt::format("{}: bad revision after '@'", whole));
    }
    std::vector<std::string_view> seg;
    for (size_t at = 0; at <= s.size();) {
        const size_t slash = std::min(s.find('/', at), s.size());
        seg.push_back(s.substr(at, slash - at));
        at = slash + 1;
    }
    if (seg.size() < 3) throw Error(fmt::format("{}: expected OWNER/REPO/FILE.gguf", whole));
    for (size_t i = 0; i < seg.size(); ++i)
        if (!is_safe_segment(seg[i], i < 2)) throw Error(fmt::format("{}: bad path segment '{}'", whole, seg[i]));
    if (!lower(seg.back()).ends_with(".gguf")) throw Error(fmt::format("{}: not a .gguf file", whole));
    ModelRef r;
    r.repo = fmt::format("{}/{}", seg[0], seg[1]);
    r.file = std::string(s.substr(seg[0].size() + seg[1].size() + 2));
    r.revision = revision;
    r.short_name = short_name_for(r.repo, r.file);
    return r;
}

}  // namespace

std::string ModelRef::uri() const {
    return revision == "main" ? fmt::format("hf://{}/{}", repo, file) : fmt::format("hf://{}/{}@{}", repo, file, revision);
}

std::string ModelRef::folder() const {
    const size_t slash = file.rfind('/');
    return slash == std::string::npos ? std::string() : file.substr(0, slash);
}

ModelRef resolve_name(std::string_view name, std::string_view quant, std::string_view revision) {
    ModelRef r;
    if (name.starts_with("hf://")) {
        if (!quant.empty())
            throw Error(fmt::format("{}: --quant is for short names; an hf:// name already names the file", name));
        r = parse_repo_path(name.substr(5), true);
    } else {
        const size_t colon = name.find(':');
        const Family* f = find_family(name.substr(0, colon));
        if (!f) throw Error(fmt::format("unknown model '{}'; {}", name, known_names()));
        r = resolve_short(*f, colon == std::string_view::npos ? "" : name.substr(colon + 1), quant);
    }
    if (!revision.empty()) r.revision = std::string(revision);
    return r;
}

std::optional<ModelRef> parse_local_name(std::string_view name) {
    try {
        if (is_hub_name(name)) return resolve_name(name);
        return parse_repo_path(name, false);
    } catch (const Error&) {
        return std::nullopt;
    }
}

bool is_hub_name(std::string_view name) {
    return name.starts_with("hf://") || find_family(name.substr(0, name.find(':'))) != nullptr;
}

std::string short_name_for(std::string_view repo, std::string_view file) {
    for (const auto& f : kFamilies)
        for (auto size : f.sizes)
            if (f.repo(size) == repo)
                for (auto quant : f.quants)
                    if (f.file(size, quant) == file) return canonical(f, size, quant);
    return {};
}

std::string known_names() {
    std::string out = "known names:";
    for (const auto& f : kFamilies)
        out += fmt::format(" {}:SIZE[-instruct][-QUANT] (SIZE {}; QUANT {}, default {}),", f.name, fmt::join(f.sizes, ", "),
                           fmt::join(f.quants, ", "), f.default_quant);
    return out + " or hf://OWNER/REPO/FILE.gguf[@REVISION] for any GGUF file on the hub";
}

}  // namespace celer::hub
