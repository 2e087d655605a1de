/// @file
/// Noise schedules: the betas of the forward process and everything derived from them (ā, √ā, √(1−ā), SNR).
/// Tables are built in `Real` (double by default); step coefficients are always computed in double from them.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <numbers>
#include <span>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"

namespace skipstep {

namespace detail {

/// numpy.linspace(start, stop, n) for n >= 2, reproduced operation for operation:
/// y_i = i·((stop − start)/(n − 1)) + start, with the last element set to stop exactly.
inline std::vector<double> numpy_linspace(double start, double stop, std::size_t n) {
  std::vector<double> y(n);
  if (n == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(n - 1);
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<double>(i) * step + start;
  y[n - 1] = stop;
  return y;
}

}  // namespace detail

/// A discrete-time noise schedule with T = num_train_timesteps levels t = 0..T−1.
/// β_t is the forward-process variance of step t, α_t = 1 − β_t and ā_t = Π_{s≤t} α_s (Ho et al. 2020, eq. 4).
/// Invariants (checked on construction): T ≥ 1, every β_t in (0, 1], ā strictly positive except possibly
/// ā_{T−1} = 0 (zero terminal SNR), ā non-increasing.
template <std::floating_point Real = double>
class noise_schedule {
 public:
  using value_type = Real;  ///< Type the tables are stored in.

  /// Linear betas (Ho et al. 2020): β_t = numpy.linspace(beta_start, beta_end, T)[t]
  /// (diffusers `beta_schedule="linear"`; defaults are DDPM's 1e-4 and 0.02).
  [[nodiscard]] static noise_schedule linear(std::size_t num_train_timesteps, double beta_start = 1e-4,
                                             double beta_end = 0.02) {
    check_beta_range("noise_schedule::linear", num_train_timesteps, beta_start, beta_end);
    return from_betas_impl("noise_schedule::linear", detail::numpy_linspace(beta_start, beta_end, num_train_timesteps));
  }

  /// Scaled-linear betas (Stable Diffusion / latent diffusion): β_t = linspace(√beta_start, √beta_end, T)[t]²
  /// (diffusers `beta_schedule="scaled_linear"`; defaults are Stable Diffusion's 0.00085 and 0.012).
  [[nodiscard]] static noise_schedule scaled_linear(std::size_t num_train_timesteps, double beta_start = 0.00085,
                                                    double beta_end = 0.012) {
    check_beta_range("noise_schedule::scaled_linear", num_train_timesteps, beta_start, beta_end);
    auto betas = detail::numpy_linspace(std::sqrt(beta_start), std::sqrt(beta_end), num_train_timesteps);
    for (double& b : betas) b = b * b;
    return from_betas_impl("noise_schedule::scaled_linear", std::move(betas));
  }

  /// Cosine schedule (Nichol & Dhariwal 2021, eq. 17; diffusers `squaredcos_cap_v2`):
  /// f(u) = cos((u + 0.008)/1.008 · π/2)², β_t = min(1 − f((t+1)/T)/f(t/T), max_beta).
  [[nodiscard]] static noise_schedule cosine(std::size_t num_train_timesteps, double max_beta = 0.999) {
    if (num_train_timesteps == 0)
      detail::throw_invalid("noise_schedule::cosine", "num_train_timesteps", "must be >= 1", num_train_timesteps);
    if (!(max_beta > 0.0 && max_beta <= 1.0))
      detail::throw_invalid("noise_schedule::cosine", "max_beta", "must be in (0, 1]", max_beta);
    const auto alpha_bar = [](double u) {
      const double c = std::cos((u + 0.008) / 1.008 * std::numbers::pi / 2.0);
      return c * c;
    };
    std::vector<double> betas(num_train_timesteps);
    const double n = static_cast<double>(num_train_timesteps);
    for (std::size_t i = 0; i < num_train_timesteps; ++i) {
      const double t1 = static_cast<double>(i) / n;
      const double t2 = static_cast<double>(i + 1) / n;
      betas[i] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta);
    }
    return from_betas_impl("noise_schedule::cosine", std::move(betas));
  }

  /// A schedule from explicit betas (diffusers `trained_betas`): ā_t = Π_{s≤t} (1 − β_s), accumulated in double.
  [[nodiscard]] static noise_schedule from_betas(std::span<const double> betas) {
    return from_betas_impl("noise_schedule::from_betas", std::vector<double>(betas.begin(), betas.end()));
  }

