/// @file
/// @brief A diagonal Gaussian mixture with its **exact** denoiser on any Gaussian path, a test oracle for
/// samplers.
///
/// For data x0 ~ Σ_k w_k N(μ_k, diag(s_k²)) and any Gaussian path x_t = α·x0 + σ·ε (VP: α = √ā, σ = √(1−ā);
/// σ-space: α = 1, σ = σ̃; rectified flow: α = 1 − s, σ = s), the marginal p_t is again a Gaussian mixture:
///   p_t(x) = Σ_k w_k N(x; α·μ_k, diag(v_k)),   v_kd = α²·s_kd² + σ².
/// The optimal (MMSE) predictions are therefore closed form (Tweedie's formula, ∇ log p_t = −E[ε|x]/σ):
///   log r_k = log w_k − ½ Σ_d [(x_d − α·μ_kd)²/v_kd + log v_kd]   (normalised with log-sum-exp),
///   ε*_d    = E[ε_d | x]  = σ Σ_k r_k (x_d − α·μ_kd)/v_kd                  = −σ·∂_d log p_t(x),
///   x0*_d   = E[x0_d | x] = Σ_k r_k (μ_kd + α·s_kd²·(x_d − α·μ_kd)/v_kd)   = (x_d + σ²·∂_d log p_t(x))/α,
///   v*      = α·ε* − σ·x0* (Salimans & Ho 2022),   u* = ε* − x0* (flow velocity, Liu et al. 2023),
/// and α·x0* + σ·ε* = x exactly in exact arithmetic.
/// Source: Tweedie's formula as used in Song et al. 2021 (score SDE) and Kadkhodaie & Simoncelli 2021; the
/// data sets `ring2d` and `aniso16d` are those of the demo (README, "The demo").
///
/// Two interfaces:
///  - the VP form in terms of ā (`epsilon_at_alpha(x, a, out)`, `epsilon_batch`, `log_density`), unchanged;
///  - the level form for any (α, σ) (`predict_at_level(x, level, target, out)`, `predict_batch`,
///    `log_density_at_level`), with the target ε, x0, v or flow velocity (skipstep::prediction_type).
/// `mixture_predictor` at the end of this file turns the level form into a sampler predictor `f(x, t, out)`
/// taking a double (fractional) model time, mapped to a level through a σ grid (`grid_levels::vp` /
/// `grid_levels::flow`) or any callable, so that every solver of skipstep can be driven by the exact oracle.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/prediction.hpp"
#include "skipstep/schedule/path.hpp"
#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep::testing {

namespace detail {

/// Shortest round-trip-ish text of a double for error messages (17 significant digits, trailing noise kept).
inline std::string gm_format(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

[[noreturn]] inline void gm_fail(std::string_view function, std::string_view what) {
  throw std::invalid_argument("skipstep::testing::" + std::string(function) + ": " + std::string(what));
}

/// value·factor, or std::invalid_argument "<value_name> must be <= SIZE_MAX / <factor_name> = ... (got value)" when
/// that product does not fit in size_t (it would wrap around to a small size that matches the caller's buffers, and
/// the loops over it would run past them).
inline std::size_t gm_checked_product(std::string_view function, std::size_t value, std::string_view value_name,
                                      std::size_t factor, std::string_view factor_name) {
  if (factor != 0 && value > std::numeric_limits<std::size_t>::max() / factor) {
    gm_fail(function, std::string(value_name) + " must be <= SIZE_MAX / " + std::string(factor_name) + " = " +
                          std::to_string(std::numeric_limits<std::size_t>::max() / factor) + " (got " +
                          std::to_string(value) + ")");
  }
  return value * factor;
}

/// n rows of `dim` doubles: n·dim elements (gm_checked_product naming n).
inline std::size_t gm_row_elements(std::string_view function, std::size_t n, std::size_t dim) {
  return gm_checked_product(function, n, "n (rows)", dim, "dim()");
}

/// A source of uniformly distributed 64-bit words: either a std::uniform_random_bit_generator whose range is
/// the full [0, 2^64 − 1] (e.g. std::mt19937_64), or any callable returning std::uint64_t with that property
/// (e.g. a Philox wrapper). A URBG with a smaller range is rejected at compile time rather than silently
/// biased.
template <class G>
concept Uniform64Source = std::invocable<G&> && std::same_as<std::invoke_result_t<G&>, std::uint64_t>;

template <class G>
constexpr void gm_check_full_range() {
  if constexpr (std::uniform_random_bit_generator<G>) {
    static_assert(
        G::min() == 0 && G::max() == std::numeric_limits<std::uint64_t>::max(),
        "skipstep::testing: the random generator must produce the full 64-bit range (e.g. std::mt19937_64)");
  }
}

/// Uniform double in the open interval (0, 1) from the top 53 bits of a 64-bit word: (⌊u/2^11⌋ + ½)·2^−53.
inline double gm_open_uniform(std::uint64_t bits) noexcept {
  return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53;
}

/// Two independent standard normals by the Box–Muller transform (Box & Muller 1958) from two open uniforms.
inline std::pair<double, double> gm_box_muller(double u1, double u2) noexcept {
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double phi = 2.0 * std::numbers::pi * u2;
  return {r * std::cos(phi), r * std::sin(phi)};
}

/// The four numbers of a noise level that the mixture formulas use: v_kd = a2·s_kd² + s2, noised means a·μ_k
/// and ε* = s·Σ_k r_k (x − a·μ_k)/v_k. The VP form passes {ā, 1 − ā, √ā, √(1 − ā)} (the values it always
/// used, so its results are unchanged bit for bit), the level form {α², σ², α, σ}.
struct gm_level_terms {
  double a2;  ///< α² (ā on the VP form).
  double s2;  ///< σ² (1 − ā on the VP form).
  double a;   ///< α.
  double s;   ///< σ.
};

/// The terms of VP level ā.
inline gm_level_terms gm_vp_terms(double alpha_bar) noexcept {
  return {alpha_bar, 1.0 - alpha_bar, std::sqrt(alpha_bar), std::sqrt(1.0 - alpha_bar)};
}

/// The terms of a level (α, σ).
inline gm_level_terms gm_terms(level at) noexcept {
  return {at.alpha * at.alpha, at.sigma * at.sigma, at.alpha, at.sigma};
}

/// One output element from E = Σ_k r_k (x − α·μ_k)/v_k and x0* = Σ_k r_k (μ_k + α·s_k²·(x − α·μ_k)/v_k):
/// ε* = σ·E; x0*; v* = α·ε* − σ·x0*; u* = ε* − x0*.
inline double gm_combine(prediction_type target, const gm_level_terms& t, double e, double x0) noexcept {
  switch (target) {
    case prediction_type::epsilon:
      return t.s * e;
    case prediction_type::sample:
      return x0;
    case prediction_type::v:
      return t.a * (t.s * e) - t.s * x0;
    case prediction_type::flow:
      return t.s * e - x0;
  }
  return std::numeric_limits<double>::quiet_NaN();  // not reached: targets are checked by the callers
}

}  // namespace detail

/// A D-dimensional Gaussian mixture with K components, means μ_k, diagonal standard deviations s_k and
/// weights w_k. All storage is double, row-major K×D. Immutable after construction; every member function is
/// const and thread-safe (no internal mutable state).
class gaussian_mixture {
 public:
  /// Upper bound on K: the per-row evaluation keeps the K log-responsibilities in a stack buffer of this
  /// size, so every ε* evaluation is allocation-free. Constructing a mixture with more components throws.
  static constexpr std::size_t max_components = 64;

