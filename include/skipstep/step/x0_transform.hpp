/// @file
/// Processing of the predicted clean sample x̂0 before it enters the step: clipping to a range, or dynamic
/// thresholding (Saharia et al. 2022, §2.3 "Imagen"; diffusers `_threshold_sample`). Both are elementwise once
/// the per-sample threshold is known.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>

#include "skipstep/detail/error.hpp"

namespace skipstep {

/// How x̂0 is processed. Thresholding wins over clipping, as in diffusers (`if thresholding: ... elif clip:`).
struct x0_processing {
  /// Which processing.
  enum class kind { none, clip, dynamic_threshold };
  kind mode = kind::none;  ///< The processing applied.
  double clip_range = 1.0;                  ///< clip: x̂0 ← clamp(x̂0, −range, range).
  double dynamic_thresholding_ratio = 0.995;  ///< threshold: the quantile q of |x̂0| per sample.
  double sample_max_value = 1.0;           ///< threshold: s = clamp(quantile, 1, sample_max_value).
  bool use_clipped_model_output = false;   ///< re-derive ε̂ = (x − √ā·x̂0)/√(1−ā) from the processed x̂0.

  /// No processing.
  [[nodiscard]] static x0_processing none() { return {}; }

  /// Clip x̂0 to [−range, range] (DDPM/DDIM `clip_sample`, diffusers `clip_sample_range`). range > 0, finite.
  [[nodiscard]] static x0_processing clip(double range = 1.0) {
    if (!(range > 0.0) || !std::isfinite(range))
      detail::throw_invalid("x0_processing::clip", "range", "must be finite and > 0", range);
    x0_processing p;
    p.mode = kind::clip;
    p.clip_range = range;
    return p;
  }

  /// Dynamic thresholding (Saharia et al. 2022): per sample, s = clamp(quantile(|x̂0|, ratio), 1, max_value) and
  /// x̂0 ← clamp(x̂0, −s, s)/s. The quantile interpolates linearly at rank ratio·(n−1), like torch.quantile.
  /// ratio in (0, 1], max_value > 0 and finite.
  [[nodiscard]] static x0_processing dynamic_threshold(double ratio = 0.995, double max_value = 1.0) {
    if (!(ratio > 0.0 && ratio <= 1.0))
      detail::throw_invalid("x0_processing::dynamic_threshold", "ratio", "must be in (0, 1]", ratio);
    if (!(max_value > 0.0) || !std::isfinite(max_value))
      detail::throw_invalid("x0_processing::dynamic_threshold", "max_value", "must be finite and > 0", max_value);
    x0_processing p;
    p.mode = kind::dynamic_threshold;
    p.dynamic_thresholding_ratio = ratio;
    p.sample_max_value = max_value;
    return p;
  }

  /// The same processing with ε̂ re-derived from the processed x̂0 (diffusers `use_clipped_model_output=True`).
  [[nodiscard]] x0_processing with_clipped_model_output(bool on = true) const {
    x0_processing p = *this;
    p.use_clipped_model_output = on;
    return p;
  }

  /// Checks the fields (they are public, so a caller may have set them directly instead of through the factories):
  /// a known mode; for clip, a finite clip_range > 0; for thresholding, a ratio in (0, 1] and a finite
  /// sample_max_value > 0. Throws std::invalid_argument naming `function` (the caller's entry point), the field and
  /// the value. Samplers check at construction, apply_step and parallel_apply_step on every call.
  void validate(std::string_view function) const {
    switch (mode) {
      case kind::none:
        return;
      case kind::clip:
        if (!(clip_range > 0.0) || !std::isfinite(clip_range))
          detail::throw_invalid(function, "processing.clip_range", "must be finite and > 0", clip_range);
        return;
      case kind::dynamic_threshold:
        if (!(dynamic_thresholding_ratio > 0.0 && dynamic_thresholding_ratio <= 1.0))
          detail::throw_invalid(function, "processing.dynamic_thresholding_ratio", "must be in (0, 1]",
                                dynamic_thresholding_ratio);
        if (!(sample_max_value > 0.0) || !std::isfinite(sample_max_value))
          detail::throw_invalid(function, "processing.sample_max_value", "must be finite and > 0",
                                sample_max_value);
        return;
    }
    detail::throw_invalid(function, "processing.mode", "is not an x0_processing::kind value", static_cast<int>(mode));
  }

  /// True when the step cannot use the fused a·x + b·m form.
  [[nodiscard]] bool is_identity() const noexcept { return mode == kind::none; }
};

namespace detail {

/// torch.quantile's linear interpolation at q of the values in `scratch` (reordered in place):
/// rank r = q·(n−1), lo = ⌊r⌋, w = r − lo, result = w < ½ ? fma(w, v_hi − v_lo, v_lo) : fma(w − 1, v_hi − v_lo, v_hi).
template <class T>
[[nodiscard]] double quantile_in_place(std::span<T> scratch, double q) {
  const std::size_t n = scratch.size();
  if (n == 0) throw_invalid("quantile_in_place", "scratch.size()", "must be > 0", n);
  const double rank = q * static_cast<double>(n - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, n - 1);
  std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(lo), scratch.end());
  const double v_lo = static_cast<double>(scratch[lo]);
  double v_hi = v_lo;
  if (hi != lo) v_hi = static_cast<double>(*std::min_element(scratch.begin() + static_cast<std::ptrdiff_t>(lo) + 1, scratch.end()));
  const double w = rank - static_cast<double>(lo);
  return w < 0.5 ? std::fma(w, v_hi - v_lo, v_lo) : std::fma(w - 1.0, v_hi - v_lo, v_hi);
}

}  // namespace detail
}  // namespace skipstep
