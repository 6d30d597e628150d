// celer bench: prefill and decode throughput on random tokens, medians over repetitions, and
// the effective weight bandwidth of decode (bytes of weights read per token x tokens/s).
#include <algorithm>
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "celer/celer.h"
#include "cli/commands.h"
#include "engine/bandwidth.h"

namespace celer::cli {
namespace {

std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (uint8_t(c) < 0x20) {
            out += fmt::format("\\u{:04x}", int(c));
            continue;
        }
        out += c;
    }
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int cmd_bench(Args& a) {
    std::string model = a.value_or({"-m", "--model"}, "");
    EngineOptions eo;
    eo.n_threads = int(a.int_or({"-t", "--threads"}, 0, 0, 1024));
    eo.kernels = a.value_or({"--kernels"}, "");
    eo.kv_type = parse_kv_type(a.value_or({"--kv-type"}, "f16"));
    const int n_prompt = int(a.int_or({"--prompt", "-p"}, 512, 0, 1 << 20));
    const int n_gen = int(a.int_or({"--gen", "-n"}, 128, 0, 1 << 20));
    const int depth = int(a.int_or({"--depth", "-d"}, 0, 0, 1 << 20));
    const int reps = int(a.int_or({"--reps", "-r"}, 3, 1, 1000));
    const bool json = a.flag({"--json"});
    a.finish();
    if (model.empty()) model = demo_model_path();
    eo.n_ctx = uint32_t(depth + std::max(n_prompt, n_gen + 1) + 1);

    using clock = std::chrono::steady_clock;
    Engine engine(model, eo);
    const Model& m = engine.model();
    CpuForward& fwd = engine.forward();
    std::mt19937 rng(42);
    std::uniform_int_distribution<TokenId> pick(0, TokenId(m.hp.n_vocab) - 1);
    auto random_tokens = [&](int n) {
        std::vector<TokenId> v(static_cast<size_t>(n));
        for (auto& t : v) t = pick(rng);
        return v;
    };
    const auto ctx = random_tokens(depth);
    const auto prompt = random_tokens(std::max(n_prompt, 1));
    std::vector<double> prefill, decode;
    std::vector<float> logits;
    // As llama-bench: prefill of the prompt and decode of n_gen tokens are separate runs, each
    // on top of `depth` tokens of context (decode does not follow the prompt).
    for (int r = 0; r < reps; ++r) {
        if (n_prompt > 0) {
            fwd.reset();
            if (depth > 0) fwd.eval(ctx, false, logits);
            const auto t0 = clock::now();
            fwd.eval(prompt, false, logits);
            prefill.push_back(n_prompt / std::chrono::duration<double>(clock::now() - t0).count());
        }
        if (n_gen > 0) {
            fwd.reset();
            if (depth > 0) fwd.eval(ctx, false, logits);
            fwd.eval(std::span(prompt.data(), 1), false, logits);
            const auto t0 = clock::now();
            for (int i = 0; i < n_gen; ++i) {
                const TokenId next = TokenId(std::max_element(logits.begin(), logits.end()) - logits.begin());
                fwd.eval(std::span(&next, 1), false, logits);
            }
            decode.push_back(n_gen / std::chrono::duration<double>(clock::now() - t0).count());
        }
    }
    const double pf = prefill.empty() ? 0 : median(prefill);
    const double dc = decode.empty() ? 0 : median(decode);
    const double gbps = dc * double(m.weight_bytes_per_token()) / 1e9;
    // The roofline: decode cannot beat bandwidth / bytes per token. Measured with the best
    // kernels this CPU runs, whatever target the benchmark itself was forced to.
    ThreadPool bw_pool(engine.n_threads());
    const double peak = measure_read_bandwidth(bw_pool, kernels::select_kernels());
    const double roofline = peak * 1e9 / double(m.weight_bytes_per_token());
    if (json) {
        fmt::print(
            "{{\"model\": \"{}\", \"arch\": \"{}\", \"threads\": {}, \"kernels\": \"{}\", \"kv_type\": \"{}\", \"prompt\": {}, \"gen\": {}, \"depth\": {}, "
            "\"reps\": {}, \"prefill_tok_s\": {:.3f}, \"decode_tok_s\": {:.3f}, \"decode_weight_gb_s\": {:.3f}, "
            "\"weight_bytes_per_token\": {}, \"measured_bandwidth_gb_s\": {:.3f}, \"decode_roofline_tok_s\": {:.3f}, "
            "\"decode_roofline_pct\": {:.1f}}}\n",
            json_escape(model), arch_name(m.hp.arch), engine.n_threads(), engine.kernel_target(), kv_type_name(fwd.kv_type()), n_prompt, n_gen, depth, reps, pf, dc,
            gbps, m.weight_bytes_per_token(), peak, roofline, 100.0 * dc / roofline);
    } else {
        fmt::print("model {} ({}), {} threads, kernels {}, depth {}, {} reps (medians)\n", model, arch_name(m.hp.arch),
                   engine.n_threads(), engine.kernel_target(), depth, reps);
        fmt::print("prefill {:>6} tokens: {:>10.2f} tok/s\n", n_prompt, pf);
        fmt::print("decode  {:>6} tokens: {:>10.2f} tok/s  ({:.2f} GB/s of weights, {:.0f}% of the {:.1f} tok/s roofline at a measured {:.1f} GB/s)\n",
                   n_gen, dc, gbps, 100.0 * dc / roofline, roofline, peak);
    }
    return 0;
}

}  // namespace celer::cli
