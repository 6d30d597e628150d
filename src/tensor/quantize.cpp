// Reference quantisers: round-to-nearest with per-block scales. They favour clarity over the
// last fraction of a bit of accuracy (llama.cpp searches scales iteratively); the error they
// reach is measured and bounded in tests/test_quant.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/dequant.h"
#include "util/fp16.h"

namespace celer {
namespace {

int nearest(float x) { return int(std::lrintf(x)); }

void quant_q8_0(const float* x, BlockQ8_0* b, size_t nb) {
    for (size_t i = 0; i < nb; ++i, x += 32) {
        float amax = 0;
        for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(x[l]));
        const float d = amax / 127.0f;
        const float id = d > 0 ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int l = 0; l < 32; ++l) b[i].qs[l] = int8_t(std::clamp(nearest(x[l] * id), -127, 127));
    }
}

void quant_q4_0(const float* x, BlockQ4_0* b, size_t nb) {
    for (size_t i = 0; i < nb; ++i, x += 32) {
        // Map the value of largest magnitude onto -8, the end of [-8, 7] with the most room,
        // so that sign keeps one more level for it.
        float vmax = 0;
        for (int l = 0; l < 32; ++l)
            if (std::fabs(x[l]) > std::fabs(vmax)) vmax = x[l];
        const float d = vmax / -8.0f;
        b[i].d = fp32_to_fp16(d);
        const float dq = fp16_to_fp32(b[i].d);
        const float id = dq != 0 ? 1.0f / dq : 0.0f;
        for (int l = 0; l < 16; ++l) {
            const int q0 = std::clamp(nearest(x[l] * id) + 8, 0, 15);
            const int q1 = std::clamp(nearest(x[l + 16] * id) + 8, 0, 15);
            b[i].qs[l] = uint8_t(q0 | q1 << 4);
        }
    }
}

template <class Block>
void pack_32(const uint8_t* q, Block& b);

// Asymmetric 32-weight blocks (Q4_1, Q5_1): the range [min, max] in `levels` steps.
template <class Block>
void quant_affine(const float* x, Block* b, size_t nb, int levels) {
    for (size_t i = 0; i < nb; ++i, x += 32) {
        float lo = x[0], hi = x[0];
        for (int l = 1; l < 32; ++l) {
            lo = std::min(lo, x[l]);
            hi = std::max(hi, x[l]);
        }
        b[i].d = fp32_to_fp16((hi - lo) / float(levels));
        b[i].m = fp32_to_fp16(lo);
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        const float id = d > 0 ? 1.0f / d : 0.0f;
        uint8_t q[32];
        for (int l = 0; l < 32; ++l) q[l] = uint8_t(std::clamp(nearest((x[l] - m) * id), 0, levels));
        pack_32(q, b[i]);
    }
}

// Nibbles as Q4_0 (element l low, l + 16 high); for 5-bit blocks the fifth bits go to qh.
template <class Block>
void pack_32(const uint8_t* q, Block& b) {
    for (int l = 0; l < 16; ++l) b.qs[l] = uint8_t((q[l] & 0xF) | (q[l + 16] & 0xF) << 4);
    if constexpr (requires { b.qh; }) {
        uint32_t qh = 0;
        for (int l = 0; l < 32; ++l) qh |= uint32_t(q[l] >> 4) << l;
        for (int k = 0; k < 4; ++k) b.qh[k] = uint8_t(qh >> (8 * k));
    }
}

void quant_q5_0(const float* x, BlockQ5_0* b, size_t nb) {
    for (size_t i = 0; i < nb; ++i, x += 32) {
        float vmax = 0;  // as Q4_0: the largest magnitude maps onto -16
        for (int l = 0; l < 32; ++l)
            if (std::fabs(x[l]) > std::fabs(vmax)) vmax = x[l];
        b[i].d = fp32_to_fp16(vmax / -16.0f);
        const float d = fp16_to_fp32(b[i].d);
        const float id = d != 0 ? 1.0f / d : 0.0f;
        uint8_t q[32];
        for (int l = 0; l < 32; ++l) q[l] = uint8_t(std::clamp(nearest(x[l] * id) + 16, 0, 31));
        pack_32(q, b[i]);
    }
}

