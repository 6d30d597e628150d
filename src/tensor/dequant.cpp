#include "tensor/dequant.h"

#include <cstring>
#include <type_traits>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace celer {
namespace {

void dequant_q8_0(const BlockQ8_0* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(b[i].d);
        for (int l = 0; l < 32; ++l) y[l] = d * float(b[i].qs[l]);
    }
}

void dequant_q4_0(const BlockQ4_0* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(b[i].d);
        for (int l = 0; l < 16; ++l) {
            y[l] = d * float(int(b[i].qs[l] & 0xF) - 8);
            y[l + 16] = d * float(int(b[i].qs[l] >> 4) - 8);
        }
    }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int l = 0; l < 16; ++l) {
            y[l] = d * float(b[i].qs[l] & 0xF) + m;
            y[l + 16] = d * float(b[i].qs[l] >> 4) + m;
        }
    }
}

uint32_t load_qh(const uint8_t* qh) { return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24; }

template <class Block>
void dequant_q5(const Block* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i, y += 32) {
        const float d = fp16_to_fp32(b[i].d);
        const uint32_t qh = load_qh(b[i].qh);
        for (int l = 0; l < 16; ++l) {
            const int q0 = int((b[i].qs[l] & 0xF) | ((qh >> l & 1u) << 4));
            const int q1 = int((b[i].qs[l] >> 4) | ((qh >> (l + 16) & 1u) << 4));
            if constexpr (std::is_same_v<Block, BlockQ5_0>) {
                y[l] = d * float(q0 - 16);
                y[l + 16] = d * float(q1 - 16);
            } else {
                const float m = fp16_to_fp32(b[i].m);
                y[l] = d * float(q0) + m;
                y[l + 16] = d * float(q1) + m;
            }
        }
    }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        const float dmin = fp16_to_fp32(b[i].dmin);
        const uint8_t* q = b[i].qs;
        for (int c = 0; c < 4; ++c, q += 32) {
            uint8_t sc0, m0, sc1, m1;
            unpack_scale_min_k4(2 * c, b[i].scales, sc0, m0);
            unpack_scale_min_k4(2 * c + 1, b[i].scales, sc1, m1);
            const float d0 = d * sc0, mn0 = dmin * m0, d1 = d * sc1, mn1 = dmin * m1;
            for (int l = 0; l < 32; ++l) *y++ = d0 * float(q[l] & 0xF) - mn0;
            for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] >> 4) - mn1;
        }
    }
}

void dequant_q5_k(const BlockQ5_K* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        const float dmin = fp16_to_fp32(b[i].dmin);
        const uint8_t* q = b[i].qs;
        const uint8_t* qh = b[i].qh;
        for (int c = 0; c < 4; ++c, q += 32) {
            uint8_t sc0, m0, sc1, m1;
            unpack_scale_min_k4(2 * c, b[i].scales, sc0, m0);
            unpack_scale_min_k4(2 * c + 1, b[i].scales, sc1, m1);
            const float d0 = d * sc0, mn0 = dmin * m0, d1 = d * sc1, mn1 = dmin * m1;
            const uint8_t u0 = uint8_t(1u << (2 * c)), u1 = uint8_t(2u << (2 * c));
            for (int l = 0; l < 32; ++l) *y++ = d0 * float((q[l] & 0xF) + ((qh[l] & u0) ? 16 : 0)) - mn0;
            for (int l = 0; l < 32; ++l) *y++ = d1 * float((q[l] >> 4) + ((qh[l] & u1) ? 16 : 0)) - mn1;
        }
    }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, size_t nb) {
    for (size_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        // Each half of 128 weights: ql holds 64 bytes of nibbles, qh 32 bytes of 2-bit pairs.
        for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int s = l / 16;
                const int q1 = int((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
                const int q2 = int((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
                const int q3 = int((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
                const int q4 = int((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
                y[l] = d * float(sc[s + 0]) * float(q1);
                y[l + 32] = d * float(sc[s + 2]) * float(q2);
                y[l + 64] = d * float(sc[s + 4]) * float(q3);
                y[l + 96] = d * float(sc[s + 6]) * float(q4);
            }
        }
    }
}

}  // namespace

void dequantize_row(TensorType type, const void* src, float* dst, size_t n) {
    const size_t nb = n / traits(type).block_elems;
    switch (type) {
        case TensorType::F32: std::memcpy(dst, src, n * sizeof(float)); break;
        case TensorType::F16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
            break;
        }
        case TensorType::BF16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
            break;
        }
        case TensorType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb); break;
        case TensorType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb); break;
        case TensorType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb); break;
        case TensorType::Q5_0: dequant_q5(static_cast<const BlockQ5_0*>(src), dst, nb); break;
        case TensorType::Q5_1: dequant_q5(static_cast<const BlockQ5_1*>(src), dst, nb); break;
        case TensorType::Q4_K: dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb); break;
        case TensorType::Q5_K: dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb); break;
        case TensorType::Q6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb); break;
    }
}

}  // namespace celer
