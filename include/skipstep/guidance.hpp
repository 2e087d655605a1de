/// @file
/// Classifier-free guidance as a predictor that wraps predictors (Ho & Salimans 2022), with the optional guidance
/// rescale of Lin et al. 2024 (§3.4; diffusers `rescale_noise_cfg`). Works for ε, v or x0 outputs alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/predictor.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep {

namespace detail {

/// Evaluates any predictor form into `out` (a writing predictor writes directly; a returning one is copied).
template <class F, class X, class T>
void predict_into(std::string_view function, F& f, const X& x, std::int64_t t, std::span<T> out) {
  if constexpr (WritingPredictor<F, X>) {
    f(x, t, out);
  } else {
    const auto result = f(x, t);
    const auto values = elements(result);
    if (values.size() != out.size())
      throw_invalid(function, "model output size", "must equal " + std::to_string(out.size()), values.size());
    std::copy(values.begin(), values.end(), out.begin());
  }
}

/// Unbiased standard deviation (torch.std's default correction = 1) of one sample's elements, times 1/`unit`.
template <class T>
double sample_std(std::span<const T> v, double unit = 1.0) {
  if (v.size() < 2) return 0.0;
  double mean = 0.0;
  for (T e : v) mean += static_cast<double>(e) / unit;
  mean /= static_cast<double>(v.size());
  double ss = 0.0;
  for (T e : v) ss += (static_cast<double>(e) / unit - mean) * (static_cast<double>(e) / unit - mean);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

/// The two standard deviations of the guidance rescale, recomputed in units of the largest magnitude when a sum of
/// squares overflowed: finite outputs near the top of double's range (|m| > 1e154) gave inf/inf = NaN. Only their
/// ratio is used, so the unit cancels; ordinary outputs never take this path (their bits are unchanged).
template <class T>
void rescale_stds_without_overflow(std::span<const T> cond, std::span<const T> cfg, double& std_cond, double& std_cfg) {
  if (std::isfinite(std_cond) && std::isfinite(std_cfg)) return;
  double unit = 0.0;
  for (T e : cond) unit = std::max(unit, std::abs(static_cast<double>(e)));
  for (T e : cfg) unit = std::max(unit, std::abs(static_cast<double>(e)));
  if (!std::isfinite(unit) || unit == 0.0) return;  // a NaN or an infinity in the outputs themselves
  std_cond = sample_std<T>(cond, unit);
  std_cfg = sample_std<T>(cfg, unit);
}

/// Checks one guided call and returns the output factor k (1, or 2 for a learned-variance output [m_b; v_b] per
/// sample): out.size() = k·x.size(), num_samples divides x.size(), the scale is finite in T, and a rescale has at
/// least 2 elements per sample (the unbiased std of one value is undefined: torch gives NaN, and the rescale
/// would silently do nothing).
template <class T>
std::size_t check_guided_call(std::string_view function, std::size_t x_size, std::size_t out_size, double scale,
                              std::size_t num_samples, double rescale) {
  if (x_size == 0) throw_invalid(function, "x.size()", "must be > 0", x_size);
  if (out_size != x_size && out_size != 2 * x_size)
    throw_invalid(function, "out.size()",
                  "must equal x.size() = " + std::to_string(x_size) + " or 2 * x.size() (learned variance)",
                  out_size);
  if (x_size % num_samples != 0)
    throw_invalid(function, "num_samples", "must divide x.size() = " + std::to_string(x_size), num_samples);
  if (!std::isfinite(static_cast<T>(scale)))
    throw_invalid(function, "scale", "overflows the tensor's element type (it must be finite in it)", scale);
  if (rescale != 0.0 && x_size / num_samples < 2)
    throw_invalid(function, "num_samples",
                  "must leave at least 2 elements per sample for the rescale's standard deviation (x.size() = " +
                      std::to_string(x_size) + ")",
                  num_samples);
  return out_size / x_size;
}

/// Guidance of one output: out ← u + s·(c − u), then per sample out ← φ·out·std(c)/std(out) + (1 − φ)·out
/// (φ = 0: no rescale). With factor 2 each sample is [m_b; v_b]: only the means are guided (and rescaled), the
/// variance half is the conditional one's, as diffusers' pipelines do (a guided interpolation value could leave
/// [−1, 1]).
template <class T>
void combine_guidance(std::span<const T> uncond, std::span<const T> cond, std::span<T> out, double scale,
                      double rescale, std::size_t num_samples, std::size_t factor) {
  const auto s = static_cast<T>(scale);
  const std::size_t per = out.size() / (factor * num_samples);  // elements of one sample's mean
  for (std::size_t b = 0; b < num_samples; ++b) {
    const std::size_t m0 = b * factor * per;
    for (std::size_t i = m0; i < m0 + per; ++i) out[i] = uncond[i] + s * (cond[i] - uncond[i]);
    if (factor == 2) std::copy_n(cond.begin() + static_cast<std::ptrdiff_t>(m0 + per), per, out.begin() + static_cast<std::ptrdiff_t>(m0 + per));
    if (rescale == 0.0) continue;
    const auto o = out.subspan(m0, per);
    double std_cfg = sample_std<T>(o), std_cond = sample_std<T>(cond.subspan(m0, per));
    rescale_stds_without_overflow<T>(cond.subspan(m0, per), o, std_cond, std_cfg);
    if (std_cfg == 0.0) continue;  // a constant output has nothing to rescale
    const double factor_b = rescale * std_cond / std_cfg + (1.0 - rescale);
    for (T& e : o) e = static_cast<T>(static_cast<double>(e) * factor_b);
  }
}

/// One float and one double buffer: a predictor adaptor uses the one of its tensor's element type, sized on first
/// use and reused afterwards.
struct typed_buffer {
  std::vector<float> floats;
  std::vector<double> doubles;

  template <class T>
  std::vector<T>& get(std::size_t n) {
    std::vector<T>& b = [&]() -> std::vector<T>& {
      if constexpr (std::is_same_v<T, float>)
        return floats;
      else
        return doubles;
    }();
    if (b.size() != n) b.assign(n, T(0));
    return b;
  }
};

inline void check_guidance(std::string_view function, double scale, double rescale, std::size_t num_samples) {
  if (!std::isfinite(scale)) throw_invalid(function, "scale", "must be finite", scale);
  if (!(rescale >= 0.0 && rescale <= 1.0)) throw_invalid(function, "rescale", "must be in [0, 1]", rescale);
  if (num_samples == 0) throw_invalid(function, "num_samples", "must be >= 1", num_samples);
}

}  // namespace detail

/// Classifier-free guidance over two predictors (Ho & Salimans 2022, eq. 6):
///   m = m_uncond + scale·(m_cond − m_uncond),
/// optionally rescaled per sample (Lin et al. 2024, eq. 15–16): m ← rescale·m·σ(m_cond)/σ(m) + (1 − rescale)·m with
/// σ the unbiased std over a sample's elements. A writing predictor itself; its two buffers are allocated on the
/// first call and reused.
template <class Conditional, class Unconditional>
class classifier_free_guidance {
 public:
  /// Wraps the two predictors. scale must be finite, rescale in [0, 1]; num_samples splits x for the rescale's
  /// per-sample std (as sampler_options::num_samples).
  classifier_free_guidance(Conditional conditional, Unconditional unconditional, double scale, double rescale = 0.0,
                           std::size_t num_samples = 1)
      : conditional_(std::move(conditional)),
        unconditional_(std::move(unconditional)),
        scale_(scale),
        rescale_(rescale),
        num_samples_(num_samples) {
    detail::check_guidance("classifier_free_guidance", scale, rescale, num_samples);
  }

