// Tests of skipstep/random.hpp: Philox4x32-10 known answers, the counter layout, the normal transform against libm,
// reproducibility (scalar vs blocked, chunking, batch size, threads) and statistics of the normals.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <thread>
#include <vector>

#include <skipstep/random.hpp>

namespace {

using skipstep::philox_normal;
using skipstep::detail::philox4x32_10;

using words = std::array<std::uint32_t, 4>;

// Box–Muller of two words evaluated independently of the library: long double libm, same uniform definitions as
// documented in detail/normal_transform.hpp (u = (a + 1/2)/2^32, t = b/2^32; z0 = r cos, z1 = r sin).
std::array<long double, 2> box_muller_reference(std::uint32_t a, std::uint32_t b) {
  const long double u = (static_cast<long double>(a) + 0.5L) / 4294967296.0L;
  const long double t = static_cast<long double>(b) / 4294967296.0L;
  const long double r = std::sqrt(-2.0L * std::log(u));
  const long double two_pi = 2.0L * std::numbers::pi_v<long double>;
  return {r * std::cos(two_pi * t), r * std::sin(two_pi * t)};
}

// Reference value of element j from raw Philox words following the documented counter layout.
long double reference_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t step, std::uint64_t j) {
  const words w = philox4x32_10({static_cast<std::uint32_t>(j / 4), static_cast<std::uint32_t>(step),
                                 static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)},
                                {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
  const unsigned e = static_cast<unsigned>(j % 4);
  const auto z = box_muller_reference(w[2 * (e / 2)], w[2 * (e / 2) + 1]);
  return z[e % 2];
}

// Standard normal CDF via erfc (accurate in both tails).
double phi(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

// Kolmogorov–Smirnov statistic D = sup |F_n - Phi| of the sample, without sorting (sorting 10^6 values dominates a
// Debug+sanitizer run): the values c_i = Phi(x_i) are counted into K = 2^20 equal bins of [0, 1]. At bin edges F_n is
// exact; inside bin [e_k, e_k+1] Phi runs from e_k to e_k+1 while F_n stays within [cum_k, cum_k+1]/n, so
// max_k max(cum_k+1/n - e_k, e_k+1 - cum_k/n) bounds D from above, exceeding it by at most 1/K + max bin count/n
// (about 1e-5 here, against a critical value of 1.9e-3): a conservative test.
double ks_statistic_upper(const std::vector<double>& x) {
  constexpr std::size_t bins = std::size_t{1} << 20;
  std::vector<std::uint32_t> count(bins, 0);
  for (const double v : x) {
    const double c = phi(v);
    const auto k = std::min(bins - 1, static_cast<std::size_t>(c * static_cast<double>(bins)));
    ++count[k];
  }
  const double n = static_cast<double>(x.size());
  double d = 0, cum = 0;
  for (std::size_t k = 0; k < bins; ++k) {
    const double lo = static_cast<double>(k) / static_cast<double>(bins);
    const double hi = static_cast<double>(k + 1) / static_cast<double>(bins);
    const double f_lo = cum / n;
    cum += count[k];
    const double f_hi = cum / n;
    d = std::max({d, f_hi - lo, hi - f_lo});
  }
  return d;
}

template <class T>
std::vector<T> filled(const philox_normal& g, std::size_t n, std::uint64_t stream, std::uint64_t step,
                      std::uint64_t first = 0) {
  std::vector<T> v(n);
  g.fill(std::span<T>(v), stream, step, first);
  return v;
}

template <class T>
double correlation(const std::vector<T>& x, const std::vector<T>& y) {
  // Pearson correlation.
  const std::size_t n = std::min(x.size(), y.size());
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxy / std::sqrt(sxx * syy);
}

}  // namespace

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[random][philox]") {
  // Random123 tests/kat_vectors, lines "philox4x32 10 <ctr x4> <key x2> <expected x4>".
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == words{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
        words{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
        words{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
  // Usable in constant expressions.
  static_assert(philox4x32_10({0, 0, 0, 0}, {0, 0})[0] == 0x6627e8d5u);
}

TEST_CASE("batched Philox equals the scalar one, including the block-counter wrap", "[random][philox]") {
  const auto ks = skipstep::detail::philox4x32_key_schedule(0xa4093822u, 0x299f31d0u);
  for (const std::uint32_t first : {0u, 12345u, 0xffffffd0u}) {
    std::array<std::uint32_t, 64> w0{}, w1{}, w2{}, w3{};
    skipstep::detail::philox4x32_10_blocks(ks, first, 7u, 0x13198a2eu, 0x03707344u, 61, w0.data(), w1.data(),
                                            w2.data(), w3.data());
    for (std::uint32_t i = 0; i < 61; ++i) {
      const words ref = philox4x32_10({first + i, 7u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
      REQUIRE(words{w0[i], w1[i], w2[i], w3[i]} == ref);
    }
  }
}

TEST_CASE("counter layout: block_bits and normal_at follow the documented (j/4, step, stream) layout",
          "[random][layout]") {
  const std::uint64_t seed = 0x0123456789abcdefu;
  const philox_normal g{seed};
  CHECK(g.seed() == seed);
  const std::uint64_t stream = 0xfedcba9876543210u;
  CHECK(g.block_bits(stream, 77, 5) ==
        philox4x32_10({5u, 77u, 0x76543210u, 0xfedcba98u}, {0x89abcdefu, 0x01234567u}));
  // Each element against long double Box–Muller of the documented words.
  for (std::uint64_t j : {0u, 1u, 2u, 3u, 4u, 9u, 10u, 1001u}) {
    const long double ref = reference_normal(seed, stream, 77, j);
    CHECK(std::abs(static_cast<long double>(g.normal_at<double>(stream, 77, j)) - ref) < 1e-13L);
    CHECK(std::abs(static_cast<long double>(g.normal_at<float>(stream, 77, j)) - ref) < 3e-6L);
  }
}

TEST_CASE("normal transform accuracy against long double libm Box–Muller", "[random][transform]") {
  // Stated bounds (detail/normal_transform.hpp): float <= 2e-6, double <= 5e-15 absolute, |z| <= 6.764.
  std::vector<std::array<std::uint32_t, 2>> cases;
  const std::uint32_t edges[] = {0u,          1u,          2u,          255u,        256u,        0x7fffffffu,
                                 0x80000000u, 0xb504f333u, 0xb504f334u, 3037000499u, 3037000500u, 0xfffffff0u,
                                 0xfffffffeu, 0xffffffffu, 0x20000000u, 0x1fffffffu, 0x40000000u, 0x60000000u,
                                 0xa0000000u, 0xdfffffffu, 0xe0000000u};
  for (const auto a : edges) {
    for (const auto b : edges) {
      cases.push_back({a, b});
    }
  }
  const philox_normal g{42};
  for (std::uint32_t blk = 0; blk < 50000; ++blk) {
    const words w = g.block_bits(0, 0, blk);
    cases.push_back({w[0], w[1]});
    cases.push_back({w[2], w[3]});
  }
  long double max_err_f = 0, max_err_d = 0, max_abs = 0;
  for (const auto& c : cases) {
    const auto ref = box_muller_reference(c[0], c[1]);
    float f0, f1;
    double d0, d1;
    skipstep::detail::box_muller<float>(c[0], c[1], f0, f1);
    skipstep::detail::box_muller<double>(c[0], c[1], d0, d1);
    max_err_f = std::max({max_err_f, std::abs(f0 - ref[0]), std::abs(f1 - ref[1])});
    max_err_d = std::max({max_err_d, std::abs(d0 - ref[0]), std::abs(d1 - ref[1])});
    max_abs = std::max({max_abs, std::abs(static_cast<long double>(d0)), std::abs(static_cast<long double>(d1))});
  }
  INFO("max |float - ref| = " << static_cast<double>(max_err_f) << ", max |double - ref| = "
                              << static_cast<double>(max_err_d) << ", max |z| = " << static_cast<double>(max_abs));
  CHECK(max_err_f <= 2e-6L);
  CHECK(max_err_d <= 5e-15L);
  CHECK(max_abs <= 6.764L);
  CHECK(max_abs > 6.763L);  // the a = 0 edge reaches the documented maximum sqrt(2 ln 2^33) = 6.7637
}

TEST_CASE("scalar reference path and blocked path are bit-identical", "[random][reproducibility]") {
  const philox_normal g{0x5eedu};
  for (const std::uint64_t stream : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{0x100000003u}}) {
    for (const std::uint64_t step : {std::uint64_t{0}, std::uint64_t{999}, std::uint64_t{0xffffffffu}}) {
      for (const std::uint64_t first : {std::uint64_t{0}, std::uint64_t{3}, std::uint64_t{4097}}) {
        const auto f = filled<float>(g, 1031, stream, step, first);
        const auto d = filled<double>(g, 1031, stream, step, first);
        for (std::size_t k = 0; k < f.size(); ++k) {
          REQUIRE(f[k] == g.normal_at<float>(stream, step, first + k));
          REQUIRE(d[k] == g.normal_at<double>(stream, step, first + k));
        }
      }
    }
  }
}

TEST_CASE("chunking invariance: a fill in odd-sized pieces equals one whole fill", "[random][reproducibility]") {
  const philox_normal g{2024};
  const std::size_t n = 20011;
  const auto whole_f = filled<float>(g, n, 5, 17);
  const auto whole_d = filled<double>(g, n, 5, 17);
  std::vector<float> pf(n);
  std::vector<double> pd(n);
  std::size_t pos = 0, piece = 1;
  while (pos < n) {
    const std::size_t len = std::min(piece, n - pos);
    g.fill(std::span<float>(pf).subspan(pos, len), 5, 17, pos);
    g.fill(std::span<double>(pd).subspan(pos, len), 5, 17, pos);
    pos += len;
    piece = (piece * 7 + 2) % 613 | 1u;  // odd sizes 1, 9, 65, 457, ... (pieces start at every residue mod 4)
  }
  CHECK(pf == whole_f);
  CHECK(pd == whole_d);
  // A sub-range that starts mid-block and ends mid-block.
  CHECK(filled<float>(g, 6, 5, 17, 3) == std::vector<float>(whole_f.begin() + 3, whole_f.begin() + 9));
  CHECK(filled<double>(g, 1, 5, 17, 2) == std::vector<double>(whole_d.begin() + 2, whole_d.begin() + 3));
  // Empty span: no effect, no throw.
  std::vector<float> none;
  CHECK_NOTHROW(g.fill(std::span<float>(none), 5, 17, 12345));
}

TEST_CASE("batch-size invariance: sample b's noise does not depend on the batch size", "[random][reproducibility]") {
  // A sampler fills a [B x D] batch with stream = sample index b.
  const philox_normal g{99};
  const std::size_t d = 150;  // not a multiple of 4
  auto batch = [&](std::size_t b_count, std::uint64_t step) {
    std::vector<float> x(b_count * d);
    for (std::size_t b = 0; b < b_count; ++b) {
      g.fill(std::span<float>(x).subspan(b * d, d), b, step);
    }
    return x;
  };
  const auto b1 = batch(1, 3), b4 = batch(4, 3), b9 = batch(9, 3);
  CHECK(std::equal(b1.begin(), b1.end(), b9.begin()));
  CHECK(std::equal(b4.begin(), b4.end(), b9.begin()));
  // ... and different samples and steps get different noise.
  CHECK(!std::equal(b9.begin(), b9.begin() + d, b9.begin() + d));
  CHECK(batch(1, 4) != b1);
}

TEST_CASE("thread-count invariance: a buffer split over 1..4 threads equals a single-thread fill",
          "[random][reproducibility]") {
  const philox_normal g{7};
  const std::size_t n = (1u << 17) + 13;
  const auto ref = filled<float>(g, n, 11, 2);
  for (unsigned threads = 1; threads <= 4; ++threads) {
    std::vector<float> out(n, -1.0f);
    std::vector<std::thread> pool;
    // Uneven split points, not multiples of 4.
    std::vector<std::size_t> cut{0};
    for (unsigned t = 1; t < threads; ++t) {
      cut.push_back(n * t / threads + t);
    }
    cut.push_back(n);
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        g.fill(std::span<float>(out).subspan(cut[t], cut[t + 1] - cut[t]), 11, 2, cut[t]);
      });
    }
    for (auto& th : pool) {
      th.join();
    }
    INFO("threads = " << threads);
    CHECK(out == ref);
  }
}

TEST_CASE("limits of the counter layout are enforced", "[random][errors]") {
  const philox_normal g{1};
  std::vector<float> v(8);
  CHECK_THROWS_AS(g.fill(std::span<float>(v), 0, philox_normal::max_steps), std::invalid_argument);
  CHECK_THROWS_AS(g.fill(std::span<float>(v), 0, 0, philox_normal::max_elements - 7), std::invalid_argument);
  CHECK_THROWS_AS(g.fill(std::span<float>(v), 0, 0, ~std::uint64_t{0}), std::invalid_argument);
  CHECK_THROWS_AS(g.normal_at<double>(0, 0, philox_normal::max_elements), std::invalid_argument);
  CHECK_THROWS_AS(g.normal_at<float>(0, std::uint64_t{1} << 32, 0), std::invalid_argument);
  CHECK_THROWS_WITH(g.fill(std::span<float>(v), 0, std::uint64_t{1} << 40),
                    Catch::Contains("skipstep::philox_normal::fill") && Catch::Contains("step") &&
                        Catch::Contains("1099511627776"));
  // The last addressable elements and the last step work and agree with the scalar path.
  CHECK_NOTHROW(g.fill(std::span<float>(v), 0, philox_normal::max_steps - 1, philox_normal::max_elements - 8));
  CHECK(v[7] == g.normal_at<float>(0, philox_normal::max_steps - 1, philox_normal::max_elements - 1));
  CHECK(v[0] == g.normal_at<float>(0, philox_normal::max_steps - 1, philox_normal::max_elements - 8));
}

TEST_CASE("float output relates to the double output within the float rounding bound", "[random][transform]") {
  const philox_normal g{31337};
  const std::size_t n = 200000;
  const auto f = filled<float>(g, n, 0, 0);
  const auto d = filled<double>(g, n, 0, 0);
  double max_diff = 0;
  for (std::size_t k = 0; k < n; ++k) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(f[k]) - d[k]));
  }
  INFO("max |float - double| = " << max_diff);
  CHECK(max_diff <= 2e-6);
}

