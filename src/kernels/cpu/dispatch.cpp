#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <fmt/format.h>

#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace celer::kernels {

namespace {

struct Target {
    const CpuKernels& (*table)();
    bool (*supported)();
};

#if defined(__x86_64__)
// F16C by CPUID (leaf 1, ECX bit 29): clang 14's __builtin_cpu_supports does not know it.
bool has_f16c() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
bool has_avx512() {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") && has_f16c();
}
bool has_avx512vnni() { return has_avx512() && __builtin_cpu_supports("avx512vnni"); }
// AVX512_BF16 by CPUID (leaf 7, sub-leaf 1, EAX bit 5), which clang 14's builtin does not know either.
bool has_avx512bf16() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return has_avx512vnni() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)) != 0;
}
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c(); }
#endif
bool always() { return true; }

// Best first. Each entry pairs a table with the CPU features its code was compiled for.
const Target kTargets[] = {
#if defined(__x86_64__)
    {&avx512bf16_kernels, &has_avx512bf16},
    {&avx512vnni_kernels, &has_avx512vnni},
    {&avx512_kernels, &has_avx512},
    {&avx2_kernels, &has_avx2},
#elif defined(__aarch64__)
    {&neon_kernels, &always},
#endif
    {&scalar_kernels, &always},
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
