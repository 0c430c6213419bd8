#include "kernel_compiler.h"

namespace orchard::cuda {

// The sources of src/cuda/kernels, embedded at build time as <stem>_source (cmake/OrchardCuda.cmake).
extern const char flash_attention_forward_source[];
extern const char flash_attention_backward_source[];

namespace {
const char* const kFlashAttentionForwardKernels[] = {
    "flash_attention_forward_bf16_d32",  "flash_attention_forward_f16_d32",  "flash_attention_forward_bf16_d64",
    "flash_attention_forward_f16_d64",   "flash_attention_forward_bf16_d96", "flash_attention_forward_f16_d96",
    "flash_attention_forward_bf16_d128", "flash_attention_forward_f16_d128"};
const char* const kFlashAttentionBackwardKernels[] = {
    "flash_attention_dq_bf16_d32",   "flash_attention_dq_f16_d32",   "flash_attention_dkv_bf16_d32",
    "flash_attention_dkv_f16_d32",   "flash_attention_dq_bf16_d64",  "flash_attention_dq_f16_d64",
    "flash_attention_dkv_bf16_d64",  "flash_attention_dkv_f16_d64",  "flash_attention_dq_bf16_d96",
    "flash_attention_dq_f16_d96",    "flash_attention_dkv_bf16_d96", "flash_attention_dkv_f16_d96",
    "flash_attention_dq_bf16_d128",  "flash_attention_dq_f16_d128",  "flash_attention_dkv_bf16_d128",
    "flash_attention_dkv_f16_d128"};
}  // namespace

const KernelFamilySource kFlashAttentionForwardModule{
    "flash_attention_forward", flash_attention_forward_source, kFlashAttentionForwardKernels,
    sizeof(kFlashAttentionForwardKernels) / sizeof(kFlashAttentionForwardKernels[0])};

const KernelFamilySource kFlashAttentionBackwardModule{
    "flash_attention_backward", flash_attention_backward_source, kFlashAttentionBackwardKernels,
    sizeof(kFlashAttentionBackwardKernels) / sizeof(kFlashAttentionBackwardKernels[0])};

const KernelFamilySource* const kNativeModules[] = {&kFlashAttentionForwardModule, &kFlashAttentionBackwardModule};
const size_t kNativeModuleCount = sizeof(kNativeModules) / sizeof(kNativeModules[0]);

}  // namespace orchard::cuda
