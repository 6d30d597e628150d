#include "engine/forward.h"

#include <algorithm>
#include <cmath>

#include <sys/mman.h>

#include <fmt/format.h>

#include "model/reference.h"
#include "tensor/types.h"
#include "tensor/dequant.h"
#include "util/error.h"

namespace celer {
namespace {

void rms_norm(const float* x, const float* w, float* out, size_t n, float eps) {
    float ss = 0;
    for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const float scale = 1.0f / std::sqrt(ss / float(n) + eps);
    for (size_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

}  // namespace

CpuForward::CpuForward(const Model& m, ThreadPool& pool, const kernels::CpuKernels& k, uint32_t n_ctx, KvType kv, bool f16_as_bf16)
    : m_(m), pool_(pool), k_(k), f16_as_bf16_(f16_as_bf16), cache_(m.hp, n_ctx, kv) {
    const HParams& hp = m.hp;
    const size_t B = kMaxBatch;
    pos_.resize(B);
    x_.resize(B * hp.n_embd);
    xn_.resize(B * hp.n_embd);
    q_.resize(B * hp.q_dim());
    kv_k_.resize(B * hp.kv_dim());
    kv_v_.resize(B * hp.v_dim());
    attn_.resize(B * hp.n_head * hp.head_dim_v);
    gate_.resize(B * hp.n_ff);
    up_.resize(B * hp.n_ff);
    out_.resize(B * hp.n_embd);
    const size_t widest = std::max<size_t>({hp.n_embd, hp.n_ff, size_t(hp.n_head) * hp.head_dim_v});
    const size_t group = hp.n_head / hp.n_head_kv;
    scratch_.resize(size_t(pool.size()) *
                    std::max(widest * kernels::kScratchRows, kernels::attn_scratch_floats(std::max(kAttnTokens, kExactTokens) * group, hp.head_dim, hp.head_dim_v)));
    runs_ = std::make_unique<Run[]>(size_t(pool.size()));
    rope_cs_.resize(size_t(pool.size()) * hp.n_rot);
    if (k_.gemm_int8) pack_weights();
}

CpuForward::Arena::~Arena() {
    if (base) munmap(base, bytes);
}

void CpuForward::pack_weights() {
    std::vector<const Weight*> ws;
    for (const LayerWeights& L : m_.layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) ws.push_back(w);
    ws.push_back(&m_.output);
    // Offsets first (each weight on its own 4 KiB pages), then one mapping for all.
    std::vector<std::pair<const Weight*, size_t>> place;
    size_t total = 0, widest_int8 = 0, widest_pairs = 0;  // the activation buffers each kind needs
    for (const Weight* w : ws) {
        if (!kernels::int8_packable(w->type, w->rows, w->cols) || packed_.count(w->data)) continue;
        const bool pairs = k_.gemm_bf16 && (w->type == TensorType::BF16 || (w->type == TensorType::F16 && f16_as_bf16_));
        packed_[w->data] = {nullptr, pairs};
        place.push_back({w, total});
        total += (kernels::packed_bytes(w->type, w->rows, w->cols) + 4095) / 4096 * 4096;
        if (pairs) widest_pairs = std::max<size_t>(widest_pairs, w->cols);
        else if (!kernels::is_packed_float(w->type)) widest_int8 = std::max<size_t>(widest_int8, w->cols);
    }
    if (total > 0) {
        // Decode streams every byte of these once per token: on 4 KiB pages that is a TLB miss
        // every 4 KiB (0.5b Q8_0 decode on 2 MiB pages: 52.4 -> 55.4 tok/s, medians of three
        // alternating runs).
        const size_t huge = size_t(2) << 20, mapped = (total + huge - 1) / huge * huge + huge;
        void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) throw Error(fmt::format("cannot allocate {} MiB for the packed weights", total >> 20));
        packed_arena_.base = mem, packed_arena_.bytes = mapped;
        uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(mem) + huge - 1) / huge * huge);
        madvise(base, mapped - huge, MADV_HUGEPAGE);
        for (const auto& [w, off] : place) packed_[w->data].bytes = base + off;
    }
    for (const auto& pl : place) {
        const Weight* w = pl.first;  // not a structured binding: clang 14 cannot capture one in the lambda
        const Packed& pk = packed_[w->data];
        const auto pack = pk.bf16_pairs ? &kernels::pack_bf16_pairs : &kernels::pack_groups;
        const size_t groups = w->rows / kernels::kGroupRows;
        const int n_tasks = int(std::min<size_t>(groups, size_t(pool_.size()) * 4));
        pool_.run(n_tasks, [&](int task, int) {
            pack(w->type, w->data, w->row_bytes, w->rows, w->cols, groups * size_t(task) / size_t(n_tasks), groups * size_t(task + 1) / size_t(n_tasks),
                 pk.bytes);
        });
    }
    act_q_.resize(kMaxBatch * widest_int8);
    act_d_.resize(kMaxBatch * widest_int8 / kernels::kActBlock);
    act_ds_.resize(act_d_.size());
    act_ds2_.resize(2 * act_d_.size());
    act_bf_.resize(kMaxBatch * widest_pairs);
}

