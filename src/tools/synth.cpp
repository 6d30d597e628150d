#include "tools/synth.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include <fmt/format.h>

#include "engine/thread_pool.h"
#include "gguf/writer.h"
#include "tensor/dequant.h"
#include "tools/arch_meta.h"
#include "tools/quantize_model.h"
#include "tokenizer/vocab_spec.h"
#include "util/error.h"

namespace celer::synth {
namespace {

// Shapes from each model's published config.json.
const std::vector<Shape> kShapes = {
    {"qwen2.5-coder-0.5b", Arch::Qwen2, 151936, 896, 24, 14, 2, 64, 4864, 32768, 1e6f, 1e-6f, 1, true},
    {"qwen2.5-coder-1.5b", Arch::Qwen2, 151936, 1536, 28, 12, 2, 128, 8960, 32768, 1e6f, 1e-6f, 1, true},
    {"qwen2.5-coder-7b", Arch::Qwen2, 152064, 3584, 28, 28, 4, 128, 18944, 32768, 1e6f, 1e-6f, 1, false},
    {"deepseek-coder-1.3b", Arch::Llama, 32256, 2048, 24, 16, 16, 128, 5504, 16384, 1e5f, 1e-6f, 4, false},
    {"deepseek-coder-6.7b", Arch::Llama, 32256, 4096, 32, 32, 32, 128, 11008, 16384, 1e5f, 1e-6f, 4, false},
    {"qwen3-0.6b", Arch::Qwen3, 151936, 1024, 28, 16, 8, 128, 3072, 40960, 1e6f, 1e-6f, 1, true},
    // Tiny shapes for tests: K-quant friendly widths (multiples of 256), GQA, scaled RoPE.
    {"tiny-llama", Arch::Llama, 512, 256, 2, 4, 2, 64, 512, 1024, 1e4f, 1e-5f, 2, false},
    {"tiny-qwen2", Arch::Qwen2, 512, 256, 2, 4, 1, 64, 768, 1024, 1e6f, 1e-6f, 1, true},
    {"tiny-qwen3", Arch::Qwen3, 512, 256, 2, 4, 2, 128, 512, 1024, 1e6f, 1e-6f, 1, false},
    // One head of 64 over one layer, Qwen2.5-Coder's RoPE base: the 131,072-token test's model.
    {"tiny-long", Arch::Qwen2, 512, 64, 1, 1, 1, 64, 256, 32768, 1e6f, 1e-6f, 1, true},
    // Smallest file that is still a complete model (fuzzing seeds): 259 byte/special tokens + 1.
    {"micro-llama", Arch::Llama, 260, 32, 1, 2, 1, 16, 64, 64, 1e4f, 1e-5f, 1, false},
};

struct TypePlan {
    std::string_view name;
    TensorType base;
    bool k_mix;       // Q4_K_M / Q5_K_M: Q6_K for the output and for some attn_v / ffn_down
    uint32_t ftype;   // llama.cpp's general.file_type
};

const TypePlan kPlans[] = {
    {"f32", TensorType::F32, false, 0},    {"f16", TensorType::F16, false, 1},   {"bf16", TensorType::BF16, false, 32},
    {"q8_0", TensorType::Q8_0, false, 7},  {"q4_0", TensorType::Q4_0, false, 2}, {"q4_1", TensorType::Q4_1, false, 3},
    {"q5_0", TensorType::Q5_0, false, 8},  {"q5_1", TensorType::Q5_1, false, 9},  {"q4_k", TensorType::Q4_K, false, 14},
    {"q5_k", TensorType::Q5_K, false, 16}, {"q6_k", TensorType::Q6_K, false, 18}, {"q4_k_m", TensorType::Q4_K, true, 15},
    {"q5_k_m", TensorType::Q5_K, true, 17},
};

// A row length that does not divide into 256-weight super-blocks falls back to the 32-weight
// type llama.cpp's quantizer picks, so that files match what users download (Qwen2.5-0.5B's
// 896-wide rows make most of its Q4_K_M file Q5_0).
TensorType fit(TensorType t, uint64_t cols) {
    if (cols % traits(t).block_elems == 0) return t;
    if (cols % 32 != 0) return TensorType::F16;
    switch (t) {
        case TensorType::Q4_K: return TensorType::Q5_0;
        case TensorType::Q5_K: return TensorType::Q5_1;
        default: return TensorType::Q8_0;
    }
}

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t hash_name(std::string_view s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
    return h;
}

struct Gen {
    float center, spread;  // uniform in center +- spread
};

struct TensorPlan {
    std::string name;
    TensorType type;
    uint64_t cols, rows;
    Gen gen;
};

VocabSpec generated_vocab(uint32_t n_vocab) {
    VocabSpec v;
    v.model = "llama";
    v.pre = "default";
    auto add = [&](std::string s, int32_t t) {
        v.tokens.push_back(std::move(s));
        v.scores.push_back(-float(v.tokens.size()));
        v.types.push_back(t);
    };
    add("<unk>", 2);
    add("<s>", 3);
    add("</s>", 3);
    for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 6);
    // Word pieces: "\u2581" + letters, then bare letters, enumerated short to long.
    const std::string space = "\xE2\x96\x81";
    for (int len = 1; v.tokens.size() < n_vocab && len <= 3; ++len) {
        int count = 1;
        for (int i = 0; i < len; ++i) count *= 26;
        for (int prefix = 0; prefix < 2; ++prefix)
            for (int k = 0; k < count && v.tokens.size() < n_vocab; ++k) {
                std::string s = prefix ? space : "";
                int x = k;
                for (int i = 0; i < len; ++i, x /= 26) s += char('a' + x % 26);
                add(s, 1);
            }
    }
    while (v.tokens.size() < n_vocab) add(fmt::format("[PAD{}]", v.tokens.size()), 5);
    v.unk = 0;
    v.bos = 1;
    v.eos = 2;
    v.add_bos = true;
    return v;
}

// Copies every tokenizer.* entry of another GGUF, padding the token arrays to n_vocab rows as
// real Qwen files do (the embedding has more rows than the tokenizer has tokens).
uint32_t copied_vocab(gguf::Writer& w, const gguf::File& src, uint32_t n_vocab) {
    const auto tokens = src.get_string_array("tokenizer.ggml.tokens");
    if (tokens.empty()) src.fail("tokenizer.ggml.tokens", "missing: not a file with a vocabulary");
    const uint32_t n = std::max<uint32_t>(n_vocab, uint32_t(tokens.size()));
    std::vector<std::string> pads;
    for (size_t i = tokens.size(); i < n; ++i) pads.push_back(fmt::format("[PAD{}]", i));
    for (const auto& [key, value] : src.metadata()) {
        if (!key.starts_with("tokenizer.")) continue;
        if (key == "tokenizer.ggml.tokens") {
            std::vector<std::string_view> v(tokens.begin(), tokens.end());
            v.insert(v.end(), pads.begin(), pads.end());
            w.set_string_array(key, v);
        } else if (key == "tokenizer.ggml.scores") {
            auto v = src.get_f32_array(key);
            v.resize(n, -1e9f);
            w.set_f32_array(key, v);
        } else if (key == "tokenizer.ggml.token_type") {
            auto v = src.get_i32_array(key);
            v.resize(n, 4);  // user-defined, as the padding entries of real files are
            w.set_i32_array(key, v);
        } else {
            w.copy_value(key, value);
        }
    }
    return n;
}

}  // namespace

