// The packed int8 path (kernels/cpu/int8.h) on every target that has one:
// - activation quantisation gives the same bytes as the scalar twin;
// - the SIMD product equals the scalar twin exactly: both add exact integer dot products and
//   apply the same fused float operations in the same order;
// - the scalar twin itself, reading the packed layout, agrees with a plain dot product of the
//   original (unpacked) weights and the dequantised activations to float rounding, so the
//   packing loses nothing; and with the unquantised activations within the int8 rounding bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common.h"
#include "kernels/cpu/kernels.h"
#include "tensor/dequant.h"
#include "util/fp16.h"

namespace celer {
namespace {

std::vector<const kernels::CpuKernels*> int8_targets() {
    std::vector<const kernels::CpuKernels*> v;
    for (auto t : kernels::available_targets())
        if (const auto& k = kernels::select_kernels(t); k.gemm_int8) v.push_back(&k);
    return v;
}

struct QuantizedActs {
    std::vector<int8_t> q;
    std::vector<float> d, ds, ds2;
    QuantizedActs(size_t n_tok, size_t cols) : q(n_tok * cols), d(n_tok * cols / 32), ds(n_tok * cols / 32), ds2(n_tok * cols / 16) {}
    kernels::ActsQ8 view(size_t cols) const { return {q.data(), d.data(), ds.data(), ds2.data(), cols}; }
};

TEST(Int8, QuantizeMatchesScalarTwin) {
    const auto targets = int8_targets();
    if (targets.empty()) GTEST_SKIP() << "no target with an int8 path on this CPU";
    const size_t cols = 4864;
    auto x = test::random_floats(cols, 5, -3.0f, 3.0f);
    for (size_t i = 0; i < 32; ++i) x[i] = 0.0f;                          // an all-zero block
    for (size_t i = 32; i < 64; ++i) x[i] = float(int(i) - 48) * 0.5f;   // ties at .5 after scaling
    x[100] = 1e30f;                                                        // a huge outlier
    QuantizedActs want(1, cols);
    kernels::quantize_acts_ref(x.data(), cols, want.q.data(), want.d.data(), want.ds.data(), want.ds2.data());
    for (const auto* k : targets) {
        QuantizedActs got(1, cols);
        k->quantize_acts(x.data(), cols, got.q.data(), got.d.data(), got.ds.data(), got.ds2.data());
        EXPECT_EQ(got.q, want.q) << k->name;
        EXPECT_EQ(got.d, want.d) << k->name;
        EXPECT_EQ(got.ds, want.ds) << k->name;
        EXPECT_EQ(got.ds2, want.ds2) << k->name;
    }
    for (size_t i = 0; i < 32; ++i) EXPECT_EQ(want.q[i], 0);
}

using kernels::is_k_quant;

class Int8Gemm : public ::testing::TestWithParam<TensorType> {};

TEST_P(Int8Gemm, MatchesScalarTwinAndUnpackedWeights) {
    const TensorType type = GetParam();
    const size_t rows = 48;
    for (const size_t cols : {256u, 768u, 800u, 896u, 4864u}) {  // 800: an odd number of blocks, the last one unpaired
        if (cols % 256 && is_k_quant(type)) {
            EXPECT_FALSE(kernels::int8_packable(type, rows, cols));  // super-blocks of 256
            continue;
        }
        ASSERT_TRUE(kernels::int8_packable(type, rows, cols));
        const size_t rb = row_bytes(type, cols);
        std::vector<uint8_t> w(rows * rb);
        const auto wf = test::random_floats(rows * cols, cols * 3 + 1);
        for (size_t r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * cols, w.data() + r * rb, cols);
        std::vector<uint8_t> packed(kernels::packed_bytes(type, rows, cols));
        kernels::pack_groups(type, w.data(), rb, rows, cols, 0, 1, packed.data());  // in two calls, as threads do
        kernels::pack_groups(type, w.data(), rb, rows, cols, 1, rows / 16, packed.data());

        // 1, 3, 13 and 70 tokens (across the 64-token chunk): over three row groups, tiles of two
        // groups x 6, 4, 2, 1 tokens and of the odd group x 8, 4, 2, 1.
        for (const size_t n_tok : {1u, 3u, 13u, 70u}) {
            const auto x = test::random_floats(n_tok * cols, cols + n_tok, -2.0f, 2.0f);
            QuantizedActs xq(n_tok, cols);
            const size_t nb = cols / 32;
            for (size_t t = 0; t < n_tok; ++t)
                kernels::quantize_acts_ref(x.data() + t * cols, cols, xq.q.data() + t * cols, xq.d.data() + t * nb, xq.ds.data() + t * nb,
                                           xq.ds2.data() + 2 * t * nb);
            std::vector<float> y_ref(n_tok * rows, NAN);
            kernels::GemmArgs a{type, packed.data(), cols, xq.view(cols), nullptr, nullptr, 0, n_tok, y_ref.data(), rows, 0, rows / 16, rows / 16};
            kernels::gemm_ref(a);

            for (const auto* k : int8_targets()) {
                std::vector<float> y(n_tok * rows, NAN);
                a.y = y.data();
                k->gemm_int8(a);
                ASSERT_EQ(y, y_ref) << k->name << " cols " << cols << " tokens " << n_tok;
                // In pieces, as the threads take them: the pair (groups 0 and 1, interleaved
                // but for Q8_0), then the last group alone.
                std::vector<float> by_piece(n_tok * rows, NAN);
                kernels::GemmArgs piece = a;
                piece.y = by_piece.data();
                piece.g0 = 0, piece.g1 = 2;
                k->gemm_int8(piece);
                piece.g0 = 2, piece.g1 = 3;
                k->gemm_int8(piece);
                ASSERT_EQ(by_piece, y_ref) << k->name << " in pieces, cols " << cols << " tokens " << n_tok;
            }

            // The twin against unpacked weights. With xd the dequantised activations, the float
            // bound is the classic 2 gamma_n sum |w xd|; against the original x the activations'
            // rounding adds at most sum |w| * d / 2 per block.
            const double u = std::ldexp(1.0, -24), gamma = double(cols) * u / (1 - double(cols) * u);
            std::vector<float> wrow(cols);
            for (size_t r = 0; r < rows; ++r) {
                dequantize_row(type, w.data() + r * rb, wrow.data(), cols);
                for (size_t t = 0; t < n_tok; ++t) {
                    double dot_q = 0, mag_q = 0, dot_x = 0, round = 0;
                    for (size_t c = 0; c < cols; ++c) {
                        const double xd = double(xq.d[t * nb + c / 32]) * xq.q[t * cols + c];
                        dot_q += double(wrow[c]) * xd;
                        mag_q += std::fabs(double(wrow[c]) * xd);
                        dot_x += double(wrow[c]) * x[t * cols + c];
                        round += std::fabs(double(wrow[c])) * xq.d[t * nb + c / 32] / 2;
                    }
                    const double got = y_ref[t * rows + r];
                    ASSERT_LE(std::fabs(got - dot_q), 2 * gamma * mag_q + 1e-30) << "row " << r << " token " << t;
                    ASSERT_LE(std::fabs(got - dot_x), round + 2 * gamma * mag_q) << "row " << r << " token " << t;
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(PackedTypes, Int8Gemm, ::testing::Values(TensorType::Q8_0, TensorType::Q4_0, TensorType::Q5_0, TensorType::Q4_K, TensorType::Q5_K,
                                                             TensorType::Q6_K),
                         [](const auto& p) { return std::string(traits(p.param).name); });

// gamma_n = n u / (1 - n u), the classic bound on the relative error of an n-term float sum.
double gamma_n(size_t n) {
    const double u = std::ldexp(1.0, -24);
    return double(n) * u / (1 - double(n) * u);
}

// The targets, then nullptr for the scalar twin.
std::vector<const kernels::CpuKernels*> and_twin(std::vector<const kernels::CpuKernels*> ks) {
    ks.push_back(nullptr);
    return ks;
}

// A product of every row group of a packed (rows, cols) weight over tokens [0, n_tok) into y
// (n_tok, rows); the caller sets the activations.
kernels::GemmArgs whole_product(TensorType type, const std::vector<uint8_t>& packed, size_t rows, size_t cols, size_t n_tok, float* y) {
    kernels::GemmArgs a{};
    a.type = type, a.w = packed.data(), a.cols = cols, a.tok0 = 0, a.tok1 = n_tok;
    a.y = y, a.ldy = rows, a.g0 = 0, a.g1 = rows / 16, a.n_groups = rows / 16;
    return a;
}

// F16 / BF16 packed by columns of 16 rows stay float: every target and the twin against a plain
// dot product of the unpacked weights, within the float bound 2 gamma_n sum |w x| (the two sum
// in different orders). Token counts exercise tiles of 12, 8, 4, 2 and 1 and the 64-token chunk;
// three row groups a pair's tiles and a single group's, which must give the same bits (a product
// taken group by group runs only the latter).
class PackedFloatGemm : public ::testing::TestWithParam<TensorType> {};

TEST_P(PackedFloatGemm, MatchesUnpackedWeights) {
    const TensorType type = GetParam();
    const size_t rows = 48;
    for (const size_t cols : {64u, 896u}) {
        ASSERT_TRUE(kernels::int8_packable(type, rows, cols));
        const size_t rb = row_bytes(type, cols);
        std::vector<uint8_t> w(rows * rb);
        const auto wf = test::random_floats(rows * cols, cols + 5);
        for (size_t r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * cols, w.data() + r * rb, cols);
        std::vector<uint8_t> packed(kernels::packed_bytes(type, rows, cols));
        ASSERT_EQ(packed.size(), w.size());
        kernels::pack_groups(type, w.data(), rb, rows, cols, 0, rows / 16, packed.data());
        for (const size_t n_tok : {1u, 3u, 15u, 27u, 70u}) {
            const auto x = test::random_floats(n_tok * cols, cols * 3 + n_tok, -2.0f, 2.0f);
            const double gamma = gamma_n(cols);
            for (const auto* k : and_twin(int8_targets())) {
                std::vector<float> y(n_tok * rows, NAN);
                kernels::GemmArgs a = whole_product(type, packed, rows, cols, n_tok, y.data());
                a.xf = x.data();
                k ? k->gemm_int8(a) : kernels::gemm_ref(a);
                std::vector<float> wrow(cols);
                for (size_t r = 0; r < rows; ++r) {
                    dequantize_row(type, w.data() + r * rb, wrow.data(), cols);
                    for (size_t t = 0; t < n_tok; ++t) {
                        double dot = 0, mag = 0;
                        for (size_t c = 0; c < cols; ++c) dot += double(wrow[c]) * x[t * cols + c], mag += std::fabs(double(wrow[c]) * x[t * cols + c]);
                        ASSERT_LE(std::fabs(y[t * rows + r] - dot), 2 * gamma * mag)
                            << (k ? k->name : "twin") << " row " << r << " token " << t << " of " << n_tok << " cols " << cols;
                    }
                }
                std::vector<float> by_group(y.size(), NAN);
                a.y = by_group.data();
                for (size_t g = 0; g < rows / 16; ++g) {
                    a.g0 = g, a.g1 = g + 1;
                    k ? k->gemm_int8(a) : kernels::gemm_ref(a);
                }
                EXPECT_EQ(0, std::memcmp(y.data(), by_group.data(), y.size() * sizeof(float))) << (k ? k->name : "twin") << " " << n_tok;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, PackedFloatGemm, ::testing::Values(TensorType::F16, TensorType::BF16),
                         [](const auto& p) { return std::string(traits(p.param).name); });

std::vector<const kernels::CpuKernels*> bf16_targets() {
    std::vector<const kernels::CpuKernels*> v;
    for (auto t : kernels::available_targets())
        if (const auto& k = kernels::select_kernels(t); k.gemm_bf16) v.push_back(&k);
    return v;
}

// Rounding to bf16 gives the twin's bits, block by block, in the layout of bf16_act_offset: full
// blocks of 16 tokens (transposed in registers), one token, and a narrower last block; with
// exact ties (low 16 bits 0x8000, to even both ways), values that carry into the exponent, and
// the largest and smallest normal magnitudes that round to a finite bf16.
TEST(Bf16, ConvertMatchesScalarTwin) {
    const auto targets = bf16_targets();
    if (targets.empty()) GTEST_SKIP() << "no target with a bf16 path on this CPU";
    for (const size_t cols : {32u, 80u, 896u}) {
        for (const size_t n_tok : {1u, 5u, 16u, 37u}) {
            auto x = test::random_floats(n_tok * cols, cols + n_tok, -3.0f, 3.0f);
            const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x3fffffffu, 0x7f7f7fffu, 0x00800000u, 0x7e800000u, 0x3f800001u};
            for (size_t i = 0; i < std::size(special) && i < x.size(); ++i) std::memcpy(&x[i * 7 % x.size()], &special[i], 4);
            std::vector<uint16_t> want(n_tok * cols);
            kernels::to_bf16_ref(x.data(), n_tok, cols, want.data());
            for (const auto* k : targets) {
                std::vector<uint16_t> got(n_tok * cols, 0xFFFF);
                for (size_t t0 = 0; t0 < n_tok; t0 += kernels::kBf16Tokens)
                    k->to_bf16(x.data() + t0 * cols, std::min(kernels::kBf16Tokens, n_tok - t0), cols, got.data() + t0 * cols);
                ASSERT_EQ(got, want) << k->name << " cols " << cols << " tokens " << n_tok;
            }
            for (size_t t = 0; t < n_tok; ++t)  // the twin: to nearest, within half a unit of the 8th bit
                for (size_t c = 0; c < cols; ++c) {
                    const float v = x[t * cols + c], r = bf16_to_fp32(want[kernels::bf16_act_offset(t, c, cols, n_tok)]);
                    ASSERT_LE(std::fabs(double(r) - v), std::ldexp(std::fabs(double(v)), -8)) << v;
                }
        }
    }
}

// Weights by bf16 column pairs (from F16, rounded, or BF16 as they are) and activations rounded
// to bf16: every target with a bf16 path and the twin against a plain dot product of the same
// rounded values, within 2 gamma_n sum |w x| (products are exact in float, so only the sums'
// order differs); and against the unrounded weights and activations within the roundings'
// bound: each of them moves a product by at most 2^-8 relative, so sum |w x| ((1 + 2^-8)^k - 1)
// with k = 1 (BF16) or 2 (F16) more. Token counts exercise tiles of 8, 4, 2 and 1, narrow last
// blocks, the 64-token chunk, and a call that starts at token 16; three row groups, a pair of
// groups per tile and an odd last one.
class PackedBf16Gemm : public ::testing::TestWithParam<TensorType> {};

TEST_P(PackedBf16Gemm, MatchesUnpackedWeights) {
    const TensorType type = GetParam();
    const size_t rows = 48;
    for (const size_t cols : {64u, 896u}) {
        const size_t rb = row_bytes(type, cols);
        std::vector<uint8_t> w(rows * rb);
        const auto wf = test::random_floats(rows * cols, cols + 7);
        for (size_t r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * cols, w.data() + r * rb, cols);
        std::vector<uint8_t> packed(kernels::packed_bytes(type, rows, cols));
        kernels::pack_bf16_pairs(type, w.data(), rb, rows, cols, 0, 1, packed.data());  // in two calls, as threads do
        kernels::pack_bf16_pairs(type, w.data(), rb, rows, cols, 1, rows / 16, packed.data());
        std::vector<float> wrow(rows * cols), wb(rows * cols);
        for (size_t r = 0; r < rows; ++r) dequantize_row(type, w.data() + r * rb, wrow.data() + r * cols, cols);
        for (size_t i = 0; i < wb.size(); ++i) wb[i] = bf16_to_fp32(fp32_to_bf16(wrow[i]));
        for (const size_t n_tok : {1u, 3u, 15u, 16u, 31u, 70u}) {
            const auto x = test::random_floats(n_tok * cols, cols * 5 + n_tok, -2.0f, 2.0f);
            std::vector<uint16_t> xb(n_tok * cols);
            kernels::to_bf16_ref(x.data(), n_tok, cols, xb.data());
            const double gamma = gamma_n(cols);
            const double rounding = std::pow(1 + std::ldexp(1.0, -8), type == TensorType::F16 ? 2 : 1) - 1;
            for (const auto* k : and_twin(bf16_targets())) {
                std::vector<float> y(n_tok * rows, NAN);
                kernels::GemmArgs a = whole_product(type, packed, rows, cols, n_tok, y.data());
                a.xb = xb.data();
                const auto run = [&] { k ? k->gemm_bf16(a) : kernels::gemm_bf16_ref(a); };
                if (n_tok > 16) {
                    a.tok1 = 16, run();
                    a.tok0 = 16, a.tok1 = n_tok, run();
                } else {
                    run();
                }
                for (size_t r = 0; r < rows; ++r)
                    for (size_t t = 0; t < n_tok; ++t) {
                        double dot_b = 0, dot = 0, mag = 0;
                        for (size_t c = 0; c < cols; ++c) {
                            const double xr = bf16_to_fp32(xb[kernels::bf16_act_offset(t, c, cols, n_tok)]);
                            dot_b += double(wb[r * cols + c]) * xr;
                            dot += double(wrow[r * cols + c]) * x[t * cols + c];
                            mag += std::fabs(double(wrow[r * cols + c]) * x[t * cols + c]);
                        }
                        const double got = y[t * rows + r];
                        ASSERT_LE(std::fabs(got - dot_b), 2 * gamma * mag * (1 + rounding))
                            << (k ? k->name : "twin") << " row " << r << " token " << t << " of " << n_tok << " cols " << cols;
                        ASSERT_LE(std::fabs(got - dot), (rounding + 2 * gamma * (1 + rounding)) * mag)
                            << (k ? k->name : "twin") << " row " << r << " token " << t << " of " << n_tok << " cols " << cols;
                    }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, PackedBf16Gemm, ::testing::Values(TensorType::F16, TensorType::BF16),
                         [](const auto& p) { return std::string(traits(p.param).name); });

TEST(Int8, PackableShapes) {
    EXPECT_TRUE(kernels::int8_packable(TensorType::Q8_0, 896, 4864));
    EXPECT_FALSE(kernels::int8_packable(TensorType::Q8_0, 37, 256));  // rows not a multiple of 16
    EXPECT_FALSE(kernels::int8_packable(TensorType::F32, 896, 896));
    EXPECT_FALSE(kernels::int8_packable(TensorType::F16, 896, 8));  // columns not a multiple of 16
    EXPECT_FALSE(kernels::int8_packable(TensorType::Q4_0, 0, 896));
}

// Every target's attention against the scalar twin: same math, different summation order and
// tiling of the online softmax. Outputs are convex combinations of values in [-1, 1]. Groups of
// 1 and 7 query heads (GQA), blocks of 1 and 5 tokens (causal), f32, fp16 and Q8_0 caches (both
// sides widen the same stored elements), in pages of 64 or 128 rows placed anywhere in memory,
// normalised and partial (the unnormalised sums, maxima and totals that flash-decoding merges),
// with and without a cap on the keys the later tokens see; fp16 and Q8_0 keys also by dimension
// (the KV cache's layouts). The pages' unused rows hold NaN bits, which must not reach a result.
TEST(Attention, EveryTargetMatchesScalar) {
    const auto& ref = kernels::scalar_kernels();
    using kernels::KvElem;
    for (auto name : kernels::available_targets()) {
        const auto& k = kernels::select_kernels(name);
        for (const size_t n_q : {1u, 4u, 5u, 6u, 7u, 8u}) {
            for (const size_t hd : {8u, 64u, 80u, 128u}) {
                for (const size_t n_keys : {1u, 63u, 64u, 65u, 300u}) {
                    for (const size_t n_tok : {1u, 5u}) {
                    for (const bool partial : {false, true}) {
                    for (const size_t cap : {size_t(SIZE_MAX), n_keys + 2}) {
                    for (const KvElem elem : {KvElem::F32, KvElem::F16, KvElem::Q8_0}) {
                    for (const bool k_cols : {false, true}) {
                    for (const bool v_q4 : {false, true}) {
                        if (k_cols && elem == KvElem::F32) continue;
                        if (v_q4 && !(elem == KvElem::Q8_0 && k_cols)) continue;  // Q4_0 values come with Q8_0 keys by dimension
                        if (cap != SIZE_MAX && n_tok == 1) continue;
                        // GQA groups of 4, 5 and 8 heads (Llama 3 8B, Qwen2.5 14B and 32B, 3B):
                        // the integer cache's one-token kernel, built per group size.
                        if ((n_q == 4 || n_q == 5 || n_q == 8) && !(elem == KvElem::Q8_0 && k_cols)) continue;
                        if (elem == KvElem::Q8_0 && hd % 32) continue;
                        const TensorType tt = elem == KvElem::F32 ? TensorType::F32 : elem == KvElem::F16 ? TensorType::F16 : TensorType::Q8_0;
                        const size_t keys = n_keys + n_tok - 1, rows = n_tok * n_q;
                        const size_t page_rows = hd == 64 ? 128 : 64;
                        const size_t row = row_bytes(tt, hd);
                        const auto q = test::random_floats(rows * hd, hd + n_keys, -2.0f, 2.0f);
                        const auto kv = test::random_floats(keys * 2 * hd, hd * 7 + n_keys, -1.0f, 1.0f);
                        const bool v_quads = elem == KvElem::Q8_0 && k_cols && !v_q4;
                        // The values' own type: Q4_0 by octets, or the keys' type.
                        const TensorType vt = v_q4 ? TensorType::Q4_0 : tt;
                        const size_t vrow = row_bytes(vt, hd);
                        // Value j's block b of a test row as its scale and its 32 integers.
                        const auto value_block = [&](size_t j, size_t b, uint16_t& scale, int* ints) {
                            std::vector<uint8_t> vq(vrow);
                            if (v_q4) quantize_row_q4_0_unsigned_scale(kv.data() + j * 2 * hd + hd, vq.data(), hd);
                            else quantize_row(vt, kv.data() + j * 2 * hd + hd, vq.data(), hd);
                            const uint8_t* blk = vq.data() + b * (v_q4 ? 18 : 34);
                            std::memcpy(&scale, blk, 2);
                            for (size_t d = 0; d < 32; ++d)
                                ints[d] = v_q4 ? int(d < 16 ? blk[2 + d] & 15 : blk[2 + d - 16] >> 4) - 8 : int(int8_t(blk[2 + d]));
                        };
                        // Pages: (page_rows keys, then page_rows values) each, in reverse order in memory.
                        const size_t n_pages = (keys + page_rows - 1) / page_rows;
                        std::vector<uint8_t> mem(n_pages * page_rows * 2 * row + 8, 0xff);
                        std::vector<const uint8_t*> pages(n_pages);
                        for (size_t p = 0; p < n_pages; ++p) pages[p] = mem.data() + 8 + (n_pages - 1 - p) * page_rows * 2 * row;
                        for (size_t j = 0; j < keys; ++j) {
                            uint8_t* page = const_cast<uint8_t*>(pages[j / page_rows]);
                            if (k_cols) {  // the layouts of kernels.h, written here on their own
                                std::vector<uint8_t> key(row);
                                quantize_row(tt, kv.data() + j * 2 * hd, key.data(), hd);
                                const size_t r = j % page_rows;
                                for (size_t d = 0; d < hd; ++d) {
                                    if (elem == KvElem::F16) {
                                        std::memcpy(page + (d * page_rows + r) * 2, key.data() + 2 * d, 2);
                                    } else {
                                        const uint8_t* blk = key.data() + d / 32 * 34;
                                        page[(d / 4 * page_rows + r) * 4 + d % 4] = uint8_t(int8_t(blk[2 + d % 32]) + 128);
                                        if (d % 32 == 0) std::memcpy(page + hd * page_rows + (d / 32 * page_rows + r) * 2, blk, 2);
                                    }
                                }
                            } else {
                                quantize_row(tt, kv.data() + j * 2 * hd, page + (j % page_rows) * row, hd);
                            }
                            if (v_quads) {  // Q8_0 values by quads of keys, as the cache keeps them with keys by dimension
                                std::vector<uint8_t> value(row);
                                quantize_row(tt, kv.data() + j * 2 * hd + hd, value.data(), hd);
                                uint8_t* vb = page + page_rows * row;
                                const size_t r = j % page_rows;
                                for (size_t d = 0; d < hd; ++d) {
                                    vb[(r / 4 * hd + d) * 4 + r % 4] = value[d / 32 * 34 + 2 + d % 32];
                                    if (d % 32 == 0) std::memcpy(vb + hd * page_rows + (d / 32 * page_rows + r) * 2, value.data() + d / 32 * 34, 2);
                                }
                            } else if (v_q4) {  // Q4_0 values by octets of keys
                                uint8_t* vb = page + page_rows * row;
                                const size_t r = j % page_rows;
                                for (size_t b = 0; b < hd / 32; ++b) {
                                    uint16_t scale;
                                    int ints[32];
                                    value_block(j, b, scale, ints);
                                    std::memcpy(vb + hd * page_rows / 2 + (b * page_rows + r) * 2, &scale, 2);
                                    for (size_t d = 0; d < 32; ++d) {
                                        uint8_t& byte = vb[(r / 8 * hd + b * 32 + d) * 4 + r % 4];
                                        const unsigned sh = r % 8 < 4 ? 0 : 4;
                                        byte = uint8_t((byte & ~(15u << sh)) | (unsigned(ints[d] + 8) << sh));
                                    }
                                }
                            } else {
                                quantize_row(tt, kv.data() + j * 2 * hd + hd, page + (page_rows + j % page_rows) * row, hd);
                            }
                        }
                        std::vector<float> out(rows * hd, NAN), want(rows * hd, NAN), scratch(kernels::attn_scratch_floats(rows, hd, hd));
                        std::vector<float> mx(rows, NAN), sum(rows, NAN), mx_ref(rows, NAN), sum_ref(rows, NAN);
                        kernels::AttnArgs a{};
                        a.q = q.data(), a.n_q = n_q, a.q_stride = hd;
                        a.pages = pages.data(), a.page_rows = page_rows, a.k_off = 0, a.v_off = page_rows * row;
                        a.k_row = row, a.v_row = vrow, a.elem = elem, a.k_cols = k_cols, a.v_quads = v_quads, a.v_q4 = v_q4;
                        a.n_keys = n_keys, a.head_dim = a.head_dim_v = hd, a.scale = 0.125f;
                        a.out = want.data(), a.out_stride = hd, a.partial = partial, a.max = mx_ref.data(), a.sum = sum_ref.data();
                        a.scratch = scratch.data(), a.n_tok = n_tok, a.q_tok_stride = a.out_tok_stride = n_q * hd;
                        a.key_cap = cap;
                        // A target that rounds the query to int8 blocks for Q8_0 keys is held to
                        // the float result on the query rounded so (the rest is exact integers).
                        std::vector<float> qr = q;
                        if (k.attn_int8_query && elem == KvElem::Q8_0 && k_cols && (hd == 64 || hd == 128)) {
                            for (size_t b = 0; b < qr.size(); b += 32) {
                                float amax = 0;
                                for (size_t i = b; i < b + 32; ++i) amax = std::max(amax, std::fabs(qr[i]));
                                const float sc = amax / 127.0f, inv = amax > 0 ? 1.0f / sc : 0.0f;
                                for (size_t i = b; i < b + 32; ++i) qr[i] = std::nearbyint(qr[i] * inv) * sc;
                            }
                        }
                        a.q = qr.data();
                        ref.attention(a);
                        a.q = q.data();
                        a.out = out.data(), a.max = mx.data(), a.sum = sum.data();
                        k.attention(a);
                        const double tol = partial ? 2e-6 * double(keys) : 2e-6;  // unnormalised: sums of up to `keys` terms
                        // Such a target also rounds the probabilities for the values by quads or
                        // octets (kernels.h): per row, tile of 64 keys and block b of 32
                        // dimensions, p_j s_bj to a step of max(p) max(s) / 255 (over the row's
                        // keys in the tile), so each is off by at most half a step, and the result
                        // by that times the sum of |integer value| over the tile's keys (over the
                        // row's total for a normalised result).
                        std::vector<double> pv_bound(rows * hd, 0.0);
                        if (k.attn_int8_query && (v_quads || v_q4) && (hd == 64 || hd == 128)) {
                            for (size_t i = 0; i < rows; ++i) {
                                const size_t t = i / n_q, lim = std::min(n_keys + t, cap);
                                std::vector<double> sc(lim);
                                std::vector<float> key(hd);
                                for (size_t j = 0; j < lim; ++j) {
                                    std::vector<uint8_t> kq(row);
                                    quantize_row(tt, kv.data() + j * 2 * hd, kq.data(), hd);
                                    dequantize_row(tt, kq.data(), key.data(), hd);
                                    double dot = 0;
                                    for (size_t d = 0; d < hd; ++d) dot += double(qr[i * hd + d]) * key[d];
                                    sc[j] = dot * a.scale;
                                }
                                const double m = *std::max_element(sc.begin(), sc.end());
                                double l = 0;
                                for (size_t j = 0; j < lim; ++j) l += std::exp(sc[j] - m);
                                for (size_t j0 = 0; j0 < lim; j0 += 64) {
                                    for (size_t b = 0; b < hd / 32; ++b) {
                                        double p_top = 0, s_top = 0;
                                        std::vector<double> mag(32, 0.0);
                                        for (size_t j = j0; j < std::min(j0 + 64, lim); ++j) {
                                            uint16_t hs;
                                            int ints[32];
                                            value_block(j, b, hs, ints);
                                            p_top = std::max(p_top, std::exp(sc[j] - m));
                                            s_top = std::max(s_top, double(fp16_to_fp32(hs)));
                                            for (size_t d = 0; d < 32; ++d) mag[d] += std::abs(ints[d]);
                                        }
                                        for (size_t d = 0; d < 32; ++d) pv_bound[i * hd + b * 32 + d] += 0.5 * p_top * s_top / 255 * mag[d] / (partial ? 1.0 : l);
                                    }
                                }
                            }
                        }
                        for (size_t d = 0; d < rows * hd; ++d)
                            ASSERT_NEAR(out[d], want[d], tol + 1.02 * pv_bound[d]) << name << " heads " << n_q << " head_dim " << hd << " keys " << n_keys
                                                              << " tokens " << n_tok << " cap " << cap << " elem " << int(elem)
                                                              << " cols " << k_cols << " q4 " << v_q4 << " at " << d;
                        if (partial) {
                            for (size_t h = 0; h < rows; ++h) {
                                ASSERT_NEAR(mx[h], mx_ref[h], 2e-6 * (1 + std::fabs(mx_ref[h])));  // a score: a dot of hd terms
                                ASSERT_NEAR(sum[h], sum_ref[h], 2e-6 * double(keys));
                            }
                        }
                        // A row's result does not depend on the rows beside it: each token alone,
                        // with its own key count, gives the same bits (what makes a speculative
                        // check equal to decoding).
                        for (size_t t = 0; t < n_tok && n_tok > 1; ++t) {
                            std::vector<float> one(n_q * hd, NAN), m1(n_q, NAN), s1(n_q, NAN);
                            kernels::AttnArgs b = a;
                            b.q = q.data() + t * n_q * hd, b.n_tok = 1, b.n_keys = std::min(n_keys + t, cap), b.key_cap = SIZE_MAX;
                            b.out = one.data(), b.max = m1.data(), b.sum = s1.data();
                            k.attention(b);
                            ASSERT_EQ(std::memcmp(one.data(), out.data() + t * n_q * hd, one.size() * sizeof(float)), 0)
                                << name << " heads " << n_q << " head_dim " << hd << " keys " << n_keys << " token " << t << " cap " << cap;
                            if (partial) {
                                ASSERT_EQ(std::memcmp(m1.data(), mx.data() + t * n_q, n_q * sizeof(float)), 0);
                                ASSERT_EQ(std::memcmp(s1.data(), sum.data() + t * n_q, n_q * sizeof(float)), 0);
                            }
                        }
                    }
                    }
                    }
                    }
                    }
                    }
                }
            }
        }
    }
}

// The KV cache's fp16 writes: every target rounds as fp32_to_fp16 does (to nearest even), on
// normal values, ties, subnormals, overflow and signed zeros.
TEST(ToHalf, EveryTargetMatchesScalar) {
    auto x = test::random_floats(1003, 8, -70000.0f, 70000.0f);
    const float special[] = {0.0f, -0.0f, 1e-6f, -3e-8f, 65504.0f, 65520.0f, 1e9f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 6.1e-5f};
    for (size_t i = 0; i < std::size(special); ++i) x[i] = special[i];
    std::vector<uint16_t> want(x.size());
    kernels::scalar_kernels().to_half(x.data(), want.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(want[i], fp32_to_fp16(x[i]));
    for (auto name : kernels::available_targets()) {
        std::vector<uint16_t> got(x.size());
        kernels::select_kernels(name).to_half(x.data(), got.data(), x.size());
        EXPECT_EQ(got, want) << name;
    }
}

// SwiGLU on every target against the scalar twin (libm's exp): the vector exp's relative error
// is below 3e-7, so the product stays within a few float roundings; saturated ends included.
TEST(Swiglu, EveryTargetMatchesScalar) {
    const size_t n = 1000;
    auto g = test::random_floats(n, 3, -12.0f, 12.0f);
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f, g[3] = -87.5f, g[4] = 88.5f;
    const auto u = test::random_floats(n, 4, -2.0f, 2.0f);
    std::vector<float> want = g;
    kernels::scalar_kernels().swiglu(want.data(), u.data(), n);
    for (auto name : kernels::available_targets()) {
        std::vector<float> got = g;
        kernels::select_kernels(name).swiglu(got.data(), u.data(), n);
        for (size_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-30) << name << " i " << i << " g " << g[i];
    }
}

}  // namespace
}  // namespace celer