  /// Builds the mixture from flat row-major K×D arrays.
  /// - `dim` = D ≥ 1; `means` and `stds` have K·D entries (K = weights.size(), 1 ≤ K ≤ max_components);
  /// - means finite, stds finite and > 0, weights finite and > 0.
  /// Weights are **normalised**: w_k ← w_k / Σ_j w_j (so {1, 1, 2} means {¼, ¼, ½}); this avoids a tolerance
  /// on Σ w = 1 that would reject decimal inputs such as {0.1, 0.2, 0.3, 0.4} whose double sum is not
  /// exactly 1. Throws std::invalid_argument naming the argument and value otherwise.
  gaussian_mixture(std::size_t dim, std::vector<double> means, std::vector<double> stds,
                   std::vector<double> weights)
      : dim_(dim), k_(weights.size()), mu_(std::move(means)), s_(std::move(stds)), w_(std::move(weights)) {
    validate_and_precompute();
  }

  /// Same, from nested K×D vectors: `gaussian_mixture({{0, 0}, {1, 1}}, {{.1, .1}, {.2, .2}}, {0.5, 0.5})`.
  /// Every row must have the same length D ≥ 1 and both nested vectors K = weights.size() rows.
  gaussian_mixture(const std::vector<std::vector<double>>& means,
                   const std::vector<std::vector<double>>& stds, const std::vector<double>& weights)
      : gaussian_mixture(nested_dim(means, stds, weights.size()), flatten(means), flatten(stds), weights) {}

  /// The demo's `ring2d` data set: 8 components on the unit circle at angles 2πk/8, std 0.05 in both
  /// coordinates, equal weights.
  static gaussian_mixture ring2d() {
    constexpr std::size_t K = 8;
    std::vector<double> mu(K * 2), s(K * 2, 0.05), w(K, 1.0 / K);
    for (std::size_t k = 0; k < K; ++k) {
      const double ang = 2.0 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(K);
      mu[2 * k] = std::cos(ang);
      mu[2 * k + 1] = std::sin(ang);
    }
    return gaussian_mixture(2, std::move(mu), std::move(s), std::move(w));
  }

  /// The demo's `aniso16d` data set: D = 16, K = 4,
  /// μ_kd = 0.5·cos(π(k+1)(2d+1)/32), s_kd = 0.03·10^(((d+5k) mod 16)/15), w = (0.1, 0.2, 0.3, 0.4)
  /// (k = 0..3, d = 0..15; s ranges over [0.03, 0.3], so every component is strongly anisotropic).
  static gaussian_mixture aniso16d() {
    constexpr std::size_t K = 4, D = 16;
    std::vector<double> mu(K * D), s(K * D);
    for (std::size_t k = 0; k < K; ++k) {
      for (std::size_t d = 0; d < D; ++d) {
        mu[k * D + d] = 0.5 * std::cos(std::numbers::pi * static_cast<double>((k + 1) * (2 * d + 1)) / 32.0);
        s[k * D + d] = 0.03 * std::pow(10.0, static_cast<double>((d + 5 * k) % 16) / 15.0);
      }
    }
    return gaussian_mixture(D, std::move(mu), std::move(s), {0.1, 0.2, 0.3, 0.4});
  }

  /// D, the dimension of one sample.
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  /// K, the number of components.
  [[nodiscard]] std::size_t num_components() const noexcept { return k_; }
  /// μ_k (D entries).
  [[nodiscard]] std::span<const double> mean(std::size_t k) const { return row(mu_, k, "mean"); }
  /// s_k (D entries).
  [[nodiscard]] std::span<const double> stddev(std::size_t k) const { return row(s_, k, "stddev"); }
  /// w_k after normalisation.
  [[nodiscard]] double weight(std::size_t k) const {
    check_component(k, "weight");
    return w_[k];
  }
  /// All normalised weights (K entries).
  [[nodiscard]] std::span<const double> weights() const noexcept { return w_; }