void CpuForward::matmul(const Weight& w, const float* x, size_t n_tok, float* y) { matmuls({{&w, y}}, x, n_tok); }

// Products that share their input: on the int8 path the activations are quantised once and
// every weight's row groups go to the pool as one set of tasks (one dispatch, not one each).
void CpuForward::matmuls(std::initializer_list<Product> products, const float* x, size_t n_tok) {
    // What each weight takes: 0 the float kernels, 1 the int8 path, 2 packed floats, 3 bf16
    // column pairs. Products of different kinds go one by one.
    const auto kind = [&](const Product& p) {
        const auto it = packed_.find(p.w->data);
        return it == packed_.end() ? 0 : it->second.bf16_pairs ? 3 : kernels::is_packed_float(p.w->type) ? 2 : 1;
    };
    const int k0 = kind(*products.begin());
    for (const Product& p : products) {
        if (kind(p) != k0) {
            for (const Product& q : products) matmuls({q}, x, n_tok);
            return;
        }
    }
    if (k0 == 0) {
        for (const Product& p : products) matmul_float(*p.w, x, n_tok, p.y);
        return;
    }
    const size_t cols = products.begin()->w->cols, nb = cols / kernels::kActBlock;
    const auto quantize = [&](size_t t) {
        k_.quantize_acts(x + t * cols, cols, act_q_.data() + t * cols, act_d_.data() + t * nb, act_ds_.data() + t * nb,
                         act_ds2_.data() + 2 * t * nb);
    };
    if (k0 == 2) {
        // F16 / BF16 by columns multiply the float activations as they are.
    } else if (k0 == 3) {
        const size_t blocks = (n_tok + kernels::kBf16Tokens - 1) / kernels::kBf16Tokens;
        const auto convert = [&](size_t b) {
            const size_t t0 = b * kernels::kBf16Tokens;
            k_.to_bf16(x + t0 * cols, std::min(kernels::kBf16Tokens, n_tok - t0), cols, act_bf_.data() + t0 * cols);
        };
        if (blocks == 1) convert(0);
        else pool_.run(int(blocks), [&](int b, int) { convert(size_t(b)); });
    } else if (n_tok == 1) {
        quantize(0);
    } else {
        pool_.run(int(n_tok), [&](int t, int) { quantize(size_t(t)); });
    }
    const auto gemm = [&](const Product& p, size_t g0, size_t g1) {
        const Weight& w = *p.w;
        kernels::GemmArgs a{};
        a.type = w.type;
        a.w = packed_.find(w.data)->second.bytes;
        a.cols = cols;
        a.x = {act_q_.data(), act_d_.data(), act_ds_.data(), act_ds2_.data(), cols};
        a.xf = x;
        a.xb = act_bf_.data();
        a.tok0 = 0;
        a.tok1 = n_tok;
        a.y = p.y;
        a.ldy = w.rows;
        a.g0 = g0;
        a.g1 = g1;
        a.n_groups = w.rows / kernels::kGroupRows;
        (k0 == 3 ? k_.gemm_bf16 : k_.gemm_int8)(a);
    };
    // Prefill takes pieces of at most about 256 KiB of weights, which stay in L2 while every
    // 64-token chunk of the activations passes over them.
    const size_t unit_bytes = 2 * kernels::kGroupRows * products.begin()->w->row_bytes;
    const uint32_t cap = n_tok == 1 ? UINT32_MAX : uint32_t(std::max<size_t>(1, (size_t(256) << 10) / unit_bytes));
    if (pool_.size() == 1) {
        for (const Product& p : products) {
            const size_t groups = p.w->rows / kernels::kGroupRows;
            for (size_t g = 0; g < groups; g += 2 * size_t(cap)) gemm(p, g, std::min(groups, g + 2 * size_t(cap)));
        }
        return;
    }
    split_products(products, gemm, cap);
}

namespace {
// Takes about half of what is left of a run [front, back), at most `cap`: from its front for the
// thread that owns it, from its back for a thread that has finished its own. False when nothing
// is left.
bool take_units(std::atomic<uint64_t>& span, bool front, uint32_t cap, uint32_t& u0, uint32_t& u1) {
    uint64_t v = span.load(std::memory_order_relaxed);
    for (;;) {
        const uint32_t f = uint32_t(v), b = uint32_t(v >> 32);
        if (f >= b) return false;
        const uint32_t n = std::clamp<uint32_t>((b - f) / 2, 1, cap);
        u0 = front ? f : b - n;
        u1 = front ? f + n : b;
        const uint64_t next = front ? (uint64_t(b) << 32 | (f + n)) : (uint64_t(b - n) << 32 | f);
        if (span.compare_exchange_weak(v, next, std::memory_order_relaxed)) return true;
    }
}
}  // namespace

