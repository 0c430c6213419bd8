// Runs MSL kernels compiled as C++ over their grid on the CPU.
//
// Cooperative kernels (threadgroup memory, barriers, simdgroup functions) run one threadgroup at a
// time with every thread of the group on its own OS thread, meeting at real barriers, so the
// kernels' synchronisation is exercised as on the GPU. Other kernels run their threads one after
// another, threadgroups spread over a few workers. A barrier that some threads of a group can never
// reach (a thread returned early, or the threads diverged) raises an error instead of hanging.
#include "emulator.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "errors.h"
#include "kernel_abi.h"

namespace orchard::metal_emu {

using metal::Dispatch;
using metal::KernelArg;

namespace {

constexpr uint32_t kSimdWidth = 32;
constexpr size_t kMaxSimdValue = 64;  // bytes one lane may exchange
constexpr auto kDeadlockTimeout = std::chrono::seconds(60);

struct KernelEntry {
  KernelFn fn;
  bool cooperative;
};

std::map<std::string, KernelEntry>& registry() {
  static auto* r = new std::map<std::string, KernelEntry>();
  return *r;
}

// Thrown in the threads that were waiting when another thread of the group failed.
struct GroupAborted {};

// A reusable barrier for the `expected` threads of a group. A thread that returned from the kernel
// leaves it; a barrier that some threads wait at after others returned can never open (undefined
// behaviour on the GPU), so it is an error.
class Barrier {
 public:
  void reset(uint32_t expected) {
    expected_ = expected;
    arrived_ = left_ = 0;
    broken_ = false;
  }

  void wait(const char* what) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (broken_) throw GroupAborted{};
    if (left_ > 0) fail(detail::concat(what, " reached after ", left_, " thread(s) of the group returned"));
    const uint64_t phase = phase_;
    if (++arrived_ == expected_) {
      arrived_ = 0;
      ++phase_;
      cv_.notify_all();
      return;
    }
    if (!cv_.wait_for(lock, kDeadlockTimeout, [&] { return phase_ != phase || broken_; }))
      fail(detail::concat(what, " waited ", kDeadlockTimeout.count(), " s for the other threads: they diverged"));
    if (phase_ == phase) throw GroupAborted{};
  }

  void leave() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++left_;
    if (arrived_ > 0) fail("a thread returned while others wait at a barrier it never reached");
  }

  void abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    broken_ = true;
    cv_.notify_all();
  }

 private:
  // Called with the mutex held: wakes the waiting threads (they abort) and reports the error.
  [[noreturn]] void fail(const std::string& why) {
    broken_ = true;
    cv_.notify_all();
    throw RuntimeError("metal emulator: " + why);
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  uint32_t expected_ = 0, arrived_ = 0, left_ = 0;
  uint64_t phase_ = 0;
  bool broken_ = false;
};

// One simdgroup's exchange slots and barrier.
struct Simdgroup {
  Barrier barrier;
  uint32_t lanes = 0;
  alignas(16) unsigned char slots[kSimdWidth][kMaxSimdValue];
};

// What the running threads of one threadgroup share.
struct Group {
  const char* kernel = "";
  Barrier barrier;
  std::vector<std::unique_ptr<Simdgroup>> simdgroups;

  void reset(uint32_t threads) {
    barrier.reset(threads);
    const uint32_t n = (threads + kSimdWidth - 1) / kSimdWidth;
    while (simdgroups.size() < n) simdgroups.push_back(std::make_unique<Simdgroup>());
    for (uint32_t s = 0; s < n; ++s) {
      simdgroups[s]->lanes = std::min(kSimdWidth, threads - s * kSimdWidth);
      simdgroups[s]->barrier.reset(simdgroups[s]->lanes);
    }
  }
  void abort() {
    barrier.abort();
    for (auto& s : simdgroups) s->barrier.abort();
  }
};

// The emulated thread the calling OS thread is playing, for the shim's hooks.
struct Current {
  Group* group = nullptr;  // null: the kernel runs without cooperation
  const char* kernel = "";
  uint32_t lane = 0, simdgroup = 0;
};
thread_local Current t_current;

