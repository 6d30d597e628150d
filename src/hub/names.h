// What a user types to name a model on the Hugging Face hub, and the file it stands for. Pure
// functions (no network, no file system), so the whole naming scheme is unit-tested.
//
//   qwen2.5-coder:1.5b                  an Ollama-style short name: FAMILY[:SIZE[-instruct][-QUANT]]
//   qwen2.5-coder:7b-instruct-q8_0
//   hf://OWNER/REPO/PATH/FILE.gguf      any GGUF file of any repository,
//   hf://OWNER/REPO/FILE.gguf@REVISION  at a branch, tag or commit ("main" by default)
//   OWNER/REPO/PATH/FILE.gguf           how `celer list` names a cached file (list, rm and -m only)
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace celer::hub {

struct ModelRef {
    std::string repo;             // "OWNER/NAME"
    std::string file;             // path inside the repository; may have folders
    std::string revision = "main";
    std::string short_name;       // the canonical short name when one maps to this file, else empty

    // hf://OWNER/NAME/FILE, with @REVISION when it is not "main".
    std::string uri() const;
    // The folder of `file` inside the repository ("" at the top level).
    std::string folder() const;
};

// A short name or hf:// reference (what `celer pull` takes). `quant` and `revision`, when not
// empty, override the name's own. Throws celer::Error saying what names are known.
ModelRef resolve_name(std::string_view name, std::string_view quant = {}, std::string_view revision = {});

// Like resolve_name, and also OWNER/REPO/FILE.gguf; nullopt for anything that is not a model name
// (a plain file name, say) instead of an error.
std::optional<ModelRef> parse_local_name(std::string_view name);

// True for the names only the hub can mean (a short name or hf://), not a relative file path.
bool is_hub_name(std::string_view name);

// The canonical short name of a repository's file ("qwen2.5-coder:1.5b" for the default quant,
// "qwen2.5-coder:7b-instruct-q8_0" otherwise), or empty when no short name maps to it.
std::string short_name_for(std::string_view repo, std::string_view file);

// One line for error messages: the families, their sizes, and the hf:// form.
std::string known_names();

}  // namespace celer::hub
