// MSL's address-space qualifiers and kernel keyword for the kernels under NVRTC, where `device` and
// `constant` would otherwise clash with CUDA's __device__ and __constant__ (macros that expand to
// attributes naming them): included by the generated family source after every header that uses
// those, just before the kernel text. ORCHARD_MSL_EMULATION tells metal/params.h that the kernels
// are compiled as C++ (the emulator's name for it).
#pragma once

#define device
#define threadgroup
#define thread
#define constant const
#define kernel
#define ORCHARD_MSL_EMULATION 1
