#include "tools/quantize_model.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/thread_pool.h"
#include "gguf/writer.h"
#include "tensor/dequant.h"
#include "util/error.h"

namespace celer::quant {
namespace {

using TT = TensorType;

// The mixes, as llama.cpp's llama_tensor_get_type (src/llama-quant.cpp, February 2025) builds
// them for dense llama/qwen2 models, written as data:
//  - output.weight (token_embd.weight when there is none) becomes Q6_K for every quantised
//    target except Q8_0, whose output stays Q8_0: its error lands on the logits directly, with
//    no later norm or residual sum to dilute it.
//  - Q4_K_M and Q5_K_M keep attn_v and ffn_down at Q6_K in the more_bits_layer() layers. An
//    untied token embedding stays at the base type.
//  - The float targets are plain conversions: llama.cpp applies no rules to them.
// The one rule left to code is the 70B bump of attn_v (mix_type), which no model celer ships
// reaches but which keeps a large model's file the same as llama.cpp's.
constexpr Target kTargets[] = {
    {"q8_0", TT::Q8_0, TT::Q8_0, TT::Q8_0, 7},     {"q4_0", TT::Q4_0, TT::Q6_K, TT::Q4_0, 2},
    {"q4_k_m", TT::Q4_K, TT::Q6_K, TT::Q6_K, 15},  {"q5_k_m", TT::Q5_K, TT::Q6_K, TT::Q6_K, 17},
    {"q6_k", TT::Q6_K, TT::Q6_K, TT::Q6_K, 18},    {"f16", TT::F16, TT::F16, TT::F16, 1},
    {"bf16", TT::BF16, TT::BF16, TT::BF16, 32},    {"f32", TT::F32, TT::F32, TT::F32, 0},
};

// GGML's quantisation format version: the block layouts of tensor/blocks.h are version 2's.
constexpr uint32_t kQuantizationVersion = 2;

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// Matrices llama.cpp quantises: named "...weight", two or more dimensions, not a norm. Norms
// and biases stay as they are (F32 in every converter's output): they are tiny and every
// element of them is read for every token.
bool is_matrix_weight(const gguf::TensorInfo& t) {
    return t.n_dims >= 2 && t.name.ends_with("weight") && !contains(t.name, "_norm.weight");
}

std::optional<uint32_t> layer_of(std::string_view name) {
    if (!name.starts_with("blk.")) return std::nullopt;
    name.remove_prefix(4);
    uint32_t il = 0;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), il);
    if (ec != std::errc() || end == name.data() + name.size() || *end != '.') return std::nullopt;
    return il;
}

// llama.cpp names these LLM_TYPE_70B (llama with grouped KV heads, qwen2) and gives their
// attn_v more bits: eight query heads share each V head there, so the matrix is an eighth of
// attn_q's size and the extra bit costs almost nothing.
bool is_70b(const ModelFacts& f) {
    if (f.n_layer != 80) return false;
    return f.arch == "qwen2" || (f.arch == "llama" && f.n_head != f.n_head_kv);
}

// The type the mix asks for, before checking that it fits the row length. The layer comes
// from the tensor's name. llama.cpp counts the attn_v and ffn_down tensors it has seen
// instead, but its loader visits tensors sorted by layer number, so the count is the layer.
TT mix_type(const Target& tg, const ModelFacts& f, std::string_view name) {
    if (name == "output.weight" || (!f.has_output && name == "token_embd.weight")) return tg.output;
    const auto il = layer_of(name);
    const bool more = il && more_bits_layer(*il, f.n_layer);
    if (contains(name, ".attn_v.weight")) {
        const TT t = more ? tg.more_bits : tg.base;
        return t == TT::Q4_K && is_70b(f) ? TT::Q5_K : t;
    }
    if (contains(name, ".ffn_down")) return more ? tg.more_bits : tg.base;
    return tg.base;
}

