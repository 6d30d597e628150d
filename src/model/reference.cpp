#include "model/reference.h"

#include <algorithm>
#include <cmath>

#include "tensor/dequant.h"

namespace celer {
namespace {

std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / double(x.size()) + eps);
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * w[i];
    return out;
}

void add_bias(std::vector<double>& x, const std::vector<float>& b) {
    for (size_t i = 0; i < b.size(); ++i) x[i] += b[i];
}

void rope(const HParams& hp, const std::vector<float>& ff, int pos, double* head) {
    const uint32_t half = hp.n_rot / 2;
    for (uint32_t i = 0; i < half; ++i) {
        const double theta = rope_theta(hp, ff, pos, i);
        const double c = std::cos(theta) * hp.rope_attn_factor, s = std::sin(theta) * hp.rope_attn_factor;
        const uint32_t a = hp.rope_layout == RopeLayout::Normal ? 2 * i : i;
        const uint32_t b = hp.rope_layout == RopeLayout::Normal ? 2 * i + 1 : i + half;
        const double x0 = head[a], x1 = head[b];
        head[a] = x0 * c - x1 * s;
        head[b] = x0 * s + x1 * c;
    }
}

void head_norm(std::vector<double>& x, uint32_t n_heads, uint32_t hd, const std::vector<float>& w, double eps) {
    for (uint32_t h = 0; h < n_heads; ++h) {
        std::vector<double> one(x.begin() + h * hd, x.begin() + (h + 1) * hd);
        one = rms_norm(one, w, eps);
        std::copy(one.begin(), one.end(), x.begin() + h * hd);
    }
}

}  // namespace

double rope_theta(const HParams& hp, const std::vector<float>& freq_factors, int pos, uint32_t i) {
    const double d = double(hp.n_rot), base = double(hp.rope_base);
    double inv = std::pow(base, -2.0 * i / d);  // the unscaled frequency of pair i
    if (hp.rope_scaling == RopeScaling::Linear) {
        inv *= double(hp.rope_freq_scale);
    } else if (hp.rope_scaling == RopeScaling::Yarn) {
        // Pairs that turn fewer than beta_slow times over the original context are interpolated
        // (divided by s), more than beta_fast times kept, with a linear ramp over the pair
        // index between: the pair index where a frequency turns n times over L is
        // d ln(L / (2 pi n)) / (2 ln base), floored (fast) and ceiled (slow).
        const double L = double(hp.rope_orig_ctx);
        const auto dim = [&](double n) { return d * std::log(L / (n * 2.0 * M_PI)) / (2.0 * std::log(base)); };
        const double low = std::max(0.0, std::floor(dim(hp.yarn_beta_fast)));
        double high = std::min(d - 1.0, std::ceil(dim(hp.yarn_beta_slow)));
        if (high == low) high += 0.001;
        const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
        const double keep = 1.0 - ramp;  // the share of the original frequency
        inv = inv / double(hp.rope_scale) * (1.0 - keep) + inv * keep;
    }
    double theta = pos * inv;
    if (!freq_factors.empty()) theta /= freq_factors[i];
    return theta;
}

ReferenceForward::ReferenceForward(const Model& m) : m_(m), k_cache_(m.hp.n_layer), v_cache_(m.hp.n_layer) {}

std::vector<double> ReferenceForward::matvec(const Weight& w, const std::vector<double>& x) const {
    std::vector<float> row(w.cols);
    std::vector<double> y(w.rows);
    for (uint64_t r = 0; r < w.rows; ++r) {
        dequantize_row(w.type, w.row(r), row.data(), w.cols);
        double acc = 0;
        for (uint64_t c = 0; c < w.cols; ++c) acc += double(row[c]) * x[c];
        y[r] = acc;
    }
    return y;
}

std::vector<float> ReferenceForward::step(TokenId token, bool want_logits) {
    const HParams& hp = m_.hp;
    const double eps = hp.rms_eps;
    std::vector<float> erow(hp.n_embd);
    dequantize_row(m_.tok_embd.type, m_.tok_embd.row(uint64_t(token)), erow.data(), hp.n_embd);
    std::vector<double> x(erow.begin(), erow.end());
    const int pos = pos_;
    const uint32_t group = hp.n_head / hp.n_head_kv;

    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        const LayerWeights& L = m_.layers[il];
        const auto xn = rms_norm(x, L.attn_norm, eps);
        auto q = matvec(L.wq, xn);
        auto k = matvec(L.wk, xn);
        auto v = matvec(L.wv, xn);
        add_bias(q, L.bq);
        add_bias(k, L.bk);
        add_bias(v, L.bv);
        if (!L.q_norm.empty()) head_norm(q, hp.n_head, hp.head_dim, L.q_norm, eps);
        if (!L.k_norm.empty()) head_norm(k, hp.n_head_kv, hp.head_dim, L.k_norm, eps);
        for (uint32_t h = 0; h < hp.n_head; ++h) rope(hp, m_.rope_freq_factors, pos, &q[h * hp.head_dim]);
        for (uint32_t h = 0; h < hp.n_head_kv; ++h) rope(hp, m_.rope_freq_factors, pos, &k[h * hp.head_dim]);
        k_cache_[il].insert(k_cache_[il].end(), k.begin(), k.end());
        v_cache_[il].insert(v_cache_[il].end(), v.begin(), v.end());
        if (!want_logits && il + 1 == hp.n_layer) {
            ++pos_;  // the last layer's keys and values are all the later positions need
            return {};
        }

        std::vector<double> attn(size_t(hp.n_head) * hp.head_dim_v, 0.0);
        const double scale = 1.0 / std::sqrt(double(hp.head_dim));
        std::vector<double> scores(size_t(pos) + 1);
        for (uint32_t h = 0; h < hp.n_head; ++h) {
            const uint32_t kvh = h / group;
            double mx = -INFINITY;
            for (int t = 0; t <= pos; ++t) {
                const double* kt = &k_cache_[il][size_t(t) * hp.kv_dim() + kvh * hp.head_dim];
                double s = 0;
                for (uint32_t d = 0; d < hp.head_dim; ++d) s += q[h * hp.head_dim + d] * kt[d];
                scores[size_t(t)] = s * scale;
                mx = std::max(mx, scores[size_t(t)]);
            }
            double sum = 0;
            for (int t = 0; t <= pos; ++t) sum += (scores[size_t(t)] = std::exp(scores[size_t(t)] - mx));
            for (int t = 0; t <= pos; ++t) {
                const double* vt = &v_cache_[il][size_t(t) * hp.v_dim() + kvh * hp.head_dim_v];
                const double p = scores[size_t(t)] / sum;
                for (uint32_t d = 0; d < hp.head_dim_v; ++d) attn[h * hp.head_dim_v + d] += p * vt[d];
            }
        }
        const auto o = matvec(L.wo, attn);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

        const auto fn = rms_norm(x, L.ffn_norm, eps);
        const auto g = matvec(L.w_gate, fn);
        const auto u = matvec(L.w_up, fn);
        std::vector<double> hdn(g.size());
        for (size_t i = 0; i < g.size(); ++i) hdn[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        const auto down = matvec(L.w_down, hdn);
        for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
    }
    const auto xn = rms_norm(x, m_.output_norm, eps);
    const auto logits = matvec(m_.output, xn);
    ++pos_;
    return std::vector<float>(logits.begin(), logits.end());
}

}  // namespace celer