  /// The exact noise predictor at noise level a = ā_t, one row:
  ///   ε*_d = √(1−a) Σ_k r_k (x_d − √a·μ_kd)/v_kd,  v_kd = a·s_kd² + 1 − a,
  ///   r_k ∝ w_k Π_d N(x_d; √a·μ_kd, v_kd) (log-sum-exp normalised).   [Tweedie's formula]
  /// - a = 0: returns ε* = x exactly (p_0 = N(0, I)); a = 1: returns 0 (the limit of the closed form; at a =
  /// 1 the
  ///   noise is not identifiable from x). For a → 1 the result stays finite and accurate (no division by
  ///   √(1−a) is performed), but ε* = (x − √a·E[x0|x])/√(1−a) becomes ill-conditioned as a function of x:
  ///   its Jacobian grows like √(1−a)/v ≈ √(1−a)/s² — expected, it is a property of ε*, not of the code.
  /// - `x_row` and `out` have D entries; `out` may be the very same span as `x_row` (in-place), any other
  ///   overlap is not allowed.
  /// - Allocation-free. Costs K·D logs; for batches at one a prefer `epsilon_batch` with a workspace.
  /// Throws std::invalid_argument if a ∉ [0, 1] (or NaN) or a span has the wrong size.
  void epsilon_at_alpha(std::span<const double> x_row, double alpha_bar, std::span<double> out) const {
    static constexpr std::string_view fn = "gaussian_mixture::epsilon_at_alpha";
    check_alpha(fn, alpha_bar);
    check_size(fn, "x_row", x_row.size(), dim_);
    check_size(fn, "out", out.size(), dim_);
    epsilon_row_unchecked(x_row.data(), alpha_bar, out.data());
  }

  /// Alias of `epsilon_at_alpha` (same formula, same contract).
  void epsilon(std::span<const double> x_row, double alpha_bar, std::span<double> out) const {
    epsilon_at_alpha(x_row, alpha_bar, out);
  }

  /// Number of doubles `epsilon_batch(..., workspace)` needs: K·(2D + 1).
  [[nodiscard]] std::size_t workspace_size() const noexcept { return k_ * (2 * dim_ + 1); }

  /// ε* for N rows at one a: `x` and `out` are N×D row-major (`out` may be the same span as `x`).
  /// Per-a tables (1/v_kd, √a·μ_kd, log w_k − ½Σ_d log v_kd) are computed once into the caller's `workspace`
  /// (≥ workspace_size() doubles), then each row costs O(K·D) multiply-adds and K exps — no logs, no
  /// allocation. Same formula and special cases as `epsilon_at_alpha`; results agree with it to rounding
  /// (≈1e-15 relative), not necessarily bit for bit. Throws std::invalid_argument on a bad a or sizes.
  void epsilon_batch(std::span<const double> x, std::size_t n, double alpha_bar, std::span<double> out,
                     std::span<double> workspace) const {
    static constexpr std::string_view fn = "gaussian_mixture::epsilon_batch";
    check_alpha(fn, alpha_bar);
    const std::size_t elements = detail::gm_row_elements(fn, n, dim_);
    check_size(fn, "x", x.size(), elements);
    check_size(fn, "out", out.size(), elements);
    if (workspace.size() < workspace_size()) {
      detail::gm_fail(fn,
                      "workspace must hold at least workspace_size() = " + std::to_string(workspace_size()) +
                          " doubles (got " + std::to_string(workspace.size()) + ")");
    }
    if (alpha_bar == 0.0) {
      copy_rows(x.data(), out.data(), n * dim_);
      return;
    }
    if (alpha_bar == 1.0) {  // the documented limit; the closed form would be 0·(x − μ)/s², NaN when that overflows
      std::fill(out.begin(), out.end(), 0.0);
      return;
    }
    const std::size_t KD = k_ * dim_;
    double* inv_v = workspace.data();
    double* smu = inv_v + KD;
    double* c = smu + KD;
    const double a = alpha_bar, om = 1.0 - a, sa = std::sqrt(a), so = std::sqrt(om);
    for (std::size_t k = 0; k < k_; ++k) {
      double logv = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const std::size_t i = k * dim_ + d;
        const double v = a * s2_[i] + om;
        inv_v[i] = 1.0 / v;
        smu[i] = sa * mu_[i];
        logv += std::log(v);
      }
      c[k] = logw_[k] - 0.5 * logv;
    }
    std::array<double, max_components> r{};
    for (std::size_t row = 0; row < n; ++row) {
      const double* xr = x.data() + row * dim_;
      double* yr = out.data() + row * dim_;
      double mx = -std::numeric_limits<double>::infinity();
      for (std::size_t k = 0; k < k_; ++k) {
        const double* m = smu + k * dim_;
        const double* iv = inv_v + k * dim_;
        double q = 0.0;
        for (std::size_t d = 0; d < dim_; ++d) {
          const double diff = xr[d] - m[d];
          q += diff * diff * iv[d];
        }
        r[k] = c[k] - 0.5 * q;
        mx = std::max(mx, r[k]);
      }
      normalise_log_weights(r.data(), mx);
      for (std::size_t d = 0; d < dim_; ++d) {
        double acc = 0.0;
        for (std::size_t k = 0; k < k_; ++k) {
          const std::size_t i = k * dim_ + d;
          acc += r[k] * (xr[d] - smu[i]) * inv_v[i];
        }
        yr[d] = so * acc;  // reads xr[d'] only for d' >= d afterwards: safe when out == x
      }
    }
  }

  /// ε* for N rows at one a without a workspace: calls `epsilon_at_alpha` row by row (allocation-free,
  /// bitwise identical to the per-row form, but ~K·D logs per row: slower than the workspace overload).
  void epsilon_batch(std::span<const double> x, std::size_t n, double alpha_bar,
                     std::span<double> out) const {
    static constexpr std::string_view fn = "gaussian_mixture::epsilon_batch";
    check_alpha(fn, alpha_bar);
    const std::size_t elements = detail::gm_row_elements(fn, n, dim_);
    check_size(fn, "x", x.size(), elements);
    check_size(fn, "out", out.size(), elements);
    for (std::size_t row = 0; row < n; ++row) {
      epsilon_row_unchecked(x.data() + row * dim_, alpha_bar, out.data() + row * dim_);
    }
  }

