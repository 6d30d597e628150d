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
// wrong block or a misplaced row would give (NMSE of order 1). BF16 weights on avx512bf16 round
// the activations to bf16 instead (relative step 2^-7, a power of 2^-16 / 3 = 5.1e-6 per
// product, a third of int8's): 1.4-1.6e-5 measured, under the same bound.
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

std::vector<TokenId> test_tokens(uint32_t n_vocab, size_t n = kPositions) {
    std::vector<TokenId> t;
    uint64_t s = 17;
    for (size_t i = 0; i < n; ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t.push_back(TokenId((s >> 33) % n_vocab));
    }
    return t;
}

// Every position's logits from the reference, one token at a time.
std::vector<float> reference_logits(const Model& m, std::span<const TokenId> tokens) {
    ReferenceForward ref(m);
    std::vector<float> want;
    for (TokenId t : tokens) {
        const auto l = ref.step(t);
        want.insert(want.end(), l.begin(), l.end());
    }
    return want;
}

// The engine's: a batched prefill of kPrefill tokens (all logits), then single-token decode steps.
std::vector<float> engine_logits(CpuForward& fwd, std::span<const TokenId> tokens) {
    std::vector<float> got, step;
    fwd.eval(tokens.first(kPrefill), true, got);
    for (size_t i = kPrefill; i < tokens.size(); ++i) {
        fwd.eval(tokens.subspan(i, 1), false, step);
        got.insert(got.end(), step.begin(), step.end());
    }
    return got;
}

