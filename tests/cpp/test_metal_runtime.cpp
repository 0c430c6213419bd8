// The portable parts of the Metal runtime that the GPU glue (src/metal/gpu) relies on: the plans'
// work estimates (which decide when a command buffer is committed), the buffer bound for an absent
// attention mask, the kernel family table and pipeline archive path of the embedded library, and
// the buffer cache's budget and memory-pressure release.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>

#include "kernel_library.h"
#include "ops.h"
#include "plans.h"
#include "runtime.h"

using namespace orchard;
using namespace orchard::metal;

namespace {

uint64_t grid_work(const Dispatch& d) { return d.groups.count() * d.threads.count() * kWorkPerThread; }

// Sets an environment variable for one scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST(MetalPlans, LaunchesEstimateTheirWorkFromTheGridByDefault) {
  Tensor out = empty({1000}, DType::Float32, Device::Metal);
  const Launches launches = plan_random({out, /*normal=*/false, 1, 0});
  ASSERT_FALSE(launches.empty());
  for (const Dispatch& d : launches) EXPECT_EQ(d.work, grid_work(d)) << d.kernel;
}

TEST(MetalPlans, MatmulEstimatesItsOperations) {
  const int64_t batch = 2, m = 40, n = 24, k = 56;
  for (DType t : {DType::Float32, DType::Float16, DType::Int32, DType::Int64}) {
    Tensor a = zeros({batch, m, k}, t, Device::Metal), b = zeros({batch, k, n}, t, Device::Metal);
    Tensor out = empty({batch, m, n}, t, Device::Metal);
    const Launches launches = plan_matmul({a, b, out});
    ASSERT_EQ(launches.size(), 1u);
    // Integer products run the naive kernel, counted 8 times (plan_matmul.cpp says why).
    const uint64_t factor = is_floating(t) ? 1 : 8;
    EXPECT_EQ(launches[0].work, uint64_t(2 * batch * m * n * k) * factor) << dtype_name(t);
  }
}

TEST(MetalPlans, AttentionEstimatesItsOperationsAndBindsAFloatBufferForAnAbsentMask) {
  const int64_t B = 2, Hq = 4, Hkv = 2, Lq = 20, Lk = 36, D = 40;
  Tensor q = zeros({B, Hq, Lq, D}, DType::Float16, Device::Metal);
  Tensor k = zeros({B, Hkv, Lk, D}, DType::Float16, Device::Metal), v = zeros({B, Hkv, Lk, D}, DType::Float16, Device::Metal);
  // q at an offset of one half: as the mask argument it would be misaligned for a float.
  Tensor q_odd = zeros({B * Hq * Lq * D + 1}, DType::Float16, Device::Metal).narrow(0, 1, B * Hq * Lq * D).view({B, Hq, Lq, D});
  Tensor out = empty({B, Hq, Lq, D}, DType::Float16, Device::Metal), lse = empty({B, Hq, Lq}, DType::Float32, Device::Metal);
  AttentionParams p{};
  p.scale = 0.125f;
  const uint64_t scores = uint64_t(B * Hq * Lq * Lk);
  auto product_work = [&](uint64_t products) { return scores * (2 * products * D + 32); };  // D is a multiple of 8

  const Launches forward = plan_attention_forward({q_odd, k, v, p, out, lse});
  ASSERT_EQ(forward.size(), 1u);
  EXPECT_EQ(forward[0].work, product_work(2));
  Tensor dq = empty(q.shape(), DType::Float16, Device::Metal), dk = empty(k.shape(), DType::Float16, Device::Metal),
         dv = empty(v.shape(), DType::Float16, Device::Metal);
  const Launches backward = plan_attention_backward({q_odd, k, v, out, lse, out, p, dq, dk, dv});
  ASSERT_EQ(backward.size(), 3u);  // delta, dQ, dK/dV
  EXPECT_EQ(backward[0].work, grid_work(backward[0]));
  EXPECT_EQ(backward[1].work, product_work(3));
  EXPECT_EQ(backward[2].work, product_work(4));

  // [[buffer(3)]] is the float mask: without one, a float32 buffer at an aligned offset (lse).
  for (const Dispatch* d : {&forward[0], &backward[1], &backward[2]}) {
    ASSERT_GT(d->args.size(), 3u);
    EXPECT_EQ(d->args[3].base, lse.storage()->data()) << d->kernel;
    EXPECT_EQ(d->args[3].offset % sizeof(float), 0u) << d->kernel;
  }
}

