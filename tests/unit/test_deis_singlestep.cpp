// DEIS and single-step DPM-Solver against identities and exact solutions: order 1 of either is DDIM with η = 0 on
// the same levels; on Gaussian data (where ε̂ and the probability-flow ODE's solution are exact) the k-th order
// methods converge at order k; the single-step order lists follow diffusers' rules; and their bad inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "check_error.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver_singlestep.hpp"

using namespace skipstep;

namespace {

constexpr double mu = 0.5, sd = 0.2;  // the data: N(mu, sd²) per element

/// The exact ε̂ of Gaussian data at the level whose σ̃ is the model time (the grids below pass σ̃ as the time):
/// ε̂ = σ·(x − α·mu)/(α²·sd² + σ²).
void gaussian_eps_at_level(const std::vector<double>& x, double sigma_tilde, std::span<double> out) {
  const level l = level::from_sigma_tilde(sigma_tilde);
  const double d = l.alpha * l.alpha * sd * sd + l.sigma * l.sigma;
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = l.sigma * (x[i] - l.alpha * mu) / d;
}

/// The same data with the level from an integer training timestep of `schedule` (for DDIM comparisons).
struct gaussian_eps_table {
  const noise_schedule<double>* schedule;
  void operator()(const std::vector<double>& x, double t, std::span<double> out) const {
    gaussian_eps_at_level(x, detail::interp_table(vp_sigmas(*schedule), t), out);
  }
};

std::vector<double> start(std::size_t n) {
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(1.7 * static_cast<double>(i)) * 1.1;
  return x;
}

/// N + 1 levels uniform in λ = −log σ̃ from σ̃ = 12 to 0.05, with σ̃ itself as the model time.
sigma_grid lambda_grid(std::size_t n) {
  sigma_grid g;
  for (std::size_t i = 0; i <= n; ++i)
    g.sigmas.push_back(std::exp(std::log(12.0) + static_cast<double>(i) / static_cast<double>(n) *
                                                     (std::log(0.05) - std::log(12.0))));
  g.timesteps.assign(g.sigmas.begin(), g.sigmas.end() - 1);
  return g;
}

/// The exact flow of the probability-flow ODE for Gaussian data from level a to level b:
/// x_b − α_b·mu = √(α_b²sd² + σ_b²)/√(α_a²sd² + σ_a²)·(x_a − α_a·mu).
std::vector<double> exact_flow(std::vector<double> x, double from, double to) {
  const level a = level::from_sigma_tilde(from), b = level::from_sigma_tilde(to);
  const double g = std::sqrt(b.alpha * b.alpha * sd * sd + b.sigma * b.sigma) /
                   std::sqrt(a.alpha * a.alpha * sd * sd + a.sigma * a.sigma);
  for (double& v : x) v = b.alpha * mu + g * (v - a.alpha * mu);
  return x;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

template <class Make>
std::vector<double> errors_for(Make make, std::initializer_list<std::size_t> ns) {
  std::vector<double> out;
  for (std::size_t n : ns) {
    const sigma_grid g = lambda_grid(n);
    std::vector<double> x = start(16);
    const std::vector<double> exact = exact_flow(x, g.sigmas.front(), g.sigmas.back());
    make(g).sample(gaussian_eps_at_level, x);
    out.push_back(max_diff(x, exact));
  }
  return out;
}

}  // namespace

TEST_CASE("DEIS and single-step DPM-Solver of order 1 are DDIM with eta = 0 on the same levels", "[solvers][deis]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 20);  // integer times, levels of the table, final level 0
  std::vector<std::int64_t> ts;
  for (double t : g.timesteps) ts.push_back(static_cast<std::int64_t>(t));
  const ddim_sampler ddim(sched, timestep_schedule::custom(1000, ts));
  const gaussian_eps_table model{&sched};
  auto model_int = [&](const std::vector<double>& x, std::int64_t t, std::span<double> out) {
    model(x, static_cast<double>(t), out);
  };
  std::vector<double> ref = start(32);
  ddim.sample(model_int, ref);
  deis_options d;
  d.order = 1;
  std::vector<double> a = start(32);
  deis_sampler(g, d).sample(model, a);
  CHECK(max_diff(a, ref) <= 1e-12);
  for (dpm_algorithm alg : {dpm_algorithm::dpmsolver_pp, dpm_algorithm::dpmsolver}) {
    dpm_singlestep_options o;
    o.order = 1;
    o.algorithm = alg;
    std::vector<double> b = start(32);
    dpm_solver_singlestep_sampler(g, o).sample(model, b);
    CHECK(max_diff(b, ref) <= 1e-11);
  }
}

TEST_CASE("DEIS's step of order k has local error O(h^(k+1)) from exact history", "[solvers][deis]") {
  // Levels ρ_{s2} > ρ_{s1} > ρ_{s0} > ρ_t uniform in log ρ with spacing h; the history holds the exact ε̂ on the
  // exact trajectory, so the row's error is the rule's local truncation error.
  for (int order : {1, 2, 3}) {
    std::vector<double> err;
    for (double h : {0.2, 0.1, 0.05}) {
      sigma_grid g;
      for (int j = 0; j < 4; ++j) g.sigmas.push_back(2.0 * std::exp(-h * j));
      g.timesteps.assign(g.sigmas.begin(), g.sigmas.end() - 1);
      deis_options o;
      o.order = order;
      o.lower_order_final = false;
      const deis_sampler s(g, o);
      const solver_row& row = s.rows()[2];
      REQUIRE(row.extras.history_reads == static_cast<std::size_t>(order - 1));
      const std::vector<double> x_start = start(12);
      std::vector<double> x = exact_flow(x_start, g.sigmas[0], g.sigmas[2]), m(x.size());
      gaussian_eps_at_level(x, g.sigmas[2], m);
      std::vector<std::vector<double>> ring(std::max<std::size_t>(s.history_slots(), 1), std::vector<double>(x.size()));
      for (std::size_t j = 0; j < row.extras.history_reads; ++j) {
        const std::size_t at = 1 - j;  // reads ε̂ at steps 1, 0
        gaussian_eps_at_level(exact_flow(x_start, g.sigmas[0], g.sigmas[at]), g.sigmas[at],
                              ring[row.extras.history[j].slot]);
      }
      std::vector<double*> ptrs;
      for (auto& b : ring) ptrs.push_back(b.data());
      std::vector<double> scratch(x.size());
      no_noise quiet;
      const std::vector<double> exact = exact_flow(x, g.sigmas[2], g.sigmas[3]);
      detail::apply_row_range(s.coefficients()[2], row.extras, x.data(), m.data(), static_cast<double*>(nullptr),
                              ptrs.data(), x.size(), s.options().processing, quiet, 2,
                              static_cast<double*>(nullptr), scratch.data(), 0, 1);
      err.push_back(max_diff(x, exact));
    }
    const double p = std::log2(err[1] / err[2]);
    INFO("order " << order << ": local errors " << err[0] << ", " << err[1] << ", " << err[2] << "; observed " << p);
    CHECK(p > order + 1 - 0.3);
    CHECK(p < order + 1 + 0.7);
  }
}

TEST_CASE("DEIS converges at orders 1 and 2, order 3 faster than order 2 (exact Gaussian data)", "[solvers][deis]") {
  // Globally, the warm-up's first-order step (diffusers' order min(i + 1, order)) adds O(h²), so order 3 is
  // bounded by 2 asymptotically; its local order is checked above.
  std::vector<double> last;
  for (int order : {1, 2, 3}) {
    deis_options o;
    o.order = order;
    const auto e = errors_for([&](const sigma_grid& g) { return deis_sampler(g, o); }, {32, 64, 128});
    const double p = std::log2(e[1] / e[2]);
    INFO("order " << order << ": errors " << e[0] << ", " << e[1] << ", " << e[2] << "; observed " << p);
    if (order < 3) {
      CHECK(p > order - 0.3);
      CHECK(p < order + 0.7);
    } else {
      CHECK(p > 2.0 - 0.3);
      for (std::size_t j = 0; j < e.size(); ++j) CHECK(e[j] < last[j]);
    }
    last = e;
  }
}

TEST_CASE("single-step DPM-Solver(++) converges at orders 1, 2 and 3 on exact Gaussian data", "[solvers][deis]") {
  for (dpm_algorithm alg : {dpm_algorithm::dpmsolver_pp, dpm_algorithm::dpmsolver})
    for (dpm_solver_type type : {dpm_solver_type::midpoint, dpm_solver_type::heun})
      for (int order : {1, 2, 3}) {
        dpm_singlestep_options o;
        o.algorithm = alg;
        o.solver_type = type;
        o.order = order;
        const auto e =
            errors_for([&](const sigma_grid& g) { return dpm_solver_singlestep_sampler(g, o); }, {24, 48, 96});
        const double p1 = std::log2(e[0] / e[1]), p2 = std::log2(e[1] / e[2]);
        INFO("algorithm " << static_cast<int>(alg) << ", type " << static_cast<int>(type) << ", order " << order
                          << ": errors " << e[0] << ", " << e[1] << ", " << e[2] << "; observed " << p1 << ", " << p2);
        CHECK(p2 > order - 0.3);
        CHECK(p2 < order + 0.7);
      }
}

TEST_CASE("single-step order lists follow diffusers' get_order_list and set_timesteps' switch", "[solvers][deis]") {
  using v = std::vector<int>;
  CHECK(dpm_singlestep_order_list(20, 3, false, true) == v{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 1});
  CHECK(dpm_singlestep_order_list(9, 2, true, false) == v{1, 2, 1, 2, 1, 2, 1, 2, 1});
  CHECK(dpm_singlestep_order_list(10, 2, false, false) == v{1, 2, 1, 2, 1, 2, 1, 2, 1, 2});  // kept: N % 2 = 0
  CHECK(dpm_singlestep_order_list(10, 2, false, true) == v{1, 2, 1, 2, 1, 2, 1, 2, 1, 1});   // switched: σ = 0
  CHECK(dpm_singlestep_order_list(7, 2, false, false) == v{1, 2, 1, 2, 1, 2, 1});           // switched: N odd
  CHECK(dpm_singlestep_order_list(6, 3, true, false) == v{1, 2, 3, 1, 2, 1});
  CHECK(dpm_singlestep_order_list(7, 3, true, false) == v{1, 2, 3, 1, 2, 3, 1});
  CHECK(dpm_singlestep_order_list(2, 3, true, false) == v{1, 2});
  CHECK(dpm_singlestep_order_list(1, 2, false, true) == v{1});
  CHECK(dpm_singlestep_order_list(4, 1, false, false) == v{1, 1, 1, 1});
  // The sampler's rows are those blocks: a block start saves S, later rows read it and the block's outputs.
  const auto sched = noise_schedule<>::scaled_linear(1000);
  dpm_singlestep_options o;
  o.order = 3;
  const dpm_solver_singlestep_sampler s(make_multistep_grid(sched, 20), o);
  REQUIRE(s.order_list() == dpm_singlestep_order_list(20, 3, false, true));
  CHECK(s.history_slots() == 2);
  CHECK(s.rows()[0].extras.save_state);
  CHECK(s.rows()[1].extras.state_weight != 0.0);
  CHECK(s.rows()[1].extras.history_reads == 1);
  CHECK(s.rows()[2].extras.history_reads == 2);
  CHECK(s.coefficients()[2].sample_weight == 0.0);  // an order-3 row starts from S, not from x
  CHECK(s.rows()[19].extras.is_plain());
}

TEST_CASE("DEIS ends at sigma = 0 with the weights' limits; thresholding re-derives eps", "[solvers][deis]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  const gaussian_eps_table model{&sched};
  for (int order : {2, 3}) {
    deis_options o;
    o.order = order;
    o.lower_order_final = false;
    const deis_sampler s(make_multistep_grid(sched, 10), o);  // final level 0: diffusers' DEIS cannot end here
    std::vector<double> x = start(16);
    s.sample(model, x);
    for (double v : x) CHECK(std::isfinite(v));
    CHECK(s.rows().back().extras.history_reads == static_cast<std::size_t>(order - 1));
  }
  sampler_options thr;
  thr.processing = x0_processing::dynamic_threshold(0.995, 1.5);
  const deis_sampler t(make_multistep_grid(sched, 10), {}, thr);
  CHECK(t.options().processing.use_clipped_model_output);
  CHECK(t.rows()[3].extras.store_x0 != 0.0);  // ε̂ = (x − α·x̂0)/σ from the processed x̂0
}

TEST_CASE("DEIS and single-step DPM-Solver: bad orders, options and grids", "[solvers][deis][errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 10);
  for (int bad : {0, 4, -1}) {
    deis_options d;
    d.order = bad;
    CHECK_ERROR(deis_sampler(g, d), std::invalid_argument, "deis_sampler", "solver.order",
                "(got " + std::to_string(bad) + ")");
    dpm_singlestep_options o;
    o.order = bad;
    CHECK_ERROR(dpm_solver_singlestep_sampler(g, o), std::invalid_argument, "dpm_solver_singlestep_sampler",
                "solver.order", "(got " + std::to_string(bad) + ")");
    CHECK_ERROR(dpm_singlestep_order_list(10, bad, true, false), std::invalid_argument, "dpm_singlestep_order_list",
                "order", "(got " + std::to_string(bad) + ")");
  }
  CHECK_ERROR(dpm_singlestep_order_list(0, 2, true, false), std::invalid_argument, "dpm_singlestep_order_list",
              "num_steps", "(got 0)");
  dpm_singlestep_options sde;
  sde.algorithm = dpm_algorithm::sde_dpmsolver_pp;
  sde.order = 3;
  CHECK_ERROR(dpm_solver_singlestep_sampler(g, sde), std::invalid_argument, "dpm_solver_singlestep_sampler", "SDE",
              "(got 3)");
  sde.order = 2;
  CHECK(dpm_solver_singlestep_sampler(g, sde).is_stochastic());
  dpm_singlestep_options alg;
  alg.algorithm = static_cast<dpm_algorithm>(7);
  CHECK_ERROR(dpm_solver_singlestep_sampler(g, alg), std::invalid_argument, "dpm_solver_singlestep_sampler",
              "solver.algorithm", "(got 7)");
  dpm_singlestep_options type;
  type.solver_type = static_cast<dpm_solver_type>(5);
  CHECK_ERROR(dpm_solver_singlestep_sampler(g, type), std::invalid_argument, "dpm_solver_singlestep_sampler",
              "solver.solver_type", "(got 5)");
  sampler_options clip;
  clip.processing = x0_processing::clip();
  CHECK_ERROR(deis_sampler(g, {}, clip), std::invalid_argument, "deis_sampler", "options.processing", "clip");
  CHECK_ERROR(dpm_solver_singlestep_sampler(g, {}, clip), std::invalid_argument, "dpm_solver_singlestep_sampler",
              "options.processing", "clip");
  sampler_options flow;
  flow.prediction = prediction_type::flow;
  CHECK_ERROR(deis_sampler(g, {}, flow), std::invalid_argument, "deis_sampler", "options.prediction", "flow");
  CHECK_ERROR(dpm_solver_singlestep_sampler(g, {}, flow), std::invalid_argument, "dpm_solver_singlestep_sampler",
              "options.prediction", "flow");
  // A repeated level that a higher-order step fits through.
  sigma_grid rep = g;
  rep.sigmas[2] = rep.sigmas[1];
  CHECK_ERROR(deis_sampler{rep}, std::invalid_argument, "deis_sampler", "grid.sigmas[1]", "distinct");
  CHECK_NOTHROW(dpm_solver_singlestep_sampler{rep});  // step 1 lands on the repeat; no block fits through both
  sigma_grid rep0 = g;
  rep0.sigmas[1] = rep0.sigmas[0];  // step 1 (order 2) fits through levels 0 and 1
  CHECK_ERROR(dpm_solver_singlestep_sampler{rep0}, std::invalid_argument, "dpm_solver_singlestep_sampler",
              "grid.sigmas[1]", "must be below");
  sigma_grid up = g;
  up.sigmas[3] = up.sigmas[2] * 2.0;
  CHECK_ERROR(deis_sampler{up}, std::invalid_argument, "deis_sampler", "sigmas[3]", "levels must decrease");
}

TEST_CASE("single-step SDE-DPM-Solver++ adds sigma_t sqrt(1 - e^(-2h)) noise; thresholded DPM-Solver runs",
          "[solvers][deis]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 10);
  dpm_singlestep_options o;
  o.algorithm = dpm_algorithm::sde_dpmsolver_pp;
  o.order = 2;
  const dpm_solver_singlestep_sampler s(g, o);
  REQUIRE(s.is_stochastic());
  for (std::size_t i = 0; i < g.size(); ++i) {
    const std::size_t b = i + 1 - static_cast<std::size_t>(s.order_list()[i]);  // the block's start level
    const level t = level::from_sigma_tilde(g.sigmas[i + 1]), from = level::from_sigma_tilde(g.sigmas[b]);
    const double h = (t.sigma == 0.0 ? INFINITY : t.lambda()) - from.lambda();
    CHECK(s.coefficients()[i].noise_std == Approx(t.sigma * std::sqrt(-std::expm1(-2.0 * h))).epsilon(1e-12));
  }
  // DPM-Solver (ε) with thresholding: ε̂ re-derived from the processed x̂0, and a finite run to σ = 0.
  sampler_options thr;
  thr.processing = x0_processing::dynamic_threshold(0.995, 1.5);
  dpm_singlestep_options e;
  e.algorithm = dpm_algorithm::dpmsolver;
  e.order = 3;
  const dpm_solver_singlestep_sampler es(g, e, thr);
  CHECK(es.options().processing.use_clipped_model_output);
  const gaussian_eps_table model{&sched};
  std::vector<double> x = start(16);
  es.sample(model, x);
  for (double v : x) CHECK(std::isfinite(v));
}