  /// The guided model output at (x, t), written into `out` (x.size() elements, or 2·x.size() for a
  /// learned-variance model: then only the means are guided).
  template <Tensor X>
    requires EpsilonPredictor<Conditional, X> && EpsilonPredictor<Unconditional, X>
  void operator()(const X& x, std::int64_t t, std::span<tensor_value_t<X>> out) {
    using T = tensor_value_t<X>;
    constexpr const char* fn = "classifier_free_guidance";
    const std::size_t factor =
        detail::check_guided_call<T>(fn, elements(x).size(), out.size(), scale_, num_samples_, rescale_);
    auto& cond = cond_.get<T>(out.size());
    auto& uncond = uncond_.get<T>(out.size());
    detail::predict_into(fn, conditional_, x, t, std::span<T>(cond));
    detail::predict_into(fn, unconditional_, x, t, std::span<T>(uncond));
    detail::combine_guidance<T>(uncond, cond, out, scale_, rescale_, num_samples_, factor);
  }

 private:
  Conditional conditional_;
  Unconditional unconditional_;
  double scale_, rescale_;
  std::size_t num_samples_;
  detail::typed_buffer cond_, uncond_;
};

/// Classifier-free guidance with one batched network call (how diffusers pipelines run it): `network(x2, t, out2)`
/// receives spans of twice the sample's size — x duplicated, [x; x] — and writes [m_uncond; m_cond]. Same formula
/// and rescale as classifier_free_guidance. Buffers are allocated on the first call and reused.
template <class Network>
class batched_classifier_free_guidance {
 public:
  /// Wraps the batched network; parameters as for classifier_free_guidance.
  batched_classifier_free_guidance(Network network, double scale, double rescale = 0.0, std::size_t num_samples = 1)
      : network_(std::move(network)), scale_(scale), rescale_(rescale), num_samples_(num_samples) {
    detail::check_guidance("batched_classifier_free_guidance", scale, rescale, num_samples);
  }

  /// The guided model output at (x, t), written into `out` (one network call on [x; x]; out has x.size()
  /// elements, or 2·x.size() for a learned-variance model, and the network writes twice that).
  template <Tensor X>
    requires std::invocable<Network&, std::span<const tensor_value_t<X>>, std::int64_t,
                            std::span<tensor_value_t<X>>>
  void operator()(const X& x, std::int64_t t, std::span<tensor_value_t<X>> out) {
    using T = tensor_value_t<X>;
    const auto xs = elements(x);
    const std::size_t n = xs.size();
    const std::size_t factor =
        detail::check_guided_call<T>("batched_classifier_free_guidance", n, out.size(), scale_, num_samples_,
                                     rescale_);
    std::vector<T>& in2 = input_.get<T>(2 * n);
    std::vector<T>& out2 = output_.get<T>(2 * out.size());
    std::copy(xs.begin(), xs.end(), in2.begin());
    std::copy(xs.begin(), xs.end(), in2.begin() + static_cast<std::ptrdiff_t>(n));
    network_(std::span<const T>(in2), t, std::span<T>(out2));
    detail::combine_guidance<T>(std::span<const T>(out2).first(out.size()), std::span<const T>(out2).subspan(out.size()),
                                out, scale_, rescale_, num_samples_, factor);
  }

 private:
  Network network_;
  double scale_, rescale_;
  std::size_t num_samples_;
  detail::typed_buffer input_, output_;
};

}  // namespace skipstep
