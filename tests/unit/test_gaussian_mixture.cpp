// Tests of skipstep/testing/gaussian_mixture.hpp (the exact noise predictor of issue 4) and
// skipstep/testing/sliced_wasserstein.hpp (the wsw metric and Φ⁻¹).
// Every expected value comes from an independent computation: finite differences of log p_t, the
// single-Gaussian closed form, naive density sums, bisection on std::erfc, or configurations whose W2 is
// known analytically.
#include "skipstep/testing/gaussian_mixture.hpp"
#include "skipstep/testing/sliced_wasserstein.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>
#include <vector>

using skipstep::testing::gaussian_mixture;

namespace {

constexpr double kAlphas[] = {0.001, 0.1, 0.5, 0.9, 0.999};

double max_abs(std::span<const double> v) {
  double m = 0.0;
  for (double x : v)
    m = std::max(m, std::abs(x));
  return m;
}

double max_abs_diff(std::span<const double> a, std::span<const double> b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// log N(x; √a·μ_k, diag(a·s_k² + 1 − a)) written out independently of the class internals.
double component_log_pdf(const gaussian_mixture& g, std::size_t k, std::span<const double> x, double a) {
  const auto mu = g.mean(k);
  const auto s = g.stddev(k);
  double lp = 0.0;
  for (std::size_t d = 0; d < g.dim(); ++d) {
    const double v = a * s[d] * s[d] + (1.0 - a);
    const double e = x[d] - std::sqrt(a) * mu[d];
    lp += -0.5 * e * e / v - 0.5 * std::log(2.0 * std::numbers::pi * v);
  }
  return lp;
}

// 4th-order central difference (5-point stencil) of log_density: error O(h⁴) so that the sharp responsibility
// transitions between components at a → 1 are resolved too.
std::vector<double> fd_gradient(const gaussian_mixture& g, std::vector<double> x, double a, double h) {
  std::vector<double> grad(x.size());
  for (std::size_t d = 0; d < x.size(); ++d) {
    const double x0 = x[d];
    auto f = [&](double dx) {
      x[d] = x0 + dx;
      const double r = g.log_density(x, a);
      x[d] = x0;
      return r;
    };
    grad[d] = (f(-2 * h) - 8 * f(-h) + 8 * f(h) - f(2 * h)) / (12 * h);
  }
  return grad;
}

// Test points at noise level a: x_t = √a·x0 + √(1−a)·n for true x0, plus points on the segment between two
// noised component means where the two responsibilities are equal (the hardest place for the mixture
// weighting).
std::vector<std::vector<double>> test_points(const gaussian_mixture& g, double a, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  const std::size_t D = g.dim();
  std::vector<std::vector<double>> pts;
  const auto x0 = g.sample(gen, 6);
  for (std::size_t i = 0; i < 6; ++i) {
    std::vector<double> x(D);
    for (std::size_t d = 0; d < D; ++d)
      x[d] = std::sqrt(a) * x0[i * D + d] + std::sqrt(1 - a) * normal(gen);
    pts.push_back(x);
  }
  for (std::size_t k = 0; k + 1 < g.num_components() && k < 3; ++k) {
    auto at = [&](double t) {
      std::vector<double> x(D);
      for (std::size_t d = 0; d < D; ++d)
        x[d] = std::sqrt(a) * ((1 - t) * g.mean(k)[d] + t * g.mean(k + 1)[d]);
      return x;
    };
    auto diff = [&](double t) {
      const auto x = at(t);
      return std::log(g.weight(k)) + component_log_pdf(g, k, x, a) - std::log(g.weight(k + 1)) -
             component_log_pdf(g, k + 1, x, a);
    };
    double lo = 0.0, hi = 1.0;  // diff(lo) > 0 > diff(hi)
    for (int it = 0; it < 200 && diff(lo) > 0 && diff(hi) < 0; ++it) {
      const double mid = 0.5 * (lo + hi);
      (diff(mid) > 0 ? lo : hi) = mid;
    }
    pts.push_back(at(0.5 * (lo + hi)));
  }
  return pts;
}

// Both data sets of issue 4 have Σ_d log s_kd equal for every k (aniso16d's stds are a permutation of the
// same 16 values in each component), so the −½Σ log v_kd term cancels in the responsibilities. This small
// mixture has unequal std products, unequal weights and overlapping components, so that term and the weights
// matter.
gaussian_mixture hetero() {
  return gaussian_mixture({{0.0, 0.5, -0.2}, {0.4, 0.1, 0.3}, {-0.3, -0.2, 0.0}},
                          {{0.05, 0.2, 0.1}, {0.3, 0.4, 0.15}, {0.02, 0.08, 0.5}}, {1.0, 2.0, 0.5});
}

}  // namespace

TEST_CASE("gaussian_mixture: factories match the data sets of issue 4", "[gaussian_mixture]") {
  const auto ring = gaussian_mixture::ring2d();
  REQUIRE(ring.dim() == 2);
  REQUIRE(ring.num_components() == 8);
  for (std::size_t k = 0; k < 8; ++k) {
    const double ang = 2 * std::numbers::pi * static_cast<double>(k) / 8;
    CHECK(ring.mean(k)[0] == Approx(std::cos(ang)).margin(1e-15));
    CHECK(ring.mean(k)[1] == Approx(std::sin(ang)).margin(1e-15));
    CHECK(ring.stddev(k)[0] == 0.05);
    CHECK(ring.stddev(k)[1] == 0.05);
    CHECK(ring.weight(k) == Approx(0.125).epsilon(1e-15));
  }
  const auto an = gaussian_mixture::aniso16d();
  REQUIRE(an.dim() == 16);
  REQUIRE(an.num_components() == 4);
  const double w[] = {0.1, 0.2, 0.3, 0.4};
  for (std::size_t k = 0; k < 4; ++k) {
    CHECK(an.weight(k) == Approx(w[k]).epsilon(1e-15));
    for (std::size_t d = 0; d < 16; ++d) {
      const double kk = static_cast<double>(k), dd = static_cast<double>(d);
      CHECK(an.mean(k)[d] ==
            Approx(0.5 * std::cos(std::numbers::pi * (kk + 1) * (2 * dd + 1) / 32)).margin(1e-15));
      const double e = std::fmod(dd + 5 * kk, 16.0) / 15.0;
      CHECK(an.stddev(k)[d] == Approx(0.03 * std::pow(10.0, e)).epsilon(1e-15));
    }
  }
  // spot values: s_00 = 0.03, s_0,15 = 0.3, s_1,11 = 0.03 ((11 + 5) mod 16 = 0)
  CHECK(an.stddev(0)[15] == Approx(0.3).epsilon(1e-15));
  CHECK(an.stddev(1)[11] == Approx(0.03).epsilon(1e-15));
}

TEST_CASE("gaussian_mixture: log_density equals a naive sum of Gaussian densities", "[gaussian_mixture]") {
  for (const auto& g : {gaussian_mixture::ring2d(), gaussian_mixture::aniso16d(), hetero()}) {
    for (double a : {0.0, 0.3, 0.9, 0.999, 1.0}) {
      for (const auto& x : test_points(g, a, 7)) {
        long double p =
            0.0L;  // direct Σ_k w_k Π_d φ(...), no log-sum-exp (the points keep it from underflowing)
        for (std::size_t k = 0; k < g.num_components(); ++k) {
          long double c = g.weight(k);
          for (std::size_t d = 0; d < g.dim(); ++d) {
            const long double v = static_cast<long double>(a) * g.stddev(k)[d] * g.stddev(k)[d] + (1.0L - a);
            const long double e = x[d] - std::sqrt(static_cast<long double>(a)) * g.mean(k)[d];
            c *= std::exp(-0.5L * e * e / v) / std::sqrt(2.0L * std::numbers::pi_v<long double> * v);
          }
          p += c;
        }
        REQUIRE(p > 0.0L);
        CHECK(g.log_density(x, a) == Approx(static_cast<double>(std::log(p))).epsilon(1e-12).margin(1e-12));
      }
    }
  }
}

TEST_CASE("gaussian_mixture: epsilon = -sqrt(1-a) * grad log p_t (finite differences)",
          "[gaussian_mixture]") {
  for (const auto& g : {gaussian_mixture::ring2d(), gaussian_mixture::aniso16d(), hetero()}) {
    double vmin = 1.0;
    for (std::size_t k = 0; k < g.num_components(); ++k)
      for (double s : g.stddev(k))
        vmin = std::min(vmin, s * s);
    for (double a : kAlphas) {
      // step 1e-4 × the narrowest noised component std √(a·s_min² + 1 − a) (≈ 4e-6 … 1e-4)
      const double h = 1e-4 * std::sqrt(a * vmin + 1 - a);
      for (const auto& x : test_points(g, a, 42)) {
        std::vector<double> eps(g.dim());
        g.epsilon_at_alpha(x, a, eps);
        auto fd = fd_gradient(g, x, a, h);
        for (double& v : fd)
          v *= -std::sqrt(1 - a);
        const double err = max_abs_diff(eps, fd);
        INFO("D = " << g.dim() << ", a = " << a << ", |eps|_inf = " << max_abs(eps) << ", err = " << err);
        CHECK(err <=
              1e-8 * std::max(1.0, max_abs(eps)));  // measured < 1e-9 (tighter than the 1e-6 asked for)
      }
    }
  }
}

TEST_CASE("gaussian_mixture: a = 0 gives epsilon = x exactly, a = 1 gives 0", "[gaussian_mixture]") {
  const auto g = gaussian_mixture::aniso16d();
  std::mt19937_64 gen(3);
  const auto x = g.sample(gen, 5);
  std::vector<double> out(x.size(), -1.0), ws(g.workspace_size());
  g.epsilon_batch(x, 5, 0.0, out);
  CHECK(out == x);
  std::fill(out.begin(), out.end(), -1.0);
  g.epsilon_batch(x, 5, 0.0, out, ws);
  CHECK(out == x);
  std::vector<double> row(x.begin(), x.begin() + 16), r(16);
  g.epsilon_at_alpha(row, 0.0, r);
  CHECK(r == row);
  // a = 1: √(1−a) = 0, so ε* = 0 (finite) — the limit of the closed form
  g.epsilon_at_alpha(row, 1.0, r);
  for (double v : r)
    CHECK(v == 0.0);
  g.epsilon_batch(x, 5, 1.0, out, ws);
  for (double v : out)
    CHECK(v == 0.0);
  // a just below 1: finite and small (≈ √(1−a)·(x−μ_k)/s_k², |x−μ_k| ≲ 4 s_k ⇒ |ε| ≲ 1e-6·4/0.03)
  const double a = 1 - 1e-12;
  g.epsilon_at_alpha(row, a, r);
  for (double v : r) {
    CHECK(std::isfinite(v));
    CHECK(std::abs(v) < 2e-4);
  }
}

TEST_CASE("gaussian_mixture: one component matches the Gaussian closed form", "[gaussian_mixture]") {
  const std::vector<double> mu = {0.3, -1.2, 2.0}, s = {0.1, 1.0, 3.0};
  const gaussian_mixture g(3, mu, s, {2.5});  // weight normalised to 1
  CHECK(g.weight(0) == 1.0);
  std::mt19937_64 gen(11);
  std::normal_distribution<double> normal(0.0, 2.0);
  for (double a : {0.0, 1e-6, 0.001, 0.1, 0.5, 0.9, 0.999, 1 - 1e-9, 1.0}) {
    for (int rep = 0; rep < 5; ++rep) {
      std::vector<double> x(3), eps(3);
      for (double& v : x)
        v = normal(gen);
      g.epsilon_at_alpha(x, a, eps);
      double logp = 0.0;
      for (std::size_t d = 0; d < 3; ++d) {
        const double v = a * s[d] * s[d] + 1 - a;
        const double expect = std::sqrt(1 - a) * (x[d] - std::sqrt(a) * mu[d]) / v;
        CHECK(eps[d] == Approx(expect).epsilon(1e-14).margin(1e-300));
        logp +=
            -0.5 * std::pow(x[d] - std::sqrt(a) * mu[d], 2) / v - 0.5 * std::log(2 * std::numbers::pi * v);
      }
      CHECK(g.log_density(x, a) == Approx(logp).epsilon(1e-14));
    }
  }
}

TEST_CASE("gaussian_mixture: batched forms equal the per-row form", "[gaussian_mixture]") {
  for (const auto& g : {gaussian_mixture::ring2d(), gaussian_mixture::aniso16d(), hetero()}) {
    const std::size_t N = 37, D = g.dim();
    std::mt19937_64 gen(5);
    std::normal_distribution<double> normal;
    for (double a : {0.0, 0.001, 0.37, 0.999, 1.0}) {
      auto x = g.sample(gen, N);
      for (double& v : x)
        v = std::sqrt(a) * v + std::sqrt(1 - a) * normal(gen);
      std::vector<double> ref(N * D), plain(N * D), fast(N * D), ws(g.workspace_size() + 3);
      for (std::size_t i = 0; i < N; ++i) {
        g.epsilon_at_alpha(std::span<const double>(x).subspan(i * D, D), a,
                           std::span<double>(ref).subspan(i * D, D));
      }
      g.epsilon_batch(x, N, a, plain);
      CHECK(plain == ref);  // same code path row by row: bitwise
      g.epsilon_batch(x, N, a, fast, ws);
      const double scale = std::max(1.0, max_abs(ref));
      CHECK(max_abs_diff(fast, ref) <= 1e-13 * scale);
      // in place (out is the same span as x)
      auto inplace = x;
      g.epsilon_batch(inplace, N, a, inplace, ws);
      CHECK(max_abs_diff(inplace, ref) <= 1e-13 * scale);
      inplace = x;
      g.epsilon_batch(inplace, N, a, inplace);
      CHECK(inplace == ref);
    }
  }
}

TEST_CASE("gaussian_mixture: sampling and most_likely_component", "[gaussian_mixture]") {
  const auto g = gaussian_mixture::aniso16d();
  const std::size_t N = 20000, D = g.dim(), K = g.num_components();
  std::mt19937_64 gen(2024);
  std::vector<double> x(N * D);
  std::vector<std::size_t> lab(N);
  g.sample(gen, x, lab);
  std::vector<double> cnt(K, 0.0), sum(K * D, 0.0), sum2(K * D, 0.0);
  std::size_t agree = 0;
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t k = lab[i];
    cnt[k] += 1;
    for (std::size_t d = 0; d < D; ++d) {
      const double z = (x[i * D + d] - g.mean(k)[d]) / g.stddev(k)[d];
      sum[k * D + d] += z;
      sum2[k * D + d] += z * z;
    }
    agree += g.most_likely_component(std::span<const double>(x).subspan(i * D, D)) == k;
  }
  for (std::size_t k = 0; k < K; ++k) {
    const double p = g.weight(k), sd = std::sqrt(p * (1 - p) / N);
    CHECK(std::abs(cnt[k] / N - p) < 5 * sd);
    for (std::size_t d = 0; d < D; ++d) {
      const double m = sum[k * D + d] / cnt[k], var = sum2[k * D + d] / cnt[k] - m * m;
      CHECK(std::abs(m) < 5 / std::sqrt(cnt[k]));
      CHECK(std::abs(var - 1) < 5 * std::sqrt(2 / cnt[k]));
    }
  }
  CHECK(static_cast<double>(agree) / N > 0.999);  // the components are well separated
  for (std::size_t k = 0; k < K; ++k)
    CHECK(g.most_likely_component(g.mean(k)) == k);
  // the score includes −Σ log s_k and log w_k: a point exactly between two 1-D components goes to the larger
  // weight when the stds are equal (tie otherwise), and near the centres to the narrower one (higher peak,
  // −log s: −½·0.16 + log 2 > −½·0.04) when the weights are equal
  const gaussian_mixture w2({{-1.0}, {1.0}}, {{1.0}, {1.0}}, {0.3, 0.7});
  CHECK(w2.most_likely_component(std::vector<double>{0.0}) == 1);
  const gaussian_mixture s2({{-0.2}, {0.2}}, {{1.0}, {0.5}}, {0.5, 0.5});
  CHECK(s2.most_likely_component(std::vector<double>{0.0}) == 1);
  // reproducible: same seed, same samples
  std::mt19937_64 g1(9), g2(9);
  CHECK(g.sample(g1, 10) == g.sample(g2, 10));
  // any callable returning std::uint64_t works as the generator
  std::mt19937_64 inner(9);
  auto callable = [&inner]() -> std::uint64_t { return inner(); };
  std::mt19937_64 g3(9);
  CHECK(g.sample(callable, 10) == g.sample(g3, 10));
}