  /// log p_t(x) of the noised mixture at a = ā_t:
  ///   log Σ_k w_k N(x; √a·μ_k, diag(v_k)) = LSE_k[log w_k − ½Σ_d((x_d − √a·μ_kd)²/v_kd + log v_kd)] −
  ///   (D/2)·log 2π.
  /// At a = 1 this is the data density, at a = 0 the standard normal. Throws on a ∉ [0, 1] or a wrong size.
  [[nodiscard]] double log_density(std::span<const double> x_row, double alpha_bar) const {
    static constexpr std::string_view fn = "gaussian_mixture::log_density";
    check_alpha(fn, alpha_bar);
    check_size(fn, "x_row", x_row.size(), dim_);
    return log_density_unchecked(x_row.data(), detail::gm_vp_terms(alpha_bar));
  }

  /// The exact prediction at a level (α, σ) of any Gaussian path x_t = α·x0 + σ·ε, one row:
  ///   E_d = Σ_k r_k (x_d − α·μ_kd)/v_kd,  v_kd = α²·s_kd² + σ²,  r_k ∝ w_k Π_d N(x_d; α·μ_kd, v_kd);
  ///   target epsilon: ε*_d = σ·E_d = −σ·∂_d log p_t(x)                            [Tweedie's formula];
  ///   target sample:  x0*_d = Σ_k r_k (μ_kd + α·s_kd²·(x_d − α·μ_kd)/v_kd) = (x_d + σ²·∂_d log p_t)/α,
  ///                   the weighted component posterior means (finite at α = 0, where it is Σ_k w_k μ_k);
  ///   target v:       v*_d = α·ε*_d − σ·x0*_d            (Salimans & Ho 2022; prediction_type::v);
  ///   target flow:    u*_d = ε*_d − x0*_d                (rectified-flow velocity, Liu et al. 2023).
  /// Each is the MMSE estimate of its target because the targets are linear in (x0, ε). On VP levels
  /// (α = √ā, σ = √(1 − ā)) the epsilon target equals `epsilon_at_alpha(x, ā)` to rounding (not bit for bit:
  /// α² is not exactly ā). σ = 0 gives ε* = 0 and x0* = x/α; α = 0 gives ε* = x/σ and x0* = Σ_k w_k μ_k (to
  /// rounding). `out` may be the same span as `x_row`, no other overlap. Allocation-free; K·D logs per row
  /// (prefer `predict_batch` for many rows). Throws std::invalid_argument on a level that is not finite and
  /// non-negative, or α = σ = 0, a target that is not a prediction_type value, or a span of the wrong size.
  void predict_at_level(std::span<const double> x_row, level at, prediction_type target,
                        std::span<double> out) const {
    static constexpr std::string_view fn = "gaussian_mixture::predict_at_level";
    check_level(fn, at);
    check_target(fn, target);
    check_size(fn, "x_row", x_row.size(), dim_);
    check_size(fn, "out", out.size(), dim_);
    predict_row_unchecked(x_row.data(), detail::gm_terms(at), target, out.data());
  }

  /// ε*(x) at level (α, σ): `predict_at_level(x_row, at, prediction_type::epsilon, out)`.
  void epsilon_at_level(std::span<const double> x_row, level at, std::span<double> out) const {
    predict_at_level(x_row, at, prediction_type::epsilon, out);
  }

  /// `predict_at_level` for N rows at one level: `x` and `out` are N×D row-major (`out` may be the same span
  /// as `x`). Per-level tables (1/v_kd, α·μ_kd, log w_k − ½Σ_d log v_kd) go into the caller's `workspace` (≥
  /// workspace_size() doubles), then each row costs O(K·D) multiply-adds and K exps, no logs, no allocation.
  /// Agrees with the per-row form to rounding (≈1e-15 relative), not necessarily bit for bit. Throws as
  /// `predict_at_level`, and when the workspace is too small.
  void predict_batch(std::span<const double> x, std::size_t n, level at, prediction_type target,
                     std::span<double> out, std::span<double> workspace) const {
    static constexpr std::string_view fn = "gaussian_mixture::predict_batch";
    check_level(fn, at);
    check_target(fn, target);
    check_size(fn, "x", x.size(), n * dim_);
    check_size(fn, "out", out.size(), n * dim_);
    check_workspace(fn, workspace);
    const detail::gm_level_terms t = detail::gm_terms(at);
    const std::size_t KD = k_ * dim_;
    double* inv_v = workspace.data();
    double* smu = inv_v + KD;
    double* c = smu + KD;
    fill_level_tables(t, inv_v, smu, c);
    std::array<double, max_components> r{};
    for (std::size_t row = 0; row < n; ++row) {
      const double* xr = x.data() + row * dim_;
      double* yr = out.data() + row * dim_;
      batch_responsibilities(xr, inv_v, smu, c, r.data());
      for (std::size_t d = 0; d < dim_; ++d) {
        double e = 0.0, x0 = 0.0;
        for (std::size_t k = 0; k < k_; ++k) {
          const std::size_t i = k * dim_ + d;
          const double z = (xr[d] - smu[i]) * inv_v[i];
          e += r[k] * z;
          x0 += r[k] * (mu_[i] + t.a * s2_[i] * z);
        }
        // reads xr[d'] only for d' >= d afterwards: out == x is safe
        yr[d] = detail::gm_combine(target, t, e, x0);
      }
    }
  }

