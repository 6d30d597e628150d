// Speculative decoding: cheap guesses of the tokens a model is about to produce, checked by the
// model itself in one batched pass. On a machine that is bound by memory bandwidth, a pass over
// k + 1 tokens reads the weights once, like a pass over one, so every guess the model agrees
// with is a token almost for free. Code edits copy most of their output from their input (the
// file being edited, earlier turns, tool output), and that is where the guesses come from:
//
// - Suffix: a suffix automaton over everything the sequence holds (prompt and output). After
//   each token it knows, in O(1), the longest suffix of the sequence that occurred before and
//   where; the guess is what followed that occurrence, as many tokens as the match is long
//   (a long match predicts a long copy; SuffixDecoding, arXiv 2411.04975).
// - Ngram: prompt lookup: the most recent earlier occurrence of the last 4, 3 or 2 tokens
//   (llama.cpp's lookup decoding, "prompt lookup decoding").
//
// Verification changes nothing: with greedy sampling the model's own choice at each position
// is compared with the guess, the first disagreement ends the run and the model's token takes
// its place; with sampling a guess d is kept with probability p(d) and otherwise a token is
// drawn from p with d removed, which leaves every output distributed exactly as p
// (Sampler::sample_given).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace celer::spec {

enum class Source : uint8_t { Off, Suffix, Ngram, Model };
Source parse_source(std::string_view s);  // "off", "suffix", "ngram", "model"; throws celer::Error
const char* source_name(Source s);

// Where the sequence's end occurred before: `len` tokens ending at `end` equal its last `len`
// tokens (end < size - 1). len 0: no earlier occurrence.
struct Match {
    size_t len = 0;
    size_t end = 0;
};

// A suffix automaton over a sequence that grows a token at a time (Blumer et al.; linear size
// and amortised time). Each state also keeps the end of a recent occurrence (the latest one
// unless more than kFreshWalk longer contexts ended there since), so the guess copies from
// where the context was seen last.
class SuffixIndex {
public:
    SuffixIndex();
    void push(TokenId t);
    Match match() const { return match_; }
    const std::vector<TokenId>& tokens() const { return text_; }

private:
    struct State {
        uint32_t len = 0;
        int32_t link = -1;
        uint32_t last = 0;  // an end position of this state's strings (the most recent known)
        std::vector<std::pair<TokenId, uint32_t>> next;
    };
    static constexpr int kFreshWalk = 64;  // states up the suffix links told of each new end
    int64_t go(uint32_t s, TokenId t) const;
    void set(uint32_t s, TokenId t, uint32_t to);

    std::vector<State> st_;
    std::unordered_map<TokenId, uint32_t> root_next_;  // the root has up to a vocabulary of them
    uint32_t last_ = 0;
    std::vector<TokenId> text_;
    Match match_;
};

// Prompt lookup: the most recent earlier occurrence of the sequence's last n tokens, longest n
// of 4, 3, 2 first, its match then measured backwards (up to 64 tokens).
class NgramIndex {
public:
    void push(TokenId t);
    Match match() const;
    const std::vector<TokenId>& tokens() const { return text_; }

private:
    static constexpr size_t kMaxN = 4, kMinN = 2;
    uint64_t key(size_t end, size_t n) const;  // of text_[end + 1 - n .. end]
    std::vector<TokenId> text_;
    std::unordered_map<uint64_t, uint32_t> seen_[kMaxN + 1];  // n-gram -> its latest end
    uint32_t prev_[kMaxN + 1] = {};                             // the latest end before this one, per n
    bool have_prev_[kMaxN + 1] = {};
};

// A check runs the next token and the guesses in one pass of at most CpuForward::kExactTokens.
inline constexpr int kMaxDraft = 63;

struct SpecParams {
    Source source = Source::Off;
    int max_draft = 16;  // tokens guessed at most per step (1 .. kMaxDraft)
    int min_match = 2;   // a shorter match guesses nothing
    // false: guess as far as the match (or max_draft) goes, whatever it costs (tests, and
    // measuring a source without the length policy).
    bool adaptive = true;
};

