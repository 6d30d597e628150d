// celer convert: a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json
// and tokenizer_config.json) of a llama, qwen2 or qwen3 model to one GGUF file, one tensor at a
// time from the mapped safetensors: converting a 7B model needs no more memory than one row.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "tensor/types.h"

namespace celer::convert {

struct Options {
    std::string dir;
    std::string out;                    // default: DIR/<folder name>-<type>.gguf
    TensorType type = TensorType::F16;  // matrices; norms and biases stay F32
};

// Converts and returns the path written. Throws celer::Error naming the file and field.
std::string convert_hf(const Options& opt, const std::function<void(std::string_view)>& log);

// GGUF's row order for a llama Q or K projection. Hugging Face's llama rotates dimension j
// with j + head_dim/2 (rotate_half); GGUF's llama layout rotates neighbours 2i and 2i+1. Row
// 2i+s of a head in GGUF is row s*half + i of the same head in the checkpoint.
uint64_t llama_qk_source_row(uint64_t gguf_row, uint32_t head_dim);

}  // namespace celer::convert