// Each thread owns one contiguous run of the units (in the products, pairs of row groups: the unit
// of the one-token kernels and of the prefill tiles), so that it streams its weights in one
// sequential pass (0.5b Q8_0 decoded 48.4 tok/s so, against 47.6 with 2 ranges per thread and
// 46.1 with 8), and takes pieces of it from the front, at most `cap` units at a time; a thread
// that has finished its own run takes pieces from the back of the run with the most left.
// Threads that run at different speeds (a shared machine's other tenants, two cores at different
// distances from memory) then finish together: with fixed halves each waited for the other 6-7%
// of a 0.5b decode step. Calls fn(u0, u1, thread) for each piece.
template <typename Fn>
void CpuForward::split_runs(size_t units, uint32_t cap, const Fn& fn) {
    const size_t n_runs = size_t(pool_.size());
    for (size_t r = 0; r < n_runs; ++r)
        runs_[r].span.store(uint64_t(units * (r + 1) / n_runs) << 32 | (units * r / n_runs), std::memory_order_relaxed);
    pool_.run(int(n_runs), [&](int own, int thread) {
        uint32_t u0, u1;
        while (take_units(runs_[size_t(own)].span, true, cap, u0, u1)) fn(u0, u1, thread);
        for (;;) {
            size_t most = 0, from = n_runs;
            for (size_t r = 0; r < n_runs; ++r) {
                const uint64_t v = runs_[r].span.load(std::memory_order_relaxed);
                const size_t left = size_t(uint32_t(v >> 32)) - std::min(uint32_t(v >> 32), uint32_t(v));
                if (left > most) most = left, from = r;
            }
            if (from == n_runs) break;
            if (take_units(runs_[from].span, false, cap, u0, u1)) fn(u0, u1, thread);
        }
    });
}

// The products' pairs of row groups numbered one after the other, split by split_runs. Which
// thread computes a row changes nothing in it.
template <typename Gemm>
void CpuForward::split_products(std::initializer_list<Product> products, const Gemm& gemm, uint32_t cap) {
    unit_start_.assign(1, 0);
    for (const Product& p : products) unit_start_.push_back(unit_start_.back() + (p.w->rows / kernels::kGroupRows + 1) / 2);
    split_runs(unit_start_.back(), cap, [&](uint32_t u0, uint32_t u1, int) {
        for (size_t i = 0; i < products.size(); ++i) {
            const Product& p = products.begin()[i];
            const size_t s = unit_start_[i], e = unit_start_[i + 1];
            if (u1 <= s || u0 >= e) continue;
            gemm(p, 2 * (std::max<size_t>(u0, s) - s), std::min(2 * (std::min<size_t>(u1, e) - s), p.w->rows / kernels::kGroupRows));
        }
    });
}

void CpuForward::matmul_float(const Weight& w, const float* x, size_t n_tok, float* y) {
    const size_t rows = w.rows;
    const size_t per_thread = scratch_.size() / size_t(pool_.size());
    const auto fn = k_.matmul[type_index(w.type)];
    const auto product = [&](size_t row0, size_t row1, int thread) {
        kernels::MatmulArgs a{};
        a.w = w.data;
        a.row_bytes = w.row_bytes;
        a.cols = w.cols;
        a.x = x;
        a.ldx = w.cols;
        a.n_tok = n_tok;
        a.y = y;
        a.ldy = rows;
        a.row0 = row0;
        a.row1 = row1;
        a.scratch = scratch_.data() + size_t(thread) * per_thread;
        fn(a);
    };
    if (n_tok == 1 && pool_.size() > 1) {
        // Decode: runs of 16-row units, one per thread, as the packed products (AVX2, 0.5b Q8_0,
        // three alternating rounds: see docs/PERFORMANCE.md, stop 28).
        split_runs((rows + 15) / 16, UINT32_MAX, [&](uint32_t u0, uint32_t u1, int thread) { product(16 * size_t(u0), std::min(rows, 16 * size_t(u1)), thread); });
        return;
    }
    // Prefill: enough tasks to balance threads that run at different speeds, each still a few rows.
    const size_t n_tasks = std::min<size_t>(std::max<size_t>(rows / 16, 1), size_t(pool_.size()) * 8);
    pool_.run(int(n_tasks), [&](int task, int thread) { product(rows * size_t(task) / n_tasks, rows * size_t(task + 1) / n_tasks, thread); });
}

