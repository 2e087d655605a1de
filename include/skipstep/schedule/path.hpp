/// @file
/// Gaussian paths (DESIGN.md §8): every model here noises data as x_t = α_t·x0 + σ_t·ε and differs only in the
/// levels (α_t, σ_t): VP from betas (α = √ā, σ = √(1−ā)), its σ-space view (σ̃ = σ/α, Karras et al. 2022), and
/// rectified flow (α = 1 − s, σ = s). A sampler's state is always the path's x_t, the network's input.
#pragma once

#include <cmath>
#include <limits>

#include "skipstep/detail/error.hpp"
#include "skipstep/prediction.hpp"

namespace skipstep {

/// One level of a Gaussian path: x = alpha·x0 + sigma·ε.
struct level {
  double alpha = 1.0;  ///< signal scale α.
  double sigma = 0.0;  ///< noise scale σ.

  /// The VP level of σ-space value σ̃ (x̃ = x/α, σ̃ = σ/α with α² + σ² = 1): α = 1/√(1 + σ̃²), σ = σ̃·α.
  [[nodiscard]] static level from_sigma_tilde(double sigma_tilde) noexcept {
    const double a = 1.0 / std::sqrt(1.0 + sigma_tilde * sigma_tilde);
    return {a, sigma_tilde * a};
  }
  /// The VP level of ā: α = √ā, σ = √(1 − ā).
  [[nodiscard]] static level from_alpha_cumprod(double alpha_cumprod) noexcept {
    return {std::sqrt(alpha_cumprod), std::sqrt(1.0 - alpha_cumprod)};
  }
  /// The rectified-flow level of s ∈ [0, 1]: α = 1 − s, σ = s.
  [[nodiscard]] static level flow(double s) noexcept { return {1.0 - s, s}; }

  /// σ̃ = σ/α, the noise-to-signal ratio (+inf at α = 0).
  [[nodiscard]] double sigma_tilde() const noexcept {
    return alpha == 0.0 ? std::numeric_limits<double>::infinity() : sigma / alpha;
  }
  /// λ = log(α/σ), half the log-SNR (Lu et al. 2022, DPM-Solver): +inf at σ = 0, −inf at α = 0.
  [[nodiscard]] double lambda() const noexcept { return std::log(alpha) - std::log(sigma); }
};

/// x̂0 and ε̂ as linear maps of (x, m) at a level of any Gaussian path (the generalization of
/// prediction_coefficients_at to (α, σ)):
///  - epsilon: x̂0 = (x − σ·m)/α, ε̂ = m
///  - sample:  x̂0 = m, ε̂ = (x − α·m)/σ
///  - v (v = α·ε − σ·x0, Salimans & Ho 2022): x̂0 = (α·x − σ·m)/n, ε̂ = (σ·x + α·m)/n, n = α² + σ² (1 on VP paths)
///  - flow (u = ε − x0): x̂0 = (x − σ·u)/(α + σ), ε̂ = (x + α·u)/(α + σ) (α + σ = 1 on flow paths)
/// Throws std::domain_error where the map does not exist (ε at α = 0, x0 at σ = 0) and std::invalid_argument for a
/// level that is not finite and non-negative; errors name `function`.
[[nodiscard]] inline prediction_coefficients prediction_coefficients_on(std::string_view function, prediction_type kind,
                                                                        level at) {
  const double a = at.alpha, s = at.sigma;
  if (!(a >= 0.0) || !std::isfinite(a)) detail::throw_invalid(function, "level.alpha", "must be finite and >= 0", a);
  if (!(s >= 0.0) || !std::isfinite(s)) detail::throw_invalid(function, "level.sigma", "must be finite and >= 0", s);
  if (a == 0.0 && s == 0.0) detail::throw_invalid(function, "level", "must not have alpha = sigma = 0", 0.0);
  switch (kind) {
    case prediction_type::epsilon:
      if (a == 0.0)
        detail::throw_domain(function, "level.alpha",
                             "is 0 (pure noise): epsilon prediction cannot recover x0 there; use v, sample or flow "
                             "prediction",
                             a);
      return {1.0 / a, -s / a, 0.0, 1.0};
    case prediction_type::sample:
      if (s == 0.0)
        detail::throw_domain(function, "level.sigma", "is 0 (no noise): sample prediction cannot recover epsilon there",
                             s);
      return {0.0, 1.0, 1.0 / s, -a / s};
    case prediction_type::v: {
      const double n = a * a + s * s;
      return {a / n, -s / n, s / n, a / n};
    }
    case prediction_type::flow: {
      const double n = a + s;
      return {1.0 / n, -s / n, 1.0 / n, a / n};
    }
  }
  detail::throw_invalid(function, "prediction type", "is not a prediction_type value", static_cast<int>(kind));
}

}  // namespace skipstep