TEST_P(ForwardMatchesReference, Nmse) {
    const auto& [shape, type, target] = GetParam();
    const auto model = load_model(test::synth_model(shape, type));
    const auto tokens = test_tokens(model->hp.n_vocab);
    const auto want = reference_logits(*model, tokens);

    ThreadPool pool(2);
    CpuForward fwd(*model, pool, kernels::select_kernels(target), 128);
    const bool int8 = fwd.int8_weights() > 0;
    const double bound = int8 ? 1e-3 : 1e-6, bound_pos = int8 ? 1e-3 : 1e-5;
    const auto got = engine_logits(fwd, tokens);
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

// F16 weights rounded to bf16 on request (f16_as_bf16, the bf16 dot-product path): each weight
// and each activation moves by up to 2^-8 relative, uniformly, an error power of 2^-16 / 3 =
// 5.1e-6 per product from each; about ten products in series give near 1e-4 in the logits, the
// int8 path's order, and its bound 1e-3 applies. The logits must also differ from the exact
// F16 path's, or the option took no effect.
TEST(Forward, F16AsBf16StaysNearReference) {
    for (const auto target : kernels::available_targets()) {
        const auto& k = kernels::select_kernels(target);
        if (!k.gemm_bf16) continue;
        for (const char* shape : {"tiny-llama", "tiny-qwen2"}) {
            const auto model = load_model(test::synth_model(shape, "f16"));
            const auto tokens = test_tokens(model->hp.n_vocab);
            const auto want = reference_logits(*model, tokens);
            ThreadPool pool(2);
            std::vector<float> got[2];
            for (const bool bf16 : {false, true}) {
                CpuForward fwd(*model, pool, k, 128, KvType::F32, bf16);
                got[bf16] = engine_logits(fwd, tokens);
                ASSERT_EQ(got[bf16].size(), want.size());
            }
            EXPECT_LT(test::nmse(got[0], want), 1e-6) << target << " " << shape;
            EXPECT_LT(test::nmse(got[1], want), 1e-3) << target << " " << shape;
            EXPECT_GT(test::nmse(got[1], got[0]), 0.0) << target << " " << shape;
        }
    }
}

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

// Decode splits each product's rows into one run per thread, and a thread that finishes its run
// takes pieces from the back of another's: which thread computes a row, and in which piece, must
// not change a bit. More threads than this machine's cores keep them out of step, so pieces
// change hands in most steps.
TEST(Forward, DecodeThreadCountDoesNotChangeResults) {
    for (const char* type : {"q8_0", "q4_k_m"}) {
        const auto model = load_model(test::synth_model("tiny-qwen2", type));
        const auto tokens = test_tokens(model->hp.n_vocab);
        for (const auto target : kernels::available_targets()) {
            std::vector<float> first;
            for (const int threads : {1, 2, 3, 5}) {
                ThreadPool pool(threads);
                CpuForward fwd(*model, pool, kernels::select_kernels(target), 128);
                std::vector<float> logits, got;
                fwd.eval(std::span(tokens).first(4), false, logits);
                for (size_t i = 4; i < tokens.size(); ++i) {
                    fwd.eval(std::span(tokens).subspan(i, 1), false, logits);
                    got.insert(got.end(), logits.begin(), logits.end());
                }
                if (threads == 1) first = got;
                else EXPECT_EQ(got, first) << type << " " << target << " " << threads << " threads";
            }
        }
    }
}

// Decode at depth splits attention over key ranges and merges them (flash-decoding): the logits
// of decode steps after 700 tokens must still match the reference, on every target, and the
// split must not depend on the thread count. With an fp16 cache every key and value is rounded
// by up to 2^-11 relative (RMS 2^-11 / sqrt 3 = 2.8e-4, power 8e-8 per element), but attention
// averages hundreds of values, so the logits move much less: 3.4e-9 measured. The bound, 1e-7,
// still catches any misread element (one wrong value of order 1 among 700 gives about 1e-6).
// A Q8_0 cache rounds each element to a step of max|block| / 127, about 0.02 sigma for 32
// normal values, an error power of 3.3e-5 per element: 400 times fp16's, so about 1.4e-6 in the
// logits by the same scaling (2.6e-6 measured); its bound is 1e-5. On avx512vnni (and avx512bf16) the query is
// also rounded to int8 blocks there (scores in integers), a second error of the same size
// (4.7e-6 measured), and the probabilities to uint8 per tile for the weighted values in
// integers, a third: 5.9e-6 measured. Q8_0_Q4_0 rounds each value to a step of max|block| / 7.5,
// about 0.28 sigma for 32 normal values: an error power of 6.5e-3 per element, some 200 times
// Q8_0's, so about 3e-4 in the logits from the values (6.2e-4 measured on every target); its
// bound, 2e-3, fails a layout read wrongly (a misplaced nibble moves every value by order 1).
class SplitDecode : public ::testing::TestWithParam<KvType> {};

TEST_P(SplitDecode, MatchesReference) {
    const KvType kv = GetParam();
    const double bound = kv == KvType::F16 ? 1e-7 : kv == KvType::Q8_0 ? 1e-5 : kv == KvType::Q8_0_Q4_0 ? 2e-3 : 1e-6;
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

INSTANTIATE_TEST_SUITE_P(KvTypes, SplitDecode, ::testing::Values(KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q8_0_Q4_0),
                         [](const auto& p) {
                             std::string n = kv_type_name(p.param);
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

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

// A fork shares the blocks of another sequence's prefix by reference; the first write into a
// shared block copies it (copy-on-write). Continuing either side must give, bit for bit, the
// logits of a cache that computed everything itself, and the other side must not see the write.
TEST(Forward, ForkSharesBlocksAndCopiesOnWrite) {
    const auto model = load_model(test::synth_model("tiny-qwen2", "q8_0"));
    const auto tokens = test_tokens(model->hp.n_vocab, 150);
    std::vector<TokenId> other(tokens.begin(), tokens.begin() + 100);
    for (int i = 0; i < 20; ++i) other.push_back(TokenId((i * 7 + 3) % int(model->hp.n_vocab)));
    for (const KvType kv : {KvType::F16, KvType::F32, KvType::Q8_0, KvType::Q8_0_Q4_0}) {
        ThreadPool pool(2);
        CpuForward fwd(*model, pool, kernels::select_kernels(), 256, kv);
        const auto fresh = [&](std::span<const TokenId> t) {
            KvCache c = fwd.make_cache(256);
            std::vector<float> l;
            const SeqTokens all[] = {{&c, t}};
            fwd.eval_batch(all, l);
            return l;
        };
        const auto want = fresh(std::span(tokens).first(150)), want_other = fresh(other);
        auto shared = fwd.make_pool(8);
        KvCache warm(shared, 256), b(shared, 256);
        std::vector<float> got;
        const SeqTokens first[] = {{&warm, std::span(tokens).first(100)}};
        fwd.eval_batch(first, got);
        const size_t used = shared->n_used();
        b.fork(warm, 90);  // mid-block: block 1 holds positions 64..127
        EXPECT_EQ(b.n_past(), 90u);
        EXPECT_EQ(shared->n_used(), used) << "a fork copies nothing";
        EXPECT_EQ(shared->refs(warm.blocks()[1]), 2u);
        const SeqTokens rest[] = {{&b, std::span(tokens).subspan(90, 60)}};
        fwd.eval_batch(rest, got);
        EXPECT_EQ(got, want) << kv_type_name(kv);
        EXPECT_EQ(b.blocks()[0], warm.blocks()[0]) << "the untouched block stays shared";
        EXPECT_NE(b.blocks()[1], warm.blocks()[1]) << "the written block was copied";
        const SeqTokens more[] = {{&warm, std::span(other).subspan(100)}};
        fwd.eval_batch(more, got);
        EXPECT_EQ(got, want_other) << kv_type_name(kv) << ": the fork's writes leaked into the original";
        EXPECT_THROW(b.fork(warm, 121), Error) << "beyond what the source holds";
        EXPECT_THROW(b.fork(b, 1), Error);
        KvCache alien = fwd.make_cache(256);
        EXPECT_THROW(b.fork(alien, 0), Error) << "another pool";
        EXPECT_EQ(b.n_past(), 150u) << "a refused fork changes nothing";
    }
}

// A pool out of blocks refuses the step and changes nothing; freed blocks make it work again.
TEST(Forward, FullPoolRefusesAndChangesNothing) {
    const auto model = load_model(test::synth_model("tiny-qwen2", "q8_0"));
    const auto tokens = test_tokens(model->hp.n_vocab, 110);
    ThreadPool pool(1);
    CpuForward fwd(*model, pool, kernels::select_kernels(), 64);
    auto shared = fwd.make_pool(2);
    KvCache a(shared, 512), b(shared, 512);
    std::vector<float> logits, want;
    const SeqTokens fill[] = {{&a, std::span(tokens).first(100)}};
    fwd.eval_batch(fill, logits);
    EXPECT_EQ(shared->n_free(), 0u);
    const SeqTokens both[] = {{&a, std::span(tokens).subspan(100, 10)}, {&b, std::span(tokens).first(10)}};
    EXPECT_THROW(fwd.eval_batch(both, logits), Error);
    EXPECT_EQ(a.n_past(), 100u);
    EXPECT_EQ(b.n_past(), 0u);
    EXPECT_EQ(shared->n_free(), 0u);
    a.truncate(60);  // block 1 goes back
    EXPECT_EQ(shared->n_free(), 1u);
    const SeqTokens one[] = {{&b, std::span(tokens).first(10)}};
    fwd.eval_batch(one, logits);
    KvCache solo = fwd.make_cache(64);
    const SeqTokens ref[] = {{&solo, std::span(tokens).first(10)}};
    fwd.eval_batch(ref, want);
    EXPECT_EQ(logits, want);
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