TEST(MetalKernelLibrary, EveryPlannedKernelHasAFamilyWhoseSourceInstantiatesIt) {
  ASSERT_GT(kKernelFamilyCount, 0u);
  std::set<std::string> families;
  for (const std::string& name : planned_kernel_names()) {
    const KernelFamily* family = kernel_family(name);
    ASSERT_NE(family, nullptr) << "no kernel family holds " << name;
    // The prefix that matched is the first literal of an ORCHARD_KERNEL line in that source.
    bool found = false;
    for (size_t i = 0; i < kKernelPrefixCount; ++i) {
      const std::string prefix = kKernelPrefixes[i].prefix;
      if (name.compare(0, prefix.size(), prefix) == 0 && &kKernelFamilies[kKernelPrefixes[i].family] == family)
        found = std::strstr(family->source, ("ORCHARD_KERNEL(\"" + prefix + "\"").c_str()) != nullptr;
    }
    EXPECT_TRUE(found) << name << " in " << family->name;
    families.insert(family->name);
  }
  EXPECT_EQ(families.size(), kKernelFamilyCount);  // every family serves some plan
  EXPECT_EQ(kernel_family("no_such_kernel"), nullptr);
}

TEST(MetalKernelLibrary, FamilySourcesAreSelfContained) {
  for (size_t i = 0; i < kKernelFamilyCount; ++i) {
    const std::string source = kKernelFamilies[i].source;
    EXPECT_NE(source.find("#include <metal_stdlib>"), std::string::npos) << kKernelFamilies[i].name;
    EXPECT_EQ(source.find("#include \""), std::string::npos) << kKernelFamilies[i].name << " has a local include left";
  }
}

TEST(MetalKernelLibrary, PipelineArchiveLivesInTheUserCacheKeyedBySourcesAndSystem) {
  {
    ScopedEnv xdg("XDG_CACHE_HOME", "/cache");
    const std::string path = pipeline_archive_path("Version 14.5 (Build 23F79)", "Apple M1");
    EXPECT_EQ(path.rfind(std::string("/cache/orchard/pipelines-") + kKernelLibraryHash + "-", 0), 0u) << path;
    EXPECT_EQ(path, pipeline_archive_path("Version 14.5 (Build 23F79)", "Apple M1"));
    EXPECT_NE(path, pipeline_archive_path("Version 15.0 (Build 24A335)", "Apple M1"));
    EXPECT_NE(path, pipeline_archive_path("Version 14.5 (Build 23F79)", "Apple M2"));
  }
  {
    ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
    ScopedEnv home("HOME", "/Users/me");
    EXPECT_EQ(pipeline_archive_path("v", "gpu").rfind("/Users/me/Library/Caches/orchard/pipelines-", 0), 0u);
  }
  ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
  ScopedEnv home("HOME", nullptr);
  EXPECT_EQ(pipeline_archive_path("v", "gpu"), "");
}

namespace {

// Host memory, a small cache budget, and memory pressure on demand.
class SmallBudgetBackend final : public Backend {
 public:
  void* allocate(size_t nbytes) override {
    ++live;
    return std::malloc(nbytes);
  }
  void deallocate(void* base) override {
    --live;
    std::free(base);
  }
  void dispatch(const Dispatch&) override {}
  void copy(void*, size_t, void*, size_t, size_t) override {}
  void synchronize() override {}
  bool emulated() const override { return true; }
  size_t cache_budget() const override { return size_t(1) << 20; }
  void on_memory_pressure(std::function<void()> release) override { pressure = std::move(release); }

  int live = 0;
  std::function<void()> pressure;
};

}  // namespace

