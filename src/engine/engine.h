// Engine: a loaded model, its executor and the generation loop. Front ends (CLI, server,
// agent) talk to this class; it owns no I/O beyond the model file.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "engine/thread_pool.h"
#include "model/model.h"

namespace celer {

struct EngineOptions {
    int n_threads = 0;       // 0: one per physical core
    uint32_t n_ctx = 0;      // 0: the model's training context, at most 4096
    std::string kernels;     // "" / "auto": best target for this CPU
    KvType kv_type = KvType::F16;
    // F16 weights rounded to bf16 at load for the bf16 dot-product path (CpuForward): faster
    // prefill, at a measured cost in accuracy; needs a kernel target with that path.
    bool f16_as_bf16 = false;
    std::string draft_model;  // a GGUF with the same vocabulary, for speculation from a model
    // RoPE scaling over the file's: "" keeps it; else none/linear/ntk/yarn with this factor
    // (0: the file's) and, for yarn, the original context (0: the file's, else the trained one).
    std::string rope_scaling;
    double rope_scale = 0;
    uint32_t yarn_orig_ctx = 0;
};

// The options' RoPE scaling over what the file set (nothing when they name none).
void apply_rope_options(HParams& hp, const EngineOptions& opt);

struct GenerateStats {
    size_t n_prompt = 0;
    size_t n_generated = 0;
    double prefill_s = 0;
    double decode_s = 0;
    bool hit_eos = false;
    spec::SpecStats spec;  // speculation's counts (all zero when off)
    size_t passes = 0;     // forward passes after the prompt's
};

class Engine {
public:
    explicit Engine(const std::string& model_path, const EngineOptions& opt = {});

    const Model& model() const { return *model_; }
    CpuForward& forward() { return *fwd_; }
    int n_threads() const { return pool_->size(); }
    std::string_view kernel_target() const { return kernels_->name; }

    // Text to token ids, with BOS in front when asked and the vocabulary wants one.
    std::vector<TokenId> tokenize(std::string_view text, bool add_bos) const;

    // Clears the cache, prefills `prompt` and samples up to n_predict tokens, stopping early at
    // end-of-generation. on_text receives whole UTF-8 text as it is produced; returning false
    // stops generation. With a speculation source, each pass also checks the source's guesses
    // (engine/speculative.h); what is generated is distributed as without them.
    GenerateStats generate(std::span<const TokenId> prompt, int n_predict, const SamplerParams& sp,
                           const std::function<bool(std::string_view text)>& on_text, const spec::SpecParams& spec = {});

private:
    std::unique_ptr<Model> model_;
    std::unique_ptr<ThreadPool> pool_;
    const kernels::CpuKernels* kernels_;
    std::unique_ptr<CpuForward> fwd_;
    spec::PassCost pass_cost_;  // learned from every pass generate() runs
    std::unique_ptr<spec::ModelDrafter> draft_;
};

}  // namespace celer
