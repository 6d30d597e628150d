#include "engine/engine.h"

#include <chrono>

#include <fmt/format.h>

#include "util/error.h"

namespace celer {

Engine::Engine(const std::string& model_path, const EngineOptions& opt) {
    model_ = load_model(model_path);
    kernels_ = &kernels::select_kernels(opt.kernels);
    pool_ = std::make_unique<ThreadPool>(opt.n_threads > 0 ? opt.n_threads : default_thread_count());
    uint32_t n_ctx = opt.n_ctx ? opt.n_ctx : std::min<uint32_t>(model_->hp.n_ctx_train, 4096);
    if (n_ctx > (1u << 20)) throw Error(fmt::format("context size {} is too large", n_ctx));
    fwd_ = std::make_unique<CpuForward>(*model_, *pool_, *kernels_, n_ctx, opt.kv_type);
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
                               const std::function<bool(std::string_view)>& on_text) {
    using clock = std::chrono::steady_clock;
    GenerateStats st;
    st.n_prompt = prompt.size();
    if (prompt.empty()) throw Error("generate: empty prompt");
    if (prompt.size() + size_t(std::max(n_predict, 0)) > fwd_->n_ctx())
        throw Error(fmt::format("prompt ({} tokens) plus {} to generate exceed the context size {}", prompt.size(), n_predict,
                                fwd_->n_ctx()));
    fwd_->reset();
    Sampler sampler(sp);
    std::vector<TokenId> history(prompt.begin(), prompt.end());
    std::vector<float> logits;
    Utf8Stream text;

    const auto t0 = clock::now();
    fwd_->eval(prompt, false, logits);
    const auto t1 = clock::now();
    st.prefill_s = std::chrono::duration<double>(t1 - t0).count();

    for (int i = 0; i < n_predict; ++i) {
        const TokenId next = sampler.sample(logits, history);
        if (model_->vocab.is_eog(next)) {
            st.hit_eos = true;
            break;
        }
        history.push_back(next);
        ++st.n_generated;
        const std::string piece = text.push(model_->vocab.piece(next));
        if (!piece.empty() && !on_text(piece)) break;
        if (i + 1 < n_predict) fwd_->eval(std::span(&next, 1), false, logits);
    }
    if (const std::string rest = text.flush(); !rest.empty()) on_text(rest);
    st.decode_s = std::chrono::duration<double>(clock::now() - t1).count();
    return st;
}

}  // namespace celer