// Scale and min of each 32-weight sub-block for an asymmetric code with `levels` steps,
// quantised to 6 bits against the super-block's d and dmin.
struct SubScalesK {
    uint16_t d, dmin;
    uint8_t ls[8], lm[8];
    float step[8], offset[8];  // reconstructed: x ~= step * q - offset
};

SubScalesK fit_sub_scales(const float* x, int levels) {
    float scale[8], minv[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float lo = 0, hi = 0;  // the min is kept <= 0 so that the stored min is >= 0
        for (int l = 0; l < 32; ++l) {
            lo = std::min(lo, x[32 * j + l]);
            hi = std::max(hi, x[32 * j + l]);
        }
        scale[j] = (hi - lo) / float(levels);
        minv[j] = -lo;
        max_scale = std::max(max_scale, scale[j]);
        max_min = std::max(max_min, minv[j]);
    }
    SubScalesK s{};
    s.d = fp32_to_fp16(max_scale / 63.0f);
    s.dmin = fp32_to_fp16(max_min / 63.0f);
    const float d = fp16_to_fp32(s.d), dmin = fp16_to_fp32(s.dmin);
    for (int j = 0; j < 8; ++j) {
        s.ls[j] = uint8_t(d > 0 ? std::clamp(nearest(scale[j] / d), 0, 63) : 0);
        s.lm[j] = uint8_t(dmin > 0 ? std::clamp(nearest(minv[j] / dmin), 0, 63) : 0);
        s.step[j] = d * s.ls[j];
        s.offset[j] = dmin * s.lm[j];
    }
    return s;
}

void pack_scales_k4(const SubScalesK& s, uint8_t* out) {
    std::memset(out, 0, kScaleBytesK);
    for (int j = 0; j < 4; ++j) {
        out[j] = s.ls[j];
        out[j + 4] = s.lm[j];
    }
    for (int j = 4; j < 8; ++j) {
        out[j + 4] = uint8_t((s.ls[j] & 0xF) | (s.lm[j] & 0xF) << 4);
        out[j - 4] |= uint8_t((s.ls[j] >> 4) << 6);
        out[j] |= uint8_t((s.lm[j] >> 4) << 6);
    }
}

void quantize_sub_blocks(const float* x, const SubScalesK& s, int qmax, uint8_t* q) {
    for (int j = 0; j < 8; ++j) {
        const float inv = s.step[j] > 0 ? 1.0f / s.step[j] : 0.0f;
        for (int l = 0; l < 32; ++l)
            q[32 * j + l] = uint8_t(std::clamp(nearest((x[32 * j + l] + s.offset[j]) * inv), 0, qmax));
    }
}

