#include "server/scheduler.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::server {

const char* finish_name(Finish f) {
    switch (f) {
        case Finish::Stop: return "stop";
        case Finish::Length: return "length";
        case Finish::Cancelled: return "cancelled";
        case Finish::Error: return "error";
        case Finish::None: break;
    }
    return "none";
}

Generation::Generation(std::vector<TokenId> prompt, GenParams params) : prompt_(std::move(prompt)), params_(std::move(params)) {}

bool Generation::take(Chunk& out) {
    std::lock_guard lock(mu_);
    out.text += pending_.text;
    for (auto& l : pending_.logprobs) out.logprobs.push_back(std::move(l));
    pending_ = {};
    return finish_ != Finish::None;
}

Finish Generation::finish() const {
    std::lock_guard lock(mu_);
    return finish_;
}

std::string Generation::error() const {
    std::lock_guard lock(mu_);
    return error_;
}

void Generation::push(std::string text, std::optional<TokenLogprob> lp) {
    {
        std::lock_guard lock(mu_);
        pending_.text += text;
        if (lp) pending_.logprobs.push_back(std::move(*lp));
    }
    if (notify_) notify_();
}

bool Generation::cancel() {
    std::lock_guard lock(mu_);
    if (finish_ != Finish::None) return false;
    cancelled_.store(true);
    return true;
}

std::vector<TokenId> Generation::output_tokens() const {
    std::lock_guard lock(mu_);
    return output_;
}

void Generation::end(Finish f, std::string error, std::vector<TokenId> output) {
    {
        std::lock_guard lock(mu_);
        if (finish_ != Finish::None) return;
        output_ = std::move(output);
        // A cancel that was accepted wins over an end the engine reached after it.
        if (cancelled_.load() && (f == Finish::Stop || f == Finish::Length)) f = Finish::Cancelled;
        finish_ = f;
        error_ = std::move(error);
    }
    if (notify_) notify_();
}

struct Scheduler::Slot {
    explicit Slot(KvCache c) : cache(std::move(c)) {}
    KvCache cache;
    std::vector<TokenId> tokens;  // exactly what the cache holds, in order
    uint64_t last_used = 0;       // admission order: older requests' prompt chunks go first

