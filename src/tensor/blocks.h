// Quantised block layouts, byte-compatible with GGUF files. Each block carries its own scale(s)
// in half precision; values are reconstructed as scale * q (- min) per block or sub-block.
#pragma once

#include <cstdint>

namespace celer {

// 32 weights in 8 bits with one scale: x = d * q. 8.5 bits per weight.
struct BlockQ8_0 {
    static constexpr int kElems = 32;
    uint16_t d;  // fp16 scale
    int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// 32 weights in 4 bits: x = d * (q - 8). Element i is in the low nibble of qs[i] for i < 16,
// in the high nibble of qs[i - 16] otherwise. 4.5 bits per weight.
struct BlockQ4_0 {
    static constexpr int kElems = 32;
    uint16_t d;
    uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

// 32 weights in 4 bits with a scale and an offset: x = d * q + m. 5 bits per weight.
struct BlockQ4_1 {
    static constexpr int kElems = 32;
    uint16_t d;
    uint16_t m;
    uint8_t qs[16];  // nibble order as Q4_0
};
static_assert(sizeof(BlockQ4_1) == 20);

// 32 weights in 5 bits: x = d * (q - 16). The fifth bit of element i is bit i of qh (a
// little-endian u32 stored as bytes, so the block needs no 4-byte alignment). 5.5 bits/weight.
// llama.cpp's quantizer falls back to Q5_0 for Q4_K tensors whose rows are not a multiple of
// 256 (Qwen2.5-0.5B's 896), so Q4_K_M files of such models contain it.
struct BlockQ5_0 {
    static constexpr int kElems = 32;
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

// 32 weights in 5 bits with an offset: x = d * q + m. The Q5_K fallback. 6 bits per weight.
struct BlockQ5_1 {
    static constexpr int kElems = 32;
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

// K-quants: a super-block of 256 weights in 8 sub-blocks of 32 (Q4_K, Q5_K) or 16 of 16 (Q6_K).
// Sub-block scales and mins are themselves quantised (6 bits, or int8 for Q6_K) against the
// super-block's fp16 d and dmin, which is how they reach 4.5 / 5.5 / 6.5625 bits per weight.
inline constexpr int kQK = 256;
inline constexpr int kScaleBytesK = 12;  // 8 scales + 8 mins, 6 bits each

// x = d * sc[j] * q - dmin * m[j], q in [0, 15].
struct BlockQ4_K {
    static constexpr int kElems = kQK;
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kScaleBytesK];
    uint8_t qs[kQK / 2];  // chunk c of 64 weights: low nibbles are its first 32, high its last 32
};
static_assert(sizeof(BlockQ4_K) == 144);

// As Q4_K with a fifth bit per weight in qh: q in [0, 31].
struct BlockQ5_K {
    static constexpr int kElems = kQK;
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kScaleBytesK];
    uint8_t qh[kQK / 8];  // bit 2c of qh[l]: weight l of chunk c's first half; bit 2c+1: second
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// x = d * sc[j] * (q - 32), q in [0, 63] from 4 low bits (ql) and 2 high bits (qh).
struct BlockQ6_K {
    static constexpr int kElems = kQK;
    uint8_t ql[kQK / 2];
    uint8_t qh[kQK / 4];
    int8_t scales[kQK / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. The first four
// pairs sit in the low 6 bits of bytes 0..7; the last four are split: low 4 bits in bytes
// 8..11, high 2 bits in the spare top bits of bytes 0..7. Static: kernel targets compiled with
// different instruction sets each keep their own copy.
static constexpr void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

}  // namespace celer
