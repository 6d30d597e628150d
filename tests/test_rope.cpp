// RoPE scaling: YaRN, NTK-aware and linear frequencies against their published formulas,
// computed here on their own; the engine's forward pass against the reference with YaRN on.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>
#include <span>
#include <vector>

#include "common.h"
#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "model/model.h"
#include "model/reference.h"
#include "util/error.h"

using namespace celer;

namespace {

HParams qwen_7b_rope() {
    HParams hp;
    hp.n_rot = 128;
    hp.head_dim = 128;
    hp.rope_base = 1e6f;
    hp.n_ctx_train = 32768;
    return hp;
}

// A synthetic model's options with YaRN metadata: factor 4 over orig_ctx positions.
synth::Options yarn_options(const char* shape, const char* type, uint32_t orig_ctx) {
    synth::Options o;
    o.shape = shape;
    o.type = type;
    o.rope_scaling = "yarn";
    o.rope_scale = 4;
    o.rope_orig_ctx = orig_ctx;
    return o;
}

}  // namespace

// YaRN (Peng et al., arXiv 2309.00071, section 3; as Hugging Face's Qwen2 applies it): pair i of
// d rotary dimensions has the frequency b^(-2i/d). The pair index at which a frequency turns n
// times over the original context L is d ln(L / (2 pi n)) / (2 ln b); below floor(that for
// beta_fast = 32) the frequency is kept, above ceil(that for beta_slow = 1) it is divided by the
// factor s, and in between the two mix along a linear ramp. Queries and keys are scaled by
// 0.1 ln s + 1. Qwen2.5's 128K setting: s = 4, L = 32,768, b = 1e6, d = 128.
TEST(Rope, YarnMatchesThePublishedFormula) {
    HParams hp = qwen_7b_rope();
    set_rope_scaling(hp, RopeScaling::Yarn, 4.0, 32768);
    EXPECT_EQ(hp.rope_orig_ctx, 32768u);
    EXPECT_NEAR(hp.rope_attn_factor, 1.0 + 0.1 * std::log(4.0), 1e-7);  // 1.1386
    const double d = 128, b = 1e6, s = 4, L = 32768, pi = std::numbers::pi;
    const double at32 = d * std::log(L / (32 * 2 * pi)) / (2 * std::log(b));  // 23.59
    const double at1 = d * std::log(L / (1 * 2 * pi)) / (2 * std::log(b));    // 39.65
    const double low = std::floor(at32), high = std::ceil(at1);
    ASSERT_EQ(low, 23.0);
    ASSERT_EQ(high, 40.0);
    for (uint32_t i = 0; i < 64; ++i) {
        const double original = std::pow(b, -2.0 * i / d);
        double want;
        if (i <= low) want = original;          // fast pairs: kept
        else if (i >= high) want = original / s;  // slow pairs: interpolated
        else {
            const double t = (i - low) / (high - low);  // share interpolated
            want = original * (1 - t) + original / s * t;
        }
        const int pos = 100000;
        EXPECT_NEAR(rope_theta(hp, {}, pos, i), pos * want, 1e-9 * pos * want) << "pair " << i;
    }
}

TEST(Rope, LinearAndNtkMatchTheirFormulas) {
    for (const double s : {2.0, 4.0}) {
        HParams lin = qwen_7b_rope();
        set_rope_scaling(lin, RopeScaling::Linear, s);
        HParams ntk = qwen_7b_rope();
        set_rope_scaling(ntk, RopeScaling::Ntk, s);
        // NTK-aware: the base becomes b s^(d / (d - 2)), so the lowest frequency is divided by
        // exactly s and the highest kept.
        EXPECT_NEAR(ntk.rope_base, 1e6 * std::pow(s, 128.0 / 126.0), 1e6 * 1e-6);
        for (uint32_t i = 0; i < 64; ++i) {
            const double original = std::pow(1e6, -2.0 * i / 128.0);
            EXPECT_NEAR(rope_theta(lin, {}, 1000, i), 1000 * original / s, 1e-9 * 1000 * original);
            EXPECT_NEAR(rope_theta(ntk, {}, 1000, i), 1000 * std::pow(double(ntk.rope_base), -2.0 * i / 128.0),
                        1e-9 * 1000 * original);
        }
        EXPECT_NEAR(rope_theta(ntk, {}, 1000, 63) / (1000 * std::pow(1e6, -126.0 / 128.0)), 1 / s, 1e-5);
        EXPECT_EQ(lin.rope_attn_factor, 1.0f);
        EXPECT_EQ(ntk.rope_attn_factor, 1.0f);
    }
    HParams hp = qwen_7b_rope();
    EXPECT_THROW(set_rope_scaling(hp, RopeScaling::Yarn, 0.5), Error);
    EXPECT_THROW(parse_rope_scaling("longrope"), Error);
    // A flag's setting replaces the file's: NTK then YaRN leaves the original base.
    set_rope_scaling(hp, RopeScaling::Ntk, 4.0);
    set_rope_scaling(hp, RopeScaling::Yarn, 4.0);
    EXPECT_NEAR(hp.rope_base, 1e6, 1e6 * 1e-6);
}

