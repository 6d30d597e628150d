#include <gtest/gtest.h>

#include "common.h"
#include "gguf/gguf.h"
#include "gguf/writer.h"
#include "tokenizer/vocab.h"

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

}  // namespace
}  // namespace celer
