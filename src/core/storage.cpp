#include "storage.h"

#include <atomic>

#include "profile.h"
#include "runtime.h"

namespace orchard {

namespace {
std::atomic<uint64_t> g_next_id{1};
}

void track_live(Storage* s, bool alive);  // profile.cpp

Storage::Storage(Device device, void* data, size_t nbytes, Deleter release)
    : device_(device), data_(data), nbytes_(nbytes), release_(std::move(release)),
      id_(g_next_id.fetch_add(1, std::memory_order_relaxed)) {
  logged_alloc_ = profile::record_alloc(id_, nbytes_, device_);
  track_live(this, true);
}

Storage::~Storage() {
  track_live(this, false);
  profile::record_free(id_, nbytes_, device_, logged_alloc_);
  if (release_) release_(data_);
}

Ptr<Storage> Storage::allocate(Device device, size_t nbytes) {
  Runtime& rt = runtime_for(device);
  void* data = rt.allocate(nbytes);
  return Ptr<Storage>(new Storage(device, data, nbytes,
                                  [&rt, nbytes](void* p) { rt.deallocate(p, nbytes); }));
}

Ptr<Storage> Storage::wrap(Device device, void* data, size_t nbytes, Deleter release) {
  return Ptr<Storage>(new Storage(device, data, nbytes, std::move(release)));
}

}  // namespace orchard
