// Fused training kernels: layer norm, cross-entropy, the AdamW step and loss scaling's unscale, each
// one pass per row (or per element) instead of a chain of elementwise ops with their temporaries.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu_runtime.h"
#include "parallel.h"
#include "row_reduce.h"
#include "vec_math.h"

namespace orchard::cpu {

namespace {

// sum_i exp(x[i] - shift) and out[i] = g * exp(x[i] - shift) for a softmax row (x - shift <= 0):
// float rows eight lanes at a time through exp_nonpositive, other types through vexp.
template <typename T, typename C = compute_t<T>>
C sum_exp_shifted(const T* x, int64_t n, C shift) {
  int64_t i = 0;
  C total = 0;
  if constexpr (std::is_same_v<T, float>) {
    Vec8 acc{};
    for (; i + 8 <= n; i += 8) acc += exp_nonpositive(load8(x + i) - shift);
    for (int l = 0; l < 8; ++l) total += acc[l];
  }
  return total + lane_sum<C>(n - i, [x, i, shift](int64_t j) { return vexp(C(x[i + j]) - shift); });
}

template <typename T, typename C = compute_t<T>>
void scaled_exp_shifted(const T* x, int64_t n, C shift, C g, T* out) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>)
    for (; i + 8 <= n; i += 8) store8(out + i, g * exp_nonpositive(load8(x + i) - shift));
  for (; i < n; ++i) out[i] = T(g * vexp(C(x[i]) - shift));
}

// Splits [0, rows) into one block per task; fn(task, begin, end) may keep per-task partial sums.
template <typename Fn>
int64_t for_row_blocks(int64_t rows, int64_t row_cost, Fn&& fn) {
  int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), rows * row_cost / 16384));
  int64_t per = (rows + tasks - 1) / std::max<int64_t>(tasks, 1);
  parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) fn(t, t * per, std::min(rows, (t + 1) * per));
  });
  return tasks;
}

struct AdamWCoefficients {
  float beta1, beta2, eps, decay, step, inv_sqrt_bc2;
};

// AdamW on elements [0, n). Everything arrives by value: the stores through m, v and w could alias
// a closure's captures, whose reloads would keep the loop from vectorising.
template <typename T>
void adamw_span(T* w, const T* g, float* m, float* v, int64_t n, AdamWCoefficients c) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = float(g[i]);
    m[i] = c.beta1 * m[i] + (1.0f - c.beta1) * gi;
    v[i] = c.beta2 * v[i] + (1.0f - c.beta2) * gi * gi;
    const float denom = std::sqrt(v[i]) * c.inv_sqrt_bc2 + c.eps;
    w[i] = T(float(w[i]) * c.decay - c.step * m[i] / denom);
  }
}

// g[i] *= inv on [0, n) in the compute type; whether any g[i] was inf or NaN. |v| <= max is false
// exactly for those (NaN compares false), and an int OR over it vectorises where std::isfinite and a
// bool do not.
template <typename T, typename C = compute_t<T>>
bool unscale_span(T* g, int64_t n, C inv) {
  int non_finite = 0;
  for (int64_t i = 0; i < n; ++i) {
    const C v = C(g[i]);
    non_finite |= !(std::abs(v) <= std::numeric_limits<C>::max());
    g[i] = T(v * inv);
  }
  return non_finite != 0;
}

}  // namespace

void CpuRuntime::layer_norm_forward(const LayerNormForwardArgs& a) {
  const auto& [x, weight, bias, eps, y, mean, rstd] = a;
  const int64_t n = weight.numel(), rows = n ? x.numel() / n : 0;
  ORCHARD_DISPATCH_FLOATING(x.dtype(), {
    using C = compute_t<T>;
    const T *xp = x.data_as<T>(), *wp = weight.data_as<T>(), *bp = bias.data_as<T>();
    T* yp = y.data_as<T>();
    float *mp = mean.data_as<float>(), *rp = rstd.data_as<float>();
    parallel_for(rows, grain_for(n), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = xp + r * n;
        const C mu = lane_sum<C>(n, [row](int64_t i) { return C(row[i]); }) / C(n);
        const C sq = lane_sum<C>(n, [row, mu](int64_t i) { return (C(row[i]) - mu) * (C(row[i]) - mu); });
        const C inv = C(1) / std::sqrt(sq / C(n) + C(eps));
        T* out = yp + r * n;
        for (int64_t i = 0; i < n; ++i) out[i] = T((C(row[i]) - mu) * inv * C(wp[i]) + C(bp[i]));
        mp[r] = float(mu);
        rp[r] = float(inv);
      }
    });
  });
}

