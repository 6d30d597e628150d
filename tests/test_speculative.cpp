// Speculative decoding: the draft sources against brute force, the verdict, the sampler's
// rejection step against the distribution it must keep, and generation with speculation against
// generation without it, token for token, on every model, weight type and kernel target.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "engine/engine.h"
#include "engine/forward.h"
#include "model/model.h"
#include "util/error.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "kernels/cpu/kernels.h"

using namespace celer;

namespace {

// The longest suffix of text[0..i] that also ends at an earlier position, and the latest such
// end, by brute force.
spec::Match brute_match(const std::vector<TokenId>& text) {
    const size_t i = text.size() - 1;
    spec::Match best;
    for (size_t end = 0; end < i; ++end) {
        size_t len = 0;
        while (len <= end && text[end - len] == text[i - len]) ++len;
        if (len > 0 && len >= best.len) best = {len, end};  // ties: the later end
    }
    return best;
}

std::vector<TokenId> random_text(size_t n, int alphabet, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<TokenId> t;
    // Runs copied from earlier in the text, as edits copy from their input, among random tokens.
    while (t.size() < n) {
        if (t.size() > 8 && rng() % 3 == 0) {
            const size_t from = rng() % (t.size() - 4), len = 2 + rng() % 12;
            for (size_t j = 0; j < len && t.size() < n; ++j) t.push_back(t[from + j]);
        } else {
            t.push_back(TokenId(rng() % uint32_t(alphabet)));
        }
    }
    return t;
}

// Generates with the engine and returns the text and the run's counts.
std::pair<std::string, GenerateStats> generate_text(Engine& engine, std::span<const TokenId> prompt, int n, const SamplerParams& sp,
                                                    const spec::SpecParams& spp = {}) {
    std::string text;
    const auto st = engine.generate(prompt, n, sp, [&](std::string_view t) {
        text += t;
        return true;
    }, spp);
    return {text, st};
}

}  // namespace

TEST(Speculative, SuffixIndexFindsTheLongestLatestEarlierOccurrence) {
    for (uint32_t seed = 1; seed <= 6; ++seed) {
        const auto text = random_text(600, seed % 2 ? 3 : 50, seed);
        spec::SuffixIndex idx;
        std::vector<TokenId> seen;
        for (const TokenId t : text) {
            idx.push(t);
            seen.push_back(t);
            const spec::Match want = brute_match(seen), got = idx.match();
            ASSERT_EQ(got.len, want.len) << "seed " << seed << " at " << seen.size();
            if (want.len) {
                // A real earlier occurrence, the latest one here (no run in these texts is
                // long enough to cap the index's walk).
                ASSERT_LT(got.end, seen.size() - 1);
                for (size_t j = 0; j < got.len; ++j) ASSERT_EQ(seen[got.end - j], seen[seen.size() - 1 - j]);
                ASSERT_EQ(got.end, want.end) << "seed " << seed << " at " << seen.size();
            }
        }
    }
}

TEST(Speculative, NgramIndexFindsTheLatestOccurrenceOfTheLastTokens) {
    for (uint32_t seed = 1; seed <= 6; ++seed) {
        const auto text = random_text(600, seed % 2 ? 3 : 50, seed);
        spec::NgramIndex idx;
        std::vector<TokenId> seen;
        for (const TokenId t : text) {
            idx.push(t);
            seen.push_back(t);
            const spec::Match got = idx.match();
            const size_t i = seen.size() - 1;
            if (got.len == 0) {
                // No earlier occurrence of the last two tokens.
                for (size_t end = 1; end < i; ++end)
                    ASSERT_FALSE(seen[end] == seen[i] && seen[end - 1] == seen[i - 1]) << "missed at " << i;
                continue;
            }
            ASSERT_LT(got.end, i);
            ASSERT_GE(got.len, 2u);
            for (size_t j = 0; j < got.len; ++j) ASSERT_EQ(seen[got.end - j], seen[i - j]) << "not a match at " << i;
            // The longest n-gram (up to 4) that occurred before was the one looked up, at its
            // latest occurrence.
            const size_t n = std::min<size_t>(got.len, 4);
            for (size_t end = got.end + 1; end < i; ++end) {
                bool same = end + 1 >= n;
                for (size_t j = 0; same && j < n; ++j) same = seen[end - j] == seen[i - j];
                ASSERT_FALSE(same) << "a later occurrence at " << end << " for the match at " << i;
            }
        }
    }
}

