// Scalar target: dequantise one weight row into float (reference decoder), then dot it with
// every token's activations. Reusing the decoded row across the batch makes prefill cost one
// decode per row rather than one per row and token.
#include "kernels/cpu/kernels.h"
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "tensor/dequant.h"
#include "util/fp16.h"

namespace celer::kernels {
namespace {

float dot(const float* a, const float* b, size_t n) {
    // Four partial sums: independent dependency chains, and a summation order closer to the
    // blocked order SIMD targets use.
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

template <TensorType T>
void matmul(const MatmulArgs& a) {
    for (size_t r = a.row0; r < a.row1; ++r) {
        const float* row;
        if constexpr (T == TensorType::F32) {
            row = reinterpret_cast<const float*>(a.w + r * a.row_bytes);
        } else {
            dequantize_row(T, a.w + r * a.row_bytes, a.scratch, a.cols);
            row = a.scratch;
        }
        for (size_t t = 0; t < a.n_tok; ++t) a.y[t * a.ldy + r] = dot(row, a.x + t * a.ldx, a.cols);
    }
}

float sum(const float* x, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += x[i], s1 += x[i + 1], s2 += x[i + 2], s3 += x[i + 3];
    for (; i < n; ++i) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

// One cached row widened to float: the reference decoders of each element type.
void kv_row(const AttnArgs& a, size_t j, bool value, float* out) {
    const uint8_t* page = a.pages[j / a.page_rows];
    if (!value && a.k_cols) {
        const uint8_t* k = page + a.k_off;
        const size_t r = j % a.page_rows;
        for (size_t d = 0; d < a.head_dim; ++d) {
            if (a.elem == KvElem::F16) {
                uint16_t h;
                std::memcpy(&h, k + kcol_f16(d, r, a.page_rows), 2);
                out[d] = fp16_to_fp32(h);
            } else {
                uint16_t h;
                std::memcpy(&h, k + kcol_q8_scale(d / 32, r, a.head_dim, a.page_rows), 2);
                out[d] = fp16_to_fp32(h) * float(int(k[kcol_q8(d, r, a.page_rows)]) - 128);
            }
        }
        return;
    }
    if (value && (a.v_quads || a.v_q4)) {  // Q8_0 values by quads of keys, Q4_0 by octets
        const uint8_t* v = page + a.v_off;
        const size_t r = j % a.page_rows, hv = a.head_dim_v;
        for (size_t d = 0; d < hv; ++d) {
            uint16_t h;
            std::memcpy(&h, v + (a.v_q4 ? voct_q4_scale(d / 32, r, hv, a.page_rows) : vquad_q8_scale(d / 32, r, hv, a.page_rows)), 2);
            const int q = a.v_q4 ? int((v[voct_q4(d, r, hv)] >> voct_q4_shift(r)) & 15) - 8 : int(int8_t(v[vquad_q8(d, r, hv)]));
            out[d] = fp16_to_fp32(h) * float(q);
        }
        return;
    }
    const uint8_t* row = page + (value ? a.v_off + (j % a.page_rows) * a.v_row : a.k_off + (j % a.page_rows) * a.k_row);
    const size_t n = value ? a.head_dim_v : a.head_dim;
    switch (a.elem) {
        case KvElem::F32: std::memcpy(out, row, n * sizeof(float)); break;
        case KvElem::F16: dequantize_row(TensorType::F16, row, out, n); break;
        case KvElem::Q8_0: dequantize_row(TensorType::Q8_0, row, out, n); break;
    }
}

// Online softmax, head by head: one pass over the keys keeps a running maximum and rescales the
// partial sums when it grows, so no score buffer of length n_keys is needed.
void attention_one(const AttnArgs& a) {
    float* acc = a.scratch;
    float* key = acc + a.head_dim_v;
    float* value = key + a.head_dim;
    for (size_t h = 0; h < a.n_q; ++h) {
        const float* q = a.q + h * a.q_stride;
        for (size_t d = 0; d < a.head_dim_v; ++d) acc[d] = 0;
        float mx = -INFINITY, sum = 0;
        for (size_t j = 0; j < a.n_keys; ++j) {
            kv_row(a, j, false, key);
            float s = 0;
            for (size_t d = 0; d < a.head_dim; ++d) s += q[d] * key[d];
            s *= a.scale;
            if (s > mx) {
                const float r = std::exp(mx - s);  // exp(-inf) = 0 on the first key
                sum *= r;
                for (size_t d = 0; d < a.head_dim_v; ++d) acc[d] *= r;
                mx = s;
            }
            const float p = std::exp(s - mx);
            sum += p;
            kv_row(a, j, true, value);
            for (size_t d = 0; d < a.head_dim_v; ++d) acc[d] += p * value[d];
        }
        float* out = a.out + h * a.out_stride;
        const float inv = a.partial ? 1.0f : 1.0f / sum;
        for (size_t d = 0; d < a.head_dim_v; ++d) out[d] = acc[d] * inv;
        if (a.partial) a.max[h] = mx, a.sum[h] = sum;
    }
}

void attention(const AttnArgs& a) {
    for (size_t i = 0; i < a.n_tok; ++i) {
        AttnArgs t = a;
        t.q += i * a.q_tok_stride;
        t.out += i * a.out_tok_stride;
        t.n_keys = std::min(a.n_keys + i, a.key_cap);
        if (a.partial) t.max += i * a.n_q, t.sum += i * a.n_q;
        attention_one(t);
    }
}

void to_half(const float* x, uint16_t* y, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void swiglu(float* g, const float* u, size_t n) {
    for (size_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

template <size_t... I>
constexpr CpuKernels make_table(std::index_sequence<I...>) {
    return CpuKernels{"scalar", {&matmul<kTypeTraits[I].type>...}, &sum, &attention, &to_half, &swiglu, nullptr, nullptr};
}

constexpr CpuKernels kScalar = make_table(std::make_index_sequence<kTypeCount>{});

}  // namespace

const CpuKernels& scalar_kernels() { return kScalar; }

}  // namespace celer::kernels
