// The σ-space and flow classes of the reference runner: EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete and
// FlowMatchEulerDiscrete. Each case is replayed on diffusers' own recorded grid (its float32 `sigmas` and
// `timesteps`, promoted to double: the float64-state setting); the grid construction itself is checked against the
// same cases by test_sigma_grids.cpp. skipstep's state is the path's x_t = α·x̃ (the model input), so diffusers'
// σ-space samples are converted with α = 1/√(σ̃² + 1) at each end (flow samples are x_t already).
//
// Bounds, derived rather than fitted:
//  - isolated step: 4× the step's spread when each level moves by 2 float32 ulps (diffusers' scalars are float32)
//    plus 16 float32 ulps of the step's magnitude (its float32 cast of the sample and of each scalar product);
//  - trajectory and final sample against diffusers' float64-state run: that run still casts the sample to float32
//    inside every step (reference README, "Where float32 creeps in", 4 and 8), so |ours − state| is bounded by
//    propagating one float32 rounding of the step's input and output per step through the steps' gains,
//    e_{k+1} = g_k·e_k + 2⁻²⁴·(|x̃_k| + |x̃_{k+1}|), g_k = |A_k| + |B_k|·L·c_k (A, B the step's σ-space weights of
//    x̃ and m, L = 0.9 the reference model's Lipschitz constant, c_k the model-input scale), with a factor 4;
//  - against diffusers' real output: the triangle inequality, |ours − real| ≤ |ours − state| + |state − real|,
//    the second term recorded in the case (max_abs_diff_any_step / max_abs_diff_final).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "reference_data.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"

using namespace skipstep;

