#pragma once

#include <cstdint>
#include <string>

namespace orchard {

enum class Device : uint8_t { CPU, Metal };
constexpr int kNumDevices = 2;

const char* device_name(Device d);       // "cpu", "metal"
Device parse_device(const std::string& name);  // ValueError naming the accepted names

}  // namespace orchard
