// celer pull / list / rm: the model cache from the command line. `pull` prints only the model's
// path on stdout, so scripts can write `celer run -m "$(celer pull qwen2.5-coder:1.5b)"`; all
// progress goes to stderr.

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <unistd.h>

#include <fmt/format.h>

#include "cli/commands.h"
#include "hub/hub.h"
#include "util/error.h"

namespace celer::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Download progress on stderr: on a terminal a bar redrawn in place (bytes, MB/s, ETA); in a
// log, a line every 10% so that CI output stays short.
class Progress {
public:
    void update(uint64_t done, uint64_t total) {
        const auto now = Clock::now();
        if (done < base_bytes_ || base_bytes_ == UINT64_MAX) base_bytes_ = done, base_time_ = now;  // start, or restart at 0
        const double secs = std::chrono::duration<double>(now - base_time_).count();
        const double rate = secs > 0.5 ? double(done - base_bytes_) / secs : 0;
        if (tty_) {
            if (done != total && now - last_draw_ < std::chrono::milliseconds(100)) return;
            last_draw_ = now;
            draw_bar(done, total, rate);
            return;
        }
        const int decile = total ? int(done * 10 / total) : 10;
        if (decile <= last_decile_) return;
        last_decile_ = decile;
        fmt::print(stderr, "celer pull: {:3}% {} of {}{}\n", decile * 10, hub::format_size(done), hub::format_size(total),
                   rate > 0 ? fmt::format(", {:.1f} MB/s", rate / 1e6) : "");
    }

    void note(const std::string& msg) {
        end_bar();
        fmt::print(stderr, "celer pull: {}\n", msg);
    }

    void end_bar() {
        if (bar_shown_) std::fputc('\n', stderr);
        bar_shown_ = false;
    }

private:
    void draw_bar(uint64_t done, uint64_t total, double rate) {
        constexpr int kWidth = 30;
        const double frac = total ? double(done) / double(total) : 1.0;
        const int filled = std::clamp(int(frac * kWidth), 0, kWidth);
        std::string eta = "--:--";
        if (rate > 0) {
            const auto s = uint64_t(double(total - done) / rate);
            eta = s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
        }
        // \r returns to the line's start and ESC[K clears what a longer previous frame left.
        const std::string speed = rate > 0 ? fmt::format("{:.1f} MB/s", rate / 1e6) : "-- MB/s";
        fmt::print(stderr, "\r{:3.0f}% [{}{}] {} / {}  {}  ETA {}\x1b[K", frac * 100, std::string(size_t(filled), '#'),
                   std::string(size_t(kWidth - filled), '.'), hub::format_size(done), hub::format_size(total), speed, eta);
        std::fflush(stderr);
        bar_shown_ = true;
    }

    const bool tty_ = ::isatty(STDERR_FILENO) != 0;
    bool bar_shown_ = false;
    uint64_t base_bytes_ = UINT64_MAX;  // bytes present when this transfer started: resumed bytes do not count for speed
    Clock::time_point base_time_{}, last_draw_{};
    int last_decile_ = -1;
};

}  // namespace

int cmd_pull(Args& a) {
    const std::string quant = a.value_or({"--quant", "-q"}, "");
    const std::string revision = a.value_or({"--revision"}, "");
    const auto names = a.positionals();
    a.finish();
    if (names.size() != 1) throw Error(fmt::format("pull needs one model NAME; {}", hub::known_names()));
    const hub::ModelRef ref = hub::resolve_name(names[0], quant, revision);
    Progress progress;
    hub::PullOptions opt;
    opt.note = [&](const std::string& m) { progress.note(m); };
    opt.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
    if (hub::is_pulled(ref)) progress.note(fmt::format("{} is already in the cache", ref.uri()));
    const auto path = hub::pull(ref, opt);
    progress.end_bar();
    fmt::print("{}\n", path.string());
    return 0;
}

int cmd_list(Args& a) {
    a.finish();
    const auto models = hub::list_models();
    if (models.empty()) {
        fmt::print(stderr, "no models in {}; get one with: celer pull qwen2.5-coder:1.5b\n", hub::models_dir().string());
        return 0;
    }
    size_t w_name = 4, w_short = 10;
    for (const auto& m : models) w_name = std::max(w_name, m.name.size()), w_short = std::max(w_short, m.short_name.size());
    fmt::print("{:<{}}  {:<{}}  {:>8}  {}\n", "NAME", w_name, "SHORT NAME", w_short, "SIZE", "PATH");
    for (const auto& m : models)
        fmt::print("{:<{}}  {:<{}}  {:>8}  {}\n", m.name, w_name, m.short_name.empty() ? "-" : m.short_name, w_short,
                   hub::format_size(m.size), m.path.string());
    return 0;
}

int cmd_rm(Args& a) {
    const std::string quant = a.value_or({"--quant", "-q"}, "");
    const auto names = a.positionals();
    a.finish();
    if (names.empty()) throw Error("rm needs a model NAME (a short name, hf://OWNER/REPO/FILE or a name from celer list)");
    for (const auto& name : names) fmt::print(stderr, "removed {}\n", hub::remove_model(name, quant).string());
    return 0;
}

}  // namespace celer::cli