namespace skipstep_reference {

bool is_sigma_class(const std::string& cls) {
  return cls == "EulerDiscreteScheduler" || cls == "EulerAncestralDiscreteScheduler" ||
         cls == "HeunDiscreteScheduler" || cls == "FlowMatchEulerDiscreteScheduler" ||
         cls == "DPMSolverMultistepScheduler";
}

namespace {

constexpr double u32 = 0x1p-24;  // float32 unit roundoff

struct sigma_case {
  std::string cls;
  bool flow = false, heun = false;
  sigma_grid grid;
  sampler_options options;
  euler_churn churn;
  bool stochastic_flow = false;
  bool dpm = false;
  dpm_solver_options dpm_options;
  std::size_t num_samples = 1;
};

/// diffusers' recorded grid as skipstep's: Heun's doubled entries once; log_linear's unused extra level dropped.
sigma_grid recorded_grid(const json& c, bool heun) {
  std::vector<double> times = tensor(c.at("timesteps")), levels = tensor(c.at("sigmas"));
  if (heun) {
    std::vector<double> t1{times.front()}, s1{levels.front()};
    for (std::size_t k = 1; k < times.size(); k += 2) t1.push_back(times[k]);
    for (std::size_t k = 1; k < levels.size(); k += 2) s1.push_back(levels[k]);
    times = t1;
    levels = s1;
  }
  levels.resize(times.size() + 1);  // log_linear: diffusers' steps never reach its last (N+2-th) level
  return sigma_grid{levels, times};
}

sampler build_sampler(const sigma_case& s, const sigma_grid& grid, double churn_steps) {
  if (s.dpm) return dpm_solver_sampler(grid, s.dpm_options, s.options);
  if (s.flow) return flow_euler_sampler(grid, s.options, s.stochastic_flow);
  if (s.heun) return heun_sampler(grid, s.options);
  if (s.cls == "EulerAncestralDiscreteScheduler") return euler_ancestral_sampler(grid, 1.0, s.options);
  euler_churn churn = s.churn;  // γ = min(s_churn/N, √2 − 1): keep the run's N when the grid is one step
  churn.s_churn = s.churn.s_churn * static_cast<double>(grid.size()) / churn_steps;
  return euler_sampler(grid, s.options, churn);
}

level level_of(const sigma_case& s, double v) { return s.flow ? level::flow(v) : level::from_sigma_tilde(v); }

/// One DPM-Solver multistep step in isolation: the recorded sample, model output, noise and the recorded D history
/// (previous records' convert_model_output, or history_convert_model_output) through our row; prev_sample and the
/// row's stored D against diffusers'. Returns dev/bound.
double dpm_isolated_step(const sigma_case& s, const json& rec, const std::vector<double>& input,
                         const std::vector<double>& ref_prev, std::size_t num_rows, const case_noise& noise,
                         const check_fn& check) {
  static thread_local std::vector<std::vector<double>> recorded_d;  // D of recent calls by step index
  const auto k = rec.at("i").get<std::size_t>();
  if (k == 0) recorded_d.assign(num_rows, {});
  const std::vector<double> m = tensor(rec.at("model_output"));
  const std::vector<double> z = step_noise(rec, noise, m.size());
  const std::vector<double> ref_d = tensor(rec.at("convert_model_output"));
  if (rec.contains("history_convert_model_output")) {
    const json& hist = rec.at("history_convert_model_output");  // oldest first, ending at step k − 1
    for (std::size_t j = 0; j < hist.size(); ++j)
      if (!hist[j].is_null()) recorded_d[k - hist.size() + j] = tensor(hist[j]);
  }
  const std::size_t per = m.size() / s.num_samples;
  auto run = [&](std::size_t which, double p, int scalar = -1, double rel = 0.0) {
    sigma_grid g = s.grid;
    if (which < g.sigmas.size()) g.sigmas[which] *= 1.0 + p;
    for (std::size_t j = 1; j < g.sigmas.size(); ++j) g.sigmas[j] = std::min(g.sigmas[j], g.sigmas[j - 1]);
    const sampler one = build_sampler(s, g, static_cast<double>(g.size()));
    const solver_row& row = one.rows()[k];
    const level at = level_of(s, g.sigmas[k]);
    (void)at;
    std::vector<double> x = input, store(m.size(), 0.0);
    std::vector<std::vector<double>> ring(std::max<std::size_t>(one.history_slots(), 1), std::vector<double>(m.size()));
    for (std::size_t j = 0; j < row.extras.history_reads; ++j) {
      const std::size_t back = j + 1;  // reads are D_{k−1}, D_{k−2} in order
      if (k < back || recorded_d[k - back].empty()) return std::pair{std::vector<double>(), std::vector<double>()};
      ring[row.extras.history[j].slot] = recorded_d[k - back];
    }
    std::vector<double*> ptrs;
    for (auto& b : ring) ptrs.push_back(b.data());
    std::vector<double> scratch(per), x0(m.size());
    const given_noise<double> recorded_noise{z, per};
    row_extras extras = row.extras;
    if (scalar >= affine_scalar_count && static_cast<std::size_t>(scalar - affine_scalar_count) < extras.history_reads)
      extras.history[static_cast<std::size_t>(scalar - affine_scalar_count)].weight *= 1.0 + rel;
    detail::apply_row_range(perturbed_scalar(one.coefficients()[k], scalar, rel), extras, x.data(), m.data(),
                            static_cast<double*>(nullptr),
                            ptrs.data(), per, one.options().processing, recorded_noise, k, x0.data(), scratch.data(),
                            0, s.num_samples);
    if (row.extras.store_slot >= 0) store = ring[static_cast<std::size_t>(row.extras.store_slot)];
    return std::pair{x, store};
  };
  const auto [ours, ours_d] = run(s.grid.sigmas.size(), 0.0);
  recorded_d[k] = ref_d;
  if (ours.empty()) return 0.0;  // no recorded history for this step: covered by the trajectory
  double spread = 0.0;
  std::vector<std::pair<std::size_t, int>> moves;  // (level moved, scalar moved)
  for (std::size_t which = k >= 2 ? k - 2 : 0; which <= k + 1; ++which) moves.emplace_back(which, -1);
  for (int scalar = 0; scalar < affine_scalar_count + static_cast<int>(max_history_reads); ++scalar)
    moves.emplace_back(s.grid.sigmas.size(), scalar);
  for (const auto& [which, scalar] : moves)
    for (double p : {-4.0 * u32, 4.0 * u32}) {
      const auto [px, pd] = scalar < 0 ? run(which, p) : run(which, 0.0, scalar, p);
      for (std::size_t e = 0; e < px.size(); ++e) spread = std::max(spread, std::abs(px[e] - ours[e]));
      if (!pd.empty() && !ours_d.empty() && s.dpm_options.order > 1)
        for (std::size_t e = 0; e < pd.size(); ++e) spread = std::max(spread, std::abs(pd[e] - ours_d[e]));
    }
  double dev = 0.0;
  for (std::size_t e = 0; e < ours.size(); ++e) dev = std::max(dev, std::abs(ours[e] - ref_prev[e]));
  if (s.dpm_options.order > 1)
    for (std::size_t e = 0; e < ours_d.size(); ++e) dev = std::max(dev, std::abs(ours_d[e] - ref_d[e]));
  double hist_max = 0.0;
  for (const auto& d : recorded_d)
    if (!d.empty()) hist_max = std::max(hist_max, max_abs(d));
  const double scale = std::max({max_abs(input), max_abs(m), max_abs(ref_prev), max_abs(ref_d), hist_max, max_abs(z), 1.0});
  const double bound = 4.0 * spread + 16.0 * u32 * scale;
  check(dev <= bound, "isolated call " + std::to_string(k) + " deviates by " + std::to_string(dev) + " > " +
                          std::to_string(bound));
  return dev / bound;
}

}  // namespace

void replay_sigma_case(const json& c, tally& t, const check_fn& check) {
  // Everything but the levels from the loader, on the case's own config; the levels are diffusers' recorded grid
  // (options.grid), the float64-state setting these bounds are derived for (test_sigma_grids checks the grids the
  // loader builds from the config against the same recordings).
  load_options lo = case_options(c);
  lo.grid = recorded_grid(c, c.at("scheduler_class") == "HeunDiscreteScheduler");
  const loaded_scheduler loaded = load_case(c, lo);
  const case_noise case_noise_values = noise_of(c, loaded);
  check_torch_noise(c, case_noise_values, check);
  sigma_case s;
  s.cls = loaded.class_name;
  s.flow = loaded.flow;
  s.heun = s.cls == "HeunDiscreteScheduler";
  s.num_samples = loaded.options.num_samples;
  s.options = loaded.options;
  s.churn = loaded.churn;
  s.stochastic_flow = loaded.stochastic;
  s.dpm = s.cls == "DPMSolverMultistepScheduler";
  s.dpm_options = loaded.dpm;
  s.grid = *loaded.grid;
  const std::size_t n = s.grid.size();
  const sampler full = build_sampler(s, s.grid, static_cast<double>(n));
  const std::vector<solver_row>& rows = full.rows();
  const std::size_t elements = c.at("x_T").size();
  const std::size_t per = elements / s.num_samples;

  // Which portable draw a step's noise is: diffusers draws at every step for Euler ancestral and stochastic flow,
  // and where γ > 0 for Euler (reference README, "When noise is requested").
  std::vector<std::uint32_t> draw_of_step(n, 0);
  std::uint32_t draws = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const bool draws_here = s.cls == "EulerAncestralDiscreteScheduler" || s.stochastic_flow ||
                            (s.dpm && (s.dpm_options.algorithm == dpm_algorithm::sde_dpmsolver_pp ||
                                       s.dpm_options.algorithm == dpm_algorithm::sde_dpmsolver)) ||
                            (s.cls == "EulerDiscreteScheduler" && full.coefficients()[full.row_of_step(i)].noise_std != 0.0);
    if (draws_here) draw_of_step[i] = ++draws;
  }

