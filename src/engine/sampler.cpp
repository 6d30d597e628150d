#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace celer {

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}

float Sampler::uniform() {
    // 24 random bits: exactly representable, never reaches 1.
    return float(rng_() >> 40) * (1.0f / 16777216.0f);
}

TokenId Sampler::sample(std::span<const float> logits, std::span<const TokenId> history) {
    cand_.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) cand_[i] = {TokenId(i), logits[i]};

    const bool penalise = p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f;
    if (penalise && p_.penalty_last_n != 0 && !history.empty()) {
        const size_t window = p_.penalty_last_n < 0 ? history.size() : std::min(history.size(), size_t(p_.penalty_last_n));
        std::unordered_map<TokenId, int> counts;
        for (size_t i = history.size() - window; i < history.size(); ++i) ++counts[history[i]];
        for (auto [id, n] : counts) {
            if (id < 0 || size_t(id) >= cand_.size()) continue;
            float& l = cand_[size_t(id)].logit;
            l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
            l -= float(n) * p_.frequency_penalty + p_.presence_penalty;
        }
    }

    // Greedy: the first maximum, so ties resolve to the lowest id on every platform.
    if (p_.temperature <= 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < cand_.size(); ++i)
            if (cand_[i].logit > cand_[best].logit) best = i;
        return cand_[best].id;
    }

    auto by_logit = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
    size_t n = cand_.size();
    if (p_.top_k > 0 && size_t(p_.top_k) < n) {
        std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
        n = size_t(p_.top_k);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }

    // Probabilities at temperature 1 for the truncations, as llama.cpp applies them.
    std::vector<float> prob(n);
    const float mx = cand_[0].logit;
    float sum = 0;
    for (size_t i = 0; i < n; ++i) sum += (prob[i] = std::exp(cand_[i].logit - mx));
    for (auto& p : prob) p /= sum;

    if (p_.top_p < 1.0f) {
        float cum = 0;
        for (size_t i = 0; i < n; ++i) {
            cum += prob[i];
            if (cum >= p_.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p_.min_p > 0.0f) {
        const float floor = prob[0] * p_.min_p;
        size_t keep = 1;
        while (keep < n && prob[keep] >= floor) ++keep;
        n = keep;
    }

    sum = 0;
    for (size_t i = 0; i < n; ++i) sum += (prob[i] = std::exp((cand_[i].logit - mx) / p_.temperature));
    float r = uniform() * sum;
    for (size_t i = 0; i < n; ++i) {
        r -= prob[i];
        if (r < 0) return cand_[i].id;
    }
    return cand_[n - 1].id;
}

}  // namespace celer
