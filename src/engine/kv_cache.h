// The KV cache, paged: a pool of fixed-size blocks, and per sequence a block table. Sequences that
// share a prefix share its blocks by reference (the prefix tree, forks), so a prefix computed once
// is never computed or copied again; a block is copied only when a sequence must write into one
// that someone else also holds (copy-on-write).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "model/model.h"

namespace celer {

// What the cache stores per key and value element. F16 halves F32's memory and the bytes decode
// reads per token of context (rounding 2^-11 relative); Q8_0 (blocks of 32 int8 with an fp16
// scale, 8.5 bits per element) halves it again, at a rounding of 1/254 of each block's largest
// magnitude. Q8_0_Q4_0 keeps the keys in Q8_0 and the values in Q4_0 (blocks of 32 4-bit
// values with an fp16 scale, 4.5 bits per element; rounding at most 1/15 of a block's largest
// magnitude): 7.3 bits per element instead of 8.5, so a token at depth reads 24% fewer cache
// bytes. Keys stay 8-bit because a key's error moves every score and exp() magnifies it; a
// value's error is averaged over the keys a row weighs. Both need head sizes that are multiples
// of 32.
enum class KvType { F32, F16, Q8_0, Q8_0_Q4_0 };
// "f32" | "f16" | "q8_0" | "q8_0-q4_0" (keys-values); throws celer::Error otherwise
KvType parse_kv_type(std::string_view name);
const char* kv_type_name(KvType t);
size_t kv_row_bytes(KvType t, size_t n, bool value = false);  // one key (or value) row of n elements

// Blocks of kBlockTokens positions, each holding every layer's keys and values for them:
// per layer, (n_head_kv, kBlockTokens) key rows, then (n_head_kv, kBlockTokens) value rows, so
// each head's keys in a block are one contiguous run that attention streams. The memory is
// layer-major: layer l of every block lies in layer l's slab, block after block, so a sequence
// whose blocks were taken in order reads one layer's keys and values as one long run instead of
// runs a whole block (every layer: 0.75 MiB on the 0.5b shape) apart. Reference counted:
// a block is free at zero, and its contents must not change while more than one holder has it.
// Memory is reserved for every block up front but the OS commits it as blocks are first used.
// Not thread-safe: one engine thread owns it.
class KvPool {
public:
    // 64 positions: one attention tile (kernels::kAttnTile), so a tile never straddles blocks;
    // small enough that a partly shared block costs little to copy (0.75 MiB on the 0.5b shape
    // at F16, ~50 us).
    static constexpr uint32_t kBlockTokens = 64;

    KvPool(const HParams& hp, KvType kv, size_t n_blocks);
    ~KvPool();
    KvPool(const KvPool&) = delete;
    KvPool& operator=(const KvPool&) = delete;

    KvType type() const { return kv_; }
    const HParams& hparams() const { return hp_; }
    size_t n_blocks() const { return refs_.size(); }
    size_t n_free() const { return free_.size(); }
    size_t n_used() const { return n_blocks() - n_free(); }
    size_t block_bytes() const { return block_bytes_; }
    size_t bytes_per_token() const { return block_bytes_ / kBlockTokens; }
    static size_t blocks_for(size_t n_tokens) { return (n_tokens + kBlockTokens - 1) / kBlockTokens; }

    // A free block holding one reference, or -1 when none is left even after asking the
    // reclaimer (set_reclaimer) to free some.
    int32_t alloc();
    void retain(int32_t b);
    void release(int32_t b);
    uint32_t refs(int32_t b) const { return refs_[size_t(b)]; }
    // Called by alloc() when no block is free, with how many it wants; frees what it can (the
    // prefix tree evicts cached blocks nobody else holds).
    void set_reclaimer(std::function<void(size_t)> fn) { reclaim_ = std::move(fn); }
    // Copies positions [0, n) of every layer and head from block src into block dst.
    void copy(int32_t src, int32_t dst, uint32_t n);

