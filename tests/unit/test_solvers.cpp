// The solver engine's σ-space and flow solvers against identities: Euler on a VP grid at integer timesteps is DDIM
// with η = 0 on the same levels; Euler ancestral at η = 0 is Euler; Heun is second order where Euler is first; the
// flow Euler step moves by (s' − s)·û exactly; and their bad inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "check_error.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/schedule/flow_grid.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"

using namespace skipstep;

namespace {

/// ε of Gaussian data N(mu, s²) under x_t = α·x0 + σ·ε, exactly: ε̂ = σ·(x − α·mu)/(α²s² + σ²) (per element).
struct gaussian_eps {
  double mu = 0.5, s = 0.2;
  const std::vector<double>* alpha_of_t = nullptr;  // not used: the level comes from the time (VP table)
  const noise_schedule<double>* schedule = nullptr;
  void operator()(const std::vector<double>& x, double t, std::span<double> out) const {
    const std::vector<double> table = vp_sigmas(*schedule);
    const double st = detail::interp_table(table, t);
    const level l = level::from_sigma_tilde(st);
    for (std::size_t i = 0; i < x.size(); ++i)
      out[i] = l.sigma * (x[i] - l.alpha * mu) / (l.alpha * l.alpha * s * s + l.sigma * l.sigma);
  }
};

std::vector<double> start(std::size_t n) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(1.7 * static_cast<double>(i)) * 1.1;
  return x;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

}  // namespace

TEST_CASE("Euler on a VP sigma grid at integer timesteps equals DDIM with eta = 0 on the same levels", "[solvers]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  for (auto spacing : {timestep_spacing::leading, timestep_spacing::trailing}) {
    sigma_grid_options o;
    o.spacing = spacing;
    const sigma_grid g = make_sigma_grid(sched, 20, o);
    std::vector<std::int64_t> ts;
    for (double t : g.timesteps) ts.push_back(static_cast<std::int64_t>(t));
    const ddim_sampler ddim(sched, timestep_schedule::custom(1000, ts));
    const euler_sampler euler(g);
    const gaussian_eps model{0.5, 0.2, nullptr, &sched};
    auto model_int = [&](const std::vector<double>& x, std::int64_t t, std::span<double> out) {
      model(x, static_cast<double>(t), out);
    };
    std::vector<double> a = start(64), b = a;
    ddim.sample(model_int, a);
    euler.sample(model, b);
    CHECK(max_diff(a, b) <= 1e-12);
    // An integer-time predictor works on this integral grid, too.
    std::vector<double> c = start(64);
    euler.sample(model_int, c);
    CHECK(c == b);
  }
}

TEST_CASE("Euler ancestral with eta = 0 is Euler; eta = 1 adds noise of std alpha' sigma_up", "[solvers]") {
  const auto sched = noise_schedule<>::linear(1000);
  const sigma_grid g = make_sigma_grid(sched, 12);
  const euler_sampler euler(g);
  const euler_ancestral_sampler ea0(g, 0.0), ea1(g, 1.0);
  CHECK_FALSE(ea0.is_stochastic());
  CHECK(ea1.is_stochastic());
  const gaussian_eps model{0.1, 0.7, nullptr, &sched};
  std::vector<double> a = start(40), b = a;
  euler.sample(model, a);
  ea0.sample(model, b);
  CHECK(max_diff(a, b) <= 1e-12);
  for (std::size_t i = 0; i + 1 < g.size(); ++i) {
    const double s = g.sigmas[i], s1 = g.sigmas[i + 1];
    const double up = std::sqrt(s1 * s1 * (s * s - s1 * s1) / (s * s));
    CHECK(ea1.coefficients()[i].noise_std == Approx(level::from_sigma_tilde(s1).alpha * up).epsilon(1e-14));
  }
}

TEST_CASE("Heun is second order where Euler is first order (exact Gaussian data)", "[solvers]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  const gaussian_eps model{0.5, 0.2, nullptr, &sched};
  // Reference: a very fine Heun run.
  std::vector<double> ref = start(16);
  heun_sampler(make_sigma_grid(sched, 800)).sample(model, ref);
  double prev_euler = 0.0, prev_heun = 0.0;
  for (std::size_t n : {25, 50, 100}) {
    sigma_grid_options o;
    o.levels = sigma_spacing::karras;
    const sigma_grid g = make_sigma_grid(sched, n, o);
    std::vector<double> e = start(16), h = e;
    euler_sampler(g).sample(model, e);
    const heun_sampler heun(g);
    REQUIRE(heun.rows().size() == 2 * n - 1);
    heun.sample(model, h);
    const double de = max_diff(e, ref), dh = max_diff(h, ref);
    CHECK(dh < de);
    if (prev_euler > 0.0) {
      CHECK(prev_euler / de > 1.6);  // first order: error halves
      CHECK(prev_heun / dh > 2.5);   // second order: error quarters
    }
    prev_euler = de;
    prev_heun = dh;
  }
}

