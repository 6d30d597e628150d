// A model as plain data: hyper-parameters read from GGUF metadata and typed views of the
// weights inside the mapping. Nothing here computes; executors (the reference forward pass,
// the CPU engine, later CUDA) read this description.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "tensor/types.h"
#include "tokenizer/vocab.h"

namespace celer {

enum class Arch { Llama, Qwen2, Qwen3 };
enum class RopeLayout {
    Normal,  // rotates adjacent pairs (2i, 2i+1): GGUF's llama layout (Q/K rows pre-permuted)
    NeoX,    // rotates (i, i + n_rot/2): Hugging Face's rotate_half, kept as-is by qwen2/qwen3
};

const char* arch_name(Arch a);

struct HParams {
    Arch arch = Arch::Llama;
    uint32_t n_vocab = 0;
    uint32_t n_ctx_train = 0;
    uint32_t n_embd = 0;
    uint32_t n_layer = 0;
    uint32_t n_head = 0;
    uint32_t n_head_kv = 0;
    uint32_t head_dim = 0;  // per head, for Q and K
    uint32_t head_dim_v = 0;
    uint32_t n_ff = 0;
    uint32_t n_rot = 0;  // leading dims of each head that RoPE rotates
    float rms_eps = 1e-5f;
    float rope_base = 10000.0f;
    float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
    RopeLayout rope_layout = RopeLayout::Normal;

    uint32_t q_dim() const { return n_head * head_dim; }
    uint32_t kv_dim() const { return n_head_kv * head_dim; }
    uint32_t v_dim() const { return n_head_kv * head_dim_v; }
};

// A 2-D weight (rows x cols, row-major, each row `row_bytes` bytes of `type` blocks).
struct Weight {
    TensorType type = TensorType::F32;
    uint64_t cols = 0;  // ne[0], the input dimension
    uint64_t rows = 0;  // ne[1], the output dimension
    size_t row_bytes = 0;
    const uint8_t* data = nullptr;
    const uint8_t* row(uint64_t r) const { return data + r * row_bytes; }
    uint64_t n_bytes() const { return rows * row_bytes; }
};

struct LayerWeights {
    std::vector<float> attn_norm;           // (n_embd)
    Weight wq, wk, wv, wo;                  // (q_dim, n_embd), (kv_dim, n_embd), (v_dim, n_embd), (n_embd, n_head*head_dim_v)
    std::vector<float> bq, bk, bv;          // qwen2 biases: (q_dim), (kv_dim), (v_dim); empty otherwise
    std::vector<float> q_norm, k_norm;      // qwen3 per-head RMSNorm: (head_dim); empty otherwise
    std::vector<float> ffn_norm;            // (n_embd)
    Weight w_gate, w_up, w_down;            // (n_ff, n_embd), (n_ff, n_embd), (n_embd, n_ff)
};

struct Model {
    gguf::File file;
    HParams hp;
    Vocab vocab;
    Weight tok_embd;                 // (n_vocab, n_embd)
    std::vector<float> output_norm;  // (n_embd)
    Weight output;                   // (n_vocab, n_embd); the embedding itself when tied
    bool tied_output = false;
    std::vector<float> rope_freq_factors;  // (n_rot/2) divisors of each RoPE frequency, or empty
    std::vector<LayerWeights> layers;

    // Bytes of weights read to generate one token: every matrix once, one embedding row.
    uint64_t weight_bytes_per_token() const;
};

std::unique_ptr<Model> load_model(const std::string& path);  // throws celer::Error
std::unique_ptr<Model> load_model(gguf::File file);

}  // namespace celer
