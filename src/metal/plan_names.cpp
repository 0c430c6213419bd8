#include "plans.h"

namespace orchard::metal {

std::vector<std::string> planned_kernel_names() {
  std::vector<std::string> names;
  elementwise_kernel_names(names);
  random_kernel_names(names);
  reduce_kernel_names(names);
  matmul_kernel_names(names);
  index_kernel_names(names);
  training_kernel_names(names);
  attention_kernel_names(names);
  sort_kernel_names(names);
  scan_kernel_names(names);
  return names;
}

}  // namespace orchard::metal