// RoPE on row t of the queries and of the keys, with one evaluation of the position's angles
// (cs: n_rot floats of scratch).
void CpuForward::rope_token(size_t t, float* cs) {
    const HParams& hp = m_.hp;
    const uint32_t half = hp.n_rot / 2;
    float *cos_ = cs, *sin_ = cs + half;
    for (uint32_t i = 0; i < half; ++i) {
        const double theta = rope_theta(hp, m_.rope_freq_factors, pos_[t], i);
        cos_[i] = float(std::cos(theta) * hp.rope_attn_factor);
        sin_[i] = float(std::sin(theta) * hp.rope_attn_factor);
    }
    const auto rotate = [&](float* row, uint32_t n_heads) {
        for (uint32_t h = 0; h < n_heads; ++h) {
            float* head = row + size_t(h) * hp.head_dim;
            for (uint32_t i = 0; i < half; ++i) {
                const uint32_t a = hp.rope_layout == RopeLayout::Normal ? 2 * i : i;
                const uint32_t b = hp.rope_layout == RopeLayout::Normal ? 2 * i + 1 : i + half;
                const float x0 = head[a], x1 = head[b];
                head[a] = x0 * cos_[i] - x1 * sin_[i];
                head[b] = x0 * sin_[i] + x1 * cos_[i];
            }
        }
    };
    rotate(q_.data() + t * hp.q_dim(), hp.n_head);
    rotate(kv_k_.data() + t * hp.kv_dim(), hp.n_head_kv);
}

// Calls fn(t0, t1, thread) over ranges of a step's n rows: on the pool for a prefill step (its
// norms, RoPE, residual sums and SwiGLU took 6% of a 512-token prefill on the calling thread
// alone), inline for a few rows, where a pool call would cost more than the work.
template <typename Fn>
void CpuForward::for_rows(size_t n, const Fn& fn) {
    if (n < 16 || pool_.size() == 1) return fn(size_t(0), n, 0);
    const size_t tasks = std::min(n, size_t(pool_.size()) * 4);
    pool_.run(int(tasks), [&](int i, int thread) { fn(n * size_t(i) / tasks, n * size_t(i + 1) / tasks, thread); });
}

