/// @file
/// σ grids: the noise levels and model times of the σ-space samplers (Karras et al. 2022, "Elucidating the Design
/// Space of Diffusion-Based Generative Models"; k-diffusion; diffusers EulerDiscreteScheduler.set_timesteps, shared
/// by EulerAncestralDiscrete and HeunDiscrete). A VP schedule is viewed in σ-space as σ̃_t = √((1 − ā_t)/ā_t), the
/// noise-to-signal ratio, x̃ = x_t/√ā_t. A grid is N + 1 levels σ̃_0 > ... > σ̃_{N−1} ≥ σ̃_N and the N model times
/// t_i the network is evaluated at: training timesteps, fractional where the levels fall between them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/schedule/noise_schedule.hpp"

namespace skipstep {

/// Where the N model times sit on [0, T) before any σ spacing (diffusers `timestep_spacing`; Lin et al. 2024,
/// Table 2): linspace t_i = linspace(0, T−1, N) reversed; leading t_i = round(i·⌊T/N⌋) + offset reversed;
/// trailing t_i = round(arange(T, 0, −T/N)) − 1.
enum class timestep_spacing { linspace, leading, trailing };

/// How the levels are spaced (diffusers `interpolation_type`, `use_karras_sigmas`, `use_exponential_sigmas`,
/// `use_beta_sigmas`):
///  - interpolated: σ̃ at the spaced model times, linear interpolation of the training table (np.interp);
///  - log_linear: the first N of N + 1 values log-uniform between the table's ends (model times stay the spaced
///    ones);
///  - karras: σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7 (Karras et al. 2022, eq. 5);
///  - exponential: log σ uniform between σ_max and σ_min;
///  - beta: σ_i = σ_min + F⁻¹(1 − i/(N−1))·(σ_max − σ_min), F the Beta(0.6, 0.6) CDF (Lee et al. 2024, "Beta
///    Sampling is All You Need").
///  - lu_lambdas: log σ̃ uniform between the table's ends (Lu et al. 2022b's uniform-λ steps; diffusers
///    `use_lu_lambdas`, DPM-Solver only).
/// For karras, exponential and beta the model times are the levels' own fractional timesteps (sigma_to_timestep).
enum class sigma_spacing { interpolated, log_linear, karras, exponential, beta, lu_lambdas };

/// What the last step lands on (diffusers `final_sigmas_type`): σ̃ = 0 (the clean sample) or σ̃_min of the
/// training table, √((1 − ā_0)/ā_0).
enum class final_sigma { zero, sigma_min };

/// The options of a σ grid, with diffusers' defaults for EulerDiscreteScheduler.
struct sigma_grid_options {
  timestep_spacing spacing = timestep_spacing::linspace;  ///< where the model times start from.
  std::size_t steps_offset = 0;                           ///< added to leading model times (diffusers).
  sigma_spacing levels = sigma_spacing::interpolated;     ///< how the levels are spaced.
  std::optional<double> sigma_min;  ///< the grid's lowest level (karras/exponential/beta); default: the table's.
  std::optional<double> sigma_max;  ///< the grid's highest level; default: the table's at the first model time.
  final_sigma final_level = final_sigma::zero;  ///< where the last step lands.
  double rho = 7.0;                             ///< Karras' ρ.
  double beta_a = 0.6;                          ///< Beta spacing's α.
  double beta_b = 0.6;                          ///< Beta spacing's β.
  /// Model times in EDM's continuous convention, t_i = ¼·ln σ̃_i (Karras et al. 2022, Table 1, c_noise; diffusers
  /// `timestep_type="continuous"`, which it applies to v-prediction), instead of training timesteps.
  bool continuous_model_time = false;
};

/// N + 1 levels σ̃ (non-increasing; the first N strictly positive) and the N model times.
struct sigma_grid {
  std::vector<double> sigmas;     ///< σ̃_0 ≥ ... ≥ σ̃_N.
  std::vector<double> timesteps;  ///< t_i, the model time of step i (fractional in general).
  /// N, the number of steps.
  [[nodiscard]] std::size_t size() const noexcept { return timesteps.size(); }
};

/// σ̃_t = √((1 − ā_t)/ā_t) for t = 0..T−1, the σ-space view of a VP schedule (Karras et al. 2022, §2 and Table 1,
/// "VP"; diffusers `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`). A zero-terminal-SNR schedule has ā_{T−1} = 0,
/// an infinite σ̃; with `clamp_zero_snr` that entry uses ā = 2⁻²⁴ as diffusers' Euler, Heun and DPM-Solver do
/// (σ̃ ≈ 4096), otherwise it is +inf.
template <class Real>
[[nodiscard]] std::vector<double> vp_sigmas(const noise_schedule<Real>& schedule, bool clamp_zero_snr = true) {
  std::vector<double> out(schedule.num_train_timesteps());
  for (std::size_t t = 0; t < out.size(); ++t) {
    double a = schedule.alpha_cumprod(t);
    if (a == 0.0 && clamp_zero_snr) a = 0x1p-24;
    out[t] = a == 0.0 ? std::numeric_limits<double>::infinity() : std::sqrt((1.0 - a) / a);
  }
  return out;
}

/// The fractional training timestep of level σ on a table of σ̃_t (diffusers `_sigma_to_t`): linear interpolation
/// of t in log σ between the two table entries around σ, clamped to [0, T−1] (table increasing in t, T ≥ 2).
[[nodiscard]] inline double sigma_to_timestep(std::span<const double> table_sigmas, double sigma) {
  const std::size_t n = table_sigmas.size();
  if (n < 2) detail::throw_invalid("sigma_to_timestep", "table_sigmas.size()", "must be >= 2", n);
  if (!(sigma >= 0.0) || std::isnan(sigma)) detail::throw_invalid("sigma_to_timestep", "sigma", "must be >= 0", sigma);
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // The last index whose log σ̃ is <= log σ (0 when none is), at most T−2.
  std::size_t low = 0;
  for (std::size_t t = 0; t < n; ++t)
    if (std::log(table_sigmas[t]) <= log_sigma) low = t;
  low = std::min(low, n - 2);
  const double lo = std::log(table_sigmas[low]), hi = std::log(table_sigmas[low + 1]);
  const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

namespace detail {

/// Regularized incomplete beta function I_x(a, b) by its continued fraction (modified Lentz; Numerical Recipes §6.4),
/// using the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly.
[[nodiscard]] inline double incomplete_beta(double x, double a, double b) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  const auto fraction = [](double xx, double aa, double bb) {
    constexpr double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (aa + bb) * xx / (aa + 1.0);
    d = std::abs(d) < tiny ? tiny : d;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 400; ++m) {
      const double mm = m;
      double num = mm * (bb - mm) * xx / ((aa + 2 * mm - 1) * (aa + 2 * mm));
      d = 1.0 + num * d;
      d = std::abs(d) < tiny ? tiny : d;
      c = 1.0 + num / c;
      c = std::abs(c) < tiny ? tiny : c;
      d = 1.0 / d;
      h *= d * c;
      num = -(aa + mm) * (aa + bb + mm) * xx / ((aa + 2 * mm) * (aa + 2 * mm + 1));
      d = 1.0 + num * d;
      d = std::abs(d) < tiny ? tiny : d;
      c = 1.0 + num / c;
      c = std::abs(c) < tiny ? tiny : c;
      d = 1.0 / d;
      const double delta = d * c;
      h *= delta;
      if (std::abs(delta - 1.0) < 1e-16) break;
    }
    return h;
  };
  if (x < (a + 1.0) / (a + b + 2.0)) return std::exp(log_front) * fraction(x, a, b) / a;
  return 1.0 - std::exp(log_front) * fraction(1.0 - x, b, a) / b;
}

/// The Beta(a, b) quantile F⁻¹(p) (scipy.stats.beta.ppf) by bisection on incomplete_beta, to double precision.
[[nodiscard]] inline double beta_quantile(double p, double a, double b) {
  if (p <= 0.0) return 0.0;
  if (p >= 1.0) return 1.0;
  double lo = 0.0, hi = 1.0;
  for (int k = 0; k < 200 && hi - lo > 0x1p-60; ++k) {
    const double mid = 0.5 * (lo + hi);
    (incomplete_beta(mid, a, b) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

/// numpy.interp(x, arange(n), table): linear interpolation, clamped to the ends.
[[nodiscard]] inline double interp_table(std::span<const double> table, double x) {
  if (x <= 0.0) return table.front();
  const double last = static_cast<double>(table.size() - 1);
  if (x >= last) return table.back();
  const auto i = static_cast<std::size_t>(std::floor(x));
  const double w = x - static_cast<double>(i);
  return table[i] + w * (table[i + 1] - table[i]);
}

/// The N levels of a ramped spacing (karras, exponential, beta) from sigma_max down to sigma_min (see
/// sigma_spacing); `function` names the caller in errors.
[[nodiscard]] inline std::vector<double> spaced_levels(std::string_view function, const sigma_grid_options& options,
                                                       double sigma_min, double sigma_max, std::size_t num_steps) {
  if (!(sigma_min < sigma_max || num_steps == 1))
    throw_invalid(function, "options.sigma_min", "must be below sigma_max = " + format_value(sigma_max), sigma_min);
  const auto ramp = [&](std::size_t i) {
    return num_steps == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(num_steps - 1);
  };
  std::vector<double> levels(num_steps);
  switch (options.levels) {
    case sigma_spacing::karras: {
      if (!(options.rho > 0.0) || !std::isfinite(options.rho))
        throw_invalid(function, "options.rho", "must be finite and > 0", options.rho);
      const double min_inv = std::pow(sigma_min, 1.0 / options.rho), max_inv = std::pow(sigma_max, 1.0 / options.rho);
      for (std::size_t i = 0; i < num_steps; ++i)
        levels[i] = std::pow(max_inv + ramp(i) * (min_inv - max_inv), options.rho);
      return levels;
    }
    case sigma_spacing::exponential:
      for (std::size_t i = 0; i < num_steps; ++i)
        levels[i] = std::exp(std::log(sigma_max) + ramp(i) * (std::log(sigma_min) - std::log(sigma_max)));
      return levels;
    case sigma_spacing::beta:
      if (!(options.beta_a > 0.0 && options.beta_b > 0.0) || !std::isfinite(options.beta_a + options.beta_b))
        throw_invalid(function, "options.beta_a / beta_b", "must be finite and > 0", options.beta_a);
      for (std::size_t i = 0; i < num_steps; ++i)
        levels[i] = sigma_min + beta_quantile(1.0 - ramp(i), options.beta_a, options.beta_b) * (sigma_max - sigma_min);
      return levels;
    default:
      throw_invalid(function, "options.levels", "is not a ramped sigma_spacing value", static_cast<int>(options.levels));
  }
}

}  // namespace detail

/// The model times of `spacing` for N steps of a T-step schedule, as diffusers' σ-space schedulers compute them
/// (float values; leading adds steps_offset). trailing gives exactly N times, each in [0, T): diffusers' arange can
/// add an (N+1)-th time −1 for some N (T = 1000: N = 61, 103, ...), which skipstep never does.
[[nodiscard]] inline std::vector<double> spaced_model_times(std::size_t num_train_timesteps, std::size_t num_steps,
                                                            timestep_spacing spacing, std::size_t steps_offset = 0) {
  constexpr const char* fn = "spaced_model_times";
  if (num_train_timesteps == 0) detail::throw_invalid(fn, "num_train_timesteps", "must be >= 1", num_train_timesteps);
  if (num_steps == 0 || num_steps > num_train_timesteps)
    detail::throw_invalid(fn, "num_steps", "must be in [1, T = " + std::to_string(num_train_timesteps) + "]",
                          num_steps);
  std::vector<double> t(num_steps);
  const double big_t = static_cast<double>(num_train_timesteps);
  switch (spacing) {
    case timestep_spacing::linspace: {
      const auto values = detail::numpy_linspace(0.0, big_t - 1.0, num_steps);
      for (std::size_t i = 0; i < num_steps; ++i) t[i] = values[num_steps - 1 - i];
      return t;
    }
    case timestep_spacing::leading: {
      if (steps_offset >= num_train_timesteps)
        detail::throw_invalid(fn, "steps_offset", "must be < T = " + std::to_string(num_train_timesteps), steps_offset);
      const std::size_t ratio = num_train_timesteps / num_steps;
      for (std::size_t i = 0; i < num_steps; ++i)
        t[num_steps - 1 - i] = static_cast<double>(i * ratio + steps_offset);
      if (t.front() > big_t - 1.0)
        detail::throw_invalid(fn, "steps_offset",
                              "puts the first model time outside [0, T = " + std::to_string(num_train_timesteps) + ")",
                              steps_offset);
      return t;
    }
    case timestep_spacing::trailing: {
      const double step = -big_t / static_cast<double>(num_steps);
      const double delta = (big_t + step) - big_t;  // numpy's arange fills start + i·delta
      for (std::size_t i = 0; i < num_steps; ++i) {
        const double v = i == 0 ? big_t : (i == 1 ? big_t + step : big_t + static_cast<double>(i) * delta);
        t[i] = std::nearbyint(v) - 1.0;
      }
      return t;
    }
  }
  detail::throw_invalid(fn, "spacing", "is not a timestep_spacing value", static_cast<int>(spacing));
}

/// Checks a grid: N ≥ 1 finite model times and N + 1 finite, non-increasing levels, the first N strictly positive. Throws std::invalid_argument naming `function`, the entry and the value.
inline void validate_sigma_grid(std::string_view function, const sigma_grid& grid) {
  const std::size_t n = grid.timesteps.size();
  if (n == 0) detail::throw_invalid(function, "timesteps.size()", "must be >= 1", n);
  if (grid.sigmas.size() != n + 1)
    detail::throw_invalid(function, "sigmas.size()", "must be timesteps.size() + 1 = " + std::to_string(n + 1),
                          grid.sigmas.size());
  for (std::size_t i = 0; i <= n; ++i) {
    const double s = grid.sigmas[i];
    const std::string at = "sigmas[" + std::to_string(i) + "]";
    if (!std::isfinite(s) || s < 0.0 || (i < n && s == 0.0))
      detail::throw_invalid(function, at, i < n ? "must be finite and > 0" : "must be finite and >= 0", s);
    if (i > 0 && s > grid.sigmas[i - 1])
      detail::throw_invalid(function, at,
                            "must not exceed sigmas[" + std::to_string(i - 1) + "] = " +
                                detail::format_value(grid.sigmas[i - 1]) + " (levels must decrease)",
                            s);
  }
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(grid.timesteps[i]))
      detail::throw_invalid(function, "timesteps[" + std::to_string(i) + "]", "must be finite", grid.timesteps[i]);
}

/// The σ grid of N steps on a VP schedule, as diffusers' EulerDiscreteScheduler.set_timesteps builds it (also
/// EulerAncestral and Heun): model times from `spacing`, levels σ̃ by `levels` from the table vp_sigmas(schedule),
/// and a last level of 0 or σ̃_min. Two deliberate differences, both in the README's differences table:
///  - trailing never adds diffusers' extra model time −1 (see spaced_model_times);
///  - final_sigma::sigma_min is never above the grid's last level (diffusers appends σ̃_min of the table even when
///    a smaller options.sigma_min ends the grid below it, and then steps up);
///  - log_linear ends at the final level like every grid (diffusers appends the final level after its N + 1
///    log-linear values, so its last step lands on the (N+1)-th, σ̃_min of the table, and never reaches 0).
template <class Real>
[[nodiscard]] sigma_grid make_sigma_grid(const noise_schedule<Real>& schedule, std::size_t num_steps,
                                         const sigma_grid_options& options = {}) {
  constexpr const char* fn = "make_sigma_grid";
  const std::size_t big_t = schedule.num_train_timesteps();
  if (big_t < 2) detail::throw_invalid(fn, "num_train_timesteps", "must be >= 2", big_t);
  const std::vector<double> table = vp_sigmas(schedule);
  sigma_grid g;
  g.timesteps = detail::with_context(std::string("skipstep::") + fn, [&] {
    return spaced_model_times(big_t, num_steps, options.spacing, options.steps_offset);
  });
  std::vector<double> levels(num_steps);
  for (std::size_t i = 0; i < num_steps; ++i) levels[i] = detail::interp_table(table, g.timesteps[i]);
  const auto bound = [&](const std::optional<double>& given, double fallback, const char* name) {
    const double v = given.value_or(fallback);
    if (!(v > 0.0) || !std::isfinite(v)) detail::throw_invalid(fn, name, "must be finite and > 0", v);
    return v;
  };
  const double sigma_min = bound(options.sigma_min, levels.back(), "options.sigma_min");
  const double sigma_max = bound(options.sigma_max, levels.front(), "options.sigma_max");
  bool times_from_levels = true;
  switch (options.levels) {
    case sigma_spacing::interpolated:
      times_from_levels = false;
      break;
    case sigma_spacing::log_linear: {
      // N + 1 log-uniform values from the table's top to its bottom; the N steps start at the first N of them.
      const double lo = std::log(table.front()), hi = std::log(table.back());
      for (std::size_t i = 0; i < num_steps; ++i)
        levels[i] = std::exp(hi + static_cast<double>(i) / static_cast<double>(num_steps) * (lo - hi));
      times_from_levels = false;
      break;
    }
    default:
      levels = detail::spaced_levels(fn, options, sigma_min, sigma_max, num_steps);
  }
  if (times_from_levels)
    for (std::size_t i = 0; i < num_steps; ++i) g.timesteps[i] = sigma_to_timestep(table, levels[i]);
  if (options.continuous_model_time)
    for (std::size_t i = 0; i < num_steps; ++i) g.timesteps[i] = 0.25 * std::log(levels[i]);
  g.sigmas = std::move(levels);
  switch (options.final_level) {
    case final_sigma::zero:
      g.sigmas.push_back(0.0);
      break;
    case final_sigma::sigma_min:
      g.sigmas.push_back(std::min(table.front(), g.sigmas.back()));
      break;
    default:
      detail::throw_invalid(fn, "options.final_level", "is not a final_sigma value",
                            static_cast<int>(options.final_level));
  }
  validate_sigma_grid(fn, g);
  return g;
}

/// Options of the multistep solvers' grids (diffusers DPMSolverMultistep, DPMSolverSinglestep, UniPC and DEIS
/// `set_timesteps`), with their defaults.
struct multistep_grid_options {
  timestep_spacing spacing = timestep_spacing::linspace;  ///< where the integer model times start from.
  std::size_t steps_offset = 0;                           ///< added to leading model times.
  sigma_spacing levels = sigma_spacing::interpolated;     ///< interpolated, karras, exponential, beta or lu_lambdas.
  final_sigma final_level = final_sigma::zero;            ///< where the last step lands.
  /// Steps whose λ = log(α/σ) lies below this are cut from the noisy end (diffusers `lambda_min_clipped`, e.g.
  /// −5.1 for the cosine schedule): the grid starts at T − (number of training levels with λ < the clip).
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  double rho = 7.0;     ///< Karras' ρ.
  double beta_a = 0.6;  ///< Beta spacing's α.
  double beta_b = 0.6;  ///< Beta spacing's β.
};

/// The grid of N steps of diffusers' multistep solvers (DPMSolverMultistepScheduler.set_timesteps; UniPC, DEIS and
/// DPM-Solver single-step build theirs the same way): integer model times over [0, last) where last = T minus the
/// levels cut by lambda_min_clipped — linspace: round(linspace(0, last − 1, N + 1)) reversed without its 0;
/// leading: i·⌊last/(N + 1)⌋ for i = N..1, plus the offset; trailing: round(arange(last, 0, −T/N)) − 1 — and levels
/// σ̃ interpolated at them, or re-spaced over the whole table (karras, exponential, beta, lu_lambdas) with their
/// model times made integers as diffusers does (rounded for karras and lu_lambdas, truncated for exponential and
/// beta), then the final level. As for make_sigma_grid, trailing never has diffusers'
/// extra time −1.
template <class Real>
[[nodiscard]] sigma_grid make_multistep_grid(const noise_schedule<Real>& schedule, std::size_t num_steps,
                                             const multistep_grid_options& options = {}) {
  constexpr const char* fn = "make_multistep_grid";
  const std::size_t big_t = schedule.num_train_timesteps();
  if (big_t < 2) detail::throw_invalid(fn, "num_train_timesteps", "must be >= 2", big_t);
  if (num_steps == 0 || num_steps > big_t)
    detail::throw_invalid(fn, "num_steps", "must be in [1, T = " + std::to_string(big_t) + "]", num_steps);
  if (std::isnan(options.lambda_min_clipped))
    detail::throw_invalid(fn, "options.lambda_min_clipped", "must not be NaN", options.lambda_min_clipped);
  const std::vector<double> table = vp_sigmas(schedule);
  std::size_t clipped = 0;  // training levels with λ = −log σ̃ below the clip
  for (double sig : table)
    if (-std::log(sig) < options.lambda_min_clipped) ++clipped;
  const std::size_t last = big_t - clipped;
  if (last < 2) detail::throw_invalid(fn, "options.lambda_min_clipped", "leaves fewer than 2 training levels",
                                      options.lambda_min_clipped);
  sigma_grid g;
  g.timesteps.resize(num_steps);
  switch (options.spacing) {
    case timestep_spacing::linspace: {
      const auto v = detail::numpy_linspace(0.0, static_cast<double>(last - 1), num_steps + 1);
      for (std::size_t i = 0; i < num_steps; ++i) g.timesteps[i] = std::nearbyint(v[num_steps - i]);
      break;
    }
    case timestep_spacing::leading: {
      const std::size_t ratio = last / (num_steps + 1);
      for (std::size_t i = 0; i < num_steps; ++i)
        g.timesteps[i] = static_cast<double>((num_steps - i) * ratio + options.steps_offset);
      if (g.timesteps.front() > static_cast<double>(big_t - 1) || ratio == 0)
        detail::throw_invalid(fn, "num_steps / steps_offset",
                              "put a model time outside [0, T) or give a zero stride (N + 1 > the levels left)",
                              num_steps);
      break;
    }
    case timestep_spacing::trailing: {
      const double step = -static_cast<double>(big_t) / static_cast<double>(num_steps);
      const double start = static_cast<double>(last);
      const double delta = (start + step) - start;
      for (std::size_t i = 0; i < num_steps; ++i) {
        const double v = i == 0 ? start : (i == 1 ? start + step : start + static_cast<double>(i) * delta);
        g.timesteps[i] = std::nearbyint(v) - 1.0;
      }
      break;
    }
    default:
      detail::throw_invalid(fn, "options.spacing", "is not a timestep_spacing value", static_cast<int>(options.spacing));
  }
  std::vector<double> levels(num_steps);
  sigma_grid_options ramp;
  ramp.levels = options.levels;
  ramp.rho = options.rho;
  ramp.beta_a = options.beta_a;
  ramp.beta_b = options.beta_b;
  switch (options.levels) {
    case sigma_spacing::interpolated:
      for (std::size_t i = 0; i < num_steps; ++i) levels[i] = detail::interp_table(table, g.timesteps[i]);
      break;
    case sigma_spacing::lu_lambdas: {
      const double lo = std::log(table.front()), hi = std::log(table.back());
      for (std::size_t i = 0; i < num_steps; ++i) {
        const double r = num_steps == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(num_steps - 1);
        levels[i] = std::exp(hi + r * (lo - hi));
      }
      break;
    }
    case sigma_spacing::karras:
    case sigma_spacing::exponential:
    case sigma_spacing::beta:
      levels = detail::spaced_levels(fn, ramp, table.front(), table.back(), num_steps);
      break;
    default:
      detail::throw_invalid(fn, "options.levels", "is not a multistep level spacing", static_cast<int>(options.levels));
  }
  // diffusers rounds the karras and lu_lambdas times and truncates the exponential and beta ones (int64 cast).
  const bool round_times = options.levels == sigma_spacing::karras || options.levels == sigma_spacing::lu_lambdas;
  if (options.levels != sigma_spacing::interpolated)
    for (std::size_t i = 0; i < num_steps; ++i) {
      const double t = sigma_to_timestep(table, levels[i]);
      g.timesteps[i] = round_times ? std::nearbyint(t) : std::floor(t);
    }
  g.sigmas = std::move(levels);
  g.sigmas.push_back(options.final_level == final_sigma::sigma_min ? std::min(table.front(), g.sigmas.back()) : 0.0);
  validate_sigma_grid(fn, g);
  return g;
}

}  // namespace skipstep
