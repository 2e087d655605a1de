// UniPCMultistepScheduler in the reference runner. Each case is replayed on diffusers' own recorded grid (its float32
// `sigmas` and integer `timesteps`, promoted to double: the float64-state setting). UniPC's samples are the path's
// x_t (no σ-space conversion) and diffusers keeps them in float64 (reference README, "Where float32 creeps in", 8):
// only its scalars (levels, λ, h, B(h), the b vector and the float32 LAPACK solve for ρ, rule 11) are float32 in the
// real run, and none is in the float64-state run.
//
// Checked, per case:
//  - the plan's rules against diffusers' internals at every recorded step: the model time, the predictor order
//    p_order (warm-up, lower_order_final), whether the corrector ran (use_corrector: off at step 0 and after
//    disable_corrector's steps) and its order c_order (the order of the step it corrects);
//  - every recorded step in isolation: diffusers' recorded input, model output, last_sample (the previous record's
//    corrected_sample, else its input, else history_last_sample) and D history (previous records'
//    convert_model_output, else history_convert_model_output) through our row; the new sample, our corrected sample
//    (the row's new S) and the stored D against prev_sample, corrected_sample and convert_model_output. Bound: 4× the
//    spread of those outputs when each level the row uses moves by 4 float32 ulps (what diffusers' float32 scalars,
//    the ρ solve included, can move), plus 16 float32 ulps of the step's magnitude;
//  - the full run from x_T against the float64-state final sample within the error bound propagated through the
//    rows (below), and against every recorded prev_sample and diffusers' real final sample by the triangle
//    inequality, |ours − real| ≤ |ours − state| + |state − real|, the second term the case's max_abs_diff_any_step /
//    max_abs_diff_final.
// Propagated bound on |ours − state|: the errors e_x of the sample, e_S of the saved S and e_D[j] of each stored D_j
// go through row k as its weights say — e_x' = (|w_x| + |w_D|·ℓ)·e_x + |w_S|·e_S + Σ_j |w_j|·e_D[j], the new S
// likewise with its u weights (or e_S' = e_x where the row saves x), e_D[k] = ℓ·e_x — where ℓ bounds |∂D/∂x|:
// |p_x| + 0.9·|p_m| for x̂0 = p_x·x + p_m·m (or ε̂), 0.9 the reference model's Lipschitz constant, ×2 under dynamic
// thresholding (whose divisor s ≥ 1 moves by at most as much as x̂0). Each row adds one float32 rounding of its input
// and of every value it writes (sample, S, D): an upper bound, since the float64-state run and ours differ only by
// float64 roundings of the same formulas (measured: ~1e-14 relative).
//
// Where diffusers is not finite, the rule decides (never the case's name):
//  - README #14: a last step to σ = 0 at order 1 with bh1 or predict_x0 = false is NaN in diffusers; skipstep takes
//    the limit h → ∞, which is x̂0 (data prediction) or α_N·(x^c − σ_s·ε̂)/α_s (noise prediction): the isolated
//    check compares with that limit computed from diffusers' own recorded corrected sample and D;
//  - a step with h = 0 (a repeated final level, e.g. Karras with final sigma_min; as DPM-Solver's README #16) makes
//    diffusers' b vector 0/0, NaN at order 3; skipstep takes the identity, checked against the corrected sample;
//  - README #15: a last step to σ = 0 at order ≥ 2 (lower_order_final = false) has no finite limit: skipstep must
//    refuse the configuration with std::invalid_argument, and diffusers' output must indeed be non-finite (or the
//    case be an expected error).
// Expected-error cases (group "error"): the sampler built from the case's config (grid from set_timesteps's rules, as
// the case records none) must throw std::invalid_argument; an unknown solver_type reaches it as an invalid variant.
// disable_corrector entries that name no corrector (not in [0, N − 1)) are ignored by diffusers and refused by
// skipstep: the runner asserts the refusal, then replays without them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference_data.hpp"
#include "skipstep/schedule/flow_grid.hpp"
#include "skipstep/solver/unipc.hpp"

using namespace skipstep;