// Causal attention, one task per (token, GQA group): token t sees the cache up to its own
// position, and the group's query heads share each read of a key and value. A single token
// (decode) has too few groups to keep every thread busy, so its keys are split into ranges
// whose unnormalised results are merged afterwards (flash-decoding).
void CpuForward::attention(uint32_t il, const Span& s) {
    const HParams& hp = m_.hp;
    const uint32_t group = hp.n_head / hp.n_head_kv;
    const KvCache& c = *s.cache;
    const KvPool& pool = c.pool();
    const size_t n_tok = s.n, n_past = c.n_past_;
    const size_t hv = hp.head_dim_v;
    const size_t per_thread = scratch_.size() / size_t(pool_.size());
    constexpr size_t B = KvPool::kBlockTokens;
    float* const q_rows = q_.data() + s.first * hp.q_dim();
    float* const out_rows = attn_.data() + s.first * hp.n_head * hp.head_dim_v;
    // Q8_0_Q4_0: Q8_0 keys; its values are told apart by v_q4.
    const kernels::KvElem elem = pool.type() == KvType::F32   ? kernels::KvElem::F32
                                 : pool.type() == KvType::F16 ? kernels::KvElem::F16
                                                              : kernels::KvElem::Q8_0;
    const auto args = [&](size_t t, uint32_t kvh, int thread) {
        kernels::AttnArgs a{};
        a.q = q_rows + t * hp.q_dim() + size_t(kvh) * group * hp.head_dim;
        a.n_q = group;
        a.q_stride = hp.head_dim;
        a.pages = s.pages.data();
        a.page_rows = B;
        a.k_off = pool.k_offset(il, kvh);
        a.v_off = pool.v_offset(il, kvh);
        a.k_row = pool.k_row_bytes();
        a.v_row = pool.v_row_bytes();
        a.elem = elem;
        a.k_cols = pool.k_cols();
        a.v_quads = pool.v_quads();
        a.v_q4 = pool.v_q4();
        a.n_keys = n_past + t + 1;
        a.head_dim = hp.head_dim;
        a.head_dim_v = hv;
        a.scale = 1.0f / std::sqrt(float(hp.head_dim));
        a.out = out_rows + t * hp.n_head * hv + size_t(kvh) * group * hv;
        a.out_stride = hv;
        a.scratch = scratch_.data() + size_t(thread) * per_thread;
        return a;
    };
    if (n_tok > 1 && !s.as_decode) {
        // Prefill: blocks of kAttnTokens tokens share each tile of keys; the last blocks (most
        // keys) first.
        const size_t n_blocks = (n_tok + kAttnTokens - 1) / kAttnTokens;
        pool_.run(int(n_blocks * hp.n_head_kv), [&](int task, int thread) {
            const size_t blk = n_blocks - 1 - size_t(task) / hp.n_head_kv;
            kernels::AttnArgs a = args(blk * kAttnTokens, uint32_t(size_t(task) % hp.n_head_kv), thread);
            a.n_tok = std::min(kAttnTokens, n_tok - blk * kAttnTokens);
            a.q_tok_stride = hp.q_dim();
            a.out_tok_stride = size_t(hp.n_head) * hv;
            k_.attention(a);
        });
        return;
    }
    // Decode, and the tokens of a speculative check: each token exactly as decode computes it
    // alone, so that checking guesses in a batch gives the logits decoding would (greedy text is
    // the same with and without speculation, bit for bit; the matrix kernels give each token's
    // row the same bits at any token count, and the attention kernels each row the same bits
    // whoever shares the call). Keys are split into ranges of a fixed grid (flash-decoding):
    // every token's ranges are the grid's, so the tokens of a check share each range's reads
    // and the kernel's work on it, and a token's result cannot depend on its neighbours, the
    // thread count or the cache length. Ranges are merged per token in order.
    const size_t n_ranges = (n_past + n_tok + kSplitKeys - 1) / kSplitKeys;
    const size_t slots = n_ranges * hp.n_head_kv * n_tok * group;  // (range, kv head, token, query head)
    if (part_max_.size() < slots) {
        part_out_.resize(slots * hv);
        part_max_.resize(slots);
        part_sum_.resize(slots);
    }
    const auto slot = [&](size_t r, size_t kvh, size_t t) { return ((r * hp.n_head_kv + kvh) * n_tok + t) * group; };
    pool_.run(int(n_ranges * hp.n_head_kv), [&](int task, int thread) {
        // The last ranges (seen by the fewest tokens) are the cheapest; the first go first.
        const size_t r = size_t(task) / hp.n_head_kv, kvh = size_t(task) % hp.n_head_kv;
        const size_t j0 = r * kSplitKeys;
        // Token t sees keys [0, n_past + t + 1): the range concerns tokens from t0 on.
        const size_t t0 = j0 >= n_past + 1 ? j0 - n_past : 0;
        kernels::AttnArgs a = args(t0, uint32_t(kvh), thread);
        a.n_tok = n_tok - t0;
        a.q_tok_stride = hp.q_dim();
        a.pages += j0 / B;
        a.n_keys = n_past + t0 + 1 - j0;
        a.key_cap = kSplitKeys;
        const size_t first = slot(r, kvh, t0);
        a.out = part_out_.data() + first * hv;
        a.out_stride = hv;
        a.out_tok_stride = group * hv;
        a.partial = true;
        a.max = part_max_.data() + first;
        a.sum = part_sum_.data() + first;
        k_.attention(a);
    });
    // Merge: out = sum_r exp(m_r - m) acc_r / sum_r exp(m_r - m) l_r, m the largest maximum. The
    // division is a multiplication by 1 / l, as in the kernel, so that one range gives what a
    // single call without ranges would.
    for (size_t t = 0; t < n_tok; ++t) {
        const size_t nr = (n_past + t + 1 + kSplitKeys - 1) / kSplitKeys;  // the ranges token t sees
        for (uint32_t kvh = 0; kvh < hp.n_head_kv; ++kvh)
            for (uint32_t qh = 0; qh < group; ++qh) {
                float m = -INFINITY;
                for (size_t r = 0; r < nr; ++r) m = std::max(m, part_max_[slot(r, kvh, t) + qh]);
                float l = 0;
                float* out = out_rows + t * hp.n_head * hv + (size_t(kvh) * group + qh) * hv;
                std::fill(out, out + hv, 0.0f);
                for (size_t r = 0; r < nr; ++r) {
                    const size_t i = slot(r, kvh, t) + qh;
                    const float w = std::exp(part_max_[i] - m);
                    l += part_sum_[i] * w;
                    const float* po = part_out_.data() + i * hv;
                    for (size_t d = 0; d < hv; ++d) out[d] += po[d] * w;
                }
                const float inv = 1.0f / l;
                for (size_t d = 0; d < hv; ++d) out[d] *= inv;
            }
    }
}

void CpuForward::check_tokens(std::span<const TokenId> tokens) const {
    for (TokenId t : tokens)
        if (t < 0 || uint32_t(t) >= m_.hp.n_vocab) throw Error(fmt::format("eval: token id {} is outside the vocabulary of {}", t, m_.hp.n_vocab));
}

namespace {

std::string no_room(const KvCache& c, size_t n) {
    if (size_t(c.n_past()) + n > c.n_ctx())
        return fmt::format("context overflow: {} cached + {} new tokens exceed the context size {}", c.n_past(), n, c.n_ctx());
    return fmt::format("the KV cache is full: {} more positions need blocks and {} of {} are free", n, c.pool().n_free(), c.pool().n_blocks());
}

}  // namespace

