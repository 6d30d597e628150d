// The tokenizer test vectors in ../shared/tokenizers (from llama.cpp, produced by the Hugging
// Face reference): every string must give exactly the listed ids, for every vocabulary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common.h"
#include "gguf/gguf.h"
#include "tokenizer/vocab.h"

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

}  // namespace
}  // namespace celer
