// celer convert against an independent forward pass written here in Hugging Face's own
// conventions (PyTorch (out, in) weights, rotate_half RoPE, the checkpoint's tensor names): a
// small random checkpoint of each architecture is written as safetensors, converted, and
// celer's reference forward pass on the GGUF must give the logits this one gives from the
// original weights. A wrong name, a missing Q/K permutation or a transposed matrix all fail it.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common.h"
#include "model/model.h"
#include "model/reference.h"
#include "tokenizer/bpe.h"
#include "tools/convert.h"
#include "tools/safetensors.h"
#include "util/error.h"
#include "util/fp16.h"

using namespace celer;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Shape {
    std::string arch;  // Hugging Face class
    uint32_t embd = 64, ff = 96, layers = 2, heads = 4, kv_heads = 2, head_dim = 16, vocab = 272;
    bool tied = false, bias = false, qk_norm = false;
    safetensors::DType dtype = safetensors::DType::F32;
};

using Weights = std::map<std::string, std::vector<float>>;

// Rounds as the checkpoint stores it, so the reference sees exactly what convert reads.
float stored(float v, safetensors::DType t) {
    if (t == safetensors::DType::F16) return fp16_to_fp32(fp32_to_fp16(v));
    if (t == safetensors::DType::BF16) return bf16_to_fp32(fp32_to_bf16(v));
    return v;
}

// Writes DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json}.
Weights write_checkpoint(const fs::path& dir, const Shape& s) {
    fs::create_directories(dir);
    std::mt19937 rng(1234);
    std::vector<safetensors::Output> out;
    Weights w;
    const auto add = [&](const std::string& name, std::vector<uint64_t> shape, float center, float spread) {
        uint64_t n = 1;
        for (auto d : shape) n *= d;
        std::normal_distribution<float> nd(center, spread);
        std::vector<float> v(n);
        for (float& x : v) x = stored(nd(rng), s.dtype);
        out.push_back({name, s.dtype, shape, v});
        w[name] = std::move(v);
    };
    const uint32_t q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
    add("model.embed_tokens.weight", {s.vocab, s.embd}, 0, 1);
    for (uint32_t l = 0; l < s.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {s.embd}, 1, 0.2f);
        add(p + "self_attn.q_proj.weight", {q, s.embd}, 0, 1 / std::sqrt(float(s.embd)));
        add(p + "self_attn.k_proj.weight", {kv, s.embd}, 0, 1 / std::sqrt(float(s.embd)));
        add(p + "self_attn.v_proj.weight", {kv, s.embd}, 0, 1 / std::sqrt(float(s.embd)));
        if (s.bias) {
            add(p + "self_attn.q_proj.bias", {q}, 0, 0.3f);
            add(p + "self_attn.k_proj.bias", {kv}, 0, 0.3f);
            add(p + "self_attn.v_proj.bias", {kv}, 0, 0.3f);
        }
        if (s.qk_norm) {
            add(p + "self_attn.q_norm.weight", {s.head_dim}, 1, 0.2f);
            add(p + "self_attn.k_norm.weight", {s.head_dim}, 1, 0.2f);
        }
        add(p + "self_attn.o_proj.weight", {s.embd, q}, 0, 1 / std::sqrt(float(q)));
        add(p + "post_attention_layernorm.weight", {s.embd}, 1, 0.2f);
        add(p + "mlp.gate_proj.weight", {s.ff, s.embd}, 0, 1 / std::sqrt(float(s.embd)));
        add(p + "mlp.up_proj.weight", {s.ff, s.embd}, 0, 1 / std::sqrt(float(s.embd)));
        add(p + "mlp.down_proj.weight", {s.embd, s.ff}, 0, 1 / std::sqrt(float(s.ff)));
        out.push_back({p + "self_attn.rotary_emb.inv_freq", safetensors::DType::F32, {s.head_dim / 2}, std::vector<float>(s.head_dim / 2, 1)});
    }
    add("model.norm.weight", {s.embd}, 1, 0.2f);
    if (!s.tied) add("lm_head.weight", {s.vocab, s.embd}, 0, 1 / std::sqrt(float(s.embd)));
    // Two files, as a sharded checkpoint: convert reads every *.safetensors in the folder.
    const size_t half = out.size() / 2;
    safetensors::write((dir / "model-00001-of-00002.safetensors").string(), {out.begin(), out.begin() + long(half)});
    safetensors::write((dir / "model-00002-of-00002.safetensors").string(), {out.begin() + long(half), out.end()});

    json cfg = {{"architectures", {s.arch}},   {"hidden_size", s.embd},          {"intermediate_size", s.ff},
                {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv_heads},
                {"rms_norm_eps", 1e-5},        {"rope_theta", 10000.0},          {"max_position_embeddings", 256},
                {"vocab_size", s.vocab},       {"tie_word_embeddings", s.tied}};
    if (s.head_dim * s.heads != s.embd) cfg["head_dim"] = s.head_dim;
    std::ofstream(dir / "config.json") << cfg.dump(2);
    json vocab;
    for (int b = 0; b < 256; ++b) vocab[BpeEncoder::byte_symbol(uint8_t(b))] = b;
    vocab["ab"] = 256;
    json tok = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}}},
                {"added_tokens", {{{"id", 257}, {"content", "<|endoftext|>"}, {"special", true}}}}};
    std::ofstream(dir / "tokenizer.json") << tok.dump();
    std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<|endoftext|>", "add_bos_token": false})";
    return w;
}