void CpuForward::check_cache(const KvCache& c) const {
    const KvPool& p = c.pool();
    const HParams& hp = p.hparams();
    if (hp.n_layer != m_.hp.n_layer || hp.n_head_kv != m_.hp.n_head_kv || hp.head_dim != m_.hp.head_dim || hp.head_dim_v != m_.hp.head_dim_v)
        throw Error("eval: a cache made for another model");
}

void CpuForward::eval(std::span<const TokenId> tokens, bool all_logits, std::vector<float>& logits) {
    const HParams& hp = m_.hp;
    if (tokens.empty()) throw Error("eval: no tokens");
    check_tokens(tokens);
    if (!cache_.reserve(uint32_t(std::min<size_t>(tokens.size(), UINT32_MAX)))) throw Error(no_room(cache_, tokens.size()));
    logits.resize((all_logits ? tokens.size() : 1) * size_t(hp.n_vocab));
    for (size_t done = 0; done < tokens.size();) {
        const size_t n = std::min<size_t>(kMaxBatch, tokens.size() - done);
        const bool last = done + n == tokens.size();
        float* out = all_logits ? logits.data() + done * hp.n_vocab : (last ? logits.data() : nullptr);
        Span span{&cache_, {}, 0, n, all_logits, out};
        eval_step(tokens.subspan(done, n), std::span(&span, 1));
        done += n;
    }
}

void CpuForward::eval_check(std::span<const TokenId> tokens, std::vector<float>& logits) {
    if (tokens.empty()) throw Error("eval_check: no tokens");
    if (tokens.size() > kExactTokens) throw Error(fmt::format("eval_check: {} tokens exceed {}", tokens.size(), kExactTokens));
    check_tokens(tokens);
    if (!cache_.reserve(uint32_t(tokens.size()))) throw Error(no_room(cache_, tokens.size()));
    logits.resize(tokens.size() * size_t(m_.hp.n_vocab));
    Span span{&cache_, {}, 0, tokens.size(), true, logits.data(), true};
    eval_step(tokens, std::span(&span, 1));
}

void CpuForward::eval_batch(std::span<const SeqTokens> seqs, std::vector<float>& logits, const std::function<bool()>& abort) {
    const HParams& hp = m_.hp;
    size_t total = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
        const SeqTokens& s = seqs[i];
        if (s.tokens.empty()) throw Error("eval_batch: a sequence with no tokens");
        check_cache(*s.cache);
        if (size_t(s.cache->n_past_) + s.tokens.size() > s.cache->n_ctx_) throw Error(no_room(*s.cache, s.tokens.size()));
        for (size_t j = 0; j < i; ++j)
            if (seqs[j].cache == s.cache) throw Error("eval_batch: one cache twice in a step");
        check_tokens(s.tokens);
        if (s.check_logits && s.tokens.size() > kExactTokens)
            throw Error(fmt::format("eval_batch: a check of {} tokens exceeds {}", s.tokens.size(), kExactTokens));
        total += s.tokens.size();
    }
    if (total == 0) throw Error("eval_batch: no tokens");
    if (total > kMaxBatch) throw Error(fmt::format("eval_batch: {} tokens exceed the step limit of {}", total, kMaxBatch));
    for (size_t i = 0; i < seqs.size(); ++i) {
        if (seqs[i].cache->reserve(uint32_t(seqs[i].tokens.size()))) continue;
        const std::string why = no_room(*seqs[i].cache, seqs[i].tokens.size());
        for (size_t j = 0; j < i; ++j) seqs[j].cache->truncate(seqs[j].cache->n_past());  // the blocks reserved ahead go back
        throw Error(why);
    }
    logits.resize(seqs.size() * size_t(hp.n_vocab));
    std::vector<TokenId> tokens;
    std::vector<Span> spans;
    tokens.reserve(total);
    for (size_t i = 0; i < seqs.size(); ++i) {
        const bool check = seqs[i].check_logits != nullptr;
        spans.push_back({seqs[i].cache, {}, tokens.size(), seqs[i].tokens.size(), check,
                         check ? seqs[i].check_logits : seqs[i].logits ? logits.data() + i * hp.n_vocab : nullptr, check});
        tokens.insert(tokens.end(), seqs[i].tokens.begin(), seqs[i].tokens.end());
    }
    eval_step(tokens, spans, abort);
}

