// UniPC (Zhao et al. 2023; diffusers UniPCMultistepScheduler) against identities: order 1 without the corrector is
// DDIM η = 0 and DPM-Solver++ order 1 on the same levels; the corrector reuses the next evaluation (N model calls
// for N steps); the orders converge as UniP-p and UniPC-p should on Gaussian data, whose probability-flow ODE is
// solved exactly; the limits skipstep takes where diffusers is NaN; and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "check_error.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/schedule/flow_grid.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"
#include "skipstep/solver/unipc.hpp"

using namespace skipstep;

namespace {

/// Gaussian data x0 ~ N(mu, s²) per element: the exact ε̂ at level (α, σ) is σ·(x − α·mu)/(α²s² + σ²), and the
/// probability-flow ODE maps x at level a to α_b·mu + √(α_b²s² + σ_b²)·(x − α_a·mu)/√(α_a²s² + σ_a²) at level b.
struct gaussian {
  double mu = 0.5, s = 0.2;
  [[nodiscard]] double eps(double x, level l) const {
    return l.sigma * (x - l.alpha * mu) / (l.alpha * l.alpha * s * s + l.sigma * l.sigma);
  }
  [[nodiscard]] double flow_to(double x, level a, level b) const {
    return b.alpha * mu + std::sqrt(b.alpha * b.alpha * s * s + b.sigma * b.sigma) * (x - a.alpha * mu) /
                              std::sqrt(a.alpha * a.alpha * s * s + a.sigma * a.sigma);
  }
};

/// ε prediction on a VP table: the level of model time t is the table's σ̃ interpolated at t.
struct table_model {
  gaussian g;
  std::vector<double> table;
  void operator()(const std::vector<double>& x, double t, std::span<double> out) const {
    const level l = level::from_sigma_tilde(detail::interp_table(table, t));
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = g.eps(x[i], l);
  }
};

/// ε prediction where the model time *is* σ̃ (grids built with timesteps = levels).
struct sigma_time_model {
  gaussian g;
  void operator()(const std::vector<double>& x, double t, std::span<double> out) const {
    const level l = level::from_sigma_tilde(t);
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = g.eps(x[i], l);
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

/// N steps log-uniform in λ from σ̃ = 10 to 0.05, model times = levels, ending at 0.05 (no step to 0).
sigma_grid lambda_grid(std::size_t n) {
  sigma_grid g;
  for (std::size_t i = 0; i <= n; ++i)
    g.sigmas.push_back(std::exp(std::log(10.0) + static_cast<double>(i) / static_cast<double>(n) *
                                                     (std::log(0.05) - std::log(10.0))));
  g.timesteps.assign(g.sigmas.begin(), g.sigmas.end() - 1);
  return g;
}

}  // namespace

TEST_CASE("UniPC order 1 without the corrector is DDIM eta = 0 and DPM-Solver++ order 1", "[solvers][unipc]") {
  const auto sched = noise_schedule<>::scaled_linear(1000, 0.00085, 0.012);
  const sigma_grid g = make_multistep_grid(sched, 15);
  const table_model model{{0.5, 0.2}, vp_sigmas(sched)};
  unipc_options first;
  first.order = 1;
  first.use_corrector = false;
  dpm_solver_options dpm1;
  dpm1.order = 1;
  std::vector<double> a = start(32), b = a, c = a, d = a, e = a;
  unipc_sampler(g, first).sample(model, a);
  dpm_solver_sampler(g, dpm1).sample(model, b);
  CHECK(max_diff(a, b) <= 1e-12);
  // DDIM on the grid's integer model times walks the same levels (ā at those times, then ā = 1).
  std::vector<std::int64_t> ts;
  for (double t : g.timesteps) ts.push_back(static_cast<std::int64_t>(t));
  auto model_int = [&](const std::vector<double>& x, std::int64_t t, std::span<double> out) {
    model(x, static_cast<double>(t), out);
  };
  ddim_sampler(sched, timestep_schedule::custom(1000, ts)).sample(model_int, c);
  CHECK(max_diff(a, c) <= 1e-12);
  // bh1 and bh2 differ only in B(h), which order 1 without the corrector never uses; noise prediction too is DDIM.
  unipc_options bh1 = first;
  bh1.variant = unipc_variant::bh1;
  unipc_sampler(g, bh1).sample(model, d);
  CHECK(max_diff(a, d) <= 1e-13);
  unipc_options eps = first;
  eps.predict_x0 = false;
  unipc_sampler(g, eps).sample(model, e);
  CHECK(max_diff(a, e) <= 1e-11);
}

TEST_CASE("UniPC: the corrector costs no model call; the plan's ring, warm-up and state", "[solvers][unipc]") {
  const auto sched = noise_schedule<>::linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 12);
  const table_model model{{0.1, 0.7}, vp_sigmas(sched)};
  for (int order : {1, 2, 3}) {
    unipc_options o;
    o.order = order;
    const unipc_sampler s(g, o);
    REQUIRE(s.rows().size() == g.size());
    CHECK(s.history_slots() == static_cast<std::size_t>(order));
    CHECK_FALSE(s.is_stochastic());
    std::size_t calls = 0;
    auto counting = [&](const std::vector<double>& x, double t, std::span<double> out) {
      ++calls;
      model(x, t, out);
    };
    std::vector<double> x = start(16);
    s.sample(counting, x);
    CHECK(calls == g.size());
    // Step 0 has no corrector and saves x for step 1's; later steps correct into S.
    CHECK(s.rows()[0].extras.save_state);
    CHECK_FALSE(s.rows()[0].extras.combine_state);
    for (std::size_t i = 1; i < g.size(); ++i) CHECK(s.rows()[i].extras.combine_state);
    // Warm-up and lower_order_final: min(p, i + 1, N − i).
    for (std::size_t i = 0; i < g.size(); ++i)
      CHECK(unipc_sampler::predictor_order(o, i, g.size()) ==
            std::min<int>({order, static_cast<int>(i) + 1, static_cast<int>(g.size() - i)}));
  }
  // disable_corrector = {j}: step j + 1 does not correct (it saves x instead of combining, and step j saves nothing).
  unipc_options o;
  o.disable_corrector = {3};
  const unipc_sampler s(g, o);
  CHECK_FALSE(s.rows()[4].extras.combine_state);
  CHECK_FALSE(s.rows()[3].extras.save_state);
  CHECK(s.rows()[4].extras.save_state);
  CHECK(s.rows()[5].extras.combine_state);
  CHECK_FALSE(unipc_sampler::corrects(o, 4));
  // No corrector at all: no saved state.
  unipc_options none;
  none.use_corrector = false;
  const unipc_sampler uncorrected(g, none);
  for (const solver_row& r : uncorrected.rows()) CHECK_FALSE(r.extras.uses_state());
}

TEST_CASE("UniPC converges at UniP-p's and UniPC-p's orders on exact Gaussian data", "[solvers][unipc]") {
  // From σ̃ = 10 to 0.05, log-uniform in λ, against the exact flow of the Gaussian's probability-flow ODE: doubling
  // N divides the error by about 2^q for a method of order q. UniP-p is of order p and UniPC-p of order p + 1 (Zhao
  // et al. 2023, Theorems 3.2 and 3.3).
  const gaussian data{0.5, 0.2};
  const sigma_time_model model{data};
  const auto exact = [&](const sigma_grid& g) {
    std::vector<double> x = start(24);
    const level a = level::from_sigma_tilde(g.sigmas.front()), b = level::from_sigma_tilde(g.sigmas.back());
    for (double& v : x) v = data.flow_to(v, a, b);
    return x;
  };
  const auto error = [&](int order, bool corrector, std::size_t n) {
    unipc_options o;
    o.order = order;
    o.use_corrector = corrector;
    o.lower_order_final = false;
    const sigma_grid g = lambda_grid(n);
    std::vector<double> x = start(24);
    unipc_sampler(g, o).sample(model, x);
    return max_diff(x, exact(g));
  };
  struct expectation {
    int order;
    bool corrector;
    double min_ratio;  // error(N)/error(2N), at least 2^q·0.75 for a method of order q
  };
  for (const expectation& e : {expectation{1, false, 1.5}, expectation{1, true, 3.0}, expectation{2, false, 3.0},
                               expectation{2, true, 6.0}, expectation{3, false, 6.0}, expectation{3, true, 12.0}}) {
    INFO("order " << e.order << (e.corrector ? " with" : " without") << " corrector");
    const double e40 = error(e.order, e.corrector, 40), e80 = error(e.order, e.corrector, 80);
    CHECK(e40 / e80 >= e.min_ratio);
  }
  // The corrector improves every order at the same cost.
  for (int order : {1, 2, 3}) CHECK(error(order, true, 20) < error(order, false, 20));
}

TEST_CASE("UniPC: limits where diffusers gives NaN, refusal where no limit exists", "[solvers][unipc]") {
  const auto sched = noise_schedule<>::scaled_linear(1000, 0.00085, 0.012);
  const sigma_grid g = make_multistep_grid(sched, 10);  // ends at σ = 0
  const table_model model{{0.5, 0.2}, vp_sigmas(sched)};
  for (auto variant : {unipc_variant::bh1, unipc_variant::bh2})
    for (bool x0 : {true, false}) {
      INFO("bh" << (variant == unipc_variant::bh1 ? 1 : 2) << (x0 ? " predict_x0" : " noise prediction"));
      unipc_options o;
      o.variant = variant;
      o.predict_x0 = x0;
      o.use_corrector = x0;  // with noise prediction and no corrector the last step is exactly x̂0 of its input
      std::vector<double> x = start(16), last_x0;
      unipc_sampler(g, o).sample(model, x, no_noise{}, [&](const step_info& i, auto, auto p0) {
        if (i.step_index + 1 == i.num_steps) last_x0.assign(p0.begin(), p0.end());
      });
      for (double v : x) CHECK(std::isfinite(v));
      CHECK(max_diff(x, last_x0) <= 1e-10);  // the limit h → ∞ of order 1 is x̂0
    }
  // Order ≥ 2 on the last step to 0 has no limit: refused, naming the step.
  unipc_options lof;
  lof.lower_order_final = false;
  CHECK_ERROR(unipc_sampler(g, lof), std::invalid_argument, "unipc_sampler: step 9", "solver.order", "(got 2)");
  lof.order = 3;
  CHECK_ERROR(unipc_sampler(g, lof), std::invalid_argument, "unipc_sampler: step 9", "sigma = 0", "(got 3)");
  // ... but a final σ_min keeps every order (and a repeated last level, h = 0, is the identity).
  multistep_grid_options karras;
  karras.levels = sigma_spacing::karras;
  karras.final_level = final_sigma::sigma_min;
  sigma_grid k = make_multistep_grid(sched, 10, karras);
  k.sigmas[10] = k.sigmas[9];  // the Karras ramp ends at σ_min already (diffusers: equal in float32)
  unipc_options plain = lof;
  plain.use_corrector = false;
  std::vector<double> x = start(16), before_last;
  unipc_sampler(k, plain).sample(model, x, no_noise{}, [&](const step_info& i, auto xs, auto) {
    if (i.step_index + 2 == i.num_steps) before_last.assign(xs.begin(), xs.end());
  });
  CHECK(x == before_last);
}

TEST_CASE("UniPC on flow levels with flow prediction (Wan's configuration)", "[solvers][unipc]") {
  sigma_grid g = make_multistep_flow_grid(40, 3.0);
  for (std::size_t i = 0; i < g.size(); ++i) g.timesteps[i] = g.sigmas[i] * 1000.0;  // exact levels for the model
  const gaussian data{0.3, 0.5};
  // Velocity of Gaussian data on the flow path x = (1 − s)·x0 + s·ε: u = ε − x0 with x0, ε the exact posteriors.
  auto velocity = [&](const std::vector<double>& x, double t, std::span<double> out) {
    const level l = level::flow(t / 1000.0);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double e = data.eps(x[i], l);
      out[i] = e - (x[i] - l.sigma * e) / l.alpha;
    }
  };
  unipc_options o;
  o.path = grid_path::flow;
  sampler_options so;
  so.prediction = prediction_type::flow;
  std::vector<double> x = start(16);
  unipc_sampler(g, o, so).sample(velocity, x);
  // The exact flow from the first level to 0: UniPC-2 is closer to it than DPM-Solver++ 2M on the same grid.
  std::vector<double> ref = start(16), dpm = ref;
  for (double& v : ref) v = data.flow_to(v, level::flow(g.sigmas[0]), level::flow(0.0));
  dpm_solver_options d;
  d.path = grid_path::flow;
  dpm_solver_sampler(g, d, so).sample(velocity, dpm);
  CHECK(max_diff(x, ref) <= 5e-3);
  CHECK(max_diff(x, ref) < max_diff(dpm, ref));
  CHECK_ERROR(unipc_sampler(make_multistep_grid(noise_schedule<>::linear(1000), 10), {}, so), std::invalid_argument,
              "unipc_sampler", "options.prediction", "flow");
}

