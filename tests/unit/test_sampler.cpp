// The sampling loop: callbacks and cancellation, img2img starts, inversion round trips with an exact predictor,
// and zero heap allocations per run once a workspace exists.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "count_allocations.hpp"
#include "skipstep/skipstep.hpp"

using skipstep_test::allocations;

using namespace skipstep;

namespace {

/// Exact ε-predictor for data x0 ~ N(mu, s²) i.i.d. per element: x_t ~ N(√a·mu, v), v = a·s² + 1 − a, and
/// ε*(x, t) = −√(1−a)·∇log p_t(x) = √(1−a)·(x − √a·mu)/v.
struct gaussian_oracle {
  const noise_schedule<double>* schedule;
  double mu, s;
  void operator()(const std::vector<double>& x, std::int64_t t, std::span<double> out) const {
    const double a = schedule->alpha_cumprod(static_cast<std::size_t>(t));
    const double v = a * s * s + 1.0 - a;
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = std::sqrt(1.0 - a) * (x[i] - std::sqrt(a) * mu) / v;
  }
};

}  // namespace

TEST_CASE("callback sees every step and can cancel", "[sampler]") {
  const auto schedule = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::trailing(1000, 10);
  ddim_sampler s(schedule, ts, eta{0.0});
  std::vector<double> x(16, 0.3);
  const gaussian_oracle model{&schedule, 0.5, 0.1};
  std::vector<std::int64_t> seen;
  const auto result = s.sample(model, x, no_noise{}, [&](const step_info& info, std::span<const double> xs,
                                                          std::span<const double> x0) {
    REQUIRE(info.step_index == seen.size());
    REQUIRE(info.num_steps == 10);
    REQUIRE(xs.size() == 16);
    REQUIRE(x0.size() == 16);
    seen.push_back(info.timestep);
    return info.step_index < 3;  // cancel after the 4th step
  });
  REQUIRE(result.cancelled);
  REQUIRE(result.steps_run == 4);
  REQUIRE(seen == std::vector<std::int64_t>{999, 899, 799, 699});
}

TEST_CASE("the callback's x0 is the processed prediction of that step", "[sampler]") {
  const auto schedule = noise_schedule<>::linear(1000);
  const gaussian_oracle model{&schedule, 0.5, 0.1};
  sampler_options opt;
  opt.processing = x0_processing::clip(0.55);
  ddim_sampler s(schedule, timestep_schedule::leading(1000, 5), eta{0.0}, opt);
  std::vector<double> x(8, 2.0);
  s.sample(model, x, no_noise{}, [&](const step_info&, std::span<const double>, std::span<const double> x0) {
    for (double v : x0) REQUIRE(std::abs(v) <= 0.55);
  });
}

TEST_CASE("img2img: strength picks the first step and add_noise makes its input", "[sampler]") {
  REQUIRE(first_step_for_strength(50, 1.0) == 0);
  REQUIRE(first_step_for_strength(50, 0.8) == 10);
  REQUIRE(first_step_for_strength(50, 0.0) == 50);
  REQUIRE_THROWS_AS(first_step_for_strength(50, 1.5), std::invalid_argument);

  const auto schedule = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::trailing(1000, 50);
  ddim_sampler s(schedule, ts, eta{0.0});
  const std::size_t first = first_step_for_strength(ts.size(), 0.6);
  const std::vector<double> clean(32, 0.5), noise(32, 0.25);
  std::vector<double> x(32);
  add_noise<double, double>(schedule, clean, noise, ts[first], x);
  REQUIRE(x[0] == Approx(schedule.sqrt_alpha_cumprod(static_cast<std::size_t>(ts[first])) * 0.5 +
                         schedule.sqrt_one_minus_alpha_cumprod(static_cast<std::size_t>(ts[first])) * 0.25));
  const gaussian_oracle model{&schedule, 0.5, 0.01};
  std::size_t calls = 0;
  const auto r = s.sample(model, x, no_noise{}, [&](const step_info& info, auto, auto) {
    if (calls++ == 0) REQUIRE(info.step_index == first);
  }, first);
  REQUIRE(r.steps_run == ts.size() - first);
  // Data with std 0.01 around 0.5: the deterministic run lands near 0.5.
  for (double v : x) REQUIRE(std::abs(v - 0.5) < 0.05);
}