// A row must hold whole blocks. When it cannot hold 256-weight super-blocks, the K type is
// replaced by the 32-weight type at least as accurate: Q5_1 is Q5_K's own 5-bit affine code
// with an exact scale per 32 weights; Q5_0's 5-bit symmetric step (max|x|/16) is no coarser
// than Q4_K's 4-bit affine one ((max - min)/15); there is no 6-bit 32-weight type, so Q6_K
// becomes Q8_0. These are llama.cpp's choices too, so files match what users download
// (Qwen2.5-0.5B's 896-wide rows). Rows that do not hold whole 32-weight blocks stay F16, the
// nearest type every engine reads (llama.cpp does so for K types and refuses the rest).
std::pair<TT, std::string> fit(TT want, uint64_t cols) {
    if (cols % traits(want).block_elems == 0) return {want, ""};
    const auto& w = traits(want);
    if (cols % 32 != 0) return {TT::F16, fmt::format("{}-wide rows do not hold whole 32-weight blocks", cols)};
    const TT t = want == TT::Q4_K ? TT::Q5_0 : want == TT::Q5_K ? TT::Q5_1 : TT::Q8_0;
    return {t, fmt::format("{}-wide rows do not hold whole {}-weight {} blocks", cols, w.block_elems, w.name)};
}

bool is_float(TT t) { return t == TT::F32 || t == TT::F16 || t == TT::BF16; }

void refuse_same_file(const std::string& in, const std::string& out) {
    std::error_code ec;
    if (in == out || std::filesystem::equivalent(in, out, ec))
        throw Error(fmt::format("quantize: {}: OUT is the input file; write the quantised model to another path", out));
}

// Every key of the input, in order, except the two that describe the new tensors (replaced in
// place, or appended when the input lacked them) and general.alignment: the Writer aligns to
// GGUF's default 32 bytes, and another copied value would send readers to the wrong offsets.
void copy_metadata(const gguf::File& in, const Target& target, gguf::Writer& w) {
    bool have_ftype = false, have_qver = false;
    for (const auto& [key, value] : in.metadata()) {
        if (key == "general.alignment") continue;
        if (key == "general.file_type") {
            w.set_u32(key, target.ftype);
            have_ftype = true;
        } else if (key == "general.quantization_version") {
            w.set_u32(key, kQuantizationVersion);
            have_qver = true;
        } else {
            w.copy_value(key, value);
        }
    }
    if (!have_ftype) w.set_u32("general.file_type", target.ftype);
    if (!have_qver) w.set_u32("general.quantization_version", kQuantizationVersion);
}

struct ErrSum {
    double err = 0, energy = 0;
};

// Converts t's rows into `out` and measures the round trip of each row as it goes. The task
// count depends on the row count alone, not on the threads, so the error sums (added in task
// order) print the same for any -t; the bytes never depend on it, each row being encoded alone.
ErrSum convert_tensor(ThreadPool& pool, const gguf::TensorInfo& t, TT to, std::span<uint8_t> out) {
    const uint64_t cols = t.ne[0], rows = t.rows();
    const size_t in_rb = row_bytes(t.type, cols), out_rb = row_bytes(to, cols);
    const int n_tasks = int(std::min<uint64_t>(rows, 64));
    std::vector<ErrSum> part(static_cast<size_t>(n_tasks));
    pool.run(n_tasks, [&](int task, int) {
        std::vector<float> x(cols), y(cols);
        ErrSum s;
        const uint64_t r0 = rows * uint64_t(task) / uint64_t(n_tasks), r1 = rows * uint64_t(task + 1) / uint64_t(n_tasks);
        for (uint64_t r = r0; r < r1; ++r) {
            uint8_t* q = out.data() + r * out_rb;
            dequantize_row(t.type, t.data + r * in_rb, x.data(), cols);
            quantize_row(to, x.data(), q, cols);
            dequantize_row(to, q, y.data(), cols);
            for (uint64_t i = 0; i < cols; ++i) {
                const double d = double(y[i]) - double(x[i]);
                s.err += d * d;
                s.energy += double(x[i]) * double(x[i]);
            }
        }
        part[size_t(task)] = s;
    });
    ErrSum total;
    for (const auto& s : part) total.err += s.err, total.energy += s.energy;
    return total;
}

}  // namespace

std::span<const Target> targets() { return kTargets; }

