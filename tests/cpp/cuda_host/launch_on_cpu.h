// Runs a CUDA kernel compiled as C++ (tensor_core_host.h) on the CPU: the CTAs of the grid one after
// another, in a shuffled order, each with one std::thread per CUDA thread, so that __syncthreads()
// is a real barrier and the warp-collective operations (ldmatrix, mma, shuffles) a real rendezvous
// of the warp's 32 lanes. A missing barrier then reads stale or poisoned shared memory (and is a
// data race under ThreadSanitizer), and threads that can never meet again (a barrier or collective
// some threads skip) are reported as an exception instead of hanging.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace orchard::cuda_host {

// What a lane brings to a warp-collective operation (only the fields of its kind are set).
struct LaneInput {
  enum Op { kLdmatrix, kLdmatrixTrans, kMmaBf16, kMmaF16, kShuffle } op;
  uint16_t row[8];      // ldmatrix: the 8 values of the row this lane addresses
  uint32_t a[4], b[2];  // mma: the lane's A and B fragments
  float value;          // shuffle
};

// Thrown in the threads of a CTA that another thread's failure stopped.
struct Aborted {};

// The state the threads of the running CTA share. The last thread to arrive at a barrier or warp
// rendezvous lets the others go, each through its own gate (mutex and condition variable), so that
// the woken threads do not all contend for one mutex.
class Cta {
 public:
  Cta(unsigned threads, size_t dynamic_shared_bytes)
      : threads_(threads), alive_(threads), gates_(new Gate[threads]), warps_(new Warp[threads / 32]),
        shared_((dynamic_shared_bytes + 15) / 16) {
    if (!shared_.empty())  // poisoned: NaN in 16 and 32 bits
      std::memset(static_cast<void*>(shared_.data()), 0xff, shared_.size() * sizeof(Chunk));
  }

  unsigned char* dynamic_shared() { return shared_.empty() ? nullptr : shared_[0].bytes; }

