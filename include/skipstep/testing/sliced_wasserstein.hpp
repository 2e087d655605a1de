/// @file
/// @brief The "within-component whitened sliced Wasserstein-2 distance" (wsw) the demo measures, and an
/// accurate Φ⁻¹.
///
/// wsw compares samples with a known diagonal Gaussian mixture (skipstep::testing::gaussian_mixture):
///  1. assign each sample x to its most likely clean component k = argmax_k log w_k − ½Σ_d((x_d−μ_kd)/s_kd)²
///  − Σ_d log s_kd;
///  2. whiten z = (x − μ_k)/s_k (so a perfect sample set gives z ~ N(0, I) within each component, up to the
///  small
///     truncation caused by misassigned tails — part of the metric's noise floor);
///  3. for each component with n_k samples and each unit direction u, compare the sorted projections with the
///     standard normal quantiles: W_k(u)² = (1/n_k) Σ_i (sort(z·u)_i − Φ⁻¹((i−½)/n_k))²;
///  4. wsw² = Σ_k w_k · mean_u W_k(u)², and wsw = √wsw².
/// Directions: D = 1: the single direction u = 1. D = 2: 64 equispaced angles θ_j = π·j/64, j = 0..63, i.e.
/// equispaced over the half circle (u and −u give the same W2, so the full circle would count each twice).
/// D > 2: 128 random unit vectors, normalised standard normal vectors drawn from std::mt19937_64(seed) with
/// Box–Muller (reproducible across standard libraries).
/// Empty components (n_k = 0, mode dropped) contribute the penalty w_k · 1: W2² between a point mass at the
/// component's centre and N(0, 1), the limit of any collapse onto the mean. Dropping a mode therefore always
/// costs at least w_k in wsw², instead of disappearing from the average (skip-and-renormalise would hide it).
/// Source: the demo's metric (README, "The demo"); sliced Wasserstein: Rabin, Peyré, Delon & Bernot 2011.
#pragma once

#include "skipstep/testing/gaussian_mixture.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace skipstep::testing {

/// Default seed of the random directions used for D > 2 (fixed so the metric is a deterministic function of
/// the samples).
inline constexpr std::uint64_t wsw_default_seed = 20240604;
/// Number of directions for D = 2 (equispaced over the half circle).
inline constexpr std::size_t wsw_directions_2d = 64;
/// Number of random directions for D > 2.
inline constexpr std::size_t wsw_directions_nd = 128;
/// Contribution to wsw² (per unit weight) of a component with no samples assigned.
inline constexpr double wsw_empty_component_penalty = 1.0;

/// Φ⁻¹(p), the standard normal quantile, for p ∈ [0, 1] (Φ⁻¹(0) = −∞, Φ⁻¹(1) = +∞).
/// Acklam's rational approximation (relative error < 1.15e-9; P. J. Acklam, "An algorithm for computing the
/// inverse normal cumulative distribution function", 2003) followed by one Halley step on Φ(x) − p with Φ(x)
/// = ½·erfc(−x/√2) (std::erfc), which brings it to ~1e-15 relative. The refinement is always done in the
/// lower tail (p > ½ uses Φ⁻¹(p) = −Φ⁻¹(1 − p), 1 − p being exact there) where erfc is relatively accurate.
/// Throws std::domain_error for p ∉ [0, 1] or NaN.
inline double inverse_normal_cdf(double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw std::domain_error("skipstep::testing::inverse_normal_cdf: p must be in [0, 1] (got " +
                            detail::gm_format(p) + ")");
  }
  if (p == 0.0)
    return -std::numeric_limits<double>::infinity();
  if (p == 1.0)
    return std::numeric_limits<double>::infinity();
  if (p > 0.5)
    return -inverse_normal_cdf(1.0 - p);  // exact by Sterbenz; recursion depth 1
  if (p == 0.5)
    return 0.0;

  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                                 1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                 6.680131188771972e+01, -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                 -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                 3.754408661907416e+00};
  constexpr double p_low = 0.02425;

  double x;
  if (p < p_low) {
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  // One Halley step: e = Φ(x) − p, u = e/φ(x); x ← x − u/(1 + x·u/2).
  const double e = 0.5 * std::erfc(-x / std::numbers::sqrt2) - p;
  const double u = e * std::sqrt(2.0 * std::numbers::pi) * std::exp(0.5 * x * x);
  if (std::isfinite(u))
    x -= u / (1.0 + 0.5 * x * u);  // u overflows only for p below ~1e-300
  return x;
}

