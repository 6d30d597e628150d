#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>

#include "common.h"
#include "tensor/blocks.h"
#include "tensor/dequant.h"
#include "util/fp16.h"

namespace celer {
namespace {

std::vector<float> round_trip(TensorType t, const std::vector<float>& x) {
    std::vector<uint8_t> q(row_bytes(t, x.size()));
    quantize_row(t, x.data(), q.data(), x.size());
    std::vector<float> y(x.size());
    dequantize_row(t, q.data(), y.data(), y.size());
    return y;
}

// Round-to-nearest with step s on data spread evenly has error variance s^2 / 12. For data
// uniform in [-1, 1] (variance 1/3) a code of L steps across the range has s = 2 / L, so
// NMSE = (4 / L^2 / 12) / (1/3) = 1 / L^2. The bound allows 2x for scale quantisation and
// blocks whose extremes fall short of +-1.
struct Case {
    TensorType type;
    double levels;
};

void PrintTo(const Case& c, std::ostream* os) { *os << traits(c.type).name; }

class QuantError : public ::testing::TestWithParam<Case> {};

TEST_P(QuantError, WithinDerivedBound) {
    const auto [type, levels] = GetParam();
    const auto x = test::random_floats(256 * 64, 7);
    const auto y = round_trip(type, x);
    const double bound = 2.0 / (levels * levels);
    EXPECT_LT(test::nmse(y, x), bound) << traits(type).name;
    EXPECT_GT(test::nmse(y, x), 0.0) << "a lossy type cannot be exact on random data";
}

INSTANTIATE_TEST_SUITE_P(Types, QuantError,
                         ::testing::Values(Case{TensorType::Q8_0, 254}, Case{TensorType::Q4_0, 16}, Case{TensorType::Q4_1, 15},
                                           Case{TensorType::Q5_0, 32}, Case{TensorType::Q5_1, 31}, Case{TensorType::Q4_K, 15},
                                           Case{TensorType::Q5_K, 31}, Case{TensorType::Q6_K, 62}),
                         [](const auto& p) { return std::string(traits(p.param.type).name); });

TEST(Quant, FloatTypesAreExactOrNearest) {
    const auto x = test::random_floats(1024, 3);
    EXPECT_EQ(round_trip(TensorType::F32, x), x);
    const auto h = round_trip(TensorType::F16, x);
    const auto b = round_trip(TensorType::BF16, x);
    for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_EQ(h[i], fp16_to_fp32(fp32_to_fp16(x[i])));
        EXPECT_LE(std::fabs(b[i] - x[i]), std::fabs(x[i]) * std::ldexp(1.0f, -8));
    }
}

TEST(Quant, ZeroBlocksStayZero) {
    for (const auto& tt : kTypeTraits) {
        std::vector<float> x(256, 0.0f);
        EXPECT_EQ(round_trip(tt.type, x), x) << tt.name;
    }
}

// Hand-built blocks decoded by the layout described in blocks.h, element by element. These pin
// the bit layouts independently of the quantisers (which could be consistently wrong).
TEST(Dequant, Q4_0Layout) {
    BlockQ4_0 b{};
    b.d = fp32_to_fp16(0.5f);
    for (int i = 0; i < 16; ++i) b.qs[i] = uint8_t(i | (15 - i) << 4);
    float y[32];
    dequantize_row(TensorType::Q4_0, &b, y, 32);
    for (int i = 0; i < 16; ++i) {
        EXPECT_EQ(y[i], 0.5f * float(i - 8));
        EXPECT_EQ(y[i + 16], 0.5f * float(15 - i - 8));
    }
}

TEST(Dequant, Q5_0AndQ5_1Layout) {
    BlockQ5_0 b{};
    b.d = fp32_to_fp16(2.0f);
    b.qs[3] = 0x7;         // element 3 low nibble 7; element 19 high nibble 0
    b.qh[0] = 1 << 3;      // element 3 fifth bit
    b.qh[2] = 1 << 3;      // element 19 (bit 19 = byte 2, bit 3) fifth bit
    float y[32];
    dequantize_row(TensorType::Q5_0, &b, y, 32);
    EXPECT_EQ(y[3], 2.0f * float(23 - 16));
    EXPECT_EQ(y[19], 2.0f * float(16 - 16));
    EXPECT_EQ(y[0], 2.0f * -16);
    BlockQ5_1 c{};
    c.d = fp32_to_fp16(0.5f);
    c.m = fp32_to_fp16(-1.0f);
    c.qs[15] = 0xF0;       // element 31: high nibble 15
    c.qh[3] = 0x80;        // element 31 fifth bit
    dequantize_row(TensorType::Q5_1, &c, y, 32);
    EXPECT_EQ(y[31], 0.5f * 31 - 1.0f);
    EXPECT_EQ(y[15], -1.0f);
}

TEST(Dequant, Q8_0Layout) {
    BlockQ8_0 b{};
    b.d = fp32_to_fp16(0.25f);
    for (int i = 0; i < 32; ++i) b.qs[i] = int8_t(i * 4 - 64);
    float y[32];
    dequantize_row(TensorType::Q8_0, &b, y, 32);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.25f * float(i * 4 - 64));
}

