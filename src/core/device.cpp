#include "device.h"

#include "errors.h"

namespace orchard {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "metal"; }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "metal") return Device::Metal;
  throw ValueError("unknown device '" + name + "'; expected 'cpu' or 'metal'");
}

}  // namespace orchard
