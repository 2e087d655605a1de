// DEISMultistep and DPMSolverSinglestep cases of the reference runner. As in replay_sigma.cpp each case runs on
// diffusers' own recorded grid (its float32 `sigmas` and integer `timesteps`, promoted to double: the float64-state
// setting); both keep their sample in VP space (x_t, the model input) and never cast it to float32 (reference README,
// "Where float32 creeps in", 8), so samples compare directly.
//
// Rules asserted (reference README's surprises; the rules, not case names, decide):
//  - singlestep's order list: diffusers' set_timesteps switches lower_order_final on when N % order != 0 or the grid
//    ends at σ = 0 (surprise 17) and makes the last step first order at σ = 0: our order_list() must equal the
//    recorded `order_list`, and each recorded step's `update_order` our row's order;
//  - DEIS's order per step (warm-up, lower_order_final / lower_order_second when N < 15) must equal `update_order`;
//  - DEIS never ends at σ = 0 (surprise 24): where the recorded last level repeats the one before (Karras), the
//    last row must be the identity (weight 1 on x, 0 on everything else), as diffusers' h = 0 step is.
//
// Bounds, derived rather than fitted (isolated steps and the triangle inequality as in replay_sigma.cpp):
//  - isolated step (the recorded sample, model output, history of D = convert_model_output and, for singlestep, the
//    block's start sample `history_sample` through our row): 4× the row's spread when each level it uses moves by 2
//    float32 ulps (diffusers' scalars are float32 tensors) plus 16 float32 ulps of the step's magnitude;
//  - trajectory and final sample against the float64-state run: diffusers' float64-state run of these classes is
//    float64 throughout (its sample is never cast, its scalars come from float64 sigmas), so |ours − state| is
//    the propagation of float64 evaluation differences. Each row is replayed on our own trajectory with every level
//    it uses moved by ±p_l, p_l = 4·2⁻⁵³(2 + |log α_l| + |log σ_l|) (the float64 log/sqrt of α, σ, λ) plus
//    16·2⁻⁵³(1/g + 1/g²), g the row's smallest λ gap (the 1/h and 1/h² cancellations of exp(−h) − 1, φ2, φ3 act
//    like a level error of that size); its injected error is 4× that spread, plus 16·2⁻⁵³ of the magnitude of its
//    sum, plus for DEIS 8·2⁻⁵³ of the absolute terms of both antiderivatives (ind_fn) of each weight times its ε̂;
//    errors propagate as e_{i+1} = g_i·e_i + Σ_j |w_j|·e_D(src_j) + |w_S|·e_b + injected_i, with g_i = |a| + L·|b|
//    the row's direct gain (L = 0.9, the reference model's Lipschitz constant) and e_D = L_D·e + 16·2⁻⁵³|D| for a
//    stored D (L_D its Lipschitz constant in x, ×2 with thresholding: clamp(x̂0, ±s)/s moves by at most
//    2|Δx̂0|∞ when the quantile s moves too); the bound is 4·e;
//  - against diffusers' real output: the triangle inequality with the recorded max_abs_diff_any_step / _final.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference_data.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver_singlestep.hpp"

using namespace skipstep;

