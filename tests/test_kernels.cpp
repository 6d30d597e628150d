// Every SIMD target's matrix product against the scalar twin, for every weight type, on fresh
// random non-zero inputs. Both decode weights with the same block decoders, so the outputs
// differ only by summation order and FMA contraction; the bound is the classic one for two
// n-term float dot products: |y - y_ref| <= 2 * gamma_n * sum |w_i x_i|, gamma_n = n u / (1 - n u),
// u = 2^-24.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>

#include "common.h"
#include "kernels/cpu/kernels.h"
#include "tensor/dequant.h"

namespace celer {
namespace {

struct Case {
    std::string target;
    TensorType type;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.target << " " << traits(c.type).name; }

class KernelMatchesScalar : public ::testing::TestWithParam<Case> {};

TEST_P(KernelMatchesScalar, Matmul) {
    const auto& [target, type] = GetParam();
    const auto& k = kernels::select_kernels(target);
    const auto& ref = kernels::scalar_kernels();
    for (const size_t cols : {256u, 768u, 4864u}) {
        for (const size_t n_tok : {1u, 3u, 5u}) {  // 5: a tile of 3 (AVX2) or 4 tokens and the rest
            const size_t rows = 37;  // not a multiple of the 4-row blocking
            const size_t rb = row_bytes(type, cols);
            std::vector<uint8_t> w(rows * rb);
            const auto wf = test::random_floats(rows * cols, cols * 31 + n_tok);
            for (size_t r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * cols, w.data() + r * rb, cols);
            const auto x = test::random_floats(n_tok * cols, cols + 7, -2.0f, 2.0f);
            std::vector<float> y(n_tok * rows, NAN), y_ref(n_tok * rows, NAN), scratch(kernels::kScratchRows * cols);
            kernels::MatmulArgs a{w.data(), rb, cols, x.data(), cols, n_tok, y.data(), rows, 0, rows, scratch.data()};
            k.matmul[type_index(type)](a);
            a.y = y_ref.data();
            ref.matmul[type_index(type)](a);

            const double u = std::ldexp(1.0, -24), gamma = double(cols) * u / (1 - double(cols) * u);
            std::vector<float> wrow(cols);
            for (size_t r = 0; r < rows; ++r) {
                dequantize_row(type, w.data() + r * rb, wrow.data(), cols);
                for (size_t t = 0; t < n_tok; ++t) {
                    double mag = 0;
                    for (size_t c = 0; c < cols; ++c) mag += std::fabs(double(wrow[c]) * x[t * cols + c]);
                    ASSERT_TRUE(std::isfinite(y[t * rows + r]));
                    ASSERT_LE(std::fabs(double(y[t * rows + r]) - y_ref[t * rows + r]), 2 * gamma * mag)
                        << "row " << r << " token " << t << " cols " << cols;
                }
            }
        }
    }
}

std::vector<Case> cases() {
    std::vector<Case> v;
    for (auto t : kernels::available_targets())
        for (const auto& tt : kTypeTraits) v.push_back({std::string(t), tt.type});
    return v;
}

INSTANTIATE_TEST_SUITE_P(EveryTargetEveryType, KernelMatchesScalar, ::testing::ValuesIn(cases()),
                         [](const auto& p) { return p.param.target + "_" + std::string(traits(p.param.type).name); });

}  // namespace
}  // namespace celer
