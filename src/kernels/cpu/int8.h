// Integer matrix products: weights repacked at load time into groups of 16 interleaved rows,
// activations quantised on the fly to int8 per 32-value block. On AVX-512 VNNI one vpdpbusd
// multiplies 4 bytes of 16 rows by 4 broadcast activation bytes, so a group's 16 outputs
// accumulate in the lanes of one register: no horizontal sums, and each weight register is
// reused by every token of a prefill tile.
//
// Packed layout, per group g of 16 rows and per 32-column block b:
//   uint16 d[16]          the rows' fp16 block scales (the block's header)
//   data                  chunk k holds bytes 4k..4k+3 of every row: byte 64k + 4r + j
//     Q8_0 (512 bytes):   k = 0..7, stored as q + 128 (unsigned)
//     Q4_0 (256 bytes):   k = 0..3, the block's own qs bytes: low nibble weight 4k+j,
//                         high nibble weight 16+4k+j (unsigned 0..15)
//     Q5_0 (320 bytes):   the Q4_0 layout, then 8 little-endian 64-bit masks: bit 4r+j of mask
//                         k (k+4) is the fifth bit of the low (high) nibble at 64k + 4r + j;
//                         one AVX-512 byte mask each, so adding 16 where set costs one op
// A weight is then w = d * (u - offset) with offset 128 (Q8_0), 8 (Q4_0) or 16 (Q5_0), and
//   dot(w, x) = sum_b dw_b * (dx_b * udot_b - offset * dx_b * qsum_b)
// where x ~ dx * qx per block and qsum is the block's sum of qx (kept pre-multiplied, ds).
//
// K-quants go by 256-column super-blocks instead, one record per group and super-block:
//   Q4_K, Q5_K: uint16 d[16], dmin[16]; uint8 sc[8][16], m[8][16] (6-bit scales and mins,
//               unpacked, sub-block-major): 320 bytes; w = d sc_j q - dmin m_j
//   Q6_K:       uint16 d[16]; int8 sc[16][16] (per 16 columns): 288 bytes; w = d sc (q - 32)
// then 8 sub-blocks of 32 columns, each the Q4_0 nibble layout of q's low 4 bits (256 bytes)
// followed, for Q5_K and Q6_K, by 8 masks of bit 4 (64 bytes) and, for Q6_K, 8 of bit 5.
// So dot = sum_j (d sc_j) (dx udot_j) - (dmin m_j) ds_j, and for Q6_K per 16-column half h:
// (d sc_h) (dx udot_h - 32 ds2_h). 2368 / 2880 / 3360 bytes per 16 rows, the file's 2304 /
// 2816 / 3360.
// Groups go by pairs, the unit the kernels read. Except in Q8_0 (packed_pairs_interleaved),
// groups 2p and 2p + 1 lie together block by block: the two headers, then the two data parts
// (for K-quants per sub-block: sub-block j of the first group, then of the second), so that a
// pair is one sequential stream whose vector loads start on cache lines. A tensor's last group,
// when it has an odd number, lies alone, its blocks one after the other, as every Q8_0 group
// does. Group g's bytes start at g x (its blocks' bytes) either way (packed_header_offset,
// packed_sub_offset). A Q4_0 decode kernel alone on a Zen 5 (2 threads, 256 MiB of weights):
// 49 GB/s with each group a stream of its own (a pair's two 8 KiB apart, every other block's
// loads across two cache lines), 63-73 with one stream per pair, what a plain sum reads.
// F16 and BF16 weights are packed too, but stay floats: per group, column by column, the 16
// rows' values side by side (32 bytes per column, the file's bytes). A tile then loads one
// column of 16 rows, widens it to one register and multiplies it by each token's broadcast
// activation: the group's outputs again build up in lanes, with no horizontal sums, and the
// activations stay float (no rounding beyond summation order). GemmArgs::xf carries them.
//
// Where the CPU has bf16 dot products (CpuKernels::gemm_bf16), BF16 weights are packed by column
// pairs instead: per group and pair p of columns (2p, 2p + 1), the 16 rows' two values side by
// side, row r's at 32p + 2r and 32p + 2r + 1 (64 bytes, one register: the operand of vdpbf16ps,
// whose lane r takes the products of row r's pair with a broadcast pair of activations). The
// activations are rounded to bf16 and laid out by pairs too (GemmArgs::xb, bf16_act_offset), in
// blocks of 16 tokens, so that a tile's broadcasts are consecutive 4-byte pairs and one
// pointer walks them. F16 weights may be packed so too, rounded to bf16 (3 of their 11
// significant bits lost): only on request, as the engine's f16_as_bf16.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/types.h"