namespace skipstep_reference {

bool is_unipc_class(const std::string& cls) { return cls == "UniPCMultistepScheduler"; }

namespace {

constexpr double u32 = 0x1p-24;  // float32 unit roundoff

struct unipc_case {
  unipc_options solver;
  sampler_options options;
  std::size_t num_samples = 1;
  std::vector<std::int64_t> raw_disable;  // diffusers' list as given
};

/// The case's options from the loader (on `grid`, without building: some configurations are refused by the
/// sampler, which the replay checks by rule); disable_corrector is filtered by the loader to the steps that have a
/// corrector, as diffusers ignores the others. raw_disable is the config's list as given, to check that rule.
unipc_case case_from(const json& c, const sigma_grid& grid) {
  load_options lo = case_options(c);
  lo.grid = grid;
  lo.build = false;
  const loaded_scheduler loaded = load_case(c, lo);
  unipc_case u;
  u.solver = loaded.unipc;
  u.options = loaded.options;
  u.num_samples = loaded.options.num_samples;
  const json& cfg = c.at("config");
  if (cfg.contains("disable_corrector") && cfg.at("disable_corrector").is_array())
    u.raw_disable = cfg.at("disable_corrector").get<std::vector<std::int64_t>>();
  return u;
}

/// The recorded grid: diffusers' float32 sigmas (N + 1) and integer timesteps, promoted to double.
sigma_grid recorded_grid(const json& c) {
  return sigma_grid{tensor(c.at("sigmas")), tensor(c.at("timesteps"))};
}

/// |∂x̂0/∂x| ≤ |p_x| + 0.9·|p_m| of row r for the reference model (Lipschitz 0.9), ×2 under dynamic thresholding
/// (clamp to [−s, s] and divide by s ≥ 1, where s, a quantile of |x̂0|, moves by at most as much as x̂0).
double x0_gain(const sampler& s, std::size_t r) {
  const affine_step& a = s.coefficients()[r];
  const double g = std::abs(a.pred.x0_from_sample) + 0.9 * std::abs(a.pred.x0_from_model);
  return s.options().processing.mode == x0_processing::kind::dynamic_threshold ? 2.0 * g : g;
}

/// The propagated errors of the run's state after a step: the sample, the saved S and every stored D (by step).
struct state_errors {
  double x = 0.0, s = 0.0;
  std::vector<double> d;
};

/// One row's propagation (see the file comment): the errors after row k from those before it, plus one float32
/// rounding of each value the row writes (its new sample, S and D, of magnitudes out_x, out_s, out_d) and of its input.
void propagate(const sampler& s, std::size_t k, bool x0, state_errors& e, double in_x, double out_x, double out_s,
               double out_d) {
  const affine_step& a = s.coefficients()[k];
  const row_extras& r = s.rows()[k].extras;
  const std::size_t ring = s.history_slots();
  const double lx0 = x0_gain(s, k);
  const double leps = std::abs(a.pred.eps_from_sample) + 0.9 * std::abs(a.pred.eps_from_model);
  const auto past = [&](std::uint8_t slot) {  // the step whose D row k reads from `slot`
    for (std::size_t j = 1; j <= ring && j <= k; ++j)
      if ((k - j) % ring == slot) return e.d[k - j];
    return 0.0;
  };
  double x = (std::abs(a.sample_weight) + std::abs(a.x0_weight) * lx0 + std::abs(a.eps_weight) * leps) * e.x +
             std::abs(r.state_weight) * e.s + u32 * (in_x + out_x);
  double st = r.save_state ? e.x : e.s;
  if (r.combine_state)
    st = (std::abs(r.state_from_sample) + 0.9 * std::abs(r.state_from_model) + std::abs(r.state_from_x0) * lx0) * e.x +
         std::abs(r.state_from_state) * e.s + u32 * out_s;
  for (std::size_t j = 0; j < r.history_reads; ++j) {
    x += std::abs(r.history[j].weight) * past(r.history[j].slot);
    if (r.combine_state) st += std::abs(r.history[j].state_weight) * past(r.history[j].slot);
  }
  e.d[k] = (x0 ? lx0 : leps) * e.x + u32 * out_d;
  e.x = x;
  e.s = st;
}

struct row_outputs {
  std::vector<double> x, corrected, d;  // the new sample, the new S (corrector rows), the stored D
  bool ok = false;                      // false: a history entry the row reads was not recorded
};

/// Row k of the sampler for `grid` on recorded inputs: x, m, last_sample S and the D history by step index.
row_outputs run_row(const unipc_case& u, const sigma_grid& grid, std::size_t k, const std::vector<double>& x_in,
                    const std::vector<double>& m, const std::vector<double>& last_sample,
                    const std::vector<std::vector<double>>& recorded_d) {
  const unipc_sampler s(grid, u.solver, u.options);
  const solver_row& row = s.rows()[k];
  const std::size_t ring = s.history_slots();
  row_outputs out;
  std::vector<std::vector<double>> slots(std::max<std::size_t>(ring, 1), std::vector<double>(m.size(), 0.0));
  std::vector<bool> filled(slots.size(), false);
  for (std::size_t j = 1; j <= ring && j <= k; ++j)
    if (!recorded_d[k - j].empty()) {
      slots[(k - j) % ring] = recorded_d[k - j];
      filled[(k - j) % ring] = true;
    }
  for (std::size_t j = 0; j < row.extras.history_reads; ++j)
    if (!filled[row.extras.history[j].slot]) return out;
  std::vector<double> state = last_sample;
  const bool reads_state = row.extras.state_weight != 0.0 || row.extras.combine_state;
  if (reads_state && state.size() != m.size()) return out;
  if (state.size() != m.size()) state.assign(m.size(), 0.0);
  std::vector<double*> ptrs;
  for (auto& b : slots) ptrs.push_back(b.data());
  const std::size_t per = m.size() / u.num_samples;
  std::vector<double> x = x_in, scratch(per), x0(m.size());
  no_noise quiet;
  detail::apply_row_range(s.coefficients()[k], row.extras, x.data(), m.data(),
                          row.extras.uses_state() ? state.data() : nullptr, ptrs.data(), per, s.options().processing,
                          quiet, k, x0.data(), scratch.data(), 0, u.num_samples);
  out.x = std::move(x);
  if (row.extras.combine_state) out.corrected = state;
  if (row.extras.store_slot >= 0) out.d = slots[static_cast<std::size_t>(row.extras.store_slot)];
  out.ok = true;
  return out;
}

double max_dev(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0.0;
  for (std::size_t e = 0; e < a.size() && e < b.size(); ++e) d = std::max(d, std::abs(a[e] - b[e]));
  return d;
}

/// The grid with level `which` scaled by (1 + p), kept a valid UniPC grid (flow levels below 1).
sigma_grid perturbed(const sigma_grid& g, std::size_t which, double p, bool flow) {
  sigma_grid out = g;
  out.sigmas[which] *= 1.0 + p;
  if (flow) out.sigmas[which] = std::min(out.sigmas[which], std::nextafter(1.0, 0.0));
  return out;
}

}  // namespace

void replay_unipc_case(const json& c, tally& t, const check_fn& check) {
  const bool error_case = c.at("group") == "error";
  if (error_case) {  // the whole configuration, options to sampler, must be refused with std::invalid_argument
    check_refused(c, check);
    return;
  }
  const sigma_grid grid = recorded_grid(c);
  unipc_case u = case_from(c, grid);
  const bool flow = u.solver.path == grid_path::flow;
  const bool x0 = u.solver.predict_x0;
  const std::size_t n = grid.size();
  load_options resolve_only = case_options(c);
  resolve_only.grid = grid;
  resolve_only.build = false;
  const case_noise case_noise_values = noise_of(c, load_case(c, resolve_only));

  // disable_corrector: diffusers ignores entries that name no corrector (the loader drops them); skipstep's sampler
  // refuses them.
  if (u.solver.disable_corrector.size() != u.raw_disable.size()) {
    bool threw = false;
    unipc_options raw = u.solver;
    for (std::int64_t j : u.raw_disable)
      if (j >= 0 && static_cast<std::size_t>(j) + 1 >= n) raw.disable_corrector.push_back(static_cast<std::size_t>(j));
    try {
      (void)unipc_sampler(grid, raw, u.options);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw || raw.disable_corrector.size() == u.solver.disable_corrector.size(),
          "a disable_corrector entry outside [0, N - 1) must be refused");
  }

  // README #15 by rule: a last step to σ = 0 at order ≥ 2 has no finite limit, and skipstep refuses it.
  const bool refused = grid.sigmas.back() == 0.0 && unipc_sampler::predictor_order(u.solver, n - 1, n) >= 2;
  if (refused) {
    bool threw = false;
    try {
      (void)unipc_sampler(grid, u.solver, u.options);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, "expected std::invalid_argument (order >= 2 on a last step to sigma = 0)");
    check(c.value("final_sample_nonfinite", false), "a refused configuration must be one diffusers cannot finish");
    return;
  }

  const unipc_sampler full(grid, u.solver, u.options);
  const std::vector<solver_row>& rows = full.rows();
  check(rows.size() == n && full.history_slots() == static_cast<std::size_t>(u.solver.order), "plan shape");

  // 1. Plan rules and isolated steps.
  std::vector<std::vector<double>> recorded_d(n);
  std::vector<double> previous = case_noise_values.x_T, last_sample;
  std::size_t previous_k = 0;
  bool have_previous = false;
  for (const json& rec : c.at("steps")) {
    const auto k = rec.at("i").get<std::size_t>();
    if (k >= n) {
      check(false, "recorded call " + std::to_string(k) + " beyond our " + std::to_string(n) + " rows");
      continue;
    }
    const std::string at = "step " + std::to_string(k);
    const std::vector<double> input = rec.contains("sample") ? tensor(rec.at("sample")) : previous;
    const std::vector<double> m = tensor(rec.at("model_output"));
    const std::vector<double> ref_d = tensor(rec.at("convert_model_output"));
    std::vector<double> ref_prev = tensor(rec.at("prev_sample"));
    const json& in = rec.at("internals");
    const bool corrected = rec.contains("corrected_sample");
    const std::vector<double> ref_corrected = corrected ? tensor(rec.at("corrected_sample")) : std::vector<double>();
    check(rows[k].model_time == rec.at("t").get<double>(), "model time at " + at);
    check(in.at("p_order").get<int>() == unipc_sampler::predictor_order(u.solver, k, n), "predictor order at " + at);
    check(in.at("use_corrector").get<bool>() == unipc_sampler::corrects(u.solver, k) && corrected == rows[k].extras.combine_state,
          "corrector use at " + at);
    if (corrected && k > 0)
      check(in.at("c_order").get<int>() == unipc_sampler::predictor_order(u.solver, k - 1, n), "corrector order at " + at);
    // diffusers' state before the call: last_sample and the D history.
    if (rec.contains("history_last_sample") && !rec.at("history_last_sample").is_null())
      last_sample = tensor(rec.at("history_last_sample"));
    else if (!(have_previous && previous_k + 1 == k))
      last_sample.clear();
    if (rec.contains("history_convert_model_output")) {
      const json& hist = rec.at("history_convert_model_output");  // solver_order slots, oldest first, ending at k − 1
      for (std::size_t j = 0; j < hist.size(); ++j)
        if (!hist[j].is_null() && k + j >= hist.size()) recorded_d[k - hist.size() + j] = tensor(hist[j]);
    }
    // Where diffusers is not finite, by rule: README #14, a first-order last step to σ = 0 with bh1 or noise
    // prediction (limit: x̂0, or α_N·(x^c − σ_s·ε̂)/α_s with α_N = 1); or a step with h = 0, a repeated final level,
    // whose b vector is 0/0 at order 3 (limit: the identity on the corrected sample).
    if (!all_finite(ref_prev)) {
      const std::vector<double>& xc = corrected ? ref_corrected : input;
      const bool to_zero = k + 1 == n && grid.sigmas[n] == 0.0 &&
                           unipc_sampler::predictor_order(u.solver, k, n) == 1 &&
                           (u.solver.variant == unipc_variant::bh1 || !x0);
      const bool repeated = grid.sigmas[k + 1] == grid.sigmas[k];
      check(to_zero || repeated, "diffusers is not finite at " + at + " outside the documented rules");
      const level s = flow ? level::flow(grid.sigmas[k]) : level::from_sigma_tilde(grid.sigmas[k]);
      for (std::size_t e = 0; e < ref_prev.size(); ++e)
        ref_prev[e] = repeated ? xc[e] : x0 ? ref_d[e] : (xc[e] - s.sigma * ref_d[e]) / s.alpha;
    }
    const row_outputs ours = run_row(u, grid, k, input, m, last_sample, recorded_d);
    if (ours.ok) {
      double spread = 0.0;
      for (std::size_t which = k >= 3 ? k - 3 : 0; which <= k + 1; ++which)
        for (double p : {-4.0 * u32, 4.0 * u32}) {
          const row_outputs q = run_row(u, perturbed(grid, which, p, flow), k, input, m, last_sample, recorded_d);
          spread = std::max({spread, max_dev(q.x, ours.x), max_dev(q.corrected, ours.corrected), max_dev(q.d, ours.d)});
        }
      double dev = std::max(max_dev(ours.x, ref_prev), max_dev(ours.d, ref_d));
      if (corrected) dev = std::max(dev, max_dev(ours.corrected, ref_corrected));
      double hist_max = 0.0;
      for (const auto& d : recorded_d) hist_max = std::max(hist_max, d.empty() ? 0.0 : max_abs(d));
      const double scale = std::max({max_abs(input), max_abs(m), max_abs(ref_prev), max_abs(ref_d), hist_max,
                                     last_sample.empty() ? 0.0 : max_abs(last_sample), 1.0});
      const double bound = 4.0 * spread + 16.0 * u32 * scale;
      t.worst_step = std::max(t.worst_step, dev / bound);
      check(dev <= bound, "isolated " + at + " deviates by " + std::to_string(dev) + " > " + std::to_string(bound));
    }
    // The state diffusers carries into the next call.
    recorded_d[k] = ref_d;
    last_sample = corrected ? ref_corrected : input;
    previous = tensor(rec.at("prev_sample"));
    previous_k = k;
    have_previous = true;
  }

  // 2. The full run from x_T, with the error bound propagated through the rows.
  std::vector<double> x = case_noise_values.x_T;
  std::vector<std::vector<double>> trajectory;
  std::vector<double> bound_at;
  state_errors errors;
  errors.d.assign(n, 0.0);
  double in_max = max_abs(x);
  sampler_workspace<double> ws(x.size());
  auto model = [](const std::vector<double>& xs, double time) { return reference_model(xs, time); };
  auto record = [&](const step_info& info, std::span<const double> xs, std::span<const double>) {
    const std::size_t k = info.step_index;
    std::vector<double> now(xs.begin(), xs.end());
    const std::size_t ring = full.history_slots(), size = now.size();
    const double out_d = max_abs(std::vector<double>(ws.history.begin() + static_cast<std::ptrdiff_t>((k % ring) * size),
                                                     ws.history.begin() + static_cast<std::ptrdiff_t>((k % ring + 1) * size)));
    propagate(full, k, x0, errors, in_max, max_abs(now), ws.state.empty() ? 0.0 : max_abs(ws.state), out_d);
    in_max = max_abs(now);
    trajectory.push_back(std::move(now));
    bound_at.push_back(errors.x);
  };
  full.sample(model, x, no_noise{}, ws, record);
  check(all_finite(x), "final sample must be finite");

  const json& sv = c.at("float64_state_variant");
  const double any_step = number(sv.at("max_abs_diff_any_step"));
  for (const json& rec : c.at("steps")) {
    const auto k = rec.at("i").get<std::size_t>();
    if (k >= trajectory.size()) continue;
    const auto ref = tensor(rec.at("prev_sample"));
    if (!all_finite(ref)) continue;  // README #14: compared with the limit in isolation above
    const double dev = max_dev(trajectory[k], ref);
    const double bound = bound_at[k] + (std::isfinite(any_step) ? any_step : 0.0) + 1e-12 * std::max(1.0, max_abs(ref));
    t.worst_traj = std::max(t.worst_traj, dev / bound);
    check(dev <= bound, "trajectory at step " + std::to_string(k) + " deviates by " + std::to_string(dev) + " > " +
                            std::to_string(bound));
  }
  const std::vector<double> state = tensor(sv.at("final_sample"));
  const std::vector<double> real = tensor(c.at("final_sample"));
  const double final_bound = bound_at.back() + 1e-12 * std::max(1.0, max_abs(state));
  if (all_finite(state)) {
    const double dev = max_dev(x, state);
    t.worst_state = std::max(t.worst_state, dev / std::max(1e-300, max_abs(state)));
    check(dev <= final_bound, "float64-state final deviates by " + std::to_string(dev) + " > " +
                                  std::to_string(final_bound));
  }
  if (all_finite(real) && !c.value("final_sample_nonfinite", false)) {
    const double dev = max_dev(x, real);
    const double bound = final_bound + number(sv.at("max_abs_diff_final"));
    t.worst_real = std::max(t.worst_real, rel_dev(x, real));
    t.worst_real_ratio = std::max(t.worst_real_ratio, dev / bound);
    check(dev <= bound, "real final deviates by " + std::to_string(dev) + " > bound " + std::to_string(bound));
  }
}

}  // namespace skipstep_reference
