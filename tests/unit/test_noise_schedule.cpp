// Noise schedules (issue 3, item 1): every table is checked against an independent computation — closed forms
// (linear spacing, the cosine ᾱ(t) = f(t)/f(0) telescoping product, Lin et al.'s affine rescale) or a long-double
// re-accumulation — never against skipstep's own output.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <numbers>
#include <vector>

#include "skipstep/schedule/noise_schedule.hpp"

using skipstep::noise_schedule;

namespace {

// ā_t = Π_{s≤t}(1 − β_s) accumulated in long double from the schedule's betas: an independent product.
std::vector<long double> cumprod_long(std::span<const double> betas) {
  std::vector<long double> out(betas.size());
  long double running = 1.0L;
  for (std::size_t t = 0; t < betas.size(); ++t) {
    running *= 1.0L - static_cast<long double>(betas[t]);
    out[t] = running;
  }
  return out;
}

// Nichol & Dhariwal 2021, eq. 17: f(u) = cos((u + s)/(1 + s) · π/2)², s = 0.008 — in long double.
long double nichol_f(long double u) {
  const long double c = std::cos((u + 0.008L) / 1.008L * std::numbers::pi_v<long double> / 2.0L);
  return c * c;
}

template <class Real>
void require_strictly_decreasing(const noise_schedule<Real>& s) {
  const auto ab = s.alphas_cumprod();
  REQUIRE(ab.size() == s.size());
  REQUIRE(ab[0] < Real(1));
  for (std::size_t t = 1; t < ab.size(); ++t) {
    INFO("t = " << t);
    REQUIRE(ab[t] < ab[t - 1]);
  }
}

}  // namespace

TEST_CASE("linear schedule: endpoints exact, constant spacing, defaults are DDPM's", "[noise_schedule]") {
  for (std::size_t T : {2u, 10u, 1000u, 4000u}) {
    INFO("T = " << T);
    const auto s = noise_schedule<>::linear(T, 1e-4, 0.02);
    REQUIRE(s.size() == T);
    REQUIRE(s.num_train_timesteps() == T);
    const auto b = s.betas();
    CHECK(b[0] == 1e-4);
    CHECK(b[T - 1] == 0.02);  // numpy.linspace sets the last element to stop exactly
    const double spacing = (0.02 - 1e-4) / static_cast<double>(T - 1);
    for (std::size_t t = 0; t < T; ++t) {
      const double expected = 1e-4 + spacing * static_cast<double>(t);
      REQUIRE(b[t] == Approx(expected).epsilon(1e-13));
      REQUIRE(s.alphas()[t] == Approx(1.0 - expected).epsilon(1e-15));
    }
    require_strictly_decreasing(s);
  }
  const auto d = noise_schedule<>::linear(1000);
  CHECK(d.betas()[0] == 1e-4);
  CHECK(d.betas()[999] == 0.02);
  // Known published value: DDPM's linear schedule has ā_999 ≈ 4.036e-5 (SNR(T) ≈ 4e-5, Lin et al. 2024, Table 1).
  CHECK(d.alpha_cumprod(999) == Approx(4.0358e-5).epsilon(1e-3));
}

TEST_CASE("linear schedule with T = 1 is the start value", "[noise_schedule]") {
  const auto s = noise_schedule<>::linear(1, 0.25, 0.5);
  REQUIRE(s.size() == 1);
  CHECK(s.betas()[0] == 0.25);
  CHECK(s.alpha_cumprod(0) == 0.75);
}

