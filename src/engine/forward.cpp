#include "engine/forward.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "model/reference.h"
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

KvType parse_kv_type(std::string_view name) {
    if (name == "f32") return KvType::F32;
    if (name == "f16") return KvType::F16;
    throw Error(fmt::format("unknown KV cache type '{}' (expected f32 or f16)", name));
}

const char* kv_type_name(KvType t) { return t == KvType::F16 ? "f16" : "f32"; }

KvCache::KvCache(const HParams& hp, uint32_t n_ctx, KvType kv)
    : kv_(kv), n_ctx_(n_ctx), kv_heads_(hp.n_head_kv), bytes_per_token_(size_t(hp.n_layer) * (hp.kv_dim() + hp.v_dim()) * (kv == KvType::F16 ? 2 : 4)) {
    if (kv == KvType::F16) {
        k16_.assign(hp.n_layer, std::vector<uint16_t>(size_t(n_ctx) * hp.kv_dim()));
        v16_.assign(hp.n_layer, std::vector<uint16_t>(size_t(n_ctx) * hp.v_dim()));
    } else {
        k_.assign(hp.n_layer, std::vector<float>(size_t(n_ctx) * hp.kv_dim()));
        v_.assign(hp.n_layer, std::vector<float>(size_t(n_ctx) * hp.v_dim()));
    }
}

void KvCache::copy_prefix(const KvCache& src, uint32_t n) {
    if (&src == this) throw Error("copy_prefix: a cache onto itself");
    if (src.kv_ != kv_ || src.n_layers() != n_layers() || src.bytes_per_token_ != bytes_per_token_)
        throw Error("copy_prefix: caches of different shapes");
    if (n > src.n_past_ || n > n_ctx_) throw Error(fmt::format("copy_prefix: {} positions from a cache of {} into one of {}", n, src.n_past_, n_ctx_));
    // Head-major: per layer and KV head, the first n rows of its run of n_ctx rows.
    const auto copy = [&](const auto& from, auto& to) {
        for (size_t l = 0; l < from.size(); ++l) {
            const size_t row = from[l].size() / src.n_ctx_ / kv_heads_, heads = kv_heads_;
            for (size_t h = 0; h < heads; ++h)
                std::copy_n(from[l].data() + h * src.n_ctx_ * row, size_t(n) * row, to[l].data() + h * n_ctx_ * row);
        }
    };
    if (kv_ == KvType::F16) {
        copy(src.k16_, k16_);
        copy(src.v16_, v16_);
    } else {
        copy(src.k_, k_);
        copy(src.v_, v_);
    }
    n_past_ = n;
}

CpuForward::CpuForward(const Model& m, ThreadPool& pool, const kernels::CpuKernels& k, uint32_t n_ctx, KvType kv)
    : m_(m), pool_(pool), k_(k), cache_(m.hp, n_ctx, kv) {
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
                    std::max(widest * kernels::kScratchRows, kernels::attn_scratch_floats(kAttnTokens * group, hp.head_dim, hp.head_dim_v)));
    part_out_.resize(size_t(kMaxSplit) * hp.n_head * hp.head_dim_v);
    part_max_.resize(size_t(kMaxSplit) * hp.n_head);
    part_sum_.resize(part_max_.size());
    if (k_.gemm_int8) pack_weights();
}

void CpuForward::pack_weights() {
    std::vector<const Weight*> ws;
    for (const LayerWeights& L : m_.layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) ws.push_back(w);
    ws.push_back(&m_.output);
    size_t widest = 0;
    for (const Weight* w : ws) {
        if (!kernels::int8_packable(w->type, w->rows, w->cols) || packed_.count(w->data)) continue;
        Packed& p = packed_[w->data];
        p.bytes.reset(new uint8_t[kernels::packed_bytes(w->type, w->rows, w->cols)]);
        const size_t groups = w->rows / kernels::kGroupRows;
        const int n_tasks = int(std::min<size_t>(groups, size_t(pool_.size()) * 4));
        pool_.run(n_tasks, [&](int task, int) {
            kernels::pack_groups(w->type, w->data, w->row_bytes, w->cols, groups * size_t(task) / size_t(n_tasks),
                                 groups * size_t(task + 1) / size_t(n_tasks), p.bytes.get());
        });
        widest = std::max<size_t>(widest, w->cols);
    }
    act_q_.resize(kMaxBatch * widest);
    act_d_.resize(kMaxBatch * widest / kernels::kActBlock);
    act_ds_.resize(act_d_.size());
    act_ds2_.resize(2 * act_d_.size());
}

