#include "kernels/cpu/int8.h"

#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace celer::kernels {
namespace {

constexpr size_t data_bytes(TensorType t) { return t == TensorType::Q8_0 ? 512 : t == TensorType::Q5_0 ? 320 : 256; }
constexpr size_t group_block_bytes(TensorType t) { return 2 * kGroupRows + data_bytes(t); }
constexpr float weight_offset(TensorType t) { return t == TensorType::Q8_0 ? 128.0f : t == TensorType::Q5_0 ? 16.0f : 8.0f; }

// Bit i of a Q5_0 row's qh is the fifth bit of its weight i.
bool fifth_bit(const BlockQ5_0& b, size_t i) { return (b.qh[i / 8] >> (i % 8)) & 1; }

// Q4_K: one group's super-block (see int8.h for the layout).
void pack_q4_k(const uint8_t* src, size_t row_bytes, size_t g, size_t sb, uint8_t* out) {
    for (size_t r = 0; r < kGroupRows; ++r) {
        const auto* blk = reinterpret_cast<const BlockQ4_K*>(src + (g * kGroupRows + r) * row_bytes) + sb;
        std::memcpy(out + 2 * r, &blk->d, 2);
        std::memcpy(out + 32 + 2 * r, &blk->dmin, 2);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            unpack_scale_min_k4(j, blk->scales, sc, m);
            out[64 + 16 * j + r] = sc;
            out[192 + 16 * j + r] = m;
            // Sub-block j's weight l is nibble j % 2 of qs[32 (j / 2) + l].
            const auto q = [&](size_t l) { return uint8_t((blk->qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0F); };
            uint8_t* data = out + kKHeaderBytes + 256 * size_t(j);
            for (size_t k = 0; k < 4; ++k)
                for (size_t jj = 0; jj < 4; ++jj) data[64 * k + 4 * r + jj] = uint8_t(q(4 * k + jj) | q(16 + 4 * k + jj) << 4);
        }
    }
}

}  // namespace

bool int8_packable(TensorType t, size_t rows, size_t cols) {
    if (rows == 0 || rows % kGroupRows) return false;
    if (t == TensorType::Q4_K) return cols % 256 == 0;
    return (t == TensorType::Q8_0 || t == TensorType::Q4_0 || t == TensorType::Q5_0) && cols % kActBlock == 0;
}

size_t packed_bytes(TensorType t, size_t rows, size_t cols) {
    if (t == TensorType::Q4_K) return rows / kGroupRows * (cols / 256) * kQ4KGroupBytes;
    return rows / kGroupRows * (cols / kActBlock) * group_block_bytes(t);
}

void pack_groups(TensorType t, const uint8_t* src, size_t row_bytes, size_t cols, size_t g0, size_t g1, uint8_t* dst) {
    if (t == TensorType::Q4_K) {
        const size_t nsb = cols / 256;
        for (size_t g = g0; g < g1; ++g)
            for (size_t sb = 0; sb < nsb; ++sb) pack_q4_k(src, row_bytes, g, sb, dst + (g * nsb + sb) * kQ4KGroupBytes);
        return;
    }
    const size_t nb = cols / kActBlock, gbb = group_block_bytes(t);
    for (size_t g = g0; g < g1; ++g) {
        for (size_t b = 0; b < nb; ++b) {
            uint8_t* out = dst + (g * nb + b) * gbb;
            for (size_t r = 0; r < kGroupRows; ++r) {
                const uint8_t* row = src + (g * kGroupRows + r) * row_bytes;
                if (t == TensorType::Q8_0) {
                    const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
                    std::memcpy(out + 2 * r, &blk->d, 2);
                    for (size_t k = 0; k < 8; ++k)
                        for (size_t j = 0; j < 4; ++j) out[2 * kGroupRows + 64 * k + 4 * r + j] = uint8_t(blk->qs[4 * k + j] + 128);
                } else if (t == TensorType::Q4_0) {
                    const auto* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
                    std::memcpy(out + 2 * r, &blk->d, 2);
                    for (size_t k = 0; k < 4; ++k)
                        for (size_t j = 0; j < 4; ++j) out[2 * kGroupRows + 64 * k + 4 * r + j] = blk->qs[4 * k + j];
                } else {
                    const auto* blk = reinterpret_cast<const BlockQ5_0*>(row) + b;
                    std::memcpy(out + 2 * r, &blk->d, 2);
                    uint8_t* masks = out + 2 * kGroupRows + 256;
                    for (size_t k = 0; k < 4; ++k) {
                        for (size_t j = 0; j < 4; ++j) {
                            const size_t bit = 4 * r + j;  // of mask k (low nibbles) and 4 + k (high)
                            out[2 * kGroupRows + 64 * k + bit] = blk->qs[4 * k + j];
                            if (r == 0 && j == 0) std::memset(masks + 8 * k, 0, 8), std::memset(masks + 8 * (4 + k), 0, 8);
                            if (fifth_bit(*blk, 4 * k + j)) masks[8 * k + bit / 8] |= uint8_t(1u << (bit % 8));
                            if (fifth_bit(*blk, 16 + 4 * k + j)) masks[8 * (4 + k) + bit / 8] |= uint8_t(1u << (bit % 8));
                        }
                    }
                }
            }
        }
    }
}

