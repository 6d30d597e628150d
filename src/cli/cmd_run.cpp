#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "celer/celer.h"
#include "cli/commands.h"
#include "tools/synth.h"
#include "util/text_file.h"

namespace celer::cli {
std::string demo_model_path() {
    namespace fs = std::filesystem;
    fs::path dir;
    if (const char* h = std::getenv("CELER_HOME")) dir = h;
    else if (const char* x = std::getenv("XDG_CACHE_HOME")) dir = fs::path(x) / "celer";
    else if (const char* home = std::getenv("HOME")) dir = fs::path(home) / ".cache" / "celer";
    else dir = fs::temp_directory_path() / "celer";
    const fs::path file = dir / "demo-tiny-llama-q8_0.gguf";
    if (!fs::exists(file)) {
        fs::create_directories(dir);
        fmt::print(stderr, "celer: writing the demo model to {}\n", file.string());
        synth::Options o;
        o.shape = "tiny-llama";
        o.type = "q8_0";
        synth::write_model(o, file.string());
    }
    fmt::print(stderr,
               "celer: no model given (-m): using the built-in demo model, which has random weights and writes\n"
               "       gibberish. For real output download a GGUF code model (for example Qwen2.5-Coder-1.5B-Instruct\n"
               "       Q4_K_M) and run: celer run -m FILE.gguf -p \"...\"\n");
    return file.string();
}

void read_model_flags(Args& a, EngineOptions& eo) {
    eo.rope_scaling = a.value_or({"--rope-scaling"}, "");
    eo.rope_scale = a.num_or({"--rope-scale"}, 0, 0, 1024);
    eo.yarn_orig_ctx = uint32_t(a.int_or({"--yarn-orig-ctx"}, 0, 0, 1 << 24));
    eo.f16_as_bf16 = a.flag({"--f16-as-bf16"});
}

int cmd_run(Args& a) {
    std::string model = a.value_or({"-m", "--model"}, "");
    std::string prompt = a.value_or({"-p", "--prompt"}, "");
    if (auto f = a.value({"-f", "--file"})) prompt = read_text_file(*f);
    const int n_predict = int(a.int_or({"-n", "--n-predict"}, 128, 0, 1 << 20));
    EngineOptions eo;
    eo.n_threads = int(a.int_or({"-t", "--threads"}, 0, 0, 1024));
    eo.n_ctx = uint32_t(a.int_or({"-c", "--ctx-size"}, 0, 0, 1 << 20));
    eo.kernels = a.value_or({"--kernels"}, "");
    eo.kv_type = parse_kv_type(a.value_or({"--kv-type"}, "f16"));
    read_model_flags(a, eo);
    SamplerParams sp;
    sp.temperature = float(a.num_or({"--temp"}, sp.temperature, 0, 100));
    sp.top_k = int(a.int_or({"--top-k"}, sp.top_k, 0, 1 << 24));
    sp.top_p = float(a.num_or({"--top-p"}, sp.top_p, 0, 1));
    sp.min_p = float(a.num_or({"--min-p"}, sp.min_p, 0, 1));
    sp.repeat_penalty = float(a.num_or({"--repeat-penalty"}, sp.repeat_penalty, 0.01, 100));
    sp.presence_penalty = float(a.num_or({"--presence-penalty"}, 0, -100, 100));
    sp.frequency_penalty = float(a.num_or({"--frequency-penalty"}, 0, -100, 100));
    sp.penalty_last_n = int(a.int_or({"--repeat-last-n"}, sp.penalty_last_n, -1, 1 << 20));
    // -1 (the default) draws a seed from the clock, as llama.cpp does; it is printed for replay.
    const long long seed = a.int_or({"--seed", "-s"}, -1, -1, std::numeric_limits<long long>::max());
    sp.seed = seed >= 0 ? uint64_t(seed) : uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) >> 1;
    spec::SpecParams spec;
    const std::string source = a.value_or({"--spec"}, "");
    spec.max_draft = int(a.int_or({"--draft"}, spec.max_draft, 1, spec::kMaxDraft));
    spec.adaptive = !a.flag({"--draft-fixed"});
    eo.draft_model = a.value_or({"--draft-model", "-md"}, "");
    // A draft model given alone means drafting with it.
    spec.source = spec::parse_source(!source.empty() ? source : eo.draft_model.empty() ? "off" : "model");
    if (spec.source == spec::Source::Model && eo.draft_model.empty()) throw Error("--spec model needs --draft-model FILE");
    a.finish();
    if (model.empty()) model = demo_model_path();

    Engine engine(model, eo);
    const auto ids = engine.tokenize(prompt, true);
    if (ids.empty()) throw Error("the prompt is empty and the model adds no BOS token; give -p TEXT");
    fmt::print(stderr, "celer: {} ({}), {} threads, kernels {}{}, {} KV cache of {} tokens ({:.1f} MiB), seed {}\n", model,
               arch_name(engine.model().hp.arch), engine.n_threads(), engine.kernel_target(),
               eo.f16_as_bf16 ? " (F16 weights rounded to bf16)" : "", kv_type_name(engine.forward().kv_type()),
               engine.forward().n_ctx(), double(engine.forward().kv_bytes_per_token()) * engine.forward().n_ctx() / (1 << 20), sp.seed);
    const auto st = engine.generate(ids, n_predict, sp, [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return true;
    }, spec);
    std::fflush(stdout);
    fmt::print(stderr, "\nceler: prompt {} tokens in {:.1f} ms ({:.1f} tok/s); generated {} tokens in {:.1f} ms ({:.1f} tok/s){}\n",
               st.n_prompt, st.prefill_s * 1e3, st.n_prompt / std::max(st.prefill_s, 1e-9), st.n_generated, st.decode_s * 1e3,
               st.n_generated / std::max(st.decode_s, 1e-9), st.hit_eos ? ", stopped at end of text" : "");
    if (spec.source != spec::Source::Off)
        fmt::print(stderr, "celer: speculation ({}): {} passes, {} guessed, {} accepted ({:.1f}%), {:.2f} tokens per pass\n",
                   spec::source_name(spec.source), st.passes, st.spec.drafted, st.spec.accepted, 100.0 * st.spec.acceptance(),
                   st.passes ? double(st.n_generated) / double(st.passes) : 0.0);
    return 0;
}

}  // namespace celer::cli
