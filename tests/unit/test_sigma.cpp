// Sigma policies (issue 3, item 3): η family, the DDIM paper's σ̂ row, per-step lists and user callables, checked
// against the posterior variance written in an independent algebraic form, and the policy validation.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "skipstep/sampler.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/timesteps.hpp"
#include "skipstep/step/sigma.hpp"

using namespace skipstep;
using Catch::Matchers::Contains;

namespace {

step_context ctx(double ak, double as, std::size_t i = 0, std::size_t n = 10, std::int64_t t = 500,
                 std::int64_t s = 400) {
  return step_context{ak, as, i, n, t, s};
}

// DDPM posterior variance of q(x_s | x_k, x0) as the inverse of the summed precisions (Gaussian algebra):
// 1/β̃ = 1/(1 − ā_s) + α/(1 − α), α = ā_k/ā_s.
double posterior_std(double ak, double as) {
  const long double alpha = static_cast<long double>(ak) / as;
  const long double precision = 1.0L / (1.0L - as) + alpha / (1.0L - alpha);
  return static_cast<double>(std::sqrt(1.0L / precision));
}

const std::vector<std::pair<double, double>> level_pairs = {
    {0.5, 0.6}, {0.01, 0.9}, {0.0047, 0.0049}, {0.9, 0.9999}, {1e-4, 0.99}, {0.3, 0.3000001}, {0.2, 1.0}};

}  // namespace

TEST_CASE("eta{0} gives sigma 0 everywhere", "[sigma]") {
  const eta e{0.0};
  for (auto [ak, as] : level_pairs) CHECK(e(ctx(ak, as)) == 0.0);
  CHECK(eta{}.value == 0.0);
}

TEST_CASE("eta{1} is the DDPM posterior std, eta{x} scales it", "[sigma]") {
  for (auto [ak, as] : level_pairs) {
    INFO("ak = " << ak << ", as = " << as);
    const double expected = as == 1.0 ? 0.0 : posterior_std(ak, as);
    CHECK(eta{1.0}(ctx(ak, as)) == Approx(expected).epsilon(1e-9).margin(1e-15));
    CHECK(ddpm_sigma(ak, as) == Approx(expected).epsilon(1e-9).margin(1e-15));
    CHECK(eta{0.5}(ctx(ak, as)) == Approx(0.5 * expected).epsilon(1e-9).margin(1e-15));
    CHECK(eta{0.25}(ctx(ak, as)) == Approx(0.25 * expected).epsilon(1e-9).margin(1e-15));
    // σ² ≤ 1 − ā_s always holds for η ≤ 1 (β̃ = (1−ā_s)·β/(1−ā_k) with β ≤ 1 − ā_k).
    CHECK(eta{1.0}(ctx(ak, as)) * eta{1.0}(ctx(ak, as)) <= (1.0 - as) * (1 + 1e-15));
  }
  // The brief's formula written literally: √((1−ā_s)/(1−ā_k) · (1 − ā_k/ā_s)).
  const double ak = 0.25, as = 0.5;
  CHECK(eta{1.0}(ctx(ak, as)) == Approx(std::sqrt((0.5 / 0.75) * 0.5)).epsilon(1e-15));
  // ā_k = ā_s: no step, no noise; ā_k = 1: nothing to remove.
  CHECK(ddpm_sigma(0.5, 0.5) == 0.0);
  CHECK(ddpm_sigma(1.0, 1.0) == 0.0);
  // Zero terminal SNR start: σ² = 1 − ā_s exactly (the direction term vanishes).
  CHECK(ddpm_sigma(0.0, 0.36) == Approx(0.8).epsilon(1e-15));
}

TEST_CASE("larger_variance: mean of eta = 1, noise std sqrt(1 - abar_k/abar_s)", "[sigma]") {
  for (auto [ak, as] : level_pairs) {
    INFO("ak = " << ak << ", as = " << as);
    const sigma_choice c = larger_variance{}(ctx(ak, as));
    CHECK(c.sigma == Approx(eta{1.0}(ctx(ak, as))).epsilon(1e-15).margin(1e-300));
    CHECK(c.noise_std == Approx(std::sqrt((as - ak) / as)).epsilon(1e-9));
    CHECK(c.noise_std >= c.sigma);  // β ≥ β̃
  }
  // Through the sampler: σ in the direction term, σ̂ as the noise std.
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 10);
  const ddim_sampler lv(sched, ts, larger_variance{});
  const ddim_sampler e1(sched, ts, eta{1.0});
  for (std::size_t i = 0; i + 1 < lv.num_steps(); ++i) {
    INFO("step " << i);
    const double ak = lv.transitions()[i].alpha_cumprod_from, as = lv.transitions()[i].alpha_cumprod_to;
    CHECK(lv.coefficients()[i].eps_weight == e1.coefficients()[i].eps_weight);
    CHECK(lv.coefficients()[i].x0_weight == e1.coefficients()[i].x0_weight);
    CHECK(lv.coefficients()[i].noise_std == Approx(std::sqrt(1.0 - ak / as)).epsilon(1e-12));
  }
}

