/// @file
/// The one kernel behind every step (DESIGN.md §1): with x̂0 and ε̂ linear in (x, m),
///   x_s = w0·P(x̂0) + we·ε̂ + wx·x + σ_z·z,
/// where P is the x̂0 processing. Without processing this is x_s = a·x + b·m + σ_z·z with two scalars computed once
/// in double. One pass over memory; noise is drawn in small stack blocks inside the same pass.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "skipstep/detail/error.hpp"
#include "skipstep/detail/kernels.hpp"
#include "skipstep/prediction.hpp"
#include "skipstep/step/noise_source.hpp"
#include "skipstep/step/x0_transform.hpp"

namespace skipstep {

/// Scalar coefficients of one step, all in double:
///   x̂0 = pred.x0_from_sample·x + pred.x0_from_model·m,   ε̂ = pred.eps_from_sample·x + pred.eps_from_model·m,
///   x_s = x0_weight·P(x̂0) + eps_weight·ε̂ + sample_weight·x + noise_std·z.
/// With `use_clipped_model_output`, ε̂ = reeps_from_sample·x + reeps_from_x0·P(x̂0) instead.
struct affine_step {
  prediction_coefficients pred{};  ///< x̂0 and ε̂ as linear maps of (x, m).
  double x0_weight = 0.0;          ///< w0, the weight of the processed x̂0.
  double eps_weight = 0.0;         ///< we, the weight of ε̂ (DDIM's direction term √(1 − ā_s − σ²)).
  double sample_weight = 0.0;      ///< wx, the weight of x itself (the DDPM posterior's x_k coefficient).
  double noise_std = 0.0;          ///< σ_z, the std of the added noise.
  double reeps_from_sample = 0.0;  ///< ε̂ re-derived from the processed x̂0: coefficient of x, 1/√(1 − ā_t).
  double reeps_from_x0 = 0.0;      ///< ... and of x̂0, −√ā_t/√(1 − ā_t).

