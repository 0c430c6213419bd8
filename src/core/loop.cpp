#include "loop.h"

namespace orchard {

namespace {
Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  Strides st(shape.size(), 0);
  size_t lead = shape.size() - t.shape().size();
  for (size_t i = lead; i < shape.size(); ++i)
    st[i] = t.shape()[i - lead] == 1 ? 0 : t.strides()[i - lead];
  return st;
}
}  // namespace

ElementwiseLoop make_loop(const Tensor& out, std::initializer_list<Tensor> inputs) {
  ElementwiseLoop loop;
  std::vector<Strides> all;
  all.push_back(broadcast_strides(out, out.shape()));
  for (const Tensor& t : inputs) all.push_back(broadcast_strides(t, out.shape()));

  // Drop size-1 dims, then merge dim i into the one before it when every operand is contiguous
  // across the pair.
  Shape shape;
  std::vector<Strides> merged(all.size());
  for (size_t d = 0; d < out.shape().size(); ++d) {
    int64_t n = out.shape()[d];
    if (n == 1) continue;
    bool can_merge = !shape.empty();
    for (size_t k = 0; can_merge && k < all.size(); ++k)
      can_merge = merged[k].back() == all[k][d] * n;
    if (can_merge) {
      shape.back() *= n;
      for (size_t k = 0; k < all.size(); ++k) merged[k].back() = all[k][d];
    } else {
      shape.push_back(n);
      for (size_t k = 0; k < all.size(); ++k) merged[k].push_back(all[k][d]);
    }
  }
  if (out.numel() == 0) shape = {0};

  loop.shape = shape;
  auto add = [&](const Tensor& t, Strides st) {
    if (out.numel() == 0) st.assign(1, 0);
    loop.operands.push_back({t.storage().get(), t.offset(), t.dtype(), std::move(st)});
  };
  add(out, merged[0]);
  size_t k = 1;
  for (const Tensor& t : inputs) add(t, merged[k++]);
  return loop;
}

}  // namespace orchard
