#include <cstdlib>

#include <fmt/format.h>

#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace celer::kernels {

namespace {

struct Target {
    const CpuKernels& (*table)();
    bool (*supported)();
};

// Best first. Each entry pairs a table with the CPU features its code was compiled for.
const Target kTargets[] = {
#if defined(__x86_64__)
    {&avx512_kernels,
     [] {
         return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
     }},
    {&avx2_kernels, [] { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"); }},
#endif
    {&scalar_kernels, [] { return true; }},
};

}  // namespace

std::vector<std::string_view> available_targets() {
    std::vector<std::string_view> v;
    for (const auto& t : kTargets)
        if (t.supported()) v.push_back(t.table().name);
    return v;
}

const CpuKernels& select_kernels(std::string_view forced) {
    if (forced.empty())
        if (const char* env = std::getenv("CELER_KERNELS")) forced = env;
    if (forced.empty() || forced == "auto") {
        for (const auto& t : kTargets)
            if (t.supported()) return t.table();
    }
    for (const auto& t : kTargets)
        if (t.table().name == forced && t.supported()) return t.table();
    throw Error(fmt::format("kernels: target '{}' is not available on this build or CPU (available: {})", forced,
                            fmt::join(available_targets(), ", ")));
}

}  // namespace celer::kernels