struct SpecStats {
    uint64_t steps = 0;     // verification passes that carried a guess
    uint64_t drafted = 0;   // tokens guessed
    uint64_t accepted = 0;  // of them, taken
    double acceptance() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
    // Mean guessed tokens taken per pass that carried a guess.
    double accepted_per_step() const { return steps ? double(accepted) / double(steps) : 0.0; }
};

// What a pass over n tokens costs against a pass over one, learned from the passes' own times
// (a moving average per size; sizes not yet seen are interpolated between those seen, or
// extrapolated at the prior slope). On a bandwidth-bound CPU the weights are read once per pass
// whatever its size, so the curve starts nearly flat; it steepens where the pass turns
// compute-bound (many tokens, or a batch of other sequences already in the step).
class PassCost {
public:
    static constexpr size_t kMax = 65;  // sizes tracked: 1 .. kMax - 1
    void observe(size_t n, double seconds);
    // Relative cost of n tokens (n >= 1), given the pass already holds `base` tokens of others:
    // time(base + n) / time(base + 1).
    double relative(size_t n, size_t base = 0) const;
    double seconds(size_t n) const;  // estimated time of a pass of n tokens (0 before any pass)
    void set_prior_slope(double s) { prior_slope_ = s; }

private:
    double t_[kMax] = {};  // moving average of the time of a pass of n tokens; 0: unseen
    double prior_slope_ = 0.02;  // relative cost of each token beyond the first, before measuring
};

// A guesser that is not a copy: a small model with the target's vocabulary, decoding greedily
// ahead of it (engine/draft_model.h).
class ModelDrafter {
public:
    virtual ~ModelDrafter() = default;
    // Clears `out` and fills it with up to k tokens the drafter expects after `text`, fewer where
    // its own confidence drops.
    virtual void draft(std::span<const TokenId> text, size_t k, std::vector<TokenId>& out) = 0;
    // Seconds one drafted token costs (a moving average; 0 before any).
    virtual double seconds_per_token() const = 0;
};

// One sequence's guesser: fed every token of the sequence as it becomes part of it, asked for a
// guess before each step, told how much of it the model took.
//
// The guess copies what followed the sequence's latest suffix seen before, at most as many tokens
// as that match is long (a long match predicts a long copy) and max_draft. Its length k is then
// the one that maximises the expected tokens per unit of time: with p the estimated chance that
// a guessed token is taken given the ones before it were (learned per match length), a pass
// yields 1 + p + ... + p^k tokens and costs PassCost::relative(k + 1). Where no k > 0 pays (a
// source that does not fit the text, a step already compute-bound), nothing is guessed; the
// counts decay while nothing is guessed, so a source that starts to fit is tried again.
class Speculator {
public:
    // `drafter`: the model Source::Model drafts with (required for it, unused otherwise).
    explicit Speculator(const SpecParams& p, ModelDrafter* drafter = nullptr);
    bool enabled() const { return p_.source != Source::Off; }
    void push(std::span<const TokenId> tokens);
    void push(TokenId t) { push(std::span(&t, 1)); }
    // Clears `out` and fills it with up to `room` guessed tokens (none when it has no match or a
    // guess would not pay). `cost`: the pass costs (nullptr: the prior's); `base`: tokens of
    // other sequences in the same pass.
    void draft(std::vector<TokenId>& out, size_t room, const PassCost* cost = nullptr, size_t base = 0);
    void feedback(size_t drafted, size_t accepted);
    const SpecStats& stats() const { return stats_; }

private:
    // p is estimated per length of the match the guess came from (a longer shared context
    // predicts a longer copy): buckets 1-2, 3-4, 5-8, 9-16, 17-32, 33+, each with decayed counts
    // of taken and refused guessed tokens and a prior of len / (len + 2) worth two trials.
    static constexpr size_t kBuckets = 6;
    static constexpr size_t kModelBucket = kBuckets;  // a draft model's guesses: one estimate, prior 0.7
    static constexpr double kPriorWeight = 2.0;
    static size_t bucket(size_t match_len);
    static double prior(size_t bucket);
    double estimate(size_t bucket) const;
    size_t length(size_t bucket, size_t limit, const PassCost& cost, size_t base, double per_token);
    SpecParams p_;
    SuffixIndex suffix_;
    NgramIndex ngram_;
    double succ_[kBuckets + 1] = {}, fail_[kBuckets + 1] = {};
    ModelDrafter* drafter_ = nullptr;
    std::vector<TokenId> text_;  // the sequence, for a drafter
    size_t last_bucket_ = 0;  // of the latest guess
    SpecStats stats_;
};

