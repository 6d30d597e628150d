#include <limits>

#include <fmt/format.h>

#include "cli/commands.h"
#include "tools/synth.h"
#include "util/error.h"

namespace celer::cli {

int cmd_synth(Args& a) {
    synth::Options o;
    const bool list = a.flag({"--list"});
    o.shape = a.value_or({"--shape"}, "");
    o.type = a.value_or({"--type"}, o.type);
    o.vocab_from = a.value_or({"--vocab"}, "");
    o.seed = uint64_t(a.int_or({"--seed"}, 1, 0, std::numeric_limits<long long>::max()));
    o.n_threads = int(a.int_or({"-t", "--threads"}, 0, 0, 1024));
    if (const auto l = a.int_or({"--layers"}, 0, 0, 1024)) o.n_layer = uint32_t(l);
    o.rope_scaling = a.value_or({"--rope-scaling"}, "");
    o.rope_scale = float(a.num_or({"--rope-scale"}, 1, 1, 1024));
    o.rope_orig_ctx = uint32_t(a.int_or({"--yarn-orig-ctx"}, 0, 0, 1 << 24));
    const std::string out = a.value_or({"-o", "--output"}, "");
    a.finish();
    if (list) {
        for (const auto& s : synth::shapes())
            fmt::print("{:<22} {:<6} vocab {:>6} embd {:>5} layers {:>2} heads {:>2}/{:<2} ff {:>5}\n", s.name, arch_name(s.arch),
                       s.n_vocab, s.n_embd, s.n_layer, s.n_head, s.n_head_kv, s.n_ff);
        fmt::print("types: {}\n", fmt::join(synth::type_names(), " "));
        return 0;
    }
    if (o.shape.empty() || out.empty()) throw Error("synth needs --shape NAME and -o OUT.gguf (--list shows the shapes)");
    synth::write_model(o, out);
    fmt::print(stderr, "celer: wrote {}\n", out);
    return 0;
}

}  // namespace celer::cli
