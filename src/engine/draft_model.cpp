#include "engine/draft_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "util/error.h"

namespace celer {

DraftModel::DraftModel(const std::string& path, const Model& target, ThreadPool& pool, const kernels::CpuKernels& k, uint32_t n_ctx,
                       KvType kv)
    : model_(load_model(path)), target_vocab_(target.hp.n_vocab) {
    const Vocab& a = model_->vocab;
    const Vocab& b = target.vocab;
    const size_t na = a.size(), nb = b.size();
    if ((na > nb ? na - nb : nb - na) > kMaxVocabDifference)
        throw Error(fmt::format("draft model {}: its vocabulary has {} tokens, the target's {}: not the same tokenizer", path, na, nb));
    for (size_t i = 0; i < std::min(na, nb); ++i)
        if (a.token(TokenId(i)) != b.token(TokenId(i)))
            throw Error(fmt::format("draft model {}: token {} is '{}' there and '{}' in the target: not the same tokenizer", path, i,
                                    a.token(TokenId(i)), b.token(TokenId(i))));
    fwd_ = std::make_unique<CpuForward>(*model_, pool, k, n_ctx, kv);
}

void DraftModel::draft(std::span<const TokenId> text, size_t k, std::vector<TokenId>& out) {
    using clock = std::chrono::steady_clock;
    out.clear();
    if (text.empty() || k == 0) return;
    // A drafter whose context is full drafts nothing rather than fail the target.
    if (text.size() + k > fwd_->n_ctx()) return;
    size_t keep = 0;
    while (keep < cached_.size() && keep < text.size() && cached_[keep] == text[keep]) ++keep;
    if (keep == text.size()) --keep;  // its last token is run again: its logits start the draft
    const auto t0 = clock::now();
    fwd_->truncate(uint32_t(keep));
    cached_.resize(keep);
    fwd_->eval(text.subspan(keep), false, logits_);
    cached_.insert(cached_.end(), text.begin() + long(keep), text.end());
    const size_t n_vocab = model_->hp.n_vocab;
    for (;;) {
        const auto best = std::max_element(logits_.begin(), logits_.begin() + long(n_vocab));
        const TokenId t = TokenId(best - logits_.begin());
        if (uint32_t(t) >= target_vocab_) break;  // a padding id the target does not have
        double z = 0;
        for (size_t i = 0; i < n_vocab; ++i) z += std::exp(double(logits_[i] - *best));
        if (!out.empty() && 1.0 / z < kMinConfidence) break;
        out.push_back(t);
        if (out.size() == k) break;
        fwd_->eval(std::span(&t, 1), false, logits_);
        cached_.push_back(t);
    }
    // Its catching up with the text (the tokens the target took since) and its own steps, per
    // token drafted.
    if (!out.empty()) {
        const double per = std::chrono::duration<double>(clock::now() - t0).count() / double(out.size());
        sec_per_token_ = sec_per_token_ > 0 ? 0.8 * sec_per_token_ + 0.2 * per : per;
    }
}

}  // namespace celer