  /// A schedule from the exact ā table a model was trained with: α_t = ā_t/ā_{t−1} (α_0 = ā_0), β_t = 1 − α_t.
  /// ā must lie in [0, 1], start positive, and be non-increasing; only the last entry may be 0.
  [[nodiscard]] static noise_schedule from_alphas_cumprod(std::span<const double> alphas_cumprod) {
    constexpr const char* fn = "noise_schedule::from_alphas_cumprod";
    if (alphas_cumprod.empty())
      detail::throw_invalid(fn, "alphas_cumprod.size()", "must be >= 1", alphas_cumprod.size());
    noise_schedule s;
    const std::size_t n = alphas_cumprod.size();
    std::vector<double> betas(n);
    for (std::size_t t = 0; t < n; ++t) {
      const double a = alphas_cumprod[t];
      if (!(a >= 0.0 && a < 1.0) || (a == 0.0 && t + 1 != n))
        detail::throw_invalid(fn, "alphas_cumprod[" + std::to_string(t) + "]",
                              "must be in (0, 1) (only the last entry may be 0)", a);
      const double prev = t == 0 ? 1.0 : alphas_cumprod[t - 1];
      if (a >= prev)
        detail::throw_invalid(fn, "alphas_cumprod[" + std::to_string(t) + "]",
                              "must be below the previous entry " + detail::format_value(prev) +
                                  " (every beta must be > 0)",
                              a);
      betas[t] = 1.0 - a / prev;
    }
    s.assign(fn, std::move(betas), std::vector<double>(alphas_cumprod.begin(), alphas_cumprod.end()));
    return s;
  }

  /// Zero-terminal-SNR rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
  /// Algorithm 1; diffusers `rescale_zero_terminal_snr`): shift and scale √ā so that √ā_{T−1} = 0 while √ā_0 is
  /// kept: √ā'_t = (√ā_t − √ā_{T−1}) · √ā_0/(√ā_0 − √ā_{T−1}); then α'_t = ā'_t/ā'_{t−1}, β' = 1 − α'.
  /// The result has ā_{T−1} = 0 exactly (β_{T−1} = 1). Requires T ≥ 2.
  [[nodiscard]] noise_schedule rescale_zero_terminal_snr() const {
    constexpr const char* fn = "noise_schedule::rescale_zero_terminal_snr";
    const std::size_t n = size();
    if (n < 2) detail::throw_invalid(fn, "num_train_timesteps", "must be >= 2", n);
    std::vector<double> sqrt_ab(n);
    for (std::size_t t = 0; t < n; ++t) sqrt_ab[t] = std::sqrt(static_cast<double>(alphas_cumprod_[t]));
    const double first = sqrt_ab.front();
    const double last = sqrt_ab.back();
    if (!(first > last))
      detail::throw_invalid(fn, "alphas_cumprod", "must decrease from t = 0 to t = T-1 (sqrt(abar_0) - sqrt(abar_T-1))",
                            first - last);
    std::vector<double> ab(n);
    for (std::size_t t = 0; t < n; ++t) {
      const double r = (sqrt_ab[t] - last) * (first / (first - last));
      ab[t] = r * r;
    }
    std::vector<double> betas(n);
    betas[0] = 1.0 - ab[0];
    for (std::size_t t = 1; t < n; ++t) betas[t] = 1.0 - ab[t] / ab[t - 1];
    return from_betas_impl(fn, std::move(betas));
  }

  /// T, the number of training timesteps.
  [[nodiscard]] std::size_t size() const noexcept { return betas_.size(); }
  /// T, the number of training timesteps.
  [[nodiscard]] std::size_t num_train_timesteps() const noexcept { return betas_.size(); }

  /// β_t for t = 0..T−1.
  [[nodiscard]] std::span<const Real> betas() const noexcept { return betas_; }
  /// α_t = 1 − β_t.
  [[nodiscard]] std::span<const Real> alphas() const noexcept { return alphas_; }
  /// ā_t = Π_{s≤t} α_s.
  [[nodiscard]] std::span<const Real> alphas_cumprod() const noexcept { return alphas_cumprod_; }

