// The trained-network table's metric (examples/fashion_mnist/metric.cpp): FID against closed forms, KID against a
// direct double loop, point masses and its unbiasedness. Built when Eigen is found (the file is the example's own).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

#include "../../examples/fashion_mnist/metric.hpp"
#include "check_error.hpp"

namespace fm = fashion_mnist;

namespace {

std::vector<double> normal_rows(std::size_t n, std::size_t d, std::uint64_t seed, double shift = 0.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<double> x(n * d);
  for (double& v : x) v = z(g) + shift;
  return x;
}

/// KID written out as its definition, one pair at a time (Gretton et al. 2012, eq. 3).
double kid_direct(const std::vector<double>& x, std::size_t m, const std::vector<double>& y, std::size_t n,
                  std::size_t d, double gamma) {
  auto row = [d](const std::vector<double>& a, std::size_t i) { return std::span<const double>(a.data() + i * d, d); };
  double xx = 0.0, yy = 0.0, xy = 0.0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < m; ++j)
      if (i != j) xx += fm::kid_kernel(row(x, i), row(x, j), gamma);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      if (i != j) yy += fm::kid_kernel(row(y, i), row(y, j), gamma);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) xy += fm::kid_kernel(row(x, i), row(y, j), gamma);
  const double dm = double(m), dn = double(n);
  return xx / (dm * (dm - 1)) + yy / (dn * (dn - 1)) - 2.0 * xy / (dm * dn);
}

}  // namespace

TEST_CASE("fit: the sample mean and the n - 1 covariance", "[metric]") {
  // Rows (0, 0), (2, 0), (0, 4), (2, 4): mean (1, 2); variances 4/3 and 16/3, covariance 0.
  const std::vector<double> x{0, 0, 2, 0, 0, 4, 2, 4};
  const fm::gaussian_fit g = fm::fit(x, 4, 2);
  CHECK(g.mean(0) == 1.0);
  CHECK(g.mean(1) == 2.0);
  CHECK(g.cov(0, 0) == Approx(4.0 / 3.0).epsilon(1e-15));
  CHECK(g.cov(1, 1) == Approx(16.0 / 3.0).epsilon(1e-15));
  CHECK(g.cov(0, 1) == 0.0);
}

TEST_CASE("frechet_distance: the closed form for covariances with one eigenbasis", "[metric]") {
  // Σ₁ = Q diag(a) Qᵀ, Σ₂ = Q diag(b) Qᵀ commute: FID = ‖μ₁ − μ₂‖² + Σ_k (√a_k − √b_k)².
  const double c = std::cos(0.7), s = std::sin(0.7);
  Eigen::Matrix3d q;
  q << c, -s, 0, s, c, 0, 0, 0, 1;
  const Eigen::Vector3d a(0.5, 2.0, 9.0), b(4.0, 0.25, 1.0);
  fm::gaussian_fit p{Eigen::Vector3d(1, -2, 0.5), q * a.asDiagonal() * q.transpose()};
  fm::gaussian_fit r{Eigen::Vector3d(0, 1, 0.5), q * b.asDiagonal() * q.transpose()};
  double expected = (p.mean - r.mean).squaredNorm();
  for (int k = 0; k < 3; ++k) expected += std::pow(std::sqrt(a(k)) - std::sqrt(b(k)), 2);
  CHECK(fm::frechet_distance(p, r) == Approx(expected).epsilon(1e-12));
  CHECK(fm::frechet_distance(r, p) == Approx(expected).epsilon(1e-12));
  CHECK(std::abs(fm::frechet_distance(p, p)) < 1e-12);
}

TEST_CASE("kernel_inception_distance: equals its definition evaluated pair by pair", "[metric]") {
  // n = 1100 reference rows: more than one 512-row block of the blocked sums, and a partial last block.
  const std::size_t d = 7, m = 37, n = 1100;
  const std::vector<double> x = normal_rows(m, d, 11, 0.3), y = normal_rows(n, d, 12);
  const fm::kid_reference ref = fm::make_kid_reference(y, n, d);
  // γ = 1 / mean ‖y_i‖², checked against its own definition.
  double square_norms = 0.0;
  for (double v : y) square_norms += v * v;
  CHECK(ref.gamma == Approx(double(n) / square_norms).epsilon(1e-13));
  const double kid = fm::kernel_inception_distance(x, m, ref);
  const double direct = kid_direct(x, m, y, n, d, ref.gamma);
  // Each sum holds up to n² terms of size O(1): its rounding is ~n·ε relative to the terms' scale, not to the
  // (smaller) difference; 1e-9 absolute is ~10⁴ times that bound for terms of order 1.
  CHECK(kid == Approx(direct).margin(1e-9));
  CHECK(kid > 0.0);  // a shift of 0.3 in every coordinate is far beyond this sample's noise
}

