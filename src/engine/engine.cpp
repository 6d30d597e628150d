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
    spec::Speculator speculator(spec_params);
    std::vector<TokenId> history(prompt.begin(), prompt.end());
    speculator.push(prompt);
    std::vector<float> logits;
    std::vector<TokenId> batch, draft;
    Utf8Stream text;
    const size_t n_vocab = model_->vocab.size();

    const auto t0 = clock::now();
    fwd_->eval(prompt, false, logits);
    const auto t1 = clock::now();
    st.prefill_s = std::chrono::duration<double>(t1 - t0).count();

    // Emits one token; false when generation ends with it (or before it, at end-of-generation).
    const auto emit = [&](TokenId t) {
        if (model_->vocab.is_eog(t)) {
            st.hit_eos = true;
            return false;
        }
        history.push_back(t);
        speculator.push(t);
        ++st.n_generated;
        const std::string piece = text.push(model_->vocab.piece(t));
        if (!piece.empty() && !on_text(piece)) return false;
        return st.n_generated < size_t(n_predict);
    };

    if (n_predict > 0) {
        TokenId next = sampler.sample(logits, history);
        while (emit(next)) {
            // `next` is sampled but not yet in the cache: the pass runs it and the guesses after
            // it. Guesses past the budget would be wasted, so there are at most as many as the
            // tokens still to come after the next one.
            speculator.draft(draft, size_t(n_predict) - st.n_generated - 1);
            batch.assign(1, next);
            batch.insert(batch.end(), draft.begin(), draft.end());
            const uint32_t base = fwd_->n_past();
            fwd_->eval(batch, !draft.empty(), logits);
            ++st.passes;
            // Row i holds the model's distribution after batch[i]; a guess is taken while the
            // model's own choice agrees with it, and is then part of the history the next
            // choice is made with.
            // Generation can end inside the guess (end-of-generation, the budget, the caller);
            // the verdict then ends there too.
            bool going = true;
            size_t taken = 0;
            const spec::Verdict v = spec::verify(draft, [&](size_t i, TokenId d) {
                const TokenId t = sampler.sample_given(std::span(logits).subspan(i * n_vocab, n_vocab), history, d);
                if (d < 0 || t != d) return t;
                if (!(going = emit(d))) return TokenId(-1);
                ++taken;
                return t;
            });
            speculator.feedback(draft.size(), taken);
            if (!draft.empty()) fwd_->truncate(base + 1 + uint32_t(taken));
            if (!going) break;
            next = v.next;
        }
    }
    if (const std::string rest = text.flush(); !rest.empty()) on_text(rest);
    st.decode_s = std::chrono::duration<double>(clock::now() - t1).count();
    st.spec = speculator.stats();
    return st;
}

}  // namespace celer