TEST_CASE("DDIM inversion then DDIM sampling reconstructs x0 with an exact predictor", "[sampler][inversion]") {
  // With an exact ε the only error is the discretization: each inversion step evaluates ε at the source sample
  // with the target's timestep (it cannot know the target sample), a local error O(h²), so the round trip is
  // first order: the error falls like 1/N. Measured (max over 64 elements): N=10 0.149, 50 0.0451, 250 0.00983,
  // 1000 0.00250.
  const auto schedule = noise_schedule<>::linear(1000);
  const gaussian_oracle model{&schedule, 0.3, 0.2};
  std::vector<double> x0(64);
  for (std::size_t i = 0; i < x0.size(); ++i) x0[i] = 0.3 + 0.2 * std::sin(0.7 * static_cast<double>(i));
  double previous = INFINITY;
  std::size_t previous_n = 0;
  for (std::size_t n : {10u, 50u, 250u, 1000u}) {
    const auto ts = timestep_schedule::leading(1000, n);
    std::vector<double> x = x0;
    ddim_inverse_sampler(schedule, ts).sample(model, x);
    // The inverted sample is noise-like: far from x0.
    double moved = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) moved = std::max(moved, std::abs(x[i] - x0[i]));
    REQUIRE(moved > 0.1);
    ddim_sampler(schedule, ts, eta{0.0}).sample(model, x);
    double err = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) err = std::max(err, std::abs(x[i] - x0[i]));
    UNSCOPED_INFO("N = " << n << ": max |reconstruction - x0| = " << err);
    WARN("inversion round trip, N = " << n << ": max reconstruction error " << err);
    REQUIRE(err < previous);  // converges with N
    if (n >= 250) {
      // First order: err ∝ 1/N within ±30 %.
      const double expected_ratio = static_cast<double>(previous_n) / static_cast<double>(n);
      REQUIRE(err / previous == Approx(expected_ratio).epsilon(0.3));
    }
    previous = err;
    previous_n = n;
  }
}

TEST_CASE("no heap allocation inside a run once the workspace exists", "[sampler][allocation]") {
  const auto schedule = noise_schedule<>::scaled_linear(1000);
  sampler_options opt;
  opt.num_samples = 4;
  opt.processing = x0_processing::dynamic_threshold(0.95, 2.0);
  ddim_sampler s(schedule, timestep_schedule::trailing(1000, 50), eta{1.0}, opt);
  std::vector<double> x(4 * 112, 0.1);
  sampler_workspace<double> ws(x.size());
  const gaussian_oracle model{&schedule, 0.0, 1.0};
  const philox_normal rng(123);
  std::size_t steps = 0;
  auto callback = [&](const step_info&, std::span<const double>, std::span<const double>) { ++steps; };
  s.sample(model, x, rng, ws, callback);  // warm-up
  const long before = allocations.load();
  const auto r = s.sample(model, x, rng, ws, callback);
  const long during = allocations.load() - before;
  REQUIRE(r.steps_run == 50);
  REQUIRE(during == 0);

  // The same with the opt-in thread pool, on a tensor large enough to use it.
  thread_pool pool(2);
  std::vector<double> big(4 * 32768, 0.1);
  sampler_workspace<double> threaded(big.size(), &pool);
  s.sample(model, big, rng, threaded, callback);  // warm-up
  const long before_threaded = allocations.load();
  s.sample(model, big, rng, threaded, callback);
  REQUIRE(allocations.load() - before_threaded == 0);
}

TEST_CASE("a stochastic sampler without a noise source is an error", "[sampler][errors]") {
  const auto schedule = noise_schedule<>::linear(1000);
  ddim_sampler s(schedule, timestep_schedule::leading(1000, 10), eta{0.5});
  REQUIRE(s.is_stochastic());
  std::vector<double> x(4, 0.0);
  const gaussian_oracle model{&schedule, 0.0, 1.0};
  REQUIRE_THROWS_WITH(s.sample(model, x), Catch::Contains("sampler::sample") && Catch::Contains("noise"));
  REQUIRE_FALSE(ddim_sampler(schedule, timestep_schedule::leading(1000, 10), eta{0.0}).is_stochastic());
}

TEST_CASE("the opt-in finite check names the step and timestep of a NaN model output", "[sampler][errors]") {
  const auto schedule = noise_schedule<>::linear(1000);
  sampler_options opt;
  opt.check_finite = true;
  ddim_sampler s(schedule, timestep_schedule::leading(1000, 10), eta{0.0}, opt);
  std::vector<double> x(6, 0.1);
  auto poisoned = [](const std::vector<double>& in, std::int64_t t) {
    std::vector<double> o(in.size(), 0.0);
    if (t == 500) o[4] = NAN;
    return o;
  };
  REQUIRE_THROWS_WITH(s.sample(poisoned, x),
                      Catch::Contains("model output at step 4 (t = 500), element 4") && Catch::Contains("nan"));
  // Off by default: the NaN flows through (documented), nothing throws.
  std::vector<double> y(6, 0.1);
  ddim_sampler unchecked(schedule, timestep_schedule::leading(1000, 10), eta{0.0});
  REQUIRE_NOTHROW(unchecked.sample(poisoned, y));
  REQUIRE(std::isnan(y[4]));
}

