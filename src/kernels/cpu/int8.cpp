#include "kernels/cpu/int8.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "tensor/blocks.h"
#include "util/fp16.h"

namespace celer::kernels {
namespace {

constexpr float weight_offset(TensorType t) { return t == TensorType::Q8_0 ? 128.0f : t == TensorType::Q5_0 ? 16.0f : 8.0f; }

// The packed layouts are written a word at a time; their byte order is the little-endian one.
static_assert(std::endian::native == std::endian::little);

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Bit 0 of each of x's 4 bytes, as a nibble (byte i's bit at bit i). The multiply moves byte i's
// bit 8i to 24 + i; no two partial products meet, so nothing carries.
inline uint32_t nibble_of_bytes(uint32_t x) { return ((x & 0x01010101u) * 0x01020408u) >> 24 & 0x0F; }

// One 32-column sub-block of 16 rows: the low 4 bits of q(r, i) in the Q4_0 nibble layout, then
// one mask set per higher bit (`bits` - 4 of them). Bit 4r+jj of mask k (4+k) is that bit of
// the weight in the low (high) nibble of byte 64k + 4r + jj. values(r, v) writes row r's 32
// weights (0 .. 2^bits - 1) to v. A row's 4 bytes of chunk k go as one word, and its 4 bits of a
// mask as one nibble (packing a 1.5b Q4_K_M file took 3 s of its 5 s load byte by byte).
template <typename Values>
void pack_sub_block(const Values& values, int bits, uint8_t* out) {
    uint64_t masks[2][8] = {};
    for (size_t r = 0; r < kGroupRows; ++r) {
        uint8_t v[32];
        values(r, v);
        for (size_t k = 0; k < 4; ++k) {
            const uint32_t lo = load_u32(v + 4 * k), hi = load_u32(v + 16 + 4 * k);
            store_u32(out + 64 * k + 4 * r, (lo & 0x0F0F0F0Fu) | (hi & 0x0F0F0F0Fu) << 4);
            for (int h = 4; h < bits; ++h) {
                masks[h - 4][k] |= uint64_t(nibble_of_bytes(lo >> h)) << (4 * r);
                masks[h - 4][4 + k] |= uint64_t(nibble_of_bytes(hi >> h)) << (4 * r);
            }
        }
    }
    for (int h = 4; h < bits; ++h) std::memcpy(out + 256 + 64 * size_t(h - 4), masks[h - 4], 64);
}

template <typename Block>
const Block& k_block(const uint8_t* src, size_t row_bytes, size_t g, size_t r, size_t sb) {
    return reinterpret_cast<const Block*>(src + (g * kGroupRows + r) * row_bytes)[sb];
}

// Sub-block j (32 weights) of a Q6_K super-block, 0..63: see dequant_q6_k for the bit positions.
void q6_k_sub_block(const BlockQ6_K& b, size_t j, uint8_t* v) {
    const size_t h = j / 4, k4 = j % 4;
    const uint8_t* ql = b.ql + 64 * h + 32 * (k4 % 2);
    const uint8_t* qh = b.qh + 32 * h;
    for (size_t l = 0; l < 32; ++l) v[l] = uint8_t((k4 < 2 ? ql[l] & 0x0F : ql[l] >> 4) | ((qh[l] >> (2 * k4)) & 3) << 4);
}

// Row r's header fields of a Q4_K or Q5_K record.
template <typename Block>
void pack_scales_mins(const Block& blk, size_t r, uint8_t* out) {
    std::memcpy(out + 2 * r, &blk.d, 2);
    std::memcpy(out + 32 + 2 * r, &blk.dmin, 2);
    for (int j = 0; j < 8; ++j) unpack_scale_min_k4(j, blk.scales, out[64 + 16 * j + r], out[192 + 16 * j + r]);
}

// Group g's super-block record sb (layout in int8.h) into the packed tensor `packed` of n_groups
// groups.
void pack_k_record(TensorType t, const uint8_t* src, size_t row_bytes, size_t n_groups, size_t nsb, size_t g, size_t sb, uint8_t* packed) {
    uint8_t* out = packed + packed_header_offset(t, n_groups, nsb, g, sb);
    for (size_t r = 0; r < kGroupRows; ++r) {
        if (t == TensorType::Q6_K) {
            const auto& blk = k_block<BlockQ6_K>(src, row_bytes, g, r, sb);
            std::memcpy(out + 2 * r, &blk.d, 2);
            for (size_t j = 0; j < 16; ++j) out[32 + 16 * j + r] = uint8_t(blk.scales[j]);
        } else if (t == TensorType::Q5_K) {
            pack_scales_mins(k_block<BlockQ5_K>(src, row_bytes, g, r, sb), r, out);
        } else {
            pack_scales_mins(k_block<BlockQ4_K>(src, row_bytes, g, r, sb), r, out);
        }
    }
    for (size_t j = 0; j < 8; ++j) {
        uint8_t* dst = packed + packed_sub_offset(t, n_groups, nsb, g, sb, j);
        if (t == TensorType::Q4_K) {
            // Sub-block j's weight l is nibble j % 2 of qs[32 (j / 2) + l].
            pack_sub_block([&](size_t r, uint8_t* v) {
                const uint8_t* qs = k_block<BlockQ4_K>(src, row_bytes, g, r, sb).qs + 32 * (j / 2);
                for (size_t l = 0; l < 32; ++l) v[l] = uint8_t(qs[l] >> (4 * (j % 2)) & 0x0F);
            }, 4, dst);
        } else if (t == TensorType::Q5_K) {
            pack_sub_block([&](size_t r, uint8_t* v) {
                const auto& blk = k_block<BlockQ5_K>(src, row_bytes, g, r, sb);
                for (size_t l = 0; l < 32; ++l) v[l] = uint8_t((blk.qs[32 * (j / 2) + l] >> (4 * (j % 2)) & 0x0F) | ((blk.qh[l] >> j) & 1) << 4);
            }, 5, dst);
        } else {
            pack_sub_block([&](size_t r, uint8_t* v) { q6_k_sub_block(k_block<BlockQ6_K>(src, row_bytes, g, r, sb), j, v); }, 6, dst);
        }
    }
}

}  // namespace

