// celer quantize IN.gguf OUT.gguf TYPE [-t THREADS]: one line per tensor on stderr (its type
// change and the error it took), a total at the end, and OUT's path on stdout for scripts.
#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "cli/commands.h"
#include "tools/quantize_model.h"
#include "util/error.h"

namespace celer::cli {
namespace {

std::string shape_of(const gguf::TensorInfo& t) {
    std::string s = fmt::format("{}", t.ne[0]);
    for (int d = 1; d < t.n_dims; ++d) s += fmt::format(" x {}", t.ne[d]);
    return s;
}

void print_tensor(const quant::TensorReport& r) {
    const auto& t = *r.info;
    const std::string err = r.plan->copy ? "copied" : fmt::format("NMSE {:.2e}", r.nmse());
    fmt::print(stderr, "[{:>4}/{}] {:<32} {:>16}  {:>4} -> {:<4}  {}{}\n", r.index + 1, r.count, t.name, shape_of(t),
               traits(t.type).name, traits(r.plan->to).name, err, r.plan->note.empty() ? "" : "  (fallback: " + r.plan->note + ")");
}

}  // namespace

int cmd_quantize(Args& a) {
    quant::Options opt;
    opt.n_threads = int(a.int_or({"-t", "--threads"}, 0, 0, 1024));
    const std::vector<std::string> pos = a.positionals();
    a.finish();
    if (pos.size() != 3) throw Error("usage: celer quantize IN.gguf OUT.gguf TYPE [-t THREADS]");
    opt.in_path = pos[0];
    opt.out_path = pos[1];
    opt.type = pos[2];
    opt.on_tensor = print_tensor;
    const auto t0 = std::chrono::steady_clock::now();
    const quant::Summary s = quant::quantize_model(opt);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    constexpr double kMiB = 1 << 20;
    fmt::print(stderr,
               "celer: {} {:.1f} MiB -> {:.1f} MiB ({:.2f}x); {} of {} tensors converted ({} fallbacks), weighted NMSE {:.2e} over "
               "{:.1f} M weights; {:.1f} s\n",
               opt.type, double(s.file_bytes_in) / kMiB, double(s.file_bytes_out) / kMiB,
               double(s.file_bytes_in) / double(std::max<uint64_t>(s.file_bytes_out, 1)), s.n_tensors - s.n_copied, s.n_tensors,
               s.n_fallback, s.weighted_nmse, double(s.n_quantised) / 1e6, secs);
    fmt::print("{}\n", opt.out_path);
    return 0;
}

}  // namespace celer::cli