/// The unit directions wsw uses for dimension `dim` (row-major M×dim; M = 1, 64 or 128 for dim = 1, 2, > 2;
/// see the file comment). Deterministic in (dim, seed); `seed` is ignored for dim ≤ 2. Throws if dim = 0.
inline std::vector<double> wsw_directions(std::size_t dim, std::uint64_t seed = wsw_default_seed) {
  if (dim == 0)
    throw std::invalid_argument("skipstep::testing::wsw_directions: dim must be >= 1 (got 0)");
  if (dim == 1)
    return {1.0};
  if (dim == 2) {
    std::vector<double> u(2 * wsw_directions_2d);
    for (std::size_t j = 0; j < wsw_directions_2d; ++j) {
      const double th = std::numbers::pi * static_cast<double>(j) / static_cast<double>(wsw_directions_2d);
      u[2 * j] = std::cos(th);
      u[2 * j + 1] = std::sin(th);
    }
    return u;
  }
  std::mt19937_64 gen(seed);
  std::vector<double> u(detail::gm_checked_product("wsw_directions", dim, "dim", wsw_directions_nd,
                                                   "wsw_directions_nd (128)"));  // must not wrap around
  for (auto row_start = u.begin(); row_start != u.end(); row_start += static_cast<std::ptrdiff_t>(dim)) {
    double* row = &*row_start;
    double norm2 = 0.0;
    do {
      norm2 = 0.0;
      for (std::size_t i = 0; i < dim; i += 2) {
        const double u1 = detail::gm_open_uniform(gen());
        const double u2 = detail::gm_open_uniform(gen());
        const auto [z0, z1] = detail::gm_box_muller(u1, u2);
        row[i] = z0;
        if (i + 1 < dim)
          row[i + 1] = z1;
      }
      for (std::size_t i = 0; i < dim; ++i)
        norm2 += row[i] * row[i];
    } while (!(norm2 > 1e-300));  // practically never loops
    const double inv = 1.0 / std::sqrt(norm2);
    for (std::size_t i = 0; i < dim; ++i)
      row[i] *= inv;
  }
  return u;
}

/// Everything wsw computes, for reports and debugging.
struct wsw_report {
  double wsw = 0.0;                  ///< the metric (√wsw²); +∞ if any sample is non-finite
  double wsw_squared = 0.0;          ///< Σ_k w_k · w2sq[k]
  std::vector<std::size_t> counts;   ///< n_k, samples assigned to component k
  std::vector<double> w2sq;          ///< mean over directions of W_k(u)² (the penalty if n_k = 0)
  std::size_t num_directions = 0;    ///< 1, 64 or 128
  std::size_t empty_components = 0;  ///< components with n_k = 0
  std::size_t nonfinite_samples =
      0;  ///< rows containing NaN or ±∞ (then wsw = +∞ and nothing else is computed)
};