TEST_CASE("UniPC: an interrupted run resumes bit for bit; float samples follow the double run", "[solvers][unipc]") {
  const auto sched = noise_schedule<>::linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 14);
  const table_model model{{0.5, 0.2}, vp_sigmas(sched)};
  unipc_options o;
  o.order = 3;
  const unipc_sampler s(g, o);
  std::vector<double> full = start(8), part = full;
  s.sample(model, full);
  sampler_workspace<double> ws(part.size());
  s.sample(model, part, no_noise{}, ws, [](const step_info& i, auto, auto) { return i.step_index < 4; });
  s.sample(model, part, no_noise{}, ws, no_callback{}, 5);
  CHECK(part == full);
  std::vector<float> xf(8);
  const std::vector<double> x0 = start(8);
  for (std::size_t i = 0; i < xf.size(); ++i) xf[i] = static_cast<float>(x0[i]);
  auto model_f = [&](const std::vector<float>& x, double t, std::span<float> out) {
    const level l = level::from_sigma_tilde(detail::interp_table(model.table, t));
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(model.g.eps(x[i], l));
  };
  s.sample(model_f, xf);
  for (std::size_t i = 0; i < xf.size(); ++i) CHECK(xf[i] == Approx(full[i]).margin(1e-4));
}

TEST_CASE("UniPC: bad orders, variants, corrector lists, processing and grids", "[solvers][unipc][errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const sigma_grid g = make_multistep_grid(sched, 10);
  unipc_options o;
  o.order = 4;
  CHECK_ERROR(unipc_sampler(g, o), std::invalid_argument, "unipc_sampler", "solver.order", "(got 4)");
  o.order = 0;
  CHECK_ERROR(unipc_sampler(g, o), std::invalid_argument, "unipc_sampler", "solver.order", "(got 0)");
  o = {};
  o.variant = static_cast<unipc_variant>(7);
  CHECK_ERROR(unipc_sampler(g, o), std::invalid_argument, "unipc_sampler", "solver.variant", "(got 7)");
  o = {};
  o.path = static_cast<grid_path>(5);
  CHECK_ERROR(unipc_sampler(g, o), std::invalid_argument, "unipc_sampler", "solver.path", "(got 5)");
  o = {};
  o.disable_corrector = {0, 9};  // the corrector of step 9 would run at step 10, which a 10-step grid has not
  CHECK_ERROR(unipc_sampler(g, o), std::invalid_argument, "unipc_sampler", "solver.disable_corrector", "(got 9)");
  o.disable_corrector = {0, 8};
  CHECK_NOTHROW(unipc_sampler(g, o));
  sampler_options clip;
  clip.processing = x0_processing::clip();
  CHECK_ERROR(unipc_sampler(g, {}, clip), std::invalid_argument, "unipc_sampler", "options.processing", "clip");
  sampler_options threshold;
  threshold.processing = x0_processing::dynamic_threshold(0.995, 1.5);
  CHECK_NOTHROW(unipc_sampler(g, {}, threshold));
  o = {};
  o.predict_x0 = false;
  CHECK_ERROR(unipc_sampler(g, o, threshold), std::invalid_argument, "unipc_sampler", "options.processing",
              "predict_x0");
  sampler_options reeps;
  reeps.processing = x0_processing::dynamic_threshold(0.995, 1.5).with_clipped_model_output(true);
  CHECK_ERROR(unipc_sampler(g, {}, reeps), std::invalid_argument, "unipc_sampler", "use_clipped_model_output",
              "(got 1)");
  sigma_grid repeated = g;
  repeated.sigmas[4] = repeated.sigmas[3];
  CHECK_ERROR(unipc_sampler{repeated}, std::invalid_argument, "unipc_sampler", "grid.sigmas[4]", "distinct");
  sigma_grid rising = g;
  rising.sigmas[2] = rising.sigmas[1] * 2.0;
  CHECK_ERROR(unipc_sampler{rising}, std::invalid_argument, "unipc_sampler", "sigmas[2]", "levels must decrease");
  unipc_options flow;
  flow.path = grid_path::flow;
  sigma_grid pure_noise = make_multistep_flow_grid(8, 3.0);
  pure_noise.sigmas[0] = 1.0;
  CHECK_ERROR(unipc_sampler(pure_noise, flow), std::invalid_argument, "unipc_sampler", "grid.sigmas[0]", "(got 1)");
}