  void sync_threads() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_) throw Aborted();
    if (++barrier_arrived_ < threads_) return block(lock);
    barrier_arrived_ = 0;
    release(lock, 0, threads_);
  }

  // Publishes this lane's input and returns the 32 lanes' inputs once all have arrived. Rendezvous
  // alternate between two sets of slots, so one wait a rendezvous suffices: a lane can write a set
  // again only after every lane has arrived at the rendezvous in between, and so has read it.
  const LaneInput* rendezvous(const LaneInput& input) {
    Warp& warp = warps_[threadIdx.x / 32];
    std::unique_lock<std::mutex> lock(mutex_);
    if (failed_) throw Aborted();
    LaneInput* slots = warp.slots[warp.generation % 2];
    slots[threadIdx.x % 32] = input;
    if (++warp.arrived < 32) {
      block(lock);
      return slots;
    }
    for (int lane = 0; lane < 32; ++lane)
      if (slots[lane].op != slots[0].op) fail("the lanes of a warp called different warp-collective operations");
    warp.arrived = 0;
    ++warp.generation;
    release(lock, threadIdx.x / 32 * 32, 32);
    return slots;
  }

  // Runs `kernel` as one of the CTA's threads (threadIdx and the rest already set).
  void run(const std::function<void()>& kernel) {
    try {
      kernel();
    } catch (const Aborted&) {
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      record(std::current_exception());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    --alive_;
    if (!failed_ && alive_ > 0 && blocked_ == alive_)
      record(std::make_exception_ptr(std::logic_error(
          "a CUDA thread returned while others wait at a __syncthreads() or warp collective it never reached")));
  }

  // Stops the threads (when a thread could not be started).
  void abort(std::exception_ptr error) {
    std::lock_guard<std::mutex> lock(mutex_);
    record(error);
  }

  // After every thread has been joined.
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Gate {
    std::mutex mutex;
    std::condition_variable cv;
    uint64_t waits = 0, opened = 0;  // the thread may pass its n-th wait once opened >= n
    bool aborted = false;
  };
  struct Warp {
    unsigned arrived = 0;
    uint64_t generation = 0;
    LaneInput slots[2][32];
  };
  struct alignas(16) Chunk {
    unsigned char bytes[16];
  };

  // Called with the CTA's mutex held by `lock`: waits until the last thread to arrive lets this one
  // go, or throws Aborted once the CTA has failed. The blocked threads are counted, so that when all
  // the living ones are, the CTA fails (deadlock).
  void block(std::unique_lock<std::mutex>& lock) {
    if (++blocked_ == alive_)
      fail("every CUDA thread of the CTA waits, at different __syncthreads() or warp collectives");
    lock.unlock();
    Gate& gate = gates_[threadIdx.x];
    std::unique_lock<std::mutex> gate_lock(gate.mutex);
    const uint64_t ticket = ++gate.waits;
    gate.cv.wait(gate_lock, [&] { return gate.opened >= ticket || gate.aborted; });
    if (gate.opened < ticket) throw Aborted();
  }
  // Called by the last thread to arrive, with the CTA's mutex held by `lock`: lets the other threads
  // of first..first + count - 1 go.
  void release(std::unique_lock<std::mutex>& lock, unsigned first, unsigned count) {
    blocked_ -= count - 1;
    lock.unlock();
    for (unsigned i = first; i < first + count; ++i) {
      if (i == threadIdx.x) continue;
      {
        std::lock_guard<std::mutex> gate_lock(gates_[i].mutex);
        ++gates_[i].opened;
      }
      gates_[i].cv.notify_one();
    }
  }
  // With the CTA's mutex held: keeps the first error and wakes every waiting thread, which aborts.
  void record(std::exception_ptr error) {
    if (!error_) error_ = error;
    failed_ = true;
    for (unsigned i = 0; i < threads_; ++i) {
      std::lock_guard<std::mutex> gate_lock(gates_[i].mutex);
      gates_[i].aborted = true;
      gates_[i].cv.notify_one();
    }
  }
  [[noreturn]] void fail(const std::string& why) {
    record(std::make_exception_ptr(std::logic_error(why)));
    throw Aborted();
  }

  const unsigned threads_;
  std::mutex mutex_;  // guards what follows but the gates
  unsigned alive_, blocked_ = 0, barrier_arrived_ = 0;
  std::unique_ptr<Gate[]> gates_;
  std::unique_ptr<Warp[]> warps_;
  std::vector<Chunk> shared_;
  std::exception_ptr error_;
  bool failed_ = false;
};

// The CTA of the calling thread.
inline thread_local Cta* current_cta = nullptr;

// Runs the CTAs of `grid`, one at a time, each with `threads` threads running `kernel`.
inline void run_grid(dim3 grid, unsigned threads, size_t dynamic_shared_bytes, const std::function<void()>& kernel) {
  if (threads == 0 || threads % 32 != 0 || threads > 1024)
    throw std::invalid_argument("launch_on_cpu: " + std::to_string(threads) + " threads a CTA, not whole warps");
  std::vector<dim3> blocks;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) blocks.emplace_back(x, y, z);
  // Any order is a valid schedule: a kernel must not depend on one. A fixed seed keeps runs alike.
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(20240601));
  for (const dim3& block : blocks) {
    Cta cta(threads, dynamic_shared_bytes);
    std::vector<std::thread> workers;
    try {
      for (unsigned i = 0; i < threads; ++i)
        workers.emplace_back([&, i] {
          threadIdx = dim3(i);
          blockIdx = block;
          blockDim = dim3(threads);
          gridDim = grid;
          current_cta = &cta;
          cta.run(kernel);
        });
    } catch (...) {
      cta.abort(std::current_exception());
    }
    for (std::thread& worker : workers) worker.join();
    cta.rethrow();
  }
}

// kernel<<<grid, threads, dynamic_shared_bytes>>>(args...), on the CPU; returns when it has run,
// or throws the first exception a thread threw.
template <class... Params, class... Args>
void launch_on_cpu(void (*kernel)(Params...), dim3 grid, unsigned threads, size_t dynamic_shared_bytes,
                   Args... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch_on_cpu: the kernel's arguments");
  run_grid(grid, threads, dynamic_shared_bytes, [&] { kernel(args...); });
}

}  // namespace orchard::cuda_host