    // The generation using this slot, if any.
    std::shared_ptr<Generation> gen;
    size_t prompt_done = 0;      // prompt tokens in the cache
    TokenId next = -1;           // sampled, not yet in the cache (decoding)
    std::optional<Sampler> sampler;
    std::vector<TokenId> history;  // prompt + generated, for the penalties
    Utf8Stream utf8;
    std::string held;  // text that could still begin a stop string
    int n_gen = 0;
    bool want_logits = false;  // in the current step
    size_t batch_index = 0;
    // Speculation: the guesser over prompt and output, this step's [next, guesses...] and
    // their logits.
    std::optional<spec::Speculator> spec;
    std::vector<TokenId> draft, check;
    std::vector<float> check_logits;
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& opt) : engine_(engine), opt_(opt) {
    if (opt.n_slots < 1 || opt.n_slots > 256) throw Error(fmt::format("--parallel {}: expected 1 to 256", opt.n_slots));
    if (opt.slot_ctx < 8) throw Error(fmt::format("context size {} is too small", opt.slot_ctx));
    if (opt.spec.source == spec::Source::Model)
        throw Error("the server speculates from the text (--spec suffix or ngram); a draft model is `celer run`'s only, for now");
    const size_t per_slot = KvPool::blocks_for(opt.slot_ctx) + 1;
    const size_t block_bytes = engine.forward().make_pool(1)->block_bytes();
    const size_t n_blocks = opt.kv_budget ? opt.kv_budget / block_bytes : per_slot * size_t(opt.n_slots);
    if (n_blocks < per_slot)
        throw Error(fmt::format("--kv-budget {} MiB holds {} blocks of {} tokens; one sequence of {} tokens needs {} ({:.1f} MiB)",
                                opt.kv_budget >> 20, n_blocks, KvPool::kBlockTokens, opt.slot_ctx, per_slot,
                                double(per_slot * block_bytes) / (1 << 20)));
    pool_ = engine.forward().make_pool(n_blocks);
    tree_ = std::make_unique<PrefixTree>(pool_);
    for (int i = 0; i < opt.n_slots; ++i) slots_.push_back(std::make_unique<Slot>(KvCache(pool_, opt.slot_ctx)));
    thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

void Scheduler::shutdown() {
    {
        std::lock_guard lock(mu_);
        if (stop_ && !thread_.joinable()) return;
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    for (auto& g : queue_) g->end(Finish::Cancelled);
    queue_.clear();
    for (auto& s : slots_)
        if (s->gen) {
            s->gen->end(Finish::Cancelled);
            s->gen.reset();
        }
}

void Scheduler::submit(const std::shared_ptr<Generation>& g) {
    if (g->prompt_.empty()) throw Error("the prompt is empty");
    if (g->prompt_.size() >= opt_.slot_ctx)
        throw Error(fmt::format("the prompt has {} tokens; the context holds {} (with room for one to generate)", g->prompt_.size(),
                                opt_.slot_ctx));
    {
        std::lock_guard lock(mu_);
        if (stop_) throw Error("the server is shutting down");
        if (queue_.size() >= opt_.max_queue) throw Error(fmt::format("too many waiting requests ({})", queue_.size()));
        queue_.push_back(g);
        stats_.waiting.store(int(queue_.size()));
    }
    cv_.notify_all();
}

void Scheduler::cancel_all() {
    {
        std::lock_guard lock(mu_);
        for (auto& g : queue_) g->cancel();
    }
    cancel_running_.store(true);  // the slots belong to the scheduler's thread
    cv_.notify_all();
}

size_t Scheduler::kv_bytes_total() const { return pool_->n_blocks() * pool_->block_bytes(); }

size_t Scheduler::kv_bytes_in_use() const { return stats_.kv_blocks_used.load() * pool_->block_bytes(); }

// Gives waiting generations free slots in arrival order, each loading the longest cached prefix
// of its prompt from the tree. When a running sequence is still prefilling a prefix this prompt
// shares beyond what the tree has, the request waits for it (requests behind it may go first)
// rather than computing the same tokens a second time. A request whose prompt cannot get its
// blocks now waits for running sequences to free theirs.
bool Scheduler::admit() {
    bool any = false;
    // Cancelled requests leave at once, wherever they are in the queue, even with every slot busy.
    std::erase_if(queue_, [&](const std::shared_ptr<Generation>& g) {
        if (!g->cancelled()) return false;
        g->end(Finish::Cancelled);
        stats_.cancelled++;
        return true;
    });
    const auto running = [&] { return std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->gen != nullptr; }); };
    for (auto it = queue_.begin(); it != queue_.end();) {
        std::shared_ptr<Generation> g = *it;
        const std::span<const TokenId> p = g->prompt_;
        Slot* free = nullptr;
        size_t coming = 0;  // the longest prefix a slot is prefilling now and has not reached yet
        Slot* donor = nullptr;  // the running sequence whose cache holds most of the prompt
        size_t donor_lcp = 0;
        for (auto& s : slots_) {
            if (!s->gen) {
                free = free ? free : s.get();
                continue;
            }
            if (const size_t lcp = common_prefix(s->tokens, p); lcp > donor_lcp) donor = s.get(), donor_lcp = lcp;
            if (s->next < 0) {
                const size_t shared = common_prefix(s->gen->prompt_, p);
                if (shared > s->prompt_done) coming = std::max(coming, shared);
            }
        }
        if (!free) break;
        // At least the prompt's last token is run again: its logits pick the first new token.
        const uint32_t max_keep = uint32_t(p.size() - 1);
        donor_lcp = std::min<size_t>(donor_lcp, max_keep);
        const uint32_t cached = std::max<uint32_t>(tree_->match(p, max_keep), uint32_t(donor_lcp));
        if (coming > cached) {
            ++it;  // more of its prefix is being computed: wait, then share it
            continue;
        }
        // Blocks it will need beyond the cached ones (+1: a shared partial block is copied).
        const size_t need = KvPool::blocks_for(p.size() + 1) - cached / KvPool::kBlockTokens + 1;
        if (pool_->n_free() < need && pool_->n_free() + tree_->n_evictable() < need) {
            if (running()) {
                stats_.out_of_kv++;
                break;  // in order: it goes first once blocks come back
            }
            it = queue_.erase(it);
            g->end(Finish::Error, fmt::format("the prompt needs {} KV blocks and the budget has {}", need, pool_->n_blocks()));
            continue;
        }
        it = queue_.erase(it);
        Slot& s = *free;
        uint32_t keep = tree_->load(p, max_keep, s.cache);
        if (donor_lcp > keep) {
            // A running sequence holds more of it than the tree (its last block is not full
            // yet): share its blocks; whichever side writes first into the shared one copies it.
            s.cache.fork(donor->cache, uint32_t(donor_lcp));
            keep = uint32_t(donor_lcp);
            stats_.forked_tokens += keep;
        }
        s.tokens.assign(p.begin(), p.begin() + keep);
        s.gen = g;
        s.prompt_done = keep;
        s.next = -1;
        s.sampler.emplace(g->params_.sampler);
        s.history = g->prompt_;
        s.spec.reset();
        if (opt_.spec.source != spec::Source::Off) {
            s.spec.emplace(opt_.spec);
            s.spec->push(g->params_.prediction);  // before the prompt: copied from as an earlier text
            s.spec->push(g->prompt_);
        }
        s.utf8 = {};
        s.held.clear();
        s.n_gen = 0;
        s.last_used = ++clock_;
        g->cached_.store(keep);
        stats_.prompt_tokens += p.size();
        stats_.cached_tokens += keep;
        any = true;
    }
    stats_.waiting.store(int(queue_.size()));
    return any;
}

