// The engine's forward pass against the reference on synthetic models of every architecture
// and tensor type. Both decode the same quantised weights, so the only differences are float
// rounding and summation order: NMSE must stay below 1e-6 over 64 positions, through a batched
// prefill and single-token decode steps.
//
// Except on the int8 path (a target with gemm_int8, weights it packs): there the engine rounds
// each activation block to int8 (step amax/127), as llama.cpp does. For the synthetic models'
// uniform activations that rounding alone has relative power (1/127^2/12) / (1/3) = 1.6e-5 per
// product; about ten products lie in series between the embedding and the logits (q/k/v, o,
// gate/up, down per layer, then the output), so the logits' NMSE is expected near 2e-4. The
// bound is 1e-3 overall and per position: 5x the expectation, and still 100x below what one
// wrong block or a misplaced row would give (NMSE of order 1).
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>

#include "common.h"
#include "engine/forward.h"
#include "model/reference.h"
#include "util/error.h"

namespace celer {
namespace {

constexpr int kPositions = 64;
constexpr int kPrefill = 40;

struct Param {
    std::string shape, type, target;
};
void PrintTo(const Param& p, std::ostream* os) { *os << p.shape << " " << p.type << " " << p.target; }

class ForwardMatchesReference : public ::testing::TestWithParam<Param> {};

std::vector<TokenId> test_tokens(uint32_t n_vocab) {
    std::vector<TokenId> t;
    uint64_t s = 17;
    for (int i = 0; i < kPositions; ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t.push_back(TokenId((s >> 33) % n_vocab));
    }
    return t;
}

TEST_P(ForwardMatchesReference, Nmse) {
    const auto& [shape, type, target] = GetParam();
    const auto model = load_model(test::synth_model(shape, type));
    const auto tokens = test_tokens(model->hp.n_vocab);

    ReferenceForward ref(*model);
    std::vector<float> want;
    for (TokenId t : tokens) {
        const auto l = ref.step(t);
        want.insert(want.end(), l.begin(), l.end());
    }

    ThreadPool pool(2);
    CpuForward fwd(*model, pool, kernels::select_kernels(target), 128);
    const bool int8 = fwd.int8_weights() > 0;
    const double bound = int8 ? 1e-3 : 1e-6, bound_pos = int8 ? 1e-3 : 1e-5;
    std::vector<float> got, step;
    fwd.eval(std::span(tokens).first(kPrefill), true, got);
    for (int i = kPrefill; i < kPositions; ++i) {
        fwd.eval(std::span(tokens).subspan(size_t(i), 1), false, step);
        got.insert(got.end(), step.begin(), step.end());
    }
    ASSERT_EQ(got.size(), want.size());
    for (const float v : got) ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(test::nmse(got, want), bound);
    // And per position, so that an error confined to decode steps cannot hide in the average.
    const size_t V = model->hp.n_vocab;
    for (int p = 0; p < kPositions; ++p) {
        const std::vector<float> g(got.begin() + long(p * V), got.begin() + long((p + 1) * V));
        const std::vector<float> w(want.begin() + long(p * V), want.begin() + long((p + 1) * V));
        ASSERT_LT(test::nmse(g, w), bound_pos) << "position " << p;
    }
}

std::vector<Param> all_params() {
    std::vector<Param> v;
    // Every kernel target this CPU runs, so that greedy results stay exact on each of them.
    for (const auto target : kernels::available_targets())
        for (const char* shape : {"tiny-llama", "tiny-qwen2", "tiny-qwen3"})
            for (const auto type : synth::type_names()) v.push_back({shape, std::string(type), std::string(target)});
    return v;
}

INSTANTIATE_TEST_SUITE_P(AllArchsAllTypes, ForwardMatchesReference, ::testing::ValuesIn(all_params()), [](const auto& p) {
    std::string n = p.param.shape + "_" + p.param.type + "_" + p.param.target;
    std::replace(n.begin(), n.end(), '-', '_');
    return n;
});

// Work is split by rows, never by the reduction dimension, so the thread count cannot change
// a single bit of the result.
TEST(Forward, ThreadCountDoesNotChangeResults) {
    const auto model = load_model(test::synth_model("tiny-qwen2", "q4_k_m"));
    const auto tokens = test_tokens(model->hp.n_vocab);
    std::vector<float> a, b;
    ThreadPool p1(1), p3(3);
    CpuForward f1(*model, p1, kernels::select_kernels(), 128), f3(*model, p3, kernels::select_kernels(), 128);
    f1.eval(tokens, true, a);
    f3.eval(tokens, true, b);
    EXPECT_EQ(a, b);
}

// Decode at depth splits attention over key ranges and merges them (flash-decoding): the logits
// of decode steps after 700 tokens must still match the reference, on every target, and the
// split must not depend on the thread count. With an fp16 cache every key and value is rounded
// by up to 2^-11 relative (RMS 2^-11 / sqrt 3 = 2.8e-4, power 8e-8 per element), but attention
// averages hundreds of values, so the logits move much less: 3.4e-9 measured. The bound, 1e-7,
// still catches any misread element (one wrong value of order 1 among 700 gives about 1e-6).
class SplitDecode : public ::testing::TestWithParam<KvType> {};

TEST_P(SplitDecode, MatchesReference) {
    const KvType kv = GetParam();
    const double bound = kv == KvType::F16 ? 1e-7 : 1e-6;
    const auto model = load_model(test::synth_model("tiny-qwen2", "f32"));
    std::vector<TokenId> tokens;
    uint64_t s = 99;
    for (int i = 0; i < 708; ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens.push_back(TokenId((s >> 33) % model->hp.n_vocab));
    }
    ReferenceForward ref(*model);
    std::vector<float> want;
    for (size_t i = 0; i < tokens.size(); ++i) {
        const auto l = ref.step(tokens[i]);
        if (i >= 700) want.insert(want.end(), l.begin(), l.end());
    }
    for (const auto target : kernels::available_targets()) {
        std::vector<float> by_threads[2];
        for (const int threads : {1, 3}) {
            ThreadPool pool(threads);
            CpuForward fwd(*model, pool, kernels::select_kernels(target), 1024, kv);
            std::vector<float> logits, got;
            fwd.eval(std::span(tokens).first(700), false, logits);
            for (size_t i = 700; i < tokens.size(); ++i) {
                fwd.eval(std::span(tokens).subspan(i, 1), false, logits);
                got.insert(got.end(), logits.begin(), logits.end());
            }
            ASSERT_EQ(got.size(), want.size());
            EXPECT_LT(test::nmse(got, want), bound) << target;
            by_threads[threads == 1 ? 0 : 1] = got;
        }
        EXPECT_EQ(by_threads[0], by_threads[1]) << target;
    }
}

INSTANTIATE_TEST_SUITE_P(KvTypes, SplitDecode, ::testing::Values(KvType::F32, KvType::F16),
                         [](const auto& p) { return std::string(kv_type_name(p.param)); });

// Continuous batching: one step over several sequences, each with its own cache at its own
// positions, a prompt being prefilled beside others decoding, must give each sequence the
// logits it gets alone. The same kernels run on a different number of rows, so only summation
// order may differ (NMSE of order 1e-14); the bound 1e-9 catches any row crossing sequences.
TEST(Forward, BatchedSequencesMatchSeparateRuns) {
    const auto model = load_model(test::synth_model("tiny-qwen2", "q8_0"));
    const auto all = test_tokens(model->hp.n_vocab);
    const std::vector<std::span<const TokenId>> prompts = {std::span(all).first(5), std::span(all).subspan(5, 17),
                                                           std::span(all).subspan(22, 30)};
    constexpr int kSteps = 12;
    for (const auto target : kernels::available_targets()) {
        ThreadPool pool(2);
        CpuForward fwd(*model, pool, kernels::select_kernels(target), 64, KvType::F16);
        // Alone: each prompt prefilled, then kSteps greedy tokens, in the forward's own cache.
        std::vector<std::vector<float>> want(prompts.size());
        std::vector<std::vector<TokenId>> next(prompts.size());
        for (size_t i = 0; i < prompts.size(); ++i) {
            fwd.reset();
            std::vector<float> logits;
            fwd.eval(prompts[i], false, logits);
            for (int s = 0; s < kSteps; ++s) {
                want[i].insert(want[i].end(), logits.begin(), logits.end());
                const TokenId t = TokenId(std::max_element(logits.begin(), logits.end()) - logits.begin());
                next[i].push_back(t);
                fwd.eval(std::span(&t, 1), false, logits);
            }
        }
        // Together: sequence 0 decodes from the start while 1 and 2 join one and two steps later.
        std::vector<KvCache> caches;
        for (size_t i = 0; i < prompts.size(); ++i) caches.push_back(fwd.make_cache(64));
        std::vector<std::vector<float>> got(prompts.size());
        std::vector<int> steps(prompts.size(), -1);  // -1: prompt not yet prefilled
        for (int round = 0; round < kSteps + 3; ++round) {
            std::vector<SeqTokens> batch;
            std::vector<size_t> who;
            for (size_t i = 0; i < prompts.size(); ++i) {
                if (int(i) > round || steps[i] >= kSteps) continue;
                if (steps[i] < 0)
                    batch.push_back({&caches[i], prompts[i]});
                else
                    batch.push_back({&caches[i], std::span(&next[i][size_t(steps[i])], 1)});
                who.push_back(i);
            }
            if (batch.empty()) continue;
            std::vector<float> logits;
            fwd.eval_batch(batch, logits);
            for (size_t b = 0; b < who.size(); ++b) {
                const size_t i = who[b];
                ++steps[i];
                if (steps[i] < kSteps) got[i].insert(got[i].end(), logits.begin() + long(b * model->hp.n_vocab),
                                                     logits.begin() + long((b + 1) * model->hp.n_vocab));
            }
        }
        for (size_t i = 0; i < prompts.size(); ++i) {
            ASSERT_EQ(got[i].size(), want[i].size()) << target << " sequence " << i;
            EXPECT_LT(test::nmse(got[i], want[i]), 1e-9) << target << " sequence " << i;
            EXPECT_EQ(caches[i].n_past(), prompts[i].size() + kSteps) << target;
        }
    }
}

// A prefix copied from another sequence's cache is that sequence's computation: continuing
// from it gives the same logits, bit for bit, in both element types and in a cache of another
// length.
TEST(Forward, CopiedPrefixContinuesExactly) {
    const auto model = load_model(test::synth_model("tiny-qwen2", "q8_0"));
    const auto tokens = test_tokens(model->hp.n_vocab);
    for (const KvType kv : {KvType::F16, KvType::F32}) {
        ThreadPool pool(2);
        CpuForward fwd(*model, pool, kernels::select_kernels(), 64, kv);
        KvCache a = fwd.make_cache(64), b = fwd.make_cache(100);
        std::vector<float> want, got;
        const SeqTokens all[] = {{&a, std::span(tokens).first(40)}};
        fwd.eval_batch(all, want);
        KvCache warm = fwd.make_cache(64);
        const SeqTokens first[] = {{&warm, std::span(tokens).first(30)}};
        fwd.eval_batch(first, got);
        b.copy_prefix(warm, 25);
        EXPECT_EQ(b.n_past(), 25u);
        const SeqTokens rest[] = {{&b, std::span(tokens).subspan(25, 15)}};
        fwd.eval_batch(rest, got);
        EXPECT_EQ(got, want) << kv_type_name(kv);
        EXPECT_THROW(b.copy_prefix(warm, 31), Error) << "beyond what the source holds";
        EXPECT_THROW(b.copy_prefix(b, 1), Error);
        EXPECT_EQ(b.n_past(), 40u) << "a refused copy changes nothing";
    }
}

TEST(Forward, BatchRefusalsChangeNothing) {
    const auto model = load_model(test::synth_model("tiny-llama", "f32", 1));
    ThreadPool pool(1);
    CpuForward fwd(*model, pool, kernels::select_kernels(), 8);
    KvCache a = fwd.make_cache(8), b = fwd.make_cache(4);
    const std::vector<TokenId> two = {1, 2}, five(5, 3);
    std::vector<float> logits;
    const SeqTokens same[] = {{&a, two}, {&a, two}};
    EXPECT_THROW(fwd.eval_batch(same, logits), Error);
    const SeqTokens overflow[] = {{&a, two}, {&b, five}};
    EXPECT_THROW(fwd.eval_batch(overflow, logits), Error);
    const SeqTokens empty[] = {{&a, {}}};
    EXPECT_THROW(fwd.eval_batch(empty, logits), Error);
    EXPECT_EQ(a.n_past(), 0u);
    EXPECT_EQ(b.n_past(), 0u);
    const SeqTokens ok[] = {{&a, two}, {&b, two}};
    fwd.eval_batch(ok, logits);
    EXPECT_EQ(a.n_past(), 2u);
    EXPECT_EQ(b.n_past(), 2u);
    EXPECT_EQ(logits.size(), 2u * model->hp.n_vocab);
}

TEST(Forward, ContextOverflowAndBadTokensAreErrors) {
    const auto model = load_model(test::synth_model("tiny-llama", "f32", 1));
    ThreadPool pool(1);
    CpuForward fwd(*model, pool, kernels::select_kernels(), 8);
    std::vector<float> logits;
    const std::vector<TokenId> nine(9, 5);
    EXPECT_THROW(fwd.eval(nine, false, logits), Error);
    EXPECT_EQ(fwd.n_past(), 0u) << "a refused batch changes nothing";
    const std::vector<TokenId> bad = {5, 100000};
    EXPECT_THROW(fwd.eval(bad, false, logits), Error);
    EXPECT_EQ(fwd.n_past(), 0u);
}

}  // namespace
}  // namespace celer
