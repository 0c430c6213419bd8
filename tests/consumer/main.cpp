// Uses the installed headers and static libraries: (ones(2,3) @ ones(3,2)) summed is 2*2*3 = 12.
#include <orchard/ops.h>

#include <cstdio>

int main() {
  using namespace orchard;
  Tensor a = ones({2, 3});
  Tensor b = ones({3, 2});
  Tensor s = sum(matmul(a, b) + full({2}, 0.0));
  float value = *s.data_as<float>();
  std::printf("orchard consumer: sum = %g\n", value);
  return value == 12.0f ? 0 : 1;
}
