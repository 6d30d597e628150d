// Malformed GGUF files: each must give a one-line celer::Error that names the file and the
// field at fault, never a crash or an out-of-bounds read (ASan builds check the latter).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "common.h"
#include "gguf/gguf.h"
#include "gguf_builder.h"
#include "model/model.h"
#include "util/error.h"

namespace celer {
namespace {

using test::GgufBytes;

struct Bad {
    std::string name;
    std::vector<uint8_t> bytes;
    std::string expect;  // a substring of the error message
};

GgufBytes one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes) {
    GgufBytes g;
    g.header(1, 0).tensor("w", std::move(ne), type, offset).align().zeros(data_bytes);
    return g;
}

std::vector<Bad> cases() {
    std::vector<Bad> c;
    auto add = [&](std::string name, const GgufBytes& g, std::string expect) { c.push_back({std::move(name), g.b, std::move(expect)}); };
    add("empty", GgufBytes{}, "header.magic");
    add("three_bytes", GgufBytes{{'G', 'G', 'U'}}, "too short");
    add("bad_magic", GgufBytes{}.put<uint32_t>(0x4c4c4747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0), "not a GGUF file");
    add("version_1", GgufBytes{}.header(0, 0, 1), "v1 is not supported");
    add("version_99", GgufBytes{}.header(0, 0, 99), "unsupported version 99");
    add("big_endian", GgufBytes{}.header(0, 0, 0x03000000), "big-endian");
    add("truncated_header", GgufBytes{}.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint32_t>(0), "header.n_tensors");
    add("absurd_n_kv", GgufBytes{}.header(0, uint64_t(1) << 60), "header.n_kv");
    add("absurd_n_tensors", GgufBytes{}.header(uint64_t(1) << 40, 0), "header.n_tensors");
    add("huge_key_length", GgufBytes{}.header(0, 1).put<uint64_t>(uint64_t(1) << 63).zeros(16), "kv[0].key");
    add("truncated_key", GgufBytes{}.header(0, 1).put<uint64_t>(40).zeros(12), "kv[0].key");
    add("empty_key", GgufBytes{}.header(0, 1).str("").put<uint32_t>(4).put<uint32_t>(1), "empty key");
    add("unknown_value_type", GgufBytes{}.header(0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0), "unknown value type 13");
    add("truncated_value", GgufBytes{}.header(0, 1).str("k.u32").put<uint32_t>(4).put<uint16_t>(1), "kv[0] 'k.u32'");
    add("bool_not_0_or_1", GgufBytes{}.header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2).zeros(8), "neither 0 nor 1");
    add("absurd_array_count",
        GgufBytes{}.header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(uint64_t(1) << 61).zeros(8), "array count");
    add("unknown_array_type", GgufBytes{}.header(0, 1).str("arr").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(1).zeros(8),
        "unknown array element type 77");
    {
        GgufBytes g;
        g.header(0, 1).str("deep");
        g.put<uint32_t>(9);
        for (int i = 0; i < 5; ++i) g.put<uint32_t>(9).put<uint64_t>(1);
        g.zeros(16);
        add("arrays_nested_too_deep", g, "nested too deeply");
    }
    add("string_in_array_past_end",
        GgufBytes{}.header(0, 1).str("strs").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("ok").put<uint64_t>(1000).zeros(4),
        "exceeds");
    add("duplicate_key", GgufBytes{}.header(0, 2).kv_u32("k", 1).kv_u32("k", 2), "duplicate key");
    add("alignment_not_power_of_two", GgufBytes{}.header(0, 1).kv_u32("general.alignment", 24), "general.alignment");
    add("alignment_wrong_type", GgufBytes{}.header(0, 1).kv_str("general.alignment", "32"), "general.alignment");
    add("zero_dims", GgufBytes{}.header(1, 0).str("w").put<uint32_t>(0).put<uint32_t>(0).put<uint64_t>(0).zeros(32), "n_dims");
    add("five_dims", GgufBytes{}.header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).zeros(32), "n_dims");
    add("zero_dimension", one_tensor({4, 0}, 0, 0, 32), "dimension 1 is zero");
    add("shape_overflow", one_tensor({uint64_t(1) << 32, uint64_t(1) << 32, uint64_t(1) << 32}, 0, 0, 32), "overflows");
    add("unknown_tensor_type", one_tensor({32}, 99, 0, 128), "unknown tensor type 99");
    add("unsupported_tensor_type", one_tensor({256}, 10, 0, 128), "Q2_K");
    add("row_not_block_multiple", one_tensor({33}, 8, 0, 128), "not a multiple of the Q8_0 block size");
    add("misaligned_offset", one_tensor({4}, 0, 4, 64), "not a multiple of the alignment");
    add("data_past_end", one_tensor({64}, 0, 0, 100), "runs past the end");
    add("offset_past_end", one_tensor({4}, 0, 1 << 20, 64), "runs past the end");
    {
        GgufBytes g;
        g.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).align().zeros(128);
        add("overlapping_tensors", g, "overlaps tensor 'a'");
    }
    {
        GgufBytes g;
        g.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).align().zeros(128);
        add("duplicate_tensor_name", g, "duplicate tensor name");
    }
    add("truncated_tensor_info",
        GgufBytes{}.header(1, 0).str("w").put<uint32_t>(2).put<uint64_t>(4).put<uint64_t>(4).put<uint32_t>(0).zeros(4),
        "tensor 'w'.offset");
    add("name_too_long", GgufBytes{}.header(1, 0).str(std::string(300, 'n')).put<uint32_t>(1).put<uint64_t>(4).zeros(40), "name length 300");
    {
        GgufBytes g;  // tensor infos end exactly at the end of the file: no data section at all
        g.header(1, 0).tensor("w", {8}, 0, 0).put<uint8_t>(0);
        add("data_section_missing", g, "past the end");
    }
    return c;
}