Group& cooperating_group(const char* what) {
  ORCHARD_CHECK(t_current.group, RuntimeError, "metal emulator: kernel '", t_current.kernel, "' calls ", what,
                " but has no threadgroup-position parameter, so it runs without cooperating threads; declare "
                "[[thread_index_in_threadgroup]] or [[thread_index_in_simdgroup]] (tools/metal_codegen.py)");
  return *t_current.group;
}

// OS threads that play the threads of one threadgroup: run(n, fn) calls fn(i) for i < n on n
// distinct threads and returns when all are done, rethrowing the first failure.
class Team {
 public:
  void run(uint32_t n, const std::function<void(uint32_t)>& fn, Group* group) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    while (workers_.size() < n) workers_.push_back(std::make_unique<Worker>(this, uint32_t(workers_.size())));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      group_ = group;
      pending_ = n;
      error_ = nullptr;
    }
    for (uint32_t i = 0; i < n; ++i) workers_[i]->start();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Worker {
    Team* team;
    uint32_t index;
    std::mutex mutex;
    std::condition_variable cv;
    bool go = false;
    std::thread thread;

    Worker(Team* t, uint32_t i) : team(t), index(i), thread([this] { loop(); }) { thread.detach(); }
    void start() {
      std::lock_guard<std::mutex> lock(mutex);
      go = true;
      cv.notify_one();
    }
    void loop() {
      for (;;) {
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [&] { return go; });
          go = false;
        }
        team->work(index);
      }
    }
  };

  void work(uint32_t index) {
    std::exception_ptr error;
    try {
      (*fn_)(index);
    } catch (const GroupAborted&) {
    } catch (...) {
      error = std::current_exception();
      if (group_) group_->abort();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (error && !error_) error_ = error;
    if (--pending_ == 0) done_.notify_one();
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable done_;
  std::vector<std::unique_ptr<Worker>> workers_;  // never destroyed: detached threads wait on them
  const std::function<void(uint32_t)>* fn_ = nullptr;
  Group* group_ = nullptr;
  uint32_t pending_ = 0;
  std::exception_ptr error_;
};

Team& team() {
  static Team* t = new Team();
  return *t;
}

ThreadContext base_context(const Dispatch& d, void* const* buffers, void* const* shared) {
  ThreadContext c{};
  c.buffers = buffers;
  c.threadgroup_memory = shared;
  c.threads_per_threadgroup = {d.threads.x, d.threads.y, d.threads.z};
  c.threadgroups_per_grid = {d.groups.x, d.groups.y, d.groups.z};
  c.threads_per_grid = {d.groups.x * d.threads.x, d.groups.y * d.threads.y, d.groups.z * d.threads.z};
  c.threads_per_simdgroup = kSimdWidth;
  c.simdgroups_per_threadgroup = uint32_t((d.threads.count() + kSimdWidth - 1) / kSimdWidth);
  return c;
}

// Fills in the positions of thread `t` (linear index in its group) of group `g` (linear index).
void place(ThreadContext& c, const Dispatch& d, uint64_t g, uint32_t t) {
  c.threadgroup_position = {uint32_t(g % d.groups.x), uint32_t(g / d.groups.x % d.groups.y),
                            uint32_t(g / (uint64_t(d.groups.x) * d.groups.y))};
  c.position_in_threadgroup = {t % d.threads.x, t / d.threads.x % d.threads.y, t / (d.threads.x * d.threads.y)};
  c.position_in_grid = {c.threadgroup_position.x * d.threads.x + c.position_in_threadgroup.x,
                        c.threadgroup_position.y * d.threads.y + c.position_in_threadgroup.y,
                        c.threadgroup_position.z * d.threads.z + c.position_in_threadgroup.z};
  c.index_in_threadgroup = t;
  c.index_in_simdgroup = t % kSimdWidth;
  c.simdgroup_index = t / kSimdWidth;
}

}  // namespace