TEST(Speculative, DraftCopiesWhatFollowedTheMatch) {
    spec::SpecParams p;
    p.source = spec::Source::Suffix;
    p.max_draft = 5;
    spec::Speculator s(p);
    const std::vector<TokenId> text = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3};
    s.push(text);
    std::vector<TokenId> d;
    s.draft(d, 100);
    EXPECT_EQ(d, (std::vector<TokenId>{4, 5, 6}));  // as long as the match (3)
    s.draft(d, 2);
    EXPECT_EQ(d, (std::vector<TokenId>{4, 5}));  // no more than room
    s.push(std::vector<TokenId>{4, 5, 6, 7, 8});
    s.draft(d, 100);
    EXPECT_EQ(d, (std::vector<TokenId>{9, 1, 2, 3, 4}));  // at most max_draft
    // A repeating pattern: the copy overlaps the present and carries the period on.
    spec::Speculator run(p);
    run.push(std::vector<TokenId>{9, 7, 7, 7, 7, 7, 7, 7, 7});
    run.draft(d, 100);
    EXPECT_EQ(d, (std::vector<TokenId>{7, 7, 7, 7, 7}));
    spec::Speculator period(p);
    period.push(std::vector<TokenId>{9, 1, 2, 3, 1, 2, 3, 1, 2, 3});
    period.draft(d, 100);
    EXPECT_EQ(d, (std::vector<TokenId>{1, 2, 3, 1, 2}));
    spec::Speculator none(p);
    none.push(std::vector<TokenId>{1, 2, 3, 4});
    none.draft(d, 100);
    EXPECT_TRUE(d.empty());
}

TEST(Speculative, RefusedGuessesShortenTheDraft) {
    spec::SpecParams p;
    p.source = spec::Source::Ngram;
    p.max_draft = 16;
    spec::Speculator s(p);
    std::vector<TokenId> text;
    for (int r = 0; r < 3; ++r)
        for (int i = 0; i < 20; ++i) text.push_back(i);
    s.push(text);
    std::vector<TokenId> d;
    s.draft(d, 100);
    EXPECT_EQ(d.size(), 16u);  // a match of 40: p 0.97 before any feedback
    for (int i = 0; i < 6; ++i) s.feedback(16, 0);
    s.draft(d, 100);
    EXPECT_GE(d.size(), 1u);
    EXPECT_LT(d.size(), 4u);
    EXPECT_EQ(s.stats().drafted, 96u);
    EXPECT_EQ(s.stats().accepted, 0u);
}

TEST(Speculative, VerifyStopsAtTheFirstDisagreement) {
    const std::vector<TokenId> draft = {5, 6, 7, 8};
    const std::vector<TokenId> model = {5, 6, 9, 8, 3};
    std::vector<TokenId> asked;
    const auto v = spec::verify(draft, [&](size_t i, TokenId d) {
        asked.push_back(d);
        return model[i];
    });
    EXPECT_EQ(v.accepted, 2u);
    EXPECT_EQ(v.next, 9);
    EXPECT_EQ(asked, (std::vector<TokenId>{5, 6, 7}));
    const auto all = spec::verify(std::vector<TokenId>{5, 6}, [&](size_t i, TokenId) { return model[i]; });
    EXPECT_EQ(all.accepted, 2u);
    EXPECT_EQ(all.next, 9);  // the model's token after a fully taken guess
}