void Scheduler::loop() {
    for (;;) {
        {
            std::unique_lock lock(mu_);
            for (;;) {
                if (stop_) return;
                try {
                    admit();
                } catch (const std::exception& e) {
                    // Nothing admit() does should throw; if it does, the request at the head fails
                    // rather than the server.
                    if (!queue_.empty()) {
                        queue_.front()->end(Finish::Error, e.what());
                        queue_.pop_front();
                    }
                }
                const bool busy = std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->gen != nullptr; });
                if (busy) break;
                stats_.active.store(0);
                cv_.wait(lock);
            }
        }
        step();
    }
}

void Scheduler::release(Slot& s, Finish f, std::string error) {
    if (f != Finish::Error && f != Finish::Cancelled) {
        if (std::string rest = s.utf8.flush(); !rest.empty()) s.held += rest;
    }
    if (!s.held.empty() && f != Finish::Error) s.gen->push(std::move(s.held), std::nullopt);
    s.held.clear();
    const size_t n_prompt = s.gen->prompt_tokens();
    std::vector<TokenId> output;
    if (s.history.size() > n_prompt) output.assign(s.history.begin() + long(n_prompt), s.history.end());
    s.gen->end(f, std::move(error), std::move(output));
    if (s.gen->finish() == Finish::Cancelled) stats_.cancelled++;
    stats_.finished++;
    s.gen.reset();
    s.sampler.reset();
    // Everything it computed stays cached for whoever continues it (the next turn, a redirect).
    tree_->insert(s.tokens, s.cache, true);
    s.cache.reset();
    s.tokens.clear();
}

void Scheduler::publish() {
    stats_.active.store(int(std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s->gen != nullptr; })));
    stats_.kv_blocks_used.store(pool_->n_used());
    stats_.kv_blocks_cached.store(tree_->n_nodes());
    stats_.evicted_blocks.store(tree_->evictions());
}

