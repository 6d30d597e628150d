// The server's engine loop: one thread owns the forward pass, a paged KV pool and the prefix
// tree over it, and up to n_slots running sequences. Requests wait in a queue; one admitted
// takes the longest prefix of its prompt that anything computed before (an earlier turn,
// another session) from the tree, by reference, and prefills only the rest. Every step runs all
// decoding sequences plus prompt chunks of the others as one batch (continuous batching,
// chunked prefill). Each block a sequence fills goes into the tree at once, so a prefix being
// prefilled is shared as it grows. Output goes to a Generation that a connection reads from
// another thread; cancelling one stops it before the next step, its KV kept in the tree.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/prefix_tree.h"

namespace celer::server {

struct GenParams {
    SamplerParams sampler;
    int max_tokens = 256;  // 0: prefill the prompt into a slot and stop (a warm-up)
    std::vector<std::string> stop;  // generation ends before the first of these in the text
    int logprobs = -1;              // -1: none; n >= 0: the chosen token's and the n most likely
    // Predicted Outputs: tokens the output is expected to repeat much of; speculation copies
    // from them as from the prompt (no effect with speculation off).
    std::vector<TokenId> prediction;
};

enum class Finish { None, Stop, Length, Cancelled, Error };
const char* finish_name(Finish f);  // "stop", "length", "cancelled", "error"

struct TokenLogprob {
    std::string token;  // the token's bytes (may be part of a UTF-8 character)
    float logprob = 0;
    std::vector<std::pair<std::string, float>> top;
};

// What the scheduler hands a connection, one request's worth. Thread-safe.
class Generation {
public:
    Generation(std::vector<TokenId> prompt, GenParams params);

    // Consumer side.
    struct Chunk {
        std::string text;                 // new text, stop strings held back and removed
        std::vector<TokenLogprob> logprobs;  // one per token the text came from (when asked)
    };
    // Moves out whatever arrived. Returns true once finished and drained.
    bool take(Chunk& out);
    // Called on the producer's thread after each push; must be cheap and thread-safe.
    void on_ready(std::function<void()> fn) { notify_ = std::move(fn); }
    // Asks the generation to stop. False when it had already finished (the cancel came too
    // late); otherwise it ends as cancelled, even if the engine reaches its natural end first.
    bool cancel();
    bool cancelled() const { return cancelled_.load(); }

    Finish finish() const;
    std::string error() const;
    size_t prompt_tokens() const { return prompt_.size(); }
    size_t cached_tokens() const { return cached_.load(); }
    size_t completion_tokens() const { return generated_.load(); }
    // Speculation: guessed tokens the model took and refused (OpenAI's accepted and rejected
    // prediction tokens; here every guess counts, from the prediction or the text so far).
    size_t accepted_guesses() const { return spec_accepted_.load(); }
    size_t rejected_guesses() const { return spec_rejected_.load(); }
    double ttft_s() const { return ttft_s_.load(); }
    // Wall time of the model steps this generation took part in: prompt chunks and decode steps.
    double prompt_s() const { return prompt_s_.load(); }
    double decode_s() const { return decode_s_.load(); }
    // The tokens generated, in order (no end-of-generation token), once finished: what the
    // cache holds after the prompt, so a continuation can be given the model's own tokens
    // rather than its text tokenized again.
    std::vector<TokenId> output_tokens() const;

private:
    friend class Scheduler;
    void push(std::string text, std::optional<TokenLogprob> lp);
    void end(Finish f, std::string error = {}, std::vector<TokenId> output = {});

    const std::vector<TokenId> prompt_;
    const GenParams params_;
    std::function<void()> notify_;
    std::atomic<bool> cancelled_{false};
    std::atomic<size_t> cached_{0}, generated_{0}, spec_accepted_{0}, spec_rejected_{0};
    std::atomic<double> ttft_s_{0}, prompt_s_{0}, decode_s_{0};
    std::chrono::steady_clock::time_point submitted_ = std::chrono::steady_clock::now();