    // A block's place in every layer's slab: add k_offset / v_offset for a layer and head.
    uint8_t* data(int32_t b) { return base_ + size_t(b) * layer_bytes_; }
    const uint8_t* data(int32_t b) const { return base_ + size_t(b) * layer_bytes_; }
    // Byte offsets in a block of layer il's first key or value row of KV head h; rows follow
    // each other k_row_bytes() / v_row_bytes() apart. In fp16 and Q8_0 pools the keys are
    // stored by dimension instead (k_cols(); the layouts are kernels::kcol_*), so that attention
    // reads one dimension of 16 keys with one load and needs no transposition.
    size_t k_offset(uint32_t il, uint32_t h) const { return il * slab_bytes_ + h * size_t(kBlockTokens) * k_row_; }
    size_t v_offset(uint32_t il, uint32_t h) const {
        return il * slab_bytes_ + (size_t(hp_.n_head_kv) * k_row_ + h * size_t(v_row_)) * kBlockTokens;
    }
    size_t k_row_bytes() const { return k_row_; }
    bool k_cols() const { return kv_ != KvType::F32; }
    // Keys in Q8_0, by dimension (kernels::kcol_q8*).
    bool k_q8() const { return kv_ == KvType::Q8_0 || kv_ == KvType::Q8_0_Q4_0; }
    // Q8_0 pools store the values by quads of keys (kernels::vquad_q8*), Q8_0_Q4_0 pools by
    // octets of keys in 4 bits (kernels::voct_q4*), for integer products of probabilities and
    // values.
    bool v_quads() const { return kv_ == KvType::Q8_0; }
    bool v_q4() const { return kv_ == KvType::Q8_0_Q4_0; }
    size_t v_row_bytes() const { return v_row_; }

private:
    HParams hp_;
    KvType kv_;
    size_t k_row_, v_row_, layer_bytes_, block_bytes_;
    size_t slab_bytes_;  // one layer's part of every block: n_blocks * layer_bytes_
    uint8_t* base_ = nullptr;  // mapped_ bytes
    size_t mapped_ = 0;
    std::vector<uint32_t> refs_;
    std::vector<int32_t> free_;  // a stack: the most recently freed block (warm in cache) first
    std::function<void(size_t)> reclaim_;
};

// One sequence's cache: a table of blocks from a pool, covering positions [0, n_past) and at
// most n_ctx positions. Move-only; returns its blocks to the pool when destroyed.
class KvCache {
public:
    KvCache(std::shared_ptr<KvPool> pool, uint32_t n_ctx);
    // A cache with a pool of its own, just large enough for n_ctx positions.
    KvCache(const HParams& hp, uint32_t n_ctx, KvType kv);
    KvCache(KvCache&& o) noexcept;
    KvCache& operator=(KvCache&& o) noexcept;
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;
    ~KvCache();

    KvType type() const { return pool_->type(); }
    KvPool& pool() const { return *pool_; }
    uint32_t n_past() const { return n_past_; }
    uint32_t n_ctx() const { return n_ctx_; }
    size_t bytes_per_token() const { return pool_->bytes_per_token(); }
    uint32_t n_layers() const { return pool_->hparams().n_layer; }
    // Blocks in position order; the first blocks_for(n_past()) hold the sequence.
    std::span<const int32_t> blocks() const { return blocks_; }

    void reset() { truncate(0); }
    // Forgets every position from n on (n <= n_past()), returning the blocks wholly beyond it.
    void truncate(uint32_t n);
    // Becomes the first n positions of `src` (n at most src.n_past() and n_ctx()): its blocks
    // are shared by reference, nothing is copied until one side writes into a shared block.
    // Both caches must use the same pool. Throws celer::Error (changing nothing) otherwise.
    void fork(const KvCache& src, uint32_t n);
    // Becomes `blocks` (which the caller holds; they are retained here) as its first n positions.
    void assign(std::span<const int32_t> blocks, uint32_t n);
    // Makes positions [n_past, n_past + n) writable: allocates blocks and gives this cache its own
    // copy of a block it shares. False, changing nothing that holds data, when the pool is out of
    // blocks or n_ctx would be exceeded.
    bool reserve(uint32_t n);

private:
    friend class CpuForward;
    std::shared_ptr<KvPool> pool_;
    std::vector<int32_t> blocks_;
    uint32_t n_past_ = 0;
    uint32_t n_ctx_;
};

}  // namespace celer
