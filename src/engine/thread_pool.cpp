#include "engine/thread_pool.h"

#include <fstream>
#include <set>
#include <string>

namespace celer {

namespace {
// A spin-wait hint: lets the other hardware thread of the core run, and saves power.
inline void cpu_relax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lk(mu_);
        stop_.store(true, std::memory_order_release);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void ThreadPool::work(int thread) {
    for (;;) {
        const int task = next_task_.fetch_add(1, std::memory_order_relaxed);
        if (task >= n_tasks_) break;
        (*fn_)(task, thread);
    }
}

void ThreadPool::worker(int id) {
    uint64_t seen = 0;
    for (;;) {
        // Spin on the generation counter first; fall back to sleeping.
        uint64_t g = generation_.load(std::memory_order_acquire);
        for (int spin = 0; g == seen && spin < 20000; ++spin) {
            cpu_relax();
            g = generation_.load(std::memory_order_acquire);
        }
        if (g == seen) {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            g = generation_.load(std::memory_order_acquire);
        }
        seen = g;
        if (stop_.load(std::memory_order_acquire)) return;
        work(id);
        busy_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::run(int n_tasks, const std::function<void(int, int)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; ++t) fn(t, 0);
        return;
    }
    {
        std::lock_guard lk(mu_);
        fn_ = &fn;
        n_tasks_ = n_tasks;
        next_task_.store(0, std::memory_order_relaxed);
        busy_.store(n_threads_ - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(0);
    while (busy_.load(std::memory_order_acquire) != 0) {
        cpu_relax();
    }
}

int default_thread_count() {
    // Count distinct (physical id, core id) pairs; fall back to the logical CPU count.
    std::ifstream in("/proc/cpuinfo");
    std::set<std::pair<std::string, std::string>> cores;
    std::string line, phys = "0";
    while (std::getline(in, line)) {
        if (line.rfind("physical id", 0) == 0) phys = line.substr(line.find(':') + 1);
        if (line.rfind("core id", 0) == 0) cores.emplace(phys, line.substr(line.find(':') + 1));
    }
    const int logical = int(std::thread::hardware_concurrency());
    if (cores.empty()) return logical > 0 ? logical : 1;
    return std::min<int>(int(cores.size()), logical > 0 ? logical : int(cores.size()));
}

}  // namespace celer
