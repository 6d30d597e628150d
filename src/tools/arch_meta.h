// The `{arch}.*` hyperparameter keys of a GGUF file, written the one way celer's loader reads
// them (src/model/model.cpp). Shared by the writers that make models: synth and convert.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/writer.h"

namespace celer {

struct ArchMeta {
    std::string arch;  // llama, qwen2, qwen3
    uint32_t n_ctx = 0, n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
    float rope_base = 10000.0f, rms_eps = 1e-6f;
    std::string rope_scaling;  // "", "linear", "yarn"
    float rope_factor = 1.0f;
    uint32_t rope_orig_ctx = 0;  // yarn: the context the frequencies were trained for (0: unset)
};

void write_arch_metadata(gguf::Writer& w, const ArchMeta& m);

}  // namespace celer
