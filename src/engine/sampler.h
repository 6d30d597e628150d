// Token sampling. Order as in llama.cpp's default chain: penalties, top-k, top-p, min-p,
// temperature, then a draw. Temperature <= 0 is greedy. The generator is seeded and the draw
// uses its raw bits, so a seed reproduces a run on every platform.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "tokenizer/vocab.h"

namespace celer {

struct SamplerParams {
    float temperature = 0.8f;
    int top_k = 40;        // <= 0: off
    float top_p = 0.95f;   // >= 1: off
    float min_p = 0.05f;   // <= 0: off
    float repeat_penalty = 1.0f;    // llama.cpp's: divides positive logits, multiplies negative
    float presence_penalty = 0.0f;  // OpenAI's: subtracted once if the token appeared
    float frequency_penalty = 0.0f; // OpenAI's: subtracted per appearance
    int penalty_last_n = 64;        // window of recent tokens the penalties look at
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams& p);
    // Picks the next token from logits (n_vocab). `history` is every token so far.
    TokenId sample(std::span<const float> logits, std::span<const TokenId> history) { return sample_given(logits, history, -1); }
    // The same draw, given a guessed token d (speculative decoding; -1: none). Greedy: the
    // maximum, d or not. Otherwise d is taken with its probability p(d) under the distribution
    // sample() draws from, and else a token is drawn from that distribution without d,
    // renormalised; so the result is distributed exactly as sample()'s: p(d) for d, and
    // (1 - p(d)) p(x) / (1 - p(d)) = p(x) for any other x.
    TokenId sample_given(std::span<const float> logits, std::span<const TokenId> history, TokenId d);

private:
    float uniform();  // in [0, 1)

    SamplerParams p_;
    std::mt19937_64 rng_;
    struct Cand {
        TokenId id;
        float logit;
    };
    std::vector<Cand> cand_;
    std::vector<float> prob_;
};

}  // namespace celer
