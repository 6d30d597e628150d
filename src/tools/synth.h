// Synthetic models: random weights in the exact shapes of real code models, written as GGUF
// files that celer and llama.cpp both load. They stand in for downloads that this build
// machine cannot make, for speed measurements and for code paths stories260K never reaches.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"

namespace celer::synth {

struct Shape {
    std::string_view name;
    Arch arch;
    uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    float rope_base, rms_eps, rope_linear;  // rope_linear: linear RoPE scaling factor (1 = none)
    bool tied;                              // output projection shares the token embedding
};

const std::vector<Shape>& shapes();
const Shape* find_shape(std::string_view name);

struct Options {
    std::string shape;                // a name from shapes()
    std::string type = "q8_0";        // f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k q4_k_m q5_k_m
    std::string vocab_from;           // a GGUF or tokenizer.json whose tokenizer is copied; empty: generated
    uint64_t seed = 1;
    int n_threads = 0;
    std::optional<uint32_t> n_layer;  // override, for quick tests
    // RoPE scaling metadata to write (as a converter writes a model's rope_scaling): "" none,
    // else linear / yarn with this factor and, for yarn, the original context (0: the shape's).
    std::string rope_scaling;
    float rope_scale = 1.0f;
    uint32_t rope_orig_ctx = 0;
};

std::vector<std::string_view> type_names();

// Writes the model to `out_path` (atomically). Throws celer::Error on bad options.
void write_model(const Options& opt, const std::string& out_path);

}  // namespace celer::synth