  /// log p_t(x) of the mixture noised to level (α, σ), v_kd = α²·s_kd² + σ²:
  ///   log Σ_k w_k N(x; α·μ_k, diag(v_k))
  ///     = LSE_k[log w_k − ½Σ_d((x_d − α·μ_kd)²/v_kd + log v_kd)] − (D/2)·log 2π.
  /// At (√ā, √(1 − ā)) it is `log_density(x, ā)` to rounding. Throws as `predict_at_level`.
  [[nodiscard]] double log_density_at_level(std::span<const double> x_row, level at) const {
    static constexpr std::string_view fn = "gaussian_mixture::log_density_at_level";
    check_level(fn, at);
    check_size(fn, "x_row", x_row.size(), dim_);
    return log_density_unchecked(x_row.data(), detail::gm_terms(at));
  }

  /// argmax_k [log w_k − ½Σ_d((x_d − μ_kd)/s_kd)² − Σ_d log s_kd], the component of the *clean* (a = 1)
  /// mixture with the highest posterior probability (ties: the lowest k). Used by the wsw metric.
  /// A row containing NaN returns 0 (no comparison succeeds); callers that care check finiteness first.
  [[nodiscard]] std::size_t most_likely_component(std::span<const double> x_row) const {
    check_size("gaussian_mixture::most_likely_component", "x_row", x_row.size(), dim_);
    std::size_t best = 0;
    double best_score = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < k_; ++k) {
      double q = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const std::size_t i = k * dim_ + d;
        const double z = (x_row[d] - mu_[i]) * inv_s_[i];
        q += z * z;
      }
      const double score = logw_minus_logs_[k] - 0.5 * q;
      if (score > best_score) {
        best_score = score;
        best = k;
      }
    }
    return best;
  }

  /// Fills `out` (N×D row-major, N = out.size()/D) with independent draws from the clean mixture:
  /// component k with probability w_k (inverse CDF of the weights on one uniform), then μ_k + s_k ⊙ z with z
  /// standard normal by Box–Muller. `gen` is std::mt19937_64 or any callable returning uniform std::uint64_t.
  /// Uniforms are (⌊u/2^11⌋ + ½)·2^−53 so the stream is reproducible across standard libraries (no
  /// std::normal_distribution). If `labels` is non-empty it must have N entries and receives the components
  /// drawn.
  template <class G>
  requires detail::Uniform64Source<G>
  void sample(G& gen, std::span<double> out, std::span<std::size_t> labels = {}) const {
    detail::gm_check_full_range<G>();
    static constexpr std::string_view fn = "gaussian_mixture::sample";
    if (out.size() % dim_ != 0) {
      detail::gm_fail(fn, "out.size() must be a multiple of dim() = " + std::to_string(dim_) + " (got " +
                              std::to_string(out.size()) + ")");
    }
    const std::size_t n = out.size() / dim_;
    if (!labels.empty())
      check_size(fn, "labels", labels.size(), n);
    bool have_spare = false;
    double spare = 0.0;
    for (std::size_t row = 0; row < n; ++row) {
      const double u = detail::gm_open_uniform(static_cast<std::uint64_t>(gen()));
      std::size_t k = 0;
      while (k + 1 < k_ && u >= cumw_[k])
        ++k;
      if (!labels.empty())
        labels[row] = k;
      for (std::size_t d = 0; d < dim_; ++d) {
        double z;
        if (have_spare) {
          z = spare;
          have_spare = false;
        } else {
          const double u1 = detail::gm_open_uniform(static_cast<std::uint64_t>(gen()));
          const double u2 = detail::gm_open_uniform(static_cast<std::uint64_t>(gen()));
          const auto [z0, z1] = detail::gm_box_muller(u1, u2);
          z = z0;
          spare = z1;
          have_spare = true;
        }
        const std::size_t i = k * dim_ + d;
        out[row * dim_ + d] = mu_[i] + s_[i] * z;
      }
    }
  }

  /// Returns N independent draws from the clean mixture as an N×D row-major vector (see the span overload).
  template <class G>
  requires detail::Uniform64Source<G>
  [[nodiscard]] std::vector<double> sample(G& gen, std::size_t n) const {
    std::vector<double> out(detail::gm_row_elements("gaussian_mixture::sample", n, dim_));
    sample(gen, std::span<double>(out));
    return out;
  }

 private:
  std::size_t dim_;
  std::size_t k_;
  std::vector<double> mu_, s_, w_;
  std::vector<double> s2_, inv_s_, logw_, logw_minus_logs_, cumw_;

  static std::size_t nested_dim(const std::vector<std::vector<double>>& means,
                                const std::vector<std::vector<double>>& stds, std::size_t k) {
    static constexpr std::string_view fn = "gaussian_mixture::gaussian_mixture";
    if (means.size() != k)
      check_size(fn, "means (rows)", means.size(), k);
    if (stds.size() != k)
      check_size(fn, "stds (rows)", stds.size(), k);
    if (k == 0)
      detail::gm_fail(fn, "weights must have at least 1 entry (got 0)");
    const std::size_t d = means[0].size();
    for (std::size_t i = 0; i < k; ++i) {
      if (means[i].size() != d)
        check_size(fn, "means[" + std::to_string(i) + "]", means[i].size(), d);
      if (stds[i].size() != d)
        check_size(fn, "stds[" + std::to_string(i) + "]", stds[i].size(), d);
    }
    return d;
  }

  static std::vector<double> flatten(const std::vector<std::vector<double>>& rows) {
    std::vector<double> flat;
    for (const auto& r : rows)
      flat.insert(flat.end(), r.begin(), r.end());
    return flat;
  }

  void validate_and_precompute() {
    static constexpr std::string_view fn = "gaussian_mixture::gaussian_mixture";
    if (dim_ == 0)
      detail::gm_fail(fn, "dim must be >= 1 (got 0)");
    if (k_ == 0)
      detail::gm_fail(fn, "weights must have at least 1 entry (got 0)");
    if (k_ > max_components) {
      detail::gm_fail(fn, "weights.size() (the number of components) must be <= max_components = " +
                              std::to_string(max_components) + " (got " + std::to_string(k_) + ")");
    }
    // K·D must not wrap (to 0, which empty means and stds would match).
    const std::size_t kd = detail::gm_checked_product(fn, dim_, "dim", k_, "the number of components");
    check_size(fn, "means", mu_.size(), kd);
    check_size(fn, "stds", s_.size(), kd);
    for (std::size_t i = 0; i < mu_.size(); ++i) {
      if (!std::isfinite(mu_[i])) {
        detail::gm_fail(
            fn, "means[" + std::to_string(i) + "] must be finite (got " + detail::gm_format(mu_[i]) + ")");
      }
      // s² enters every variance a·s² + 1 − a: it must be a finite normal double (0 or ∞ there gives NaN at a = 1).
      const double s2 = s_[i] * s_[i];
      if (!(s_[i] > 0.0) || !std::isfinite(s2) || s2 < std::numeric_limits<double>::min()) {
        detail::gm_fail(fn, "stds[" + std::to_string(i) +
                                "] must be finite and > 0, with a square that is a finite normal double (about "
                                "1.5e-154 to 1.3e154) (got " +
                                detail::gm_format(s_[i]) + ")");
      }
    }
    double sum = 0.0;
    for (std::size_t k = 0; k < k_; ++k) {
      if (!(w_[k] > 0.0) || !std::isfinite(w_[k])) {
        detail::gm_fail(fn, "weights[" + std::to_string(k) + "] must be finite and > 0 (got " +
                                detail::gm_format(w_[k]) + ")");
      }
      sum += w_[k];
    }
    if (!std::isfinite(sum))
      detail::gm_fail(fn, "the sum of weights must be finite (got " + detail::gm_format(sum) + ")");
    s2_.resize(s_.size());
    inv_s_.resize(s_.size());
    logw_.resize(k_);
    logw_minus_logs_.resize(k_);
    cumw_.resize(k_);
    double cum = 0.0;
    for (std::size_t k = 0; k < k_; ++k) {
      w_[k] /= sum;
      logw_[k] = std::log(w_[k]);
      double logs = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const std::size_t i = k * dim_ + d;
        s2_[i] = s_[i] * s_[i];
        inv_s_[i] = 1.0 / s_[i];
        logs += std::log(s_[i]);
      }
      logw_minus_logs_[k] = logw_[k] - logs;
      cum += w_[k];
      cumw_[k] = cum;
    }
  }

  static void check_alpha(std::string_view fn, double a) {
    if (!(a >= 0.0 && a <= 1.0))
      detail::gm_fail(fn, "alpha_bar must be in [0, 1] (got " + detail::gm_format(a) + ")");
  }

  static void check_size(std::string_view fn, const std::string& arg, std::size_t got, std::size_t want) {
    if (got != want) {
      detail::gm_fail(
          fn, arg + " must have " + std::to_string(want) + " elements (got " + std::to_string(got) + ")");
    }
  }

  void check_component(std::size_t k, std::string_view what) const {
    if (k >= k_) {
      detail::gm_fail(
          "gaussian_mixture::" + std::string(what),
          "k must be < num_components() = " + std::to_string(k_) + " (got " + std::to_string(k) + ")");
    }
  }

  std::span<const double> row(const std::vector<double>& v, std::size_t k, std::string_view what) const {
    check_component(k, what);
    return std::span<const double>(v).subspan(k * dim_, dim_);
  }

  static void copy_rows(const double* x, double* out, std::size_t count) noexcept {
    if (x != out)
      std::copy(x, x + count, out);
  }

  /// lr[k] = log w_k − ½Σ_d((x_d − α·μ_kd)²/v_kd + log v_kd), v_kd = a2·s_kd² + s2; returns max_k lr[k].
  double log_responsibilities(const double* x, const detail::gm_level_terms& t, double* lr) const noexcept {
    const double a2 = t.a2, om = t.s2, sa = t.a;
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < k_; ++k) {
      double q = 0.0, logv = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const std::size_t i = k * dim_ + d;
        const double v = a2 * s2_[i] + om;
        const double diff = x[d] - sa * mu_[i];
        q += diff * diff / v;
        logv += std::log(v);
      }
      lr[k] = logw_[k] - 0.5 * (q + logv);
      mx = std::max(mx, lr[k]);
    }
    return mx;
  }

  /// In place: lr[k] ← exp(lr[k] − mx) / Σ_j exp(lr[j] − mx). Terms with lr[k] − mx < −60 are set to 0
  /// without calling exp: they are < 1e-26 of the largest term (whose normalised value is ≥ 1/K), far below
  /// rounding.
  void normalise_log_weights(double* lr, double mx) const noexcept {
    double sum = 0.0;
    for (std::size_t k = 0; k < k_; ++k) {
      const double t = lr[k] - mx;
      lr[k] = t < -60.0 ? 0.0 : std::exp(t);
      sum += lr[k];
    }
    const double inv = 1.0 / sum;
    for (std::size_t k = 0; k < k_; ++k)
      lr[k] *= inv;
  }

  void epsilon_row_unchecked(const double* x, double a, double* out) const noexcept {
    if (a == 0.0) {
      copy_rows(x, out, dim_);
      return;
    }
    if (a == 1.0) {  // the documented limit (see epsilon_batch)
      std::fill(out, out + dim_, 0.0);
      return;
    }
    std::array<double, max_components> r{};
    const double mx = log_responsibilities(x, detail::gm_vp_terms(a), r.data());
    normalise_log_weights(r.data(), mx);
    const double om = 1.0 - a, sa = std::sqrt(a), so = std::sqrt(om);
    for (std::size_t d = 0; d < dim_; ++d) {
      double acc = 0.0;
      for (std::size_t k = 0; k < k_; ++k) {
        const std::size_t i = k * dim_ + d;
        const double v = a * s2_[i] + om;
        acc += r[k] * (x[d] - sa * mu_[i]) / v;
      }
      out[d] = so * acc;  // x[d'] for d' > d is still unread-modified: safe when out == x
    }
  }

  static void check_level(std::string_view fn, level at) {
    if (!(at.alpha >= 0.0) || !std::isfinite(at.alpha))
      detail::gm_fail(fn, "level.alpha must be finite and >= 0 (got " + detail::gm_format(at.alpha) + ")");
    if (!(at.sigma >= 0.0) || !std::isfinite(at.sigma))
      detail::gm_fail(fn, "level.sigma must be finite and >= 0 (got " + detail::gm_format(at.sigma) + ")");
    if (at.alpha == 0.0 && at.sigma == 0.0)
      detail::gm_fail(fn, "level must not have alpha = sigma = 0");
  }

  static void check_target(std::string_view fn, prediction_type target) {
    switch (target) {
      case prediction_type::epsilon:
      case prediction_type::sample:
      case prediction_type::v:
      case prediction_type::flow:
        return;
    }
    detail::gm_fail(
        fn, "target must be a prediction_type value (got " + std::to_string(static_cast<int>(target)) + ")");
  }

  void check_workspace(std::string_view fn, std::span<double> workspace) const {
    if (workspace.size() < workspace_size()) {
      detail::gm_fail(fn,
                      "workspace must hold at least workspace_size() = " + std::to_string(workspace_size()) +
                          " doubles (got " + std::to_string(workspace.size()) + ")");
    }
  }

  /// The per-level tables of the batch forms: inv_v = 1/v_kd, smu = α·μ_kd, c_k = log w_k − ½Σ_d log v_kd.
  void fill_level_tables(const detail::gm_level_terms& t, double* inv_v, double* smu,
                         double* c) const noexcept {
    for (std::size_t k = 0; k < k_; ++k) {
      double logv = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const std::size_t i = k * dim_ + d;
        const double v = t.a2 * s2_[i] + t.s2;
        inv_v[i] = 1.0 / v;
        smu[i] = t.a * mu_[i];
        logv += std::log(v);
      }
      c[k] = logw_[k] - 0.5 * logv;
    }
  }

  /// The normalised responsibilities r_k of one row from the per-level tables.
  void batch_responsibilities(const double* xr, const double* inv_v, const double* smu, const double* c,
                              double* r) const noexcept {
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < k_; ++k) {
      const double* m = smu + k * dim_;
      const double* iv = inv_v + k * dim_;
      double q = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const double diff = xr[d] - m[d];
        q += diff * diff * iv[d];
      }
      r[k] = c[k] - 0.5 * q;
      mx = std::max(mx, r[k]);
    }
    normalise_log_weights(r, mx);
  }

  double log_density_unchecked(const double* x, const detail::gm_level_terms& t) const noexcept {
    std::array<double, max_components> lr{};
    const double mx = log_responsibilities(x, t, lr.data());
    double sum = 0.0;
    for (std::size_t k = 0; k < k_; ++k)
      sum += std::exp(lr[k] - mx);
    return mx + std::log(sum) - 0.5 * static_cast<double>(dim_) * std::log(2.0 * std::numbers::pi);
  }

  void predict_row_unchecked(const double* x, const detail::gm_level_terms& t, prediction_type target,
                             double* out) const noexcept {
    std::array<double, max_components> r{};
    const double mx = log_responsibilities(x, t, r.data());
    normalise_log_weights(r.data(), mx);
    for (std::size_t d = 0; d < dim_; ++d) {
      double e = 0.0, x0 = 0.0;
      for (std::size_t k = 0; k < k_; ++k) {
        const std::size_t i = k * dim_ + d;
        const double v = t.a2 * s2_[i] + t.s2;
        const double z = (x[d] - t.a * mu_[i]) / v;
        e += r[k] * z;
        x0 += r[k] * (mu_[i] + t.a * s2_[i] * z);
      }
      // x[d'] for d' > d is not yet overwritten: out == x is safe
      out[d] = detail::gm_combine(target, t, e, x0);
    }
  }
};

