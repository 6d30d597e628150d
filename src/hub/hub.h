// celer pull: one GGUF file from the Hugging Face hub into the cache, the way huggingface-cli
// and Ollama do it: resumable, retried, checked against the hub's size and sha256, safe to run
// twice at once, and free of network use once the file is there.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "hub/cache.h"
#include "hub/names.h"

namespace celer::hub {

struct PullOptions {
    // One-line messages for the user: waiting for another pull, resuming, retrying, checking.
    std::function<void(const std::string&)> note = [](const std::string&) {};
    // Bytes of the file present so far and its full size, as they arrive.
    std::function<void(uint64_t done, uint64_t total)> progress = [](uint64_t, uint64_t) {};
};

// $HF_ENDPOINT without a trailing '/', else https://huggingface.co.
std::string endpoint();
// $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN, else the token file `huggingface-cli login` writes
// ($HF_TOKEN_PATH, $HF_HOME/token, ~/.cache/huggingface/token); empty when there is none.
std::string token();

// Returns the model's path in the cache, downloading it unless it is already there.
std::filesystem::path pull(const ModelRef& ref, const PullOptions& opt = {});

// What -m ARG means: nullopt when ARG is an existing file or no model name (left to the
// command), the cached file when ARG names a pulled model; throws celer::Error when ARG is a
// short name or hf:// reference that has not been pulled yet (saying how to pull it).
std::optional<std::string> resolve_model_arg(std::string_view arg);

}  // namespace celer::hub