void CpuForward::matmul(const Weight& w, const float* x, size_t n_tok, float* y) { matmuls({{&w, y}}, x, n_tok); }

// Products that share their input: on the int8 path the activations are quantised once and
// every weight's row groups go to the pool as one set of tasks (one dispatch, not one each).
void CpuForward::matmuls(std::initializer_list<Product> products, const float* x, size_t n_tok) {
    // What each weight takes: 0 the float kernels, 1 the int8 path, 2 packed floats. Products of
    // different kinds go one by one.
    const auto kind = [&](const Product& p) { return !packed_.count(p.w->data) ? 0 : kernels::is_packed_float(p.w->type) ? 2 : 1; };
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
    const bool float_acts = k0 == 2;
    const auto quantize = [&](size_t t) {
        k_.quantize_acts(x + t * cols, cols, act_q_.data() + t * cols, act_d_.data() + t * nb, act_ds_.data() + t * nb,
                         act_ds2_.data() + 2 * t * nb);
    };
    if (float_acts) {
        // F16 / BF16 multiply the float activations as they are.
    } else if (n_tok == 1) {
        quantize(0);
    } else {
        pool_.run(int(n_tok), [&](int t, int) { quantize(size_t(t)); });
    }
    // Decode: one contiguous range per thread, so each streams its weights in one sequential run
    // (measured on 0.5b Q8_0: 48.4 tok/s, against 47.6 with 2 ranges per thread and 46.1 with 8).
    // Prefill: several ranges per thread, to balance threads that run at different speeds.
    tasks_.clear();
    const size_t per_thread = n_tok == 1 ? 1 : 4;
    for (const Product& p : products) {
        const size_t groups = p.w->rows / kernels::kGroupRows;
        const size_t n = std::min<size_t>(groups, size_t(pool_.size()) * per_thread);
        for (size_t i = 0; i < n; ++i) tasks_.push_back({&p, groups * i / n, groups * (i + 1) / n});
    }
    pool_.run(int(tasks_.size()), [&](int task, int) {
        const GemmTask& gt = tasks_[size_t(task)];
        const Weight& w = *gt.p->w;
        kernels::GemmArgs a{};
        a.type = w.type;
        a.w = packed_.find(w.data)->second.bytes.get();
        a.cols = cols;
        a.x = {act_q_.data(), act_d_.data(), act_ds_.data(), act_ds2_.data(), cols};
        a.xf = x;
        a.tok0 = 0;
        a.tok1 = n_tok;
        a.y = gt.p->y;
        a.ldy = w.rows;
        a.g0 = gt.g0;
        a.g1 = gt.g1;
        k_.gemm_int8(a);
    });
}

void CpuForward::matmul_float(const Weight& w, const float* x, size_t n_tok, float* y) {
    const size_t rows = w.rows;
    const size_t per_thread = scratch_.size() / size_t(pool_.size());
    // Enough tasks to balance threads that run at different speeds, each still a few rows.
    const size_t n_tasks = std::min<size_t>(std::max<size_t>(rows / 16, 1), size_t(pool_.size()) * 8);
    const auto fn = k_.matmul[type_index(w.type)];
    pool_.run(int(n_tasks), [&](int task, int thread) {
        kernels::MatmulArgs a{};
        a.w = w.data;
        a.row_bytes = w.row_bytes;
        a.cols = w.cols;
        a.x = x;
        a.ldx = w.cols;
        a.n_tok = n_tok;
        a.y = y;
        a.ldy = rows;
        a.row0 = rows * size_t(task) / n_tasks;
        a.row1 = rows * size_t(task + 1) / n_tasks;
        a.scratch = scratch_.data() + size_t(thread) * per_thread;
        fn(a);
    });
}

