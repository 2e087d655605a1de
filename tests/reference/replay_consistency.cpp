// The consistency-model classes of the reference runner: LCMScheduler and TCDScheduler (VP, integer timesteps,
// float64 samples in diffusers: no float32 sample casts). Checked as the DDIM cases are:
//  - the model times from consistency_timesteps (or the case's own list) equal diffusers';
//  - every recorded step in isolation on diffusers' recorded float32 table, bound 4× the step's spread when each
//    level it uses moves by 2 float32 ulps, plus 16 float32 ulps of the step's magnitude (float32 scalars);
//  - the full run against the pure-float64 variant (schedule from its definition) and the float64-state variant
//    (recorded table) to 1e-10 relative — both run diffusers' code in float64, LCM's boundary scalings and TCD's
//    timestep_s in float32 as diffusers keeps them, which the diffusers convention reproduces — and against the real
//    output within 10× the deviation diffusers itself shows between its float32 and float64 runs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "reference_data.hpp"
#include "skipstep/solver/consistency.hpp"
#include "skipstep/solver/ipndm.hpp"
#include "skipstep/solver/pndm.hpp"

using namespace skipstep;

namespace skipstep_reference {

bool is_consistency_class(const std::string& cls) {
  return cls == "LCMScheduler" || cls == "TCDScheduler" || cls == "PNDMScheduler" || cls == "IPNDMScheduler";
}

namespace {

constexpr double u32 = 0x1p-24;

struct consistency_case {
  bool tcd = false, pndm = false;
  bool skip_prk = true;
  std::size_t num_steps = 0, steps_offset = 0;
  timestep_spacing spacing = timestep_spacing::leading;
  final_alpha after_last = final_alpha::one;
  double eta = 0.3, scaling = 10.0;
  sampler_options options;
  std::vector<std::int64_t> timesteps;
};

sampler build(const consistency_case& k, const noise_schedule<double>& schedule) {
  if (k.pndm)
    return pndm_sampler(schedule, k.num_steps, k.skip_prk, k.spacing, k.steps_offset, k.after_last, k.options);
  if (k.tcd) return tcd_sampler(schedule, k.timesteps, k.eta, k.options);
  return lcm_sampler(schedule, k.timesteps, k.scaling, k.options);
}

/// PNDM's transfer in isolation: the recorded source sample (pndm_sample, else the input) and combined ε
/// (pndm_model_output) through pndm_transfer_between on the recorded table; dev/bound.
double pndm_isolated_transfer(const json& rec, const std::vector<double>& input, const noise_schedule<double>& table,
                              const consistency_case& k, const check_fn& check) {
  const json& in = rec.at("internals");
  const std::vector<double> source = rec.contains("pndm_sample") && !rec.at("pndm_sample").is_null()
                                         ? tensor(rec.at("pndm_sample"))
                                         : input;
  const std::vector<double> eps = tensor(rec.at("pndm_model_output"));
  const std::vector<double> ref = tensor(rec.at("prev_sample"));
  const auto from = in.at("timestep").get<std::int64_t>(), to = in.at("prev_timestep").get<std::int64_t>();
  const double final_level = k.after_last == final_alpha::one ? 1.0 : table.alpha_cumprod(0);
  const double a_t = table.alpha_cumprod(static_cast<std::size_t>(from));
  const double a_p = to >= 0 ? table.alpha_cumprod(static_cast<std::size_t>(to)) : final_level;
  auto run = [&](double pt, double pp) {
    const detail::pndm_transfer w = detail::pndm_transfer_between(a_t * (1.0 + pt), std::min(1.0, a_p * (1.0 + pp)));
    std::vector<double> out(source.size());
    for (std::size_t e = 0; e < out.size(); ++e) out[e] = w.source * source[e] + w.epsilon * eps[e];
    return out;
  };
  const auto ours = run(0.0, 0.0);
  double spread = 0.0;
  for (double p : {-4.0 * u32, 4.0 * u32})
    for (const auto& other : {run(p, 0.0), run(0.0, p)})
      for (std::size_t e = 0; e < other.size(); ++e) spread = std::max(spread, std::abs(other[e] - ours[e]));
  double dev = 0.0;
  for (std::size_t e = 0; e < ours.size(); ++e) dev = std::max(dev, std::abs(ours[e] - ref[e]));
  const double bound = 4.0 * spread + 16.0 * u32 * std::max({max_abs(source), max_abs(eps), max_abs(ref), 1.0});
  check(dev <= bound, "isolated call " + std::to_string(rec.at("i").get<std::size_t>()) + " deviates by " +
                          std::to_string(dev) + " > " + std::to_string(bound));
  return dev / bound;
}

}  // namespace

/// IPNDM: its own levels (betas = σ, alphas = α). Isolated: the transfer of the recorded combined ε and the ε
/// estimate of the step (σ·x + α·m) against diffusers'; full runs on the recorded float32 levels against the state
/// variant (which equals the real run: promoting IPNDM's float32 levels changes nothing) and on float64 levels
/// (make_ipndm_grid, or the trained σ list) against the pure variant, both to 1e-10, with the recorded float32
/// model times as diffusers keeps them in both.
void replay_ipndm_case(const json& c, tally& t, const check_fn& check) {
  const auto betas = tensor(c.at("betas")), alphas = tensor(c.at("alphas")), times = tensor(c.at("timesteps"));
  ipndm_grid recorded;
  for (std::size_t i = 0; i < betas.size(); ++i) recorded.levels.push_back(level{alphas[i], betas[i]});
  recorded.timesteps = times;
  const loaded_scheduler loaded = load_case(c);  // float64 levels: make_ipndm_grid, or the trained σ list
  ipndm_grid pure_grid = *loaded.ipndm;
  check(pure_grid.size() == times.size(), "number of steps differs from diffusers'");
  // diffusers' times are float32: σ = sin²(s·π/2) within ~4u relative, α = √(1 − σ²) whose float32 radicand has an
  // absolute error ~3u (it cancels near σ = 1: README rule 27), θ = atan2(σ, α); so
  // |Δθ| ≤ α·4u·σ + σ·3u/(2α) (α² + σ² = 1), and t = θ·2/π rounded to float32. Twice that is the bound.
  for (std::size_t i = 0; i < std::min(pure_grid.size(), times.size()); ++i) {
    const level l = pure_grid.levels[i];
    const double dtheta = l.alpha * 4.0 * u32 * l.sigma + (l.alpha > 0.0 ? l.sigma * 3.0 * u32 / (2.0 * l.alpha) : 0.0);
    const double bound = 2.0 * (dtheta * 2.0 / std::numbers::pi + 2.0 * u32 * times[i]) + 1e-300;
    check(std::abs(pure_grid.timesteps[i] - times[i]) <= bound, "model time " + std::to_string(i) + " differs from diffusers' by " +
                                                                    std::to_string(pure_grid.timesteps[i] - times[i]));
  }
  pure_grid.timesteps = times;  // the pure variant keeps diffusers' float32 times
  const std::size_t n_samples = c.at("shape").at(0).get<std::size_t>();
  sampler_options opt = ipndm_sampler::with_v();
  opt.num_samples = n_samples;
  std::vector<double> previous = tensor(c.at("x_T"));  // IPNDM has no noise: x_T is its only draw
  for (const json& rec : c.at("steps")) {
    const auto i = rec.at("i").get<std::size_t>();
    const std::vector<double> input = rec.contains("sample") ? tensor(rec.at("sample")) : previous;
    const std::vector<double> ref = tensor(rec.at("prev_sample"));
    previous = ref;
    const std::vector<double> m = tensor(rec.at("model_output")), e = tensor(rec.at("ipndm_ets_combined"));
    const std::vector<double> ets = tensor(rec.at("ipndm_ets"));
    const level a = recorded.levels.at(i), b = recorded.levels.at(i + 1);
    auto run = [&](double pa, double pb) {
      const double alpha = std::max(a.alpha * (1.0 + pa), 1e-8), q = b.alpha * (1.0 + pb) / alpha;
      std::vector<double> out(input.size());
      for (std::size_t k = 0; k < out.size(); ++k) out[k] = q * (input[k] - a.sigma * e[k]) + b.sigma * e[k];
      return out;
    };
    const auto ours = run(0.0, 0.0);
    double spread = 0.0;
    for (double p : {-4.0 * u32, 4.0 * u32})
      for (const auto& other : {run(p, 0.0), run(0.0, p)})
        for (std::size_t k = 0; k < other.size(); ++k) spread = std::max(spread, std::abs(other[k] - ours[k]));
    double dev = 0.0;
    for (std::size_t k = 0; k < ours.size(); ++k) dev = std::max(dev, std::abs(ours[k] - ref[k]));
    for (std::size_t k = 0; k < ets.size(); ++k) dev = std::max(dev, std::abs(a.sigma * input[k] + a.alpha * m[k] - ets[k]));
    const double bound = 4.0 * spread + 16.0 * u32 * std::max({max_abs(input), max_abs(e), max_abs(ref), max_abs(m), 1.0});
    t.worst_step = std::max(t.worst_step, dev / bound);
    check(dev <= bound, "isolated step " + std::to_string(i) + " deviates by " + std::to_string(dev));
  }
  auto model = [](const std::vector<double>& xs, double time) { return reference_model(xs, time); };
  auto run_full = [&](const ipndm_grid& g, std::vector<std::vector<double>>* trajectory) {
    std::vector<double> x = tensor(c.at("x_T"));
    sampler_workspace<double> ws(x.size());
    ipndm_sampler(g, opt).sample(model, x, no_noise{}, ws, [&](const step_info&, std::span<const double> xs, auto) {
      if (trajectory) trajectory->emplace_back(xs.begin(), xs.end());
    });
    return x;
  };
  std::vector<std::vector<double>> trajectory;
  const auto state = run_full(recorded, &trajectory);
  const auto pure = run_full(pure_grid, nullptr);
  const double d_state = rel_dev(state, tensor(c.at("float64_state_variant").at("final_sample")));
  const double d_pure = rel_dev(pure, tensor(c.at("float64_schedule_variant").at("final_sample")));
  t.worst_state = std::max(t.worst_state, d_state);
  t.worst_pure = std::max(t.worst_pure, d_pure);
  check(d_state <= 1e-10, "float64-state final deviates by " + std::to_string(d_state));
  check(d_pure <= 1e-10, "pure-float64 final deviates by " + std::to_string(d_pure));
  for (const json& rec : c.at("steps")) {
    const auto i = rec.at("i").get<std::size_t>();
    const auto ref = tensor(rec.at("prev_sample"));
    const double d = rel_dev(trajectory.at(i), ref);
    t.worst_traj = std::max(t.worst_traj, d / 1e-10);
    check(d <= 1e-10, "trajectory at step " + std::to_string(i) + " deviates by " + std::to_string(d));
  }
  const double d_real = rel_dev(state, tensor(c.at("final_sample")));
  t.worst_real = std::max(t.worst_real, d_real);
  t.worst_real_ratio = std::max(t.worst_real_ratio, d_real / 1e-10);
  check(d_real <= 1e-10, "real final deviates by " + std::to_string(d_real));
}

void replay_consistency_case(const json& c, const json& tables, tally& t, const check_fn& check) {
  if (c.at("scheduler_class") == "IPNDMScheduler") {
    replay_ipndm_case(c, t, check);
    return;
  }
  consistency_case k;
  k.tcd = c.at("scheduler_class") == "TCDScheduler";
  k.pndm = c.at("scheduler_class") == "PNDMScheduler";
  if (c.at("group") == "error") {  // the loader must refuse the configuration (set_timesteps' rules)
    check_refused(c, check);
    return;
  }
  const loaded_scheduler loaded = load_case(c);
  const case_noise case_noise_values = noise_of(c, loaded);
  check_torch_noise(c, case_noise_values, check);
  k.skip_prk = loaded.skip_prk_steps;
  k.spacing = loaded.spacing;
  k.steps_offset = loaded.steps_offset;
  k.after_last = loaded.after_last;
  k.num_steps = k.pndm ? loaded.get().num_steps() : 0;
  k.timesteps = loaded.integer_timesteps;
  k.eta = loaded.eta;
  k.scaling = loaded.timestep_scaling;
  k.options = loaded.options;
  check(k.timesteps == c.at("timesteps").get<std::vector<std::int64_t>>(), "timestep list differs from diffusers'");
  const std::size_t elements = c.at("x_T").size(), per = elements / k.options.num_samples;

  const auto table = tensor(tables.at(c.at("alphas_cumprod_table").get<std::string>()).at("alphas_cumprod"));
  load_options on_table = case_options(c);  // the same config on diffusers' float32 ā table
  on_table.alphas_cumprod = table;
  const sampler ours_state = load_case(c, on_table).get();
  const auto state_schedule = noise_schedule<double>::from_alphas_cumprod(table);

  // 1. Isolated steps on the recorded table.
  std::vector<double> previous = case_noise_values.x_T;
  for (const json& rec : c.at("steps")) {
    const auto i = rec.at("i").get<std::size_t>();
    const std::vector<double> input = rec.contains("sample") ? tensor(rec.at("sample")) : previous;
    const std::vector<double> ref_prev = tensor(rec.at("prev_sample"));
    previous = ref_prev;
    check(rec.at("t").get<std::int64_t>() == k.timesteps.at(i), "timestep at call " + std::to_string(i));
    if (k.pndm) {
      t.worst_step = std::max(t.worst_step, pndm_isolated_transfer(rec, input, state_schedule, k, check));
      continue;
    }
    const std::vector<double> m = tensor(rec.at("model_output"));
    const std::vector<double> z = step_noise(rec, case_noise_values, elements);
    // The levels step i reads: t_i, t_{i+1} (or 0) and TCD's t_s.
    std::vector<std::size_t> used{static_cast<std::size_t>(k.timesteps[i])};
    if (i + 1 < k.timesteps.size()) used.push_back(static_cast<std::size_t>(k.timesteps[i + 1]));
    if (k.tcd) used.push_back(0);
    auto run = [&](std::size_t which, double p, int scalar = -1, double rel = 0.0) {
      std::vector<double> perturbed = table;
      if (which < used.size()) perturbed[used[which]] *= 1.0 + p;
      const sampler one = build(k, noise_schedule<double>::from_alphas_cumprod(perturbed));
      std::vector<double> x = input, x0(input.size()), scratch(per);
      apply_step<double>(perturbed_scalar(one.coefficients()[i], scalar, rel), x, m, k.options.processing,
                         k.options.num_samples, given_noise<double>{z, per}, i, x0, scratch);
      return std::pair{x, x0};
    };
    const auto [ours, ours_x0] = run(used.size(), 0.0);
    double spread = 0.0;
    for (double p : {-2.0 * 2 * u32, 2.0 * 2 * u32}) {
      for (std::size_t which = 0; which < used.size(); ++which) {
        const auto [px, p0] = run(which, p);
        for (std::size_t e = 0; e < px.size(); ++e)
          spread = std::max({spread, std::abs(px[e] - ours[e]), std::abs(p0[e] - ours_x0[e])});
      }
      for (int scalar = 0; scalar < affine_scalar_count; ++scalar) {  // each float32 scalar's own rounding
        const auto [px, p0] = run(used.size(), 0.0, scalar, p);
        for (std::size_t e = 0; e < px.size(); ++e)
          spread = std::max({spread, std::abs(px[e] - ours[e]), std::abs(p0[e] - ours_x0[e])});
      }
    }
    const bool has_x0 = !rec.at("pred_original_sample").is_null();
    const std::vector<double> ref_x0 = has_x0 ? tensor(rec.at("pred_original_sample")) : std::vector<double>();
    double dev = 0.0;
    for (std::size_t e = 0; e < ours.size(); ++e) dev = std::max(dev, std::abs(ours[e] - ref_prev[e]));
    if (has_x0)
      for (std::size_t e = 0; e < ours_x0.size(); ++e) dev = std::max(dev, std::abs(ours_x0[e] - ref_x0[e]));
    const double scale =
        std::max({max_abs(input), max_abs(m), max_abs(ref_prev), has_x0 ? max_abs(ref_x0) : 0.0, max_abs(z), 1.0});
    const double bound = 4.0 * spread + 16.0 * u32 * scale;
    t.worst_step = std::max(t.worst_step, dev / bound);
    check(dev <= bound, "isolated step " + std::to_string(i) + " deviates by " + std::to_string(dev) + " > " +
                            std::to_string(bound));
  }

  // 2. Full runs: portable noise, draw i + 1 at every noisy step (every step but the last).
  auto noise = [&](std::span<double> out, noise_position at) {
    const auto d = case_noise_values.draw(static_cast<std::uint32_t>(at.step + 1));
    std::copy_n(d.begin() + static_cast<std::ptrdiff_t>(at.sample * per + at.first_element), out.size(), out.begin());
  };
  auto model = [](const std::vector<double>& xs, std::int64_t time) { return reference_model(xs, static_cast<double>(time)); };
  auto run_full = [&](const sampler& s, std::vector<std::vector<double>>* trajectory) {
    std::vector<double> x = case_noise_values.x_T;
    sampler_workspace<double> ws(x.size());
    s.sample(model, x, noise, ws, [&](const step_info&, std::span<const double> xs, std::span<const double>) {
      if (trajectory) trajectory->emplace_back(xs.begin(), xs.end());
    });
    return x;
  };
  std::vector<std::vector<double>> trajectory;
  const std::vector<double> state = run_full(ours_state, &trajectory);
  const std::vector<double> pure = run_full(loaded.get(), nullptr);
  check(all_finite(pure), "final sample must be finite");
  const double d_pure = rel_dev(pure, tensor(c.at("float64_schedule_variant").at("final_sample")));
  const double d_state = rel_dev(state, tensor(c.at("float64_state_variant").at("final_sample")));
  t.worst_pure = std::max(t.worst_pure, d_pure);
  t.worst_state = std::max(t.worst_state, d_state);
  check(d_pure <= 1e-10, "pure-float64 final deviates by " + std::to_string(d_pure));
  check(d_state <= 1e-10, "float64-state final deviates by " + std::to_string(d_state));
  const double any_step = number(c.at("float64_schedule_variant").at("max_abs_diff_any_step"));
  for (const json& rec : c.at("steps")) {
    const auto call = rec.at("i").get<std::size_t>();  // diffusers' step() call = our row
    const solver_row& row = ours_state.rows().at(call);
    if (!row.ends_step) continue;  // PNDM's provisional first call and PRK stages are not states of ours
    const std::size_t i = row.step;
    const auto ref = tensor(rec.at("prev_sample"));
    double dev = 0.0;
    for (std::size_t e = 0; e < ref.size(); ++e) dev = std::max(dev, std::abs(trajectory[i][e] - ref[e]));
    const double bound = 10.0 * any_step + 1e-12 * std::max(1.0, max_abs(ref));
    t.worst_traj = std::max(t.worst_traj, dev / bound);
    check(dev <= bound, "trajectory at step " + std::to_string(i) + " deviates by " + std::to_string(dev));
  }
  const std::vector<double> real = tensor(c.at("final_sample"));
  const double delta = number(c.at("float64_schedule_variant").at("max_abs_diff_final_rel"));
  const double bound = std::max(10.0 * delta, 1e-12);
  const double d_real = rel_dev(pure, real);
  t.worst_real = std::max(t.worst_real, d_real);
  t.worst_real_ratio = std::max(t.worst_real_ratio, d_real / bound);
  check(d_real <= bound, "real final deviates by " + std::to_string(d_real) + " > bound " + std::to_string(bound));
}

}  // namespace skipstep_reference
