// The engine's own forward pass on the CPU: token batches (prefill) and single tokens (decode)
// over a KV cache, every op data-parallel over the thread pool, matrix products through the
// kernel table. Its logits are tested against ReferenceForward.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "model/model.h"
#include "tensor/blocks.h"

namespace celer {

// One sequence's share of a batched step: its cache, the tokens it appends there, and whether
// the last token's logits are wanted (a prompt chunk that is not the last needs none).
struct SeqTokens {
    KvCache* cache;
    std::span<const TokenId> tokens;
    bool logits = true;
    // A speculative check: when set, the logits of every token land here (tokens.size() rows of
    // n_vocab) instead of the last one's in eval_batch's output, and each token is computed
    // exactly as decoding it alone would (at most kExactTokens tokens).
    float* check_logits = nullptr;
};

// Thrown by eval_batch when its abort check said stop.
struct StepAborted : std::exception {
    const char* what() const noexcept override { return "step aborted"; }
};

class CpuForward {
public:
    // Owns one KV cache of n_ctx positions (the single-sequence API below); more sequences bring
    // their own KvCache (of a pool of their own or shared) to eval_batch.
    // f16_as_bf16: F16 weights take the bf16 pairs path too, rounded to bf16 (where the target
    // has one; BF16 weights always do).
    CpuForward(const Model& m, ThreadPool& pool, const kernels::CpuKernels& k, uint32_t n_ctx, KvType kv = KvType::F32,
               bool f16_as_bf16 = false);

    KvType kv_type() const { return cache_.type(); }
    // Bytes of KV cache per token of context, all layers.
    size_t kv_bytes_per_token() const { return cache_.bytes_per_token(); }
    // A cache with its own pool, of this forward pass's element type.
    KvCache make_cache(uint32_t n_ctx) const { return KvCache(m_.hp, n_ctx, cache_.type()); }
    // A pool of n_blocks blocks for caches that share prefixes.
    std::shared_ptr<KvPool> make_pool(size_t n_blocks) const { return std::make_shared<KvPool>(m_.hp, cache_.type(), n_blocks); }

    // Runs `tokens` at positions n_past() onwards and appends them to the cache. Writes the
    // logits of every token (all_logits) or of the last one into `logits`, n_vocab each.
    // Throws celer::Error if the context would overflow.
    void eval(std::span<const TokenId> tokens, bool all_logits, std::vector<float>& logits);
    // A speculative check: `tokens` (at most kExactTokens) computed each exactly as decoding it
    // alone would give, bit for bit, the logits of every one into `logits`.
    void eval_check(std::span<const TokenId> tokens, std::vector<float>& logits);

    // One step over several sequences at once (continuous batching): every weight is read once
    // for all their tokens. Each entry's tokens go to its own cache at its own positions; the
    // logits of each entry's last token land in `logits` at the entry's index, n_vocab each (left
    // untouched for entries that want none). At most
    // kMaxBatch tokens in all, each cache at most once; throws celer::Error (changing nothing
    // but blocks reserved ahead) otherwise, if a context would overflow or its pool has no room.
    // `abort`, when given, is asked before every layer; once it says yes the step stops and
    // throws StepAborted, the caches keeping their positions as before the step (a server
    // whose every sequence in the step was cancelled answers within a layer, not a step).
    void eval_batch(std::span<const SeqTokens> seqs, std::vector<float>& logits, const std::function<bool()>& abort = {});

    uint32_t n_past() const { return cache_.n_past(); }
    uint32_t n_ctx() const { return cache_.n_ctx(); }
    void reset() { cache_.reset(); }
    // Forgets every position from n on (n <= n_past()).
    void truncate(uint32_t n) { cache_.truncate(n); }

    // Weights repacked for the int8 path (0 where the kernel target has none).
    size_t int8_weights() const { return packed_.size(); }

