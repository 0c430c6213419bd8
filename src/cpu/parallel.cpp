#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace orchard::cpu {

namespace {

thread_local bool t_in_region = false;

// How long a thread busy-waits for the next region (a worker) or for the others to finish theirs
// (the caller) before sleeping: waking a sleeping thread takes tens of microseconds, longer than
// many whole kernels, and the ops of a training step come back to back.
constexpr std::chrono::microseconds kSpin{200};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Busy-waits until done() or kSpin has passed; returns done(). Yields now and then, so that on a
// busy machine the spinning thread hands its core to the thread it waits for.
template <typename Done>
bool spin_until(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0; !done(); ++i) {
    cpu_relax();
    if (i % 64 == 63) {
      if (std::chrono::steady_clock::now() > deadline) return done();
      std::this_thread::yield();
    }
  }
  return true;
}

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop_workers(); }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> region(region_mutex_);
    stop_workers();
    stopping_ = false;
    for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this] { work(); });
  }

  // False when another region holds the pool: the caller then runs inline.
  bool run(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> region(region_mutex_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      chunks_ = (n + chunk - 1) / chunk;
      pending_.store(chunks_, std::memory_order_relaxed);
      error_ = nullptr;
      unclaimed_.store(chunks_, std::memory_order_release);  // opens the job: publishes the fields above
      generation_.fetch_add(1, std::memory_order_release);   // calls the workers
    }
    wake_.notify_all();
    drain();
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_ == 0; });
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  // Runs chunks of the open job until none is left to claim. A thread reads the job's fields only
  // after claiming one of its chunks: the job cannot end (and `run` cannot write the next job's
  // fields) while that chunk is pending, and the claim's acquire sees the fields `run` published
  // before opening the job. A thread that arrives late, after the job's last chunk was claimed,
  // finds nothing to claim and touches nothing else; if the next job is already open, it helps with
  // that one, whose fields it then reads under the same guarantee.
  void drain() {
    t_in_region = true;
    for (;;) {
      const int64_t left = unclaimed_.fetch_sub(1, std::memory_order_acquire);
      if (left <= 0) break;  // (the next job's store of unclaimed_ overwrites what this took below 0)
      const int64_t c = chunks_ - left;
      try {
        (*fn_)(c * chunk_, std::min(n_, (c + 1) * chunk_));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
    t_in_region = false;
  }

  void work() {
    uint64_t seen = 0;
    auto called = [&] { return stopping_.load() || generation_.load(std::memory_order_acquire) != seen; };
    for (;;) {
      if (!spin_until(called)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, called);
      }
      if (stopping_) return;
      seen = generation_.load(std::memory_order_acquire);
      drain();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex region_mutex_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1, chunks_ = 0;
  std::atomic<int64_t> unclaimed_{0};  // chunks of the open job not yet claimed; <= 0: none open
  std::atomic<int64_t> pending_{0};    // chunks of the open job not yet finished
  std::exception_ptr error_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
};

int default_threads() {
  if (const char* env = std::getenv("ORCHARD_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  static Pool* p = new Pool(default_threads());  // never destroyed: workers may outlive static teardown
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int threads = t_in_region ? 1 : num_threads();
  int64_t tasks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (tasks <= 1 || !pool().run(n, (n + tasks - 1) / tasks, fn)) fn(0, n);
}

}  // namespace orchard::cpu
