// FlashAttention front-ends: checks, the [B, H, L, D] layout, masks as an additive float32 tensor,
// dropout seeds, and the autograd node whose backward is the runtime's fused kernel.
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "autocast.h"
#include "derivatives.h"
#include "ops_common.h"
#include "philox.h"

namespace orchard {

using namespace detail;

namespace {

bool is_attention_dtype(DType t) { return t == DType::Float32 || t == DType::BFloat16 || t == DType::Float16; }

std::string shapes_str(const Tensor& q, const Tensor& k, const Tensor& v) {
  return concat("q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), " and v ", shape_str(v.shape()));
}

// A user mask broadcast to `scores` ([B, Hq, Lq, Lk]) as an additive float32 tensor: a bool mask
// (true = attend) becomes 0 / -inf, a float mask is converted. Stays a broadcast view when it can.
Tensor additive_mask(const Tensor& mask, const Shape& scores, const char* op) {
  Tensor m = mask;
  if (mask.dtype() == DType::Bool) {
    m = where(mask, scalar_tensor(0.0, DType::Float32, mask.device()),
              scalar_tensor(-std::numeric_limits<double>::infinity(), DType::Float32, mask.device()));
  } else {
    ORCHARD_CHECK(is_floating(mask.dtype()), DTypeError, op, ": the mask must be bool (true = attend) or a float ",
                  "tensor added to the scores, got ", dtype_name(mask.dtype()));
  }
  bool fits;
  try {
    fits = broadcast_shapes(m.shape(), scores) == scores;
  } catch (const ValueError&) {
    fits = false;
  }
  ORCHARD_CHECK(fits, ValueError, op, ": mask of shape ", shape_str(mask.shape()),
                " does not broadcast to the attention scores ", shape_str(scores));
  return m.to(DType::Float32).expand(scores);
}

}  // namespace

Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> scale,
                       double dropout_p, bool causal, std::optional<uint64_t> seed, const Tensor* mask,
                       uint64_t offset) {
  const char* op = "flash_attention";
  if (autocast::Cast c{op, {q, k, v}}) return flash_attention(c[0], c[1], c[2], scale, dropout_p, causal, seed, mask, offset);
  ORCHARD_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4, ValueError, op,
                ": expected q, k and v of 4 dimensions [batch, heads, length, head_dim], got ", shapes_str(q, k, v));
  ORCHARD_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), DTypeError, op,
                ": q, k and v must have one dtype, got ", dtype_name(q.dtype()), ", ", dtype_name(k.dtype()),
                " and ", dtype_name(v.dtype()));
  ORCHARD_CHECK(is_attention_dtype(q.dtype()), DTypeError, op,
                ": supports float32, bfloat16 and float16 tensors, got ", dtype_name(q.dtype()));
  const Device device = mask ? common_device(op, {q, k, v, *mask}) : common_device(op, {q, k, v});
  ORCHARD_CHECK(dropout_p >= 0 && dropout_p < 1, ValueError, op, ": dropout_p must be in [0, 1), got ", dropout_p);
  const int64_t B = q.size(0), Hq = q.size(1), Lq = q.size(2), D = q.size(3), Hkv = k.size(1), Lk = k.size(2);
  ORCHARD_CHECK(D >= 1 && D <= kMaxHeadDim, ValueError, op, ": head dimension must be in 1..", kMaxHeadDim, ", got ", D, " (",
                shapes_str(q, k, v), ")");
  ORCHARD_CHECK(k.shape() == v.shape(), ValueError, op, ": k and v must have the same shape, got ",
                shapes_str(q, k, v));
  ORCHARD_CHECK(k.size(0) == B && k.size(3) == D, ValueError, op,
                ": q, k and v must agree in batch size and head dimension, got ", shapes_str(q, k, v));
  ORCHARD_CHECK(Hkv > 0 ? Hq % Hkv == 0 : Hq == 0, ValueError, op, ": the ", Hq,
                " query heads must be a multiple of the ", Hkv, " key/value heads, got ", shapes_str(q, k, v));

  autograd::Recorder rec("FlashAttentionBackward", {q, k, v});
  const Shape scores{B, Hq, Lq, Lk};
  Tensor add_mask = mask ? additive_mask(*mask, scores, op) : Tensor();
  AttentionParams p;
  p.scale = float(scale ? *scale : 1.0 / std::sqrt(double(D)));
  p.dropout_p = float(dropout_p);
  p.causal = causal;
  std::tie(p.seed, p.offset) = seed ? std::pair(*seed, offset)
                               : dropout_p > 0 ? next_random_offset(uint64_t(checked_numel(scores)))
                                               : std::pair<uint64_t, uint64_t>(0, 0);
  if (mask) {
    p.mask = &add_mask;
    for (int i = 0; i < 4; ++i) p.mask_strides[i] = add_mask.stride(i);
  }

  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  Tensor out = empty(q.shape(), q.dtype(), device);
  Tensor lse = empty({B, Hq, Lq}, DType::Float32, device);
  if (out.numel() > 0) runtime_for(device).attention_forward({qc, kc, vc, p, out, lse});

  return rec.finish(out, [&] { return derivatives::attention(qc, kc, vc, out, lse, add_mask, p); });
}