// One batched step: every decoding sequence feeds its last token; the remaining room goes to
// prompt chunks, oldest request first. Each gets its blocks first: a decoding sequence that
// cannot (the budget is spent on running sequences) ends with "length"; a prompt chunk that
// cannot waits for a later step.
void Scheduler::step() {
    if (cancel_running_.exchange(false))
        for (auto& s : slots_)
            if (s->gen) s->gen->cancel();
    std::vector<SeqTokens> batch;
    std::vector<Slot*> in_batch;
    std::vector<uint32_t> n_past_before;
    size_t room = CpuForward::kMaxBatch;
    size_t n_decoding = 0;
    for (auto& sp : slots_)
        if (sp->gen && !sp->gen->cancelled() && sp->next >= 0) ++n_decoding;
    size_t decode_tokens = 0;  // in the step so far: what a guess's cost is measured beside
    for (auto& sp : slots_) {
        Slot& s = *sp;
        if (!s.gen) continue;
        if (s.gen->cancelled()) {
            release(s, Finish::Cancelled);
            continue;
        }
        if (s.next >= 0) {
            if (s.cache.n_past() + 1 > s.cache.n_ctx()) {
                release(s, Finish::Length);
                continue;
            }
            if (!s.cache.reserve(1)) {
                stats_.out_of_kv++;
                release(s, Finish::Length);
                continue;
            }
            // Guesses: no more than the tokens the generation may still produce after the next
            // one's successor, the context, and a fair share of the step.
            s.draft.clear();
            if (s.spec) {
                const size_t left = size_t(std::max(0, s.gen->params_.max_tokens - s.n_gen));
                const size_t ctx_room = s.cache.n_ctx() - s.cache.n_past();
                const size_t share = (room - (n_decoding - std::min(n_decoding, in_batch.size() + 1))) / 2;
                const size_t limit = std::min({left > 0 ? left - 1 : 0, ctx_room > 2 ? ctx_room - 2 : 0, share});
                s.spec->draft(s.draft, limit, &pass_cost_, n_decoding - 1);
                if (!s.draft.empty() && !s.cache.reserve(uint32_t(1 + s.draft.size()))) s.draft.clear();
            }
            n_past_before.push_back(s.cache.n_past());
            if (s.draft.empty()) {
                batch.push_back({&s.cache, std::span(&s.next, 1), true});
            } else {
                s.check.assign(1, s.next);
                s.check.insert(s.check.end(), s.draft.begin(), s.draft.end());
                s.check_logits.resize(s.check.size() * engine_.model().hp.n_vocab);
                batch.push_back({&s.cache, std::span(s.check), true, s.check_logits.data()});
            }
            in_batch.push_back(&s);
            room -= batch.back().tokens.size();
            decode_tokens += batch.back().tokens.size();
        }
    }
    const size_t n_decode_entries = batch.size();
    std::vector<Slot*> prefilling;
    for (auto& sp : slots_)
        if (sp->gen && sp->next < 0) prefilling.push_back(sp.get());
    std::sort(prefilling.begin(), prefilling.end(), [](Slot* a, Slot* b) { return a->last_used < b->last_used; });
    for (Slot* s : prefilling) {
        if (room == 0) break;
        const auto& p = s->gen->prompt_;
        const size_t n = std::min(room, p.size() - s->prompt_done);
        if (!s->cache.reserve(uint32_t(n))) {
            stats_.out_of_kv++;
            continue;
        }
        const bool last = s->prompt_done + n == p.size();
        batch.push_back({&s->cache, std::span(p).subspan(s->prompt_done, n), last && s->gen->params_.max_tokens > 0});
        in_batch.push_back(s);
        n_past_before.push_back(s->cache.n_past());
        room -= n;
    }
    if (batch.empty()) {
        // Prompts waiting for blocks that no running sequence will free: they cannot proceed.
        for (Slot* s : prefilling) release(*s, Finish::Error, "the KV cache budget is too small for this prompt");
        publish();
        return;
    }

    std::vector<float> logits;
    const auto t0 = std::chrono::steady_clock::now();
    try {
        // Stop mid-step once every sequence in it was cancelled (or the server stops): the cancel
        // is answered within a layer rather than after the whole step.
        const auto abort = [&] {
            return cancel_running_.load() || std::all_of(in_batch.begin(), in_batch.end(), [](Slot* s) { return s->gen->cancelled(); });
        };
        engine_.forward().eval_batch(batch, logits, abort);
    } catch (const StepAborted&) {
        for (Slot* s : in_batch) s->cache.truncate(s->cache.n_past());  // blocks reserved for the step go back
        stats_.aborted_steps++;
        publish();
        return;  // the next step releases the cancelled sequences
    } catch (const std::exception& e) {
        for (Slot* s : in_batch) release(*s, Finish::Error, e.what());
        publish();
        return;
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (batch.size() == n_decode_entries) pass_cost_.observe(decode_tokens, dt);  // decode steps teach the cost of a step's size
    for (Slot* s : in_batch) {
        auto& t = s->next < 0 ? s->gen->prompt_s_ : s->gen->decode_s_;
        t.store(t.load() + dt);
    }
    stats_.steps++;
    const size_t n_vocab = engine_.model().hp.n_vocab;
    for (size_t i = 0; i < in_batch.size(); ++i) {
        Slot& s = *in_batch[i];
        if (batch[i].check_logits) {
            try {
                settle_check(s, batch[i].check_logits, n_past_before[i]);
            } catch (const std::exception& e) {
                if (s.gen) release(s, Finish::Error, e.what());
            }
            continue;
        }
        const auto fed = batch[i].tokens;
        s.tokens.insert(s.tokens.end(), fed.begin(), fed.end());
        if (s.next < 0) {
            s.prompt_done += fed.size();
            stats_.prefilled_tokens += fed.size();
            if (s.prompt_done == s.gen->prompt_.size() && s.gen->params_.max_tokens == 0) {
                release(s, Finish::Stop);  // a warm-up: the prompt is in the cache, nothing to generate
                continue;
            }
            if (!batch[i].logits) continue;
        }
        try {
            sample(s, logits.data() + i * n_vocab);
        } catch (const std::exception& e) {
            if (s.gen) release(s, Finish::Error, e.what());
        }
    }
    // Blocks filled in this step are shared from now on.
    constexpr uint32_t B = KvPool::kBlockTokens;
    for (size_t i = 0; i < in_batch.size(); ++i) {
        const Slot& s = *in_batch[i];
        if (s.gen && s.cache.n_past() / B > n_past_before[i] / B) tree_->insert(s.tokens, s.cache, false);
    }
    publish();
}

namespace {

// The length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t stop_prefix_tail(const std::string& text, const std::vector<std::string>& stops) {
    size_t best = 0;
    for (const auto& st : stops)
        for (size_t n = std::min(text.size(), st.size() - 1); n > best; --n)
            if (text.compare(text.size() - n, n, st, 0, n) == 0) {
                best = n;
                break;
            }
    return best;
}

}  // namespace

