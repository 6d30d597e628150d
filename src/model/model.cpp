#include "model/model.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tensor/dequant.h"
#include "util/error.h"

namespace celer {

const char* arch_name(Arch a) {
    switch (a) {
        case Arch::Llama: return "llama";
        case Arch::Qwen2: return "qwen2";
        case Arch::Qwen3: return "qwen3";
    }
    return "?";
}

namespace {

class Loader {
public:
    Loader(Model& m) : m_(m), f_(m.file) {}

    void run() {
        read_hparams();
        m_.vocab = Vocab::load(f_);
        read_weights();
    }

private:
    uint32_t req_u32(const std::string& key, uint32_t lo, uint32_t hi) {
        const auto v = f_.get_uint(key);
        if (!v) f_.fail(key, "missing");
        if (*v < lo || *v > hi) f_.fail(key, fmt::format("value {} is outside [{}, {}]", *v, lo, hi));
        return uint32_t(*v);
    }
    uint32_t opt_u32(const std::string& key, uint32_t def, uint32_t lo, uint32_t hi) {
        return f_.find(key) ? req_u32(key, lo, hi) : def;
    }

    void read_hparams() {
        HParams& hp = m_.hp;
        const auto arch = f_.get_string("general.architecture");
        if (!arch) f_.fail("general.architecture", "missing");
        if (*arch == "llama") hp.arch = Arch::Llama;
        else if (*arch == "qwen2") hp.arch = Arch::Qwen2;
        else if (*arch == "qwen3") hp.arch = Arch::Qwen3;
        else f_.fail("general.architecture", fmt::format("unknown architecture '{}' (supported: llama, qwen2, qwen3)", *arch));
        const std::string a(*arch);
        hp.rope_layout = hp.arch == Arch::Llama ? RopeLayout::Normal : RopeLayout::NeoX;

        hp.n_embd = req_u32(a + ".embedding_length", 1, 1 << 16);
        hp.n_layer = req_u32(a + ".block_count", 1, 1024);
        hp.n_ff = req_u32(a + ".feed_forward_length", 1, 1 << 18);
        hp.n_head = req_u32(a + ".attention.head_count", 1, 1024);
        hp.n_head_kv = opt_u32(a + ".attention.head_count_kv", hp.n_head, 1, hp.n_head);
        if (hp.n_head % hp.n_head_kv != 0)
            f_.fail(a + ".attention.head_count_kv", fmt::format("{} heads do not divide into {} KV groups", hp.n_head, hp.n_head_kv));
        hp.n_ctx_train = opt_u32(a + ".context_length", 2048, 1, 1u << 24);
        const uint32_t default_hd = hp.n_embd / hp.n_head;
        hp.head_dim = opt_u32(a + ".attention.key_length", default_hd, 2, 1024);
        hp.head_dim_v = opt_u32(a + ".attention.value_length", hp.head_dim, 1, 1024);
        if (hp.head_dim % 2 != 0) f_.fail(a + ".attention.key_length", "head dimension must be even for RoPE");
        hp.n_rot = opt_u32(a + ".rope.dimension_count", hp.head_dim, 2, hp.head_dim);
        if (hp.n_rot % 2 != 0) f_.fail(a + ".rope.dimension_count", "must be even");
        hp.rms_eps = float(f_.get_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
        if (!(hp.rms_eps > 0 && hp.rms_eps < 1)) f_.fail(a + ".attention.layer_norm_rms_epsilon", "must be in (0, 1)");
        hp.rope_base = float(f_.get_float(a + ".rope.freq_base").value_or(10000.0));
        if (!(hp.rope_base > 1)) f_.fail(a + ".rope.freq_base", "must be greater than 1");

        const auto scaling = f_.get_string(a + ".rope.scaling.type");
        const double factor = f_.get_float(a + ".rope.scaling.factor").value_or(f_.get_float(a + ".rope.scale_linear").value_or(1.0));
        RopeScaling type = scaling ? RopeScaling::None : factor != 1.0 ? RopeScaling::Linear : RopeScaling::None;
        if (scaling) {
            try {
                type = parse_rope_scaling(*scaling);
            } catch (const Error& e) {
                f_.fail(a + ".rope.scaling.type", e.what());
            }
        }
        const uint32_t orig = opt_u32(a + ".rope.scaling.original_context_length", 0, 0, 1u << 24);
        try {
            set_rope_scaling(hp, type, factor, orig);
        } catch (const Error& e) {
            f_.fail(a + ".rope.scaling.factor", e.what());
        }
        if (type == RopeScaling::Yarn) {
            hp.yarn_beta_fast = float(f_.get_float(a + ".rope.scaling.yarn_beta_fast").value_or(hp.yarn_beta_fast));
            hp.yarn_beta_slow = float(f_.get_float(a + ".rope.scaling.yarn_beta_slow").value_or(hp.yarn_beta_slow));
            if (!(hp.yarn_beta_fast > hp.yarn_beta_slow && hp.yarn_beta_slow > 0))
                f_.fail(a + ".rope.scaling.yarn_beta_fast", "YaRN needs beta_fast > beta_slow > 0");
            if (const auto af = f_.get_float(a + ".rope.scaling.attn_factor"); af && *af > 0) hp.rope_attn_factor = float(*af);
        }
    }

    const gguf::TensorInfo& tensor(const std::string& name) {
        const gguf::TensorInfo* t = f_.find_tensor(name);
        if (!t) f_.fail(name, "tensor missing");
        return *t;
    }

    Weight matrix(const std::string& name, uint64_t cols, uint64_t rows) {
        const auto& t = tensor(name);
        if (t.ne[0] != cols || t.rows() != rows || t.ne[2] * t.ne[3] != 1)
            f_.fail(name, fmt::format("shape [{}, {}, {}, {}], expected [{}, {}]", t.ne[0], t.ne[1], t.ne[2], t.ne[3], cols, rows));
        Weight w;
        w.type = t.type;
        w.cols = cols;
        w.rows = rows;
        w.row_bytes = row_bytes(t.type, cols);
        w.data = t.data;
        return w;
    }

    std::vector<float> vec(const std::string& name, uint64_t n) {
        const auto& t = tensor(name);
        if (t.n_elements() != n || t.ne[0] != n) f_.fail(name, fmt::format("has {} elements, expected a vector of {}", t.n_elements(), n));
        std::vector<float> out(n);
        dequantize_row(t.type, t.data, out.data(), n);
        return out;
    }

    std::vector<float> opt_vec(const std::string& name, uint64_t n) { return f_.find_tensor(name) ? vec(name, n) : std::vector<float>{}; }

    void read_weights() {
        HParams& hp = m_.hp;
        const auto& emb = tensor("token_embd.weight");
        hp.n_vocab = uint32_t(std::min<uint64_t>(emb.ne[1], 1u << 24));
        if (hp.n_vocab != m_.vocab.size())
            f_.fail("token_embd.weight", fmt::format("{} rows but the tokenizer has {} tokens", emb.ne[1], m_.vocab.size()));
        m_.tok_embd = matrix("token_embd.weight", hp.n_embd, hp.n_vocab);
        m_.output_norm = vec("output_norm.weight", hp.n_embd);
        m_.tied_output = f_.find_tensor("output.weight") == nullptr;
        m_.output = m_.tied_output ? m_.tok_embd : matrix("output.weight", hp.n_embd, hp.n_vocab);
        if (f_.find_tensor("rope_freqs.weight")) m_.rope_freq_factors = vec("rope_freqs.weight", hp.n_rot / 2);

        m_.layers.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            LayerWeights& L = m_.layers[il];
            const std::string p = fmt::format("blk.{}.", il);
            L.attn_norm = vec(p + "attn_norm.weight", hp.n_embd);
            L.wq = matrix(p + "attn_q.weight", hp.n_embd, hp.q_dim());
            L.wk = matrix(p + "attn_k.weight", hp.n_embd, hp.kv_dim());
            L.wv = matrix(p + "attn_v.weight", hp.n_embd, hp.v_dim());
            L.wo = matrix(p + "attn_output.weight", uint64_t(hp.n_head) * hp.head_dim_v, hp.n_embd);
            L.bq = opt_vec(p + "attn_q.bias", hp.q_dim());
            L.bk = opt_vec(p + "attn_k.bias", hp.kv_dim());
            L.bv = opt_vec(p + "attn_v.bias", hp.v_dim());
            if (hp.arch == Arch::Qwen2 && (L.bq.empty() || L.bk.empty() || L.bv.empty()))
                f_.fail(p + "attn_q.bias", "qwen2 needs Q, K and V biases");
            L.q_norm = opt_vec(p + "attn_q_norm.weight", hp.head_dim);
            L.k_norm = opt_vec(p + "attn_k_norm.weight", hp.head_dim);
            if (hp.arch == Arch::Qwen3 && (L.q_norm.empty() || L.k_norm.empty()))
                f_.fail(p + "attn_q_norm.weight", "qwen3 needs Q and K norms");
            L.ffn_norm = vec(p + "ffn_norm.weight", hp.n_embd);
            L.w_gate = matrix(p + "ffn_gate.weight", hp.n_embd, hp.n_ff);
            L.w_up = matrix(p + "ffn_up.weight", hp.n_embd, hp.n_ff);
            L.w_down = matrix(p + "ffn_down.weight", hp.n_ff, hp.n_embd);
        }
    }

