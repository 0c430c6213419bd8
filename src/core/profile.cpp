#include "profile.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <unordered_set>

#include "storage.h"

namespace orchard {

namespace {
std::mutex g_log_mutex;
std::atomic<int64_t> g_allocs{0}, g_frees{0};

std::mutex& live_mutex() { static std::mutex m; return m; }
std::unordered_set<const Storage*>& live_set() { static std::unordered_set<const Storage*> s; return s; }

void append_line(const char* event, uint64_t id, size_t nbytes, Device device) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::FILE* f = std::fopen(profile::log_path().c_str(), "a");
  if (!f) return;  // profiling must never break the program it observes
  std::fprintf(f, "%s id=%llu bytes=%zu device=%s\n", event, (unsigned long long)id, nbytes,
               device_name(device));
  std::fclose(f);
}
}  // namespace

void track_live(Storage* s, bool alive) {
  std::lock_guard<std::mutex> lock(live_mutex());
  if (alive) live_set().insert(s); else live_set().erase(s);
}

namespace profile {

bool enabled() {
  const char* v = std::getenv("ORCHARD_TENSOR_PROFILE");
  return v && *v && std::string(v) != "0";
}

std::string log_path() {
  if (const char* p = std::getenv("ORCHARD_TENSOR_PROFILE_LOG"); p && *p) return p;
  return (std::filesystem::temp_directory_path() / "orchard_tensor_profile.log").string();
}

bool record_alloc(uint64_t id, size_t nbytes, Device device) {
  if (!enabled()) return false;
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  append_line("alloc", id, nbytes, device);
  return true;
}

void record_free(uint64_t id, size_t nbytes, Device device, bool logged_alloc) {
  if (!logged_alloc) return;
  g_frees.fetch_add(1, std::memory_order_relaxed);
  append_line("free", id, nbytes, device);
}

Counts counts() { return {g_allocs.load(), g_frees.load()}; }

void reset() {
  g_allocs = 0;
  g_frees = 0;
}

void clear_log() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::error_code ec;
  std::filesystem::remove(log_path(), ec);
}

std::vector<LiveStorage> live_storages() {
  std::lock_guard<std::mutex> lock(live_mutex());
  std::vector<LiveStorage> out;
  for (const Storage* s : live_set()) out.push_back({s->id(), s->nbytes(), s->device()});
  return out;
}

}  // namespace profile
}  // namespace orchard
