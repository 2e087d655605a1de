/// @file
/// @brief A diagonal Gaussian mixture with its **exact** noise predictor, a test oracle for samplers.
///
/// For data x0 ~ Σ_k w_k N(μ_k, diag(s_k²)) and the variance-preserving forward process
/// x_t = √ā_t·x0 + √(1−ā_t)·ε, the marginal p_t is again a Gaussian mixture:
///   p_t(x) = Σ_k w_k N(x; √a·μ_k, diag(v_k)),   v_kd = a·s_kd² + 1 − a,   a = ā_t.
/// The optimal (MMSE) noise predictor ε*(x, t) = E[ε | x_t = x] = (x − √a·E[x0|x_t]) / √(1−a)
/// = −√(1−a)·∇_x log p_t(x) (Tweedie's formula) is therefore closed form:
///   log r_k = log w_k − ½ Σ_d [(x_d − √a·μ_kd)²/v_kd + log v_kd]   (normalised with log-sum-exp),
///   ε*_d    = √(1−a) Σ_k r_k (x_d − √a·μ_kd)/v_kd.
/// Source: Tweedie's formula as used in Song et al. 2021 (score SDE) and Kadkhodaie & Simoncelli 2021; the
/// data sets `ring2d` and `aniso16d` are those of the demo (README, "The demo").
///
/// The class is independent of the rest of skipstep (standard library only). It works in terms of ā
/// directly: `epsilon_at_alpha(x, a, out)` is the core, and a sampler predictor `f(x, t, out)` is obtained by
/// looking up a = alphas_cumprod[t] and calling `epsilon_batch` (that wiring lives with the sampler/demo
/// code).
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
    std::array<double, max_components> lr{};
    const double mx = log_responsibilities(x_row.data(), alpha_bar, lr.data());
    double sum = 0.0;
    for (std::size_t k = 0; k < k_; ++k)
      sum += std::exp(lr[k] - mx);
    return mx + std::log(sum) - 0.5 * static_cast<double>(dim_) * std::log(2.0 * std::numbers::pi);
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

  /// lr[k] = log w_k − ½Σ_d((x_d − √a·μ_kd)²/v_kd + log v_kd); returns max_k lr[k].
  double log_responsibilities(const double* x, double a, double* lr) const noexcept {
    const double om = 1.0 - a, sa = std::sqrt(a);
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < k_; ++k) {
      double q = 0.0, logv = 0.0;
      for (std::size_t d = 0; d < dim_; ++d) {
        const std::size_t i = k * dim_ + d;
        const double v = a * s2_[i] + om;
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
    const double mx = log_responsibilities(x, a, r.data());
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
};

}  // namespace skipstep::testing
