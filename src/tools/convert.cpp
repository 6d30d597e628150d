#include "tools/convert.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gguf/writer.h"
#include "tensor/dequant.h"
#include "tokenizer/vocab_spec.h"
#include "tools/arch_meta.h"
#include "tools/safetensors.h"
#include "util/error.h"
#include "util/fp16.h"

namespace celer::convert {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Config {
    std::string arch;  // GGUF's name: llama, qwen2, qwen3
    uint32_t n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0, n_ctx = 0;
    float rms_eps = 1e-6f, rope_theta = 10000.0f;
    std::string rope_scaling;  // "", "linear", "yarn"
    float rope_factor = 1.0f;
    uint32_t rope_orig_ctx = 0;
};

json read_json(const fs::path& p) {
    std::ifstream in(p);
    if (!in) throw Error(fmt::format("{}: cannot read", p.string()));
    const json j = json::parse(in, nullptr, false);
    if (!j.is_object()) throw Error(fmt::format("{}: not a JSON object", p.string()));
    return j;
}

uint32_t get_u32(const json& c, const char* key, const fs::path& file, std::optional<uint32_t> def = std::nullopt) {
    if (!c.contains(key) || c[key].is_null()) {
        if (def) return *def;
        throw Error(fmt::format("{}: {}: missing", file.string(), key));
    }
    if (!c[key].is_number_unsigned() || c[key].get<uint64_t>() == 0 || c[key].get<uint64_t>() > (1u << 30))
        throw Error(fmt::format("{}: {}: expected a positive integer", file.string(), key));
    return c[key].get<uint32_t>();
}

Config read_config(const fs::path& file) {
    const json c = read_json(file);
    Config cfg;
    std::string hf_arch;
    if (c.contains("architectures") && c["architectures"].is_array() && !c["architectures"].empty() && c["architectures"][0].is_string())
        hf_arch = c["architectures"][0];
    if (hf_arch == "LlamaForCausalLM" || hf_arch == "MistralForCausalLM")
        cfg.arch = "llama";
    else if (hf_arch == "Qwen2ForCausalLM")
        cfg.arch = "qwen2";
    else if (hf_arch == "Qwen3ForCausalLM")
        cfg.arch = "qwen3";
    else
        throw Error(fmt::format("{}: architectures: '{}' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                                "Qwen3ForCausalLM are)",
                                file.string(), hf_arch));
    cfg.n_embd = get_u32(c, "hidden_size", file);
    cfg.n_ff = get_u32(c, "intermediate_size", file);
    cfg.n_layer = get_u32(c, "num_hidden_layers", file);
    cfg.n_head = get_u32(c, "num_attention_heads", file);
    cfg.n_head_kv = get_u32(c, "num_key_value_heads", file, cfg.n_head);
    if (cfg.n_embd % cfg.n_head != 0 && !c.contains("head_dim")) throw Error(fmt::format("{}: hidden_size is not a multiple of num_attention_heads", file.string()));
    cfg.head_dim = get_u32(c, "head_dim", file, cfg.n_embd / cfg.n_head);
    if (cfg.n_head % cfg.n_head_kv != 0) throw Error(fmt::format("{}: num_attention_heads is not a multiple of num_key_value_heads", file.string()));
    cfg.n_vocab = get_u32(c, "vocab_size", file);
    cfg.n_ctx = get_u32(c, "max_position_embeddings", file, 2048);
    if (c.contains("rms_norm_eps") && c["rms_norm_eps"].is_number()) cfg.rms_eps = c["rms_norm_eps"].get<float>();
    if (c.contains("rope_theta") && c["rope_theta"].is_number()) cfg.rope_theta = c["rope_theta"].get<float>();
    if (c.contains("rope_scaling") && c["rope_scaling"].is_object()) {
        const json& s = c["rope_scaling"];
        const std::string type = s.value("rope_type", s.value("type", std::string()));
        if (type == "yarn" || type == "linear") {
            cfg.rope_scaling = type;
            if (s.contains("factor") && s["factor"].is_number()) cfg.rope_factor = s["factor"].get<float>();
            cfg.rope_orig_ctx = get_u32(s, "original_max_position_embeddings", file, 0);
        } else if (!type.empty() && type != "default") {
            throw Error(fmt::format("{}: rope_scaling: type '{}' is not supported (linear, yarn are)", file.string(), type));
        }
    }
    return cfg;
}