TEST_CASE("scaled_linear schedule: betas are a linspace of square roots, squared", "[noise_schedule]") {
  for (std::size_t T : {2u, 50u, 1000u}) {
    INFO("T = " << T);
    const auto s = noise_schedule<>::scaled_linear(T);  // Stable Diffusion: 0.00085 .. 0.012
    const auto b = s.betas();
    CHECK(b[0] == Approx(0.00085).epsilon(1e-14));
    CHECK(b[T - 1] == Approx(0.012).epsilon(1e-14));
    const long double r0 = std::sqrt(0.00085L), r1 = std::sqrt(0.012L);
    for (std::size_t t = 0; t < T; ++t) {
      const long double r = r0 + (r1 - r0) * static_cast<long double>(t) / static_cast<long double>(T - 1);
      REQUIRE(b[t] == Approx(static_cast<double>(r * r)).epsilon(1e-13));
    }
    // sqrt(β) is affine in t: second differences vanish.
    for (std::size_t t = 2; t < T; ++t)
      REQUIRE(std::sqrt(b[t]) - 2 * std::sqrt(b[t - 1]) + std::sqrt(b[t - 2]) == Approx(0.0).margin(1e-15));
    require_strictly_decreasing(s);
  }
  // Known published value: Stable Diffusion's terminal SNR ≈ 0.004682 (Lin et al. 2024, §3.1: "0.0047").
  CHECK(noise_schedule<>::scaled_linear(1000).snr(999) == Approx(0.004682).epsilon(1e-3));
}

TEST_CASE("alphas_cumprod is the running product of 1 - beta (long double re-accumulation)", "[noise_schedule]") {
  const std::vector<noise_schedule<>> schedules = {noise_schedule<>::linear(1000), noise_schedule<>::scaled_linear(1000),
                                                   noise_schedule<>::cosine(1000), noise_schedule<>::linear(4000)};
  for (const auto& s : schedules) {
    const auto ref = cumprod_long(s.betas());
    for (std::size_t t = 0; t < s.size(); ++t) {
      INFO("t = " << t);
      REQUIRE(s.alphas_cumprod()[t] == Approx(static_cast<double>(ref[t])).epsilon(1e-12));
      REQUIRE(s.alphas()[t] == 1.0 - s.betas()[t]);
    }
  }
}

TEST_CASE("cosine schedule matches Nichol & Dhariwal's abar(t) = f(t)/f(0), with the 0.999 cap at the end",
          "[noise_schedule]") {
  for (std::size_t T : {10u, 100u, 1000u, 4000u}) {
    INFO("T = " << T);
    const auto s = noise_schedule<>::cosine(T);
    const auto b = s.betas();
    const long double f0 = nichol_f(0.0L);
    // Without the cap the product telescopes: ā_t = f((t+1)/T)/f(0).
    std::size_t capped = 0;
    for (std::size_t t = 0; t < T; ++t) {
      REQUIRE(b[t] > 0.0);
      REQUIRE(b[t] <= 0.999);
      if (b[t] == 0.999) ++capped;
    }
    for (std::size_t t = 0; t + 1 < T; ++t) {
      INFO("t = " << t);
      const long double expected = nichol_f(static_cast<long double>(t + 1) / static_cast<long double>(T)) / f0;
      REQUIRE(s.alpha_cumprod(t) == Approx(static_cast<double>(expected)).epsilon(1e-9));
    }
    // The last beta is 1 − f(1)/f((T−1)/T) with f(1) = cos(π/2)² ≈ 0: it is capped at max_beta.
    CHECK(b[T - 1] == 0.999);
    CHECK(capped >= 1);
    CHECK(s.alpha_cumprod(T - 1) == Approx(s.alpha_cumprod(T - 2) * 0.001).epsilon(1e-12));
    CHECK_FALSE(s.has_zero_terminal_snr());
    require_strictly_decreasing(s);
  }
  SECTION("T = 1000: only the last beta hits the cap") {
    const auto s = noise_schedule<>::cosine(1000);
    for (std::size_t t = 0; t + 1 < 1000; ++t) REQUIRE(s.betas()[t] < 0.999);
    CHECK(s.betas()[999] == 0.999);
  }
  SECTION("a smaller cap applies wherever the raw beta exceeds it") {
    const auto s = noise_schedule<>::cosine(1000, 0.02);
    for (std::size_t t = 0; t < 1000; ++t) {
      const long double raw = 1.0L - nichol_f((t + 1) / 1000.0L) / nichol_f(t / 1000.0L);
      const double expected = raw > 0.02L ? 0.02 : static_cast<double>(raw);
      REQUIRE(s.betas()[t] == Approx(expected).epsilon(1e-9));
    }
  }
}

