#include "flash_attention.h"

#include <cstdint>
#include <cstring>

#include "attention_params.h"
#include "plans.h"

namespace orchard::cuda {

namespace {

constexpr uint32_t kHeadDims[] = {32, 64, 96, 128};  // each the width of its tier (attention_params.h)
constexpr uint32_t kRows = 64, kThreads = 128;       // query rows and threads of a CTA (the .cu's)
constexpr uint32_t kMaxGridYZ = 65535;
constexpr float kLog2e = 1.4426950408889634f;

const void* address(const metal::KernelArg& a) { return static_cast<const char*>(a.base) + a.offset; }
bool aligned(const metal::KernelArg& a, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(address(a)) % bytes == 0;
}

}  // namespace

std::vector<std::string> flash_attention_forward_kernels(DType t) {
  std::vector<std::string> names;
  if (t != DType::BFloat16 && t != DType::Float16) return names;
  for (uint32_t dt : kHeadDims)
    names.push_back(metal::attention_forward_kernel(t, dt));
  return names;
}

bool cuda_flash_attention_forward(const metal::Dispatch& d, DType t, NativeLauncher& launcher) {
  if ((t != DType::BFloat16 && t != DType::Float16) || launcher.arch() < 80 || d.args.size() != 7) return false;
  metal::AttentionKernelParams p;
  if (d.args[6].bytes.size() != sizeof p) return false;
  std::memcpy(&p, d.args[6].bytes.data(), sizeof p);
  bool head_dim = false;
  for (uint32_t dt : kHeadDims) head_dim = head_dim || p.head_dim == dt;
  const uint32_t batch = d.groups.z;
  if (!head_dim || p.has_mask || p.drop_threshold != 0 || p.lq <= 0 || p.lk < 0 || p.heads_kv == 0 ||
      p.heads_q % p.heads_kv != 0 || p.heads_q > kMaxGridYZ || batch > kMaxGridYZ)
    return false;
  const int64_t blocks = (p.lq + kRows - 1) / kRows;
  if (blocks > int64_t(INT32_MAX)) return false;
  for (int i : {0, 1, 2, 4})  // q, k, v, out: cp.async and the output's stores move 16 and 4 bytes
    if (!aligned(d.args[i], 16)) return false;
  if (!aligned(d.args[5], 4)) return false;

  const std::string kernel = std::string("flash_attention_forward_") + (t == DType::BFloat16 ? "bf16" : "f16") +
                             "_d" + std::to_string(p.head_dim);
  void* q = const_cast<void*>(address(d.args[0]));
  void* k = const_cast<void*>(address(d.args[1]));
  void* v = const_cast<void*>(address(d.args[2]));
  void* out = const_cast<void*>(address(d.args[4]));
  void* lse = const_cast<void*>(address(d.args[5]));
  long long lq = p.lq, lk = p.lk;
  uint32_t heads_q = p.heads_q, heads_kv = p.heads_kv, causal = p.causal;
  float scale_log2 = p.scale * kLog2e;  // the kernel's exponentials are base 2
  void* params[] = {&q, &k, &v, &out, &lse, &lq, &lk, &heads_q, &heads_kv, &causal, &scale_log2};
  launcher.launch(kFlashAttentionForwardModule, kernel.c_str(), {uint32_t(blocks), heads_q, batch}, {kThreads}, params);
  return true;
}

}  // namespace orchard::cuda