void rms_norm(std::vector<double>& x, const float* w, size_t n, double eps) {
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const double r = 1.0 / std::sqrt(ss / double(n) + eps);
    for (size_t i = 0; i < n; ++i) x[i] = x[i] * r * w[i];
}

std::vector<double> linear(const std::vector<float>& w, const std::vector<double>& x, size_t out, const std::vector<float>* bias = nullptr) {
    const size_t in = x.size();
    std::vector<double> y(out);
    for (size_t o = 0; o < out; ++o) {
        double acc = bias ? (*bias)[o] : 0.0;
        for (size_t i = 0; i < in; ++i) acc += double(w[o * in + i]) * x[i];
        y[o] = acc;
    }
    return y;
}

// Logits after each token, computed the way transformers' modeling_llama/qwen2/qwen3 do.
std::vector<std::vector<float>> hf_forward(const Weights& w, const Shape& s, const std::vector<int>& tokens) {
    const double eps = 1e-5, theta = 10000.0;
    const uint32_t d = s.head_dim, half = d / 2, group = s.heads / s.kv_heads;
    std::vector<std::vector<std::vector<double>>> K(s.layers), V(s.layers);
    std::vector<std::vector<float>> logits;
    const auto rope = [&](double* v, int pos) {  // rotate_half: dimension i turns with i + d/2
        for (uint32_t i = 0; i < half; ++i) {
            const double ang = pos * std::pow(theta, -2.0 * i / d);
            const double a = v[i], b = v[i + half];
            v[i] = a * std::cos(ang) - b * std::sin(ang);
            v[i + half] = b * std::cos(ang) + a * std::sin(ang);
        }
    };
    for (size_t pos = 0; pos < tokens.size(); ++pos) {
        const auto& emb = w.at("model.embed_tokens.weight");
        std::vector<double> x(emb.begin() + long(tokens[pos]) * s.embd, emb.begin() + long(tokens[pos] + 1) * s.embd);
        for (uint32_t l = 0; l < s.layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            std::vector<double> h = x;
            rms_norm(h, w.at(p + "input_layernorm.weight").data(), s.embd, eps);
            const auto bias = [&](const char* n) { return s.bias ? &w.at(p + n) : nullptr; };
            std::vector<double> q = linear(w.at(p + "self_attn.q_proj.weight"), h, s.heads * d, bias("self_attn.q_proj.bias"));
            std::vector<double> k = linear(w.at(p + "self_attn.k_proj.weight"), h, s.kv_heads * d, bias("self_attn.k_proj.bias"));
            std::vector<double> v = linear(w.at(p + "self_attn.v_proj.weight"), h, s.kv_heads * d, bias("self_attn.v_proj.bias"));
            for (uint32_t hh = 0; hh < s.heads; ++hh) {
                std::vector<double> qh(q.begin() + hh * d, q.begin() + (hh + 1) * d);
                if (s.qk_norm) rms_norm(qh, w.at(p + "self_attn.q_norm.weight").data(), d, eps);
                rope(qh.data(), int(pos));
                std::copy(qh.begin(), qh.end(), q.begin() + hh * d);
            }
            for (uint32_t hh = 0; hh < s.kv_heads; ++hh) {
                std::vector<double> kh(k.begin() + hh * d, k.begin() + (hh + 1) * d);
                if (s.qk_norm) rms_norm(kh, w.at(p + "self_attn.k_norm.weight").data(), d, eps);
                rope(kh.data(), int(pos));
                std::copy(kh.begin(), kh.end(), k.begin() + hh * d);
            }
            K[l].push_back(k);
            V[l].push_back(v);
            std::vector<double> att(s.heads * d, 0.0);
            for (uint32_t hh = 0; hh < s.heads; ++hh) {
                const uint32_t kvh = hh / group;
                std::vector<double> sc(pos + 1);
                double mx = -1e300;
                for (size_t t = 0; t <= pos; ++t) {
                    double dot = 0;
                    for (uint32_t i = 0; i < d; ++i) dot += q[hh * d + i] * K[l][t][kvh * d + i];
                    sc[t] = dot / std::sqrt(double(d));
                    mx = std::max(mx, sc[t]);
                }
                double sum = 0;
                for (double& e : sc) sum += (e = std::exp(e - mx));
                for (size_t t = 0; t <= pos; ++t)
                    for (uint32_t i = 0; i < d; ++i) att[hh * d + i] += sc[t] / sum * V[l][t][kvh * d + i];
            }
            const std::vector<double> o = linear(w.at(p + "self_attn.o_proj.weight"), att, s.embd);
            for (uint32_t i = 0; i < s.embd; ++i) x[i] += o[i];
            std::vector<double> h2 = x;
            rms_norm(h2, w.at(p + "post_attention_layernorm.weight").data(), s.embd, eps);
            const std::vector<double> g = linear(w.at(p + "mlp.gate_proj.weight"), h2, s.ff);
            std::vector<double> u = linear(w.at(p + "mlp.up_proj.weight"), h2, s.ff);
            for (uint32_t i = 0; i < s.ff; ++i) u[i] *= g[i] / (1 + std::exp(-g[i]));
            const std::vector<double> dn = linear(w.at(p + "mlp.down_proj.weight"), u, s.embd);
            for (uint32_t i = 0; i < s.embd; ++i) x[i] += dn[i];
        }
        rms_norm(x, w.at("model.norm.weight").data(), s.embd, eps);
        const std::vector<double> lg = linear(w.at(s.tied ? "model.embed_tokens.weight" : "lm_head.weight"), x, s.vocab);
        logits.emplace_back(lg.begin(), lg.end());
    }
    return logits;
}

