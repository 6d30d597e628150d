// A small model drafting for a large one (speculative decoding's classic source, Leviathan et
// al. 2023; Chen et al. 2023): it decodes greedily a few tokens ahead on its own cache, and the
// target checks them in one pass. It must share the target's vocabulary: the same token text for
// every id both have (their sizes may differ by padding, at most 128 ids, as Qwen2.5's 0.5B and
// 7B files do).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "engine/speculative.h"
#include "engine/thread_pool.h"
#include "model/model.h"

namespace celer {

class DraftModel final : public spec::ModelDrafter {
public:
    // Loads the drafter and checks its vocabulary against the target's; throws celer::Error.
    DraftModel(const std::string& path, const Model& target, ThreadPool& pool, const kernels::CpuKernels& k, uint32_t n_ctx,
               KvType kv);

    // Brings its cache to `text` (keeping the longest prefix it already holds), then takes up to
    // k greedy steps, stopping early once its top token's probability falls below
    // kMinConfidence (a guess it doubts is likely refused, and costs a drafter pass).
    void draft(std::span<const TokenId> text, size_t k, std::vector<TokenId>& out) override;
    double seconds_per_token() const override { return sec_per_token_; }
    const Model& model() const { return *model_; }

    static constexpr float kMinConfidence = 0.3f;
    static constexpr size_t kMaxVocabDifference = 128;

private:
    std::unique_ptr<Model> model_;
    std::unique_ptr<CpuForward> fwd_;
    std::vector<TokenId> cached_;  // what its cache holds, in order
    std::vector<float> logits_;
    uint32_t target_vocab_;
    double sec_per_token_ = 0;
};

}  // namespace celer