TEST_CASE("statistics of 10^6 normals: mean, variance, Kolmogorov–Smirnov", "[random][statistics]") {
  const std::size_t n = 1000000;
  const philox_normal g{0xC0FFEEu};
  // Spread the draws over several streams and steps, as a sampler does.
  std::vector<double> x(n);
  const std::size_t per = n / 8;
  for (std::size_t s = 0; s < 8; ++s) {
    g.fill(std::span<double>(x).subspan(s * per, per), s % 4, s / 4);
  }
  const double dn = static_cast<double>(n);
  double mean = 0;
  for (const double v : x) {
    mean += v;
  }
  mean /= dn;
  double var = 0;
  for (const double v : x) {
    var += (v - mean) * (v - mean);
  }
  var /= dn - 1;
  // Standard errors: mean 1/sqrt(n), sample variance sqrt(2/(n-1)) for N(0,1).
  CHECK(std::abs(mean) < 5.0 / std::sqrt(dn));
  CHECK(std::abs(var - 1.0) < 5.0 * std::sqrt(2.0 / (dn - 1)));

  // Kolmogorov–Smirnov against Phi at p = 0.001: critical D = 1.949/sqrt(n) (asymptotic).
  const double d_ks = ks_statistic_upper(x);
  INFO("KS D <= " << d_ks << ", critical " << 1.949 / std::sqrt(dn));
  CHECK(d_ks < 1.949 / std::sqrt(dn));

  // Float output: mean and variance (its distribution is the double one within 2e-6, tested above).
  const auto xf = filled<float>(g, n, 100, 0);
  double mean_f = 0, m2_f = 0;
  for (const float v : xf) {
    mean_f += v;
    m2_f += static_cast<double>(v) * v;
  }
  mean_f /= dn;
  const double var_f = (m2_f - dn * mean_f * mean_f) / (dn - 1);
  CHECK(std::abs(mean_f) < 5.0 / std::sqrt(dn));
  CHECK(std::abs(var_f - 1.0) < 5.0 * std::sqrt(2.0 / (dn - 1)));
}