  /// ā_t as double; t must be in [0, T) (std::out_of_range naming the function, t and T otherwise).
  [[nodiscard]] double alpha_cumprod(std::size_t t) const { return level("noise_schedule::alpha_cumprod", t); }
  /// √ā_t, the signal scale of x_t = √ā_t·x_0 + √(1−ā_t)·ε.
  [[nodiscard]] double sqrt_alpha_cumprod(std::size_t t) const {
    return std::sqrt(level("noise_schedule::sqrt_alpha_cumprod", t));
  }
  /// √(1−ā_t), the noise scale of x_t.
  [[nodiscard]] double sqrt_one_minus_alpha_cumprod(std::size_t t) const {
    return std::sqrt(1.0 - level("noise_schedule::sqrt_one_minus_alpha_cumprod", t));
  }
  /// Signal-to-noise ratio SNR(t) = ā_t/(1 − ā_t) (Kingma et al. 2021); 0 at a zero-terminal-SNR end.
  [[nodiscard]] double snr(std::size_t t) const {
    const double a = level("noise_schedule::snr", t);
    return a / (1.0 - a);
  }
  /// True when ā_{T−1} = 0 (x_{T−1} carries no signal).
  [[nodiscard]] bool has_zero_terminal_snr() const noexcept { return alphas_cumprod_.back() == Real(0); }

 private:
  noise_schedule() = default;

  /// ā_t as double, t checked against T with errors naming `fn` (the accessor the caller called).
  [[nodiscard]] double level(const char* fn, std::size_t t) const {
    detail::check_index(fn, "t", t, alphas_cumprod_.size(), "T");
    return static_cast<double>(alphas_cumprod_[t]);
  }

  static void check_beta_range(const char* fn, std::size_t n, double beta_start, double beta_end) {
    if (n == 0) detail::throw_invalid(fn, "num_train_timesteps", "must be >= 1", n);
    if (!(beta_start > 0.0 && beta_start <= 1.0)) detail::throw_invalid(fn, "beta_start", "must be in (0, 1]", beta_start);
    if (!(beta_end > 0.0 && beta_end <= 1.0)) detail::throw_invalid(fn, "beta_end", "must be in (0, 1]", beta_end);
    if (beta_start > beta_end)
      detail::throw_invalid(fn, "beta_start", "must not exceed beta_end = " + detail::format_value(beta_end), beta_start);
  }

  static noise_schedule from_betas_impl(const char* fn, std::vector<double> betas) {
    if (betas.empty()) detail::throw_invalid(fn, "betas.size()", "must be >= 1", betas.size());
    std::vector<double> ab(betas.size());
    double running = 1.0;
    for (std::size_t t = 0; t < betas.size(); ++t) {
      const double b = betas[t];
      if (!(b > 0.0 && b <= 1.0))
        detail::throw_invalid(fn, "betas[" + std::to_string(t) + "]", "must be in (0, 1]", b);
      running *= 1.0 - b;
      ab[t] = running;
    }
    for (std::size_t t = 0; t + 1 < ab.size(); ++t)
      if (ab[t] == 0.0)
        detail::throw_invalid(fn, "betas[" + std::to_string(t) + "]",
                              "must be < 1 except at t = T-1 (abar reaches 0 before the last timestep)", betas[t]);
    noise_schedule s;
    s.assign(fn, std::move(betas), std::move(ab));
    return s;
  }

  /// Stores the double tables as Real. Narrowing (noise_schedule<float>) must keep the invariants: a β or an ā
  /// (before T−1) that rounds to 0 in Real is rejected, naming the entry.
  void assign(const char* fn, std::vector<double> betas, std::vector<double> alphas_cumprod) {
    const std::size_t n = betas.size();
    betas_.resize(n);
    alphas_.resize(n);
    alphas_cumprod_.resize(n);
    for (std::size_t t = 0; t < n; ++t) {
      betas_[t] = static_cast<Real>(betas[t]);
      alphas_[t] = static_cast<Real>(1.0 - betas[t]);
      alphas_cumprod_[t] = static_cast<Real>(alphas_cumprod[t]);
      if (betas_[t] == Real(0))
        detail::throw_invalid(fn, "betas[" + std::to_string(t) + "]", "rounds to 0 in the schedule's value type",
                              betas[t]);
      if (alphas_cumprod_[t] == Real(0) && t + 1 != n)
        detail::throw_invalid(fn, "alphas_cumprod[" + std::to_string(t) + "]",
                              "rounds to 0 in the schedule's value type before t = T-1", alphas_cumprod[t]);
    }
  }

  std::vector<Real> betas_;
  std::vector<Real> alphas_;
  std::vector<Real> alphas_cumprod_;
};

}  // namespace skipstep
