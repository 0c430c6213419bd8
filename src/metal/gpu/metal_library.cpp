#include "metal_library.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "errors.h"
#include "kernel_library.h"

namespace orchard::metal {

#ifdef ORCHARD_HAS_METALLIB
// Generated from the metallib that cmake/OrchardMetal.cmake builds when the Metal compiler exists.
extern const unsigned char kMetallib[];
extern const size_t kMetallibSize;
#endif

namespace {

// A write copies the whole archive, so pipelines added in quick succession are written together.
constexpr auto kArchiveSaveInterval = std::chrono::seconds(5);

NS::String* ns_string(const std::string& s) { return NS::String::string(s.c_str(), NS::UTF8StringEncoding); }

std::string utf8(const NS::String* s) { return s && s->utf8String() ? s->utf8String() : ""; }

// MSL 3.1 (macOS 14), and no fast math, so that NaN and infinities behave as on the CPU (the
// metallib is built with -fno-fast-math too). macOS 15 replaced fastMathEnabled by mathMode, which
// metal-cpp for macOS 14.2 does not declare; the older property still works there.
NS::SharedPtr<MTL::CompileOptions> compile_options() {
  auto options = NS::TransferPtr(MTL::CompileOptions::alloc()->init());
  options->setLanguageVersion(MTL::LanguageVersion3_1);
  options->setFastMathEnabled(false);
  return options;
}

}  // namespace

std::string describe(const NS::Error* error) {
  const std::string text = error ? utf8(error->localizedDescription()) : "";
  return text.empty() ? "unknown error" : text;
}

struct KernelLibrary::Family {
  std::once_flag once;
  NS::SharedPtr<MTL::Library> library;
  std::string error;  // kept: a family that failed to compile is not compiled again at every launch
};

KernelLibrary::KernelLibrary(MTL::Device* device, Options options)
    : device_(NS::RetainPtr(device)), options_(options), families_(new Family[kKernelFamilyCount]) {
  if (options.archive) open_archive();
}

KernelLibrary::~KernelLibrary() = default;

MTL::Library* KernelLibrary::family_library(size_t family) {
#ifdef ORCHARD_HAS_METALLIB
  if (!options_.from_source) {
    std::call_once(metallib_once_, [&] {
      // Wraps the static bytes without copying them (so the destructor block has nothing to free).
      dispatch_data_t data =
          dispatch_data_create(kMetallib, kMetallibSize, dispatch_get_global_queue(QOS_CLASS_DEFAULT, 0), ^{});
      NS::Error* error = nullptr;
      metallib_ = NS::TransferPtr(device_->newLibrary(data, &error));
      dispatch_release(data);
    });
    // Without it (an OS older than the deployment target the metallib was built for), the sources.
    if (metallib_) return metallib_.get();
  }
#endif
  Family& f = families_[family];
  std::call_once(f.once, [&] {
    AutoreleasePool pool;
    NS::Error* error = nullptr;
    f.library = NS::TransferPtr(
        device_->newLibrary(ns_string(kKernelFamilies[family].source), compile_options().get(), &error));
    if (!f.library) f.error = describe(error);
  });
  if (!f.library)
    throw RuntimeError(std::string("cannot compile the Metal kernels of ") + kKernelFamilies[family].name +
                       ".metal: " + f.error);
  return f.library.get();
}

MTL::ComputePipelineState* KernelLibrary::pipeline(const std::string& kernel) {
  {
    std::lock_guard<std::mutex> lock(pipelines_mutex_);
    auto it = pipelines_.find(kernel);
    if (it != pipelines_.end()) return it->second.get();
  }
  // Built without the lock, so that other kernels' launches go on meanwhile (two threads may build
  // the same pipeline at once: the first one kept wins).
  AutoreleasePool pool;
  const KernelFamily* family = kernel_family(kernel);
  MTL::Library* library = family ? family_library(size_t(family - kKernelFamilies)) : nullptr;
  NS::SharedPtr<MTL::Function> function;
  if (library) function = NS::TransferPtr(library->newFunction(ns_string(kernel)));
  if (!function) throw RuntimeError("the Metal kernel library has no kernel named '" + kernel + "'");
  auto descriptor = NS::TransferPtr(MTL::ComputePipelineDescriptor::alloc()->init());
  descriptor->setComputeFunction(function.get());
  NS::Error* error = nullptr;
  NS::SharedPtr<MTL::ComputePipelineState> state;
  if (archive_) {
    descriptor->setBinaryArchives(NS::Array::array(archive_.get()));
    state = NS::TransferPtr(device_->newComputePipelineState(
        descriptor.get(), MTL::PipelineOptionFailOnBinaryArchiveMiss, nullptr, &error));
    if (!state) {  // not compiled by an earlier process: compile it into the archive, then take it from there
      std::lock_guard<std::mutex> lock(archive_mutex_);
      if (archive_->addComputePipelineFunctions(descriptor.get(), &error)) archive_dirty_ = true;
    }
  }
  error = nullptr;
  if (!state)
    state = NS::TransferPtr(device_->newComputePipelineState(descriptor.get(), MTL::PipelineOptionNone, nullptr, &error));
  if (!state) throw RuntimeError("cannot build the pipeline of Metal kernel '" + kernel + "': " + describe(error));
  std::lock_guard<std::mutex> lock(pipelines_mutex_);
  return pipelines_.emplace(kernel, std::move(state)).first->second.get();
}

void KernelLibrary::open_archive() {
  AutoreleasePool pool;
  archive_path_ =
      pipeline_archive_path(utf8(NS::ProcessInfo::processInfo()->operatingSystemVersionString()), utf8(device_->name()));
  if (archive_path_.empty()) return;
  auto descriptor = NS::TransferPtr(MTL::BinaryArchiveDescriptor::alloc()->init());
  std::error_code ignored;
  if (std::filesystem::exists(archive_path_, ignored))
    descriptor->setUrl(NS::URL::fileURLWithPath(ns_string(archive_path_)));
  NS::Error* error = nullptr;
  archive_ = NS::TransferPtr(device_->newBinaryArchive(descriptor.get(), &error));
  if (!archive_ && descriptor->url()) {  // unreadable (damaged, say): start an empty one, written over it later
    descriptor->setUrl(nullptr);
    archive_ = NS::TransferPtr(device_->newBinaryArchive(descriptor.get(), &error));
  }
}

void KernelLibrary::save_archive() {
  std::lock_guard<std::mutex> lock(archive_mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!archive_dirty_ || now - archive_saved_ < kArchiveSaveInterval) return;
  archive_dirty_ = false;
  archive_saved_ = now;
  AutoreleasePool pool;
  std::error_code ignored;
  std::filesystem::create_directories(std::filesystem::path(archive_path_).parent_path(), ignored);
  // Written aside, then renamed into place: a process opening the archive never sees half of one.
  const std::string partial = archive_path_ + "." + std::to_string(getpid()) + ".partial";
  NS::Error* error = nullptr;
  if (archive_->serializeToURL(NS::URL::fileURLWithPath(ns_string(partial)), &error))
    std::filesystem::rename(partial, archive_path_, ignored);
  else
    std::filesystem::remove(partial, ignored);
}

}  // namespace orchard::metal