void Scheduler::sample(Slot& s, const float* logits) {
    const std::span<const float> l(logits, engine_.model().hp.n_vocab);
    take(s, s.sampler->sample(l, s.history), logits, false);
}

// The model's choice along the guesses (as the engine's spec::decode does): each guess the
// sampler takes given the ones before (rejection sampling keeps the distribution; greedy takes
// exactly its maximum), up to the first it refuses or end-of-generation, whose choice instead
// becomes the next token. The cache keeps the next token and the guesses taken.
void Scheduler::settle_check(Slot& s, const float* logits, uint32_t n_past_before) {
    const size_t n_vocab = engine_.model().hp.n_vocab;
    const Vocab& vocab = engine_.model().vocab;
    const auto row = [&](size_t i) { return std::span<const float>(logits + i * n_vocab, n_vocab); };
    size_t taken = 0;
    TokenId last = -1;
    spec::verify(s.draft, [&](size_t i, TokenId d) {
        const TokenId t = s.sampler->sample_given(row(i), s.history, d);
        if (d >= 0 && t == d && !vocab.is_eog(t)) {
            s.history.push_back(t);  // the next choice's penalties see it
            ++taken;
            return t;
        }
        last = t;
        return TokenId(-2);  // ends the verdict: the choice is in `last`
    });
    s.history.resize(s.history.size() - taken);
    s.spec->feedback(s.draft.size(), taken);
    stats_.spec_checks++;
    stats_.spec_drafted += s.draft.size();
    stats_.spec_accepted += taken;
    s.gen->spec_accepted_ += taken;
    s.gen->spec_rejected_ += s.draft.size() - taken;
    s.cache.truncate(n_past_before + 1 + uint32_t(taken));
    s.tokens.insert(s.tokens.end(), s.check.begin(), s.check.begin() + long(1 + taken));
    for (size_t j = 0; j < taken; ++j)
        if (!take(s, s.draft[j], row(j).data(), true)) return;
    take(s, last, row(taken).data(), false);
}