// Converts and compares at every position of a short sequence.
void check(const Shape& s, TensorType out_type, double bound) {
    const fs::path dir = test::scratch_dir() / ("hf-" + s.arch + "-" + std::string(traits(out_type).name) + (s.tied ? "-tied" : ""));
    fs::remove_all(dir);
    const Weights w = write_checkpoint(dir, s);
    convert::Options opt;
    opt.dir = dir.string();
    opt.type = out_type;
    const std::string out = convert::convert_hf(opt, [](std::string_view) {});
    const auto m = load_model(out);
    ReferenceForward ref(*m);
    const std::vector<int> tokens = {97, 256, 12, 200, 5, 98, 33, 257};
    const auto want = hf_forward(w, s, tokens);
    for (size_t p = 0; p < tokens.size(); ++p) {
        const std::vector<float> got = ref.step(TokenId(tokens[p]));
        ASSERT_LT(test::nmse(got, want[p]), bound) << s.arch << " position " << p;
    }
}

}  // namespace

// F32 out: only the order of float sums differs (the reference and this test both run in
// double), so the logits agree to ~1e-12; the bound leaves room for nothing else.
TEST(Convert, Qwen2WithBiasesMatchesTheCheckpoint) {
    Shape s{.arch = "Qwen2ForCausalLM", .bias = true, .dtype = safetensors::DType::BF16};
    check(s, TensorType::F32, 1e-9);
}

