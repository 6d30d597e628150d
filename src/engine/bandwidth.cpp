#include "engine/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace celer {

double measure_read_bandwidth(ThreadPool& pool, const kernels::CpuKernels& k, int reps) {
    // 512 MiB: 16x the largest L3 of the machines this runs on, so the caches hold nothing of it.
    const size_t n = size_t(128) << 20;
    // On cache-line boundaries: a vector's data that straddles two lines reads slower (a Zen 5,
    // 2 threads, 64-byte loads: 44-46 GB/s at 16 or 32 bytes past a line, 51-56 on one), and
    // std::vector's large blocks begin 16 bytes past a page, which made the AVX-512 targets
    // measure 47-49 GB/s where the AVX2 one (half the loads split) measured 57-59.
    std::vector<float> store(n + 16, 1.0f);  // written once, so the pages are really there
    float* buf = store.data() + (64 - reinterpret_cast<uintptr_t>(store.data()) % 64) % 64 / sizeof(float);
    const int parts = pool.size();
    std::vector<float> sink(static_cast<size_t>(parts));
    std::vector<double> gbs;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.run(parts, [&](int task, int) {
            const size_t a = n * size_t(task) / size_t(parts), b = n * size_t(task + 1) / size_t(parts);
            sink[size_t(task)] = k.sum(buf + a, b - a);
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        gbs.push_back(double(n * sizeof(float)) / s / 1e9);
    }
    // The best pass, not the median: the roofline is what the machine can deliver, and on a
    // shared (virtualised) host the slower passes measure the neighbours, not the memory.
    return *std::max_element(gbs.begin(), gbs.end());
}

}  // namespace celer
