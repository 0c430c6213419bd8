// The Backend of emulator builds: plain host memory (like shared storage on unified memory) and
// launches run to completion by the emulator, so there is never queued work to wait for.
#include <cstdlib>
#include <cstring>

#include "dispatch.h"
#include "emulator.h"

namespace orchard::metal {

namespace {

class EmulatedBackend final : public Backend {
 public:
  void* allocate(size_t nbytes) override { return std::aligned_alloc(256, (nbytes + 255) / 256 * 256); }
  void deallocate(void* base) override { std::free(base); }
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