bool int8_packable(TensorType t, size_t rows, size_t cols) {
    if (rows == 0 || rows % kGroupRows) return false;
    if (is_packed_float(t)) return cols % 16 == 0;
    if (is_k_quant(t)) return cols % 256 == 0;
    return (t == TensorType::Q8_0 || t == TensorType::Q4_0 || t == TensorType::Q5_0) && cols % kActBlock == 0;
}

size_t packed_bytes(TensorType t, size_t rows, size_t cols) {
    if (is_k_quant(t)) return rows / kGroupRows * (cols / 256) * k_record_bytes(t);
    if (is_packed_float(t)) return rows * cols * 2;
    return rows / kGroupRows * (cols / kActBlock) * packed_block_bytes(t);
}

void pack_groups(TensorType t, const uint8_t* src, size_t row_bytes, size_t rows, size_t cols, size_t g0, size_t g1, uint8_t* dst) {
    if (is_packed_float(t)) {
        // Column c of group g: the 16 rows' halves at (g * cols + c) * 16, written 32 bytes at a
        // time (a row at a time wrote 2 bytes every 32).
        auto* out = reinterpret_cast<uint16_t*>(dst);
        for (size_t g = g0; g < g1; ++g) {
            const uint16_t* in[kGroupRows];
            for (size_t r = 0; r < kGroupRows; ++r) in[r] = reinterpret_cast<const uint16_t*>(src + (g * kGroupRows + r) * row_bytes);
            for (size_t c = 0; c < cols; ++c)
                for (size_t r = 0; r < kGroupRows; ++r) out[(g * cols + c) * kGroupRows + r] = in[r][c];
        }
        return;
    }
    if (is_k_quant(t)) {
        const size_t nsb = cols / 256;
        for (size_t g = g0; g < g1; ++g)
            for (size_t sb = 0; sb < nsb; ++sb) pack_k_record(t, src, row_bytes, rows / kGroupRows, nsb, g, sb, dst);
        return;
    }
    const size_t nb = cols / kActBlock;
    for (size_t g = g0; g < g1; ++g) {
        for (size_t b = 0; b < nb; ++b) {
            uint8_t* out = dst + packed_header_offset(t, rows / kGroupRows, nb, g, b);
            uint8_t* sub = dst + packed_sub_offset(t, rows / kGroupRows, nb, g, b, 0);
            uint64_t masks[8] = {};  // Q5_0: bit 4r + j of mask k (4 + k) is the fifth bit of row r's weight 4k + j (16 + 4k + j)
            for (size_t r = 0; r < kGroupRows; ++r) {
                const uint8_t* row = src + (g * kGroupRows + r) * row_bytes;
                uint8_t* data = sub + 4 * r;
                if (t == TensorType::Q8_0) {
                    const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + b;
                    std::memcpy(out + 2 * r, &blk->d, 2);
                    const auto* qs = reinterpret_cast<const uint8_t*>(blk->qs);
                    for (size_t k = 0; k < 8; ++k) store_u32(data + 64 * k, load_u32(qs + 4 * k) ^ 0x80808080u);  // + 128 in each byte
                } else if (t == TensorType::Q4_0) {
                    const auto* blk = reinterpret_cast<const BlockQ4_0*>(row) + b;
                    std::memcpy(out + 2 * r, &blk->d, 2);
                    for (size_t k = 0; k < 4; ++k) store_u32(data + 64 * k, load_u32(blk->qs + 4 * k));
                } else {
                    const auto* blk = reinterpret_cast<const BlockQ5_0*>(row) + b;
                    std::memcpy(out + 2 * r, &blk->d, 2);
                    const uint32_t qh = load_u32(blk->qh);  // bit i: the fifth bit of weight i
                    for (size_t k = 0; k < 4; ++k) {
                        store_u32(data + 64 * k, load_u32(blk->qs + 4 * k));
                        masks[k] |= uint64_t(qh >> (4 * k) & 0x0F) << (4 * r);
                        masks[4 + k] |= uint64_t(qh >> (16 + 4 * k) & 0x0F) << (4 * r);
                    }
                }
            }
            if (t == TensorType::Q5_0) std::memcpy(sub + 256, masks, 64);
        }
    }
}

