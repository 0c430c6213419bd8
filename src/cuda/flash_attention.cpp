#include "flash_attention.h"

#include <cstring>

#include "attention_params.h"
#include "plans.h"

namespace orchard::cuda {

namespace {

constexpr uint32_t kHeadDims[] = {32, 64, 96, 128};  // each the width of its tier (attention_params.h)
constexpr uint32_t kRows = 64, kThreads = 128;       // rows and threads of a CTA (the .cu files')
constexpr uint32_t kMaxGridYZ = 65535;
constexpr float kLog2e = 1.4426950408889634f;

const void* address(const metal::KernelArg& a) { return static_cast<const char*>(a.base) + a.offset; }
void* pointer(const metal::KernelArg& a) { return const_cast<void*>(address(a)); }
bool aligned(const metal::KernelArg& a, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(address(a)) % bytes == 0;
}

// The launches' buffers (plan_attention.cpp): the 16-bit operands, read with cp.async or written 4
// bytes at a time, and the float32 ones.
struct Layout {
  size_t args;
  std::vector<int> tensors, floats;
};
const Layout& layout(AttentionPass pass) {
  static const Layout forward{7, {0, 1, 2, 4}, {5}};     // q, k, v, mask or lse, out, lse, params
  static const Layout dq{9, {0, 1, 2, 4, 7}, {5, 6}};    // q, k, v, mask or lse, dout, lse, delta, dq, params
  static const Layout dkv{10, {0, 1, 2, 4, 7, 8}, {5, 6}};  // ..., delta, dk, dv, params
  return pass == AttentionPass::Forward ? forward : pass == AttentionPass::Dq ? dq : dkv;
}

// The rows of a backward kernel's streamed block, and its dynamic shared memory (the .cu's).
uint32_t block_rows(uint32_t d) { return d <= 64 ? 64 : 32; }
uint32_t backward_shared(AttentionPass pass, uint32_t d) {
  const uint32_t n = block_rows(d);
  return (2 * kRows + 2 * n) * (d + 8) * 2 + (pass == AttentionPass::Dkv ? 8 * n : 0);
}

int64_t blocks(int64_t n) { return (n + kRows - 1) / kRows; }

}  // namespace

std::vector<std::pair<std::string, AttentionPass>> flash_attention_kernels(DType t) {
  std::vector<std::pair<std::string, AttentionPass>> names;
  if (t != DType::BFloat16 && t != DType::Float16) return names;
  for (uint32_t dt : kHeadDims) {
    names.emplace_back(metal::attention_forward_kernel(t, dt), AttentionPass::Forward);
    names.emplace_back(metal::attention_dq_kernel(t, dt), AttentionPass::Dq);
    names.emplace_back(metal::attention_dkv_kernel(t, dt), AttentionPass::Dkv);
  }
  return names;
}

bool cuda_flash_attention(const metal::Dispatch& d, DType t, AttentionPass pass, NativeLauncher& launcher) {
  const Layout& args = layout(pass);
  if ((t != DType::BFloat16 && t != DType::Float16) || launcher.arch() < 80 || d.args.size() != args.args) return false;
  metal::AttentionKernelParams p;
  if (d.args.back().bytes.size() != sizeof p) return false;
  std::memcpy(&p, d.args.back().bytes.data(), sizeof p);
  bool head_dim = false;
  for (uint32_t dt : kHeadDims) head_dim = head_dim || p.head_dim == dt;
  const uint32_t batch = d.groups.z;
  if (!head_dim || p.has_mask || p.drop_threshold != 0 || p.lq < 0 || p.lk < 0 || p.heads_kv == 0 ||
      p.heads_q % p.heads_kv != 0 || p.heads_q > kMaxGridYZ || batch > kMaxGridYZ)
    return false;
  const int64_t grid_x = blocks(pass == AttentionPass::Dkv ? p.lk : p.lq);
  if (grid_x == 0 || grid_x > int64_t(INT32_MAX)) return false;
  for (int i : args.tensors)
    if (!aligned(d.args[size_t(i)], 16)) return false;
  for (int i : args.floats)
    if (!aligned(d.args[size_t(i)], 4)) return false;

  static const char* const kPassNames[] = {"forward", "dq", "dkv"};
  const std::string kernel = std::string("flash_attention_") + kPassNames[int(pass)] + "_" +
                             (t == DType::BFloat16 ? "bf16" : "f16") + "_d" + std::to_string(p.head_dim);
  long long lq = p.lq, lk = p.lk;
  uint32_t heads_q = p.heads_q, heads_kv = p.heads_kv, causal = p.causal;
  float scale_log2 = p.scale * kLog2e, scale = p.scale;  // the kernels' exponentials are base 2
  std::vector<void*> pointers;
  for (size_t i = 0; i + 1 < d.args.size(); ++i)
    if (i != 3) pointers.push_back(pointer(d.args[i]));  // not the mask's place
  std::vector<void*> params;
  for (void*& ptr : pointers) params.push_back(&ptr);
  for (void* scalar : {static_cast<void*>(&lq), static_cast<void*>(&lk), static_cast<void*>(&heads_q),
                       static_cast<void*>(&heads_kv), static_cast<void*>(&causal), static_cast<void*>(&scale_log2)})
    params.push_back(scalar);
  if (pass != AttentionPass::Forward) params.push_back(&scale);
  const uint32_t heads = pass == AttentionPass::Dkv ? heads_kv : heads_q;
  launcher.launch(pass == AttentionPass::Forward ? kFlashAttentionForwardModule : kFlashAttentionBackwardModule,
                  kernel.c_str(), {uint32_t(grid_x), heads, batch}, {kThreads},
                  pass == AttentionPass::Forward ? 0 : backward_shared(pass, p.head_dim), params.data());
  return true;
}

}  // namespace orchard::cuda