  /// a of the fused form x_s = a·x + b·m + noise_std·z (valid without x̂0 processing).
  [[nodiscard]] double sample_coeff() const noexcept {
    return x0_weight * pred.x0_from_sample + eps_weight * pred.eps_from_sample + sample_weight;
  }
  /// b of the fused form.
  [[nodiscard]] double model_coeff() const noexcept {
    return x0_weight * pred.x0_from_model + eps_weight * pred.eps_from_model;
  }
};

namespace detail {

inline constexpr std::size_t noise_block = 256;

template <class T>
void check_same_size(const char* fn, std::span<T> x, std::size_t other, const char* what) {
  if (x.size() != other)
    throw_invalid(fn, what, "must have as many elements as the sample (" + std::to_string(x.size()) + ")", other);
}

}  // namespace detail

namespace detail {

/// The part of a tensor one call updates: samples [sample_begin, sample_end) and, inside each of them, elements
/// [element_begin, element_end). Noise is addressed by absolute sample and element, so any partition of a step into
/// ranges (threads, chunks) gives the same bits as one call over everything.
struct step_range {
  std::size_t sample_begin = 0;
  std::size_t sample_end = 0;
  std::size_t element_begin = 0;
  std::size_t element_end = 0;
};

/// The per-sample bounds of the x̂0 processing: clip to [−range, range], or dynamic thresholding's
/// s = clamp(quantile(|x̂0|, ratio), 1, max_value) over sample s (computed in `scratch`, one sample's elements) with
/// x̂0 ← clamp(x̂0, −s, s)/s; unbounded for none. Shared by every step kernel that processes x̂0.
template <class T>
struct x0_bounds {
  T lo, hi, scale;  ///< clamp bounds and the divisor.
  bool divide;      ///< thresholding divides by `scale`.
};
template <class T>
x0_bounds<T> sample_x0_bounds(const x0_processing& processing, T px, T pm, const T* xs, const T* ms, std::size_t s,
                              std::size_t per_sample, T* scratch) {
  x0_bounds<T> b{-std::numeric_limits<T>::infinity(), std::numeric_limits<T>::infinity(), T(1), false};
  if (processing.mode == x0_processing::kind::clip) {
    b.lo = static_cast<T>(-processing.clip_range);
    b.hi = static_cast<T>(processing.clip_range);
  } else if (processing.mode == x0_processing::kind::dynamic_threshold) {
    // NaN (a model that returned NaN) is stored as +inf: std::nth_element needs a strict weak order, and NaN would
    // break it (undefined behaviour, in practice scans past the range). The NaN elements stay NaN in x̂0 (clamp
    // keeps NaN), so the sample still carries them (check_finite reports them), as torch.quantile's NaN would.
    for (std::size_t i = 0; i < per_sample; ++i) {
      const std::size_t k = s * per_sample + i;
      const T a = std::abs(px * xs[k] + pm * ms[k]);
      scratch[i] = std::isnan(a) ? std::numeric_limits<T>::infinity() : a;
    }
    const double q = quantile_in_place(std::span<T>(scratch, per_sample), processing.dynamic_thresholding_ratio);
    const double th = std::min(std::max(q, 1.0), processing.sample_max_value);
    // A threshold below T's smallest normal (max_value = 1e-300 on floats) would divide by 0.
    b.scale = std::max(static_cast<T>(th), std::numeric_limits<T>::min());
    b.lo = -b.scale;
    b.hi = b.scale;
    b.divide = true;
  }
  return b;
}

/// The step over one range; arguments already validated by apply_step. `scratch` (one sample's elements) is needed
/// for dynamic thresholding, which requires whole samples (element range = the full sample).
template <class T, class Noise>
void apply_step_range(const affine_step& c, T* xs, const T* ms, std::size_t per_sample,
                      const x0_processing& processing, Noise& noise, std::size_t step_index, T* x0_out, T* scratch,
                      const step_range& r) {
  using noise_t = std::remove_cvref_t<Noise>;
  constexpr bool has_noise_source = !std::is_same_v<noise_t, no_noise>;
  const bool draw = has_noise_source && c.noise_std != 0.0;
  const T zs = static_cast<T>(c.noise_std);
  const std::size_t width = r.element_end - r.element_begin;
  const bool whole_samples = r.element_begin == 0 && r.element_end == per_sample;

  if (processing.is_identity()) {
    // Fused form: one read of x and m, one write of x (and of x̂0 when asked for, computed beside it, so that
    // asking for x̂0 never changes the new sample).
    const T a = static_cast<T>(c.sample_coeff());
    const T b = static_cast<T>(c.model_coeff());
    const T px = static_cast<T>(c.pred.x0_from_sample), pm = static_cast<T>(c.pred.x0_from_model);
    const auto deterministic = [&](std::size_t begin, std::size_t count) {
      if (x0_out == nullptr)
        fused_step_kernel(xs + begin, ms + begin, count, a, b);
      else
        fused_step_x0_kernel(xs + begin, ms + begin, x0_out + begin, count, a, b, px, pm);
    };
    if (!draw) {
      if (whole_samples) {
        deterministic(r.sample_begin * per_sample, (r.sample_end - r.sample_begin) * per_sample);
      } else {
        for (std::size_t s = r.sample_begin; s < r.sample_end; ++s)
          deterministic(s * per_sample + r.element_begin, width);
      }
      return;
    }
    if constexpr (has_noise_source) {
      std::array<T, noise_block> z{};
      for (std::size_t s = r.sample_begin; s < r.sample_end; ++s) {
        for (std::size_t j = r.element_begin; j < r.element_end; j += noise_block) {
          const std::size_t len = std::min(noise_block, r.element_end - j);
          draw_noise<T>(noise, std::span<T>(z.data(), len), noise_position{s, step_index, j});
          const std::size_t k = s * per_sample + j;
          if (x0_out == nullptr)
            fused_noisy_step_kernel(xs + k, ms + k, z.data(), len, a, b, zs);
          else
            fused_noisy_step_x0_kernel(xs + k, ms + k, z.data(), x0_out + k, len, a, b, zs, px, pm);
        }
      }
    }
    return;
  }

  // General form: x̂0 first, then its processing, then the combination.
  const T px = static_cast<T>(c.pred.x0_from_sample), pm = static_cast<T>(c.pred.x0_from_model);
  const T ex = static_cast<T>(c.pred.eps_from_sample), em = static_cast<T>(c.pred.eps_from_model);
  const T rx = static_cast<T>(c.reeps_from_sample), r0 = static_cast<T>(c.reeps_from_x0);
  const T w0 = static_cast<T>(c.x0_weight), we = static_cast<T>(c.eps_weight), wx = static_cast<T>(c.sample_weight);
  const bool reeps = processing.use_clipped_model_output;
  std::array<T, noise_block> z{};
  for (std::size_t s = r.sample_begin; s < r.sample_end; ++s) {
    const auto [lo, hi, scale, divide] = sample_x0_bounds<T>(processing, px, pm, xs, ms, s, per_sample, scratch);
    for (std::size_t j = r.element_begin; j < r.element_end; j += noise_block) {
      const std::size_t len = std::min(noise_block, r.element_end - j);
      if constexpr (has_noise_source) {
        if (draw) draw_noise<T>(noise, std::span<T>(z.data(), len), noise_position{s, step_index, j});
      }
      for (std::size_t i = 0; i < len; ++i) {
        const std::size_t k = s * per_sample + j + i;
        const T xv = xs[k], mv = ms[k];
        T x0 = px * xv + pm * mv;
        if (processing.mode != x0_processing::kind::none) {
          x0 = std::clamp(x0, lo, hi);
          if (divide) x0 = x0 / scale;
        }
        const T eps = reeps ? rx * xv + r0 * x0 : ex * xv + em * mv;
        T out = w0 * x0 + we * eps + wx * xv;
        if (draw) out += zs * z[i];
        if (x0_out != nullptr) x0_out[k] = x0;
        xs[k] = out;
      }
    }
  }
}

/// apply_step's argument checks; returns the elements per sample.
template <class T, class Noise>
std::size_t check_step_arguments(const char* fn, std::span<T> x, std::span<const T> model,
                                 const x0_processing& processing, std::size_t num_samples, std::span<T> x0_out,
                                 std::size_t scratch_size) {
  using noise_t = std::remove_cvref_t<Noise>;
  static_assert(std::is_same_v<noise_t, no_noise> || NoiseSource<noise_t, T>,
                "skipstep::apply_step: noise must be callable as noise(std::span<T>, noise_position), or no_noise");
  processing.validate(fn);
  if (x.empty()) throw_invalid(fn, "x.size()", "must be > 0", x.size());
  check_same_size(fn, x, model.size(), "model.size()");
  if (!x0_out.empty()) check_same_size(fn, x, x0_out.size(), "x0_out.size()");
  if (num_samples == 0 || x.size() % num_samples != 0)
    throw_invalid(fn, "num_samples", "must be >= 1 and divide the element count " + std::to_string(x.size()),
                  num_samples);
  const std::size_t per_sample = x.size() / num_samples;
  if (processing.mode == x0_processing::kind::dynamic_threshold && scratch_size < per_sample)
    throw_invalid(fn, "scratch.size()", "must hold one sample (" + std::to_string(per_sample) + " elements)",
                  scratch_size);
  return per_sample;
}

}  // namespace detail

/// Applies one step in place: x ← x_s. `model` is the network output at (x, t); `noise` a NoiseSource or no_noise;
/// `num_samples` splits x into that many equal contiguous samples (thresholding is per sample and sample b draws
/// noise stream b); `x0_out`, if not empty, receives the processed x̂0; `scratch` must hold one sample's elements
/// when dynamic thresholding is on. `step_index` addresses the noise. One pass over memory; no allocation.
/// A given_noise too small for the step throws before x is touched; any other source that throws mid-pass leaves x
/// partly updated (the samplers draw such sources into their workspace first).
template <class T, class Noise = no_noise>
void apply_step(const affine_step& c, std::span<T> x, std::span<const T> model, const x0_processing& processing,
                std::size_t num_samples = 1, Noise&& noise = {}, std::size_t step_index = 0,
                std::span<T> x0_out = {}, std::span<T> scratch = {}) {
  const std::size_t per_sample =
      detail::check_step_arguments<T, Noise>("apply_step", x, std::span<const T>(model), processing, num_samples,
                                             x0_out, scratch.size());
  detail::check_noise_covers("apply_step", noise, num_samples, per_sample);
  detail::apply_step_range(c, x.data(), model.data(), per_sample, processing, noise, step_index,
                           x0_out.empty() ? nullptr : x0_out.data(), scratch.empty() ? nullptr : scratch.data(),
                           detail::step_range{0, num_samples, 0, per_sample});
}

}  // namespace skipstep