void quant_q4_k(const float* x, BlockQ4_K* b, size_t nb) {
    uint8_t q[kQK];
    for (size_t i = 0; i < nb; ++i, x += kQK) {
        const SubScalesK s = fit_sub_scales(x, 15);
        b[i].d = s.d;
        b[i].dmin = s.dmin;
        pack_scales_k4(s, b[i].scales);
        quantize_sub_blocks(x, s, 15, q);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) b[i].qs[32 * c + l] = uint8_t(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

void quant_q5_k(const float* x, BlockQ5_K* b, size_t nb) {
    uint8_t q[kQK];
    for (size_t i = 0; i < nb; ++i, x += kQK) {
        const SubScalesK s = fit_sub_scales(x, 31);
        b[i].d = s.d;
        b[i].dmin = s.dmin;
        pack_scales_k4(s, b[i].scales);
        quantize_sub_blocks(x, s, 31, q);
        std::memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                b[i].qs[32 * c + l] = uint8_t((lo & 0xF) | (hi & 0xF) << 4);
                b[i].qh[l] |= uint8_t((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
            }
        }
    }
}

void quant_q6_k(const float* x, BlockQ6_K* b, size_t nb) {
    for (size_t i = 0; i < nb; ++i, x += kQK) {
        float scale[16], max_scale = 0;
        for (int j = 0; j < 16; ++j) {
            float amax = 0;
            for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
            scale[j] = amax / 31.0f;  // symmetric use of [-32, 31]
            max_scale = std::max(max_scale, scale[j]);
        }
        b[i].d = fp32_to_fp16(max_scale / 127.0f);
        const float d = fp16_to_fp32(b[i].d);
        uint8_t q[kQK];
        for (int j = 0; j < 16; ++j) {
            const int sc = d > 0 ? std::clamp(nearest(scale[j] / d), -128, 127) : 0;
            b[i].scales[j] = int8_t(sc);
            const float step = d * float(sc);
            const float inv = step != 0 ? 1.0f / step : 0.0f;
            for (int l = 0; l < 16; ++l)
                q[16 * j + l] = uint8_t(std::clamp(nearest(x[16 * j + l] * inv), -32, 31) + 32);
        }
        for (int half = 0; half < 2; ++half) {
            const uint8_t* qq = q + 128 * half;
            uint8_t* ql = b[i].ql + 64 * half;
            uint8_t* qh = b[i].qh + 32 * half;
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = qq[l], q2 = qq[l + 32], q3 = qq[l + 64], q4 = qq[l + 96];
                ql[l] = uint8_t((q1 & 0xF) | (q3 & 0xF) << 4);
                ql[l + 32] = uint8_t((q2 & 0xF) | (q4 & 0xF) << 4);
                qh[l] = uint8_t((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }
}

}  // namespace

void quantize_row_q4_0_unsigned_scale(const float* src, void* dst, size_t n) {
    auto* b = static_cast<BlockQ4_0*>(dst);
    for (size_t i = 0; i < n / 32; ++i, src += 32) {
        float amax = 0;
        for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(src[l]));
        b[i].d = fp32_to_fp16(amax / 7.5f);
        const float dq = fp16_to_fp32(b[i].d);
        const float id = dq != 0 ? 1.0f / dq : 0.0f;
        for (int l = 0; l < 16; ++l) {
            const int q0 = std::clamp(nearest(src[l] * id), -8, 7) + 8;
            const int q1 = std::clamp(nearest(src[l + 16] * id), -8, 7) + 8;
            b[i].qs[l] = uint8_t(q0 | q1 << 4);
        }
    }
}

void quantize_row(TensorType type, const float* src, void* dst, size_t n) {
    const size_t nb = n / traits(type).block_elems;
    switch (type) {
        case TensorType::F32: std::memcpy(dst, src, n * sizeof(float)); break;
        case TensorType::F16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
            break;
        }
        case TensorType::BF16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (size_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
            break;
        }
        case TensorType::Q8_0: quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb); break;
        case TensorType::Q4_0: quant_q4_0(src, static_cast<BlockQ4_0*>(dst), nb); break;
        case TensorType::Q4_1: quant_affine(src, static_cast<BlockQ4_1*>(dst), nb, 15); break;
        case TensorType::Q5_0: quant_q5_0(src, static_cast<BlockQ5_0*>(dst), nb); break;
        case TensorType::Q5_1: quant_affine(src, static_cast<BlockQ5_1*>(dst), nb, 31); break;
        case TensorType::Q4_K: quant_q4_k(src, static_cast<BlockQ4_K*>(dst), nb); break;
        case TensorType::Q5_K: quant_q5_k(src, static_cast<BlockQ5_K*>(dst), nb); break;
        case TensorType::Q6_K: quant_q6_k(src, static_cast<BlockQ6_K*>(dst), nb); break;
    }
}

}  // namespace celer