TEST(MetalRuntime, CachesFreedBuffersUpToTheBackendBudgetAndReleasesThemUnderPressure) {
  SmallBudgetBackend backend;
  std::unique_ptr<Runtime> runtime = make_metal_runtime(backend);
  ASSERT_TRUE(backend.pressure);
  constexpr size_t kBlock = size_t(1) << 18;  // a quarter of the budget
  std::vector<void*> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(runtime->allocate(kBlock));
  for (void* p : blocks) runtime->deallocate(p, kBlock);
  EXPECT_EQ(backend.live, 4);  // four blocks fill the budget; the others went back to the backend
  void* reused = runtime->allocate(kBlock);
  EXPECT_EQ(backend.live, 4);  // served from the cache
  runtime->deallocate(reused, kBlock);
  backend.pressure();
  EXPECT_EQ(backend.live, 0);
}

TEST(MetalRuntime, TheEmulatorKeepsTheDefaultBudget) {
  EXPECT_EQ(make_backend()->cache_budget(), Backend::kDefaultCacheBudget);
  EXPECT_EQ(Backend::kDefaultCacheBudget, size_t(4) << 30);
}

namespace {

// Memory the host cannot read in place, as a discrete GPU's: bytes are stored scrambled, and only
// read() and write() unscramble them. Blits copy the stored bytes (scrambling is per byte).
class PrivateMemoryBackend final : public Backend {
 public:
  static constexpr uint8_t kKey = 0xa5;
  void* allocate(size_t nbytes) override { return std::malloc(std::max<size_t>(nbytes, 1)); }
  void deallocate(void* base) override { std::free(base); }
  void dispatch(const Dispatch& d) override { FAIL() << "no kernels on this backend, got " << d.kernel; }
  void copy(void* dst, size_t dst_offset, void* src, size_t src_offset, size_t nbytes) override {
    std::memmove(static_cast<uint8_t*>(dst) + dst_offset, static_cast<uint8_t*>(src) + src_offset, nbytes);
  }
  void synchronize() override {}
  bool emulated() const override { return true; }
  void read(const void* base, size_t offset, void* host, size_t nbytes) override {
    for (size_t i = 0; i < nbytes; ++i)
      static_cast<uint8_t*>(host)[i] = static_cast<const uint8_t*>(base)[offset + i] ^ kKey;
  }
  void write(void* base, size_t offset, const void* host, size_t nbytes) override {
    for (size_t i = 0; i < nbytes; ++i)
      static_cast<uint8_t*>(base)[offset + i] = static_cast<const uint8_t*>(host)[i] ^ kKey;
  }
};

// Serves Device::Metal with `runtime` for one scope.
class ScopedMetalRuntime {
 public:
  explicit ScopedMetalRuntime(Runtime* runtime) : old_(&runtime_for(Device::Metal)) {
    register_runtime(Device::Metal, runtime);
  }
  ~ScopedMetalRuntime() { register_runtime(Device::Metal, old_); }

 private:
  Runtime* old_;
};

}  // namespace

TEST(MetalRuntime, CopiesAcrossDevicesGoThroughTheBackendsReadAndWrite) {
  PrivateMemoryBackend backend;
  std::unique_ptr<Runtime> runtime = make_metal_runtime(backend);
  ScopedMetalRuntime serving(runtime.get());
  {
    Tensor host = arange(0, 12, 1, DType::Float32);
    Tensor device = host.to(Device::Metal);
    const uint8_t* stored = static_cast<const uint8_t*>(device.data());
    EXPECT_EQ(stored[4] ^ PrivateMemoryBackend::kKey, static_cast<const uint8_t*>(host.data())[4]);
    Tensor back = device.slice(0, 2, 10).to(Device::CPU);
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(back.data_as<float>()[i], float(i + 2));
    Tensor into = zeros({4}, DType::Float32);
    copy_(into, device.slice(0, 8, 12));
    EXPECT_EQ(into.data_as<float>()[3], 11.0f);
  }
  runtime->release_cached_memory();  // the runtime keeps freed buffers; this one goes away with the test
}