void quantize_acts_ref(const float* x, size_t cols, int8_t* q, float* d, float* ds) {
    for (size_t b = 0; b < cols / kActBlock; ++b) {
        const float* xb = x + b * kActBlock;
        float amax = 0;
        for (size_t i = 0; i < kActBlock; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
        const float scale = amax / 127.0f;
        const float inv = amax > 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (size_t i = 0; i < kActBlock; ++i) {
            const int v = int(std::nearbyint(xb[i] * inv));
            q[b * kActBlock + i] = int8_t(v);
            sum += v;
        }
        d[b] = scale;
        ds[b] = scale * float(sum);
    }
}

namespace {

void gemm_ref_q4_k(const GemmArgs& a) {
    const size_t nsb = a.cols / 256, nb = a.cols / kActBlock;
    for (size_t g = a.g0; g < a.g1; ++g) {
        for (size_t r = 0; r < kGroupRows; ++r) {
            for (size_t t = a.tok0; t < a.tok1; ++t) {
                float acc = 0;
                for (size_t sb = 0; sb < nsb; ++sb) {
                    const uint8_t* blk = a.w + (g * nsb + sb) * kQ4KGroupBytes;
                    uint16_t dh, mh;
                    std::memcpy(&dh, blk + 2 * r, 2);
                    std::memcpy(&mh, blk + 32 + 2 * r, 2);
                    for (size_t j = 0; j < 8; ++j) {
                        const uint8_t* data = blk + kKHeaderBytes + 256 * j;
                        const int8_t* xq = a.x.q + t * a.cols + (sb * 8 + j) * kActBlock;
                        int32_t udot = 0;
                        for (size_t i = 0; i < kActBlock; ++i) {
                            const uint8_t byte = data[64 * ((i % 16) / 4) + 4 * r + i % 4];
                            udot += (i < 16 ? byte & 0x0F : byte >> 4) * xq[i];
                        }
                        const float scale = float(blk[64 + 16 * j + r]) * fp16_to_fp32(dh);
                        const float mn = float(blk[192 + 16 * j + r]) * fp16_to_fp32(mh);
                        const size_t xb = t * nb + sb * 8 + j;
                        // As the SIMD kernel: (udot dx) scale + acc, then acc - mn ds, each fused.
                        acc = std::fma(float(udot) * a.x.d[xb], scale, acc);
                        acc = std::fma(-mn, a.x.ds[xb], acc);
                    }
                }
                a.y[t * a.ldy + g * kGroupRows + r] = acc;
            }
        }
    }
}

}  // namespace

void gemm_ref(const GemmArgs& a) {
    if (a.type == TensorType::Q4_K) return gemm_ref_q4_k(a);
    const size_t nb = a.cols / kActBlock, gbb = group_block_bytes(a.type);
    const float off = weight_offset(a.type);
    for (size_t g = a.g0; g < a.g1; ++g) {
        for (size_t r = 0; r < kGroupRows; ++r) {
            for (size_t t = a.tok0; t < a.tok1; ++t) {
                float acc = 0;
                for (size_t b = 0; b < nb; ++b) {
                    const uint8_t* blk = a.w + (g * nb + b) * gbb;
                    uint16_t dh;
                    std::memcpy(&dh, blk + 2 * r, 2);
                    const uint8_t* data = blk + 2 * kGroupRows;
                    const int8_t* xq = a.x.q + t * a.cols + b * kActBlock;
                    int32_t udot = 0;
                    for (size_t i = 0; i < kActBlock; ++i) {
                        int u;
                        if (a.type == TensorType::Q8_0) {
                            u = data[64 * (i / 4) + 4 * r + i % 4];
                        } else {
                            const size_t k = (i % 16) / 4, bit = 4 * r + i % 4;
                            const uint8_t byte = data[64 * k + bit];
                            u = i < 16 ? byte & 0x0F : byte >> 4;
                            if (a.type == TensorType::Q5_0) {
                                const uint8_t* mask = data + 256 + 8 * (i < 16 ? k : 4 + k);
                                u += ((mask[bit / 8] >> (bit % 8)) & 1) * 16;
                            }
                        }
                        udot += u * xq[i];
                    }
                    const float dx = a.x.d[t * nb + b], dsx = a.x.ds[t * nb + b];
                    // The same fused operations, in the same order, as the SIMD kernels.
                    const float tmp = std::fma(float(udot), dx, -(off * dsx));
                    acc = std::fma(tmp, fp16_to_fp32(dh), acc);
                }
                a.y[t * a.ldy + g * kGroupRows + r] = acc;
            }
        }
    }
}

}  // namespace celer::kernels