// Checking a guess keeps the distribution: for each guess d (likely, unlikely, outside the kept
// set), the token sample_given returns follows exactly what sample() draws from. Checked
// with Pearson's chi-square over the kept tokens at a significance of 1e-6 (critical values
// for 5 and 3 degrees of freedom: 35.9 and 30.7).
TEST(Speculative, RejectionSamplingKeepsTheDistribution) {
    const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 0.3f, -2.0f, 0.8f};
    struct Case {
        SamplerParams p;
        double critical;
    };
    std::vector<Case> cases;
    {
        SamplerParams p;  // nothing cut
        p.temperature = 0.7f, p.top_k = 0, p.top_p = 1.0f, p.min_p = 0.0f, p.seed = 11;
        cases.push_back({p, 35.9});
    }
    {
        SamplerParams p;  // top-k 4: tokens 0, 5, 3, 1 kept
        p.temperature = 1.3f, p.top_k = 4, p.top_p = 1.0f, p.min_p = 0.0f, p.seed = 12;
        cases.push_back({p, 30.7});
    }
    for (const Case& c : cases) {
        // The distribution sample() draws from, estimated with many draws' worth of exactness:
        // computed here from the same cut as the sampler's.
        std::vector<size_t> order(logits.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
        const size_t kept = c.p.top_k > 0 ? size_t(c.p.top_k) : logits.size();
        std::vector<double> q(logits.size(), 0.0);
        double z = 0;
        for (size_t j = 0; j < kept; ++j) z += q[order[j]] = std::exp((logits[order[j]] - logits[order[0]]) / c.p.temperature);
        for (double& x : q) x /= z;
        for (const TokenId d : {TokenId(0), TokenId(2), TokenId(4), TokenId(-1)}) {
            Sampler s(c.p);
            const int n = 200000;
            std::vector<int> count(logits.size());
            for (int i = 0; i < n; ++i) ++count[size_t(s.sample_given(logits, {}, d))];
            double chi2 = 0;
            for (size_t t = 0; t < logits.size(); ++t) {
                if (q[t] == 0) {
                    EXPECT_EQ(count[t], 0) << "token " << t << " is cut but was drawn (guess " << d << ")";
                    continue;
                }
                const double e = n * q[t];
                chi2 += (count[t] - e) * (count[t] - e) / e;
            }
            EXPECT_LT(chi2, c.critical) << "guess " << d << ", top_k " << c.p.top_k;
        }
    }
}

// A guess is taken exactly when greedy decoding would have produced it.
TEST(Speculative, GreedyTakesTheGuessOnlyWhenItIsTheMaximum) {
    SamplerParams p;
    p.temperature = 0;
    Sampler s(p);
    const std::vector<float> logits = {0.1f, 2.0f, 1.9f};
    EXPECT_EQ(s.sample_given(logits, {}, 1), 1);
    EXPECT_EQ(s.sample_given(logits, {}, 2), 1);
    EXPECT_EQ(s.sample_given(logits, {}, 0), 1);
}

namespace {

// Generates greedily with and without speculation from a prompt that repeats itself, so that the
// guesses are mostly right and sometimes wrong.
struct Pair {
    std::string plain, spec;
    spec::SpecStats stats;
};

// Tries phrases until the model continues at length and speculation guesses at least once;
// every try is compared.
Pair generate_both(const std::string& path, const std::string& target, KvType kv, spec::Source source, int n) {
    EngineOptions eo;
    eo.n_threads = 2;
    eo.n_ctx = 512;
    eo.kernels = target;
    eo.kv_type = kv;
    Engine engine(path, eo);
    SamplerParams sp;
    sp.temperature = 0;
    spec::SpecParams spp;
    spp.source = source;
    spp.adaptive = false;  // guesses that do not depend on measured timings
    const uint32_t V = engine.model().hp.n_vocab;
    Pair out;
    for (uint32_t seed = 7; seed < 40; ++seed) {
        // A phrase of random tokens, twice, then its start.
        std::mt19937 rng(seed);
        std::vector<TokenId> phrase, prompt;
        for (int i = 0; i < 24; ++i) phrase.push_back(TokenId(3 + rng() % (V - 3)));
        if (engine.model().vocab.bos() >= 0) prompt.push_back(engine.model().vocab.bos());
        for (int r = 0; r < 3; ++r) prompt.insert(prompt.end(), phrase.begin(), phrase.end() - (r == 2 ? 10 : 0));
        const auto [plain_text, plain] = generate_text(engine, prompt, n, sp);
        const auto [spec_text, fast] = generate_text(engine, prompt, n, sp, spp);
        out = {plain_text, spec_text, fast.spec};
        if (out.spec != out.plain || (plain.n_generated >= size_t(n) / 2 && out.stats.drafted > 0)) break;
    }
    return out;
}

}  // namespace

struct SpecParam {
    std::string shape, type, target;
};

class GreedySpeculation : public ::testing::TestWithParam<SpecParam> {};

TEST_P(GreedySpeculation, SameTextAsWithout) {
    const auto& [shape, type, target] = GetParam();
    const auto path = test::synth_model(shape, type);
    for (const auto source : {spec::Source::Suffix, spec::Source::Ngram}) {
        const Pair r = generate_both(path, target, KvType::F16, source, 64);
        EXPECT_EQ(r.spec, r.plain) << spec::source_name(source);
        EXPECT_GT(r.stats.drafted, 0u) << spec::source_name(source);
    }
}