// The outcome of checking a guess: how many guessed tokens were taken, and the model's token
// after them (its correction, or the token past a fully accepted guess).
struct Verdict {
    size_t accepted = 0;
    TokenId next = -1;
};

// Runs the model's choice along the guess: decide(i, d) returns the token the model takes at
// position i of the pass, d being the guess there (-1 past the guess's end). The first choice
// that differs from its guess, or the one past the end, closes the verdict.
template <class Decide>
Verdict verify(std::span<const TokenId> draft, Decide&& decide) {
    for (size_t i = 0;; ++i) {
        const TokenId d = i < draft.size() ? draft[i] : TokenId(-1);
        const TokenId t = decide(i, d);
        if (d < 0 || t != d) return {i, t};
    }
}

// The decoding loop of one sequence with speculation, shared by the engine and the replay
// harness (bench), so that what is measured is what runs. `next` is the token sampled after the
// prompt, `budget` the most tokens to produce.
//   emit(t) -> bool:   t joins the output; false ends the loop (end of generation, the caller)
//   pass(batch):       runs the model over batch = [token not yet in the cache, guesses...]
//   choose(i, d):      the model's token after batch[i], d being the guess there (-1: none)
//   keep(n):           of the last pass, the first n tokens stay in the cache (the rest were
//                      refused guesses); called only for passes that carried a guess
template <class Emit, class Pass, class Choose, class Keep>
void decode(Speculator& s, TokenId next, size_t budget, const PassCost* cost, Emit&& emit, Pass&& pass, Choose&& choose,
            Keep&& keep) {
    std::vector<TokenId> draft, batch;
    size_t left = budget;
    while (left > 0 && emit(next)) {
        s.push(next);
        if (--left == 0) return;
        // The guesses past the budget would be wasted: at most as many as the tokens still to
        // come after `next`'s successor.
        s.draft(draft, left - 1, cost);
        batch.assign(1, next);
        batch.insert(batch.end(), draft.begin(), draft.end());
        pass(std::span<const TokenId>(batch));
        bool going = true;
        size_t taken = 0;
        const Verdict v = verify(draft, [&](size_t i, TokenId d) {
            const TokenId t = choose(i, d);
            if (d < 0 || t != d) return t;
            if (!emit(d)) {
                going = false;
                return TokenId(-1);
            }
            s.push(d);
            ++taken;
            if (--left == 0) going = false;
            return going ? t : TokenId(-1);
        });
        s.feedback(draft.size(), taken);
        if (!draft.empty()) keep(1 + taken);
        if (!going) return;
        next = v.next;
    }
}

// The replay harness: how a draft source would have fared had the model produced `output`
// after `prompt` (an oracle in the model's place), through decode() above.
struct ReplayResult {
    size_t tokens = 0;                // produced after the first (which the prompt's pass gives)
    std::vector<uint32_t> pass_sizes; // tokens in each decode pass
    SpecStats stats;
};
ReplayResult replay(const SpecParams& p, std::span<const TokenId> prompt, std::span<const TokenId> output,
                    const PassCost* cost = nullptr);

}  // namespace celer::spec
