// The CPU thread pool (src/cpu/parallel.cpp) under back-to-back jobs of varying sizes: every index
// of every job runs exactly once and before parallel_for returns, however late a worker arrives for
// the job before (it must neither run a chunk twice nor finish a job early).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "parallel.h"

using orchard::cpu::parallel_for;

namespace {

// Runs the test body with `threads` pool threads, then restores the size the pool had.
class PoolOfSize {
 public:
  explicit PoolOfSize(int threads) : before_(orchard::cpu::num_threads()) { orchard::cpu::set_num_threads(threads); }
  ~PoolOfSize() { orchard::cpu::set_num_threads(before_); }
  PoolOfSize(const PoolOfSize&) = delete;
  PoolOfSize& operator=(const PoolOfSize&) = delete;

 private:
  int before_;
};

}  // namespace

TEST(ParallelFor, BackToBackJobsRunEveryIndexExactlyOnce) {
  PoolOfSize pool(6);  // more threads than most CI machines have cores: workers get preempted mid-job
  constexpr int64_t kMaxN = 300;
  std::vector<std::atomic<int>> runs(kMaxN);
  std::mt19937 rng(19);
  int64_t previous_n = 0;
  for (int job = 0; job < 100000; ++job) {
    // Mostly jobs of a few tiny chunks, the ones that end before every worker has arrived.
    const int64_t n = std::uniform_int_distribution<int64_t>(1, job % 4 ? 12 : kMaxN)(rng);
    const int64_t grain = std::uniform_int_distribution<int64_t>(1, 4)(rng);
    parallel_for(n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) runs[size_t(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < std::max(n, previous_n); ++i) {
      const int count = runs[size_t(i)].exchange(0, std::memory_order_relaxed);
      ASSERT_EQ(count, i < n ? 1 : 0) << "job " << job << " of " << n << " items (grain " << grain << "), index " << i;
    }
    previous_n = n;
  }
}

TEST(ParallelFor, AnExceptionReachesTheCallerAndThePoolRunsTheNextJob) {
  PoolOfSize pool(4);
  for (int job = 0; job < 200; ++job) {
    EXPECT_THROW(parallel_for(64, 1, [](int64_t begin, int64_t) {
                   if (begin == 0) throw std::runtime_error("chunk 0 failed");
                 }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};
    parallel_for(64, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sum.fetch_add(i, std::memory_order_relaxed);
    });
    ASSERT_EQ(sum.load(), 64 * 63 / 2);
  }
}