// Every architecture and weight type on the target this CPU runs by default; every other target
// on two types (an int8-path one and a float one). CheckLogitsAreDecodeLogitsBitForBit covers
// every target and type at the level of logits, in one process.
std::vector<SpecParam> spec_params() {
    std::vector<SpecParam> v;
    const std::string best(kernels::select_kernels().name);
    for (const auto target : kernels::available_targets())
        for (const char* shape : {"tiny-llama", "tiny-qwen2", "tiny-qwen3"})
            for (const auto type : synth::type_names())
                if (target == best || type == std::string_view("q4_k_m") || type == std::string_view("f16"))
                    v.push_back({shape, std::string(type), std::string(target)});
    return v;
}

INSTANTIATE_TEST_SUITE_P(AllArchsAllTypes, GreedySpeculation, ::testing::ValuesIn(spec_params()), [](const auto& p) {
    std::string n = p.param.shape + "_" + p.param.type + "_" + p.param.target;
    std::replace(n.begin(), n.end(), '-', '_');
    return n;
});

// The real model: a prompt that tells the same story twice, continued; the guesses are taken
// often, and the text is that of plain decoding on every target and KV type.
TEST(Speculative, StoriesTextUnchangedAndGuessesTaken) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    const std::string path = test::shared_dir() + "/models/stories260K.gguf";
    for (const auto target : kernels::available_targets())
        for (const auto kv : {KvType::F32, KvType::F16}) {  // (its heads are too narrow for q8_0)
            EngineOptions eo;
            eo.n_threads = 2;
            eo.n_ctx = 512;
            eo.kernels = std::string(target);
            eo.kv_type = kv;
            Engine engine(path, eo);
            SamplerParams sp;
            sp.temperature = 0;
            const std::string story =
                "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
                "big, red ball.";
            const auto prompt = engine.tokenize(story + "\n" + story + "\nOnce upon a time", true);
            spec::SpecParams spp;
            spp.source = spec::Source::Suffix;
            spp.adaptive = false;  // guesses that do not depend on measured timings
            const auto plain = generate_text(engine, prompt, 120, sp).first;
            const auto [fast, st] = generate_text(engine, prompt, 120, sp, spp);
            EXPECT_EQ(fast, plain) << target << " " << kv_type_name(kv);
            EXPECT_GT(st.spec.accepted, 10u) << target;
            EXPECT_LT(st.passes, st.n_generated) << target;
        }
}

TEST(Speculative, PassCostInterpolatesWhatItMeasured) {
    spec::PassCost c;
    EXPECT_DOUBLE_EQ(c.relative(1), 1.0);
    EXPECT_NEAR(c.relative(11), 1.2, 1e-12);  // the prior slope, 0.02 per token
    c.observe(1, 0.010);
    c.observe(9, 0.014);
    EXPECT_NEAR(c.seconds(5), 0.012, 1e-12);
    EXPECT_NEAR(c.relative(5), 1.2, 1e-12);
    EXPECT_NEAR(c.relative(17), 1.4 * 1.16, 1e-12);  // past the last size seen: the prior slope from there
    EXPECT_NEAR(c.relative(3, 4), c.seconds(7) / c.seconds(5), 1e-12);  // beside 4 tokens of others
    c.observe(1, 0.020);  // a moving average
    EXPECT_NEAR(c.seconds(1), 0.012, 1e-12);
}

// Where passes cost as much per token as plain decoding (compute-bound) and guesses are mostly
// refused, guessing does not pay and nothing is guessed.
TEST(Speculative, NoGuessWhereItDoesNotPay) {
    spec::SpecParams p;
    p.source = spec::Source::Suffix;
    spec::Speculator s(p);
    std::vector<TokenId> text;
    for (int r = 0; r < 3; ++r)
        for (int i = 0; i < 20; ++i) text.push_back(i);
    s.push(text);
    spec::PassCost steep;
    for (size_t n = 1; n < 20; ++n) steep.observe(n, 0.01 * double(n));
    std::vector<TokenId> d;
    s.draft(d, 100, &steep);
    EXPECT_TRUE(d.empty());
    spec::PassCost flat;  // 5% per extra token
    for (size_t n = 1; n < 20; ++n) flat.observe(n, 0.01 * (1.0 + 0.05 * double(n - 1)));
    s.draft(d, 100, &flat);
    EXPECT_GE(d.size(), 8u);
    for (int i = 0; i < 20; ++i) s.feedback(16, 0);
    s.draft(d, 100, &flat);
    EXPECT_LE(d.size(), 1u);  // near-certain refusal: at most a probe
}