bool Scheduler::take(Slot& s, TokenId t, const float* logits, bool in_cache) {
    Generation& g = *s.gen;
    const size_t n_vocab = engine_.model().hp.n_vocab;
    const Vocab& vocab = engine_.model().vocab;
    const std::span<const float> l(logits, n_vocab);
    if (s.n_gen == 0) {
        g.ttft_s_.store(std::chrono::duration<double>(std::chrono::steady_clock::now() - g.submitted_).count());
    }
    if (vocab.is_eog(t)) {
        s.next = -1;
        release(s, Finish::Stop);
        return false;
    }
    s.history.push_back(t);
    if (s.spec) s.spec->push(t);
    if (!in_cache) s.next = t;
    ++s.n_gen;
    g.generated_.store(size_t(s.n_gen));
    stats_.generated_tokens++;

    std::optional<TokenLogprob> lp;
    if (g.params_.logprobs >= 0) {
        float m = -INFINITY;
        for (float v : l) m = std::max(m, v);
        double z = 0;
        for (float v : l) z += std::exp(double(v - m));
        const float log_z = float(std::log(z)) + m;
        lp.emplace();
        lp->token = vocab.piece(t);
        lp->logprob = l[size_t(t)] - log_z;
        if (g.params_.logprobs > 0) {
            std::vector<TokenId> ids(n_vocab);
            for (size_t i = 0; i < n_vocab; ++i) ids[i] = TokenId(i);
            const size_t k = std::min<size_t>(size_t(g.params_.logprobs), n_vocab);
            std::partial_sort(ids.begin(), ids.begin() + long(k), ids.end(), [&](TokenId a, TokenId b) { return l[size_t(a)] > l[size_t(b)]; });
            for (size_t i = 0; i < k; ++i) lp->top.emplace_back(vocab.piece(ids[i]), l[size_t(ids[i])] - log_z);
        }
    }

    s.held += s.utf8.push(vocab.piece(t));
    const auto& stops = g.params_.stop;
    size_t cut = std::string::npos;
    for (const auto& st : stops) {
        const size_t at = s.held.find(st);
        if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
        s.held.resize(cut);
        g.push(std::move(s.held), std::move(lp));
        s.held.clear();
        s.utf8 = {};
        release(s, Finish::Stop);
        return false;
    }
    const size_t keep = stops.empty() ? 0 : stop_prefix_tail(s.held, stops);
    std::string out = s.held.substr(0, s.held.size() - keep);
    s.held.erase(0, s.held.size() - keep);
    if (!out.empty() || lp) g.push(std::move(out), std::move(lp));
    if (s.n_gen >= g.params_.max_tokens) {
        release(s, Finish::Length);
        return false;
    }
    if (!in_cache && s.cache.n_past() + 1 >= s.cache.n_ctx()) {
        release(s, Finish::Length);
        return false;
    }
    return true;
}

}  // namespace celer::server
