#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common.h"
#include "gguf_builder.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "util/error.h"

namespace celer {
namespace {

std::vector<uint8_t> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Gguf, WriterReaderRoundTripEveryValueType) {
    gguf::Writer w;
    w.set_u32("a.u32", 7);
    w.set_i32("a.i32", -7);
    w.set_u64("a.u64", uint64_t(1) << 40);
    w.set_f32("a.f32", 1.5f);
    w.set_bool("a.bool", true);
    w.set_string("a.str", "hello \xe2\x96\x81 world");
    const std::string_view strs[] = {"x", "", "zz"};
    w.set_string_array("a.strs", strs);
    const float fs[] = {1, 2, 3};
    w.set_f32_array("a.f32s", fs);
    const int32_t is[] = {-1, 0, 1};
    w.set_i32_array("a.i32s", is);
    w.add_tensor("t0", TensorType::F32, {4, 2});
    w.add_tensor("t1", TensorType::Q8_0, {64});
    const auto path = (test::scratch_dir() / "roundtrip.gguf").string();
    w.write(path, [](size_t i, std::span<uint8_t> out) { std::memset(out.data(), int(i + 1), out.size()); });

    const auto f = gguf::File::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.get_uint("a.u32"), 7u);
    EXPECT_EQ(f.find("a.i32")->num.i, -7);
    EXPECT_EQ(f.get_uint("a.u64"), uint64_t(1) << 40);
    EXPECT_EQ(f.get_float("a.f32"), 1.5);
    EXPECT_EQ(f.get_bool("a.bool"), true);
    EXPECT_EQ(f.get_string("a.str"), "hello \xe2\x96\x81 world");
    EXPECT_EQ(f.get_string_array("a.strs"), (std::vector<std::string_view>{"x", "", "zz"}));
    EXPECT_EQ(f.get_f32_array("a.f32s"), (std::vector<float>{1, 2, 3}));
    EXPECT_EQ(f.get_i32_array("a.i32s"), (std::vector<int32_t>{-1, 0, 1}));
    EXPECT_FALSE(f.get_uint("missing").has_value());
    ASSERT_EQ(f.tensors().size(), 2u);
    const auto* t0 = f.find_tensor("t0");
    ASSERT_NE(t0, nullptr);
    EXPECT_EQ(t0->n_bytes, 32u);
    EXPECT_EQ(t0->ne[1], 2u);
    EXPECT_EQ(t0->data[0], 1);
    const auto* t1 = f.find_tensor("t1");
    EXPECT_EQ(t1->n_bytes, 68u);
    EXPECT_EQ(t1->data[67], 2);
    EXPECT_EQ((t1->data - t0->data) % 32, 0);

    // Copying every entry into a new writer reproduces the metadata bytes exactly.
    gguf::Writer w2;
    for (const auto& [k, v] : f.metadata()) w2.copy_value(k, v);
    const auto path2 = (test::scratch_dir() / "roundtrip2.gguf").string();
    w2.write(path2, [](size_t, std::span<uint8_t>) {});
    const auto a = read_all(path), b = read_all(path2);
    const auto f2 = gguf::File::open(path2);
    const size_t kv_end = f2.metadata_end();
    ASSERT_EQ(kv_end, f.metadata_end());
    EXPECT_EQ(std::memcmp(a.data() + 24, b.data() + 24, kv_end - 24), 0);
}

// GGUF v2 has the same layout as v3 (v3 only added big-endian files, which celer refuses).
TEST(Gguf, ReadsVersion2) {
    test::GgufBytes g;
    g.header(1, 1, 2).kv_str("general.architecture", "llama").tensor("w", {8}, 0, 0).align().zeros(32);
    const auto f = gguf::File::parse("v2.gguf", g.b);
    EXPECT_EQ(f.version(), 2u);
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(f.tensors()[0].data, g.b.data() + f.data_offset());
}

TEST(Gguf, HonoursCustomAlignment) {
    test::GgufBytes g;
    g.header(2, 1).kv_u32("general.alignment", 64).tensor("a", {4}, 0, 0).tensor("b", {4}, 0, 64).align(64).zeros(128);
    const auto f = gguf::File::parse("a64.gguf", g.b);
    EXPECT_EQ(f.alignment(), 64u);
    EXPECT_EQ(f.data_offset() % 64, 0u);
    EXPECT_EQ(f.find_tensor("b")->data - f.find_tensor("a")->data, 64);
}

TEST(Gguf, TypedGettersRejectWrongTypes) {
    gguf::Writer w;
    w.set_string("s", "text");
    w.set_i32("neg", -3);
    const auto bytes = w.encode_header();
    const auto f = gguf::File::parse("mem.gguf", bytes);
    EXPECT_THROW(f.get_uint("s"), Error);
    EXPECT_THROW(f.get_uint("neg"), Error);
    EXPECT_THROW(f.get_bool("s"), Error);
    EXPECT_THROW(f.get_string_array("s"), Error);
    EXPECT_EQ(f.get_float("neg"), -3.0);
}

TEST(Gguf, ReadsStories260K) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const auto f = gguf::File::open(test::shared_dir() + "/models/stories260K.gguf");
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.tensors().size(), 48u);
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 512u);
}

TEST(Gguf, ReadsEveryVocabFile) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    for (const auto& e : std::filesystem::directory_iterator(test::shared_dir() + "/tokenizers")) {
        if (e.path().extension() != ".gguf") continue;
        const auto f = gguf::File::open(e.path().string());
        EXPECT_FALSE(f.get_string_array("tokenizer.ggml.tokens").empty()) << e.path();
    }
}

}  // namespace
}  // namespace celer
