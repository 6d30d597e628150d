#include "hub/cache.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace celer::hub {
namespace fs = std::filesystem;

namespace {

// An empty variable counts as unset, as the XDG base directory spec asks.
const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

}  // namespace

// Decimal units, as the hub's pages and Ollama print sizes.
std::string format_size(uint64_t bytes) {
    if (bytes >= 1000'000'000) return fmt::format("{:.1f} GB", double(bytes) / 1e9);
    if (bytes >= 1000'000) return fmt::format("{:.1f} MB", double(bytes) / 1e6);
    return fmt::format("{:.1f} KB", double(bytes) / 1e3);
}

fs::path celer_home() {
    if (const char* h = env("CELER_HOME")) return h;
    if (const char* x = env("XDG_CACHE_HOME")) return fs::path(x) / "celer";
    if (const char* home = env("HOME")) return fs::path(home) / ".cache" / "celer";
    return fs::temp_directory_path() / "celer";
}

fs::path models_dir() { return celer_home() / "models"; }

fs::path cache_path(const ModelRef& ref) { return models_dir() / ref.repo / ref.file; }

fs::path meta_path(const fs::path& model) { return fs::path(model.string() + ".celer.json"); }

std::optional<PulledMeta> read_meta(const fs::path& model) {
    std::ifstream in(meta_path(model));
    if (!in) return std::nullopt;
    try {
        const auto j = nlohmann::json::parse(in);
        PulledMeta m;
        m.repo = j.at("repo").get<std::string>();
        m.file = j.at("file").get<std::string>();
        m.revision = j.at("revision").get<std::string>();
        m.sha256 = j.value("sha256", "");
        m.size = j.at("size").get<uint64_t>();
        m.pulled_at = j.value("pulled_at", "");
        m.source = j.value("source", "");
        return m;
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;  // a damaged record: the file will be pulled (and checked) again
    }
}

void write_meta(const fs::path& model, const PulledMeta& m) {
    const nlohmann::json j = {{"repo", m.repo},     {"file", m.file}, {"revision", m.revision},  {"sha256", m.sha256},
                              {"size", m.size},     {"pulled_at", m.pulled_at}, {"source", m.source}};
    const fs::path final_path = meta_path(model), tmp = final_path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << j.dump(2) << "\n";
        if (!out.flush()) throw Error(fmt::format("{}: cannot write", tmp.string()));
    }
    fs::rename(tmp, final_path);
}

bool is_pulled(const ModelRef& ref) {
    const fs::path p = cache_path(ref);
    std::error_code ec;
    const uint64_t size = fs::file_size(p, ec);
    if (ec) return false;
    const auto m = read_meta(p);
    return m && m->repo == ref.repo && m->file == ref.file && m->revision == ref.revision && m->size == size;
}

std::vector<LocalModel> list_models() {
    std::vector<LocalModel> out;
    const fs::path root = models_dir();
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_regular_file() || it->path().extension() != ".gguf") continue;
        LocalModel m;
        m.path = it->path();
        m.name = fs::relative(m.path, root).generic_string();
        m.size = it->file_size();
        const size_t second_slash = m.name.find('/', m.name.find('/') + 1);
        if (second_slash != std::string::npos)
            m.short_name = short_name_for(m.name.substr(0, second_slash), m.name.substr(second_slash + 1));
        out.push_back(std::move(m));
    }
    std::sort(out.begin(), out.end(), [](const LocalModel& a, const LocalModel& b) { return a.name < b.name; });
    return out;
}

std::string local_models_line() {
    const auto models = list_models();
    if (models.empty()) return fmt::format("there are no models in the cache ({})", models_dir().string());
    std::string out = "the models in the cache:";
    for (const auto& m : models)
        out += fmt::format(" {} ({}),", m.short_name.empty() ? m.name : m.short_name + " = " + m.name, format_size(m.size));
    out.pop_back();
    return out;
}

std::optional<fs::path> local_model_path(std::string_view name) {
    const auto ref = parse_local_name(name);
    if (!ref) return std::nullopt;
    const fs::path p = cache_path(*ref);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return std::nullopt;
    // A name without @REVISION takes whatever revision was pulled; one with it must match.
    if (const auto m = read_meta(p); m && ref->revision != "main" && m->revision != ref->revision) return std::nullopt;
    return p;
}

void prune_empty_dirs(fs::path from) {
    const fs::path root = models_dir();
    std::error_code ec;
    while (from != root && from.string().starts_with(root.string()) && fs::is_empty(from, ec) && !ec) {
        fs::remove(from, ec);
        from = from.parent_path();
    }
}

fs::path remove_model(std::string_view name, std::string_view quant) {
    const auto ref = is_hub_name(name) ? std::optional(resolve_name(name, quant)) : parse_local_name(name);
    const fs::path p = ref ? cache_path(*ref) : fs::path();
    const fs::path partial = p.string() + ".partial";
    std::error_code ec;
    if (!ref || (!fs::exists(p, ec) && !fs::exists(partial, ec)))
        throw Error(fmt::format("no model '{}' in the cache; {}", name, local_models_line()));
    fs::remove(p, ec);
    fs::remove(meta_path(p), ec);
    fs::remove(partial, ec);
    // The lock file an interrupted pull left goes too, unless a pull holds it right now.
    const fs::path lock = p.string() + ".lock";
    if (const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(lock.c_str());
        ::close(fd);
    }
    prune_empty_dirs(p.parent_path());
    return p;
}

}  // namespace celer::hub