TEST(Speculative, ReplayCountsPassesAsDecodingWould) {
    spec::SpecParams p;
    p.source = spec::Source::Suffix;
    std::vector<TokenId> prompt;
    for (int i = 0; i < 200; ++i) prompt.push_back(TokenId(i * 7 % 101));
    // An output that copies the prompt: long guesses, nearly all taken.
    const std::vector<TokenId> copy(prompt.begin() + 10, prompt.begin() + 150);
    const auto r = spec::replay(p, prompt, copy);
    EXPECT_EQ(r.tokens, copy.size() - 1);
    size_t produced = 0;
    for (const uint32_t n : r.pass_sizes) produced += n;
    EXPECT_EQ(r.stats.accepted + r.pass_sizes.size(), r.tokens);  // each pass: its guesses taken, plus one
    EXPECT_LT(r.pass_sizes.size(), copy.size() / 6);
    EXPECT_GT(r.stats.acceptance(), 0.8);
    (void)produced;
    // Fresh tokens: nothing to copy, one pass per token.
    std::vector<TokenId> fresh;
    for (int i = 0; i < 100; ++i) fresh.push_back(TokenId(1000 + i));
    const auto f = spec::replay(p, prompt, fresh);
    EXPECT_EQ(f.pass_sizes.size(), f.tokens);
    EXPECT_EQ(f.stats.drafted, 0u);
    spec::SpecParams off;
    const auto o = spec::replay(off, prompt, copy);
    EXPECT_EQ(o.pass_sizes.size(), o.tokens);
}

// The ground of greedy identity: a check of k tokens gives each token the logits that decoding
// it alone gives, bit for bit, across a boundary of decode attention's key ranges, wherever the matrix kernels compute a token's row the same way at any token
// count: the scalar target, the int8 path of avx512vnni and avx512bf16 (Q8_0, Q4_0, Q5_0 and
// K-quants: integer dot products, then the same float steps), and avx512bf16's BF16 pairs (one
// chain per token in column order, alone or in a tile). The float kernels of the other targets and
// types (F16, BF16, F32, Q4_1, Q5_1; avx2 and avx512) tile several tokens differently from one,
// so there the logits agree to rounding (NMSE below 1e-10) and the greedy texts are compared
// directly (GreedySpeculation).
TEST(Speculative, CheckLogitsAreDecodeLogitsBitForBit) {
    for (const auto target : kernels::available_targets())
        for (const auto type : synth::type_names())
            for (const KvType kv : {KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q8_0_Q4_0}) {
                if (kv != KvType::F16 && type != std::string_view("q8_0")) continue;  // one weight type is enough for the others
                const auto model = load_model(test::synth_model("tiny-qwen3", std::string(type)));
                ThreadPool pool(2);
                CpuForward fwd(*model, pool, kernels::select_kernels(target), 2048, kv);
                std::mt19937 rng(3);
                // The check straddles the first boundary of decode attention's key ranges.
                std::vector<TokenId> ctx(CpuForward::kSplitKeys - 4), check(9);
                for (auto& t : ctx) t = TokenId(rng() % model->hp.n_vocab);
                for (auto& t : check) t = TokenId(rng() % model->hp.n_vocab);
                std::vector<float> logits, one, all;
                fwd.eval(ctx, false, logits);
                std::vector<float> want;
                for (const TokenId t : check) {
                    fwd.eval(std::span(&t, 1), false, one);
                    want.insert(want.end(), one.begin(), one.end());
                }
                fwd.truncate(uint32_t(ctx.size()));
                fwd.eval_check(check, all);
                ASSERT_EQ(all.size(), want.size());
                const std::string_view ty = type;
                const bool int8_path = ty == "q8_0" || ty == "q4_0" || ty == "q5_0" || ty == "q4_k" || ty == "q4_k_m" ||
                                       ty == "q5_k" || ty == "q5_k_m" || ty == "q6_k";
                const auto& k = kernels::select_kernels(target);
                const bool exact = target == std::string_view("scalar") || (k.gemm_int8 && int8_path) || (k.gemm_bf16 && ty == "bf16");
                size_t differ = 0;
                for (size_t i = 0; i < all.size(); ++i) differ += std::memcmp(&all[i], &want[i], sizeof(float)) != 0;
                if (exact) {
                    EXPECT_EQ(differ, 0u) << target << " " << type << " " << kv_type_name(kv);
                } else {
                    EXPECT_LT(test::nmse(all, want), 1e-10) << target << " " << type << " " << kv_type_name(kv);
                    continue;
                }
                // And the cache it leaves: the next token decodes the same after either.
                const TokenId next = 5;
                fwd.eval(std::span(&next, 1), false, one);
                fwd.truncate(uint32_t(ctx.size()));
                for (const TokenId t : check) fwd.eval(std::span(&t, 1), false, logits);
                fwd.eval(std::span(&next, 1), false, logits);
                EXPECT_EQ(std::memcmp(one.data(), logits.data(), one.size() * sizeof(float)), 0) << target << " " << type;
            }
}