void pack_bf16_pairs(TensorType t, const uint8_t* src, size_t row_bytes, size_t /*rows*/, size_t cols, size_t g0, size_t g1, uint8_t* dst) {
    // F16 to BF16 by a table of every half (128 KiB, the same rounding as converting each).
    static const std::vector<uint16_t> to_bf16 = [] {
        std::vector<uint16_t> v(65536);
        for (size_t h = 0; h < v.size(); ++h) v[h] = fp32_to_bf16(fp16_to_fp32(uint16_t(h)));
        return v;
    }();
    // Pair p of group g: the 16 rows' two halves at (g * cols / 2 + p) * 32, written 64 bytes at
    // a time (a row at a time wrote 4 bytes every 64).
    auto* out = reinterpret_cast<uint16_t*>(dst);
    for (size_t g = g0; g < g1; ++g) {
        const uint16_t* rows[kGroupRows];
        for (size_t r = 0; r < kGroupRows; ++r) rows[r] = reinterpret_cast<const uint16_t*>(src + (g * kGroupRows + r) * row_bytes);
        uint16_t* o = out + g * cols * kGroupRows;
        for (size_t c = 0; c < cols; c += 2, o += 2 * kGroupRows) {
            if (t == TensorType::F16) {
                for (size_t r = 0; r < kGroupRows; ++r) o[2 * r] = to_bf16[rows[r][c]], o[2 * r + 1] = to_bf16[rows[r][c + 1]];
            } else {
                for (size_t r = 0; r < kGroupRows; ++r) std::memcpy(o + 2 * r, rows[r] + c, 4);
            }
        }
    }
}