void CpuRuntime::layer_norm_backward(const LayerNormBackwardArgs& a) {
  const auto& [dy, x, weight, mean, rstd, dx, dweight, dbias] = a;
  const int64_t n = weight.numel(), rows = n ? x.numel() / n : 0;
  ORCHARD_DISPATCH_FLOATING(x.dtype(), {
    using C = compute_t<T>;
    const T *xp = x.data_as<T>(), *gp = dy.data_as<T>(), *wp = weight.data_as<T>();
    const float *mp = mean.data_as<float>(), *rp = rstd.data_as<float>();
    T* dxp = dx.data_as<T>();
    // Per-task partial column sums for dweight and dbias, added up once at the end.
    const int64_t max_tasks = std::max(1, num_threads());
    std::vector<C> partial(size_t(max_tasks * 2 * n), C(0));
    int64_t tasks = for_row_blocks(rows, n, [&](int64_t t, int64_t r0, int64_t r1) {
      C* pw = partial.data() + t * 2 * n;
      C* pb = pw + n;
      for (int64_t r = r0; r < r1; ++r) {
        const T *row = xp + r * n, *g = gp + r * n;
        const C mu = mp[r], inv = rp[r];
        auto xhat = [&](int64_t i) { return (C(row[i]) - mu) * inv; };
        for (int64_t i = 0; i < n; ++i) {
          pw[i] += C(g[i]) * xhat(i);
          pb[i] += C(g[i]);
        }
        const C a = lane_sum<C>(n, [&](int64_t i) { return C(g[i]) * C(wp[i]); }) / C(n);
        const C b = lane_sum<C>(n, [&](int64_t i) { return C(g[i]) * C(wp[i]) * xhat(i); }) / C(n);
        T* out = dxp + r * n;
        for (int64_t i = 0; i < n; ++i) out[i] = T(inv * (C(g[i]) * C(wp[i]) - a - xhat(i) * b));
      }
    });
    T *dwp = dweight.data_as<T>(), *dbp = dbias.data_as<T>();
    for (int64_t i = 0; i < n; ++i) {
      C w = 0, b = 0;
      for (int64_t t = 0; t < tasks; ++t) {
        w += partial[size_t(t * 2 * n + i)];
        b += partial[size_t(t * 2 * n + n + i)];
      }
      dwp[i] = T(w);
      dbp[i] = T(b);
    }
  });
}

void CpuRuntime::cross_entropy_forward(const CrossEntropyForwardArgs& a) {
  const auto& [logits, targets, ignore_index, losses, lse] = a;
  const int64_t classes = logits.shape().back(), rows = logits.numel() / std::max<int64_t>(classes, 1);
  ORCHARD_DISPATCH_FLOATING(logits.dtype(), {
    using C = compute_t<T>;
    const T* xp = logits.data_as<T>();
    const int64_t* tp = targets.data_as<int64_t>();
    float *lp = losses.data_as<float>(), *sp = lse.data_as<float>();
    parallel_for(rows, grain_for(classes), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = xp + r * classes;
        const C mx = classes ? lane_extreme<true, C>(row, classes) : C(-INFINITY);
        const C l = mx + std::log(sum_exp_shifted(row, classes, mx));
        sp[r] = float(l);
        lp[r] = tp[r] == ignore_index ? 0.0f : float(l - C(row[tp[r]]));
      }
    });
  });
}

void CpuRuntime::cross_entropy_backward(const CrossEntropyBackwardArgs& a) {
  const auto& [logits, targets, lse, grad_losses, ignore_index, dlogits] = a;
  const int64_t classes = logits.shape().back(), rows = logits.numel() / std::max<int64_t>(classes, 1);
  ORCHARD_DISPATCH_FLOATING(logits.dtype(), {
    using C = compute_t<T>;
    const T* xp = logits.data_as<T>();
    const int64_t* tp = targets.data_as<int64_t>();
    const float *sp = lse.data_as<float>(), *gp = grad_losses.data_as<float>();
    T* dp = dlogits.data_as<T>();
    parallel_for(rows, grain_for(classes), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        T* out = dp + r * classes;
        if (tp[r] == ignore_index) {
          std::fill(out, out + classes, T(0));
          continue;
        }
        const T* row = xp + r * classes;
        scaled_exp_shifted(row, classes, C(sp[r]), C(gp[r]), out);
        out[tp[r]] = T(C(out[tp[r]]) - C(gp[r]));
      }
    });
  });
}

void CpuRuntime::adamw_step(const AdamWStepArgs& a) {
  const auto& [param, grad, exp_avg, exp_avg_sq, p] = a;
  const int64_t n = param.numel();
  const AdamWCoefficients c{p.beta1, p.beta2, p.eps, 1.0f - p.lr * p.weight_decay, p.lr / p.bias_correction1,
                            1.0f / std::sqrt(p.bias_correction2)};
  ORCHARD_DISPATCH_FLOATING(param.dtype(), {
    T* w = param.data_as<T>();
    const T* g = grad.data_as<T>();
    float *m = exp_avg.data_as<float>(), *v = exp_avg_sq.data_as<float>();
    parallel_for(n, 32768, [&](int64_t i0, int64_t i1) { adamw_span(w + i0, g + i0, m + i0, v + i0, i1 - i0, c); });
  });
}

void CpuRuntime::amp_unscale(const AmpUnscaleArgs& a) {
  const auto& [grad, found_inf, inv_scale] = a;
  const float inv = inv_scale.data_as<float>()[0];
  std::atomic<bool> non_finite{false};
  ORCHARD_DISPATCH_FLOATING(grad.dtype(), {
    T* g = grad.data_as<T>();
    parallel_for(grad.numel(), 32768, [&](int64_t i0, int64_t i1) {
      if (unscale_span(g + i0, i1 - i0, compute_t<T>(inv))) non_finite.store(true, std::memory_order_relaxed);
    });
  });
  if (non_finite.load(std::memory_order_relaxed)) found_inf.data_as<float>()[0] = 1.0f;
}

}  // namespace orchard::cpu