TEST_CASE("from_betas and from_alphas_cumprod round trip", "[noise_schedule]") {
  for (const auto& s : {noise_schedule<>::linear(1000), noise_schedule<>::scaled_linear(1000),
                        noise_schedule<>::cosine(1000)}) {
    const std::vector<double> betas(s.betas().begin(), s.betas().end());
    const auto fb = noise_schedule<>::from_betas(betas);
    REQUIRE(fb.size() == s.size());
    for (std::size_t t = 0; t < s.size(); ++t) {
      REQUIRE(fb.betas()[t] == betas[t]);
      REQUIRE(fb.alpha_cumprod(t) == s.alpha_cumprod(t));
    }
    const std::vector<double> ab(s.alphas_cumprod().begin(), s.alphas_cumprod().end());
    const auto fa = noise_schedule<>::from_alphas_cumprod(ab);
    REQUIRE(fa.size() == s.size());
    for (std::size_t t = 0; t < s.size(); ++t) {
      INFO("t = " << t);
      REQUIRE(fa.alpha_cumprod(t) == ab[t]);  // the exact table is kept
      // β_t = 1 − ā_t/ā_{t−1}: agrees with the original to rounding of the ratio.
      REQUIRE(fa.betas()[t] == Approx(betas[t]).margin(1e-13).epsilon(1e-9));
      REQUIRE(fa.alphas()[t] == Approx(1.0 - betas[t]).margin(1e-13));
    }
  }
  SECTION("a hand-made table") {
    const std::vector<double> ab = {0.75, 0.5, 0.25, 0.125};
    const auto s = noise_schedule<>::from_alphas_cumprod(ab);
    CHECK(s.betas()[0] == 0.25);
    CHECK(s.betas()[1] == Approx(1.0 / 3.0).epsilon(1e-15));
    CHECK(s.betas()[2] == 0.5);
    CHECK(s.betas()[3] == 0.5);
  }
  SECTION("zero terminal SNR table (last entry 0)") {
    const std::vector<double> ab = {0.75, 0.5, 0.0};
    const auto s = noise_schedule<>::from_alphas_cumprod(ab);
    CHECK(s.betas()[2] == 1.0);
    CHECK(s.has_zero_terminal_snr());
    CHECK(s.snr(2) == 0.0);
  }
}

TEST_CASE("accessors: sqrt, sqrt(1 - abar), SNR", "[noise_schedule]") {
  const auto s = noise_schedule<>::scaled_linear(1000);
  for (std::size_t t : {0u, 1u, 17u, 500u, 998u, 999u}) {
    INFO("t = " << t);
    const double a = s.alphas_cumprod()[t];
    CHECK(s.alpha_cumprod(t) == a);
    CHECK(s.sqrt_alpha_cumprod(t) * s.sqrt_alpha_cumprod(t) == Approx(a).epsilon(1e-15));
    CHECK(s.sqrt_one_minus_alpha_cumprod(t) * s.sqrt_one_minus_alpha_cumprod(t) == Approx(1.0 - a).epsilon(1e-15));
    CHECK(s.sqrt_alpha_cumprod(t) * s.sqrt_alpha_cumprod(t) +
              s.sqrt_one_minus_alpha_cumprod(t) * s.sqrt_one_minus_alpha_cumprod(t) ==
          Approx(1.0).epsilon(1e-15));
    // SNR = (signal scale / noise scale)².
    const double ratio = s.sqrt_alpha_cumprod(t) / s.sqrt_one_minus_alpha_cumprod(t);
    CHECK(s.snr(t) == Approx(ratio * ratio).epsilon(1e-14));
  }
  // SNR strictly decreasing along t.
  for (std::size_t t = 1; t < 1000; ++t) REQUIRE(s.snr(t) < s.snr(t - 1));
  CHECK_THROWS_AS(s.alpha_cumprod(1000), std::out_of_range);
}

