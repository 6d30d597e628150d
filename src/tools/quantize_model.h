// celer quantize: rewrites an F32/F16/BF16 GGUF model with quantised matrices, choosing each
// tensor's type by llama.cpp's per-tensor rules (so a Q4_K_M file has the mix users know from
// downloads), one tensor at a time (the input is mapped, the output streamed), rows spread
// over threads, and the error each tensor took measured as it is written.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "gguf/gguf.h"
#include "tensor/types.h"

namespace celer::quant {

// A type a user can ask for: the type of most matrices and of the two groups the K_M mixes
// treat apart.
struct Target {
    std::string_view name;  // as typed on the command line
    TensorType base;        // every matrix not named below
    TensorType output;      // output.weight, and token_embd.weight when the output is tied to it
    TensorType more_bits;   // attn_v and ffn_down in the layers more_bits_layer() picks
    uint32_t ftype;         // llama.cpp's general.file_type (its enum llama_ftype)
};

std::span<const Target> targets();
// Throws celer::Error listing the valid names.
const Target& find_target(std::string_view name);

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer in
// between, whose attn_v and ffn_down the K_M mixes keep at more bits.
constexpr bool more_bits_layer(uint32_t il, uint32_t n_layer) {
    return il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
}

// What the rules read from the model besides each tensor's own name and shape.
struct ModelFacts {
    std::string arch;
    uint32_t n_layer = 0;
    uint32_t n_head = 0, n_head_kv = 0;
    bool has_output = false;  // a separate output.weight; without it the embedding is tied
};
ModelFacts model_facts(const gguf::File& f);

struct Planned {
    TensorType to = TensorType::F32;
    bool copy = false;  // bytes copied unchanged: not a matrix weight, or already of type `to`
    std::string note;   // why `to` differs from what the mix asked for ("" when it does not)
};

// The type tensor `t` becomes. Throws celer::Error for a matrix that must change type but is
// not F32/F16/BF16 (quantising decoded quantised weights would round them twice).
Planned plan_tensor(const Target& target, const ModelFacts& facts, const gguf::TensorInfo& t);

struct TensorReport {
    size_t index = 0, count = 0;  // this tensor's position and the number of tensors
    const gguf::TensorInfo* info = nullptr;
    const Planned* plan = nullptr;
    uint64_t bytes_out = 0;
    double err = 0, energy = 0;  // sum (x - dequant(quant(x)))^2 and sum x^2 over the tensor
    double nmse() const { return energy > 0 ? err / energy : err; }
};

struct Summary {
    uint64_t file_bytes_in = 0, file_bytes_out = 0;
    uint64_t n_quantised = 0;      // weights that went through a lossy or narrowing conversion
    double weighted_nmse = 0;      // each converted tensor's NMSE weighted by its element count
    size_t n_tensors = 0, n_copied = 0, n_fallback = 0;
};

struct Options {
    std::string in_path, out_path, type;
    int n_threads = 0;  // 0: every hardware thread (quantising is compute bound, unlike decoding)
    std::function<void(const TensorReport&)> on_tensor;  // called after each tensor is written
};

// Throws celer::Error for a missing or malformed input, an unknown type, OUT naming IN, or an
// input tensor that cannot be converted. The output appears only once complete.
Summary quantize_model(const Options& opt);

}  // namespace celer::quant