void CpuForward::rope_rows(float* x, size_t n_tok, uint32_t n_heads, size_t ld) {
    const HParams& hp = m_.hp;
    const uint32_t half = hp.n_rot / 2;
    for (size_t t = 0; t < n_tok; ++t) {
        const int pos = pos_[t];
        for (uint32_t i = 0; i < half; ++i) {
            const double theta = rope_theta(hp, m_.rope_freq_factors, pos, i);
            rope_cos_[i] = float(std::cos(theta));
            rope_sin_[i] = float(std::sin(theta));
        }
        for (uint32_t h = 0; h < n_heads; ++h) {
            float* head = x + t * ld + size_t(h) * hp.head_dim;
            for (uint32_t i = 0; i < half; ++i) {
                const uint32_t a = hp.rope_layout == RopeLayout::Normal ? 2 * i : i;
                const uint32_t b = hp.rope_layout == RopeLayout::Normal ? 2 * i + 1 : i + half;
                const float x0 = head[a], x1 = head[b];
                head[a] = x0 * rope_cos_[i] - x1 * rope_sin_[i];
                head[b] = x0 * rope_sin_[i] + x1 * rope_cos_[i];
            }
        }
    }
}

// Causal attention, one task per (token, GQA group): token t sees the cache up to its own
// position, and the group's query heads share each read of a key and value. A single token
// (decode) has too few groups to keep every thread busy, so its keys are split into ranges
// whose unnormalised results are merged afterwards (flash-decoding).
void CpuForward::attention(uint32_t il, const Span& s) {
    const HParams& hp = m_.hp;
    const uint32_t group = hp.n_head / hp.n_head_kv;
    KvCache& c = *s.cache;
    const size_t n_tok = s.n, n_past = c.n_past_, n_ctx = c.n_ctx_;
    const bool f16 = c.kv_ == KvType::F16;
    const float* kc = f16 ? nullptr : c.k_[il].data();
    const float* vc = f16 ? nullptr : c.v_[il].data();
    const uint16_t* kc16 = f16 ? c.k16_[il].data() : nullptr;
    const uint16_t* vc16 = f16 ? c.v16_[il].data() : nullptr;
    const size_t hv = hp.head_dim_v;
    const size_t per_thread = scratch_.size() / size_t(pool_.size());
    const size_t n_keys_last = n_past + n_tok;
    float* const q_rows = q_.data() + s.first * hp.q_dim();
    float* const out_rows = attn_.data() + s.first * hp.n_head * hp.head_dim_v;
    // By length alone, never by thread count, so that the threads cannot change a result bit.
    const size_t n_split = n_tok == 1 ? std::clamp<size_t>(n_keys_last / kMinSplitKeys, 1, kMaxSplit) : 1;
    const auto args = [&](size_t t, uint32_t kvh, int thread) {
        kernels::AttnArgs a{};
        a.q = q_rows + t * hp.q_dim() + size_t(kvh) * group * hp.head_dim;
        a.n_q = group;
        a.q_stride = hp.head_dim;
        // Head-major cache: head kvh's keys are one contiguous run of n_ctx x head_dim.
        if (f16) {
            a.k16 = kc16 + size_t(kvh) * n_ctx * hp.head_dim;
            a.v16 = vc16 + size_t(kvh) * n_ctx * hv;
        } else {
            a.k = kc + size_t(kvh) * n_ctx * hp.head_dim;
            a.v = vc + size_t(kvh) * n_ctx * hv;
        }
        a.k_stride = hp.head_dim;
        a.v_stride = hv;
        a.n_keys = n_past + t + 1;
        a.head_dim = hp.head_dim;
        a.head_dim_v = hv;
        a.scale = 1.0f / std::sqrt(float(hp.head_dim));
        a.out = out_rows + t * hp.n_head * hv + size_t(kvh) * group * hv;
        a.out_stride = hv;
        a.scratch = scratch_.data() + size_t(thread) * per_thread;
        return a;
    };
    if (n_split == 1) {
        // Blocks of kAttnTokens tokens share each tile of keys; the last blocks (most keys) first.
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
    pool_.run(int(hp.n_head_kv * n_split), [&](int task, int thread) {
        const uint32_t kvh = uint32_t(size_t(task) / n_split);
        const size_t i = size_t(task) % n_split;
        kernels::AttnArgs a = args(0, kvh, thread);
        const size_t j0 = n_keys_last * i / n_split, j1 = n_keys_last * (i + 1) / n_split;
        if (f16) {
            a.k16 += j0 * a.k_stride;
            a.v16 += j0 * a.v_stride;
        } else {
            a.k += j0 * a.k_stride;
            a.v += j0 * a.v_stride;
        }
        a.n_keys = j1 - j0;
        const size_t slot = size_t(kvh) * group + i * hp.n_head;  // (range, head)
        a.out = part_out_.data() + slot * hv;
        a.partial = true;
        a.max = part_max_.data() + slot;
        a.sum = part_sum_.data() + slot;
        k_.attention(a);
    });
    // Merge: out = sum_i exp(m_i - m) acc_i / sum_i exp(m_i - m) l_i, m the largest maximum.
    for (uint32_t h = 0; h < hp.n_head; ++h) {
        float m = -INFINITY;
        for (size_t i = 0; i < n_split; ++i) m = std::max(m, part_max_[i * hp.n_head + h]);
        float l = 0;
        float* out = out_rows + size_t(h) * hv;
        std::fill(out, out + hv, 0.0f);
        for (size_t i = 0; i < n_split; ++i) {
            const size_t slot = i * hp.n_head + h;
            const float w = std::exp(part_max_[slot] - m);
            l += part_sum_[slot] * w;
            const float* po = part_out_.data() + slot * hv;
            for (size_t d = 0; d < hv; ++d) out[d] += po[d] * w;
        }
        for (size_t d = 0; d < hv; ++d) out[d] /= l;
    }
}

void CpuForward::check_tokens(std::span<const TokenId> tokens) const {
    for (TokenId t : tokens)
        if (t < 0 || uint32_t(t) >= m_.hp.n_vocab) throw Error(fmt::format("eval: token id {} is outside the vocabulary of {}", t, m_.hp.n_vocab));
}

void CpuForward::eval(std::span<const TokenId> tokens, bool all_logits, std::vector<float>& logits) {
    const HParams& hp = m_.hp;
    if (tokens.empty()) throw Error("eval: no tokens");
    if (size_t(cache_.n_past_) + tokens.size() > cache_.n_ctx_)
        throw Error(fmt::format("context overflow: {} cached + {} new tokens exceed the context size {}", cache_.n_past_, tokens.size(),
                                cache_.n_ctx_));
    check_tokens(tokens);
    logits.resize((all_logits ? tokens.size() : 1) * size_t(hp.n_vocab));
    for (size_t done = 0; done < tokens.size();) {
        const size_t n = std::min<size_t>(kMaxBatch, tokens.size() - done);
        const bool last = done + n == tokens.size();
        float* out = all_logits ? logits.data() + done * hp.n_vocab : (last ? logits.data() : nullptr);
        const Span span{&cache_, 0, n, all_logits, out};
        eval_step(tokens.subspan(done, n), std::span(&span, 1));
        done += n;
    }
}

void CpuForward::eval_batch(std::span<const SeqTokens> seqs, std::vector<float>& logits) {
    const HParams& hp = m_.hp;
    size_t total = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
        const SeqTokens& s = seqs[i];
        if (s.tokens.empty()) throw Error("eval_batch: a sequence with no tokens");
        if (s.cache->n_layers() != hp.n_layer) throw Error("eval_batch: a cache made for another model");
        if (size_t(s.cache->n_past_) + s.tokens.size() > s.cache->n_ctx_)
            throw Error(fmt::format("context overflow: {} cached + {} new tokens exceed the context size {}", s.cache->n_past_,
                                    s.tokens.size(), s.cache->n_ctx_));
        for (size_t j = 0; j < i; ++j)
            if (seqs[j].cache == s.cache) throw Error("eval_batch: one cache twice in a step");
        check_tokens(s.tokens);
        total += s.tokens.size();
    }
    if (total == 0) throw Error("eval_batch: no tokens");
    if (total > kMaxBatch) throw Error(fmt::format("eval_batch: {} tokens exceed the step limit of {}", total, kMaxBatch));
    logits.resize(seqs.size() * size_t(hp.n_vocab));
    std::vector<TokenId> tokens;
    std::vector<Span> spans;
    tokens.reserve(total);
    for (size_t i = 0; i < seqs.size(); ++i) {
        spans.push_back({seqs[i].cache, tokens.size(), seqs[i].tokens.size(), false,
                         seqs[i].logits ? logits.data() + i * hp.n_vocab : nullptr});
        tokens.insert(tokens.end(), seqs[i].tokens.begin(), seqs[i].tokens.end());
    }
    eval_step(tokens, spans);
}