const std::vector<Shape>& shapes() { return kShapes; }

const Shape* find_shape(std::string_view name) {
    for (const auto& s : kShapes)
        if (s.name == name) return &s;
    return nullptr;
}

std::vector<std::string_view> type_names() {
    std::vector<std::string_view> v;
    for (const auto& p : kPlans) v.push_back(p.name);
    return v;
}

void write_model(const Options& opt, const std::string& out_path) {
    const Shape* sp = find_shape(opt.shape);
    if (!sp) {
        std::vector<std::string_view> names;
        for (const auto& s : kShapes) names.push_back(s.name);
        throw Error(fmt::format("synth: unknown shape '{}' (known: {})", opt.shape, fmt::join(names, ", ")));
    }
    const TypePlan* plan = nullptr;
    for (const auto& p : kPlans)
        if (p.name == opt.type) plan = &p;
    if (!plan) throw Error(fmt::format("synth: unknown type '{}' (known: {})", opt.type, fmt::join(type_names(), ", ")));
    Shape s = *sp;
    if (opt.n_layer) s.n_layer = *opt.n_layer;
    const char* a = arch_name(s.arch);

    gguf::Writer w;
    w.set_string("general.architecture", a);
    w.set_string("general.name", fmt::format("celer synthetic {} {}", s.name, plan->name));
    w.set_u32("general.file_type", plan->ftype);
    w.set_u32("general.quantization_version", 2);
    ArchMeta meta{a, s.n_ctx, s.n_embd, s.n_ff, s.n_layer, s.n_head, s.n_head_kv, s.head_dim, s.rope_base, s.rms_eps, "", 1.0f, 0};
    if (!opt.rope_scaling.empty()) {
        meta.rope_scaling = opt.rope_scaling;
        meta.rope_factor = opt.rope_scale;
        meta.rope_orig_ctx = opt.rope_orig_ctx;
    } else if (s.rope_linear != 1.0f) {
        meta.rope_scaling = "linear";
        meta.rope_factor = s.rope_linear;
    }
    write_arch_metadata(w, meta);
    uint32_t n_vocab = s.n_vocab;
    if (opt.vocab_from.empty()) {
        write_vocab_spec(w, generated_vocab(n_vocab), n_vocab);
    } else if (opt.vocab_from.ends_with(".json")) {
        const VocabSpec spec = vocab_spec_from_hf(opt.vocab_from);
        n_vocab = std::max<uint32_t>(n_vocab, uint32_t(spec.tokens.size()));
        write_vocab_spec(w, spec, n_vocab);
    } else {
        const gguf::File src = gguf::File::open(opt.vocab_from);
        n_vocab = copied_vocab(w, src, n_vocab);
    }

    // Matrices get std 1/sqrt(cols) so activations keep unit scale through the layers.
    auto mat = [&](std::string name, TensorType t, uint64_t cols, uint64_t rows) {
        return TensorPlan{std::move(name), fit(t, cols), cols, rows, {0.0f, std::sqrt(3.0f / float(cols))}};
    };
    auto vec = [&](std::string name, uint64_t n, Gen g) { return TensorPlan{std::move(name), TensorType::F32, n, 1, g}; };
    const TensorType base = plan->base;
    const TensorType hi = plan->k_mix ? TensorType::Q6_K : base;
    std::vector<TensorPlan> plans;
    plans.push_back(mat("token_embd.weight", s.tied ? hi : base, s.n_embd, n_vocab));
    plans.back().gen = {0.0f, 1.0f};
    plans.push_back(vec("output_norm.weight", s.n_embd, {1.0f, 0.2f}));
    if (!s.tied) plans.push_back(mat("output.weight", hi, s.n_embd, n_vocab));
    const uint32_t q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
    for (uint32_t il = 0; il < s.n_layer; ++il) {
        const std::string p = fmt::format("blk.{}.", il);
        const TensorType mixed = plan->k_mix && quant::more_bits_layer(il, s.n_layer) ? TensorType::Q6_K : base;
        plans.push_back(vec(p + "attn_norm.weight", s.n_embd, {1.0f, 0.2f}));
        plans.push_back(mat(p + "attn_q.weight", base, s.n_embd, q_dim));
        plans.push_back(mat(p + "attn_k.weight", base, s.n_embd, kv_dim));
        plans.push_back(mat(p + "attn_v.weight", mixed, s.n_embd, kv_dim));
        if (s.arch == Arch::Qwen2) {
            plans.push_back(vec(p + "attn_q.bias", q_dim, {0.0f, 0.1f}));
            plans.push_back(vec(p + "attn_k.bias", kv_dim, {0.0f, 0.1f}));
            plans.push_back(vec(p + "attn_v.bias", kv_dim, {0.0f, 0.1f}));
        }
        if (s.arch == Arch::Qwen3) {
            plans.push_back(vec(p + "attn_q_norm.weight", s.head_dim, {1.0f, 0.2f}));
            plans.push_back(vec(p + "attn_k_norm.weight", s.head_dim, {1.0f, 0.2f}));
        }
        plans.push_back(mat(p + "attn_output.weight", base, q_dim, s.n_embd));
        plans.push_back(vec(p + "ffn_norm.weight", s.n_embd, {1.0f, 0.2f}));
        plans.push_back(mat(p + "ffn_gate.weight", base, s.n_embd, s.n_ff));
        plans.push_back(mat(p + "ffn_up.weight", base, s.n_embd, s.n_ff));
        plans.push_back(mat(p + "ffn_down.weight", mixed, s.n_ff, s.n_embd));
    }
    for (const auto& t : plans) {
        std::vector<uint64_t> ne = {t.cols};
        if (t.rows > 1) ne.push_back(t.rows);
        w.add_tensor(t.name, t.type, ne);
    }

    ThreadPool pool(opt.n_threads > 0 ? opt.n_threads : default_thread_count());
    w.write(out_path, [&](size_t i, std::span<uint8_t> out) {
        const TensorPlan& t = plans[i];
        const size_t rb = row_bytes(t.type, t.cols);
        const uint64_t seed = hash_name(t.name, opt.seed);
        const int n_tasks = int(std::min<uint64_t>(t.rows, 64));
        pool.run(n_tasks, [&](int task, int) {
            std::vector<float> row(t.cols);
            const uint64_t r0 = t.rows * uint64_t(task) / uint64_t(n_tasks), r1 = t.rows * uint64_t(task + 1) / uint64_t(n_tasks);
            for (uint64_t r = r0; r < r1; ++r) {
                uint64_t st = seed ^ (r * 0x9e3779b97f4a7c15ull);
                for (auto& v : row) v = t.gen.center + t.gen.spread * (float(splitmix(st) >> 40) * (2.0f / 16777216.0f) - 1.0f);
                quantize_row(t.type, row.data(), out.data() + r * rb, t.cols);
            }
        });
    });
}

}  // namespace celer::synth
