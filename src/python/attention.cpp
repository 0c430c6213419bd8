// orchard.flash_attention and orchard.nn.functional.scaled_dot_product_attention.
#include <nanobind/stl/pair.h>

#include "bindings.h"

namespace orchard::python {

void bind_attention(nb::module_& m) {
  m.def("flash_attention", [](const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> scale,
                              double dropout_p, bool causal, std::optional<int64_t> seed, bool return_mask) -> nb::object {
    if (!return_mask) {
      std::optional<uint64_t> s = seed ? std::optional<uint64_t>(uint64_t(*seed)) : std::nullopt;
      Tensor out;
      {
        nb::gil_scoped_release release;
        out = flash_attention(q, k, v, scale, dropout_p, causal, s, nullptr);
      }
      return nb::cast(out);
    }
    ORCHARD_CHECK(q.ndim() == 4 && k.ndim() == 4, ValueError,
                  "flash_attention: q and k must be [batch, heads, length, head_dim], got ", shape_str(q.shape()),
                  " and ", shape_str(k.shape()));
    const int64_t b = q.shape()[0], h = q.shape()[1], lq = q.shape()[2], lk = k.shape()[2];
    // Fix the stream up front so the returned mask is the one the kernel used.
    auto [s, offset] = seed ? std::make_pair(uint64_t(*seed), uint64_t(0)) : next_random_offset(uint64_t(b * h * lq * lk));
    Tensor out, keep;
    {
      nb::gil_scoped_release release;
      out = flash_attention(q, k, v, scale, dropout_p, causal, s, nullptr, offset);
      keep = dropout_p > 0 ? attention_dropout_mask(b, h, lq, lk, dropout_p, s, offset, q.device())
                           : full({b, h, lq, lk}, 1.0, DType::Bool, q.device());
    }
    return nb::make_tuple(out, keep);
  }, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::kw_only(), nb::arg("scale").none() = nb::none(),
     nb::arg("dropout_p") = 0.0, nb::arg("causal") = false, nb::arg("seed").none() = nb::none(),
     nb::arg("return_mask") = false,
     "Exact attention softmax(scale q k^T) v in O(L) memory, differentiable; q [B, H, Lq, D], k/v [B, Hkv, Lk, D]");

  m.def("scaled_dot_product_attention", [](const Tensor& q, const Tensor& k, const Tensor& v,
                                           std::optional<Tensor> attn_mask, double dropout_p, bool is_causal,
                                           std::optional<double> scale, bool enable_gqa) {
    return scaled_dot_product_attention(q, k, v, attn_mask ? &*attn_mask : nullptr, dropout_p, is_causal, scale,
                                        enable_gqa);
  }, nb::arg("query"), nb::arg("key"), nb::arg("value"), nb::arg("attn_mask").none() = nb::none(),
     nb::arg("dropout_p") = 0.0, nb::arg("is_causal") = false, nb::arg("scale").none() = nb::none(),
     nb::arg("enable_gqa") = false, nogil(), "PyTorch's scaled_dot_product_attention, through FlashAttention");
}

}  // namespace orchard::python