TEST_CASE("flow Euler moves by (s' - s) times the velocity", "[solvers]") {
  flow_grid_options o;
  o.shift = 3.0;
  const sigma_grid g = make_flow_grid(8, o);
  const flow_euler_sampler s(g);
  const double u = 0.25;
  auto velocity = [&](const std::vector<double>& x, double, std::span<double> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = u;
  };
  std::vector<double> x = start(10), x0 = x;
  s.sample(velocity, x);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(x[i] == Approx(x0[i] + (0.0 - 1.0) * u).epsilon(1e-13));
  CHECK_FALSE(s.is_stochastic());
  CHECK(flow_euler_sampler(g, {}, true).is_stochastic());
}

TEST_CASE("sigma-space solvers: bad grids, options and integer predictors on fractional grids", "[solvers][errors]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  sigma_grid_options o;
  o.levels = sigma_spacing::karras;
  const sigma_grid g = make_sigma_grid(sched, 10, o);
  const euler_sampler euler(g);
  std::vector<double> x = start(8);
  auto integer_model = [](const std::vector<double>& v, std::int64_t) { return v; };
  CHECK_ERROR(euler.sample(integer_model, x), std::invalid_argument, "euler_sampler::sample", "fractional",
              "step 1");
  sigma_grid bad = g;
  bad.sigmas[3] = bad.sigmas[2] * 2.0;
  CHECK_ERROR(euler_sampler{bad}, std::invalid_argument, "euler_sampler", "sigmas[3]", "levels must decrease");
  sampler_options clip;
  clip.processing = x0_processing::clip(1.0);
  CHECK_ERROR(euler_sampler(g, clip), std::invalid_argument, "euler_sampler", "options.processing", "(got 1)");
  CHECK_ERROR(euler_ancestral_sampler(g, -1.0), std::invalid_argument, "euler_ancestral_sampler", "eta", "(got -1)");
  euler_churn churn;
  churn.s_churn = skipstep_test::nan_v;
  CHECK_ERROR(euler_sampler(g, {}, churn), std::invalid_argument, "euler_sampler", "s_churn", "nan");
  sigma_grid flow = make_flow_grid(4);
  flow.sigmas[1] = 1.5;
  CHECK_ERROR(flow_euler_sampler{flow}, std::invalid_argument, "flow_euler_sampler", "grid.sigmas[1]", "(got 1.5)");
}

TEST_CASE("DPM-Solver++ order 1 is DDIM eta = 0; order 2 and 3 converge faster than order 1", "[solvers][dpm]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  const gaussian_eps model{0.5, 0.2, nullptr, &sched};
  const sigma_grid g = make_multistep_grid(sched, 15);
  dpm_solver_options first;
  first.order = 1;
  std::vector<double> a = start(32), b = a, c = a;
  dpm_solver_sampler(g, first).sample(model, a);
  euler_sampler(g).sample(model, b);  // Euler on the same levels is DDIM eta = 0, i.e. first-order DPM-Solver++
  CHECK(max_diff(a, b) <= 1e-12);
  dpm_solver_options noise_space = first;
  noise_space.algorithm = dpm_algorithm::dpmsolver;  // first order in eps is DDIM too
  dpm_solver_sampler(g, noise_space).sample(model, c);
  CHECK(max_diff(a, c) <= 1e-11);
  // Order of convergence against a fine reference.
  std::vector<double> ref = start(32);
  heun_sampler(make_sigma_grid(sched, 600)).sample(model, ref);
  double e1 = 0, e2 = 0, e3 = 0;
  for (int order : {1, 2, 3}) {
    dpm_solver_options o;
    o.order = order;
    o.lower_order_final = false;
    std::vector<double> x = start(32);
    dpm_solver_sampler(make_multistep_grid(sched, 12), o).sample(model, x);
    (order == 1 ? e1 : order == 2 ? e2 : e3) = max_diff(x, ref);
  }
  CHECK(e2 < e1);
  CHECK(e3 < e1);
}