TEST_CASE("sigma_list returns the value of the step index", "[sigma]") {
  const sigma_list l{{0.1, 0.2, 0.3}};
  CHECK(l(ctx(0.5, 0.6, 0, 3)) == 0.1);
  CHECK(l(ctx(0.5, 0.6, 2, 3)) == 0.3);
  // Its size must equal N: a shorter and a longer list are both rejected, naming N.
  CHECK_THROWS_AS(l(ctx(0.5, 0.6, 1, 4)), std::invalid_argument);
  CHECK_THROWS_WITH(l(ctx(0.5, 0.6, 1, 2)), Contains("sigma_list") && Contains("N = 2") && Contains("(got 3)"));
  // Through the sampler: the direction weight is √(1 − ā_s − σ_i²).
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 4);
  const std::vector<double> sig = {0.05, 0.02, 0.005, 0.0};
  const ddim_sampler s(sched, ts, sigma_list{sig});
  for (std::size_t i = 0; i < 4; ++i) {
    const double as = s.transitions()[i].alpha_cumprod_to;
    CHECK(s.coefficients()[i].eps_weight == Approx(std::sqrt(1.0 - as - sig[i] * sig[i])).epsilon(1e-14).margin(1e-300));
    CHECK(s.coefficients()[i].noise_std == (s.transitions()[i].noise_allowed ? sig[i] : 0.0));
  }
  CHECK_THROWS_AS(ddim_sampler(sched, ts, sigma_list{{0.1}}), std::invalid_argument);
  // A list longer than the number of steps is an error too (its header says the size must equal N).
  CHECK_THROWS_WITH(ddim_sampler(sched, ts, sigma_list{{0.05, 0.02, 0.005, 0.0, 0.0}}),
                    Contains("ddim_sampler") && Contains("sigma_list") && Contains("N = 4") && Contains("(got 5)"));
}

TEST_CASE("a lambda sigma policy works with ddim_sampler and sees the step context", "[sigma]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  const auto ts = timestep_schedule::trailing(1000, 8);
  std::vector<step_context> seen;
  const auto policy = [&seen](const step_context& c) {
    seen.push_back(c);
    return 0.5 * ddpm_sigma(c.alpha_cumprod_t, c.alpha_cumprod_prev);
  };
  const ddim_sampler with_lambda(sched, ts, policy);
  const ddim_sampler with_eta(sched, ts, eta{0.5});
  REQUIRE(seen.size() == 8);
  for (std::size_t i = 0; i < 8; ++i) {
    INFO("step " << i);
    CHECK(seen[i].step_index == i);
    CHECK(seen[i].num_steps == 8);
    CHECK(seen[i].timestep == ts[i]);
    CHECK(seen[i].prev_timestep == (i + 1 < 8 ? ts[i + 1] : -1));
    CHECK(seen[i].alpha_cumprod_t == sched.alpha_cumprod(static_cast<std::size_t>(ts[i])));
    CHECK(seen[i].alpha_cumprod_prev == (i + 1 < 8 ? sched.alpha_cumprod(static_cast<std::size_t>(ts[i + 1])) : 1.0));
    CHECK(with_lambda.coefficients()[i].eps_weight == with_eta.coefficients()[i].eps_weight);
    CHECK(with_lambda.coefficients()[i].noise_std == with_eta.coefficients()[i].noise_std);
  }
  // A sigma_choice-returning lambda: σ = 0 in the mean, fixed noise std.
  const ddim_sampler split(sched, ts, [](const step_context&) { return sigma_choice{0.0, 0.125}; });
  const ddim_sampler det(sched, ts, eta{0.0});
  for (std::size_t i = 0; i + 1 < 8; ++i) {
    CHECK(split.coefficients()[i].eps_weight == det.coefficients()[i].eps_weight);
    CHECK(split.coefficients()[i].noise_std == 0.125);
  }
  CHECK(split.coefficients()[7].noise_std == 0.0);  // onto ā = 1: no noise
  CHECK(split.is_stochastic());
  CHECK_FALSE(det.is_stochastic());

  // And it samples: a lambda policy run equals the eta run on the same noise.
  std::vector<double> xa(16), xb(16);
  for (std::size_t i = 0; i < 16; ++i) xa[i] = xb[i] = std::sin(1.0 + static_cast<double>(i));
  const auto predictor = [](const std::vector<double>& x, std::int64_t t) {
    std::vector<double> m(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) m[i] = std::tanh(x[i]) + 1e-3 * static_cast<double>(t);
    return m;
  };
  const auto noise = [](std::span<double> out, noise_position at) {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = std::cos(0.7 * static_cast<double>(at.step) + 0.3 * static_cast<double>(at.first_element + i));
  };
  with_lambda.sample(predictor, xa, noise);
  with_eta.sample(predictor, xb, noise);
  for (std::size_t i = 0; i < 16; ++i) CHECK(xa[i] == xb[i]);
}