    Model& m_;
    const gguf::File& f_;
};

}  // namespace

uint64_t Model::weight_bytes_per_token() const {
    uint64_t total = output.n_bytes() + tok_embd.row_bytes;
    for (const auto& L : layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) total += w->n_bytes();
    return total;
}

std::unique_ptr<Model> load_model(gguf::File file) {
    auto m = std::make_unique<Model>(Model{std::move(file), {}, {}, {}, {}, {}, false, {}, {}});
    Loader(*m).run();
    return m;
}

RopeScaling parse_rope_scaling(std::string_view s) {
    if (s == "none") return RopeScaling::None;
    if (s == "linear") return RopeScaling::Linear;
    if (s == "ntk" || s == "ntk-aware") return RopeScaling::Ntk;
    if (s == "yarn") return RopeScaling::Yarn;
    throw Error(fmt::format("RoPE scaling '{}' is not supported (supported: none, linear, ntk, yarn)", s));
}

const char* rope_scaling_name(RopeScaling s) {
    switch (s) {
        case RopeScaling::None: return "none";
        case RopeScaling::Linear: return "linear";
        case RopeScaling::Ntk: return "ntk";
        case RopeScaling::Yarn: return "yarn";
    }
    return "?";
}

void set_rope_scaling(HParams& hp, RopeScaling type, double factor, uint32_t orig_ctx) {
    if (!(factor >= 1.0 && factor <= 1024.0)) throw Error(fmt::format("RoPE scaling factor {} is outside [1, 1024]", factor));
    // Undo an earlier setting (a flag overriding the file).
    if (hp.rope_scaling == RopeScaling::Ntk) hp.rope_base = float(double(hp.rope_base) / std::pow(double(hp.rope_scale), double(hp.n_rot) / (hp.n_rot - 2.0)));
    hp.rope_scaling = type == RopeScaling::None ? RopeScaling::None : type;
    hp.rope_scale = type == RopeScaling::None ? 1.0f : float(factor);
    hp.rope_freq_scale = type == RopeScaling::Linear ? float(1.0 / factor) : 1.0f;
    hp.rope_attn_factor = 1.0f;
    hp.rope_orig_ctx = 0;
    if (type == RopeScaling::Ntk && hp.n_rot > 2) hp.rope_base = float(double(hp.rope_base) * std::pow(factor, double(hp.n_rot) / (hp.n_rot - 2.0)));
    if (type == RopeScaling::Yarn) {
        hp.rope_orig_ctx = orig_ctx ? orig_ctx : hp.n_ctx_train;
        if (hp.rope_orig_ctx < 2) throw Error(fmt::format("YaRN needs the original context length (got {})", hp.rope_orig_ctx));
        hp.rope_attn_factor = factor > 1.0 ? float(0.1 * std::log(factor) + 1.0) : 1.0f;
    }
}

std::unique_ptr<Model> load_model(const std::string& path) { return load_model(gguf::File::open(path)); }

}  // namespace celer
