#include <map>

#include <fmt/format.h>

#include "cli/commands.h"
#include "engine/kv_cache.h"
#include "model/model.h"
#include "util/error.h"

namespace celer::cli {

int cmd_info(Args& a) {
    const auto path = a.value({"-m", "--model"});
    EngineOptions eo;
    read_model_flags(a, eo);
    a.finish();
    if (!path) throw Error("info needs -m FILE");
    const auto m = load_model(*path);
    apply_rope_options(m->hp, eo);
    const HParams& hp = m->hp;
    const auto& f = m->file;
    fmt::print("file:          {} (GGUF v{}, {:.2f} MiB)\n", f.path(), f.version(), double(f.file_size()) / (1 << 20));
    if (auto name = f.get_string("general.name")) fmt::print("name:          {}\n", *name);
    fmt::print("architecture:  {}\n", arch_name(hp.arch));
    fmt::print("vocab:         {} tokens ({} tokenizer)\n", hp.n_vocab, m->vocab.model_name());
    fmt::print("layers:        {}\n", hp.n_layer);
    fmt::print("embedding:     {}\n", hp.n_embd);
    fmt::print("heads:         {} query, {} key/value (GQA {}), head dim {}\n", hp.n_head, hp.n_head_kv, hp.n_head / hp.n_head_kv,
               hp.head_dim);
    fmt::print("feed-forward:  {}\n", hp.n_ff);
    fmt::print("context:       {} (trained)\n", hp.n_ctx_train);
    fmt::print("rope:          {} layout, base {}, {} dims, scaling {}", hp.rope_layout == RopeLayout::NeoX ? "neox" : "normal",
               hp.rope_base, hp.n_rot, rope_scaling_name(hp.rope_scaling));
    if (hp.rope_scaling != RopeScaling::None) fmt::print(" x{}", hp.rope_scale);
    if (hp.rope_scaling == RopeScaling::Yarn)
        fmt::print(" over {} original positions (context up to {}), attention factor {:.4f}", hp.rope_orig_ctx,
                   uint64_t(double(hp.rope_orig_ctx) * hp.rope_scale), hp.rope_attn_factor);
    fmt::print("\n");
    fmt::print("rms eps:       {}\n", hp.rms_eps);
    fmt::print("output:        {}\n", m->tied_output ? "tied to the token embedding" : "separate matrix");

    std::map<std::string_view, std::pair<int, uint64_t>> by_type;
    uint64_t total = 0, params = 0;
    for (const auto& t : f.tensors()) {
        auto& e = by_type[traits(t.type).name];
        ++e.first;
        e.second += t.n_bytes;
        total += t.n_bytes;
        params += t.n_elements();
    }
    fmt::print("parameters:    {:.3f} M in {} tensors, {:.2f} MiB ({:.2f} bits per weight)\n", double(params) / 1e6,
               f.tensors().size(), double(total) / (1 << 20), 8.0 * double(total) / double(params));
    for (const auto& [name, e] : by_type)
        fmt::print("  {:<6} {:>4} tensors {:>10.2f} MiB\n", name, e.first, double(e.second) / (1 << 20));
    const uint64_t per_tok = m->weight_bytes_per_token();
    const auto kv_bytes = [&](KvType t) {
        return uint64_t(hp.n_layer) * hp.n_head_kv * (kv_row_bytes(t, hp.head_dim) + kv_row_bytes(t, hp.head_dim_v, true));
    };
    const bool q8 = hp.head_dim % 32 == 0 && hp.head_dim_v % 32 == 0;
    fmt::print("read per generated token: {:.2f} MiB of weights + {} bytes of KV cache per token of context (f16 KV; f32: {}{})\n",
               double(per_tok) / (1 << 20), kv_bytes(KvType::F16), kv_bytes(KvType::F32),
               q8 ? fmt::format("; q8_0: {}; q8_0-q4_0: {}", kv_bytes(KvType::Q8_0), kv_bytes(KvType::Q8_0_Q4_0)) : std::string());
    const uint64_t ctx = hp.n_ctx_train;
    fmt::print("KV cache for the trained context of {} tokens: {:.1f} MiB f16{}\n", ctx, double(kv_bytes(KvType::F16) * ctx) / (1 << 20),
               q8 ? fmt::format(", {:.1f} MiB q8_0, {:.1f} MiB q8_0-q4_0", double(kv_bytes(KvType::Q8_0) * ctx) / (1 << 20),
                                 double(kv_bytes(KvType::Q8_0_Q4_0) * ctx) / (1 << 20))
                  : std::string());
    if (hp.rope_scaling == RopeScaling::Yarn || hp.rope_scaling == RopeScaling::Linear || hp.rope_scaling == RopeScaling::Ntk) {
        const uint64_t scaled = uint64_t(double(hp.rope_orig_ctx ? hp.rope_orig_ctx : hp.n_ctx_train) * hp.rope_scale);
        fmt::print("KV cache for the scaled context of {} tokens: {:.1f} MiB f16{}\n", scaled, double(kv_bytes(KvType::F16) * scaled) / (1 << 20),
                   q8 ? fmt::format(", {:.1f} MiB q8_0, {:.1f} MiB q8_0-q4_0", double(kv_bytes(KvType::Q8_0) * scaled) / (1 << 20),
                                     double(kv_bytes(KvType::Q8_0_Q4_0) * scaled) / (1 << 20))
                      : std::string());
    }
    return 0;
}

}  // namespace celer::cli
