// Runs MSL kernels compiled as C++ over their grid on the CPU, as unhelpfully as a GPU may, so that a
// kernel that works here by luck fails here first:
//
// - Threadgroups run concurrently, in an order shuffled per launch (Shuffle: never the grid's own
//   order), so no kernel can rely on the order of its threadgroups. The seed differs per launch;
//   ORCHARD_METAL_EMULATOR_SEED=N makes it a function of N, the kernel and the grid, so a failure
//   replays when its test runs again alone (tests/py/conftest.py sets and prints one per session).
// - Cooperative kernels (threadgroup memory, barriers, simdgroup functions) run several threadgroups
//   at once, each in a slot of its own, with every thread of a group on its own OS thread, meeting
//   at real barriers and exchanging simdgroup values through shared slots. Other kernels run the
//   threads of a threadgroup one after another in a shuffled order, threadgroups spread over a few
//   workers.
// - Threadgroup memory starts as poison bytes (kPoisonByte) for every threadgroup.
// - Under ThreadSanitizer the emulator's own synchronisation orders memory only where MSL does:
//   threadgroup_barrier and simdgroup_barrier with memory flags. A simd_* function and a barrier
//   with mem_flags::mem_none are rendezvous without a happens-before edge, so a kernel that relies
//   on them to order its memory accesses is reported as racing.
// A barrier that some threads of a group can never reach (a thread returned early, or the threads
// diverged) raises an error instead of hanging.
#include "emulator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "errors.h"
#include "kernel_abi.h"

#if defined(__SANITIZE_THREAD__)
#define ORCHARD_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ORCHARD_EMU_TSAN 1
#endif
#endif

#ifdef ORCHARD_EMU_TSAN
// ThreadSanitizer's annotations (its runtime defines them): the calling thread's synchronisation
// and memory accesses are not recorded between Begin and End.
extern "C" {
void AnnotateIgnoreSyncBegin(const char* file, int line);
void AnnotateIgnoreSyncEnd(const char* file, int line);
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}
#endif

namespace orchard::metal_emu {

using metal::Dispatch;
using metal::KernelArg;

namespace {

constexpr uint32_t kSimdWidth = 32;
constexpr size_t kMaxSimdValue = 64;  // bytes one lane may exchange
constexpr uint32_t kMaxCooperatingThreads = 2048;  // OS threads playing the slots of one launch
constexpr auto kDeadlockTimeout = std::chrono::seconds(60);

struct KernelEntry {
  KernelFn fn;
  bool cooperative;
};

std::map<std::string, KernelEntry>& registry() {
  static auto* r = new std::map<std::string, KernelEntry>();
  return *r;
}

// ---- launch order ----------------------------------------------------------------------------

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// ORCHARD_METAL_EMULATOR_SEED, when set (read at every launch, so a test can set it).
std::optional<uint64_t> fixed_seed() {
  const char* s = std::getenv("ORCHARD_METAL_EMULATOR_SEED");
  if (!s || !*s) return std::nullopt;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  ORCHARD_CHECK(*end == '\0' && *s != '-', RuntimeError,
                "ORCHARD_METAL_EMULATOR_SEED must be an unsigned integer, got '", s, "'");
  return uint64_t(v);
}

// The seed of one launch: fresh every launch, or with a fixed seed a function of it, the kernel and
// the grid (not of earlier launches, so a test run alone sees the orders it saw in the full suite).
uint64_t launch_seed(const Dispatch& d) {
  if (const std::optional<uint64_t> fixed = fixed_seed()) {
    uint64_t h = mix(*fixed);
    for (const char c : d.kernel) h = mix(h ^ uint8_t(c));
    for (const uint32_t v : {d.groups.x, d.groups.y, d.groups.z, d.threads.x, d.threads.y, d.threads.z})
      h = mix(h ^ v);
    return h;
  }
  static std::atomic<uint64_t> next{std::random_device{}()};
  return mix(next.fetch_add(1, std::memory_order_relaxed));
}

// A pseudo-random permutation of [0, n): i -> (a i + b) mod n with 1 < a < n coprime to n (n > 2),
// drawn from a seed. Never the identity nor a rotation of it, so that a dependence on order shows.
class Shuffle {
 public:
  Shuffle(uint64_t n, uint64_t seed) : n_(std::max<uint64_t>(n, 1)) {
    if (n_ > 2 && n_ < (uint64_t(1) << 32))  // a i + b fits 64 bits; n - 1 is coprime to n
      for (a_ = 2 + seed % (n_ - 2); std::gcd(a_, n_) != 1; ++a_) {}
    b_ = mix(seed) % n_;
    if (n_ == 2) b_ = 1;
  }
  uint64_t operator()(uint64_t i) const { return (a_ * i + b_) % n_; }

