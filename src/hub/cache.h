// The model cache on disk: CELER_HOME/models/OWNER/REPO/PATH/FILE.gguf, each pulled file with a
// FILE.gguf.celer.json beside it saying where it came from and what its sha256 is. Other .gguf
// files put there (a converted model, say) are listed too.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hub/names.h"

namespace celer::hub {

// $CELER_HOME, else $XDG_CACHE_HOME/celer, else ~/.cache/celer (the root the demo model and the
// server's response store use too).
std::filesystem::path celer_home();
std::filesystem::path models_dir();  // celer_home()/models
std::filesystem::path cache_path(const ModelRef& ref);

struct PulledMeta {  // FILE.gguf.celer.json
    std::string repo, file, revision, sha256;  // sha256 is empty for a file the hub stores without LFS
    uint64_t size = 0;
    std::string pulled_at;  // ISO 8601, UTC
    std::string source;     // the URL it was downloaded from
};
std::filesystem::path meta_path(const std::filesystem::path& model);
std::optional<PulledMeta> read_meta(const std::filesystem::path& model);
void write_meta(const std::filesystem::path& model, const PulledMeta& m);

// The file is in the cache, and its .celer.json records the same repository, file, revision and
// size, so it was verified when it was pulled. No network needed.
bool is_pulled(const ModelRef& ref);

struct LocalModel {
    std::string name;        // OWNER/REPO/PATH/FILE.gguf
    std::string short_name;  // empty when none maps to it
    uint64_t size = 0;
    std::filesystem::path path;
};
std::vector<LocalModel> list_models();
std::string format_size(uint64_t bytes);  // "1.1 GB", "986.4 MB"
// One line for error messages: the cached models' names, or that there are none.
std::string local_models_line();

// The file of a model in the cache, named by a short name, hf:// or OWNER/REPO/FILE.
std::optional<std::filesystem::path> local_model_path(std::string_view name);

// Removes a model (its file, .celer.json, any unfinished download) and the folders it leaves
// empty. Returns the path removed; throws celer::Error listing the cache when nothing matches.
std::filesystem::path remove_model(std::string_view name, std::string_view quant = {});

// Removes `from` and its parents up to the cache root while they are empty.
void prune_empty_dirs(std::filesystem::path from);

}  // namespace celer::hub
