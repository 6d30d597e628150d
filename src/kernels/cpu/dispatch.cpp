#include <cstdlib>

#include <fmt/format.h>

#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace celer::kernels {

// SIMD targets (AVX2, AVX-512, VNNI, NEON) register here as they land (issue #4); each entry
// pairs a feature test with its table.
std::vector<std::string_view> available_targets() { return {"scalar"}; }

const CpuKernels& select_kernels(std::string_view forced) {
    if (forced.empty())
        if (const char* env = std::getenv("CELER_KERNELS")) forced = env;
    if (forced.empty() || forced == "auto" || forced == "scalar") return scalar_kernels();
    throw Error(fmt::format("kernels: target '{}' is not available on this build or CPU (available: {})", forced,
                            fmt::join(available_targets(), ", ")));
}

}  // namespace celer::kernels
