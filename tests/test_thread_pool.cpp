#include <gtest/gtest.h>

#include <atomic>

#include "engine/thread_pool.h"

namespace celer {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
    for (int threads : {1, 2, 4}) {
        ThreadPool pool(threads);
        for (int round = 0; round < 200; ++round) {
            const int n = 1 + round % 37;
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::atomic<int> bad_thread{0};
            pool.run(n, [&](int task, int thread) {
                hits[size_t(task)].fetch_add(1);
                if (thread < 0 || thread >= threads) bad_thread.fetch_add(1);
            });
            for (int i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "task " << i << " round " << round;
            ASSERT_EQ(bad_thread.load(), 0);
        }
    }
}

TEST(ThreadPool, ThreadIdsAreExclusive) {
    ThreadPool pool(3);
    std::vector<std::atomic<int>> in_use(3);
    std::atomic<int> clashes{0};
    pool.run(300, [&](int, int thread) {
        if (in_use[size_t(thread)].fetch_add(1) != 0) clashes.fetch_add(1);
        in_use[size_t(thread)].fetch_sub(1);
    });
    EXPECT_EQ(clashes.load(), 0);
}

TEST(ThreadPool, DefaultThreadCountIsPositive) { EXPECT_GE(default_thread_count(), 1); }

}  // namespace
}  // namespace celer