const Target& find_target(std::string_view name) {
    for (const auto& t : kTargets)
        if (t.name == name) return t;
    std::vector<std::string_view> names;
    for (const auto& t : kTargets) names.push_back(t.name);
    throw Error(fmt::format("quantize: unknown type '{}' (valid: {})", name, fmt::join(names, ", ")));
}

ModelFacts model_facts(const gguf::File& f) {
    ModelFacts m;
    m.arch = std::string(f.get_string("general.architecture").value_or(""));
    auto u32 = [&](const std::string& key) -> uint32_t {
        const gguf::Value* v = f.find(key);  // an array (per-layer head counts) is not a count
        return v && v->is_integer() ? uint32_t(v->num.u) : 0;
    };
    m.n_layer = u32(m.arch + ".block_count");
    m.n_head = u32(m.arch + ".attention.head_count");
    m.n_head_kv = u32(m.arch + ".attention.head_count_kv");
    if (m.n_head_kv == 0) m.n_head_kv = m.n_head;
    uint32_t blocks = 0;  // a file without block_count still names its layers
    for (const auto& t : f.tensors()) {
        if (t.name == "output.weight") m.has_output = true;
        if (const auto il = layer_of(t.name)) blocks = std::max(blocks, *il + 1);
    }
    if (m.n_layer == 0) m.n_layer = blocks;
    return m;
}

Planned plan_tensor(const Target& target, const ModelFacts& facts, const gguf::TensorInfo& t) {
    if (!is_matrix_weight(t)) return {t.type, true, ""};
    auto [to, note] = fit(mix_type(target, facts, t.name), t.ne[0]);
    if (to == t.type) return {to, true, std::move(note)};
    if (!is_float(t.type))
        throw Error(fmt::format("tensor {} is {}; quantize reads F32, F16 or BF16 weights (re-quantising would round "
                                "them twice), so convert from the original checkpoint",
                                t.name, traits(t.type).name));
    return {to, false, std::move(note)};
}

Summary quantize_model(const Options& opt) {
    const Target& target = find_target(opt.type);
    refuse_same_file(opt.in_path, opt.out_path);
    const gguf::File in = gguf::File::open(opt.in_path);
    const ModelFacts facts = model_facts(in);
    const auto& tensors = in.tensors();

    std::vector<Planned> plans;
    gguf::Writer w;
    copy_metadata(in, target, w);
    for (const auto& t : tensors) {
        try {
            plans.push_back(plan_tensor(target, facts, t));
        } catch (const Error& e) {
            throw Error(fmt::format("{}: {}", in.path(), e.what()));
        }
        w.add_tensor(t.name, plans.back().to, std::vector<uint64_t>(t.ne, t.ne + t.n_dims));
    }

    Summary sum;
    sum.n_tensors = tensors.size();
    sum.file_bytes_in = in.file_size();
    double nmse_x_elems = 0;
    const int n_threads = opt.n_threads > 0 ? opt.n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
    ThreadPool pool(n_threads);
    w.write(opt.out_path, [&](size_t i, std::span<uint8_t> out) {
        const gguf::TensorInfo& t = tensors[i];
        const Planned& p = plans[i];
        TensorReport rep{i, tensors.size(), &t, &p, out.size()};
        if (p.copy) {
            if (out.size() != t.n_bytes) throw Error(fmt::format("quantize: {}: {} bytes to copy into {}", t.name, t.n_bytes, out.size()));
            std::memcpy(out.data(), t.data, out.size());
            ++sum.n_copied;
        } else {
            const ErrSum e = convert_tensor(pool, t, p.to, out);
            rep.err = e.err;
            rep.energy = e.energy;
            sum.n_quantised += t.n_elements();
            nmse_x_elems += rep.nmse() * double(t.n_elements());
        }
        if (!p.note.empty()) ++sum.n_fallback;
        if (opt.on_tensor) opt.on_tensor(rep);
    });
    sum.file_bytes_out = std::filesystem::file_size(opt.out_path);
    sum.weighted_nmse = sum.n_quantised ? nmse_x_elems / double(sum.n_quantised) : 0.0;
    return sum;
}

}  // namespace celer::quant
