// The MSL emulator: runs kernels compiled from the .metal sources as C++ (see emulator.cpp).
#pragma once

#include <string>
#include <vector>

#include "dispatch.h"

namespace orchard::metal_emu {

// Memory that no kernel has written yet (fresh device buffers, threadgroup memory) holds this byte
// everywhere, so that reading it shows: NaN in every float dtype, -1 in integers.
constexpr unsigned char kPoisonByte = 0xff;

// Runs one launch to completion; errors (unknown kernel, diverged barriers) raise RuntimeError.
void run(const metal::Dispatch& d);

// Host names of every kernel compiled into the emulator.
std::vector<std::string> kernel_names();

}  // namespace orchard::metal_emu