TEST_CASE("kernel_inception_distance: point masses give k(a,a) + k(b,b) - 2 k(a,b)", "[metric]") {
  const std::vector<double> a{0.5, -1.0, 2.0}, b{1.5, 0.0, -0.5};
  std::vector<double> x, y;
  for (int i = 0; i < 3; ++i) x.insert(x.end(), a.begin(), a.end());
  for (int i = 0; i < 4; ++i) y.insert(y.end(), b.begin(), b.end());
  const fm::kid_reference ref = fm::make_kid_reference(y, 4, 3);
  CHECK(ref.gamma == Approx(1.0 / 2.5).epsilon(1e-15));  // every reference row is b, ‖b‖² = 2.25 + 0.25
  const double g = ref.gamma;
  const double expected = fm::kid_kernel(a, a, g) + fm::kid_kernel(b, b, g) - 2.0 * fm::kid_kernel(a, b, g);
  CHECK(fm::kernel_inception_distance(x, 3, ref) == Approx(expected).epsilon(1e-13));
  // (γ aᵀb + 1)³ with aᵀb = 0.75 - 1 = -0.25: (1 - 0.1)³.
  CHECK(fm::kid_kernel(a, b, g) == Approx(std::pow(0.9, 3)).epsilon(1e-15));
}

TEST_CASE("kernel_inception_distance: unbiased for equal distributions, unlike FID", "[metric]") {
  // 400 independent pairs of 16-row samples from N(0, I₄). KID's mean must be 0 within 4 standard errors; FID's
  // is O(d / N) above 0 (here ≈ 1.2), which the same test distinguishes. Including the diagonal i = j in KID's
  // within-set sums (the biased V-statistic) shifts its mean by ≈ (E k(x,x) − E k(x,y)) (1/m + 1/n): 1.25 here,
  // ~45 standard errors (measured by that mutation).
  const std::size_t d = 4, m = 16, reps = 400;
  double sum = 0.0, sum2 = 0.0, fid_sum = 0.0;
  for (std::size_t r = 0; r < reps; ++r) {
    const std::vector<double> x = normal_rows(m, d, 1000 + 2 * r), y = normal_rows(m, d, 1001 + 2 * r);
    const double kid = fm::kernel_inception_distance(x, m, fm::make_kid_reference(y, m, d));
    sum += kid;
    sum2 += kid * kid;
    fid_sum += fm::frechet_distance(fm::fit(x, m, d), fm::fit(y, m, d));
  }
  const double mean = sum / reps, se = std::sqrt((sum2 / reps - mean * mean) / (reps - 1));
  INFO("KID mean " << mean << " ± " << se << " (standard error); FID mean " << fid_sum / reps);
  CHECK(std::abs(mean) < 4.0 * se);
  CHECK(fid_sum / reps > 20.0 * se);
}

TEST_CASE("metric: too few rows or mismatched sizes are refused by name", "[metric][errors]") {
  const std::vector<double> one{1.0, 2.0};
  CHECK_ERROR((void)fm::fit(one, 1, 2), std::invalid_argument, "fashion_mnist::fit", "n = 1", "elements = 2");
  CHECK_ERROR((void)fm::make_kid_reference(one, 2, 2), std::invalid_argument, "fashion_mnist::make_kid_reference",
              "n = 2", "elements = 2");
  const std::vector<double> y = normal_rows(4, 2, 1);
  const fm::kid_reference ref = fm::make_kid_reference(y, 4, 2);
  CHECK_ERROR((void)fm::kernel_inception_distance(one, 1, ref), std::invalid_argument,
              "fashion_mnist::kernel_inception_distance", "n = 1", "d = 2");
  CHECK_ERROR((void)fm::kid_kernel(one, std::vector<double>{1.0}, 1.0), std::invalid_argument,
              "fashion_mnist::kid_kernel", "2", "1");
  CHECK_ERROR((void)fm::kid_kernel(one, one, 0.0), std::invalid_argument, "fashion_mnist::kid_kernel", "gamma",
              "gamma = 0");
  const std::vector<double> zeros(6, 0.0);
  CHECK_ERROR((void)fm::make_kid_reference(zeros, 3, 2), std::invalid_argument, "fashion_mnist::make_kid_reference",
              "mean squared norm", "= 0");
}