// Where a checkpoint tensor goes in GGUF; nullopt for tensors GGUF does not keep.
std::optional<std::string> gguf_name(const std::string& hf) {
    static const std::map<std::string, std::string> top = {
        {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"}, {"lm_head.weight", "output.weight"}};
    if (const auto it = top.find(hf); it != top.end()) return it->second;
    static const std::regex layer(R"(model\.layers\.(\d+)\.(.+))");
    std::smatch m;
    if (!std::regex_match(hf, m, layer)) return std::nullopt;
    static const std::map<std::string, std::string> per_layer = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.q_norm.weight", "attn_q_norm.weight"},
        {"self_attn.k_norm.weight", "attn_k_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    const std::string rest = m[2];
    if (rest.ends_with("rotary_emb.inv_freq")) return std::string();  // recomputed from rope_theta
    const auto it = per_layer.find(rest);
    if (it == per_layer.end()) return std::nullopt;
    return fmt::format("blk.{}.{}", m[1].str(), it->second);
}

struct Planned {
    const safetensors::Tensor* src;
    std::string name;
    TensorType type;
    uint64_t cols, rows;
    uint32_t permute_head_dim = 0;  // llama Q/K: the rows are reordered per head
};

void write_metadata(gguf::Writer& w, const Config& c, const std::string& name, TensorType type) {
    w.set_string("general.architecture", c.arch);
    w.set_string("general.name", name);
    const uint32_t ftype = type == TensorType::F32 ? 0 : type == TensorType::F16 ? 1 : type == TensorType::BF16 ? 32 : 7;  // llama.cpp's enum
    w.set_u32("general.file_type", ftype);
    write_arch_metadata(w, {c.arch, c.n_ctx, c.n_embd, c.n_ff, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.rope_theta, c.rms_eps,
                            c.rope_scaling, c.rope_factor, c.rope_orig_ctx});
}

void fill_tensor(const Planned& p, std::span<uint8_t> out) {
    std::vector<float> row(p.cols);
    const size_t row_out = row_bytes(p.type, p.cols);
    for (uint64_t r = 0; r < p.rows; ++r) {
        uint64_t src_row = r;
        if (p.permute_head_dim) {
            const uint64_t head = r / p.permute_head_dim;
            src_row = head * p.permute_head_dim + llama_qk_source_row(r % p.permute_head_dim, p.permute_head_dim);
        }
        p.src->read(src_row * p.cols, p.cols, row.data());
        uint8_t* dst = out.data() + r * row_out;
        if (p.type == TensorType::F32) {
            std::memcpy(dst, row.data(), p.cols * 4);
        } else if (p.type == TensorType::F16 || p.type == TensorType::BF16) {
            for (uint64_t i = 0; i < p.cols; ++i) {
                const uint16_t h = p.type == TensorType::F16 ? fp32_to_fp16(row[i]) : fp32_to_bf16(row[i]);
                std::memcpy(dst + 2 * i, &h, 2);
            }
        } else {
            quantize_row(p.type, row.data(), dst, p.cols);
        }
    }
}

std::string lower(std::string_view s) {
    std::string r(s);
    for (char& c : r) c = char(std::tolower(static_cast<unsigned char>(c)));
    return r;
}

}  // namespace

uint64_t llama_qk_source_row(uint64_t gguf_row, uint32_t head_dim) {
    const uint64_t half = head_dim / 2;
    return (gguf_row % 2) * half + gguf_row / 2;
}

std::string convert_hf(const Options& opt, const std::function<void(std::string_view)>& log) {
    const fs::path dir(opt.dir);
    if (!fs::is_directory(dir)) throw Error(fmt::format("{}: not a folder (give a Hugging Face checkpoint folder)", opt.dir));
    const Config cfg = read_config(dir / "config.json");
    if (opt.type != TensorType::F32 && opt.type != TensorType::F16 && opt.type != TensorType::BF16 && opt.type != TensorType::Q8_0)
        throw Error("convert: --type must be f32, f16, bf16 or q8_0 (celer quantize makes the others from the result)");

    std::vector<std::unique_ptr<safetensors::File>> files;
    std::vector<fs::path> paths;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".safetensors") paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());
    if (paths.empty())
        throw Error(fmt::format("{}: no *.safetensors files (PyTorch .bin checkpoints are not read: they are pickles, which can run code)", opt.dir));
    for (const fs::path& p : paths) files.push_back(std::make_unique<safetensors::File>(p.string()));

    std::map<std::string, Planned> planned;
    for (const auto& f : files) {
        for (const safetensors::Tensor& t : f->tensors()) {
            const std::optional<std::string> name = gguf_name(t.name);
            if (!name) throw Error(fmt::format("{}: tensor {}: not part of a {} model celer knows", f->path(), t.name, cfg.arch));
            if (name->empty()) continue;
            if (planned.count(*name)) throw Error(fmt::format("{}: tensor {} appears twice in the checkpoint", f->path(), t.name));
            if (t.shape.empty() || t.shape.size() > 2) throw Error(fmt::format("{}: tensor {}: expected 1 or 2 dimensions", f->path(), t.name));
            Planned p{&t, *name, TensorType::F32, t.shape.back(), t.shape.size() == 2 ? t.shape[0] : 1};
            if (t.shape.size() == 2) {
                p.type = opt.type;
                // A row must hold whole blocks; an odd row length stays in 16 bits.
                if (opt.type == TensorType::Q8_0 && p.cols % 32 != 0) p.type = TensorType::F16;
            }
            const bool qk = name->ends_with("attn_q.weight") || name->ends_with("attn_k.weight");
            if (cfg.arch == "llama" && qk) p.permute_head_dim = cfg.head_dim;
            planned.emplace(*name, p);
        }
    }
    for (const auto& [need, hf] : {std::pair{"token_embd.weight", "model.embed_tokens.weight"}, std::pair{"output_norm.weight", "model.norm.weight"}})
        if (!planned.count(need)) throw Error(fmt::format("{}: the checkpoint has no {} (a shard missing?)", opt.dir, hf));
    for (uint32_t l = 0; l < cfg.n_layer; ++l)
        for (const char* t : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"})
            if (!planned.count(fmt::format("blk.{}.{}.weight", l, t)))
                throw Error(fmt::format("{}: layer {} has no {} weight (a shard missing?)", opt.dir, l, t));
    const Planned& emb = planned.at("token_embd.weight");
    if (emb.cols != cfg.n_embd || emb.rows != cfg.n_vocab)
        throw Error(fmt::format("{}: embed_tokens is {}x{}, config.json says vocab_size {} x hidden_size {}", opt.dir, emb.rows, emb.cols,
                                cfg.n_vocab, cfg.n_embd));

    const fs::path tok = dir / "tokenizer.json";
    if (!fs::exists(tok)) throw Error(fmt::format("{}: no tokenizer.json", opt.dir));
    const VocabSpec spec = vocab_spec_from_hf(tok.string());
    if (spec.tokens.size() > cfg.n_vocab)
        throw Error(fmt::format("{}: the tokenizer has {} tokens, more than the model's vocab_size {}", tok.string(), spec.tokens.size(), cfg.n_vocab));

    const std::string folder = fs::absolute(dir).lexically_normal().filename().string().empty()
                                   ? fs::absolute(dir).lexically_normal().parent_path().filename().string()
                                   : fs::absolute(dir).lexically_normal().filename().string();
    const std::string out = opt.out.empty() ? (dir / fmt::format("{}-{}.gguf", folder, lower(traits(opt.type).name))).string() : opt.out;
    gguf::Writer w;
    write_metadata(w, cfg, folder, opt.type);
    write_vocab_spec(w, spec, cfg.n_vocab);
    // Order as llama.cpp writes: embeddings, then layers in order, then the head.
    std::vector<const Planned*> order;
    for (const auto& [name, p] : planned) order.push_back(&p);
    const auto rank = [](const std::string& n) {
        if (n == "token_embd.weight") return std::make_pair(-1, n);
        if (n.starts_with("blk.")) return std::make_pair(std::stoi(n.substr(4)), n);
        return std::make_pair(1 << 30, n);
    };
    std::sort(order.begin(), order.end(), [&](const Planned* a, const Planned* b) { return rank(a->name) < rank(b->name); });
    for (const Planned* p : order) {
        if (p->rows == 1 && p->src->shape.size() == 1)
            w.add_tensor(p->name, p->type, {p->cols});
        else
            w.add_tensor(p->name, p->type, {p->cols, p->rows});
    }
    w.write(out, [&](size_t i, std::span<uint8_t> bytes) {
        const Planned& p = *order[i];
        log(fmt::format("{:<28} {:>6} x {:<6} {} -> {}", p.name, p.rows, p.cols, safetensors::dtype_name(p.src->dtype), traits(p.type).name));
        fill_tensor(p, bytes);
    });
    return out;
}

}  // namespace celer::convert
