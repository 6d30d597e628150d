#include "engine/speculative.h"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.h"

namespace celer::spec {

Source parse_source(std::string_view s) {
    if (s == "off" || s == "none") return Source::Off;
    if (s == "suffix") return Source::Suffix;
    if (s == "ngram" || s == "lookup") return Source::Ngram;
    if (s == "model" || s == "draft") return Source::Model;
    throw Error(fmt::format("unknown speculation source '{}' (off, suffix, ngram, model)", s));
}

const char* source_name(Source s) {
    switch (s) {
        case Source::Off: return "off";
        case Source::Suffix: return "suffix";
        case Source::Ngram: return "ngram";
        case Source::Model: return "model";
    }
    return "?";
}

// ---- suffix automaton ------------------------------------------------------------------------

SuffixIndex::SuffixIndex() { st_.push_back(State{}); }

int64_t SuffixIndex::go(uint32_t s, TokenId t) const {
    if (s == 0) {
        const auto it = root_next_.find(t);
        return it == root_next_.end() ? -1 : int64_t(it->second);
    }
    for (const auto& [tok, to] : st_[s].next)
        if (tok == t) return to;
    return -1;
}

void SuffixIndex::set(uint32_t s, TokenId t, uint32_t to) {
    if (s == 0) {
        root_next_[t] = to;
        return;
    }
    for (auto& [tok, dst] : st_[s].next)
        if (tok == t) {
            dst = to;
            return;
        }
    st_[s].next.emplace_back(t, to);
}

void SuffixIndex::push(TokenId t) {
    const uint32_t i = uint32_t(text_.size());
    text_.push_back(t);
    const uint32_t cur = uint32_t(st_.size());
    st_.push_back(State{st_[last_].len + 1, -1, i, {}});
    int64_t p = last_;
    while (p >= 0 && go(uint32_t(p), t) < 0) {
        set(uint32_t(p), t, cur);
        p = st_[size_t(p)].link;
    }
    if (p < 0) {
        st_[cur].link = 0;
    } else {
        const uint32_t q = uint32_t(go(uint32_t(p), t));
        if (st_[size_t(p)].len + 1 == st_[q].len) {
            st_[cur].link = int32_t(q);
        } else {
            State c = st_[q];  // its transitions, link and latest end: endpos(clone) holds endpos(q)
            c.len = st_[size_t(p)].len + 1;
            const uint32_t clone = uint32_t(st_.size());
            st_.push_back(std::move(c));
            while (p >= 0 && go(uint32_t(p), t) == int64_t(q)) {
                set(uint32_t(p), t, clone);
                p = st_[size_t(p)].link;
            }
            st_[q].link = int32_t(clone);
            st_[cur].link = int32_t(clone);
        }
    }
    last_ = cur;
    // The longest suffix that also ends elsewhere is the suffix link's longest string; it ended
    // before at the latest end its state knows, which from now on is this one.
    // So do the shorter suffixes up the link chain; the walk is capped (a run of one repeated
    // token makes the chain as long as the run), past which a state may name an earlier end.
    const uint32_t u = uint32_t(st_[cur].link);
    if (u == 0) {
        match_ = {};
    } else {
        match_ = {st_[u].len, st_[u].last};
        int32_t v = int32_t(u);
        for (int steps = 0; v > 0 && steps < kFreshWalk; ++steps, v = st_[size_t(v)].link) st_[size_t(v)].last = i;
    }
}

// ---- prompt lookup ---------------------------------------------------------------------------

uint64_t NgramIndex::key(size_t end, size_t n) const {
    uint64_t h = 0x9E3779B97F4A7C15ull * (n + 1);
    for (size_t j = end + 1 - n; j <= end; ++j) h = (h ^ uint64_t(uint32_t(text_[j]))) * 0xBF58476D1CE4E5B9ull + (h >> 29);
    return h;
}

void NgramIndex::push(TokenId t) {
    text_.push_back(t);
    const size_t i = text_.size() - 1;
    for (size_t n = kMinN; n <= kMaxN; ++n) {
        have_prev_[n] = false;
        if (i + 1 < n) continue;
        auto [it, fresh] = seen_[n].try_emplace(key(i, n), uint32_t(i));
        if (!fresh) {
            prev_[n] = it->second;
            have_prev_[n] = true;
            it->second = uint32_t(i);
        }
    }
}

Match NgramIndex::match() const {
    if (text_.empty()) return {};
    const size_t i = text_.size() - 1;
    for (size_t n = kMaxN; n >= kMinN; --n) {
        if (!have_prev_[n]) continue;
        const size_t end = prev_[n];
        size_t len = 0;
        while (len < 64 && len <= end && text_[end - len] == text_[i - len]) ++len;
        if (len >= n) return {len, end};  // (shorter: a hash collision)
    }
    return {};
}

// ---- pass costs ------------------------------------------------------------------------------

void PassCost::observe(size_t n, double seconds) {
    if (n == 0 || n >= kMax || !(seconds > 0)) return;
    t_[n] = t_[n] > 0 ? 0.8 * t_[n] + 0.2 * seconds : seconds;
}

double PassCost::seconds(size_t n) const {
    n = std::clamp<size_t>(n, 1, kMax - 1);
    if (t_[n] > 0) return t_[n];
    size_t lo = n, hi = n;
    while (lo > 1 && !(t_[lo] > 0)) --lo;
    while (hi < kMax - 1 && !(t_[hi] > 0)) ++hi;
    const bool have_lo = t_[lo] > 0, have_hi = t_[hi] > 0;
    if (have_lo && have_hi) return t_[lo] + (t_[hi] - t_[lo]) * double(n - lo) / double(hi - lo);
    if (have_lo) return t_[lo] * (1.0 + prior_slope_ * double(n - lo));
    if (have_hi) return t_[hi] / (1.0 + prior_slope_ * double(hi - n));
    return 0;
}

double PassCost::relative(size_t n, size_t base) const {
    const double one = seconds(base + 1);
    if (!(one > 0)) return 1.0 + prior_slope_ * double(n - 1);
    return std::max(1.0, seconds(base + n) / one);
}

// ---- the speculator --------------------------------------------------------------------------

Speculator::Speculator(const SpecParams& p, ModelDrafter* drafter) : p_(p), drafter_(drafter) {
    if (p_.source == Source::Model && !drafter_) throw Error("speculation from a model needs a draft model (--draft-model FILE)");
    p_.max_draft = std::clamp(p_.max_draft, 1, kMaxDraft);
    if (p_.min_match < 1) p_.min_match = 1;
}

void Speculator::push(std::span<const TokenId> tokens) {
    for (const TokenId t : tokens) {
        if (p_.source == Source::Suffix) suffix_.push(t);
        else if (p_.source == Source::Ngram) ngram_.push(t);
        else if (p_.source == Source::Model) text_.push_back(t);
    }
}

size_t Speculator::bucket(size_t len) {
    size_t b = 0;
    for (size_t top = 2; len > top && b + 1 < kBuckets; top *= 2) ++b;
    return b;
}

double Speculator::prior(size_t b) {
    if (b == kModelBucket) return 0.7;
    const double len = double(size_t(2) << b);  // the bucket's longest match (33+: 64)
    return len / (len + 2.0);
}

double Speculator::estimate(size_t b) const {
    return (succ_[b] + prior(b) * kPriorWeight) / (succ_[b] + fail_[b] + kPriorWeight);
}

// The guess length in [0, limit] that maximises expected tokens per unit of cost, for a guess
// from bucket b; 0 (plain decoding) scores 1. `per_token`: what each guessed token costs to make,
// against a one-token pass (a drafter's own pass; 0 for a copy). Refusals of a bucket that
// guesses nothing are slowly forgotten, since guessing nothing teaches nothing.
size_t Speculator::length(size_t b, size_t limit, const PassCost& c, size_t base, double per_token) {
    size_t best = 0;
    double best_rate = 1.0, expect = 1.0, pk = 1.0;
    const double p = estimate(b);
    for (size_t k = 1; k <= limit; ++k) {
        pk *= p;
        expect += pk;
        const double rate = expect / (c.relative(k + 1, base) + per_token * double(k));
        if (rate > best_rate * 1.0001) best = k, best_rate = rate;
    }
    if (!p_.adaptive) best = limit;
    if (best == 0) fail_[b] *= 0.98;
    else last_bucket_ = b;
    return best;
}

void Speculator::draft(std::vector<TokenId>& out, size_t room, const PassCost* cost, size_t base) {
    out.clear();
    if (p_.source == Source::Off || room == 0) return;
    const PassCost prior_cost;
    const PassCost& c = cost ? *cost : prior_cost;
    if (p_.source == Source::Model) {
        // Each drafted token costs the drafter a pass of its own: the rate counts that too.
        const double target = c.seconds(base + 1);
        const double per = target > 0 && drafter_->seconds_per_token() > 0 ? drafter_->seconds_per_token() / target : 0.1;
        if (const size_t k = length(kModelBucket, std::min(size_t(p_.max_draft), room), c, base, per)) drafter_->draft(text_, k, out);
        return;
    }
    const bool suffix = p_.source == Source::Suffix;
    const Match m = suffix ? suffix_.match() : ngram_.match();
    const std::vector<TokenId>& text = suffix ? suffix_.tokens() : ngram_.tokens();
    if (m.len < size_t(p_.min_match) || m.end + 1 >= text.size()) return;
    const size_t best = length(bucket(m.len), std::min({m.len, size_t(p_.max_draft), room}), c, base, 0.0);
    // What followed the earlier occurrence; where that runs into the present (a repeating
    // pattern: the match ends just before the end) the copy continues from its own start, as
    // LZ77's overlapping copies do, so a period repeats as far as the guess goes.
    for (size_t j = 1; j <= best; ++j) {
        const size_t at = m.end + j;
        out.push_back(at < text.size() ? text[at] : out[at - text.size()]);
    }
}

void Speculator::feedback(size_t drafted, size_t accepted) {
    if (drafted == 0) return;
    ++stats_.steps;
    stats_.drafted += drafted;
    stats_.accepted += accepted;
    // Each guessed token was a trial given the ones before it were taken: `accepted` successes
    // and, unless all were taken, one failure.
    const size_t b = last_bucket_;
    succ_[b] = 0.9 * succ_[b] + double(accepted);
    fail_[b] = 0.9 * fail_[b] + (accepted < drafted ? 1.0 : 0.0);
}

// ---- replay ----------------------------------------------------------------------------------

ReplayResult replay(const SpecParams& p, std::span<const TokenId> prompt, std::span<const TokenId> output, const PassCost* cost) {
    ReplayResult r;
    if (output.empty()) return r;
    Speculator s(p);
    s.push(prompt);
    size_t pos = 0;  // output[pos]: the token the model produces next
    decode(
        s, output[0], output.size(), cost,
        [&](TokenId t) {
            if (pos >= output.size() || output[pos] != t) return false;  // (cannot happen: the oracle chose it)
            ++pos;
            return true;
        },
        [&](std::span<const TokenId> batch) { r.pass_sizes.push_back(uint32_t(batch.size())); },
        [&](size_t, TokenId) { return pos < output.size() ? output[pos] : TokenId(-1); }, [](size_t) {});
    r.tokens = pos > 0 ? pos - 1 : 0;
    r.stats = s.stats();
    return r;
}

}  // namespace celer::spec