void CpuForward::eval_step(std::span<const TokenId> tokens, std::span<const Span> spans) {
    const HParams& hp = m_.hp;
    const size_t n = tokens.size();
    const size_t E = hp.n_embd;
    rope_cos_.resize(hp.n_rot / 2);
    rope_sin_.resize(hp.n_rot / 2);
    for (const Span& s : spans)
        for (size_t t = 0; t < s.n; ++t) pos_[s.first + t] = int(s.cache->n_past_ + t);

    for (size_t t = 0; t < n; ++t) dequantize_row(m_.tok_embd.type, m_.tok_embd.row(uint64_t(tokens[t])), x_.data() + t * E, E);

    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        const LayerWeights& L = m_.layers[il];
        for (size_t t = 0; t < n; ++t) rms_norm(x_.data() + t * E, L.attn_norm.data(), xn_.data() + t * E, E, hp.rms_eps);
        matmuls({{&L.wq, q_.data()}, {&L.wk, kv_k_.data()}, {&L.wv, kv_v_.data()}}, xn_.data(), n);
        for (size_t t = 0; t < n; ++t) {
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
        }
        rope_rows(q_.data(), n, hp.n_head, hp.q_dim());
        rope_rows(kv_k_.data(), n, hp.n_head_kv, hp.kv_dim());
        // Head-major: each KV head's run of positions is contiguous, so that attention streams
        // one sequential run per head rather than every other 128 bytes.
        const size_t hv = hp.head_dim_v;
        for (const Span& s : spans) {
            KvCache& c = *s.cache;
            for (size_t t = s.first; t < s.first + s.n; ++t) {
            const size_t pos = size_t(pos_[t]);
            for (uint32_t h = 0; h < hp.n_head_kv; ++h) {
                const float* ks = kv_k_.data() + t * hp.kv_dim() + size_t(h) * hp.head_dim;
                const float* vs = kv_v_.data() + t * hp.v_dim() + size_t(h) * hv;
                const size_t ko = (size_t(h) * c.n_ctx_ + pos) * hp.head_dim, vo = (size_t(h) * c.n_ctx_ + pos) * hv;
                if (c.kv_ == KvType::F16) {
                    k_.to_half(ks, c.k16_[il].data() + ko, hp.head_dim);
                    k_.to_half(vs, c.v16_[il].data() + vo, hv);
                } else {
                    std::copy_n(ks, hp.head_dim, c.k_[il].data() + ko);
                    std::copy_n(vs, hv, c.v_[il].data() + vo);
                }
            }
            }
        }
        for (const Span& s : spans) attention(il, s);
        matmul(L.wo, attn_.data(), n, out_.data());
        for (size_t i = 0; i < n * E; ++i) x_[i] += out_[i];

        for (size_t t = 0; t < n; ++t) rms_norm(x_.data() + t * E, L.ffn_norm.data(), xn_.data() + t * E, E, hp.rms_eps);
        matmuls({{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, xn_.data(), n);
        k_.swiglu(gate_.data(), up_.data(), n * hp.n_ff);
        matmul(L.w_down, gate_.data(), n, out_.data());
        for (size_t i = 0; i < n * E; ++i) x_[i] += out_[i];
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
    // Several sequences: their last rows gathered into one product.
    size_t rows = 0;
    for (const Span& s : spans)
        if (s.logits) rms_norm(x_.data() + (s.first + s.n - 1) * E, m_.output_norm.data(), xn_.data() + rows++ * E, E, hp.rms_eps);
    if (rows == 0) return;
    logits_rows_.resize(rows * size_t(hp.n_vocab));
    matmul(m_.output, xn_.data(), rows, logits_rows_.data());
    rows = 0;
    for (const Span& s : spans)
        if (s.logits) std::copy_n(logits_rows_.data() + rows++ * hp.n_vocab, hp.n_vocab, s.logits);
}

}  // namespace celer
