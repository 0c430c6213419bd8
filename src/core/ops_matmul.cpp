#include "autocast.h"
#include "derivatives.h"
#include "ops_common.h"

namespace orchard {

using namespace detail;

namespace {

// Whether a runtime can read the matrices of a [batch, rows, cols] view in place (Runtime::matmul):
// unit stride along rows or columns, and rows (or columns) that do not overlap, which rules out
// expanded matrices. Strides of size-1 dims do not matter.
bool has_matrix_layout(const Tensor& t) {
  const int64_t rows = t.size(1), cols = t.size(2), sr = t.stride(1), sc = t.stride(2);
  bool row_major = (sc == 1 || cols == 1) && (sr >= cols || rows == 1);
  bool col_major = (sr == 1 || rows == 1) && (sc >= rows || cols == 1);
  return row_major || col_major;
}

// t ([..., rows, cols]) as dtype, broadcast to `batch` and viewed as [prod(batch), rows, cols];
// copied only when its batch dims do not merge into one stride or its matrices have no usable layout.
Tensor as_batched(const Tensor& t, DType dtype, Shape batch, int64_t rows, int64_t cols) {
  const int64_t count = checked_numel(batch);
  batch.push_back(rows);
  batch.push_back(cols);
  Tensor v = t.to(dtype).expand(batch).reshape({count, rows, cols});
  return has_matrix_layout(v) ? v : v.contiguous();
}

Shape batch_dims(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

// One product as the runtime takes it: [batch, M, K] @ [batch, K, N] into `out`, whose view
// `result` has the shape the caller asked for. No runtime call is needed when `out` is empty.
struct MatmulPlan {
  Tensor a, b, out, result;
  bool needs_runtime() const { return a.defined(); }
};

MatmulPlan plan_matmul(const Tensor& a, const Tensor& b) {
  ORCHARD_CHECK(a.ndim() >= 1 && b.ndim() >= 1, ValueError, "matmul: both operands need at least 1 dimension, got shapes ",
                shape_str(a.shape()), " and ", shape_str(b.shape()), "; use mul() to multiply by a scalar");
  const Device dev = common_device("matmul", {a, b});
  const DType dt = result_type(a, b);
  ORCHARD_CHECK(dt != DType::Bool, DTypeError,
                "matmul: not supported for bool tensors; convert with .to(int64) or .to(float32)");

  // NumPy: a 1-D first operand is a row [1, K], a 1-D second operand a column [K, 1]; the added
  // dim is dropped from the result.
  const Tensor a2 = a.ndim() == 1 ? a.unsqueeze(0) : a;
  const Tensor b2 = b.ndim() == 1 ? b.unsqueeze(1) : b;
  const int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  ORCHARD_CHECK(b2.size(-2) == k, ValueError, "matmul: shapes ", shape_str(a.shape()), " and ",
                shape_str(b.shape()), " are not aligned: the last dimension of the first (", k,
                ") must equal the ", b.ndim() == 1 ? "length" : "second-to-last dimension", " of the second (",
                b2.size(-2), ")");
  Shape batch;
  try {
    batch = broadcast_shapes(batch_dims(a2), batch_dims(b2));
  } catch (const ValueError& e) {
    throw ValueError(concat("matmul: the batch dimensions of shapes ", shape_str(a.shape()), " and ",
                            shape_str(b.shape()), " do not broadcast: ", e.what()));
  }
  Shape result = batch;
  if (a.ndim() > 1) result.push_back(m);
  if (b.ndim() > 1) result.push_back(n);
  if (checked_numel(result) == 0) return {Tensor(), Tensor(), Tensor(), empty(result, dt, dev)};
  if (k == 0) return {Tensor(), Tensor(), Tensor(), zeros(result, dt, dev)};

  // A stack of matrices times one matrix is a single tall product: [batch * M, K] @ [K, N].
  const bool tall = a2.ndim() > 2 && b2.ndim() == 2;
  const int64_t rows = tall ? checked_numel(batch) * m : m;
  const Shape loop_batch = tall ? Shape{} : batch;
  Tensor a3 = as_batched(tall ? a2.reshape({rows, k}) : a2, dt, loop_batch, rows, k);
  Tensor b3 = as_batched(b2, dt, loop_batch, k, n);
  Tensor out = empty({a3.size(0), rows, n}, dt, dev);
  return {a3, b3, out, out.reshape(result)};
}

}  // namespace

static Tensor matmul_forward(const Tensor& a, const Tensor& b) {
  MatmulPlan p = plan_matmul(a, b);
  if (p.needs_runtime()) runtime_for(p.out.device()).matmul({p.a, p.b, p.out});
  return p.result;
}

std::pair<Tensor, Tensor> detail::matmul_pair(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2) {
  MatmulPlan p1 = plan_matmul(a1, b1), p2 = plan_matmul(a2, b2);
  if (p1.needs_runtime() && p2.needs_runtime() && p1.out.device() == p2.out.device())
    runtime_for(p1.out.device()).matmul_pair({p1.a, p1.b, p1.out}, {p2.a, p2.b, p2.out});
  else
    for (MatmulPlan* p : {&p1, &p2})
      if (p->needs_runtime()) runtime_for(p->out.device()).matmul({p->a, p->b, p->out});
  return {p1.result, p2.result};
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (autocast::Cast c{"matmul", {a, b}}) return matmul(c[0], c[1]);
  autograd::Recorder rec("MatmulBackward", {a, b});
  Tensor out = matmul_forward(a, b);
  return rec.finish(out, [&] { return derivatives::matmul(a, b, {rec.needs(0), rec.needs(1)}); });
}

Tensor addmm(const Tensor& input, const Tensor& a, const Tensor& b) {
  if (autocast::Cast c{"addmm", {input, a, b}}) return addmm(c[0], c[1], c[2]);
  const bool matrices = a.ndim() == 2 && b.ndim() == 2 && a.size(1) == b.size(0) && a.size(0) > 0 &&
                        b.size(1) > 0 && a.size(1) > 0;
  auto broadcasts_to_product = [&] {  // input's dims, right-aligned, are 1 or the product's
    const Shape& s = input.shape();
    return s.size() <= 2 && (s.empty() || s.back() == 1 || s.back() == b.size(1)) &&
           (s.size() < 2 || s[0] == 1 || s[0] == a.size(0));
  };
  const bool fusable = matrices && a.device() == b.device() && input.device() == a.device() &&
                       input.dtype() == result_type(a, b) && input.dtype() != DType::Bool && broadcasts_to_product();
  if (!fusable) return add(input, matmul(a, b));
  autograd::Recorder rec("AddmmBackward", {input, a, b});
  MatmulPlan p = plan_matmul(a, b);
  {
    autograd::GradModeGuard untracked(false);  // the copy is part of this op, not a recorded copy_
    Tensor result = p.result;
    copy_(result, input);
  }
  runtime_for(p.out.device()).matmul_accumulate({p.a, p.b, p.out});
  return rec.finish(p.result, [&] {
    return derivatives::addmm(input.shape(), a, b, {rec.needs(0), rec.needs(1), rec.needs(2)});
  });
}

}  // namespace orchard
