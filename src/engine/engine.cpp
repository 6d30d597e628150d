#include "engine/engine.h"

#include "engine/draft_model.h"

#include <chrono>

#include <fmt/format.h>

#include "util/error.h"

namespace celer {

void apply_rope_options(HParams& hp, const EngineOptions& opt) {
    if (opt.rope_scaling.empty() && opt.rope_scale <= 0 && opt.yarn_orig_ctx == 0) return;
    const RopeScaling type = opt.rope_scaling.empty() ? hp.rope_scaling : parse_rope_scaling(opt.rope_scaling);
    set_rope_scaling(hp, type, opt.rope_scale > 0 ? opt.rope_scale : hp.rope_scale, opt.yarn_orig_ctx ? opt.yarn_orig_ctx : hp.rope_orig_ctx);
}

Engine::Engine(const std::string& model_path, const EngineOptions& opt) {
    model_ = load_model(model_path);
    apply_rope_options(model_->hp, opt);
    kernels_ = &kernels::select_kernels(opt.kernels);
    pool_ = std::make_unique<ThreadPool>(opt.n_threads > 0 ? opt.n_threads : default_thread_count());
    uint32_t n_ctx = opt.n_ctx ? opt.n_ctx : std::min<uint32_t>(model_->hp.n_ctx_train, 4096);
    if (n_ctx > (1u << 20)) throw Error(fmt::format("context size {} is too large", n_ctx));
    if (opt.f16_as_bf16 && !kernels_->gemm_bf16)
        throw Error(fmt::format("--f16-as-bf16 needs kernels with bf16 dot products (avx512bf16); these are '{}'", kernels_->name));
    fwd_ = std::make_unique<CpuForward>(*model_, *pool_, *kernels_, n_ctx, opt.kv_type, opt.f16_as_bf16);
    if (!opt.draft_model.empty()) draft_ = std::make_unique<DraftModel>(opt.draft_model, *model_, *pool_, *kernels_, n_ctx, opt.kv_type);
}

std::vector<TokenId> Engine::tokenize(std::string_view text, bool add_bos) const {
    std::vector<TokenId> ids;
    const Vocab& v = model_->vocab;
    if (add_bos && v.add_bos() && v.bos() >= 0) ids.push_back(v.bos());
    const auto body = v.encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

GenerateStats Engine::generate(std::span<const TokenId> prompt, int n_predict, const SamplerParams& sp,
                               const std::function<bool(std::string_view)>& on_text, const spec::SpecParams& spec_params) {
    using clock = std::chrono::steady_clock;
    GenerateStats st;
    st.n_prompt = prompt.size();
    if (prompt.empty()) throw Error("generate: empty prompt");
    if (prompt.size() + size_t(std::max(n_predict, 0)) > fwd_->n_ctx())
        throw Error(fmt::format("prompt ({} tokens) plus {} to generate exceed the context size {}", prompt.size(), n_predict,
                                fwd_->n_ctx()));
    fwd_->reset();
    Sampler sampler(sp);
    spec::Speculator speculator(spec_params, draft_.get());
    std::vector<TokenId> history(prompt.begin(), prompt.end());
    speculator.push(prompt);
    std::vector<float> logits;
    Utf8Stream text;
    const size_t n_vocab = model_->vocab.size();

    const auto t0 = clock::now();
    fwd_->eval(prompt, false, logits);
    const auto t1 = clock::now();
    st.prefill_s = std::chrono::duration<double>(t1 - t0).count();

    // A token joins the output; false when generation ends before it (end-of-generation) or
    // with it (the caller).
    const auto emit = [&](TokenId t) {
        if (model_->vocab.is_eog(t)) {
            st.hit_eos = true;
            return false;
        }
        history.push_back(t);
        ++st.n_generated;
        const std::string piece = text.push(model_->vocab.piece(t));
        return piece.empty() || on_text(piece);
    };
    // A pass over [the token not yet in the cache, guesses...]; its time teaches the cost model.
    uint32_t base = 0;
    const auto pass = [&](std::span<const TokenId> batch) {
        base = fwd_->n_past();
        const auto p0 = clock::now();
        if (batch.size() > 1) fwd_->eval_check(batch, logits);
        else fwd_->eval(batch, false, logits);
        pass_cost_.observe(batch.size(), std::chrono::duration<double>(clock::now() - p0).count());
        ++st.passes;
    };
    // Row i holds the model's distribution after batch[i]; the history already holds every
    // guess taken before i.
    const auto choose = [&](size_t i, TokenId d) {
        return sampler.sample_given(std::span(logits).subspan(i * n_vocab, n_vocab), history, d);
    };
    const auto keep = [&](size_t n) { fwd_->truncate(base + uint32_t(n)); };
    if (n_predict > 0)
        spec::decode(speculator, sampler.sample(logits, history), size_t(n_predict), &pass_cost_, emit, pass, choose, keep);
    if (const std::string rest = text.flush(); !rest.empty()) on_text(rest);
    st.decode_s = std::chrono::duration<double>(clock::now() - t1).count();
    st.spec = speculator.stats();
    return st;
}

}  // namespace celer