bool register_kernel(const char* name, KernelFn fn, bool cooperative) {
  registry()[name] = {fn, cooperative};
  return true;
}

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : registry()) names.push_back(name);
  return names;
}

void run(const Dispatch& d) {
  auto it = registry().find(d.kernel);
  ORCHARD_CHECK(it != registry().end(), RuntimeError, "metal emulator: no kernel named '", d.kernel, "'");
  const KernelEntry kernel = it->second;
  const uint32_t threads = uint32_t(d.threads.count());
  ORCHARD_CHECK(threads >= 1 && threads <= 1024, RuntimeError, "metal emulator: kernel '", d.kernel, "' launched with ",
                threads, " threads per threadgroup; Metal allows 1 to 1024");

  std::vector<void*> buffers;
  for (const KernelArg& a : d.args)
    buffers.push_back(a.base ? static_cast<void*>(static_cast<char*>(a.base) + a.offset)
                            : static_cast<void*>(const_cast<uint8_t*>(a.bytes.data())));
  // Threadgroup memory starts as all-ones bytes (NaN floats, -1 integers) so that reading it
  // before writing shows up in results.
  std::vector<std::vector<unsigned char>> shared;
  std::vector<void*> shared_ptrs;
  for (uint32_t n : d.threadgroup_memory) shared.emplace_back(n, 0xff);
  for (auto& s : shared) shared_ptrs.push_back(s.data());
  const ThreadContext base = base_context(d, buffers.data(), shared_ptrs.data());
  const uint64_t groups = d.groups.count();

  if (!kernel.cooperative) {
    const uint32_t workers = std::max(1u, std::min<uint32_t>(std::thread::hardware_concurrency(), uint32_t(std::min<uint64_t>(groups, 64))));
    team().run(workers, [&](uint32_t w) {
      t_current = {nullptr, d.kernel.c_str(), 0, 0};
      ThreadContext c = base;
      for (uint64_t g = w; g < groups; g += workers)
        for (uint32_t t = 0; t < threads; ++t) {
          place(c, d, g, t);
          kernel.fn(c);
        }
    }, nullptr);
    return;
  }

  Group group;
  group.kernel = d.kernel.c_str();
  for (uint64_t g = 0; g < groups; ++g) {
    group.reset(threads);
    for (auto& s : shared) std::fill(s.begin(), s.end(), 0xff);
    team().run(threads, [&](uint32_t t) {
      t_current = {&group, d.kernel.c_str(), t % kSimdWidth, t / kSimdWidth};
      ThreadContext c = base;
      place(c, d, g, t);
      kernel.fn(c);
      group.simdgroups[t / kSimdWidth]->barrier.leave();
      group.barrier.leave();
    }, &group);
  }
}

// ---- hooks for the MSL shim ------------------------------------------------------------------

void threadgroup_barrier() { cooperating_group("threadgroup_barrier").barrier.wait("threadgroup_barrier"); }

void simdgroup_barrier() {
  Group& g = cooperating_group("simdgroup_barrier");
  g.simdgroups[t_current.simdgroup]->barrier.wait("simdgroup_barrier");
}

void simd_exchange(const void* mine, void* all, size_t size, uint32_t* count, uint32_t* lane) {
  Group& g = cooperating_group("a simd_* function");
  Simdgroup& s = *g.simdgroups[t_current.simdgroup];
  ORCHARD_CHECK(size <= kMaxSimdValue, RuntimeError, "metal emulator: simd value of ", size, " bytes is too large");
  std::memcpy(s.slots[t_current.lane], mine, size);
  s.barrier.wait("a simd_* function");
  for (uint32_t i = 0; i < s.lanes; ++i) std::memcpy(static_cast<char*>(all) + i * size, s.slots[i], size);
  *count = s.lanes;
  *lane = t_current.lane;
  s.barrier.wait("a simd_* function");  // nobody overwrites a slot before every lane has read it
}

uint32_t simd_lane() { return t_current.lane; }

}  // namespace orchard::metal_emu