TEST_CASE("no correlation within a stream or between neighbouring streams and steps", "[random][statistics]") {
  const std::size_t n = 250000;  // bound 5/sqrt(n) = 0.01
  const philox_normal g{12345};
  const auto base = filled<float>(g, n + 4, 10, 20);
  const auto next_stream = filled<float>(g, n, 11, 20);
  const auto next_step = filled<float>(g, n, 10, 21);
  const auto other_seed = filled<float>(philox_normal{12346}, n, 10, 20);
  const double bound = 5.0 / std::sqrt(static_cast<double>(n));
  const std::vector<float> x(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(n));
  // Lags 1..4 cover the cos/sin pair of one Box–Muller draw (lag 1) and the two pairs of one Philox block.
  for (std::ptrdiff_t lag = 1; lag <= 4; ++lag) {
    const std::vector<float> y(base.begin() + lag, base.begin() + lag + static_cast<std::ptrdiff_t>(n));
    INFO("lag " << lag);
    CHECK(std::abs(correlation(x, y)) < bound);
  }
  CHECK(std::abs(correlation(x, next_stream)) < bound);
  CHECK(std::abs(correlation(x, next_step)) < bound);
  CHECK(std::abs(correlation(x, other_seed)) < bound);
  // Squares: the radius is shared by the pair (z0, z1) but z0^2 and z1^2 must still be uncorrelated on average
  // only if Box–Muller is implemented correctly (r^2 ~ Exp(1/2) and the angle uniform): corr(z0^2, z1^2) = 0.
  std::vector<float> e2, o2;
  e2.reserve(n / 2);
  o2.reserve(n / 2);
  for (std::size_t k = 0; k + 1 < n; k += 2) {
    e2.push_back(x[k] * x[k]);
    o2.push_back(x[k + 1] * x[k + 1]);
  }
  CHECK(std::abs(correlation(e2, o2)) < 5.0 / std::sqrt(static_cast<double>(n / 2)));
}
