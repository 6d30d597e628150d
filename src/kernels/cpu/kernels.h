// CPU kernel table. The engine calls ops through this table, chosen once at start-up from the
// CPU's features (or forced by name). Each target's kernels live in their own file; the scalar
// target is the twin every SIMD target is tested against. Kernels know nothing of models: they
// see typed rows of bytes and float activations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "kernels/cpu/int8.h"
#include "tensor/types.h"

namespace celer::kernels {

// y[t * ldy + r] = dot(row r of W, x[t * ldx .. + cols]) for r in [row0, row1), t in [0, n_tok).
struct MatmulArgs {
    const uint8_t* w;
    size_t row_bytes;
    size_t cols;
    const float* x;
    size_t ldx;
    size_t n_tok;
    float* y;
    size_t ldy;
    size_t row0, row1;
    float* scratch;  // kScratchRows * cols floats, private to the calling thread
};
using MatmulFn = void (*)(const MatmulArgs&);

// Weight rows a kernel may decode into scratch at once.
inline constexpr size_t kScratchRows = 4;

// n_q query heads that share one key/value head (a GQA group), for n_tok consecutive tokens,
// against the cached keys and values: token i sees the first n_keys + i keys (causal), and for
// each of its heads h, out = softmax(scale * q.K^T) V, with an online softmax over tiles of
// keys, so that each key and value is read once for the whole group and token block. With
// `partial` set (one token only) the result is left unnormalised for a later merge of several
// key ranges (flash-decoding): out_h = sum_j p_j v_j with p_j = exp(s_j - max_h), and max_h,
// sum_h = sum_j p_j in max[h], sum[h].
// How the KV cache stores an element: float, fp16, or Q8_0 rows (BlockQ8_0 per 32 elements).
enum class KvElem : uint8_t { F32, F16, Q8_0 };

struct AttnArgs {
    const float* q;  // token i, head h at q + i * q_tok_stride + h * q_stride
    size_t n_q, q_stride;
    // The cache in pages of page_rows positions (a multiple of kAttnTile, so that a tile of keys
    // never straddles two pages): key j's row starts at pages[j / page_rows] + k_off +
    // (j % page_rows) * k_row, value j's at v_off and v_row likewise (bytes).
    const uint8_t* const* pages;
    size_t page_rows, k_off, v_off, k_row, v_row;
    KvElem elem;
    // Keys stored by dimension within a page (fp16 and Q8_0; kcol_* below), so that a vector
    // load reads one dimension of 16 keys (fp16) or 4 dimensions of 16 keys (Q8_0).
    bool k_cols = false;
    // Q8_0 values stored by quads of keys within a page (vquad_q8* below), so that an int8
    // dot-product instruction takes 4 keys' probabilities against 16 dimensions of their values.
    bool v_quads = false;
    // Q4_0 values stored by octets of keys within a page (voct_q4* below; with Q8_0 keys).
    bool v_q4 = false;
    size_t n_keys;
    size_t head_dim, head_dim_v;
    float scale;
    float* out;  // token i, head h at out + i * out_tok_stride + h * out_stride
    size_t out_stride;
    bool partial;
    float* max;  // n_q, when partial
    float* sum;  // n_q, when partial
    float* scratch;  // attn_scratch_floats(n_tok * n_q, head_dim, head_dim_v), private to the calling thread
    size_t n_tok = 1, q_tok_stride = 0, out_tok_stride = 0;
    // Token i sees keys [0, min(n_keys + i, key_cap)): a cap lets several tokens share a range of
    // keys that lies wholly before all of them (split attention over ranges).
    size_t key_cap = SIZE_MAX;
};
// Keys by dimension (AttnArgs::k_cols), offsets in bytes from the head's first key in a page of
// page_rows positions. fp16: element d of the key at row j at (d * page_rows + j) * 2. Q8_0: each
// key is quantised as a Q8_0 row (one fp16 scale per 32 elements); its int8 values + 128 are
// bytes in groups of 4 dimensions, dimension d of row j at (d / 4 * page_rows + j) * 4 + d % 4
// (an int8 dot-product instruction's operand: 16 keys x 4 dimensions in 64 bytes), and the
// scale of block b of row j at head_dim * page_rows + (b * page_rows + j) * 2.
inline size_t kcol_f16(size_t d, size_t j, size_t page_rows) { return (d * page_rows + j) * 2; }
inline size_t kcol_q8(size_t d, size_t j, size_t page_rows) { return (d / 4 * page_rows + j) * 4 + d % 4; }
inline size_t kcol_q8_scale(size_t b, size_t j, size_t head_dim, size_t page_rows) {
    return head_dim * page_rows + (b * page_rows + j) * 2;
}
// Q8_0 values by quads of keys (AttnArgs::v_quads), offsets in bytes from the head's first value
// in a page: each value row is quantised as a Q8_0 row; its int8 values (signed, as stored) lie
// with those of the 3 keys beside it, dimension d of row j at (j / 4 * head_dim + d) * 4 + j % 4,
// so that 64 bytes hold 16 dimensions of 4 keys, and the scale of block b of row j at
// head_dim * page_rows + (b * page_rows + j) * 2 (page_rows a multiple of 4). The same bytes as
// page_rows Q8_0 rows.
inline size_t vquad_q8(size_t d, size_t j, size_t head_dim) { return (j / 4 * head_dim + d) * 4 + j % 4; }
inline size_t vquad_q8_scale(size_t b, size_t j, size_t head_dim, size_t page_rows) {
    return head_dim * page_rows + (b * page_rows + j) * 2;
}
// Q4_0 values by octets of keys (AttnArgs::v_q4), offsets in bytes from the head's first value in
// a page: each value row is quantised as a Q4_0 row (one fp16 scale per 32 elements, never
// negative: quantize_row_q4_0_unsigned_scale; elements q - 8 with q in 0..15); q of dimension d of row j is the low (j % 8 < 4) or high nibble of
// byte (j / 8 * head_dim + d) * 4 + j % 4, so that 64 bytes hold 16 dimensions of 8 keys, the
// low nibbles keys 0-3 of the octet and the high ones keys 4-7 (one mask and one shift give
// two operands of an int8 dot-product instruction). The scale of block b of row j lies at
// head_dim * page_rows / 2 + (b * page_rows + j) * 2 (page_rows a multiple of 8).
inline size_t voct_q4(size_t d, size_t j, size_t head_dim) { return (j / 8 * head_dim + d) * 4 + j % 4; }
inline unsigned voct_q4_shift(size_t j) { return j % 8 < 4 ? 0 : 4; }
inline size_t voct_q4_scale(size_t b, size_t j, size_t head_dim, size_t page_rows) {
    return head_dim * page_rows / 2 + (b * page_rows + j) * 2;
}

inline constexpr size_t kAttnTile = 64;
inline constexpr size_t kAttnScoreRows = 8;  // rows whose scores of a tile are held at once
// Scores of a tile, one tile of keys and values widened to float, and per row the running sums.
inline constexpr size_t attn_scratch_floats(size_t rows, size_t head_dim, size_t head_dim_v) {
    // ... and per row its query in int8 blocks (head_dim bytes, a scale and a sum per 32).
    return kAttnTile * (kAttnScoreRows + head_dim + head_dim_v) + rows * (head_dim_v + 2) + rows * (head_dim / 4 + head_dim / 16 + 1);
}

struct CpuKernels {
    std::string_view name;
    MatmulFn matmul[kTypeCount];
    // Sum of n floats. Used to measure how fast this CPU streams memory (the decode roofline).
    float (*sum)(const float* x, size_t n);
    void (*attention)(const AttnArgs&);
    // y[i] = x[i] rounded to fp16, to nearest even (the KV cache's writes).
    void (*to_half)(const float* x, uint16_t* y, size_t n);
    // g[i] = silu(g[i]) * u[i], the SwiGLU gate.
    void (*swiglu)(float* g, const float* u, size_t n);
    // The packed int8 path (int8.h), or nullptr where this target has none: one token's
    // activations to int8 blocks, and the product on packed weights.
    void (*quantize_acts)(const float* x, size_t cols, int8_t* q, float* d, float* ds, float* ds2) = nullptr;
    void (*gemm_int8)(const GemmArgs&) = nullptr;
    // Whether attention on a Q8_0 cache by dimension rounds the query to int8 blocks of 32 (scale
    // max|q| / 127, to nearest) and takes its products with the keys in integers, as the int8
    // matrix path does with activations; the other targets compute in float. With values by quads
    // (AttnArgs::v_quads) it also rounds the probabilities: per row, tile of kAttnTile keys and
    // block b of 32 value dimensions, p_j x scale_b(v_j) to uint8 with the step max / 255 (to
    // nearest), and takes the weighted values in integers; Q4_0 values by octets (AttnArgs::v_q4)
    // the same way.
    bool attn_int8_query = false;
    // The bf16 dot-product path (int8.h: weights packed by column pairs), or nullptr where this
    // target has none: one block of n_tok <= kBf16Tokens tokens' activations rounded to bf16 (to
    // nearest even; denormals may read as zero) in the layout of bf16_act_offset, and the product.
    void (*to_bf16)(const float* x, size_t n_tok, size_t cols, uint16_t* y) = nullptr;
    void (*gemm_bf16)(const GemmArgs&) = nullptr;
};

const CpuKernels& scalar_kernels();
#if defined(__x86_64__)
const CpuKernels& avx2_kernels();    // vector_target.cpp built with -mavx2 -mfma -mf16c
const CpuKernels& avx512_kernels();  // ... with -mavx512f -mavx512bw -mavx512vl -mavx512dq
const CpuKernels& avx512vnni_kernels();  // ... and -mavx512vnni: adds the packed int8 path
const CpuKernels& avx512bf16_kernels();  // ... and -mavx512bf16: adds the bf16 dot-product path
#elif defined(__aarch64__)
const CpuKernels& neon_kernels();  // vector_target.cpp for AArch64 (NEON is in its base set)
#endif

// Names of the targets compiled in whose instructions this CPU can execute, best first.
std::vector<std::string_view> available_targets();

// Picks the best target, or the named one (also read from CELER_KERNELS when `forced` is
// empty). Throws celer::Error for a name that is unknown or not executable here.
const CpuKernels& select_kernels(std::string_view forced = {});

}  // namespace celer::kernels
