#include "device.h"

#include "errors.h"

namespace orchard {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : d == Device::Metal ? "metal" : "cuda"; }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "metal") return Device::Metal;
  if (name == "cuda" || name == "cuda:0") return Device::CUDA;  // one CUDA device, as PyTorch numbers them
  throw ValueError("unknown device '" + name + "'; expected 'cpu', 'metal' or 'cuda'");
}

}  // namespace orchard
