#pragma once

#include <cstdint>
#include <string>

namespace orchard {

enum class Device : uint8_t { CPU, Metal, CUDA };
constexpr int kNumDevices = 3;

const char* device_name(Device d);       // "cpu", "metal", "cuda"
Device parse_device(const std::string& name);  // "cuda:0" too; ValueError naming the accepted names

}  // namespace orchard