TEST_CASE("detail::evaluate_sigma validates the policy's answer", "[sigma]") {
  const step_context c = ctx(0.36, 0.64, 3, 10, 700, 600);  // room = 1 − ā_s = 0.36, σ_max = 0.6
  const auto constant = [](double v) { return [v](const step_context&) { return v; }; };
  SECTION("a legal sigma passes through, for both the mean and the noise") {
    const sigma_choice s = detail::evaluate_sigma(constant(0.5), c);
    CHECK(s.sigma == 0.5);
    CHECK(s.noise_std == 0.5);
    CHECK(detail::evaluate_sigma(constant(0.6), c).sigma == 0.6);  // σ² = 1 − ā_s exactly (rounded)
  }
  SECTION("sigma^2 > 1 - abar_s") {
    CHECK_THROWS_AS(detail::evaluate_sigma(constant(0.625), c), std::domain_error);
    CHECK_THROWS_WITH(detail::evaluate_sigma(constant(0.625), c),
                      Contains("step 3") && Contains("t = 700") && Contains("sigma") && Contains("0.625"));
  }
  SECTION("negative sigma") {
    CHECK_THROWS_AS(detail::evaluate_sigma(constant(-0.25), c), std::domain_error);
    CHECK_THROWS_WITH(detail::evaluate_sigma(constant(-0.25), c),
                      Contains("step 3") && Contains("sigma") && Contains("-0.25"));
  }
  SECTION("NaN and infinite sigma") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(detail::evaluate_sigma(constant(nan), c), std::domain_error);
    CHECK_THROWS_WITH(detail::evaluate_sigma(constant(nan), c), Contains("step 3") && Contains("nan"));
    CHECK_THROWS_AS(detail::evaluate_sigma(constant(std::numeric_limits<double>::infinity()), c), std::domain_error);
  }
  SECTION("sigma_choice with a bad noise std") {
    const auto bad = [](const step_context&) { return sigma_choice{0.1, -0.5}; };
    CHECK_THROWS_AS(detail::evaluate_sigma(bad, c), std::domain_error);
    CHECK_THROWS_WITH(detail::evaluate_sigma(bad, c), Contains("step 3") && Contains("noise_std") && Contains("-0.5"));
  }
  SECTION("rounding above 1 - abar_s is tolerated (relative 1e-12), a real excess is not") {
    const double room = 1.0 - 0.64;
    CHECK_NOTHROW(detail::evaluate_sigma(constant(std::sqrt(room) * (1.0 + 1e-14)), c));
    CHECK_THROWS_AS(detail::evaluate_sigma(constant(std::sqrt(room) * (1.0 + 1e-9)), c), std::domain_error);
  }
}

TEST_CASE("eta > 1 is legal only while sigma^2 <= 1 - abar_s holds at every step", "[sigma]") {
  const auto sched = noise_schedule<>::linear(1000);
  // N = T: at t = 1, β = 1 − ā_1/ā_0 ≈ 1.2e-4 and 1 − ā_1 ≈ 2.2e-4, so η = 2 gives σ² = 4β̃ > 1 − ā_0.
  CHECK_THROWS_AS(ddim_sampler(sched, timestep_schedule::leading(1000, 1000), eta{2.0}), std::domain_error);
  // In general: legal iff η²·(1 − ā_k/ā_s)/(1 − ā_k) ≤ 1 at every step (σ² = η²β̃ = η²(1−ā_s)β/(1−ā_k)).
  std::size_t legal_count = 0, illegal_count = 0;
  for (const auto& ts : {timestep_schedule::linspace(1000, 10), timestep_schedule::trailing(1000, 25),
                         timestep_schedule::leading(1000, 50)}) {
    for (double e : {1.0, 1.0001, 1.01, 1.2, 1.5}) {
      bool legal = true;
      for (std::size_t i = 0; i + 1 < ts.size(); ++i) {
        const double ak = sched.alpha_cumprod(static_cast<std::size_t>(ts[i]));
        const double as = sched.alpha_cumprod(static_cast<std::size_t>(ts[i + 1]));
        if (e * e * (as - ak) / (as * (1.0 - ak)) > 1.0 + 1e-9) legal = false;
      }
      (legal ? legal_count : illegal_count)++;
      INFO("N = " << ts.size() << ", eta = " << e << ", expected legal = " << legal);
      if (legal)
        CHECK_NOTHROW(ddim_sampler(sched, ts, eta{e}));
      else
        CHECK_THROWS_AS(ddim_sampler(sched, ts, eta{e}), std::domain_error);
    }
  }
  CHECK(legal_count > 3);  // both outcomes are exercised
  CHECK(illegal_count > 3);
}