  // 1. Isolated steps (first-stage rows: every Euler / flow step, Heun's first-order calls).
  std::vector<double> previous = case_noise_values.x_T;
  for (const json& rec : c.at("steps")) {
    const auto k = rec.at("i").get<std::size_t>();  // diffusers' step() call = our row
    const std::vector<double> input = rec.contains("sample") ? tensor(rec.at("sample")) : previous;
    const std::vector<double> ref_prev = tensor(rec.at("prev_sample"));
    previous = ref_prev;
    if (k >= rows.size()) {
      check(false, "recorded call " + std::to_string(k) + " beyond our " + std::to_string(rows.size()) + " rows");
      continue;
    }
    const solver_row& row = rows[k];
    check(row.model_time == rec.at("t").get<double>(), "model time of call " + std::to_string(k));
    if (s.heun && !rec.at("internals").value("state_in_first_order", true)) continue;  // covered by the trajectory
    if (s.dpm) {
      t.worst_step = std::max(t.worst_step, dpm_isolated_step(s, rec, input, ref_prev, rows.size(), case_noise_values, check));
      continue;
    }
    const std::size_t i = row.step;
    const std::vector<double> m = tensor(rec.at("model_output"));
    const std::vector<double> z = step_noise(rec, case_noise_values, elements);
    const double to_level = s.heun && k + 1 < rows.size() ? s.grid.sigmas[i + 1] : s.grid.sigmas[i + 1];
    auto step = [&](double p0, double p1, int scalar = -1, double rel = 0.0) {
      // A one-step grid from level i to i+1 (two steps for Heun, whose first row is the Euler half step).
      sigma_grid g{{s.grid.sigmas[i] * (1.0 + p0), to_level * (1.0 + p1)}, {s.grid.timesteps[i]}};
      if (s.flow)
        for (double& v : g.sigmas) v = std::clamp(v, 0.0, 1.0);  // a flow level stays in [0, 1]
      else
        g.sigmas[1] = std::min(g.sigmas[1], g.sigmas[0]);  // equal levels (a final σ̃_min) stay a valid grid
      if (s.flow && g.sigmas[0] == g.sigmas[1]) g.sigmas = {s.grid.sigmas[i], to_level};
      if (s.heun && to_level > 0.0) {
        g.sigmas.push_back(0.0);
        g.timesteps.push_back(s.grid.timesteps[i + 1]);
      }
      const sampler one = build_sampler(s, g, static_cast<double>(n));
      const level a = level_of(s, g.sigmas[0]), b = level_of(s, g.sigmas[1]);
      std::vector<double> x(input.size()), x0(input.size());
      for (std::size_t e = 0; e < x.size(); ++e) x[e] = s.flow ? input[e] : input[e] * a.alpha;
      apply_step<double>(perturbed_scalar(one.coefficients()[0], scalar, rel), x, m, s.options.processing,
                         s.num_samples, given_noise<double>{z, per}, 0, x0);
      for (double& e : x) e = s.flow ? e : e / b.alpha;
      return std::pair{x, x0};
    };
    const auto [ours, ours_x0] = step(0.0, 0.0);
    double spread = 0.0;
    for (double p : {-2.0 * 2 * u32, 2.0 * 2 * u32}) {
      for (int which = 0; which < 2; ++which) {
        const auto [px, p0] = which == 0 ? step(p, 0.0) : step(0.0, p);
        for (std::size_t e = 0; e < px.size(); ++e)
          spread = std::max({spread, std::abs(px[e] - ours[e]), std::abs(p0[e] - ours_x0[e])});
      }
      for (int k = 0; k < affine_scalar_count; ++k) {  // each float32 scalar's own rounding
        const auto [px, p0] = step(0.0, 0.0, k, p);
        for (std::size_t e = 0; e < px.size(); ++e)
          spread = std::max({spread, std::abs(px[e] - ours[e]), std::abs(p0[e] - ours_x0[e])});
      }
    }
    const bool churned = full.coefficients()[k].noise_std != 0.0 && s.cls == "EulerDiscreteScheduler";
    const bool compare_x0 = !rec.at("pred_original_sample").is_null() && !churned;
    const std::vector<double> ref_x0 = compare_x0 ? tensor(rec.at("pred_original_sample")) : std::vector<double>();
    const double scale = std::max({max_abs(input), max_abs(m), max_abs(ref_prev), compare_x0 ? max_abs(ref_x0) : 0.0,
                                   max_abs(z), 1.0});
    double dev = 0.0;
    for (std::size_t e = 0; e < ours.size(); ++e) dev = std::max(dev, std::abs(ours[e] - ref_prev[e]));
    if (compare_x0)
      for (std::size_t e = 0; e < ours_x0.size(); ++e) dev = std::max(dev, std::abs(ours_x0[e] - ref_x0[e]));
    const double bound = 4.0 * spread + 16.0 * u32 * scale;
    t.worst_step = std::max(t.worst_step, dev / bound);
    check(dev <= bound, "isolated call " + std::to_string(k) + " deviates by " + std::to_string(dev) + " > " +
                            std::to_string(bound));
  }