/// The level of each model time of a σ grid, for `mixture_predictor`: t_i = grid.timesteps[i] ↦ the level of
/// grid.sigmas[i]. On a VP grid (make_sigma_grid) that is α = 1/√(1 + σ̃_i²), σ = σ̃_i·α
/// (level::from_sigma_tilde), on a flow grid (make_flow_grid) α = 1 − s_i, σ = s_i (level::flow). Every
/// σ-grid solver of skipstep (Euler, Euler ancestral, Heun, DPM-Solver, flow Euler) evaluates its model only
/// at the grid's own model times, so the map is exact: no interpolation of a training table is involved. The
/// grid is copied.
class grid_levels {
 public:
  /// The levels of a VP σ grid. Throws std::invalid_argument for an invalid grid (validate_sigma_grid) or two
  /// equal model times with different levels.
  [[nodiscard]] static grid_levels vp(const sigma_grid& grid) {
    validate_sigma_grid("skipstep::testing::grid_levels::vp", grid);
    grid_levels g;
    for (std::size_t i = 0; i < grid.size(); ++i)
      g.add(grid.timesteps[i], level::from_sigma_tilde(grid.sigmas[i]));
    return g;
  }

  /// The levels of a rectified-flow grid (levels s_i in [0, 1], N model times and N + 1 levels). Throws
  /// std::invalid_argument otherwise, or for two equal model times with different levels.
  [[nodiscard]] static grid_levels flow(const sigma_grid& grid) {
    static constexpr std::string_view fn = "grid_levels::flow";
    if (grid.timesteps.empty() || grid.sigmas.size() != grid.timesteps.size() + 1)
      detail::gm_fail(fn, "grid must have N >= 1 model times and N + 1 levels (got " +
                              std::to_string(grid.timesteps.size()) + " and " +
                              std::to_string(grid.sigmas.size()) + ")");
    grid_levels g;
    for (std::size_t i = 0; i < grid.size(); ++i) {
      const double s = grid.sigmas[i];
      if (!(s >= 0.0 && s <= 1.0) || !std::isfinite(grid.timesteps[i]))
        detail::gm_fail(fn, "grid level " + std::to_string(i) +
                                " must be in [0, 1] with a finite model time (got " + detail::gm_format(s) +
                                " at t = " + detail::gm_format(grid.timesteps[i]) + ")");
      g.add(grid.timesteps[i], level::flow(s));
    }
    return g;
  }

