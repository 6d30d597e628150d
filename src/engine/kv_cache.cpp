#include "engine/kv_cache.h"

#include "kernels/cpu/kernels.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#include <fmt/format.h>

#include "tensor/types.h"
#include "util/error.h"

namespace celer {

KvType parse_kv_type(std::string_view name) {
    if (name == "f32") return KvType::F32;
    if (name == "f16") return KvType::F16;
    if (name == "q8_0") return KvType::Q8_0;
    if (name == "q8_0-q4_0") return KvType::Q8_0_Q4_0;
    throw Error(fmt::format("unknown KV cache type '{}' (expected f32, f16, q8_0 or q8_0-q4_0)", name));
}

const char* kv_type_name(KvType t) {
    switch (t) {
        case KvType::F32: return "f32";
        case KvType::F16: return "f16";
        case KvType::Q8_0: return "q8_0";
        case KvType::Q8_0_Q4_0: return "q8_0-q4_0";
    }
    return "?";
}

size_t kv_row_bytes(KvType t, size_t n, bool value) {
    switch (t) {
        case KvType::F32: return 4 * n;
        case KvType::F16: return 2 * n;
        case KvType::Q8_0: return n / 32 * 34;
        case KvType::Q8_0_Q4_0: return value ? n / 32 * 18 : n / 32 * 34;
    }
    return 0;
}

KvPool::~KvPool() { munmap(base_, mapped_); }

KvPool::KvPool(const HParams& hp, KvType kv, size_t n_blocks) : hp_(hp), kv_(kv) {
    if ((kv == KvType::Q8_0 || kv == KvType::Q8_0_Q4_0) && (hp.head_dim % 32 != 0 || hp.head_dim_v % 32 != 0))
        throw Error(fmt::format("a {} KV cache needs head sizes that are multiples of 32 (this model: {} and {})", kv_type_name(kv),
                                hp.head_dim, hp.head_dim_v));
    if (n_blocks == 0 || n_blocks > size_t(INT32_MAX)) throw Error(fmt::format("a KV pool of {} blocks", n_blocks));
    k_row_ = kv_row_bytes(kv, hp.head_dim);
    v_row_ = kv_row_bytes(kv, hp.head_dim_v, true);
    layer_bytes_ = (size_t(hp.n_head_kv) * kBlockTokens * (k_row_ + v_row_) + 63) / 64 * 64;
    block_bytes_ = size_t(hp.n_layer) * layer_bytes_;
    slab_bytes_ = n_blocks * layer_bytes_;
    const size_t total = n_blocks * block_bytes_;
    if (slab_bytes_ / layer_bytes_ != n_blocks || total / block_bytes_ != n_blocks) throw Error("KV pool size overflows");
    // Anonymous memory: the OS commits pages as blocks are first written. Huge pages where the
    // kernel allows them: attention walks each block in runs of a few KiB a block apart, and with
    // 4 KiB pages nearly every run costs a TLB miss (decode at 8K depth: +2%, prefill +4%).
    const size_t huge = size_t(2) << 20, mapped = (total + huge - 1) / huge * huge;
    void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) throw Error(fmt::format("cannot reserve {} MiB for the KV cache", total >> 20));
    madvise(mem, mapped, MADV_HUGEPAGE);
    base_ = static_cast<uint8_t*>(mem);
    mapped_ = mapped;
    refs_.assign(n_blocks, 0);
    free_.resize(n_blocks);
    for (size_t i = 0; i < n_blocks; ++i) free_[i] = int32_t(n_blocks - 1 - i);  // block 0 on top
}

int32_t KvPool::alloc() {
    if (free_.empty() && reclaim_) reclaim_(1);
    if (free_.empty()) return -1;
    const int32_t b = free_.back();
    free_.pop_back();
    refs_[size_t(b)] = 1;
    return b;
}

void KvPool::retain(int32_t b) { ++refs_[size_t(b)]; }

void KvPool::release(int32_t b) {
    if (--refs_[size_t(b)] == 0) free_.push_back(b);
}

void KvPool::copy(int32_t src, int32_t dst, uint32_t n) {
    const uint8_t* s = data(src);
    uint8_t* d = data(dst);
    for (uint32_t il = 0; il < hp_.n_layer; ++il)
        for (uint32_t h = 0; h < hp_.n_head_kv; ++h) {
            if (kv_ == KvType::F16) {  // by dimension: the first n of each column
                for (uint32_t e = 0; e < hp_.head_dim; ++e) {
                    const size_t at = k_offset(il, h) + kernels::kcol_f16(e, 0, kBlockTokens);
                    std::memcpy(d + at, s + at, n * 2);
                }
            } else if (k_q8()) {  // groups of 4 dimensions, then the scales
                for (uint32_t e = 0; e < hp_.head_dim; e += 4) {
                    const size_t at = k_offset(il, h) + kernels::kcol_q8(e, 0, kBlockTokens);
                    std::memcpy(d + at, s + at, n * 4);
                }
                for (uint32_t b = 0; b < hp_.head_dim / 32; ++b) {
                    const size_t at = k_offset(il, h) + kernels::kcol_q8_scale(b, 0, hp_.head_dim, kBlockTokens);
                    std::memcpy(d + at, s + at, n * 2);
                }
            } else {
                std::memcpy(d + k_offset(il, h), s + k_offset(il, h), n * k_row_);
            }
            if (v_quads()) {  // whole quads of rows, the bytes of a last partial quad, the scales
                const size_t hv = hp_.head_dim_v, v = v_offset(il, h);
                std::memcpy(d + v, s + v, n / 4 * hv * 4);
                for (size_t e = 0; e < hv && n % 4; ++e) {
                    const size_t at = v + kernels::vquad_q8(e, n / 4 * 4, hv);
                    std::memcpy(d + at, s + at, n % 4);
                }
                for (size_t b = 0; b < hv / 32; ++b) {
                    const size_t at = v + kernels::vquad_q8_scale(b, 0, hv, kBlockTokens);
                    std::memcpy(d + at, s + at, n * 2);
                }
            } else if (v_q4()) {
                // Every octet of rows that holds one of the first n (a partial octet's other
                // nibbles are rows a later write replaces), then the scales.
                const size_t hv = hp_.head_dim_v, v = v_offset(il, h);
                std::memcpy(d + v, s + v, (n + 7) / 8 * hv * 4);
                for (size_t b = 0; b < hv / 32; ++b) {
                    const size_t at = v + kernels::voct_q4_scale(b, 0, hv, kBlockTokens);
                    std::memcpy(d + at, s + at, n * 2);
                }
            } else {
                std::memcpy(d + v_offset(il, h), s + v_offset(il, h), n * v_row_);
            }
        }
}