  // 2. The full run from x_T with the portable noise, converted to diffusers' space at each recorded step.
  std::vector<double> x = case_noise_values.x_T;
  const level first = level_of(s, s.grid.sigmas[0]);
  const bool sigma_space = !s.flow && !s.dpm;  // Euler-family samples are x̃ = x/α; DPM-Solver's and flow's are x
  for (double& e : x) e = sigma_space ? e * first.alpha : e;
  auto noise = [&](std::span<double> out, noise_position at) {
    const auto d = case_noise_values.draw(draw_of_step[at.step]);
    const bool f32 = s.flow || s.dpm;  // FlowMatch's and DPM-Solver's SDE noise is requested in float32
    for (std::size_t e = 0; e < out.size(); ++e) {
      const double v = d[at.sample * per + at.first_element + e];
      out[e] = f32 ? static_cast<double>(static_cast<float>(v)) : v;
    }
  };
  const bool f32_model = c.value("model_dtype", std::string("float64")) == "float32";  // a float32 pipeline
  auto model = [f32_model](const std::vector<double>& xs, double time) {
    auto out = reference_model(xs, time);
    if (f32_model)
      for (double& v : out) v = static_cast<double>(static_cast<float>(v));
    return out;
  };
  std::vector<std::vector<double>> trajectory;  // diffusers' space, after each step
  std::vector<double> bound_at;                 // the propagated |ours − state| bound after each step
  double e_state = 0.0;
  auto record = [&](const step_info& info, std::span<const double> xs, std::span<const double>) {
    const level to = level_of(s, s.grid.sigmas[info.step_index + 1]);
    std::vector<double> native(xs.begin(), xs.end());
    for (double& e : native) e = sigma_space ? e / to.alpha : e;
    const double in_max = trajectory.empty() ? max_abs(case_noise_values.x_T) : max_abs(trajectory.back());
    // The step's gain |∂x̃'/∂x̃| bounded from its rows' state-space weights (|a| + L·|b| per evaluation, L = 0.9;
    // Heun's second row adds its state and history terms), times α/α' to go to σ-space.
    const std::size_t r0 = full.row_of_step(info.step_index), r1 = full.row_of_step(info.step_index + 1);
    double gain = 1.0;
    for (std::size_t r = r0; r < r1; ++r) {
      const affine_step& a = full.coefficients()[r];
      const row_extras& ex = full.rows()[r].extras;
      const double direct = std::abs(a.sample_coeff()) + 0.9 * std::abs(a.model_coeff()) +
                            std::abs(a.x0_weight) * 0.9 * std::abs(a.pred.x0_from_model);
      double carried = std::abs(ex.state_weight);
      for (std::size_t j = 0; j < ex.history_reads; ++j)
        carried += std::abs(ex.history[j].weight) *
                   (std::abs(full.rows()[r0].extras.store_sample) +
                    std::abs(full.rows()[r0].extras.store_x0) *
                        (std::abs(full.coefficients()[r0].pred.x0_from_sample) +
                         0.9 * std::abs(full.coefficients()[r0].pred.x0_from_model)));
      gain = gain * direct + carried;
    }
    const level from = level_of(s, s.grid.sigmas[info.step_index]);
    if (sigma_space) gain *= from.alpha / to.alpha;
    e_state = gain * e_state + u32 * (in_max + max_abs(native)) * static_cast<double>(r1 - r0);
    trajectory.push_back(std::move(native));
    bound_at.push_back(4.0 * e_state);
  };
  sampler_workspace<double> ws(x.size());
  full.sample(model, x, noise, ws, record);
  for (double& e : x) e = sigma_space ? e / level_of(s, s.grid.sigmas[n]).alpha : e;
  check(all_finite(x), "final sample must be finite");