 private:
  uint64_t n_, a_ = 1, b_ = 0;
};

// ---- synchronisation -------------------------------------------------------------------------

// Under ThreadSanitizer: a scope in which the calling thread's synchronisation creates no
// happens-before edge and its memory accesses go unrecorded, for the emulator's rendezvous that MSL
// does not define as ordering memory. Elsewhere nothing.
class Unordered {
 public:
  explicit Unordered(bool on = true) : on_(on) {
#ifdef ORCHARD_EMU_TSAN
    if (!on_) return;
    AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
#endif
  }
  ~Unordered() {
#ifdef ORCHARD_EMU_TSAN
    if (!on_) return;
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
    AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
#endif
  }
  Unordered(const Unordered&) = delete;
  Unordered& operator=(const Unordered&) = delete;

 private:
  [[maybe_unused]] bool on_;
};

// Thrown in the threads that were waiting when another thread of the launch failed.
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

  // `orders_memory`: whether the wait is a happens-before edge among the threads (see Unordered).
  void wait(const char* what, bool orders_memory = true) {
    const Unordered unordered(!orders_memory);
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

// One simdgroup's barrier and exchange slots. Exchanges alternate between the two sets of slots, so
// one rendezvous per exchange suffices: a lane writes set s only after every lane has passed the
// exchange that followed the last use of s (and so has read it).
struct Simdgroup {
  Barrier barrier;
  uint32_t lanes = 0;
  alignas(16) unsigned char slots[2][kSimdWidth][kMaxSimdValue];
};

// What the threads of one running threadgroup share: its barriers and its threadgroup memory. A
// launch runs several slots at once, each through a sequence of threadgroups.
struct Slot {
  Barrier barrier;
  std::vector<std::unique_ptr<Simdgroup>> simdgroups;
  std::vector<std::vector<unsigned char>> memory;  // [[threadgroup(i)]]
  std::vector<void*> memory_ptrs;
  Barrier between;  // the slot's threads meet here between two threadgroups

  Slot(const std::vector<uint32_t>& sizes, uint32_t threads) {
    const uint32_t n = (threads + kSimdWidth - 1) / kSimdWidth;
    for (uint32_t s = 0; s < n; ++s) {
      simdgroups.push_back(std::make_unique<Simdgroup>());
      simdgroups[s]->lanes = std::min(kSimdWidth, threads - s * kSimdWidth);
    }
    for (uint32_t bytes : sizes) memory.emplace_back(bytes);
    for (auto& m : memory) memory_ptrs.push_back(m.data());
    between.reset(threads);
    start(threads);
  }
  // Readies the slot for its next threadgroup (called by one thread while the others wait).
  void start(uint32_t threads) {
    barrier.reset(threads);
    for (auto& s : simdgroups) s->barrier.reset(s->lanes);
    for (auto& m : memory) std::fill(m.begin(), m.end(), kPoisonByte);
  }
  void abort() {
    barrier.abort();
    between.abort();
    for (auto& s : simdgroups) s->barrier.abort();
  }
};

// The emulated thread the calling OS thread is playing, for the shim's hooks.
struct Current {
  Slot* slot = nullptr;  // null: the kernel runs without cooperation
  const char* kernel = "";
  uint32_t lane = 0, simdgroup = 0;
  uint32_t exchanges = 0;  // simd exchanges made in this threadgroup
};
thread_local Current t_current;

Slot& cooperating_slot(const char* what) {
  ORCHARD_CHECK(t_current.slot, RuntimeError, "metal emulator: kernel '", t_current.kernel, "' calls ", what,
                " but has no threadgroup-position parameter, so it runs without cooperating threads; declare "
                "[[thread_index_in_threadgroup]] or [[thread_index_in_simdgroup]] (tools/metal_codegen.py)");
  return *t_current.slot;
}

// ---- threads ---------------------------------------------------------------------------------

// OS threads that play the threads of a launch: run(n, fn, abort) calls fn(i) for i < n on n
// distinct threads and returns when all are done, rethrowing the first failure; `abort` wakes the
// others once one has failed.
class Team {
 public:
  void run(uint32_t n, const std::function<void(uint32_t)>& fn, const std::function<void()>& abort) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    while (workers_.size() < n) workers_.push_back(std::make_unique<Worker>(this, uint32_t(workers_.size())));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      abort_ = &abort;
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
      if (*abort_) (*abort_)();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (error && !error_) error_ = error;
    // Drop this thread's reference under the lock: libstdc++ counts references with atomics that
    // ThreadSanitizer cannot see, so a release after run() returned would look like a race with the
    // caller reading the exception.
    error = nullptr;
    if (--pending_ == 0) done_.notify_one();
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable done_;
  std::vector<std::unique_ptr<Worker>> workers_;  // never destroyed: detached threads wait on them
  const std::function<void(uint32_t)>* fn_ = nullptr;
  const std::function<void()>* abort_ = nullptr;
  uint32_t pending_ = 0;
  std::exception_ptr error_;
};

Team& team() {
  static Team* t = new Team();
  return *t;
}

// ---- launches --------------------------------------------------------------------------------

ThreadContext base_context(const Dispatch& d, void* const* buffers) {
  ThreadContext c{};
  c.buffers = buffers;
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

uint32_t hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

// Threads that need no cooperation: each worker takes chunks of the shuffled group order and runs
// a group's threads one after another, in an order rotated per group.
void run_independent(KernelFn fn, const Dispatch& d, const ThreadContext& base, uint64_t groups, uint64_t seed) {
  const uint32_t threads = uint32_t(d.threads.count());
  const uint32_t workers = uint32_t(std::min<uint64_t>(groups, std::max(2u, std::min(hardware_threads(), 64u))));
  const uint64_t chunk = std::clamp<uint64_t>(groups / (8 * uint64_t(workers)), 1, 64);
  const Shuffle group_order(groups, seed), thread_order(threads, mix(seed));
  std::atomic<uint64_t> next{0};
  team().run(workers, [&](uint32_t) {
    t_current = {nullptr, d.kernel.c_str(), 0, 0, 0};
    ThreadContext c = base;
    for (uint64_t begin; (begin = next.fetch_add(chunk, std::memory_order_relaxed)) < groups;)
      for (uint64_t i = begin; i < std::min(begin + chunk, groups); ++i) {
        const uint64_t g = group_order(i);
        for (uint32_t t = 0; t < threads; ++t) {
          place(c, d, g, uint32_t(thread_order((t + g) % threads)));
          fn(c);
        }
      }
  }, {});
}

// Cooperating threads: `slots` threadgroups at a time, slot s running the groups at positions s,
// s + slots, ... of the shuffled order, each of its threads on an OS thread of its own.
void run_cooperative(KernelFn fn, const Dispatch& d, const ThreadContext& base, uint64_t groups, uint64_t seed) {
  const uint32_t threads = uint32_t(d.threads.count());
  const uint32_t slots = uint32_t(std::min<uint64_t>(
      groups, std::max(2u, std::min(hardware_threads(), kMaxCooperatingThreads / threads))));
  std::vector<std::unique_ptr<Slot>> slot;
  for (uint32_t s = 0; s < slots; ++s) slot.push_back(std::make_unique<Slot>(d.threadgroup_memory, threads));
  const Shuffle group_order(groups, seed);
  team().run(slots * threads, [&](uint32_t w) {
    const uint32_t s = w / threads, t = w % threads;
    Slot& mine = *slot[s];
    ThreadContext c = base;
    c.threadgroup_memory = mine.memory_ptrs.data();
    for (uint64_t i = s; i < groups; i += slots) {
      t_current = {&mine, d.kernel.c_str(), t % kSimdWidth, t / kSimdWidth, 0};
      place(c, d, group_order(i), t);
      fn(c);
      mine.simdgroups[t / kSimdWidth]->barrier.leave();
      mine.barrier.leave();
      if (i + slots >= groups) break;
      mine.between.wait("the start of a threadgroup");
      if (t == 0) mine.start(threads);
      mine.between.wait("the start of a threadgroup");
    }
  }, [&] {
    for (auto& s : slot) s->abort();
  });
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
  const uint64_t threads = d.threads.count();
  ORCHARD_CHECK(threads >= 1 && threads <= 1024, RuntimeError, "metal emulator: kernel '", d.kernel, "' launched with ",
                threads, " threads per threadgroup; Metal allows 1 to 1024");
  const uint64_t groups = d.groups.count();
  if (groups == 0) return;

  std::vector<void*> buffers;
  for (const KernelArg& a : d.args)
    buffers.push_back(a.base ? static_cast<void*>(static_cast<char*>(a.base) + a.offset)
                            : static_cast<void*>(const_cast<uint8_t*>(a.bytes.data())));
  const ThreadContext base = base_context(d, buffers.data());
  const uint64_t seed = launch_seed(d);
  (kernel.cooperative ? run_cooperative : run_independent)(kernel.fn, d, base, groups, seed);
}

// ---- hooks for the MSL shim ------------------------------------------------------------------

void threadgroup_barrier(bool orders_memory) {
  cooperating_slot("threadgroup_barrier").barrier.wait("threadgroup_barrier", orders_memory);
}

void simdgroup_barrier(bool orders_memory) {
  Slot& s = cooperating_slot("simdgroup_barrier");
  s.simdgroups[t_current.simdgroup]->barrier.wait("simdgroup_barrier", orders_memory);
}

void simd_exchange(const void* mine, void* all, size_t size, uint32_t* count, uint32_t* lane) {
  Simdgroup& s = *cooperating_slot("a simd_* function").simdgroups[t_current.simdgroup];
  ORCHARD_CHECK(size <= kMaxSimdValue, RuntimeError, "metal emulator: simd value of ", size, " bytes is too large");
  auto& slots = s.slots[t_current.exchanges++ % 2];
  const Unordered unordered;  // MSL does not order memory at a simd_* function
  std::memcpy(slots[t_current.lane], mine, size);
  s.barrier.wait("a simd_* function", false);
  for (uint32_t i = 0; i < s.lanes; ++i) std::memcpy(static_cast<char*>(all) + i * size, slots[i], size);
  *count = s.lanes;
  *lane = t_current.lane;
}

uint32_t simd_lane() { return t_current.lane; }

}  // namespace orchard::metal_emu
