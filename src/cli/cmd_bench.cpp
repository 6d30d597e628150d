// celer bench: prefill and decode throughput on random tokens, medians over repetitions, and
// the effective weight bandwidth of decode (bytes of weights read per token x tokens/s).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "celer/celer.h"
#include "cli/commands.h"
#include "engine/bandwidth.h"
#include "engine/speculative.h"
#include "util/text_file.h"

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

// The time of one pass over n tokens (a speculative step: the next token and n - 1 guesses) on
// top of `depth` tokens of context, median over reps; the cache is cut back after each.
std::vector<double> verify_times(CpuForward& fwd, std::span<const TokenId> ctx, std::span<const TokenId> tokens,
                                 std::span<const size_t> sizes, int reps) {
    using clock = std::chrono::steady_clock;
    std::vector<float> logits;
    fwd.reset();
    if (!ctx.empty()) fwd.eval(ctx, false, logits);
    const uint32_t base = fwd.n_past();
    std::vector<std::vector<double>> t(sizes.size());
    // Sizes interleaved within each repetition, so that drift (clocks, other load) hits them alike.
    for (int r = 0; r < reps + 1; ++r)
        for (size_t i = 0; i < sizes.size(); ++i) {
            const auto t0 = clock::now();
            if (sizes[i] > 1) fwd.eval_check(tokens.subspan(0, sizes[i]), logits);
            else fwd.eval(tokens.subspan(0, 1), false, logits);
            const double s = std::chrono::duration<double>(clock::now() - t0).count();
            fwd.truncate(base);
            if (r > 0) t[i].push_back(s);  // the first round warms up
        }
    std::vector<double> out;
    for (auto& v : t) out.push_back(median(v));
    return out;
}

struct ReplayTotals {
    size_t pairs = 0, prompt_tokens = 0, tokens = 0, passes = 0;
    spec::SpecStats stats;
    double cost = 0;  // sum over passes of their cost relative to a one-token pass
};

// Edit pairs: DIR/NAME.before and DIR/NAME.after (bench/edit_pairs.sh writes them from a git
// history). The before-text is the prompt, the after-text what the model is taken to produce.
ReplayTotals replay_pairs(const Engine& engine, const std::string& dir, const spec::SpecParams& sp, const spec::PassCost& cost,
                          size_t max_tokens) {
    namespace fs = std::filesystem;
    std::vector<fs::path> befores;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".before") befores.push_back(e.path());
    std::sort(befores.begin(), befores.end());
    if (befores.empty()) throw Error(fmt::format("--replay: no *.before files in {}", dir));
    ReplayTotals tot;
    for (const auto& b : befores) {
        fs::path a = b;
        a.replace_extension(".after");
        if (!fs::exists(a)) continue;
        const auto prompt = engine.tokenize(read_text_file(b.string()), false);
        const auto output = engine.tokenize(read_text_file(a.string()), false);
        if (output.size() < 2 || prompt.size() + output.size() > max_tokens) continue;
        const auto r = spec::replay(sp, prompt, output, &cost);
        ++tot.pairs;
        tot.prompt_tokens += prompt.size();
        tot.tokens += r.tokens;
        tot.passes += r.pass_sizes.size();
        tot.stats.steps += r.stats.steps;
        tot.stats.drafted += r.stats.drafted;
        tot.stats.accepted += r.stats.accepted;
        for (const uint32_t n : r.pass_sizes) tot.cost += cost.relative(n);
    }
    if (tot.pairs == 0) throw Error(fmt::format("--replay: no usable pair in {}", dir));
    return tot;
}

}  // namespace

// --depths D1,D2,...: one context grown from empty through every listed depth in chunks of
// 4,096 tokens; at each depth n_gen tokens are decoded (reps times, the cache cut back after
// each) and the prefill time so far is noted, so one run gives decode speed against depth and
// the time to prefill the longest context. Each repetition at a depth above 0 is paired with
// one at depth 0 just before it, on a second, empty cache: the share of depth-0 speed kept is
// the median of those paired ratios, which a machine whose speed drifts from one minute to the
// next (shared memory bandwidth, clocks) moves far less than a ratio of separate medians.
struct DepthPoint {
    size_t depth = 0;
    double decode_tok_s = 0, prefill_s = 0;  // prefill_s: from an empty context up to depth
    double kept = 1;                         // median of the paired ratios to depth 0
    double depth0_tok_s = 0;                 // median of the paired depth-0 runs
};

