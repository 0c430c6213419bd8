// The Backend of emulator builds: plain host memory (like shared storage on unified memory) and
// launches run to completion by the emulator, so there is never queued work to wait for.
//
// Every buffer is fresh, so that the tests see what kernels do with memory they should not touch:
// allocated at its exact size and never cached (under AddressSanitizer the first byte past the end
// faults), and filled with the poison byte (an uninitialised float reads as NaN).
#include <cstdlib>
#include <cstring>

#include "dispatch.h"
#include "emulator.h"

namespace orchard::metal {

namespace {

class EmulatedBackend final : public Backend {
 public:
  void* allocate(size_t nbytes) override {
    void* p = nullptr;
    if (posix_memalign(&p, 256, nbytes ? nbytes : 1) != 0) return nullptr;
    std::memset(p, metal_emu::kPoisonByte, nbytes);
    return p;
  }
  void deallocate(void* base) override { std::free(base); }
  bool cache_buffers() const override { return false; }
  void dispatch(const Dispatch& d) override { metal_emu::run(d); }
  void copy(void* dst_base, size_t dst_offset, void* src_base, size_t src_offset, size_t nbytes) override {
    std::memmove(static_cast<char*>(dst_base) + dst_offset, static_cast<char*>(src_base) + src_offset, nbytes);
  }
  void synchronize() override {}
  bool emulated() const override { return true; }
};

}  // namespace

Backend* make_emulated_backend() {
  static EmulatedBackend backend;
  return &backend;
}

}  // namespace orchard::metal