TEST(Dequant, Q4_KLayout) {
    BlockQ4_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.dmin = fp32_to_fp16(0.5f);
    // Sub-block 1: scale 3, min 5 (low 6 bits of bytes 1 and 5). Sub-block 6: scale 37 =
    // 0b100101 (low nibble 5 in byte 10, high bits 0b10 in byte 2's top), min 18 = 0b010010
    // (low nibble 2 in byte 10's high half, high bits 0b01 in byte 6's top).
    b.scales[1] = 3;
    b.scales[5] = 5;
    b.scales[10] = 5 | 2 << 4;
    b.scales[2] |= 2 << 6;
    b.scales[6] |= 1 << 6;
    for (int i = 0; i < 128; ++i) b.qs[i] = uint8_t((i % 16) | ((15 - i % 16) << 4));
    float y[256];
    dequantize_row(TensorType::Q4_K, &b, y, 256);
    // Element 40 is in sub-block 1 (high nibbles of qs[0..31]): q = qs[8] >> 4 = 15 - 8.
    EXPECT_EQ(y[40], 1.0f * 3 * float(15 - 8) - 0.5f * 5);
    // Element 200 is in sub-block 6 (chunk 3, low nibbles): q = qs[96 + 8] & 15 = 8.
    EXPECT_EQ(y[200], 1.0f * 37 * 8.0f - 0.5f * 18);
    EXPECT_EQ(y[0], 0.0f);  // sub-block 0: scale and min 0
}

TEST(Dequant, Q5_KHighBit) {
    BlockQ5_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.scales[0] = 1;   // sub-block 0 scale 1, min 0
    b.scales[3] = 2;   // sub-block 3 scale 2, min 0
    b.qs[5] = 0x0A;    // element 5: low nibble 10
    b.qh[5] = 1;       // bit 0: element 5 of chunk 0 first half gets +16
    b.qs[32 + 7] = 0x30;  // element 64 + 32 + 7 = 103 (sub-block 3): high nibble 3
    b.qh[7] = 1 << 3;     // bit 2c+1 with c = 1
    float y[256];
    dequantize_row(TensorType::Q5_K, &b, y, 256);
    EXPECT_EQ(y[5], 26.0f);
    EXPECT_EQ(y[103], 2.0f * 19);
}

TEST(Dequant, Q6_KLayout) {
    BlockQ6_K b{};
    b.d = fp32_to_fp16(0.5f);
    for (int i = 0; i < 16; ++i) b.scales[i] = int8_t(i + 1);
    // Element 200: second half (128..255), l = 8, third quarter (+64): low nibble is the high
    // half of ql[64 + 8], high bits are bits 4-5 of qh[32 + 8]. q = 0b11_0111 = 55 -> 23.
    b.ql[64 + 8] = 0x70;
    b.qh[32 + 8] = 3 << 4;
    float y[256];
    dequantize_row(TensorType::Q6_K, &b, y, 256);
    EXPECT_EQ(y[200], 0.5f * float(b.scales[200 / 16]) * 23.0f);
    EXPECT_EQ(y[0], 0.5f * 1 * -32.0f);  // all-zero bits decode to q = -32
}

}  // namespace
}  // namespace celer