Tensor attention_dropout_mask(int64_t B, int64_t H, int64_t Lq, int64_t Lk, double dropout_p, uint64_t seed,
                              uint64_t offset, Device device) {
  ORCHARD_CHECK(dropout_p >= 0 && dropout_p < 1, ValueError,
                "attention_dropout_mask: dropout_p must be in [0, 1), got ", dropout_p);
  Tensor mask = empty({B, H, Lq, Lk}, DType::Bool, Device::CPU);
  bool* keep = mask.data_as<bool>();
  const float p = float(dropout_p);  // as the kernels see it (AttentionParams::dropout_p)
  for (int64_t i = 0, n = mask.numel(); i < n; ++i) keep[i] = attention_dropout_keep(seed, offset + uint64_t(i), p);
  return mask.to(device);
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* attn_mask,
                                    double dropout_p, bool is_causal, std::optional<double> scale, bool enable_gqa) {
  const char* op = "scaled_dot_product_attention";
  if (autocast::Cast c{op, {q, k, v}})
    return scaled_dot_product_attention(c[0], c[1], c[2], attn_mask, dropout_p, is_causal, scale, enable_gqa);
  ORCHARD_CHECK(q.ndim() >= 3 && k.ndim() == q.ndim() && v.ndim() == q.ndim(), ValueError, op,
                ": expected q, k and v of the same number (at least 3) of dimensions [..., heads, length, "
                "embed], got ", shapes_str(q, k, v));
  const Shape batch(q.shape().begin(), q.shape().end() - 3);
  ORCHARD_CHECK(Shape(k.shape().begin(), k.shape().end() - 3) == batch &&
                    Shape(v.shape().begin(), v.shape().end() - 3) == batch,
                ValueError, op, ": q, k and v must have the same batch dimensions, got ", shapes_str(q, k, v));
  ORCHARD_CHECK(enable_gqa || k.size(-3) == q.size(-3), ValueError, op, ": q has ", q.size(-3), " heads and k ",
                k.size(-3), " (", shapes_str(q, k, v), "); pass enable_gqa=True for grouped-query attention");
  ORCHARD_CHECK(!(attn_mask && is_causal), ValueError, op,
                ": pass either attn_mask or is_causal=True, not both (as PyTorch)");

  // Flatten the batch dims into one: [B, H, L, E].
  const int64_t B = checked_numel(batch);
  auto as_4d = [B](const Tensor& t) { return t.reshape({B, t.size(-3), t.size(-2), t.size(-1)}); };
  Tensor mask4;
  if (attn_mask) {
    Shape scores = batch;
    for (int64_t d : {q.size(-3), q.size(-2), k.size(-2)}) scores.push_back(d);
    try {
      mask4 = attn_mask->expand(scores).reshape({B, q.size(-3), q.size(-2), k.size(-2)});
    } catch (const ValueError&) {
      throw ValueError(concat(op, ": attn_mask of shape ", shape_str(attn_mask->shape()),
                              " does not broadcast to the attention scores ", shape_str(scores)));
    }
  }
  Tensor out = flash_attention(as_4d(q), as_4d(k), as_4d(v), scale, dropout_p, is_causal, std::nullopt,
                               attn_mask ? &mask4 : nullptr);
  return out.reshape(q.shape());
}

}  // namespace orchard