// Writes the step's keys and values of layer il into the sequence's blocks, in the pool's
// element type.
void CpuForward::store_kv(uint32_t il, const Span& s) {
    const HParams& hp = m_.hp;
    KvCache& c = *s.cache;
    KvPool& pool = c.pool();
    constexpr uint32_t B = KvPool::kBlockTokens;
    const size_t hv = hp.head_dim_v;
    const auto put = [&](const float* x, uint8_t* dst, size_t n) {
        switch (pool.type()) {
            case KvType::F32: std::copy_n(x, n, reinterpret_cast<float*>(dst)); break;
            case KvType::F16: k_.to_half(x, reinterpret_cast<uint16_t*>(dst), n); break;
            case KvType::Q8_0:
            case KvType::Q8_0_Q4_0: quantize_row(TensorType::Q8_0, x, dst, n); break;
        }
    };
    for (size_t t = s.first; t < s.first + s.n; ++t) {
        const size_t pos = size_t(pos_[t]);
        uint8_t* block = pool.data(c.blocks_[pos / B]);
        const size_t row = pos % B;
        for (uint32_t h = 0; h < hp.n_head_kv; ++h) {
            const float* k = kv_k_.data() + t * hp.kv_dim() + size_t(h) * hp.head_dim;
            uint8_t* kb = block + pool.k_offset(il, h);
            if (pool.type() == KvType::F16) {
                // Keys by dimension: one element into each column.
                half_row_.resize(hp.head_dim);
                k_.to_half(k, half_row_.data(), hp.head_dim);
                for (size_t d = 0; d < hp.head_dim; ++d) std::memcpy(kb + kernels::kcol_f16(d, row, B), &half_row_[d], 2);
            } else if (pool.k_q8()) {
                // Quantised as a row, then its bytes (+ 128) and scales spread over the layout.
                key_q8_.resize(hp.head_dim / 32);
                quantize_row(TensorType::Q8_0, k, key_q8_.data(), hp.head_dim);
                for (size_t d = 0; d < hp.head_dim; ++d) kb[kernels::kcol_q8(d, row, B)] = uint8_t(key_q8_[d / 32].qs[d % 32] + 128);
                for (size_t b = 0; b < hp.head_dim / 32; ++b)
                    std::memcpy(kb + kernels::kcol_q8_scale(b, row, hp.head_dim, B), &key_q8_[b].d, 2);
            } else {
                put(k, block + pool.k_offset(il, h) + row * pool.k_row_bytes(), hp.head_dim);
            }
            const float* v = kv_v_.data() + t * hp.v_dim() + size_t(h) * hv;
            if (pool.v_quads()) {
                // Quantised as a row, then its bytes and scales spread over the layout.
                uint8_t* vb = block + pool.v_offset(il, h);
                key_q8_.resize(hv / 32);
                quantize_row(TensorType::Q8_0, v, key_q8_.data(), hv);
                for (size_t d = 0; d < hv; ++d) vb[kernels::vquad_q8(d, row, hv)] = uint8_t(key_q8_[d / 32].qs[d % 32]);
                for (size_t b = 0; b < hv / 32; ++b) std::memcpy(vb + kernels::vquad_q8_scale(b, row, hv, B), &key_q8_[b].d, 2);
            } else if (pool.v_q4()) {
                // Quantised as a Q4_0 row (its scales never negative), then each element's nibble
                // into its byte (the byte's other nibble is another row's) and the scales.
                uint8_t* vb = block + pool.v_offset(il, h);
                val_q4_.resize(hv / 32);
                quantize_row_q4_0_unsigned_scale(v, val_q4_.data(), hv);
                const unsigned shift = kernels::voct_q4_shift(row);
                for (size_t d = 0; d < hv; ++d) {
                    const uint8_t byte = val_q4_[d / 32].qs[d % 16];
                    const unsigned q = d % 32 < 16 ? byte & 15u : byte >> 4;
                    uint8_t& dst = vb[kernels::voct_q4(d, row, hv)];
                    dst = uint8_t((dst & ~(15u << shift)) | (q << shift));
                }
                for (size_t b = 0; b < hv / 32; ++b) std::memcpy(vb + kernels::voct_q4_scale(b, row, hv, B), &val_q4_[b].d, 2);
            } else {
                put(v, block + pool.v_offset(il, h) + row * pool.v_row_bytes(), hv);
            }
        }
    }
}