TEST_CASE("learned-variance DDPM: [m; v] outputs reproduce the fixed variance types at their end points",
          "[sampler][ddpm]") {
  // learned_range interpolates log-variances: v = -1 gives the posterior variance (fixed_small), v = +1 gives beta
  // (fixed_large); learned with v = the posterior variance is fixed_small too (Nichol & Dhariwal 2021, eq. 15).
  const auto schedule = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::trailing(1000, 25);
  sampler_options opt;
  opt.num_samples = 2;
  constexpr std::size_t per = 16;
  const gaussian_oracle eps{&schedule, 0.2, 0.3};
  auto learned_model = [&](double v_value) {
    return [&eps, v_value](const std::vector<double>& x, std::int64_t t, std::span<double> out) {
      std::vector<double> m(x.size());
      eps(x, t, std::span<double>(m));
      for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t k = 0; k < per; ++k) {
          out[2 * b * per + k] = m[b * per + k];
          out[2 * b * per + per + k] = v_value;
        }
    };
  };
  std::vector<double> start(2 * per);
  for (std::size_t i = 0; i < start.size(); ++i) start[i] = std::cos(0.9 * static_cast<double>(i));
  const philox_normal rng(77);
  auto run = [&](variance_type type, auto model) {
    std::vector<double> x = start;
    const ddpm_sampler s(schedule, ts, type, opt);
    auto ws = s.make_workspace(x);
    s.sample(model, x, rng, ws);
    return x;
  };
  const auto small = run(variance_type::fixed_small, eps);
  const auto large = run(variance_type::fixed_large, eps);
  const auto range_low = run(variance_type::learned_range, learned_model(-1.0));
  const auto range_high = run(variance_type::learned_range, learned_model(1.0));
  for (std::size_t i = 0; i < small.size(); ++i) {
    REQUIRE(range_low[i] == Approx(small[i]).epsilon(1e-12));
    REQUIRE(range_high[i] == Approx(large[i]).epsilon(1e-12));
  }
  REQUIRE(small != large);  // the two end points really differ
}

#include "skipstep/schedule/flow_grid.hpp"
#include "skipstep/solver/consistency.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/dpm_solver_singlestep.hpp"
#include "skipstep/solver/euler.hpp"
#include "skipstep/solver/ipndm.hpp"
#include "skipstep/solver/pndm.hpp"
#include "skipstep/solver/unipc.hpp"

TEST_CASE("no heap allocation inside a run of any solver once the workspace exists", "[sampler][allocation]") {
  const auto schedule = noise_schedule<>::scaled_linear(1000);
  const sigma_grid grid = make_sigma_grid(schedule, 20);
  const sigma_grid multistep = make_multistep_grid(schedule, 20);
  sampler_options two;
  two.num_samples = 2;
  dpm_solver_options third;
  third.order = 3;
  dpm_solver_options sde;
  sde.algorithm = dpm_algorithm::sde_dpmsolver_pp;
  const std::vector<std::int64_t> lcm_times = consistency_timesteps(1000, 4);
  std::vector<const sampler*> samplers;
  const euler_sampler euler(grid, two);
  const euler_ancestral_sampler ancestral(grid, 1.0, two);
  const heun_sampler heun(grid, two);
  const dpm_solver_sampler dpm3(multistep, third, two), dpm_sde(multistep, sde, two);
  const unipc_sampler unipc(multistep, {}, two);
  const deis_sampler deis(multistep, {}, two);
  const dpm_solver_singlestep_sampler single(multistep, {}, two);
  const pndm_sampler pndm(schedule, 20, true, timestep_spacing::leading, 1, final_alpha::alpha_cumprod_0, two);
  const lcm_sampler lcm(schedule, lcm_times, 10.0, two);
  for (const sampler* s : std::initializer_list<const sampler*>{&euler, &ancestral, &heun, &dpm3, &dpm_sde, &unipc,
                                                                 &deis, &single, &pndm, &lcm}) {
    std::vector<double> x(2 * 112, 0.1);
    sampler_workspace<double> ws = s->make_workspace(x);
    auto model = [&](const std::vector<double>& v, double t, std::span<double> out) {
      const double a = schedule.alpha_cumprod(static_cast<std::size_t>(std::clamp(t, 0.0, 999.0)));
      for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::sqrt(1.0 - a) * (v[i] - std::sqrt(a) * 0.5) / (a * 0.01 + 1.0 - a);
    };
    const philox_normal rng(3);
    std::size_t steps = 0;
    auto callback = [&](const step_info&, std::span<const double>, std::span<const double>) { ++steps; };
    INFO("rows " << s->rows().size() << " history " << s->history_slots() << " stochastic " << s->is_stochastic());
    s->sample(model, x, rng, ws, callback);  // warm-up: sizes the workspace's history and state once
    const long before = allocations.load();
    const auto r = s->sample(model, x, rng, ws, callback);
    CHECK(r.steps_run == s->num_steps());
    CHECK(allocations.load() - before == 0);
  }
}
