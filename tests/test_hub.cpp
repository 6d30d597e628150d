// The hub client's pure parts: SHA-256 against FIPS 180-2 and coreutils, the short-name table,
// the cache directory's environment precedence and the cache's bookkeeping. The network side is
// tested end to end against a fake hub in tests/hub/pull.test.mjs.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <random>

#include "common.h"
#include "hub/cache.h"
#include "hub/http.h"
#include "hub/hub.h"
#include "hub/names.h"
#include "hub/sha256.h"
#include "util/error.h"

namespace celer::hub {
namespace {

namespace fs = std::filesystem;

std::string sha(std::string_view s) {
    Sha256 h;
    h.update(s);
    return h.hex_digest();
}

TEST(HubSha256, Fips180Vectors) {
    EXPECT_EQ(sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    Sha256 h;  // one million 'a', fed in uneven pieces
    const std::string chunk(999, 'a');
    size_t left = 1'000'000;
    for (; left >= chunk.size(); left -= chunk.size()) h.update(chunk);
    h.update(std::string(left, 'a'));
    EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

std::string random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s) c = char(rng());
    return s;
}

// Any split of the input gives the digest of the whole: splits around the 64-byte block and the
// 56-byte padding boundary are where a streaming hash goes wrong.
TEST(HubSha256, StreamingSplitsAgree) {
    const std::string data = random_bytes(1000, 1);
    const std::string whole = sha(data);
    for (size_t piece : {1, 3, 55, 56, 57, 63, 64, 65, 127, 128, 129, 999}) {
        Sha256 h;
        for (size_t at = 0; at < data.size(); at += piece) h.update(data.substr(at, piece));
        EXPECT_EQ(h.hex_digest(), whole) << "pieces of " << piece;
    }
    Sha256 h;  // empty updates change nothing
    h.update(data.substr(0, 10));
    h.update("");
    h.update(data.substr(10));
    EXPECT_EQ(h.hex_digest(), whole);
}

// Every length around the padding boundaries against coreutils' sha256sum, an independent
// implementation, via sha256_file.
TEST(HubSha256, FileMatchesCoreutils) {
    const fs::path p = test::scratch_dir() / "sha-input.bin";
    for (size_t n : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 121, 128, 4097, (1 << 20) + 3}) {
        { std::ofstream(p, std::ios::binary) << random_bytes(n, uint32_t(n)); }
        std::string expected(64, '\0');
        FILE* f = ::popen(("sha256sum " + p.string()).c_str(), "r");
        ASSERT_NE(f, nullptr);
        ASSERT_EQ(std::fread(expected.data(), 1, 64, f), 64u);
        ::pclose(f);
        EXPECT_EQ(sha256_file(p.string()), expected) << n << " bytes";
    }
    EXPECT_THROW(sha256_file("/nonexistent/file"), Error);
}

struct NameCase {
    const char* name;
    const char* quant;
    const char* revision;
    const char* repo;
    const char* file;
    const char* want_revision;
    const char* short_name;
};

TEST(HubNames, ResolveTable) {
    const NameCase cases[] = {
        {"qwen2.5-coder", "", "", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "main",
         "qwen2.5-coder:1.5b"},
        {"qwen2.5-coder:latest", "", "", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "main",
         "qwen2.5-coder:1.5b"},
        {"qwen2.5-coder:0.5b", "", "", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "main",
         "qwen2.5-coder:0.5b"},
        {"qwen2.5-coder:7b-instruct-q8_0", "", "", "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q8_0.gguf",
         "main", "qwen2.5-coder:7b-instruct-q8_0"},
        {"qwen2.5-coder:3b-q5_k_m", "", "", "Qwen/Qwen2.5-Coder-3B-Instruct-GGUF", "qwen2.5-coder-3b-instruct-q5_k_m.gguf", "main",
         "qwen2.5-coder:3b-instruct-q5_k_m"},
        {"Qwen2.5-Coder:14B-Instruct", "", "", "Qwen/Qwen2.5-Coder-14B-Instruct-GGUF", "qwen2.5-coder-14b-instruct-q4_k_m.gguf",
         "main", "qwen2.5-coder:14b"},
        {"qwen2.5-coder:32b", "fp16", "", "Qwen/Qwen2.5-Coder-32B-Instruct-GGUF", "qwen2.5-coder-32b-instruct-fp16.gguf", "main",
         "qwen2.5-coder:32b-instruct-fp16"},
        {"qwen2.5-coder:1.5b-q8_0", "Q2_K", "v1", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q2_k.gguf",
         "v1", "qwen2.5-coder:1.5b-instruct-q2_k"},
        {"deepseek-coder", "", "", "TheBloke/deepseek-coder-1.3b-instruct-GGUF", "deepseek-coder-1.3b-instruct.Q4_K_M.gguf", "main",
         "deepseek-coder:1.3b"},
        {"deepseek-coder:6.7b", "", "", "TheBloke/deepseek-coder-6.7B-instruct-GGUF", "deepseek-coder-6.7b-instruct.Q4_K_M.gguf",
         "main", "deepseek-coder:6.7b"},
        {"deepseek-coder:33b-instruct-q8_0", "", "", "TheBloke/deepseek-coder-33B-instruct-GGUF",
         "deepseek-coder-33b-instruct.Q8_0.gguf", "main", "deepseek-coder:33b-instruct-q8_0"},
        {"deepseek-coder:6.7b", "q5_k_s", "", "TheBloke/deepseek-coder-6.7B-instruct-GGUF", "deepseek-coder-6.7b-instruct.Q5_K_S.gguf",
         "main", "deepseek-coder:6.7b-instruct-q5_k_s"},
        {"hf://bartowski/Some-Model-GGUF/Some-Model-Q4_K_M.gguf", "", "", "bartowski/Some-Model-GGUF", "Some-Model-Q4_K_M.gguf",
         "main", ""},
        {"hf://o/r/sub/dir/m.gguf@v2.0", "", "", "o/r", "sub/dir/m.gguf", "v2.0", ""},
        {"hf://o/r/m.gguf@refs/pr/3", "", "", "o/r", "m.gguf", "refs/pr/3", ""},
        {"hf://o/r/m.gguf@abc", "", "def", "o/r", "m.gguf", "def", ""},
        {"hf://Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q8_0.gguf", "", "", "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
         "qwen2.5-coder-7b-instruct-q8_0.gguf", "main", "qwen2.5-coder:7b-instruct-q8_0"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        const ModelRef r = resolve_name(c.name, c.quant, c.revision);
        EXPECT_EQ(r.repo, c.repo);
        EXPECT_EQ(r.file, c.file);
        EXPECT_EQ(r.revision, c.want_revision);
        EXPECT_EQ(r.short_name, c.short_name);
    }
    EXPECT_EQ(resolve_name("hf://o/r/sub/dir/m.gguf").folder(), "sub/dir");
    EXPECT_EQ(resolve_name("hf://o/r/m.gguf").folder(), "");
    EXPECT_EQ(resolve_name("hf://o/r/m.gguf@v2").uri(), "hf://o/r/m.gguf@v2");
    EXPECT_EQ(resolve_name("qwen2.5-coder:3b").uri(), "hf://Qwen/Qwen2.5-Coder-3B-Instruct-GGUF/qwen2.5-coder-3b-instruct-q4_k_m.gguf");
}

void expect_error(std::string_view name, std::string_view quant, const std::vector<std::string>& parts) {
    try {
        resolve_name(name, quant);
        ADD_FAILURE() << name << " resolved";
    } catch (const Error& e) {
        for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\nlacks: " << p;
    }
}

TEST(HubNames, ErrorsSayWhatIsKnown) {
    expect_error("llama3:8b", "", {"unknown model 'llama3:8b'", "qwen2.5-coder:SIZE", "deepseek-coder:SIZE", "hf://OWNER/REPO"});
    expect_error("qwen2.5-coder:7b-base", "", {"instruct", "hf://"});
    expect_error("qwen2.5-coder:2b", "", {"no size '2b'", "0.5b, 1.5b, 3b, 7b, 14b, 32b"});
    expect_error("qwen2.5-coder:7b-q9_9", "", {"no quantisation 'q9_9'", "q4_k_m"});
    expect_error("qwen2.5-coder:7b", "iq4_xs", {"no quantisation 'iq4_xs'"});
    expect_error("deepseek-coder:6.7b-fp16", "", {"no quantisation 'fp16'"});
    expect_error("qwen2.5-coder:7b-instruct-q8_0-extra", "", {"SIZE[-instruct][-QUANT]"});
    expect_error("hf://o/r/m.gguf", "q8_0", {"--quant"});
    expect_error("hf://o/r", "", {"OWNER/REPO/FILE.gguf"});
    expect_error("hf://o/r/model.bin", "", {"not a .gguf file"});
    expect_error("hf://o/r/../../etc/x.gguf", "", {"bad path segment '..'"});
    expect_error("hf://o/r//x.gguf", "", {"bad path segment"});
    expect_error("hf://o w/r/x.gguf", "", {"bad path segment 'o w'"});
    expect_error("hf://o/r/x.gguf@", "", {"bad revision"});
}

TEST(HubNames, LocalNamesAndShortNames) {
    EXPECT_TRUE(is_hub_name("qwen2.5-coder:1.5b"));
    EXPECT_TRUE(is_hub_name("deepseek-coder"));
    EXPECT_TRUE(is_hub_name("hf://o/r/f.gguf"));
    EXPECT_FALSE(is_hub_name("models/x.gguf"));
    EXPECT_FALSE(is_hub_name("o/r/f.gguf"));

    const auto r = parse_local_name("o/r/sub/f.gguf");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->repo, "o/r");
    EXPECT_EQ(r->file, "sub/f.gguf");
    EXPECT_FALSE(parse_local_name("model.gguf"));
    EXPECT_FALSE(parse_local_name("dir/model.gguf"));
    EXPECT_FALSE(parse_local_name("o/r/f.gguf@v1"));  // no revisions in the cache's own names
    EXPECT_FALSE(parse_local_name("qwen2.5-coder:2b"));
    EXPECT_FALSE(parse_local_name("/abs/o/r/f.gguf"));

    EXPECT_EQ(short_name_for("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q4_k_m.gguf"), "qwen2.5-coder:7b");
    EXPECT_EQ(short_name_for("TheBloke/deepseek-coder-33B-instruct-GGUF", "deepseek-coder-33b-instruct.Q6_K.gguf"),
              "deepseek-coder:33b-instruct-q6_k");
    EXPECT_EQ(short_name_for("o/r", "f.gguf"), "");
    // Every canonical short name resolves back to the same file.
    for (const char* n : {"qwen2.5-coder:7b-instruct-q8_0", "qwen2.5-coder:0.5b", "deepseek-coder:1.3b-instruct-q3_k_l"}) {
        const auto a = resolve_name(n);
        EXPECT_EQ(a.short_name, n);
        EXPECT_EQ(short_name_for(a.repo, a.file), n);
    }
}

TEST(HubHttp, UrlEncode) {
    EXPECT_EQ(url_encode("refs/pr/1", false), "refs%2Fpr%2F1");
    EXPECT_EQ(url_encode("sub dir/a+b.gguf", true), "sub%20dir/a%2Bb.gguf");
    EXPECT_EQ(url_encode("A-z_0.9~", false), "A-z_0.9~");
}

// Sets environment variables for one test and puts back what was there.
class EnvGuard {
public:
    void set(const char* name, const char* value) {
        if (!saved_.count(name)) {
            const char* old = std::getenv(name);
            saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
        }
        if (value) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    ~EnvGuard() {
        for (const auto& [name, value] : saved_) {
            if (value) ::setenv(name.c_str(), value->c_str(), 1);
            else ::unsetenv(name.c_str());
        }
    }

private:
    std::map<std::string, std::optional<std::string>> saved_;
};

TEST(HubCache, DirectoryPrecedence) {
    EnvGuard env;
    env.set("HOME", "/home/u");
    env.set("CELER_HOME", "/c");
    env.set("XDG_CACHE_HOME", "/x");
    EXPECT_EQ(models_dir(), fs::path("/c/models"));
    env.set("CELER_HOME", "");  // empty counts as unset
    EXPECT_EQ(models_dir(), fs::path("/x/celer/models"));
    env.set("XDG_CACHE_HOME", nullptr);
    EXPECT_EQ(models_dir(), fs::path("/home/u/.cache/celer/models"));
    EXPECT_EQ(cache_path(resolve_name("hf://o/r/sub/f.gguf")), fs::path("/home/u/.cache/celer/models/o/r/sub/f.gguf"));
}

TEST(HubCache, EndpointAndToken) {
    EnvGuard env;
    env.set("HF_ENDPOINT", "http://127.0.0.1:9/");
    EXPECT_EQ(endpoint(), "http://127.0.0.1:9");
    env.set("HF_ENDPOINT", nullptr);
    EXPECT_EQ(endpoint(), "https://huggingface.co");
    env.set("HF_TOKEN", " hf_abc\n");
    env.set("HUGGING_FACE_HUB_TOKEN", "hf_old");
    EXPECT_EQ(token(), "hf_abc");
    env.set("HF_TOKEN", nullptr);
    EXPECT_EQ(token(), "hf_old");
    env.set("HUGGING_FACE_HUB_TOKEN", nullptr);
    const fs::path file = test::scratch_dir() / "hf-token";
    { std::ofstream(file) << "hf_from_file\n"; }
    env.set("HF_TOKEN_PATH", file.c_str());
    EXPECT_EQ(token(), "hf_from_file");
    env.set("HF_TOKEN_PATH", "/nonexistent/token");
    EXPECT_EQ(token(), "");
}

void write_file(const fs::path& p, size_t n) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << std::string(n, 'x');
}

TEST(HubCache, ListFindAndRemove) {
    EnvGuard env;
    const fs::path home = test::scratch_dir() / "cache-home";
    env.set("CELER_HOME", home.c_str());
    const ModelRef qwen = resolve_name("qwen2.5-coder:1.5b");
    const fs::path qp = cache_path(qwen);
    write_file(qp, 1500);
    EXPECT_FALSE(is_pulled(qwen));  // no record of a verified pull
    write_meta(qp, PulledMeta{qwen.repo, qwen.file, "main", std::string(64, 'a'), 1500, "2024-01-01T00:00:00Z", "http://x"});
    EXPECT_TRUE(is_pulled(qwen));
    EXPECT_FALSE(is_pulled(resolve_name("qwen2.5-coder:1.5b", "", "v2")));
    write_file(models_dir() / "me/conv/sub/model.gguf", 10);
    write_file(models_dir() / "me/conv/sub/model.gguf.partial", 10);  // unfinished downloads are not listed

    const auto models = list_models();
    ASSERT_EQ(models.size(), 2u);
    EXPECT_EQ(models[0].name, "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    EXPECT_EQ(models[0].short_name, "qwen2.5-coder:1.5b");
    EXPECT_EQ(models[0].size, 1500u);
    EXPECT_EQ(models[1].name, "me/conv/sub/model.gguf");
    EXPECT_EQ(models[1].short_name, "");

    EXPECT_EQ(local_model_path("qwen2.5-coder:1.5b"), qp);
    EXPECT_EQ(local_model_path("hf://" + models[0].name), qp);
    EXPECT_EQ(local_model_path(models[0].name), qp);
    EXPECT_FALSE(local_model_path("hf://" + models[0].name + "@v2"));
    EXPECT_FALSE(local_model_path("qwen2.5-coder:7b"));
    EXPECT_EQ(resolve_model_arg("qwen2.5-coder:1.5b"), qp.string());
    EXPECT_EQ(resolve_model_arg("no/such/file.gguf"), std::nullopt);
    EXPECT_THROW(resolve_model_arg("qwen2.5-coder:7b"), Error);

    write_file(qp.string() + ".lock", 0);  // as an interrupted pull leaves it
    EXPECT_EQ(remove_model("qwen2.5-coder:1.5b"), qp);
    EXPECT_FALSE(fs::exists(qp));
    EXPECT_FALSE(fs::exists(meta_path(qp)));
    EXPECT_FALSE(fs::exists(models_dir() / "Qwen"));  // emptied folders go too
    try {
        remove_model("qwen2.5-coder:1.5b");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("me/conv/sub/model.gguf"), std::string::npos) << e.what();
    }
    remove_model("me/conv/sub/model.gguf");
    EXPECT_TRUE(list_models().empty());
    EXPECT_FALSE(fs::exists(models_dir() / "me"));
}

}  // namespace
}  // namespace celer::hub