// A draft model: the target's own first layer (synth writes the same weights for the layers both
// have) drafts for it; the text is plain decoding's, the guesses are made and mostly taken.
// A drafter with another vocabulary is refused with a clear error.
TEST(Speculative, DraftModelChangesNoToken) {
    for (const char* type : {"q8_0", "f16"}) {
        const auto target = test::synth_model("tiny-qwen2", type);
        const auto drafter = test::synth_model("tiny-qwen2", type, 1);
        EngineOptions eo;
        eo.n_threads = 2;
        eo.n_ctx = 512;
        eo.draft_model = drafter;
        Engine engine(target, eo);
        SamplerParams sp;
        sp.temperature = 0;
        std::vector<TokenId> prompt = {1};
        for (int i = 0; i < 30; ++i) prompt.push_back(TokenId(3 + (i * 37) % 500));
        spec::SpecParams spp;
        spp.source = spec::Source::Model;
        spp.adaptive = false;  // guesses that do not depend on measured timings
        const auto [plain, a] = generate_text(engine, prompt, 100, sp);
        const auto [fast, b] = generate_text(engine, prompt, 100, sp, spp);
        EXPECT_EQ(fast, plain) << type;
        EXPECT_EQ(b.n_generated, a.n_generated);
        EXPECT_GT(b.spec.drafted, 0u) << type;
        // Sampling with a drafter runs too (the distribution is the rejection step's, tested above).
        sp.temperature = 0.9f;
        sp.seed = 4;
        EXPECT_GT(generate_text(engine, prompt, 50, sp, spp).second.n_generated, 0u);
    }
    if (test::have_shared()) {
        // stories260K's 512 SentencePiece tokens against the synthetic models' own 512.
        EngineOptions bad;
        bad.n_threads = 1;
        bad.draft_model = test::shared_dir() + "/models/stories260K.gguf";
        try {
            Engine e(test::synth_model("tiny-qwen2", "q8_0"), bad);
            ADD_FAILURE() << "a drafter with another vocabulary was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("not the same tokenizer"), std::string::npos) << e.what();
        }
    }
    spec::SpecParams p;
    p.source = spec::Source::Model;
    EXPECT_THROW(spec::Speculator s(p), Error);
}

// End to end with sampling: a seed gives the same text with speculation as without it, bit for
// bit (the sampler draws one uniform per token whether or not it checks a guess), so the output
// distribution is unchanged by construction. stories260K at temperature 1 (nothing cut) after a
// prompt that says a sentence twice, so that guesses are made on every run and often, not
// always, taken; 300 seeds.
TEST(Speculative, SampledTextIsTheSameForASeed) {
    if (!test::have_shared()) GTEST_SKIP() << "../shared is absent";
    EngineOptions eo;
    eo.n_threads = 1;
    eo.n_ctx = 128;
    Engine engine(test::shared_dir() + "/models/stories260K.gguf", eo);
    const auto prompt = engine.tokenize(
        "Once upon a time, there was a girl named Lily. Once upon a time, there was a girl named Lily. Once upon a time", true);
    for (const float top_p : {1.0f, 0.9f}) {
        SamplerParams sp;
        sp.temperature = 1.0f, sp.top_k = 0, sp.top_p = top_p, sp.min_p = 0.0f;
        spec::SpecParams spp;
        spp.source = spec::Source::Suffix;
        spp.adaptive = false;  // guess wherever there is a match, whatever the cost
        uint64_t accepted = 0, drafted = 0;
        for (uint64_t seed = 1; seed <= 300; ++seed) {
            sp.seed = seed;
            const auto plain = generate_text(engine, prompt, 12, sp).first;
            const auto [fast, st] = generate_text(engine, prompt, 12, sp, spp);
            ASSERT_EQ(fast, plain) << "seed " << seed << " top_p " << top_p;
            accepted += st.spec.accepted, drafted += st.spec.drafted;
        }
        EXPECT_GT(accepted, 300u) << top_p;  // guesses were taken, often
        EXPECT_LT(accepted, drafted) << top_p;  // and sometimes refused
    }
}