KvCache::KvCache(std::shared_ptr<KvPool> pool, uint32_t n_ctx) : pool_(std::move(pool)), n_ctx_(n_ctx) {}

KvCache::KvCache(const HParams& hp, uint32_t n_ctx, KvType kv)
    : pool_(std::make_shared<KvPool>(hp, kv, std::max<size_t>(1, KvPool::blocks_for(n_ctx)))), n_ctx_(n_ctx) {}

KvCache::KvCache(KvCache&& o) noexcept : pool_(o.pool_), blocks_(std::move(o.blocks_)), n_past_(o.n_past_), n_ctx_(o.n_ctx_) {
    o.blocks_.clear();
    o.n_past_ = 0;
}

KvCache& KvCache::operator=(KvCache&& o) noexcept {
    if (this != &o) {
        truncate(0);
        pool_ = o.pool_;
        blocks_ = std::move(o.blocks_);
        n_past_ = o.n_past_;
        n_ctx_ = o.n_ctx_;
        o.blocks_.clear();
        o.n_past_ = 0;
    }
    return *this;
}

KvCache::~KvCache() {
    if (pool_)
        for (int32_t b : blocks_) pool_->release(b);
}

void KvCache::truncate(uint32_t n) {
    n_past_ = std::min(n, n_past_);
    const size_t keep = KvPool::blocks_for(n_past_);
    for (size_t i = keep; i < blocks_.size(); ++i) pool_->release(blocks_[i]);
    blocks_.resize(std::min(keep, blocks_.size()));
}

void KvCache::fork(const KvCache& src, uint32_t n) {
    if (&src == this) throw Error("fork: a cache onto itself");
    if (src.pool_ != pool_) throw Error("fork: caches of different pools");
    if (n > src.n_past_ || n > n_ctx_) throw Error(fmt::format("fork: {} positions from a cache of {} into one of {}", n, src.n_past_, n_ctx_));
    assign(std::span(src.blocks_).first(KvPool::blocks_for(n)), n);
}

void KvCache::assign(std::span<const int32_t> blocks, uint32_t n) {
    if (KvPool::blocks_for(n) > blocks.size() || n > n_ctx_) throw Error(fmt::format("assign: {} positions in {} blocks", n, blocks.size()));
    // Retain first: `blocks` may be this cache's own.
    for (int32_t b : blocks) pool_->retain(b);
    for (int32_t b : blocks_) pool_->release(b);
    blocks_.assign(blocks.begin(), blocks.end());
    n_past_ = n;
    truncate(n);
}

bool KvCache::reserve(uint32_t n) {
    if (size_t(n_past_) + n > n_ctx_) return false;
    const uint32_t B = KvPool::kBlockTokens;
    const size_t first = n_past_ / B, need = KvPool::blocks_for(size_t(n_past_) + n);
    // Count what is missing before touching anything: new blocks past the table, and a copy of
    // every block from the one holding n_past on that someone else holds too.
    std::vector<int32_t> fresh;
    const auto take = [&]() {
        const int32_t b = pool_->alloc();
        if (b >= 0) fresh.push_back(b);
        return b >= 0;
    };
    size_t wanted = 0;
    for (size_t i = first; i < need; ++i)
        if (i >= blocks_.size() || pool_->refs(blocks_[i]) > 1) ++wanted;
    for (size_t i = 0; i < wanted; ++i)
        if (!take()) {
            for (int32_t b : fresh) pool_->release(b);
            return false;
        }
    size_t next = 0;
    for (size_t i = first; i < need; ++i) {
        if (i < blocks_.size() && pool_->refs(blocks_[i]) == 1) continue;
        const int32_t b = fresh[next++];
        if (i < blocks_.size()) {
            // Shared: the positions this sequence already has in it move to its own copy.
            if (i == first && n_past_ % B) pool_->copy(blocks_[i], b, n_past_ % B);
            pool_->release(blocks_[i]);
            blocks_[i] = b;
        } else {
            blocks_.push_back(b);
        }
    }
    return true;
}

}  // namespace celer