/// The full wsw computation (see the file comment for the definition). `samples` is N×D row-major with
/// D = mixture.dim(), N ≥ 1. `seed` selects the random directions for D > 2. Non-finite samples make the
/// result +∞ (a diverged sampler should score as infinitely bad, not throw). Cost: O(N·D·M + M·N log N), M
/// directions. Throws std::invalid_argument if N = 0 or samples.size() ≠ N·D.
inline wsw_report whitened_sliced_w2_report(const gaussian_mixture& mixture, std::span<const double> samples,
                                            std::size_t n, std::uint64_t seed = wsw_default_seed) {
  const std::size_t D = mixture.dim(), K = mixture.num_components();
  if (n == 0)
    throw std::invalid_argument("skipstep::testing::whitened_sliced_w2: n must be >= 1 (got 0)");
  const std::size_t elements = detail::gm_row_elements("whitened_sliced_w2", n, D);
  if (samples.size() != elements) {
    throw std::invalid_argument(
        "skipstep::testing::whitened_sliced_w2: samples must have n*dim() = " + std::to_string(elements) +
        " elements (got " + std::to_string(samples.size()) + ")");
  }
  wsw_report rep;
  rep.counts.assign(K, 0);
  rep.w2sq.assign(K, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto r = samples.subspan(i * D, D);
    if (!std::all_of(r.begin(), r.end(), [](double v) { return std::isfinite(v); }))
      ++rep.nonfinite_samples;
  }
  const std::vector<double> dirs = wsw_directions(D, seed);
  rep.num_directions = dirs.size() / D;
  if (rep.nonfinite_samples > 0) {
    rep.wsw = rep.wsw_squared = std::numeric_limits<double>::infinity();
    return rep;
  }

  // Assign and whiten, grouped by component (counting sort keeps the original order within a component).
  std::vector<std::size_t> label(n);
  for (std::size_t i = 0; i < n; ++i) {
    label[i] = mixture.most_likely_component(samples.subspan(i * D, D));
    ++rep.counts[label[i]];
  }
  std::vector<std::size_t> start(K + 1, 0);
  for (std::size_t k = 0; k < K; ++k)
    start[k + 1] = start[k] + rep.counts[k];
  std::vector<double> z(n * D);
  {
    std::vector<std::size_t> next(start.begin(), start.end() - 1);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = label[i];
      const auto mu = mixture.mean(k);
      const auto s = mixture.stddev(k);
      double* zr = z.data() + (next[k]++) * D;
      for (std::size_t d = 0; d < D; ++d)
        zr[d] = (samples[i * D + d] - mu[d]) / s[d];
    }
  }

  std::vector<double> proj, quant;
  for (std::size_t k = 0; k < K; ++k) {
    const std::size_t nk = rep.counts[k];
    if (nk == 0) {
      rep.w2sq[k] = wsw_empty_component_penalty;
      ++rep.empty_components;
      continue;
    }
    quant.resize(nk);
    for (std::size_t i = 0; i < nk; ++i) {
      quant[i] = inverse_normal_cdf((static_cast<double>(i) + 0.5) / static_cast<double>(nk));
    }
    proj.resize(nk);
    const double* zk = z.data() + start[k] * D;
    double total = 0.0;
    for (std::size_t j = 0; j < rep.num_directions; ++j) {
      const double* u = dirs.data() + j * D;
      double* pr = proj.data();  // raw pointers: keeps unoptimised (Debug) builds fast enough for tests
      const double* qu = quant.data();
      for (std::size_t i = 0; i < nk; ++i) {
        const double* zi = zk + i * D;
        double p = 0.0;
        for (std::size_t d = 0; d < D; ++d)
          p += zi[d] * u[d];
        pr[i] = p;
      }
      std::sort(pr, pr + nk);
      double acc = 0.0;
      for (std::size_t i = 0; i < nk; ++i) {
        const double e = pr[i] - qu[i];
        acc += e * e;
      }
      total += acc / static_cast<double>(nk);
    }
    rep.w2sq[k] = total / static_cast<double>(rep.num_directions);
  }
  for (std::size_t k = 0; k < K; ++k)
    rep.wsw_squared += mixture.weight(k) * rep.w2sq[k];
  rep.wsw = std::sqrt(rep.wsw_squared);
  return rep;
}

/// wsw, the within-component whitened sliced Wasserstein-2 distance of `samples` (N×D row-major) to
/// `mixture`: √(Σ_k w_k · mean_{u, i}(sort(z·u)_i − Φ⁻¹((i−½)/n_k))²). See whitened_sliced_w2_report.
inline double whitened_sliced_w2(const gaussian_mixture& mixture, std::span<const double> samples,
                                 std::size_t n, std::uint64_t seed = wsw_default_seed) {
  return whitened_sliced_w2_report(mixture, samples, n, seed).wsw;
}

}  // namespace skipstep::testing