namespace skipstep_reference {

bool is_deis_singlestep_class(const std::string& cls) {
  return cls == "DEISMultistepScheduler" || cls == "DPMSolverSinglestepScheduler";
}

namespace {

constexpr double u32 = 0x1p-24;  // float32 unit roundoff

struct ds_case {
  bool deis = false;
  sigma_grid grid;
  sampler_options options;
  deis_options deis_opt;
  dpm_singlestep_options single_opt;
  std::size_t num_samples = 1;
};

sampler build_sampler(const ds_case& s, const sigma_grid& g) {
  if (s.deis) return deis_sampler(g, s.deis_opt, s.options);
  return dpm_solver_singlestep_sampler(g, s.single_opt, s.options);
}

/// The order of row r (1 + its history reads; a DEIS order-1 row and a singlestep block start read none).
int row_order(const sampler& sp, std::size_t r) { return 1 + static_cast<int>(sp.rows()[r].extras.history_reads); }

/// The step whose D the j-th history read of row k is: DEIS reads D_{k−1}, D_{k−2}; singlestep reads slot s = D_{b+s}
/// of its block starting at b = k + 1 − order.
std::size_t read_source(const ds_case& s, const solver_row& row, std::size_t k, std::size_t j) {
  if (s.deis) return k - 1 - j;
  const std::size_t b = k + 1 - (1 + static_cast<std::size_t>(row.extras.history_reads));
  return b + row.extras.history[j].slot;
}

/// Lipschitz constant (in x, with L = 0.9 for the model) of the D row r stores; `thresh` doubles it.
double stored_lipschitz(const sampler& sp, std::size_t r, bool thresh) {
  const row_extras& e = sp.rows()[r].extras;
  const affine_step& c = sp.coefficients()[r];
  const double x0_gain =
      (std::abs(c.pred.x0_from_sample) + 0.9 * std::abs(c.pred.x0_from_model)) * (thresh ? 2.0 : 1.0);
  return std::abs(e.store_sample) + 0.9 * std::abs(e.store_model) + std::abs(e.store_x0) * x0_gain;
}

}  // namespace

void replay_deis_singlestep_case(const json& c, tally& t, const check_fn& check) {
  ds_case s;
  const auto cls = c.at("scheduler_class").get<std::string>();
  s.deis = cls == "DEISMultistepScheduler";
  // Everything but the levels from the loader, on the case's own config; the grid is diffusers' recorded one
  // (options.grid: the float64-state setting of the bounds; test_sigma_grids checks the loader's own grids).
  load_options lo = case_options(c);
  lo.grid = sigma_grid{tensor(c.at("sigmas")), tensor(c.at("timesteps"))};
  const loaded_scheduler loaded = load_case(c, lo);
  const case_noise case_noise_values = noise_of(c, loaded);
  check_torch_noise(c, case_noise_values, check);
  s.num_samples = loaded.options.num_samples;
  s.options = loaded.options;
  s.deis_opt = loaded.deis;
  const bool thresh = s.options.processing.mode == x0_processing::kind::dynamic_threshold;
  s.single_opt = loaded.singlestep;
  s.grid = sigma_grid{tensor(c.at("sigmas")), tensor(c.at("timesteps"))};
  const std::size_t n = s.grid.size();
  const sampler full = build_sampler(s, s.grid);
  const std::vector<solver_row>& rows = full.rows();
  check(rows.size() == n, "one row per step");
  const std::size_t elements = c.at("x_T").size();
  const std::size_t per = elements / s.num_samples;

  // Rules: order lists and the repeated final level.
  if (!s.deis) {
    const dpm_solver_singlestep_sampler single(s.grid, s.single_opt, s.options);
    std::vector<int> recorded;
    for (const json& o : c.at("order_list")) recorded.push_back(o.get<int>());
    check(single.order_list() == recorded, "order_list differs from diffusers' (surprise 17 rule)");
  }
  if (s.deis && s.grid.sigmas[n] == s.grid.sigmas[n - 1]) {
    const affine_step& a = full.coefficients()[n - 1];
    bool identity = a.sample_weight == 1.0 && a.eps_weight == 0.0 && a.x0_weight == 0.0;
    for (std::size_t j = 0; j < rows[n - 1].extras.history_reads; ++j)
      identity = identity && rows[n - 1].extras.history[j].weight == 0.0;
    check(identity, "DEIS step onto a repeated final level must be the identity (surprise 24 rule)");
  }

  // 1. Isolated steps.
  std::map<std::size_t, std::vector<double>> recorded_d, recorded_input;
  std::vector<double> previous = case_noise_values.x_T;
  for (const json& rec : c.at("steps")) {
    const auto k = rec.at("i").get<std::size_t>();
    const std::vector<double> input = rec.contains("sample") ? tensor(rec.at("sample")) : previous;
    const std::vector<double> ref_prev = tensor(rec.at("prev_sample"));
    previous = ref_prev;
    if (k >= rows.size()) {
      check(false, "recorded call " + std::to_string(k) + " beyond our rows");
      continue;
    }
    recorded_input[k] = input;
    check(rows[k].model_time == rec.at("t").get<double>(), "model time of call " + std::to_string(k));
    check(row_order(full, k) == rec.at("internals").at("update_order").get<int>(),
          "order of step " + std::to_string(k) + " differs from diffusers' update_order");
    const std::vector<double> m = tensor(rec.at("model_output"));
    const std::vector<double> ref_d = tensor(rec.at("convert_model_output"));
    if (rec.contains("history_convert_model_output")) {
      const json& hist = rec.at("history_convert_model_output");  // oldest first, ending at step k − 1
      for (std::size_t j = 0; j < hist.size(); ++j)
        if (!hist[j].is_null() && k >= hist.size() - j) recorded_d[k - hist.size() + j] = tensor(hist[j]);
    }
    const int order = row_order(full, k);
    const std::size_t block = k + 1 - static_cast<std::size_t>(order);
    std::vector<double> start;  // singlestep's S: the block's first sample
    if (!s.deis && order > 1) {
      if (rec.contains("history_sample"))
        start = tensor(rec.at("history_sample"));
      else if (recorded_input.contains(block))
        start = recorded_input[block];
    }
    const bool x0_space = !s.deis && (s.single_opt.algorithm == dpm_algorithm::dpmsolver_pp ||
                                      s.single_opt.algorithm == dpm_algorithm::sde_dpmsolver_pp);
    const std::vector<double> z = step_noise(rec, case_noise_values, m.size());
    auto run = [&](std::size_t which, double p) -> std::pair<std::vector<double>, std::vector<double>> {
      sigma_grid g = s.grid;
      if (which < g.sigmas.size()) g.sigmas[which] *= 1.0 + p;
      for (std::size_t j = 1; j < g.sigmas.size(); ++j) g.sigmas[j] = std::min(g.sigmas[j], g.sigmas[j - 1]);
      const sampler one = build_sampler(s, g);
      const solver_row& row = one.rows()[k];
      std::vector<double> x = input, state = start;
      std::vector<std::vector<double>> ring(std::max<std::size_t>(one.history_slots(), 1),
                                            std::vector<double>(m.size()));
      for (std::size_t j = 0; j < row.extras.history_reads; ++j) {
        const std::size_t src = read_source(s, row, k, j);
        if (!recorded_d.contains(src)) return {};
        ring[row.extras.history[j].slot] = recorded_d[src];
      }
      if (row.extras.state_weight != 0.0 && state.empty()) return {};
      if (state.empty()) state.assign(m.size(), 0.0);
      std::vector<double*> ptrs;
      for (auto& b : ring) ptrs.push_back(b.data());
      std::vector<double> scratch(per), x0(m.size());
      const given_noise<double> recorded_noise{z, per};
      detail::apply_row_range(one.coefficients()[k], row.extras, x.data(), m.data(), state.data(), ptrs.data(), per,
                              one.options().processing, recorded_noise, k, x0.data(), scratch.data(), 0,
                              s.num_samples);
      std::vector<double> d;
      if (row.extras.store_slot >= 0)
        d = ring[static_cast<std::size_t>(row.extras.store_slot)];
      else if (x0_space)
        d = x0;
      return {x, d};
    };
    const auto [ours, ours_d] = run(s.grid.sigmas.size(), 0.0);
    recorded_d[k] = ref_d;
    if (ours.empty()) continue;  // no recorded history for this step: covered by the trajectory
    double spread = 0.0;
    for (std::size_t which = std::min(block, k >= 2 ? k - 2 : 0); which <= k + 1; ++which)
      for (double p : {-4.0 * u32, 4.0 * u32}) {
        const auto [px, pd] = run(which, p);
        for (std::size_t e = 0; e < px.size(); ++e) spread = std::max(spread, std::abs(px[e] - ours[e]));
        if (!pd.empty() && !ours_d.empty())
          for (std::size_t e = 0; e < pd.size(); ++e) spread = std::max(spread, std::abs(pd[e] - ours_d[e]));
      }
    double dev = 0.0;
    for (std::size_t e = 0; e < ours.size(); ++e) dev = std::max(dev, std::abs(ours[e] - ref_prev[e]));
    for (std::size_t e = 0; e < ours_d.size(); ++e) dev = std::max(dev, std::abs(ours_d[e] - ref_d[e]));
    double hist_max = start.empty() ? 0.0 : max_abs(start);
    for (const auto& [step, d] : recorded_d) hist_max = std::max(hist_max, max_abs(d));
    const double scale =
        std::max({max_abs(input), max_abs(m), max_abs(ref_prev), max_abs(ref_d), hist_max, max_abs(z), 1.0});
    const double bound = 4.0 * spread + 16.0 * u32 * scale;
    t.worst_step = std::max(t.worst_step, dev / bound);
    check(dev <= bound,
          "isolated call " + std::to_string(k) + " deviates by " + std::to_string(dev) + " > " + std::to_string(bound));
  }

  // 2. The full run from x_T (singlestep SDE noise is requested in float64: README rule 16, so no rounding).
  const bool sde = !s.deis && (s.single_opt.algorithm == dpm_algorithm::sde_dpmsolver_pp ||
                               s.single_opt.algorithm == dpm_algorithm::sde_dpmsolver);
  auto noise = [&](std::span<double> out, noise_position at) {
    const auto d = case_noise_values.draw(static_cast<std::uint32_t>(at.step + 1));
    for (std::size_t e = 0; e < out.size(); ++e) out[e] = d[at.sample * per + at.first_element + e];
  };
  std::vector<double> x = case_noise_values.x_T;
  auto model = [](const std::vector<double>& xs, double time) { return reference_model(xs, time); };
  std::vector<std::vector<double>> trajectory;
  auto record = [&](const step_info&, std::span<const double> xs, std::span<const double>) {
    trajectory.emplace_back(xs.begin(), xs.end());
  };
  sampler_workspace<double> ws(x.size());
  if (sde)
    full.sample(model, x, noise, ws, record);
  else
    full.sample(model, x, no_noise{}, ws, record);

  // 3. The bound on |ours − float64 state|: the same run row by row (it must give the sampler's bits), each row
  // also evaluated with every level it uses moved by ±p_l (the float64 evaluation error of diffusers' scalars read
  // as a level error, see the file comment), the spread and the rounding of the row's own sums injected and
  // propagated through the rows' gains.
  constexpr double u64 = 0x1p-53;
  std::vector<double> xr = case_noise_values.x_T, st(elements, 0.0);
  std::vector<std::vector<double>> ring(std::max<std::size_t>(full.history_slots(), 1),
                                        std::vector<double>(elements, 0.0));
  std::vector<double> err(n + 1, 0.0), err_d(n, 0.0);  // bounds on |Δx_i| and on |ΔD_i|
  const auto eval_row = [&](const sampler& sp, std::size_t i, std::vector<double>& xv, std::vector<double>& sv_,
                            std::vector<std::vector<double>>& rg, const std::vector<double>& m,
                            const std::vector<double>& z, std::vector<double>& x0) {
    std::vector<double> scratch(per);
    const given_noise<double> given{z, per};
    if (sp.rows()[i].extras.is_plain()) {  // the sampler runs a plain row through the fused kernel
      apply_step<double>(sp.coefficients()[i], xv, m, sp.options().processing, s.num_samples, given, i, x0, scratch);
      return;
    }
    std::vector<double*> ptrs;
    for (auto& b : rg) ptrs.push_back(b.data());
    detail::apply_row_range(sp.coefficients()[i], sp.rows()[i].extras, xv.data(), m.data(), sv_.data(), ptrs.data(),
                            per, sp.options().processing, given, i, x0.data(), scratch.data(), 0, s.num_samples);
  };
  const auto lam = [&](std::size_t l) {
    const level v = level::from_sigma_tilde(s.grid.sigmas[l]);
    return v.sigma == 0.0 ? INFINITY : v.lambda();
  };
  for (std::size_t i = 0; i < n; ++i) {
    const std::vector<double> m = reference_model(xr, rows[i].model_time);
    std::vector<double> z(elements, 0.0);
    if (sde) noise(std::span<double>(z), noise_position{0, i, 0});  // all samples' elements of draw i + 1
    const solver_row& row = rows[i];
    const affine_step& a = full.coefficients()[i];
    const int order = row_order(full, i);
    const std::size_t b = s.deis ? i : i + 1 - static_cast<std::size_t>(order);
    const std::size_t lo = s.deis ? i + 1 - static_cast<std::size_t>(order) : b;
    std::vector<double> x1 = xr, s1 = st, x0(elements);
    std::vector<std::vector<double>> r1 = ring;
    eval_row(full, i, x1, s1, r1, m, z, x0);
    // The smallest λ gap the row divides by (h, h_0, h_1, r0 − r1): the 1/h and 1/h² cancellations of the
    // exp-based weights in float64 act like a level error of u64/h + u64/h².
    double gap = INFINITY;
    for (std::size_t l = lo; l <= i; ++l)
      for (std::size_t q = l + 1; q <= i + 1; ++q)
        if (std::isfinite(lam(q))) gap = std::min(gap, std::abs(lam(q) - lam(l)));
    double spread = 0.0;
    for (std::size_t l = lo; l <= i + 1; ++l) {
      const level v = level::from_sigma_tilde(s.grid.sigmas[l]);
      if (v.sigma == 0.0) continue;
      const double p = 4.0 * u64 * (2.0 + std::abs(std::log(v.alpha)) + std::abs(std::log(v.sigma))) +
                       (gap > 0.0 ? 16.0 * u64 * (1.0 / gap + 1.0 / (gap * gap)) : 0.0);
      for (double sign : {-1.0, 1.0}) {
        sigma_grid g = s.grid;
        g.sigmas[l] *= 1.0 + sign * p;
        for (std::size_t j = 1; j < g.sigmas.size(); ++j) g.sigmas[j] = std::min(g.sigmas[j], g.sigmas[j - 1]);
        const sampler one = build_sampler(s, g);
        std::vector<double> x2 = xr, s2 = st, x02(elements);
        std::vector<std::vector<double>> r2 = ring;
        eval_row(one, i, x2, s2, r2, m, z, x02);
        for (std::size_t e = 0; e < elements; ++e) spread = std::max(spread, std::abs(x2[e] - x1[e]));
      }
    }
    // The magnitude of the row's sum (each product and the result rounded once in float64).
    double eps_max = 0.0;
    for (std::size_t e = 0; e < elements; ++e) {
      const double eps = full.options().processing.use_clipped_model_output
                             ? a.reeps_from_sample * xr[e] + a.reeps_from_x0 * x0[e]
                             : a.pred.eps_from_sample * xr[e] + a.pred.eps_from_model * m[e];
      eps_max = std::max(eps_max, std::abs(eps));
    }
    double mag = std::abs(a.sample_weight) * max_abs(xr) + std::abs(a.x0_weight) * max_abs(x0) +
                 std::abs(a.eps_weight) * eps_max + std::abs(row.extras.state_weight) * max_abs(st) + max_abs(x1);
    for (std::size_t j = 0; j < row.extras.history_reads; ++j)
      mag += std::abs(row.extras.history[j].weight) * max_abs(ring[row.extras.history[j].slot]);
    // DEIS's weights are differences of antiderivatives (diffusers' ind_fn): float64 error ≤ 8·u64 times the sum of
    // the absolute terms of both, times |ε̂| of that weight.
    double antideriv = 0.0;
    if (s.deis && order > 1 && s.grid.sigmas[i + 1] > 0.0) {
      const double lt = std::log(s.grid.sigmas[i + 1]), l0 = std::log(s.grid.sigmas[i]);
      const double l1 = std::log(s.grid.sigmas[i - 1]), l2 = order == 3 ? std::log(s.grid.sigmas[i - 2]) : 0.0;
      const auto terms = [&](double lx, double lb, double lc, double ld) {  // |ind_fn| at ρ = e^{lx}, in terms
        if (order == 2) return std::exp(lx) * (std::abs(lc) + std::abs(lx) + 1.0) / std::abs(lb - lc);
        return std::exp(lx) *
               (std::abs(lc) * (std::abs(ld) + std::abs(lx) + 1.0) + std::abs(ld) * std::abs(lx) + std::abs(ld) +
                lx * lx + 2.0 * std::abs(lx) + 2.0) /
               std::abs((lb - lc) * (lb - ld));
      };
      const std::vector<std::array<double, 3>> args =
          order == 2 ? std::vector<std::array<double, 3>>{{l0, l1, 0.0}, {l1, l0, 0.0}}
                     : std::vector<std::array<double, 3>>{{l0, l1, l2}, {l1, l2, l0}, {l2, l0, l1}};
      for (std::size_t j = 0; j < args.size(); ++j) {
        const double dc = 8.0 * u64 *
                          (terms(lt, args[j][0], args[j][1], args[j][2]) + terms(l0, args[j][0], args[j][1], args[j][2]));
        const double operand = j == 0 ? eps_max : max_abs(ring[row.extras.history[j - 1].slot]);
        antideriv += level::from_sigma_tilde(s.grid.sigmas[i + 1]).alpha * dc * operand;
      }
    }
    // Propagation: the row's direct gain on x_i, its history terms on the D they read, its state term on S.
    const double x0_gain = thresh ? 2.0 : 1.0;
    double e = (std::abs(a.sample_coeff()) + 0.9 * std::abs(a.model_coeff()) +
                std::abs(a.x0_weight) * 0.9 * std::abs(a.pred.x0_from_model) * x0_gain) *
               err[i];
    for (std::size_t j = 0; j < row.extras.history_reads; ++j)
      e += std::abs(row.extras.history[j].weight) * err_d[read_source(s, row, i, j)];
    if (row.extras.state_weight != 0.0) e += std::abs(row.extras.state_weight) * err[b];
    err[i + 1] = e + 4.0 * spread + 16.0 * u64 * mag + antideriv;
    if (row.extras.store_slot >= 0)
      err_d[i] = stored_lipschitz(full, i, thresh) * err[i] +
                 16.0 * u64 * (max_abs(r1[static_cast<std::size_t>(row.extras.store_slot)]) + max_abs(xr) + max_abs(m));
    xr = x1;
    st = s1;
    ring = r1;
  }
  check(xr == x, "the row-by-row replay must give the sampler's bits");
  check(all_finite(x), "final sample must be finite");

  const json& sv = c.at("float64_state_variant");
  const double any_step = number(sv.at("max_abs_diff_any_step"));
  for (const json& rec : c.at("steps")) {
    const auto k = rec.at("i").get<std::size_t>();
    if (k >= trajectory.size()) continue;
    const auto ref = tensor(rec.at("prev_sample"));
    if (!all_finite(ref)) continue;
    double dev = 0.0;
    for (std::size_t e = 0; e < ref.size(); ++e) dev = std::max(dev, std::abs(trajectory[k][e] - ref[e]));
    const double bound = 4.0 * err[k + 1] + any_step;
    t.worst_traj = std::max(t.worst_traj, dev / bound);
    check(dev <= bound, "trajectory at call " + std::to_string(k) + " deviates by " + std::to_string(dev) + " > " +
                            std::to_string(bound));
  }
  const std::vector<double> state = tensor(sv.at("final_sample"));
  const std::vector<double> real = tensor(c.at("final_sample"));
  const double final_bound = 4.0 * err[n];
  if (all_finite(state)) {
    double dev = 0.0;
    for (std::size_t e = 0; e < x.size(); ++e) dev = std::max(dev, std::abs(x[e] - state[e]));
    t.worst_state = std::max(t.worst_state, dev / std::max(1e-300, max_abs(state)));
    check(dev <= final_bound,
          "float64-state final deviates by " + std::to_string(dev) + " > " + std::to_string(final_bound));
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