TEST(GgufMalformed, EveryCaseGivesAClearError) {
    const auto all = cases();
    ASSERT_GE(all.size(), 20u);
    for (const auto& bad : all) {
        try {
            gguf::File::parse(bad.name + ".gguf", bad.bytes);
            ADD_FAILURE() << bad.name << ": parsed without error";
        } catch (const Error& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find(bad.name + ".gguf: "), std::string::npos) << bad.name << ": " << msg;
            EXPECT_NE(msg.find(bad.expect), std::string::npos) << bad.name << ": '" << msg << "' lacks '" << bad.expect << "'";
            EXPECT_EQ(msg.find('\n'), std::string::npos) << bad.name << ": message is not one line";
        }
    }
}

// Every prefix of a real model file is a truncation in some section; none may parse, crash or
// read past its end.
TEST(GgufMalformed, EveryTruncationOfARealModelFails) {
    const auto path = test::synth_model("tiny-qwen3", "q4_k", 1);
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> full{std::istreambuf_iterator<char>(in), {}};
    const auto whole = gguf::File::parse("whole", full);
    const size_t header_end = whole.data_offset();
    size_t data_end = 0;  // the file may end in alignment padding, which is not needed
    for (const auto& t : whole.tensors()) data_end = std::max<size_t>(data_end, header_end + t.offset + t.n_bytes);
    std::vector<size_t> cuts;
    for (size_t n = 0; n < header_end; n += 1 + n / 64) cuts.push_back(n);  // dense through metadata
    for (size_t n = header_end; n < data_end; n += data_end / 97) cuts.push_back(n);
    cuts.push_back(data_end - 1);
    for (size_t n : cuts) {
        std::vector<uint8_t> prefix(full.begin(), full.begin() + long(n));  // own buffer: ASan sees its end
        EXPECT_THROW(gguf::File::parse("cut", prefix), Error) << "prefix of " << n << " bytes";
    }
}

TEST(GgufMalformed, MissingFileAndDirectory) {
    EXPECT_THROW(gguf::File::open("/nonexistent/model.gguf"), Error);
    EXPECT_THROW(gguf::File::open("/tmp"), Error);
}

// Model-level problems: the file is valid GGUF but not a model celer can run.
TEST(ModelMalformed, UnknownArchitectureMissingTensorWrongShape) {
    auto expect_error = [](const GgufBytes& g, const std::string& what) {
        const auto path = (test::scratch_dir() / "model-bad.gguf").string();
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(g.b.data()), long(g.b.size()));
        try {
            load_model(path);
            ADD_FAILURE() << "loaded: " << what;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    expect_error(GgufBytes{}.header(0, 1).kv_str("general.architecture", "gptj"), "unknown architecture 'gptj'");
    expect_error(GgufBytes{}.header(0, 1).kv_u32("x", 1), "general.architecture: missing");
    GgufBytes g;
    g.header(0, 5)
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.embedding_length", 64)
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.feed_forward_length", 128)
        .kv_u32("llama.attention.head_count", 0);
    expect_error(g, "llama.attention.head_count: value 0 is outside");
}

TEST(ModelMalformed, TensorShapeMismatchIsNamed) {
    // Take a valid tiny model and shrink one tensor's declared rows: the loader must name it.
    const auto path = test::synth_model("tiny-llama", "f32", 1);
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
    const auto f = gguf::File::parse("x", bytes);
    const auto* t = f.find_tensor("blk.0.attn_k.weight");
    ASSERT_NE(t, nullptr);
    // Find the tensor info's ne[1] (= kv_dim 128) right after its name and n_dims.
    const std::string name = "blk.0.attn_k.weight";
    auto it = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
    ASSERT_NE(it, bytes.end());
    const size_t ne1_at = size_t(it - bytes.begin()) + name.size() + 4 + 8;
    uint64_t rows = 64;  // half the real rows: still inside the file, wrong for the model
    std::memcpy(bytes.data() + ne1_at, &rows, 8);
    try {
        load_model(gguf::File::parse("shrunk.gguf", bytes));
        ADD_FAILURE() << "loaded a model with a wrong shape";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.attn_k.weight: shape [256, 64"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace celer
