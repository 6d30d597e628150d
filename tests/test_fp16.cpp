#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "util/fp16.h"

namespace celer {
namespace {

TEST(Fp16, EveryHalfRoundTripsThroughFloat) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_to_fp32(uint16_t(h));
        if (std::isnan(f)) {
            EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f)))) << h;
            continue;
        }
        ASSERT_EQ(fp32_to_fp16(f), uint16_t(h)) << "half 0x" << std::hex << h;
    }
}

TEST(Fp16, KnownValues) {
    EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
    EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
    EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
    EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7c00)));
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // rounds up past the largest finite half
    EXPECT_EQ(fp32_to_fp16(1e-9f), 0x0000);
}

// Float -> half must give the nearest half (ties to even): check against a search over the
// two neighbouring halves computed in double.
TEST(Fp16, FloatToHalfIsNearest) {
    uint64_t s = 12345;
    for (int i = 0; i < 200000; ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const float f = std::ldexp(float(int32_t(s >> 32)) / 2147483648.0f, int(s % 40) - 28);
        const uint16_t h = fp32_to_fp16(f);
        const double err = std::fabs(double(fp16_to_fp32(h)) - f);
        for (int d : {-1, 1}) {
            const uint16_t n = uint16_t(h + d);
            if ((n & 0x7c00) == 0x7c00 || ((n ^ h) & 0x8000)) continue;  // past inf or across zero
            ASSERT_LE(err, std::fabs(double(fp16_to_fp32(n)) - f)) << f;
        }
    }
}

TEST(Bf16, TruncatesWithRoundToNearestEven) {
    EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
    // 1 + 2^-8 is exactly halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
    EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
    EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
    EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = bf16_to_fp32(uint16_t(h));
        if (!std::isnan(f)) {
            ASSERT_EQ(fp32_to_bf16(f), h);
        }
    }
}

}  // namespace
}  // namespace celer