  const json& sv = c.at("float64_state_variant");
  const double any_step = number(sv.at("max_abs_diff_any_step"));
  for (const json& rec : c.at("steps")) {
    const auto k = rec.at("i").get<std::size_t>();
    if (k >= rows.size() || !rows[k].ends_step) continue;  // Heun's half steps are not states of ours
    const std::size_t i = rows[k].step;
    const auto ref = tensor(rec.at("prev_sample"));
    if (!all_finite(ref)) continue;
    double dev = 0.0;
    for (std::size_t e = 0; e < ref.size(); ++e) dev = std::max(dev, std::abs(trajectory[i][e] - ref[e]));
    const double bound = bound_at[i] + any_step + 1e-12 * std::max(1.0, max_abs(ref));
    t.worst_traj = std::max(t.worst_traj, dev / bound);
    check(dev <= bound, "trajectory at call " + std::to_string(k) + " deviates by " + std::to_string(dev) + " > " +
                            std::to_string(bound));
  }
  const std::vector<double> state = tensor(sv.at("final_sample"));
  const std::vector<double> real = tensor(c.at("final_sample"));
  const double final_bound = bound_at.back() + 1e-12 * std::max(1.0, max_abs(state));
  if (all_finite(state)) {
    double dev = 0.0;
    for (std::size_t e = 0; e < x.size(); ++e) dev = std::max(dev, std::abs(x[e] - state[e]));
    t.worst_state = std::max(t.worst_state, dev / std::max(1e-300, max_abs(state)));
    check(dev <= final_bound, "float64-state final deviates by " + std::to_string(dev) + " > " +
                                  std::to_string(final_bound));
  }
  if (all_finite(real) && !c.value("final_sample_nonfinite", false)) {
    double dev = 0.0;
    for (std::size_t e = 0; e < x.size(); ++e) dev = std::max(dev, std::abs(x[e] - real[e]));
    const double bound = final_bound + number(sv.at("max_abs_diff_final"));
    t.worst_real = std::max(t.worst_real, rel_dev(x, real));
    t.worst_real_ratio = std::max(t.worst_real_ratio, dev / bound);
    check(dev <= bound, "real final deviates by " + std::to_string(dev) + " > bound " + std::to_string(bound));
  }
}

}  // namespace skipstep_reference