    static constexpr uint32_t kMaxBatch = 256;
    // Speculative checks compute each token's attention as decoding it alone would (prefill
    // shares tiles of keys among tokens instead); at most this many tokens.
    static constexpr size_t kExactTokens = 64;
    // Decode attention splits keys into ranges of this fixed grid (flash-decoding).
    static constexpr size_t kSplitKeys = 1024;

private:
    // A token span of one sequence inside the current step.
    struct Span {
        KvCache* cache;
        std::vector<const uint8_t*> pages;  // the cache's block addresses, for attention
        size_t first, n;  // rows of the step's activations
        bool all_logits;
        float* logits;    // all_logits: n rows; else the last token's row; nullptr: none
        bool as_decode = false;  // each token computed as decoding it alone would (n <= kExactTokens)
    };
    void check_tokens(std::span<const TokenId> tokens) const;
    void check_cache(const KvCache& c) const;
    void eval_step(std::span<const TokenId> tokens, std::span<Span> spans, const std::function<bool()>& abort = {});
    void store_kv(uint32_t il, const Span& s);
    struct Product {
        const Weight* w;
        float* y;
    };
    void matmul(const Weight& w, const float* x, size_t n_tok, float* y);
    void matmuls(std::initializer_list<Product> products, const float* x, size_t n_tok);
    template <typename Fn>
    void split_runs(size_t units, uint32_t cap, const Fn& fn);
    template <typename Gemm>
    void split_products(std::initializer_list<Product> products, const Gemm& gemm, uint32_t cap);
    void matmul_float(const Weight& w, const float* x, size_t n_tok, float* y);
    void attention(uint32_t il, const Span& s);
    void pack_weights();
    void rope_token(size_t t, float* cs);
    template <typename Fn>
    void for_rows(size_t n, const Fn& fn);

    const Model& m_;
    ThreadPool& pool_;
    const kernels::CpuKernels& k_;
    bool f16_as_bf16_;
    KvCache cache_;
    std::vector<int> pos_;             // (kMaxBatch) position of each row of the current step
    std::vector<float> logits_rows_;   // batched steps: (sequences, n_vocab)
    std::vector<float> x_, xn_, q_, kv_k_, kv_v_, attn_, gate_, up_, out_;  // (kMaxBatch, width)
    std::vector<float> scratch_;                                           // per thread: widest row
    std::vector<float> rope_cs_;                                           // per thread: n_rot (cos, sin)
    // Prefill attention: tokens per task, sharing each read of a tile of keys and values.
    static constexpr size_t kAttnTokens = 8;
    // Split attention's unnormalised outputs, maxima and sums per (range, kv head, token, query
    // head), merged after the ranges finish; grown to the longest context seen.
    std::vector<float> part_out_, part_max_, part_sum_;
    std::vector<uint16_t> half_row_;  // a key in fp16, scattered into a block's columns
    std::vector<BlockQ8_0> key_q8_;   // a key or value in Q8_0, likewise
    std::vector<BlockQ4_0> val_q4_;   // a value in Q4_0, likewise

    // Weights repacked for the int8 path (kernels/cpu/int8.h), by the address of their data, when
    // the kernel target has one; their activations quantised here (kMaxBatch, widest).
    struct Packed {
        uint8_t* bytes;           // in packed_arena_
        bool bf16_pairs = false;  // by bf16 column pairs, for CpuKernels::gemm_bf16
    };
    std::unordered_map<const uint8_t*, Packed> packed_;
    // All packed weights in one mapping, on huge pages where the kernel allows them.
    struct Arena {
        void* base = nullptr;
        size_t bytes = 0;
        Arena() = default;
        Arena(const Arena&) = delete;
        Arena& operator=(const Arena&) = delete;
        ~Arena();
    };
    Arena packed_arena_;
    std::vector<int8_t> act_q_;
    std::vector<float> act_d_, act_ds_, act_ds2_;
    std::vector<uint16_t> act_bf_;  // bf16 pairs: the activations rounded to bf16
    // Products: each thread's run of pairs of groups, [front, back) packed in 32 bits
    // each, on a cache line of its own (see split_runs).
    struct alignas(64) Run {
        std::atomic<uint64_t> span{0};
    };
    std::unique_ptr<Run[]> runs_;
    std::vector<size_t> unit_start_;  // first pair of each product in the runs' numbering
};

}  // namespace celer