void quantize_acts_ref(const float* x, size_t cols, int8_t* q, float* d, float* ds, float* ds2) {
    for (size_t b = 0; b < cols / kActBlock; ++b) {
        const float* xb = x + b * kActBlock;
        float amax = 0;
        for (size_t i = 0; i < kActBlock; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
        const float scale = amax / 127.0f;
        const float inv = amax > 0 ? 127.0f / amax : 0.0f;
        int half[2] = {0, 0};
        for (size_t i = 0; i < kActBlock; ++i) {
            const int v = int(std::nearbyint(xb[i] * inv));
            q[b * kActBlock + i] = int8_t(v);
            half[i / 16] += v;
        }
        d[b] = scale;
        ds[b] = scale * float(half[0] + half[1]);
        ds2[2 * b] = scale * float(half[0]);
        ds2[2 * b + 1] = scale * float(half[1]);
    }
}

namespace {

// Weight (r, i) of a packed sub-block: low nibble plus the mask bits above it.
unsigned sub_block_value(const uint8_t* sub, int bits, size_t r, size_t i) {
    const size_t k = (i % 16) / 4, bit = 4 * r + i % 4;
    const uint8_t byte = sub[64 * k + bit];
    unsigned u = i < 16 ? byte & 0x0F : byte >> 4;
    for (int h = 4; h < bits; ++h) {
        const uint8_t* mask = sub + 256 + 64 * size_t(h - 4) + 8 * (i < 16 ? k : 4 + k);
        u |= unsigned((mask[bit / 8] >> (bit % 8)) & 1) << h;
    }
    return u;
}

void gemm_ref_k(const GemmArgs& a) {
    const TensorType t = a.type;
    const size_t nsb = a.cols / 256, nb = a.cols / kActBlock;
    const int bits = t == TensorType::Q4_K ? 4 : t == TensorType::Q5_K ? 5 : 6;
    for (size_t g = a.g0; g < a.g1; ++g) {
        for (size_t r = 0; r < kGroupRows; ++r) {
            for (size_t tok = a.tok0; tok < a.tok1; ++tok) {
                float acc = 0;
                for (size_t sb = 0; sb < nsb; ++sb) {
                    const uint8_t* rec = a.w + packed_header_offset(t, a.n_groups, nsb, g, sb);
                    uint16_t dh, mh;
                    std::memcpy(&dh, rec + 2 * r, 2);
                    std::memcpy(&mh, rec + 32 + 2 * r, 2);
                    for (size_t j = 0; j < 8; ++j) {
                        const uint8_t* sub = a.w + packed_sub_offset(t, a.n_groups, nsb, g, sb, j);
                        const int8_t* xq = a.x.q + tok * a.cols + (sb * 8 + j) * kActBlock;
                        int32_t udot[2] = {0, 0};
                        for (size_t i = 0; i < kActBlock; ++i) udot[i / 16] += int32_t(sub_block_value(sub, bits, r, i)) * xq[i];
                        const size_t xb = tok * nb + sb * 8 + j;
                        const float dx = a.x.d[xb];
                        // The same fused operations, in the same order, as the SIMD kernel.
                        if (t == TensorType::Q6_K) {
                            for (size_t h = 0; h < 2; ++h) {
                                const float scale = float(int8_t(rec[32 + 16 * (2 * j + h) + r])) * fp16_to_fp32(dh);
                                const float v = std::fma(float(udot[h]), dx, -(32.0f * a.x.ds2[2 * xb + h]));
                                acc = std::fma(v, scale, acc);
                            }
                        } else {
                            const float scale = float(rec[64 + 16 * j + r]) * fp16_to_fp32(dh);
                            const float mn = float(rec[192 + 16 * j + r]) * fp16_to_fp32(mh);
                            acc = std::fma(float(udot[0] + udot[1]) * dx, scale, acc);
                            acc = std::fma(-mn, a.x.ds[xb], acc);
                        }
                    }
                }
                a.y[tok * a.ldy + g * kGroupRows + r] = acc;
            }
        }
    }
}

}  // namespace

void to_bf16_ref(const float* x, size_t n_tok, size_t cols, uint16_t* y) {
    for (size_t t = 0; t < n_tok; ++t)
        for (size_t c = 0; c < cols; ++c) y[bf16_act_offset(t, c, cols, n_tok)] = fp32_to_bf16(x[t * cols + c]);
}

void gemm_bf16_ref(const GemmArgs& a) {
    const auto* w = reinterpret_cast<const uint16_t*>(a.w);
    for (size_t g = a.g0; g < a.g1; ++g)
        for (size_t r = 0; r < kGroupRows; ++r)
            for (size_t t = a.tok0; t < a.tok1; ++t) {
                float acc = 0;
                for (size_t c = 0; c < a.cols; ++c)
                    acc = std::fma(bf16_to_fp32(w[g * a.cols * kGroupRows + c / 2 * 2 * kGroupRows + 2 * r + c % 2]),
                                   bf16_to_fp32(a.xb[bf16_act_offset(t, c, a.cols, a.tok1)]), acc);
                a.y[t * a.ldy + g * kGroupRows + r] = acc;
            }
}

void gemm_ref(const GemmArgs& a) {
    if (is_k_quant(a.type)) return gemm_ref_k(a);
    if (is_packed_float(a.type)) {
        const auto* w = reinterpret_cast<const uint16_t*>(a.w);
        for (size_t g = a.g0; g < a.g1; ++g)
            for (size_t r = 0; r < kGroupRows; ++r)
                for (size_t t = a.tok0; t < a.tok1; ++t) {
                    float acc = 0;
                    for (size_t c = 0; c < a.cols; ++c) {
                        const uint16_t h = w[(g * a.cols + c) * kGroupRows + r];
                        acc += (a.type == TensorType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h)) * a.xf[t * a.cols + c];
                    }
                    a.y[t * a.ldy + g * kGroupRows + r] = acc;
                }
        return;
    }
    const size_t nb = a.cols / kActBlock;
    const float off = weight_offset(a.type);
    for (size_t g = a.g0; g < a.g1; ++g) {
        for (size_t r = 0; r < kGroupRows; ++r) {
            for (size_t t = a.tok0; t < a.tok1; ++t) {
                float acc = 0;
                for (size_t b = 0; b < nb; ++b) {
                    uint16_t dh;
                    std::memcpy(&dh, a.w + packed_header_offset(a.type, a.n_groups, nb, g, b) + 2 * r, 2);
                    const uint8_t* data = a.w + packed_sub_offset(a.type, a.n_groups, nb, g, b, 0);
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
