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
    // The same draw, for checking a guessed token d (speculative decoding): the guess is taken
    // when the draw is d. That is exact rejection sampling for a guess that is a single token:
    // d is taken with probability p(d), and when it is not, the token drawn is distributed as
    // p without d, renormalised. Because the draw uses one uniform per token either way, a
    // seed gives the same text with speculation as without it, bit for bit.
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
