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

enum class Source : uint8_t { Off, Suffix, Ngram };
Source parse_source(std::string_view s);  // "off", "suffix", "ngram"; throws celer::Error
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

struct SpecParams {
    Source source = Source::Off;
    int max_draft = 16;  // tokens guessed at most per step
    int min_match = 2;   // a shorter match guesses nothing
};

struct SpecStats {
    uint64_t steps = 0;     // verification passes that carried a guess
    uint64_t drafted = 0;   // tokens guessed
    uint64_t accepted = 0;  // of them, taken
    double acceptance() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
    // Tokens each verification pass produced: those accepted and the model's own after them.
    double tokens_per_step() const { return steps ? double(accepted + steps) / double(steps) : 0.0; }
};

// One sequence's guesser: fed every token of the sequence as it becomes part of it, asked for a
// guess before each step, told how much of it the model took. The guess is as long as the match
// (at most max_draft) and halves while recent guesses are mostly refused, so a source that does
// not fit the text costs little.
class Speculator {
public:
    explicit Speculator(const SpecParams& p);
    bool enabled() const { return p_.source != Source::Off; }
    void push(std::span<const TokenId> tokens);
    void push(TokenId t) { push(std::span(&t, 1)); }
    // Clears `out` and fills it with up to `room` guessed tokens (none when it has no match).
    void draft(std::vector<TokenId>& out, size_t room);
    void feedback(size_t drafted, size_t accepted);
    const SpecStats& stats() const { return stats_; }

private:
    SpecParams p_;
    SuffixIndex suffix_;
    NgramIndex ngram_;
    double rate_ = 1.0;  // recent acceptance, an exponential average
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

}  // namespace celer::spec