std::vector<size_t> parse_depths(const std::string& list) {
    std::vector<size_t> out;
    size_t i = 0;
    while (i <= list.size()) {
        const size_t j = std::min(list.find(',', i), list.size());
        const std::string item = list.substr(i, j - i);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 8)
            throw Error(fmt::format("--depths: '{}' is not a list of token counts such as 0,8192,32768", list));
        out.push_back(size_t(std::stoul(item)));
        i = j + 1;
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

// Greedy decode of n_gen tokens after `start`, one `step` per token; tokens per second.
template <class Step>
double decode_rate(const Step& step, std::span<const TokenId> start, int n_gen, const std::vector<float>& logits) {
    using clock = std::chrono::steady_clock;
    step(start);
    const auto t0 = clock::now();
    for (int i = 0; i < n_gen; ++i) {
        const TokenId next = TokenId(std::max_element(logits.begin(), logits.end()) - logits.begin());
        step(std::span(&next, 1));
    }
    return n_gen / std::chrono::duration<double>(clock::now() - t0).count();
}

std::vector<DepthPoint> depth_sweep(CpuForward& fwd, std::span<const size_t> depths, std::span<const TokenId> ctx,
                                    std::span<const TokenId> start, int n_gen, int reps) {
    using clock = std::chrono::steady_clock;
    std::vector<float> logits;
    std::vector<DepthPoint> out;
    fwd.reset();
    KvCache shallow = fwd.make_cache(uint32_t(n_gen) + uint32_t(start.size()) + 1);
    const auto on_main = [&](std::span<const TokenId> t) { fwd.eval(t, false, logits); };
    const auto on_shallow = [&](std::span<const TokenId> t) {
        const SeqTokens s{&shallow, t};
        fwd.eval_batch(std::span(&s, 1), logits);
    };
    double prefill_s = 0;
    for (const size_t d : depths) {
        while (fwd.n_past() < d) {
            const size_t n = std::min<size_t>(4096, d - fwd.n_past());
            const auto t0 = clock::now();
            fwd.eval(ctx.subspan(fwd.n_past(), n), false, logits);
            prefill_s += std::chrono::duration<double>(clock::now() - t0).count();
        }
        std::vector<double> rates, ratios, base_rates;
        for (int r = 0; r < reps && n_gen > 0; ++r) {
            if (d > 0) {
                base_rates.push_back(decode_rate(on_shallow, start, n_gen, logits));
                shallow.reset();
            }
            rates.push_back(decode_rate(on_main, start, n_gen, logits));
            fwd.truncate(uint32_t(d));
            if (d > 0) ratios.push_back(rates.back() / base_rates.back());
        }
        DepthPoint p{d, rates.empty() ? 0 : median(rates), prefill_s};
        p.kept = ratios.empty() ? 1 : median(ratios);
        p.depth0_tok_s = d > 0 ? (base_rates.empty() ? 0 : median(base_rates)) : p.decode_tok_s;
        out.push_back(p);
    }
    return out;
}

int cmd_bench(Args& a) {
    std::string model = a.value_or({"-m", "--model"}, "");
    EngineOptions eo;
    eo.n_threads = int(a.int_or({"-t", "--threads"}, 0, 0, 1024));
    eo.kernels = a.value_or({"--kernels"}, "");
    eo.kv_type = parse_kv_type(a.value_or({"--kv-type"}, "f16"));
    read_model_flags(a, eo);
    const int n_prompt = int(a.int_or({"--prompt", "-p"}, 512, 0, 1 << 20));
    const int n_gen = int(a.int_or({"--gen", "-n"}, 128, 0, 1 << 20));
    const int depth = int(a.int_or({"--depth", "-d"}, 0, 0, 1 << 20));
    const std::string depths_arg = a.value_or({"--depths"}, "");
    const std::vector<size_t> depths = depths_arg.empty() ? std::vector<size_t>() : parse_depths(depths_arg);
    const int reps = int(a.int_or({"--reps", "-r"}, 3, 1, 1000));
    const bool json = a.flag({"--json"});
    // Speculative decoding: the cost of verifying k guesses against plain decoding, and the
    // replay of edit pairs through the draft source.
    const bool verify = a.flag({"--verify"});
    const std::string replay_dir = a.value_or({"--replay"}, "");
    spec::SpecParams sp;
    sp.source = spec::parse_source(a.value_or({"--spec"}, "suffix"));
    sp.max_draft = int(a.int_or({"--draft"}, sp.max_draft, 1, 63));
    const size_t replay_max = size_t(a.int_or({"--replay-max-tokens"}, 16384, 16, 1 << 24));
    a.finish();
    if (model.empty()) model = demo_model_path();
    const size_t max_pass = size_t(sp.max_draft) + 1;
    eo.n_ctx = uint32_t(depth + std::max<size_t>({size_t(n_prompt), size_t(n_gen + 1), max_pass}) + 1);
    if (!depths.empty()) {
        if (depths.back() + size_t(n_gen) + 2 > (1u << 20)) throw Error("--depths: at most 1,048,576 positions");
        eo.n_ctx = uint32_t(depths.back() + size_t(n_gen) + 2);
    }

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
    const auto ctx = random_tokens(depths.empty() ? depth : int(depths.back()));
    const auto prompt = random_tokens(std::max(n_prompt, 1));
    if (!depths.empty()) {
        const auto points = depth_sweep(fwd, depths, ctx, std::span(prompt.data(), 1), n_gen, reps);
        const double first = points.front().decode_tok_s;
        const double pf = points.back().prefill_s > 0 ? double(points.back().depth) / points.back().prefill_s : 0;
        if (json) {
            std::string rows;
            for (const auto& p : points)
                rows += fmt::format("{}{{\"depth\": {}, \"decode_tok_s\": {:.3f}, \"kept_pct\": {:.1f}, \"depth0_tok_s\": {:.3f}, "
                                    "\"prefill_s\": {:.6f}}}",
                                    rows.empty() ? "" : ", ", p.depth, p.decode_tok_s, 100.0 * p.kept, p.depth0_tok_s, p.prefill_s);
            fmt::print("{{\"model\": \"{}\", \"arch\": \"{}\", \"threads\": {}, \"kernels\": \"{}\", \"kv_type\": \"{}\", \"gen\": {}, "
                       "\"reps\": {}, \"prefill_tok_s\": {:.3f}, \"decode_tok_s\": {:.3f}, \"depths\": [{}]}}\n",
                       json_escape(model), arch_name(m.hp.arch), engine.n_threads(), engine.kernel_target(), kv_type_name(fwd.kv_type()),
                       n_gen, reps, pf, first, rows);
        } else {
            fmt::print("model {} ({}), {} threads, kernels {}, kv {}, {} tokens decoded per depth, {} reps (medians)\n", model,
                       arch_name(m.hp.arch), engine.n_threads(), engine.kernel_target(), kv_type_name(fwd.kv_type()), n_gen, reps);
            for (const auto& p : points) {
                if (p.depth == 0) {
                    fmt::print("depth {:>7}: decode {:>8.2f} tok/s\n", p.depth, p.decode_tok_s);
                    continue;
                }
                fmt::print("depth {:>7}: decode {:>8.2f} tok/s, {:5.1f}% of depth 0 (paired runs; depth 0 beside them: {:.2f} tok/s), "
                           "prefilled in {:.1f} s\n",
                           p.depth, p.decode_tok_s, 100.0 * p.kept, p.depth0_tok_s, p.prefill_s);
            }
        }
        return 0;
    }
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

    // Pass sizes 1, 2, 4, 8, 16 (and max_draft + 1): the relative cost table speculation uses.
    std::vector<size_t> sizes;
    std::vector<double> vt;
    spec::PassCost cost;
    if (verify || !replay_dir.empty()) {
        for (size_t n = 1; n < max_pass; n *= 2) sizes.push_back(n);
        sizes.push_back(max_pass);
        vt = verify_times(fwd, ctx, prompt.size() >= max_pass ? std::span<const TokenId>(prompt) : random_tokens(int(max_pass)),
                          sizes, std::max(reps, 5) * 3);
        for (size_t i = 0; i < sizes.size(); ++i) cost.observe(sizes[i], vt[i]);
    }
    std::optional<ReplayTotals> rp;
    if (!replay_dir.empty()) rp = replay_pairs(engine, replay_dir, sp, cost, replay_max);
    // Effective decode speed with speculation: tokens over the passes' time, each pass costing
    // its measured relative cost times a plain decode step.
    const double speedup = rp ? double(rp->tokens) / rp->cost : 0;

    if (json) {
        std::string extra;
        if (!sizes.empty()) {
            extra += ", \"verify\": [";
            for (size_t i = 0; i < sizes.size(); ++i)
                extra += fmt::format("{}{{\"tokens\": {}, \"ms\": {:.3f}, \"relative\": {:.3f}}}", i ? ", " : "", sizes[i], vt[i] * 1e3,
                                     vt[i] / vt[0]);
            extra += "]";
        }
        if (rp)
            extra += fmt::format(
                ", \"replay\": {{\"source\": \"{}\", \"max_draft\": {}, \"pairs\": {}, \"prompt_tokens\": {}, \"tokens\": {}, \"passes\": {}, "
                "\"drafted\": {}, \"accepted\": {}, \"acceptance\": {:.4f}, \"mean_accepted_per_guess\": {:.3f}, \"tokens_per_pass\": {:.3f}, "
                "\"speedup\": {:.3f}, \"effective_decode_tok_s\": {:.3f}}}",
                spec::source_name(sp.source), sp.max_draft, rp->pairs, rp->prompt_tokens, rp->tokens, rp->passes, rp->stats.drafted,
                rp->stats.accepted, rp->stats.acceptance(), rp->stats.accepted_per_step(), double(rp->tokens) / double(rp->passes),
                speedup, dc * speedup);
        fmt::print(
            "{{\"model\": \"{}\", \"arch\": \"{}\", \"threads\": {}, \"kernels\": \"{}\", \"kv_type\": \"{}\", \"prompt\": {}, \"gen\": {}, \"depth\": {}, "
            "\"reps\": {}, \"prefill_tok_s\": {:.3f}, \"decode_tok_s\": {:.3f}, \"decode_weight_gb_s\": {:.3f}, "
            "\"weight_bytes_per_token\": {}, \"measured_bandwidth_gb_s\": {:.3f}, \"decode_roofline_tok_s\": {:.3f}, "
            "\"decode_roofline_pct\": {:.1f}, \"f16_as_bf16\": {}{}}}\n",
            json_escape(model), arch_name(m.hp.arch), engine.n_threads(), engine.kernel_target(), kv_type_name(fwd.kv_type()), n_prompt, n_gen, depth, reps, pf, dc,
            gbps, m.weight_bytes_per_token(), peak, roofline, 100.0 * dc / roofline, eo.f16_as_bf16, extra);
    } else {
        fmt::print("model {} ({}), {} threads, kernels {}{}, depth {}, {} reps (medians)\n", model, arch_name(m.hp.arch),
                   engine.n_threads(), engine.kernel_target(), eo.f16_as_bf16 ? " (F16 weights rounded to bf16)" : "", depth, reps);
        fmt::print("prefill {:>6} tokens: {:>10.2f} tok/s\n", n_prompt, pf);
        fmt::print("decode  {:>6} tokens: {:>10.2f} tok/s  ({:.2f} GB/s of weights, {:.0f}% of the {:.1f} tok/s roofline at a measured {:.1f} GB/s)\n",
                   n_gen, dc, gbps, 100.0 * dc / roofline, roofline, peak);
        for (size_t i = 0; i < sizes.size(); ++i)
            fmt::print("verify  {:>6} tokens: {:>10.3f} ms per pass ({:.3f}x one token)\n", sizes[i], vt[i] * 1e3, vt[i] / vt[0]);
        if (rp)
            fmt::print("replay  {} pairs ({} prompt tokens, {} produced), {} source, draft <= {}: {} passes, {:.1f}% of {} guessed tokens taken, "
                       "{:.2f} taken per guess, {:.2f} tokens per pass, {:.2f}x plain decoding = {:.1f} tok/s\n",
                       rp->pairs, rp->prompt_tokens, rp->tokens, spec::source_name(sp.source), sp.max_draft, rp->passes,
                       100.0 * rp->stats.acceptance(), rp->stats.drafted, rp->stats.accepted_per_step(),
                       double(rp->tokens) / double(rp->passes), speedup, dc * speedup);
    }
    return 0;
}

}  // namespace celer::cli