TEST_CASE("DPM-Solver: the plan's history ring and warm-up", "[solvers][dpm]") {
  const auto sched = noise_schedule<>::linear(1000);
  dpm_solver_options o;
  o.order = 3;
  const dpm_solver_sampler s(make_multistep_grid(sched, 20), o);
  REQUIRE(s.history_slots() == 2);
  CHECK(s.rows()[0].extras.history_reads == 0);  // order 1 at step 0
  CHECK(s.rows()[1].extras.history_reads == 1);  // order 2 at step 1
  CHECK(s.rows()[5].extras.history_reads == 2);  // order 3 afterwards
  CHECK(s.rows().back().extras.history_reads == 0);  // a final level 0: first order
  o.algorithm = dpm_algorithm::sde_dpmsolver_pp;
  o.order = 2;
  CHECK(dpm_solver_sampler(make_multistep_grid(sched, 20), o).is_stochastic());
}

TEST_CASE("DPM-Solver: bad orders, algorithms and grids", "[solvers][dpm][errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 10);
  dpm_solver_options o;
  o.order = 4;
  CHECK_ERROR(dpm_solver_sampler(g, o), std::invalid_argument, "dpm_solver_sampler", "solver.order", "(got 4)");
  o.order = 0;
  CHECK_ERROR(dpm_solver_sampler(g, o), std::invalid_argument, "dpm_solver_sampler", "solver.order", "(got 0)");
  o.order = 3;
  o.algorithm = dpm_algorithm::sde_dpmsolver_pp;
  CHECK_ERROR(dpm_solver_sampler(g, o), std::invalid_argument, "dpm_solver_sampler", "SDE", "(got 3)");
  o = {};
  o.algorithm = static_cast<dpm_algorithm>(9);
  CHECK_ERROR(dpm_solver_sampler(g, o), std::invalid_argument, "dpm_solver_sampler", "solver.algorithm", "(got 9)");
  o = {};
  o.solver_type = static_cast<dpm_solver_type>(5);
  CHECK_ERROR(dpm_solver_sampler(g, o), std::invalid_argument, "dpm_solver_sampler", "solver.solver_type", "(got 5)");
  sampler_options clip;
  clip.processing = x0_processing::clip();
  CHECK_ERROR(dpm_solver_sampler(g, {}, clip), std::invalid_argument, "dpm_solver_sampler", "options.processing",
              "clip");
  multistep_grid_options mo;
  mo.lambda_min_clipped = 100.0;
  CHECK_ERROR(make_multistep_grid(sched, 10, mo), std::invalid_argument, "make_multistep_grid",
              "lambda_min_clipped", "(got 100)");
  CHECK_ERROR(make_multistep_flow_grid(10, -1.0), std::invalid_argument, "make_multistep_flow_grid", "flow_shift",
              "(got -1)");
  // A multistep run cannot resume at first_step > 0 from a fresh workspace: it has no history.
  const dpm_solver_sampler s(g);
  const gaussian_eps model{0.5, 0.2, nullptr, &sched};
  std::vector<double> x = start(8);
  sampler_workspace<double> ws(x.size());
  CHECK_ERROR(s.sample(model, x, no_noise{}, ws, no_callback{}, 3), std::invalid_argument, "dpm_solver_sampler::sample",
              "first_step", "(got 3)");
  // ... but resuming the workspace of an interrupted run reproduces the uninterrupted one.
  std::vector<double> full = start(8), part = full;
  s.sample(model, full);
  sampler_workspace<double> ws2(part.size());
  s.sample(model, part, no_noise{}, ws2, [](const step_info& i, auto, auto) { return i.step_index < 4; });
  s.sample(model, part, no_noise{}, ws2, no_callback{}, 5);
  CHECK(part == full);
}

TEST_CASE("DPM-Solver++ runs on a flow grid that starts at pure noise (s = 1)", "[solvers][dpm]") {
  const sigma_grid g = make_flow_grid(10);
  REQUIRE(g.sigmas.front() == 1.0);
  dpm_solver_options o;
  o.path = grid_path::flow;
  sampler_options flow;
  flow.prediction = prediction_type::flow;
  const dpm_solver_sampler s(g, o, flow);
  auto velocity = [](const std::vector<double>& x, double, std::span<double> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.3 - x[i];  // x0 = 0.3 in the flow map (ε = 0)
  };
  std::vector<double> x = start(12);
  s.sample(velocity, x);
  for (double e : x) CHECK(std::isfinite(e));
  CHECK_ERROR(dpm_solver_sampler(sigma_grid{{1.0, 1.0, 0.0}, {1000.0, 999.0}}, o, flow), std::invalid_argument,
              "dpm_solver_sampler", "grid.sigmas[1]", "decreasing");
}