  /// The level of model time t. Throws std::invalid_argument if t is not one of the grid's model times.
  [[nodiscard]] level operator()(double t) const {
    for (std::size_t i = 0; i < times_.size(); ++i)
      if (times_[i] == t)
        return levels_[i];
    detail::gm_fail("grid_levels", "model time t = " + detail::gm_format(t) +
                                       " is not one of the grid's model times (a solver on another grid?)");
  }

  /// The number of distinct model times.
  [[nodiscard]] std::size_t size() const noexcept { return times_.size(); }

 private:
  void add(double t, level l) {
    for (std::size_t i = 0; i < times_.size(); ++i) {
      if (times_[i] != t)
        continue;
      if (levels_[i].alpha != l.alpha || levels_[i].sigma != l.sigma)
        detail::gm_fail("grid_levels",
                        "model time t = " + detail::gm_format(t) + " appears twice with different levels");
      return;
    }
    times_.push_back(t);
    levels_.push_back(l);
  }

  std::vector<double> times_;
  std::vector<level> levels_;
};

/// Something that maps a model time to a level: `level_of(t)` returns a skipstep::level (grid_levels, or e.g.
/// `[&](double t) { return level::from_alpha_cumprod(schedule.alpha_cumprod(std::size_t(t))); }`).
template <class F>
concept LevelMap = std::copy_constructible<F> && std::invocable<const F&, double> &&
    std::convertible_to<std::invoke_result_t<const F&, double>, level>;

