#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/sampler.h"

namespace celer {
namespace {

TEST(Sampler, GreedyTakesFirstMaximum) {
    SamplerParams p;
    p.temperature = 0;
    Sampler s(p);
    const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f};
    EXPECT_EQ(s.sample(logits, {}), 1);
}

TEST(Sampler, SameSeedSameTokens) {
    SamplerParams p;
    p.temperature = 1.0f;
    p.seed = 99;
    std::vector<float> logits(100);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(float(i));
    Sampler a(p), b(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(logits, {}), b.sample(logits, {}));
    SamplerParams q = p;
    q.seed = 100;
    Sampler c(p), d(q);
    int differ = 0;
    for (int i = 0; i < 50; ++i) differ += c.sample(logits, {}) != d.sample(logits, {});
    EXPECT_GT(differ, 0) << "a different seed must give a different sequence";
}

TEST(Sampler, TopKOneIsGreedy) {
    SamplerParams p;
    p.temperature = 2.0f;
    p.top_k = 1;
    Sampler s(p);
    const std::vector<float> logits = {0.0f, 0.5f, 2.0f, 1.0f};
    for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(logits, {}), 2);
}

// With no truncation the draw follows softmax(logits / T); check frequencies with a bound of
// 5 standard deviations of a binomial count, which a correct sampler exceeds with
// probability ~6e-7 per token.
TEST(Sampler, FrequenciesFollowSoftmax) {
    SamplerParams p;
    p.temperature = 0.7f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 5;
    const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 0.3f, -2.0f};
    std::vector<double> prob(logits.size());
    double z = 0;
    for (size_t i = 0; i < logits.size(); ++i) z += prob[i] = std::exp(logits[i] / p.temperature);
    Sampler s(p);
    const int n = 200000;
    std::vector<int> count(logits.size());
    for (int i = 0; i < n; ++i) ++count[size_t(s.sample(logits, {}))];
    for (size_t i = 0; i < logits.size(); ++i) {
        const double q = prob[i] / z;
        EXPECT_NEAR(count[i], n * q, 5 * std::sqrt(n * q * (1 - q))) << "token " << i;
    }
}

TEST(Sampler, TopPAndMinPCutTheTail) {
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 0.5f;  // token 0 alone holds > 0.5 of the mass
    p.min_p = 0.0f;
    const std::vector<float> logits = {3.0f, 1.0f, 1.0f, 1.0f};
    Sampler s(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits, {}), 0);
    p.top_p = 1.0f;
    p.min_p = 0.5f;  // others have e^-2 = 0.135 of the top probability
    Sampler m(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(m.sample(logits, {}), 0);
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
    SamplerParams p;
    p.temperature = 0;
    p.repeat_penalty = 2.0f;
    const std::vector<float> logits = {2.0f, 1.5f};
    const std::vector<TokenId> history = {0};
    EXPECT_EQ(Sampler(p).sample(logits, history), 1);  // 2.0 / 2 = 1.0 < 1.5
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.4f;
    EXPECT_EQ(Sampler(p).sample(logits, history), 0);  // 1.6 > 1.5
    p.frequency_penalty = 0.2f;
    const std::vector<TokenId> twice = {0, 0};
    EXPECT_EQ(Sampler(p).sample(logits, twice), 1);  // 2.0 - 0.4 - 0.4 = 1.2 < 1.5
    p.penalty_last_n = 1;
    const std::vector<TokenId> old = {0, 1};
    EXPECT_EQ(Sampler(p).sample(logits, old), 0) << "only the last token is in the window";
}

}  // namespace
}  // namespace celer