TEST(Convert, LlamaQKRowsArePermutedForItsRope) {
    Shape s{.arch = "LlamaForCausalLM", .tied = true};
    check(s, TensorType::F32, 1e-9);
}

TEST(Convert, Qwen3WithQKNormsAndWideHeads) {
    Shape s{.arch = "Qwen3ForCausalLM", .head_dim = 32, .qk_norm = true, .dtype = safetensors::DType::F16};
    check(s, TensorType::F32, 1e-9);
}

// F16 out rounds each weight by at most 2^-11 relative (uniform: variance 2^-22/3 per weight);
// through two layers the logits' NMSE stays near that, ~1e-7; 1e-5 allows 100x.
TEST(Convert, F16AndQ8_0OutputsStayWithinTheirRounding) {
    Shape s{.arch = "Qwen2ForCausalLM", .bias = true};
    check(s, TensorType::F16, 1e-5);
    // Q8_0: absmax/127 steps over 32-value blocks of Gaussian weights, NMSE per weight about
    // (2.2/127)^2/12 = 2.5e-5; 1e-3 allows for the accumulation through two layers.
    check(s, TensorType::Q8_0, 1e-3);
}

TEST(Convert, LlamaRowOrderInterleavesTheHalves) {
    // Head dim 8: GGUF rows 0..7 come from checkpoint rows 0,4,1,5,2,6,3,7.
    const std::vector<uint64_t> want = {0, 4, 1, 5, 2, 6, 3, 7};
    for (uint64_t r = 0; r < 8; ++r) EXPECT_EQ(convert::llama_qk_source_row(r, 8), want[r]);
}

TEST(Convert, BadCheckpointsAreClearErrors) {
    const fs::path dir = test::scratch_dir() / "hf-bad";
    fs::remove_all(dir);
    Shape s{.arch = "Qwen2ForCausalLM"};
    write_checkpoint(dir, s);
    convert::Options opt;
    opt.dir = dir.string();
    const auto fails_with = [&](const std::string& needle) {
        try {
            convert::convert_hf(opt, [](std::string_view) {});
            ADD_FAILURE() << "no error; wanted " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    // An unknown architecture.
    json cfg = json::parse(std::ifstream(dir / "config.json"));
    cfg["architectures"] = {"GPT2LMHeadModel"};
    std::ofstream(dir / "config.json") << cfg.dump();
    fails_with("GPT2LMHeadModel");
    cfg["architectures"] = {"Qwen2ForCausalLM"};
    cfg["vocab_size"] = 300;
    std::ofstream(dir / "config.json") << cfg.dump();
    fails_with("vocab_size 300");
    cfg["vocab_size"] = 272;
    std::ofstream(dir / "config.json") << cfg.dump();
    // A truncated shard.
    const fs::path shard = dir / "model-00002-of-00002.safetensors";
    fs::resize_file(shard, fs::file_size(shard) - 100);
    fails_with("truncated");
    fs::remove(shard);
    fails_with("no model.norm");  // the head's tensors were in the missing shard
}

TEST(Safetensors, MalformedHeadersAreRefused) {
    const auto parse = [](const std::string& header, size_t data_bytes) {
        std::vector<uint8_t> b(8 + header.size() + data_bytes);
        for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t((uint64_t(header.size()) >> (8 * i)) & 0xff);
        std::copy(header.begin(), header.end(), b.begin() + 8);
        return safetensors::File::parse("t.safetensors", b);
    };
    EXPECT_NO_THROW(parse(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 16));
    for (const auto& [h, n] : std::vector<std::pair<std::string, size_t>>{
             {R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 8},     // data cut short
             {R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16},    // size disagrees
             {R"({"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16},      // dtype
             {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 16},       // backwards
             {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16},
             {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]}})", 16},
             {R"([1,2])", 0},
             {R"({"a":)", 0}}) {
        EXPECT_THROW(parse(h, n), Error) << h;
    }
    std::vector<uint8_t> tiny = {200, 0, 0, 0, 0, 0, 0, 0, '{'};
    EXPECT_THROW(safetensors::File::parse("t", tiny), Error);
}