// The engine's forward pass and the reference agree with YaRN on, over positions well past the
// (here tiny) original context, so that every pair's scaling is exercised; the flags reach the
// model through EngineOptions.
TEST(Rope, ForwardMatchesReferenceWithYarn) {
    const auto path = test::synth_model("tiny-qwen2", "f32");
    EngineOptions eo;
    eo.n_threads = 2;
    eo.n_ctx = 256;
    eo.rope_scaling = "yarn";
    eo.rope_scale = 8;
    eo.yarn_orig_ctx = 16;
    Engine engine(path, eo);
    const Model& m = engine.model();
    EXPECT_EQ(m.hp.rope_scaling, RopeScaling::Yarn);
    EXPECT_EQ(m.hp.rope_orig_ctx, 16u);
    ReferenceForward ref(m);
    std::vector<TokenId> tokens;
    for (int i = 0; i < 96; ++i) tokens.push_back(TokenId((i * 131 + 7) % int(m.hp.n_vocab)));
    std::vector<float> want;
    for (const TokenId t : tokens) {
        const auto l = ref.step(t);
        want.insert(want.end(), l.begin(), l.end());
    }
    std::vector<float> got;
    engine.forward().reset();
    engine.forward().eval(tokens, true, got);
    EXPECT_LT(test::nmse(got, want), 1e-6);
    // And YaRN changed the logits: the same tokens without it differ.
    EngineOptions plain = eo;
    plain.rope_scaling = "none";
    Engine e2(path, plain);
    std::vector<float> other;
    e2.forward().eval(tokens, true, other);
    EXPECT_GT(test::nmse(other, want), 1e-4);
}

// YaRN from the file's metadata, as converters write Qwen2.5's rope_scaling; flags override it.
TEST(Rope, YarnFromGgufMetadata) {
    synth::Options o = yarn_options("tiny-qwen2", "f32", 256);
    const auto path = (test::scratch_dir() / "tiny-qwen2-yarn.gguf").string();
    synth::write_model(o, path);
    const auto m = load_model(path);
    EXPECT_EQ(m->hp.rope_scaling, RopeScaling::Yarn);
    EXPECT_FLOAT_EQ(m->hp.rope_scale, 4.0f);
    EXPECT_EQ(m->hp.rope_orig_ctx, 256u);
    EXPECT_NEAR(m->hp.rope_attn_factor, 1.0 + 0.1 * std::log(4.0), 1e-6);
    EngineOptions eo;
    eo.n_threads = 1;
    eo.rope_scaling = "none";
    Engine e(path, eo);
    EXPECT_EQ(e.model().hp.rope_scaling, RopeScaling::None);
    EXPECT_EQ(e.model().hp.rope_attn_factor, 1.0f);
    o.rope_scaling = "longrope";
    const auto bad = (test::scratch_dir() / "tiny-qwen2-longrope.gguf").string();
    synth::write_model(o, bad);
    try {
        load_model(bad);
        ADD_FAILURE() << "an unknown scaling type loaded";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("rope.scaling.type"), std::string::npos) << err.what();
    }
}

// Issue #9: a model runs through 131,072 tokens end to end. One layer, one head of 64,
// Qwen2.5-Coder's 128K setting (YaRN, factor 4 over 32,768 original positions), Q8_0 weights,
// the default fp16 KV cache, prefilled in chunks that end at the sampled positions. The logits
// there must be finite and match the double-precision reference, which computes every position's
// keys and values and only the sampled positions' attention (a one-layer model needs no more),
// across the original context and the scaled one.
TEST(LongContext, Tiny131072TokensMatchTheReference) {
    const auto path = (test::scratch_dir() / "tiny-long-yarn.gguf").string();
    synth::write_model(yarn_options("tiny-long", "q8_0", 32768), path);
    constexpr uint32_t kTokens = 131072;
    EngineOptions eo;
    eo.n_threads = 2;
    eo.n_ctx = kTokens;
    Engine engine(path, eo);
    const Model& m = engine.model();
    ASSERT_EQ(m.hp.rope_scaling, RopeScaling::Yarn);
    std::mt19937 rng(9);
    std::vector<TokenId> tokens(kTokens);
    for (auto& t : tokens) t = TokenId(rng() % m.hp.n_vocab);
    const std::vector<uint32_t> sampled = {0, 4095, 32767, 32768, 65535, 98303, 131071};
    ReferenceForward ref(m);
    CpuForward& fwd = engine.forward();
    fwd.reset();
    uint32_t done = 0;
    std::vector<float> got;
    for (const uint32_t p : sampled) {
        for (; ref.pos() < int(p); ) ref.step(tokens[size_t(ref.pos())], false);
        const auto want = ref.step(tokens[p]);
        while (done <= p) {  // chunks of at most 8,192 tokens, the last one ending at p
            const uint32_t n = std::min<uint32_t>(8192, p + 1 - done);
            fwd.eval(std::span<const TokenId>(tokens).subspan(done, n), false, got);
            done += n;
        }
        ASSERT_EQ(got.size(), want.size());
        for (const float x : got) ASSERT_TRUE(std::isfinite(x)) << "position " << p;
        // The int8 path quantises activations (NMSE ~2e-4 on the synthetic models, bound 1e-3 in
        // test_forward.cpp); fp16 keys and values add ~1e-8.
        EXPECT_LT(test::nmse(got, want), 1e-3) << "position " << p;
    }
    EXPECT_EQ(done, kTokens);
}
