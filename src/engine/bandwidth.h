// Measures the memory read bandwidth this machine gives the engine's threads: the ceiling for
// decode, which reads every weight once per token.
#pragma once

#include "engine/thread_pool.h"
#include "kernels/cpu/kernels.h"

namespace celer {

// GB/s (1e9 bytes) reading a buffer far larger than the caches with every pool thread, best of
// `reps` passes. Takes a few hundred milliseconds.
double measure_read_bandwidth(ThreadPool& pool, const kernels::CpuKernels& k, int reps = 5);

}  // namespace celer