/// The exact oracle as a skipstep predictor `f(x, t, out)` taking a double model time (takes_fractional_time
/// is true: it declares `time_type = double`): out = the mixture's `target` prediction (ε*, x0*, v* or the
/// flow velocity u*, see gaussian_mixture::predict_at_level) at level `level_of(t)`, for every row of x (N×D,
/// double). Give it the prediction type the sampler is built with:
///   mixture_predictor oracle(g, grid_levels::vp(grid), prediction_type::epsilon);
///   euler_sampler(grid).sample(oracle, x);                              // any σ-grid solver
///   mixture_predictor flow(g, grid_levels::flow(fgrid), prediction_type::flow);
///   flow_euler_sampler(fgrid).sample(flow, x);
/// The call operator uses a workspace owned by the predictor (allocated once here, so sampling does not
/// allocate) and is not for concurrent calls on one object; `evaluate` with the caller's workspace is const
/// and thread-safe (split rows over threads with it). The mixture must outlive the predictor.
template <LevelMap LevelOf>
class mixture_predictor {
 public:
  using time_type = double;  ///< the sampler passes fractional model times (skipstep::takes_fractional_time).

  /// Throws std::invalid_argument if `target` is not a prediction_type value.
  mixture_predictor(const gaussian_mixture& mixture, LevelOf level_of, prediction_type target)
      : mixture_(&mixture),
        level_of_(std::move(level_of)),
        target_(target),
        workspace_(mixture.workspace_size()) {
    switch (target) {
      case prediction_type::epsilon:
      case prediction_type::sample:
      case prediction_type::v:
      case prediction_type::flow:
        return;
    }
    detail::gm_fail("mixture_predictor", "target must be a prediction_type value (got " +
                                             std::to_string(static_cast<int>(target)) + ")");
  }

  /// The level model time t maps to.
  [[nodiscard]] level level_at(double t) const { return static_cast<level>(level_of_(t)); }
  /// What the predictor outputs.
  [[nodiscard]] prediction_type target() const noexcept { return target_; }
  /// The mixture.
  [[nodiscard]] const gaussian_mixture& mixture() const noexcept { return *mixture_; }

  /// out = target prediction at level_of(t) for the rows of x (x.size() a multiple of D, out the same size;
  /// out may be x), with the caller's workspace (≥ mixture().workspace_size() doubles):
  /// gaussian_mixture::predict_batch.
  void evaluate(std::span<const double> x, double t, std::span<double> out,
                std::span<double> workspace) const {
    const std::size_t dim = mixture_->dim();
    if (x.size() % dim != 0)
      detail::gm_fail("mixture_predictor", "x must hold whole rows of dim() = " + std::to_string(dim) +
                                               " elements (got " + std::to_string(x.size()) + ")");
    mixture_->predict_batch(x, x.size() / dim, level_at(t), target_, out, workspace);
  }

  /// The sampler's call: `evaluate` on all of x with the predictor's own workspace.
  template <ReadableTensor X>
  void operator()(const X& x, double t, std::span<double> out) {
    static_assert(
        std::same_as<tensor_value_t<X>, double>,
        "skipstep::testing::mixture_predictor: the oracle computes in double; sample double tensors");
    evaluate(elements(x), t, out, workspace_);
  }

 private:
  const gaussian_mixture* mixture_;
  LevelOf level_of_;
  prediction_type target_;
  std::vector<double> workspace_;
};

}  // namespace skipstep::testing