    mutable std::mutex mu_;
    Chunk pending_;
    Finish finish_ = Finish::None;
    std::string error_;
    std::vector<TokenId> output_;
};

struct SchedulerOptions {
    int n_slots = 4;           // sequences running at once
    uint32_t slot_ctx = 4096;  // positions per sequence
    size_t max_queue = 256;    // waiting requests beyond this are refused
    // KV pool size in bytes. 0: room for every slot's full context at once (and a block each
    // for copy-on-write); whatever running sequences do not use keeps cached prefixes.
    size_t kv_budget = 0;
    // Speculative decoding of every sequence (engine/speculative.h): guesses from the sequence's
    // own text, checked in the same step, kept only where the model agrees.
    spec::SpecParams spec{};
};

// Counters for /metrics, read without locks.
struct SchedulerStats {
    std::atomic<uint64_t> prompt_tokens{0}, cached_tokens{0}, prefilled_tokens{0}, generated_tokens{0};
    std::atomic<uint64_t> forked_tokens{0};  // cached tokens shared from a running sequence's cache
    std::atomic<uint64_t> steps{0}, finished{0}, cancelled{0};
    std::atomic<uint64_t> aborted_steps{0};  // steps stopped between layers: all their sequences cancelled
    std::atomic<uint64_t> evicted_blocks{0};  // cached blocks freed for new ones
    std::atomic<uint64_t> out_of_kv{0};       // sequences ended (length) or delayed for want of blocks
    std::atomic<uint64_t> spec_checks{0}, spec_drafted{0}, spec_accepted{0};  // speculation: checks, guessed, taken
    std::atomic<int> active{0}, waiting{0};
    std::atomic<size_t> kv_blocks_used{0}, kv_blocks_cached{0};  // after the last step
};

class Scheduler {
public:
    Scheduler(Engine& engine, const SchedulerOptions& opt);
    ~Scheduler();  // shutdown()
    // Stops the engine thread and ends every generation, running or waiting, as cancelled.
    // Call it while whatever the generations notify (the server's event loop) still exists.
    void shutdown();

    // Queues a generation; its prompt must fit a slot with room for one token. Throws
    // celer::Error (nothing queued) when it cannot or the queue is full.
    void submit(const std::shared_ptr<Generation>& g);
    // Cancels every generation, running or waiting (shutdown).
    void cancel_all();

    const SchedulerStats& stats() const { return stats_; }
    uint32_t slot_ctx() const { return opt_.slot_ctx; }
    int n_slots() const { return opt_.n_slots; }
    size_t kv_bytes_in_use() const;
    size_t kv_bytes_total() const;
    size_t kv_block_bytes() const { return pool_->block_bytes(); }

private:
    struct Slot;
    void loop();
    bool admit();  // under mu_
    void step();
    void publish();
    void sample(Slot& s, const float* logits);
    // Takes token t (chosen from `logits`) into the output: stop strings, logprobs, limits.
    // in_cache: a guess the model agreed with, already in the cache; else t becomes the next
    // token to feed. False when the generation ended (the slot is released).
    bool take(Slot& s, TokenId t, const float* logits, bool in_cache);
    // After a step that checked the slot's guesses: the verdict, the cache cut back to what was
    // taken, the tokens emitted.
    void settle_check(Slot& s, const float* logits, uint32_t n_past_before);
    void release(Slot& s, Finish f, std::string error = {});

    Engine& engine_;
    const SchedulerOptions opt_;
    std::shared_ptr<KvPool> pool_;
    std::unique_ptr<PrefixTree> tree_;  // used by the engine thread only (and admit, under mu_)
    std::vector<std::unique_ptr<Slot>> slots_;
    SchedulerStats stats_;
    uint64_t clock_ = 0;  // for least-recently-used ties
    spec::PassCost pass_cost_;  // learned from decode-only steps, by their size in tokens
    std::atomic<bool> cancel_running_{false};

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Generation>> queue_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace celer::server
