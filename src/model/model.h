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
// How positions beyond the trained context are fitted into the rotary frequencies.
enum class RopeScaling : uint8_t {
    None,
    Linear,  // every frequency divided by the factor (position interpolation)
    Ntk,     // NTK-aware: the base raised to base * s^(d / (d - 2)), low frequencies stretched most
    Yarn,    // YaRN (arXiv 2309.00071): interpolated below, kept above, a ramp between, and an
             // attention temperature of 0.1 ln s + 1 on queries and keys (Qwen2.5's 128K setting)
};
RopeScaling parse_rope_scaling(std::string_view s);  // "none", "linear", "ntk", "yarn"; throws celer::Error
const char* rope_scaling_name(RopeScaling s);

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
    RopeScaling rope_scaling = RopeScaling::None;
    float rope_scale = 1.0f;        // the scaling factor s (linear, ntk, yarn)
    uint32_t rope_orig_ctx = 0;     // yarn: the context the frequencies were trained for
    float yarn_beta_fast = 32.0f;   // yarn: dimensions turning more than this often over the
    float yarn_beta_slow = 1.0f;    // original context keep their frequency; fewer than slow: interpolated
    float rope_attn_factor = 1.0f;  // multiplies cos and sin (yarn: 0.1 ln s + 1)

    uint32_t q_dim() const { return n_head * head_dim; }
    uint32_t kv_dim() const { return n_head_kv * head_dim; }
    uint32_t v_dim() const { return n_head_kv * head_dim_v; }
};

// A 2-D weight (rows x cols, row-major, each row `row_bytes` bytes of `type` blocks).
// Sets RoPE scaling on hp (and what derives from it: the linear frequency scale, the NTK base,
// YaRN's attention factor). orig_ctx 0: the trained context. Throws celer::Error on a factor
// outside [1, 1024] or a YaRN original context below 2.
void set_rope_scaling(HParams& hp, RopeScaling type, double factor, uint32_t orig_ctx = 0);

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