TEST_CASE("UniPC: the fused corrector rows give the general loop's result", "[solvers][unipc]") {
  // Rows that combine a new state S run fused_row_kernel (State = combine, coefficients folded in double); rows with
  // x̂0 processing run the general per-element loop. Dynamic thresholding with ratio 1 on data with |x̂0| < 1 is the
  // identity (s = max(max|x̂0|, 1) = 1, so x̂0 is clamped to [−1, 1] and divided by 1), so both paths compute the same
  // update in two association orders: they must agree to a few ulps of the trajectory's scale, per row shape
  // (orders 1–3 with their warm-up, bh1 / bh2, in-place and separate history stores, float and double).
  const auto sched = noise_schedule<>::scaled_linear(1000, 0.00085, 0.012);
  const sigma_grid g = make_multistep_grid(sched, 12);
  const table_model model{{0.2, 0.1}, vp_sigmas(sched)};
  for (int order : {1, 2, 3})
    for (unipc_variant v : {unipc_variant::bh1, unipc_variant::bh2}) {
      unipc_options o;
      o.order = order;
      o.variant = v;
      sampler_options identity;
      identity.processing = x0_processing::dynamic_threshold(1.0, 1.0);
      const unipc_sampler fused(g, o), general(g, o, identity);
      std::vector<double> a = start(64), b = a;
      fused.sample(model, a);
      general.sample(model, b);
      double scale = 0.0;
      for (double x : a) scale = std::max(scale, std::abs(x));
      CAPTURE(order, static_cast<int>(v));
      CHECK(max_diff(a, b) <= 64.0 * 0x1p-52 * scale);
      std::vector<float> af(a.size()), bf(a.size());
      const std::vector<double> s0 = start(64);
      for (std::size_t i = 0; i < s0.size(); ++i) af[i] = bf[i] = static_cast<float>(s0[i]);
      auto model_f = [&](const std::vector<float>& x, double t, std::span<float> out) {
        const level l = level::from_sigma_tilde(detail::interp_table(model.table, t));
        for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(model.g.eps(x[i], l));
      };
      fused.sample(model_f, af);
      general.sample(model_f, bf);
      double df = 0.0;
      for (std::size_t i = 0; i < af.size(); ++i)
        df = std::max(df, std::abs(static_cast<double>(af[i]) - static_cast<double>(bf[i])));
      CHECK(df <= 64.0 * 0x1p-23 * scale);
    }
}
