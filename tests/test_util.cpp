#include <gtest/gtest.h>

#include "kernels/cpu/kernels.h"
#include "tensor/types.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace celer {
namespace {

TEST(MappedFile, ErrorsNameThePath) {
    try {
        MappedFile f("/nonexistent/x.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/x.gguf: cannot open"), std::string::npos);
    }
}

TEST(Types, TraitsAndNames) {
    EXPECT_EQ(row_bytes(TensorType::Q4_K, 512), 288u);
    EXPECT_EQ(row_bytes(TensorType::Q8_0, 64), 68u);
    EXPECT_EQ(parse_type_name("q6_k"), TensorType::Q6_K);
    EXPECT_EQ(parse_type_name("q5_0"), TensorType::Q5_0);
    EXPECT_FALSE(parse_type_name("q2_k").has_value());
    EXPECT_EQ(ggml_type_name(10), "Q2_K");
    EXPECT_FALSE(find_type(10).has_value());
}

TEST(Kernels, SelectionByNameAndEnvironment) {
    EXPECT_EQ(kernels::select_kernels("scalar").name, "scalar");
    EXPECT_THROW(kernels::select_kernels("avx9000"), Error);
    for (auto name : kernels::available_targets()) EXPECT_EQ(kernels::select_kernels(name).name, name);
}

// Targets are listed best first, the scalar twin last, and "auto" takes the first. On AArch64
// the NEON target is always there (NEON is part of its base instruction set) and always chosen.
TEST(Kernels, BestTargetFirstScalarLast) {
    const auto targets = kernels::available_targets();
    ASSERT_FALSE(targets.empty());
    EXPECT_EQ(targets.back(), "scalar");
    EXPECT_EQ(kernels::select_kernels("auto").name, targets.front());
#if defined(__aarch64__)
    ASSERT_EQ(targets.size(), 2u);
    EXPECT_EQ(targets.front(), "neon");
#endif
}

}  // namespace
}  // namespace celer