TEST_CASE("rescale_zero_terminal_snr (Lin et al. 2024, Algorithm 1)", "[noise_schedule]") {
  for (const auto& s : {noise_schedule<>::linear(1000), noise_schedule<>::scaled_linear(1000),
                        noise_schedule<>::cosine(1000), noise_schedule<>::linear(10)}) {
    const std::size_t T = s.size();
    const auto z = s.rescale_zero_terminal_snr();
    REQUIRE(z.size() == T);
    CHECK(z.alphas_cumprod()[T - 1] == 0.0);  // exactly
    CHECK(z.betas()[T - 1] == 1.0);
    CHECK(z.has_zero_terminal_snr());
    CHECK(z.snr(T - 1) == 0.0);
    // √ā_0 is kept.
    CHECK(z.sqrt_alpha_cumprod(0) == Approx(s.sqrt_alpha_cumprod(0)).epsilon(1e-14));
    // √ā' is affine in the original √ā: √ā'_t = a·√ā_t + b with a, b fixed by the two ends.
    const long double s0 = std::sqrt(static_cast<long double>(s.alpha_cumprod(0)));
    const long double sl = std::sqrt(static_cast<long double>(s.alpha_cumprod(T - 1)));
    const long double a = s0 / (s0 - sl);
    const long double b = -a * sl;
    for (std::size_t t = 0; t < T; t += (T > 20 ? 37 : 1)) {
      INFO("t = " << t);
      const long double expected = a * std::sqrt(static_cast<long double>(s.alpha_cumprod(t))) + b;
      CHECK(z.sqrt_alpha_cumprod(t) == Approx(static_cast<double>(expected)).margin(1e-13).epsilon(1e-11));
    }
    // Still a valid schedule: betas in (0, 1], ā strictly decreasing.
    for (std::size_t t = 0; t < T; ++t) {
      REQUIRE(z.betas()[t] > 0.0);
      REQUIRE(z.betas()[t] <= 1.0);
    }
    require_strictly_decreasing(z);
  }
}

TEST_CASE("noise_schedule<float> compiles and agrees with double to float precision", "[noise_schedule]") {
  const auto check = [](const noise_schedule<float>& f, const noise_schedule<double>& d) {
    REQUIRE(f.size() == d.size());
    for (std::size_t t = 0; t < d.size(); ++t) {
      INFO("t = " << t);
      REQUIRE(static_cast<double>(f.betas()[t]) == Approx(d.betas()[t]).epsilon(1e-7));
      REQUIRE(static_cast<double>(f.alphas_cumprod()[t]) == Approx(d.alphas_cumprod()[t]).epsilon(1e-7));
      REQUIRE(f.alpha_cumprod(t) == Approx(d.alpha_cumprod(t)).epsilon(1e-7));
      REQUIRE(f.sqrt_alpha_cumprod(t) == Approx(d.sqrt_alpha_cumprod(t)).epsilon(1e-7));
    }
  };
  check(noise_schedule<float>::linear(1000), noise_schedule<double>::linear(1000));
  check(noise_schedule<float>::scaled_linear(1000), noise_schedule<double>::scaled_linear(1000));
  check(noise_schedule<float>::cosine(1000), noise_schedule<double>::cosine(1000));
  const auto zf = noise_schedule<float>::linear(1000).rescale_zero_terminal_snr();
  CHECK(zf.has_zero_terminal_snr());
  static_assert(std::is_same_v<noise_schedule<float>::value_type, float>);
  static_assert(std::is_same_v<decltype(zf.betas()), std::span<const float>>);
}
