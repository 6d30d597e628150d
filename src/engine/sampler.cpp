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

TokenId Sampler::sample_given(std::span<const float> logits, std::span<const TokenId> history, TokenId d) {
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

    // The truncations (top-k, top-p, min-p) need candidates in order of logit, but only as far
    // as the cuts reach: a prefix is sorted and grown until it holds them, so that a 150K
    // vocabulary is not sorted for every token. The kept set and its order are exactly those a
    // full sort gives.
    auto by_logit = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
    const size_t total = cand_.size();
    const bool top_k = p_.top_k > 0 && size_t(p_.top_k) < total;
    const size_t k = top_k ? size_t(p_.top_k) : total;
    if (top_k) std::partial_sort(cand_.begin(), cand_.begin() + long(k), cand_.end(), by_logit);
    float mx = cand_[0].logit;
    if (!top_k)
        for (const Cand& c : cand_) mx = std::max(mx, c.logit);
    const bool cut = p_.top_p < 1.0f || p_.min_p > 0.0f;

    size_t n = k;
    if (cut) {
        // Probabilities at temperature 1 over the top-k set, as llama.cpp applies them.
        double sum = 0;
        for (size_t i = 0; i < k; ++i) sum += std::exp(double(cand_[i].logit - mx));
        const double floor = p_.min_p > 0.0f ? double(p_.min_p) : -1.0;  // relative to the top probability, 1 after scaling
        for (size_t m = top_k ? k : std::min<size_t>(k, 256), sorted = top_k ? k : 0;;) {
            if (m > sorted) {
                std::partial_sort(cand_.begin() + long(sorted), cand_.begin() + long(m), cand_.end(), by_logit);
                sorted = m;
            }
            // top-p first, then min-p within what it kept.
            size_t found = 0;
            double cum = 0;
            for (size_t i = 0; i < m && !found; ++i) {
                const double rel = std::exp(double(cand_[i].logit - mx));
                if (rel < floor) found = i;  // min-p cuts here (i >= 1: the top has rel 1)
                else if (p_.top_p < 1.0f && (cum += rel / sum) >= double(p_.top_p)) found = i + 1;
            }
            if (found || m == k) {
                n = found ? std::max<size_t>(found, 1) : k;
                break;
            }
            m = std::min(k, m * 4);
        }
    }

    // The draw, at the temperature, over the kept candidates in order; with nothing cut, over
    // the whole vocabulary in id order (the same distribution, without sorting it).
    prob_.resize(n);
    float sum = 0;
    for (size_t i = 0; i < n; ++i) sum += (prob_[i] = std::exp((cand_[i].logit - mx) / p_.temperature));
    // One uniform per token, whether or not a guess is checked: the guess is taken exactly when
    // this draw lands on it.
    (void)d;
    float r = uniform() * sum;
    for (size_t i = 0; i < n; ++i) {
        r -= prob_[i];
        if (r < 0) return cand_[i].id;
    }
    return cand_[n - 1].id;
}

}  // namespace celer
