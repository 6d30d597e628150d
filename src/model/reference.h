// The reference forward pass: one token at a time, plain scalar code, double accumulators,
// weights dequantised row by row with the reference decoders. Slow on purpose and kept
// forever as the oracle that every faster executor is tested against.
#pragma once

#include <vector>

#include "model/model.h"

namespace celer {

class ReferenceForward {
public:
    explicit ReferenceForward(const Model& m);
    // Appends one token at the next position and returns the logits (n_vocab) that follow it;
    // without want_logits only what later positions need (the last layer's keys and values) is
    // computed, and nothing is returned: a one-layer model then costs no attention there.
    std::vector<float> step(TokenId token, bool want_logits = true);
    int pos() const { return pos_; }

private:
    std::vector<double> matvec(const Weight& w, const std::vector<double>& x) const;

    const Model& m_;
    int pos_ = 0;
    std::vector<std::vector<double>> k_cache_, v_cache_;  // per layer: (pos, kv_dim) / (pos, v_dim)
};

// The RoPE angle of pair i at position pos, shared by every executor so they agree on it.
double rope_theta(const HParams& hp, const std::vector<float>& freq_factors, int pos, uint32_t i);

}  // namespace celer