TEST_CASE("gaussian_mixture: invalid input throws std::invalid_argument", "[gaussian_mixture]") {
  using std::invalid_argument;
  const std::vector<double> one = {1.0};
  CHECK_THROWS_AS(gaussian_mixture(0, {}, {}, {1.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, one, one, {}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(2, one, {1.0, 1.0}, {1.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, one, {0.0}, {1.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, one, {-1.0}, {1.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, one, {NAN}, {1.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, {INFINITY}, one, {1.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, {0.0, 1.0}, {1.0, 1.0}, {1.0, 0.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, {0.0, 1.0}, {1.0, 1.0}, {1.0, -2.0}), invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture({{0.0, 1.0}, {1.0}}, {{1.0, 1.0}, {1.0, 1.0}}, {0.5, 0.5}),
                  invalid_argument);
  CHECK_THROWS_AS(gaussian_mixture(1, std::vector<double>(65, 0.0), std::vector<double>(65, 1.0),
                                   std::vector<double>(65, 1.0)),
                  invalid_argument);
  CHECK_THROWS_WITH(gaussian_mixture(1, one, {-1.0}, {1.0}), Catch::Contains("gaussian_mixture") &&
                                                                 Catch::Contains("stds[0]") &&
                                                                 Catch::Contains("-1"));

  const auto g = gaussian_mixture::ring2d();
  std::vector<double> x(2), out(2), out3(3), ws(g.workspace_size());
  CHECK_THROWS_AS(g.epsilon_at_alpha(x, -0.1, out), invalid_argument);
  CHECK_THROWS_AS(g.epsilon_at_alpha(x, 1.5, out), invalid_argument);
  CHECK_THROWS_AS(g.epsilon_at_alpha(x, NAN, out), invalid_argument);
  CHECK_THROWS_WITH(g.epsilon_at_alpha(x, 1.5, out), Catch::Contains("epsilon_at_alpha") &&
                                                         Catch::Contains("alpha_bar") &&
                                                         Catch::Contains("1.5"));
  CHECK_THROWS_AS(g.epsilon_at_alpha(x, 0.5, out3), invalid_argument);
  CHECK_THROWS_AS(g.epsilon_batch(x, 2, 0.5, out), invalid_argument);
  CHECK_THROWS_AS(g.epsilon_batch(x, 1, 0.5, out, std::span<double>(ws).first(ws.size() - 1)),
                  invalid_argument);
  CHECK_THROWS_AS(g.log_density(x, 2.0), invalid_argument);
  CHECK_THROWS_AS(g.most_likely_component(out3), invalid_argument);
  CHECK_THROWS_AS(g.mean(8), invalid_argument);
  std::mt19937_64 gen(1);
  CHECK_THROWS_AS(g.sample(gen, std::span<double>(out3)), invalid_argument);
}

// ---------------------------------------------------------------------------------------------------------------
// Φ⁻¹ and the wsw metric
// ---------------------------------------------------------------------------------------------------------------

namespace {

// Independent inverse: bisection on Φ(x) = ½·erfc(−x/√2) (lower tail, where erfc is relatively accurate).
double bisect_inverse(double p) {
  const bool upper = p > 0.5;
  const double target = upper ? 1.0 - p : p;
  double lo = -40.0, hi = 0.0;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(-mid / std::numbers::sqrt2) < target)
      lo = mid;
    else
      hi = mid;
  }
  const double x = 0.5 * (lo + hi);
  return upper ? -x : x;
}

}  // namespace

TEST_CASE("inverse_normal_cdf: accurate against erfc inversion and known quantiles", "[sliced_wasserstein]") {
  using skipstep::testing::inverse_normal_cdf;
  std::vector<double> ps;
  for (int i = 1; i < 2000; ++i)
    ps.push_back(i / 2000.0);
  for (int e = 3; e <= 300; e += 3)
    ps.push_back(std::pow(10.0, -e));
  for (int e = 3; e <= 15; ++e)
    ps.push_back(1 - std::pow(10.0, -e));
  for (double p : {0.02425, 0.0242499, 0.0242501, 0.97575, 0.5 + 1e-12, 0.5 - 1e-12})
    ps.push_back(p);
  double worst = 0.0;
  for (double p : ps) {
    const double x = inverse_normal_cdf(p), ref = bisect_inverse(p);
    // bisection accuracy ~ ulp-level in x; allow 4e-15 relative + 1e-15 absolute
    const double err = std::abs(x - ref) / (std::abs(ref) + 0.25);
    worst = std::max(worst, err);
    INFO("p = " << p << ", x = " << x << ", ref = " << ref);
    CHECK(std::abs(x - ref) <= 4e-15 * std::abs(ref) + 1e-15);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 4e-15);
  // published values (e.g. Wichura 1988, AS241 test values; standard tables)
  CHECK(inverse_normal_cdf(0.975) == Approx(1.959963984540054).epsilon(1e-15));
  CHECK(inverse_normal_cdf(0.025) == Approx(-1.959963984540054).epsilon(1e-15));
  CHECK(inverse_normal_cdf(0.001) == Approx(-3.090232306167814).epsilon(1e-15));
  CHECK(inverse_normal_cdf(1e-10) == Approx(-6.361340902404056).epsilon(1e-14));
  CHECK(inverse_normal_cdf(0.5) == 0.0);
  CHECK(inverse_normal_cdf(0.0) == -INFINITY);
  CHECK(inverse_normal_cdf(1.0) == INFINITY);
  for (double p : {0.6, 0.9, 0.99, 0.5001})
    CHECK(inverse_normal_cdf(p) == -inverse_normal_cdf(1 - p));  // 1-p exact
  CHECK_THROWS_AS(inverse_normal_cdf(-0.1), std::domain_error);
  CHECK_THROWS_AS(inverse_normal_cdf(1.1), std::domain_error);
  CHECK_THROWS_AS(inverse_normal_cdf(NAN), std::domain_error);
}

namespace {

using skipstep::testing::inverse_normal_cdf;
using skipstep::testing::whitened_sliced_w2;
using skipstep::testing::whitened_sliced_w2_report;

double mean_q2(std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    s += std::pow(inverse_normal_cdf((i + 0.5) / static_cast<double>(n)), 2);
  return s / static_cast<double>(n);
}

}  // namespace

TEST_CASE("wsw: exact values in one dimension", "[sliced_wasserstein]") {
  const gaussian_mixture g({{-10.0}, {10.0}}, {{1.0}, {0.5}}, {0.25, 0.75});
  auto make = [&](std::size_t n0, double c0, double l0, std::size_t n1, double c1, double l1) {
    std::vector<double> x;
    for (std::size_t i = 0; i < n0; ++i)
      x.push_back(-10.0 + 1.0 * (l0 * inverse_normal_cdf((i + 0.5) / n0) + c0));
    for (std::size_t i = 0; i < n1; ++i)
      x.push_back(10.0 + 0.5 * (l1 * inverse_normal_cdf((i + 0.5) / n1) + c1));
    std::reverse(x.begin(), x.end());  // order of samples must not matter
    return x;
  };
  // exact quantiles: zero
  auto x = make(100, 0, 1, 300, 0, 1);
  auto rep = whitened_sliced_w2_report(g, x, x.size());
  CHECK(rep.counts == std::vector<std::size_t>{100, 300});
  CHECK(rep.num_directions == 1);
  CHECK(rep.wsw < 1e-14);
  // shifts c_k: wsw² = Σ w_k c_k²
  x = make(100, 0.3, 1, 300, -0.2, 1);
  CHECK(whitened_sliced_w2(g, x, x.size()) == Approx(std::sqrt(0.25 * 0.09 + 0.75 * 0.04)).epsilon(1e-12));
  // scales λ_k: wsw² = Σ w_k (λ_k − 1)² mean_i q_i²
  x = make(100, 0, 1.5, 300, 0, 0.8);
  const double expect = 0.25 * 0.25 * mean_q2(100) + 0.75 * 0.04 * mean_q2(300);
  CHECK(whitened_sliced_w2(g, x, x.size()) == Approx(std::sqrt(expect)).epsilon(1e-12));
  // an empty component costs its weight times the documented penalty (1)
  x = make(100, 0.3, 1, 0, 0, 1);
  rep = whitened_sliced_w2_report(g, x, x.size());
  CHECK(rep.empty_components == 1);
  CHECK(rep.w2sq[1] == skipstep::testing::wsw_empty_component_penalty);
  CHECK(rep.wsw == Approx(std::sqrt(0.25 * 0.09 + 0.75 * 1.0)).epsilon(1e-12));
  // non-finite samples: +inf, not an exception
  x = make(10, 0, 1, 10, 0, 1);
  x[3] = NAN;
  rep = whitened_sliced_w2_report(g, x, x.size());
  CHECK(rep.nonfinite_samples == 1);
  CHECK(rep.wsw == INFINITY);
}

TEST_CASE("wsw: direction sets (64 equispaced in 2-D, 128 random unit vectors otherwise)",
          "[sliced_wasserstein]") {
  using skipstep::testing::wsw_directions;
  // 2-D: a point mass at whitened position c gives W(u)² = (c·u)² + mean q², and the mean of (c·u)² over
  // 64 angles equispaced on the half circle is exactly |c|²/2.
  const gaussian_mixture g2(2, {1.0, 2.0}, {0.5, 2.0}, {1.0});
  const double c0 = 0.3, c1 = -0.4;
  const std::size_t n = 200;
  std::vector<double> x;
  for (std::size_t i = 0; i < n; ++i) {
    x.push_back(1.0 + 0.5 * c0);
    x.push_back(2.0 + 2.0 * c1);
  }
  auto rep = whitened_sliced_w2_report(g2, x, n);
  CHECK(rep.num_directions == 64);
  CHECK(rep.wsw_squared == Approx((c0 * c0 + c1 * c1) / 2 + mean_q2(n)).epsilon(1e-12));
  const auto u2 = wsw_directions(2);
  REQUIRE(u2.size() == 128);
  CHECK(u2[0] == 1.0);
  CHECK(u2[1] == 0.0);
  CHECK(u2[2 * 32] == Approx(0.0).margin(1e-15));  // θ = π/2
  CHECK(u2[2 * 32 + 1] == 1.0);

  // 16-D: unit, deterministic per seed, roughly isotropic (Σ_u u uᵀ ≈ 128/16·I)
  const auto u = wsw_directions(16, 7), again = wsw_directions(16, 7), other = wsw_directions(16, 8);
  REQUIRE(u.size() == 128 * 16);
  CHECK(u == again);
  CHECK(u != other);
  std::vector<double> diag(16, 0.0);
  for (std::size_t j = 0; j < 128; ++j) {
    double n2 = 0.0;
    for (std::size_t d = 0; d < 16; ++d) {
      n2 += u[j * 16 + d] * u[j * 16 + d];
      diag[d] += u[j * 16 + d] * u[j * 16 + d];
    }
    CHECK(n2 == Approx(1.0).epsilon(1e-14));
  }
  for (double v : diag)
    CHECK(v == Approx(8.0).epsilon(0.5));  // each ~ 8 ± 1.6 (Beta(1/2, 15/2) sums)
  CHECK(wsw_directions(1) == std::vector<double>{1.0});
  CHECK(wsw_directions(3).size() == 128 * 3);
}

TEST_CASE("wsw: noise floor of true samples and a wrong distribution", "[sliced_wasserstein]") {
  const std::size_t N = 20000;
  {
    const auto g = gaussian_mixture::aniso16d();
    std::mt19937_64 gen(1);
    const auto x = g.sample(gen, N);
    const double floor = whitened_sliced_w2(g, x, N);
    WARN("aniso16d wsw floor at N = 20000 (sample seed 1, direction seed default) = " << floor);
    CHECK(floor > 0.015);
    CHECK(floor < 0.04);  // issue 4: 0.026 ± 0.001 from an independent implementation

    // stds doubled: whitened samples have std 2, so every projection is off by W2 ≈ 1
    std::vector<double> mu, s;
    std::vector<double> w(g.weights().begin(), g.weights().end());
    for (std::size_t k = 0; k < 4; ++k) {
      for (std::size_t d = 0; d < 16; ++d) {
        mu.push_back(g.mean(k)[d]);
        s.push_back(2 * g.stddev(k)[d]);
      }
    }
    const gaussian_mixture wide(16, mu, s, w);
    const auto y = wide.sample(gen, 4000);
    const double bad = whitened_sliced_w2(g, y, 4000);
    WARN("aniso16d wsw with stds doubled = " << bad);
    CHECK(bad > 0.6);
    CHECK(bad > 15 * floor);
  }
  {
    const auto g = gaussian_mixture::ring2d();
    std::mt19937_64 gen(1);
    const auto x = g.sample(gen, N);
    const double floor = whitened_sliced_w2(g, x, N);
    WARN("ring2d wsw floor at N = 20000 (sample seed 1) = " << floor);
    CHECK(floor > 0.01);
    CHECK(floor < 0.06);
    // means shifted by 1.5 stds along x: every whitened projection is off by 1.5·|cos θ|, wsw ≈ 1.5/√2
    std::vector<double> y = x;
    for (std::size_t i = 0; i < N; ++i)
      y[2 * i] = x[2 * i] + 1.5 * 0.05;
    const double shifted = whitened_sliced_w2(g, y, N);
    CHECK(shifted == Approx(1.5 / std::sqrt(2.0)).epsilon(0.05));
  }
}

TEST_CASE("wsw: invalid input", "[sliced_wasserstein]") {
  const auto g = gaussian_mixture::ring2d();
  std::vector<double> x(10, 0.0);
  CHECK_THROWS_AS(whitened_sliced_w2(g, x, 0), std::invalid_argument);
  CHECK_THROWS_AS(whitened_sliced_w2(g, x, 4), std::invalid_argument);
  CHECK_THROWS_AS(skipstep::testing::wsw_directions(0), std::invalid_argument);
  CHECK_NOTHROW(whitened_sliced_w2(g, x, 5));
}