void CpuForward::eval_step(std::span<const TokenId> tokens, std::span<Span> spans, const std::function<bool()>& abort) {
    const HParams& hp = m_.hp;
    const size_t n = tokens.size();
    const size_t E = hp.n_embd;
    for (Span& s : spans) {
        for (size_t t = 0; t < s.n; ++t) pos_[s.first + t] = int(s.cache->n_past_ + t);
        const size_t n_blocks = KvPool::blocks_for(s.cache->n_past_ + s.n);
        s.pages.resize(n_blocks);
        for (size_t b = 0; b < n_blocks; ++b) s.pages[b] = s.cache->pool().data(s.cache->blocks_[b]);
    }

    for (size_t t = 0; t < n; ++t) dequantize_row(m_.tok_embd.type, m_.tok_embd.row(uint64_t(tokens[t])), x_.data() + t * E, E);

    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        // Rows written so far lie past each cache's n_past in blocks it alone holds (reserve
        // saw to that), so stopping here leaves every cache as it was.
        if (abort && abort()) throw StepAborted();
        const LayerWeights& L = m_.layers[il];
        for_rows(n, [&](size_t t0, size_t t1, int) {
            for (size_t t = t0; t < t1; ++t) rms_norm(x_.data() + t * E, L.attn_norm.data(), xn_.data() + t * E, E, hp.rms_eps);
        });
        matmuls({{&L.wq, q_.data()}, {&L.wk, kv_k_.data()}, {&L.wv, kv_v_.data()}}, xn_.data(), n);
        for_rows(n, [&](size_t t0, size_t t1, int thread) {
            for (size_t t = t0; t < t1; ++t) {
                float* q = q_.data() + t * hp.q_dim();
                float* k = kv_k_.data() + t * hp.kv_dim();
                float* v = kv_v_.data() + t * hp.v_dim();
                for (size_t i = 0; i < L.bq.size(); ++i) q[i] += L.bq[i];
                for (size_t i = 0; i < L.bk.size(); ++i) k[i] += L.bk[i];
                for (size_t i = 0; i < L.bv.size(); ++i) v[i] += L.bv[i];
                if (!L.q_norm.empty())
                    for (uint32_t h = 0; h < hp.n_head; ++h) rms_norm(q + h * hp.head_dim, L.q_norm.data(), q + h * hp.head_dim, hp.head_dim, hp.rms_eps);
                if (!L.k_norm.empty())
                    for (uint32_t h = 0; h < hp.n_head_kv; ++h) rms_norm(k + h * hp.head_dim, L.k_norm.data(), k + h * hp.head_dim, hp.head_dim, hp.rms_eps);
                rope_token(t, rope_cs_.data() + size_t(thread) * hp.n_rot);
            }
        });
        for (const Span& s : spans) store_kv(il, s);
        for (const Span& s : spans) attention(il, s);
        matmul(L.wo, attn_.data(), n, out_.data());
        for_rows(n, [&](size_t t0, size_t t1, int) {
            for (size_t t = t0; t < t1; ++t) {
                float* x = x_.data() + t * E;
                for (size_t i = 0; i < E; ++i) x[i] += out_[t * E + i];
                rms_norm(x, L.ffn_norm.data(), xn_.data() + t * E, E, hp.rms_eps);
            }
        });
        matmuls({{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, xn_.data(), n);
        // Split on multiples of 64 elements, so that each element takes the path (vector or
        // scalar tail) it takes in one call over all rows.
        const size_t ff = n * hp.n_ff;
        for_rows(n, [&](size_t t0, size_t t1, int) {
            const size_t e0 = t0 == 0 ? 0 : t0 * hp.n_ff / 64 * 64, e1 = t1 == n ? ff : t1 * hp.n_ff / 64 * 64;
            k_.swiglu(gate_.data() + e0, up_.data() + e0, e1 - e0);
        });
        matmul(L.w_down, gate_.data(), n, out_.data());
        for_rows(n, [&](size_t t0, size_t t1, int) {
            for (size_t i = t0 * E; i < t1 * E; ++i) x_[i] += out_[i];
        });
    }
    for (const Span& s : spans) s.cache->n_past_ += uint32_t(s.n);
    // Final norm and the output product only for the rows whose logits are wanted.
    if (spans.size() == 1) {
        const Span& s = spans[0];
        if (!s.logits) return;
        const size_t first = s.all_logits ? 0 : n - 1;
        for (size_t t = first; t < n; ++t) rms_norm(x_.data() + t * E, m_.output_norm.data(), xn_.data() + t * E, E, hp.rms_eps);
        matmul(m_.output, xn_.data() + first * E, n - first, s.logits);
        return;
    }
    // Several sequences: their last rows (every row of a speculative check) gathered into one
    // product.
    size_t rows = 0;
    for (const Span& s : spans) {
        if (!s.logits) continue;
        for (size_t t = s.all_logits ? s.first : s.first + s.n - 1; t < s.first + s.n; ++t)
            rms_norm(x_.data() + t * E, m_.output_norm.data(), xn_.data() + rows++ * E, E, hp.rms_eps);
    }
    if (rows == 0) return;
    logits_rows_.resize(rows * size_t(hp.n_vocab));
    matmul(m_.output, xn_.data(), rows, logits_rows_.data());
    rows = 0;
    for (const Span& s : spans) {
        if (!s.logits) continue;
        const size_t k = s.all_logits ? s.n : 1;
        std::copy_n(logits_rows_.data() + rows * hp.n_vocab, k * hp.n_vocab, s.logits);
        rows += k;
    }
}

}  // namespace celer
