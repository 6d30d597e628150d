// A fixed pool for data-parallel ops. The calling thread works too, so `n_threads` counts it.
// Workers spin briefly between ops (a decode step issues hundreds of small ops, and waking a
// sleeping thread costs tens of microseconds) and then sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace celer {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Calls fn(task, thread) for every task in [0, n_tasks), spread over the threads; returns
    // when all have finished. `thread` is in [0, size()) and unique among concurrent calls.
    void run(int n_tasks, const std::function<void(int task, int thread)>& fn);

private:
    void worker(int id);
    void work(int thread);

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> next_task_{0};
    std::atomic<int> busy_{0};
    int n_tasks_ = 0;
    const std::function<void(int, int)>* fn_ = nullptr;
    std::atomic<bool> stop_{false};
};

// Threads to use when the user gives none: the physical cores, as hyper-threads share the
// memory bandwidth and FMA units that bound inference.
int default_thread_count();

}  // namespace celer