namespace celer::kernels {

inline constexpr size_t kGroupRows = 16;
inline constexpr size_t kActBlock = 32;
inline constexpr size_t kBf16Tokens = 16;

// Where the bf16 activation of token t, column c lies in a layout of n_tok tokens: tokens in
// blocks of kBf16Tokens (the last one narrower), each block's tokens side by side per column
// pair. One token alone is the plain row.
constexpr size_t bf16_act_offset(size_t t, size_t c, size_t cols, size_t n_tok) {
    const size_t t0 = t / kBf16Tokens * kBf16Tokens, width = n_tok - t0 < kBf16Tokens ? n_tok - t0 : kBf16Tokens;
    return t0 * cols + (c / 2 * width + (t - t0)) * 2 + c % 2;
}

// Bytes of a K-quant record's header, of one sub-block, and of the whole record.
constexpr size_t k_header_bytes(TensorType t) { return t == TensorType::Q6_K ? 288 : 320; }
constexpr size_t k_sub_bytes(TensorType t) { return t == TensorType::Q4_K ? 256 : t == TensorType::Q5_K ? 320 : 384; }
constexpr size_t k_record_bytes(TensorType t) { return k_header_bytes(t) + 8 * k_sub_bytes(t); }
constexpr bool is_k_quant(TensorType t) { return t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K; }
// Packed, but multiplied in float against float activations.
constexpr bool is_packed_float(TensorType t) { return t == TensorType::F16 || t == TensorType::BF16; }

// Activations of n_tok tokens quantised per 32-value block: x[i] ~ d[b] * q[i], ds[b] = d[b] *
// sum of the block's q, ds2[2b + h] the same for its half h (16 values; Q6_K's scales are per
// 16). Token t's values start at q + t * cols, d + t * cols / 32 and ds2 + t * cols / 16.
struct ActsQ8 {
    const int8_t* q;
    const float* d;
    const float* ds;
    const float* ds2;
    size_t cols;
};

// The int8 formats' blocks in the packed layout: a header (block scales; K-quant records' scales
// and mins) and `subs` sub-blocks of 32 columns (Q8_0 / Q4_0 / Q5_0: one block is one sub-block).
constexpr size_t packed_header_bytes(TensorType t) { return is_k_quant(t) ? k_header_bytes(t) : 2 * kGroupRows; }
constexpr size_t packed_sub_bytes(TensorType t) {
    return is_k_quant(t) ? k_sub_bytes(t) : t == TensorType::Q8_0 ? 512 : t == TensorType::Q5_0 ? 320 : 256;
}
constexpr size_t packed_subs(TensorType t) { return is_k_quant(t) ? 8 : 1; }
constexpr size_t packed_block_bytes(TensorType t) { return packed_header_bytes(t) + packed_subs(t) * packed_sub_bytes(t); }
// Whether pairs of groups interleave their blocks. Q8_0's do not: each group of a pair is a stream
// of its own, its blocks one after the other (decode of the 1.5b Q8_0 shape on a Zen 5, 2 threads,
// four alternating rounds: 30.3-33.7 tok/s so, 27.2-30.0 interleaved; the 0.5b lower in 5
// rounds of 6, medians 89.4 against 84.7), where Q4_0 decode gained 10-34% from the interleaving.
constexpr bool packed_pairs_interleaved(TensorType t) { return t != TensorType::Q8_0; }
// Byte offsets, in a packed int8 tensor of n_groups groups and `blocks` blocks per row, of group
// g's header of block b and of its sub-block j there: a pair's blocks interleaved, a last odd
// group alone.
constexpr size_t packed_header_offset(TensorType t, size_t n_groups, size_t blocks, size_t g, size_t b) {
    const size_t bb = packed_block_bytes(t), base = (g & ~size_t(1)) * blocks * bb;
    if (!packed_pairs_interleaved(t) || (g | 1) >= n_groups) return g * blocks * bb + b * bb;
    return base + 2 * b * bb + (g & 1) * packed_header_bytes(t);
}
constexpr size_t packed_sub_offset(TensorType t, size_t n_groups, size_t blocks, size_t g, size_t b, size_t j) {
    const size_t bb = packed_block_bytes(t), base = (g & ~size_t(1)) * blocks * bb;
    if (!packed_pairs_interleaved(t) || (g | 1) >= n_groups) return g * blocks * bb + b * bb + packed_header_bytes(t) + j * packed_sub_bytes(t);
    return base + 2 * b * bb + 2 * packed_header_bytes(t) + (2 * j + (g & 1)) * packed_sub_bytes(t);
}

// Weight types with a packed int8 path, and whether a weight of this shape can use it.
bool int8_packable(TensorType t, size_t rows, size_t cols);
size_t packed_bytes(TensorType t, size_t rows, size_t cols);
// Repacks rows [g0 * 16, g1 * 16) of a (rows, cols) weight (row stride row_bytes) into `dst`,
// which holds the whole packed tensor.
void pack_groups(TensorType t, const uint8_t* src, size_t row_bytes, size_t rows, size_t cols, size_t g0, size_t g1, uint8_t* dst);
// The same for bf16 column pairs, from F16 (rounded to nearest even) or BF16 rows; packed_bytes
// holds for it too.
void pack_bf16_pairs(TensorType t, const uint8_t* src, size_t row_bytes, size_t rows, size_t cols, size_t g0, size_t g1, uint8_t* dst);

// y[t * ldy + r] for tokens [tok0, tok1) and rows of groups [g0, g1).
struct GemmArgs {
    TensorType type;
    const uint8_t* w;  // packed
    size_t cols;
    ActsQ8 x;          // int8 formats
    const float* xf;   // F16 / BF16: token t's activations at xf + t * cols
    const uint16_t* xb;  // bf16 column pairs: activations of tokens [0, tok1) rounded to bf16, at bf16_act_offset
    size_t tok0, tok1;
    float* y;
    size_t ldy;
    // Row groups [g0, g1) of a tensor of n_groups. The int8 formats go by pairs of groups: g0
    // even, and g1 even or n_groups.
    size_t g0, g1;
    size_t n_groups;
};

// Scalar twins, the oracle the SIMD versions are tested against. quantize_acts_ref rounds half
// to even (as the SIMD conversion does), so both produce the same bytes.
void quantize_acts_ref(const float* x, size_t cols, int8_t* q, float* d, float* ds, float* ds2);
void gemm_ref(const GemmArgs& a);
// Activations of n_tok tokens (rows of cols floats) rounded to bf16 (to nearest even) in the
// layout of bf16_act_offset; a SIMD target converts one block of tokens per call.
void to_bf16_ref(const float* x, size_t n_tok, size_t cols, uint16_t* y);
// Products on bf16 column pairs, each product exact in float and summed in column order. tok0
// is a multiple of kBf16Tokens, so that no tile straddles two blocks of activations.
void gemm_bf16_ref(const GemmArgs& a);

}  // namespace celer::kernels
