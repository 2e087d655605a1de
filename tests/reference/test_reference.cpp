// Replays every diffusers reference case found under the reference directory (tests/data/diffusers by default,
// or $SKIPSTEP_REFERENCE_DIR) through skipstep's samplers in the diffusers convention, and checks:
//  - the timestep list (skipstep never emits diffusers' trailing −1 entry);
//  - at every recorded step, the model's timestep, the step's levels (ā_t, ā_prev against diffusers' float32 table
//    within the table's own measured deviation) and the step arithmetic in isolation (recorded sample, model output
//    and noise fed to our step with diffusers' own ā values: prev_sample and x̂0 to float32 rounding);
//  - the final sample of a full replay (x_T, portable noise, the reference predictor) against
//    float64_schedule_variant (pure float64 schedule) and float64_state_variant (recorded tables) to 1e-10
//    relative, and against diffusers' real output within the README's practical bound.
// Documented divergences are decided by rule, never by case name: non-finite diffusers output (we must be finite),
// the trailing −1 timestep (our list is N long), zero terminal SNR with epsilon prediction (we throw).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "reference_data.hpp"
#include "skipstep/sampler.hpp"

using namespace skipstep;
using namespace skipstep_reference;

namespace {

struct replay_setup {
  std::string cls;
  json c;
  std::size_t num_samples;
  prediction_type prediction;
  x0_processing processing;
  variance_type variance = variance_type::fixed_small;
  const case_noise* noise = nullptr;
  bool float32_model = false;  ///< model_dtype float32: the model output is rounded to float32
};

/// Runs the whole trajectory of a loaded sampler from the case's x_T with the case's noise (draw i + 1 at step i:
/// DDIM with η > 0 draws at every step, DDPM at every step with t > 0, i.e. all but the last).
std::vector<double> replay(const replay_setup& r, const sampler& s, std::vector<std::vector<double>>* trajectory = nullptr) {
  std::vector<double> x = r.noise->x_T;
  const std::size_t n = x.size();
  auto noise = [&](std::span<double> out, noise_position at) {
    const auto draw = r.noise->draw(static_cast<std::uint32_t>(at.step + 1));
    const std::size_t base = static_cast<std::size_t>(at.sample) * (n / r.num_samples) + at.first_element;
    std::copy_n(draw.begin() + static_cast<std::ptrdiff_t>(base), out.size(), out.begin());
  };
  const bool f32 = r.float32_model;
  auto model = [f32](const std::vector<double>& xs, std::int64_t t) {
    auto out = reference_model(xs, static_cast<double>(t));
    if (f32)
      for (double& v : out) v = static_cast<double>(static_cast<float>(v));
    return out;
  };
  auto record = [&](const step_info&, std::span<const double> xs, std::span<const double>) {
    if (trajectory) trajectory->emplace_back(xs.begin(), xs.end());
  };
  if (r.cls == "DDIMInverseScheduler")
    s.sample(model, x, no_noise{}, record);
  else
    s.sample(model, x, noise, record);
  return x;
}

/// One step in isolation on diffusers' own recorded levels: returns {prev_sample, x̂0}.
/// `perturb` scales diffusers' levels by (1 + perturb[k]) to measure the step's sensitivity to float32 rounding.
std::pair<std::vector<double>, std::vector<double>> isolated_step(const replay_setup& r, const json& rec,
                                                                  const std::vector<double>& input,
                                                                  std::array<double, 3> perturb = {},
                                                                  int scalar = -1, double scalar_perturb = 0.0) {
  const json& in = rec.at("internals");
  const double a_t = std::min(1.0, number(in.at("alpha_prod_t")) * (1.0 + perturb[0]));
  const double a_prev = std::min(1.0, number(in.at("alpha_prod_t_prev")) * (1.0 + perturb[1]));
  affine_step coeff;
  if (r.cls == "DDIMScheduler") {
    const double sd = std::min(number(in.at("std_dev_t")) * (1.0 + perturb[2]), std::sqrt(1.0 - a_prev));
    coeff = ddim_step(r.prediction, a_t, a_prev, sigma_choice{sd, sd});
  } else if (r.cls == "DDPMScheduler") {
    coeff = ddpm_step(r.prediction, a_t, a_prev, r.variance, !rec.at("noise").is_null());
  } else {
    coeff = ddim_step(r.prediction, a_t, a_prev, sigma_choice{});
  }
  // diffusers rounds each scalar of the step to float32 (README "Where float32 creeps in", 3): `scalar` moves one of
  // them (√ā_t's and √(1−ā_t)'s maps into x̂0 and ε̂, and the step's three weights) by `scalar_perturb` relative.
  double* const scalars[] = {&coeff.pred.x0_from_sample, &coeff.pred.x0_from_model, &coeff.pred.eps_from_sample,
                             &coeff.pred.eps_from_model, &coeff.x0_weight,         &coeff.eps_weight,
                             &coeff.sample_weight,       &coeff.noise_std,         &coeff.reeps_from_sample,
                             &coeff.reeps_from_x0};
  if (scalar >= 0) *scalars[scalar] *= 1.0 + scalar_perturb;
  std::vector<double> x = input;
  const std::vector<double> m = tensor(rec.at("model_output"));
  std::vector<double> x0(x.size()), scratch(x.size());
  if (!rec.at("noise").is_null()) {
    const std::vector<double> z = step_noise(rec, *r.noise, x.size());
    apply_step<double>(coeff, x, m, r.processing, r.num_samples, given_noise<double>{z, x.size() / r.num_samples},
                       0, x0, scratch);
  } else {
    apply_step<double>(coeff, x, m, r.processing, r.num_samples, no_noise{}, 0, x0, scratch);
  }
  return {x, x0};
}

}  // namespace

TEST_CASE("diffusers reference cases replay through skipstep", "[reference]") {
  const fs::path dir = reference_dir();
  INFO("reference directory: " << dir);
  REQUIRE(fs::is_directory(dir / "cases"));
  const json tables = fs::exists(dir / "alphas_cumprod_tables.json") ? load(dir / "alphas_cumprod_tables.json") : json();

  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir / "cases"))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());

  std::map<std::string, tally> by_class;
  tally torch_generator;  // the `torch_generator` group, counted apart from its classes (reference README)
  int skipped_class = 0, skipped_torch_rng = 0;
  for (const auto& file : files) {
    const json c = load(file);
    const auto cls = c.at("scheduler_class").get<std::string>();
    const auto name = c.at("case").get<std::string>();
    // Skips are decided by rule and counted, never by case name: a class the loader does not support is counted
    // skipped on that class's line. The torch_generator group (x_T and noise from real torch CPU generators) is
    // replayed like every case of its class, with torch's generator through diffusers_torch_noise instead of the
    // portable one, and counted on its own line.
    const bool torch_rng = uses_torch_generator(c);
    if (!implemented_classes().contains(cls)) {
      ++(torch_rng ? torch_generator : by_class[cls]).skipped;
      ++(torch_rng ? skipped_torch_rng : skipped_class);
      continue;
    }
    tally& t = torch_rng ? torch_generator : by_class[cls];
    if (((is_sigma_class(cls) || is_deis_singlestep_class(cls)) && c.at("group") != "error") ||
        is_consistency_class(cls) || is_unipc_class(cls)) {
      bool case_ok = true;
      const check_fn record = [&](bool cond, const std::string& what) {
        if (!cond) {
          case_ok = false;
          UNSCOPED_INFO(name << ": " << what);
          CHECK(cond);
        }
      };
      if (is_consistency_class(cls))
        replay_consistency_case(c, tables.at("tables"), t, record);
      else if (is_deis_singlestep_class(cls))
        replay_deis_singlestep_case(c, t, record);
      else if (is_unipc_class(cls))
        replay_unipc_case(c, t, record);
      else
        replay_sigma_case(c, t, record);
      case_ok ? ++t.passed : ++t.failed;
      continue;
    }
    bool ok = true;
    auto check = [&](bool cond, const std::string& what) {
      if (!cond) {
        ok = false;
        UNSCOPED_INFO(name << ": " << what);
        CHECK(cond);
      }
    };

    // Expected-error cases: the loader must reject the configuration with std::invalid_argument.
    if (c.at("group") == "error") {
      check_refused(c, check);
      ok ? ++t.passed : ++t.failed;
      continue;
    }

    // 2. Zero terminal SNR with epsilon prediction: diffusers divides by ā = 0; skipstep refuses (std::domain_error
    // when the sampler is built). The rule is read from the loaded schedule of the same config with v prediction.
    std::optional<loaded_scheduler> loaded_or;
    bool refused = false;
    try {
      loaded_or.emplace(load_case(c));
    } catch (const std::domain_error&) {
      refused = true;
    }
    if (refused) {
      json as_v = config_of(c);
      as_v["prediction_type"] = "v_prediction";
      const loaded_scheduler probe = load_scheduler_config(as_v, case_options(c));
      const bool eps = c.at("config").value("prediction_type", std::string("epsilon")) == "epsilon";
      check(probe.schedule->has_zero_terminal_snr() && eps,
            "only zero terminal SNR + epsilon prediction may throw std::domain_error");
      ok ? ++t.passed : ++t.failed;
      continue;
    }
    const loaded_scheduler& loaded = *loaded_or;
    const case_noise case_noise_values = noise_of(c, loaded);
    check_torch_noise(c, case_noise_values, check);
    replay_setup r;
    r.cls = cls;
    r.c = c;
    r.num_samples = loaded.options.num_samples;
    r.prediction = loaded.options.prediction;
    r.processing = loaded.options.processing;
    r.variance = loaded.variance;
    r.noise = &case_noise_values;
    r.float32_model = c.value("model_dtype", std::string("float64")) == "float32";
    const noise_schedule<double>& schedule = *loaded.schedule;
    const timestep_schedule& timesteps = *loaded.timesteps;

    // 1. The timestep list: equal to diffusers', except that skipstep never has the trailing −1 entry.
    std::vector<std::int64_t> expected = c.at("timesteps").get<std::vector<std::int64_t>>();
    if (cls == "DDIMInverseScheduler") std::reverse(expected.begin(), expected.end());
    const bool minus_one = !expected.empty() && expected.back() == -1;
    if (minus_one) expected.pop_back();
    check(std::vector<std::int64_t>(timesteps.timesteps().begin(), timesteps.timesteps().end()) == expected,
          "timestep list differs from diffusers'");
    if (minus_one) check(timesteps.size() == c.at("num_steps").get<std::size_t>() - 1, "trailing list must have N entries");

    // diffusers' fixed_large_log takes √ of a log-variance (NaN for t > 0, and 0 instead of 1 where β = 1):
    // skipstep computes exp(½·log β) = √β, so its run must equal the fixed_large run.
    const bool documented_step_bug = cls == "DDPMScheduler" && r.variance == variance_type::fixed_large_log;
    if (documented_step_bug) {
      json large_config = config_of(c);
      large_config["variance_type"] = "fixed_large";
      const loaded_scheduler large = load_scheduler_config(large_config, case_options(c));
      const double d = rel_dev(replay(r, loaded.get()), replay(r, large.get()));
      check(d <= 1e-12, "fixed_large_log must equal fixed_large, deviates by " + std::to_string(d));
    }

    // 3. Every recorded step: timestep, levels, and the step arithmetic in isolation.
    std::vector<double> previous = case_noise_values.x_T;
    const double table_dev = c.at("float64_schedule_variant").value("max_rel_diff_alphas_cumprod", 0.0);
    const std::vector<step_transition> transitions =
        cls == "DDIMScheduler"   ? ddim_transitions(schedule, timesteps, step_convention::diffusers)
        : cls == "DDPMScheduler" ? ddpm_transitions(schedule, timesteps, step_convention::diffusers)
                                 : inversion_transitions(schedule, timesteps, step_convention::diffusers);
    const std::size_t offset = (cls == "DDIMInverseScheduler" && minus_one) ? 1 : 0;  // inverse list starts at −1
    for (const json& rec : c.at("steps")) {
      const auto i = rec.at("i").get<std::size_t>();
      const std::vector<double> input = rec.contains("sample") ? tensor(rec.at("sample")) : previous;
      previous = tensor(rec.at("prev_sample"));
      if (i < offset || i - offset >= transitions.size()) continue;  // diffusers' −1 step: not ours
      const step_transition& tr = transitions[i - offset];
      const json& in = rec.at("internals");
      check(tr.timestep == rec.at("t").get<std::int64_t>(), "timestep at step " + std::to_string(i));
      const double ref_from = number(in.at("alpha_prod_t")), ref_to = number(in.at("alpha_prod_t_prev"));
      const double tol_level = table_dev * 1.01 + 1e-15;
      check(std::abs(tr.alpha_cumprod_from - ref_from) <= tol_level * ref_from,
            "alpha_prod_t at step " + std::to_string(i));
      check(std::abs(tr.alpha_cumprod_to - ref_to) <= tol_level * ref_to,
            "alpha_prod_t_prev at step " + std::to_string(i));
      if (cls == "DDIMScheduler") check(tr.target_timestep == std::max<std::int64_t>(in.at("prev_timestep").get<std::int64_t>(), -1), "prev_timestep");
      if (cls == "DDPMScheduler") check(tr.target_timestep == in.at("prev_t").get<std::int64_t>(), "prev_t");
      // The isolated step uses diffusers' float32 levels widened to double. What remains is diffusers' float32
      // arithmetic on its scalar coefficients. Its size depends on the step's conditioning (1 − ā_t/ā_prev for a
      // small beta, √ of a radicand near 0 for zero-SNR η = 1, 1/√ā_t amplifying x̂0's cancellation at tiny ā),
      // so the bound is measured, not guessed: the spread of our step when each input level, and each scalar
      // coefficient, moves by 2 float32 ulps, times 4, plus 16 float32 ulps of magnitude.
      if (documented_step_bug) continue;
      const auto [ours_prev, ours_x0] = isolated_step(r, rec, input);
      const auto ref_prev = tensor(rec.at("prev_sample"));
      if (!all_finite(ref_prev)) continue;  // a documented diffusers NaN
      double spread = 0.0;
      for (int k = 0; k < 3; ++k)
        for (double sign : {-1.0, 1.0}) {
          std::array<double, 3> p{};
          p[static_cast<std::size_t>(k)] = sign * 0x1p-23;
          const auto [pp, px] = isolated_step(r, rec, input, p);
          for (std::size_t e = 0; e < pp.size(); ++e)
            spread = std::max({spread, std::abs(pp[e] - ours_prev[e]), std::abs(px[e] - ours_x0[e])});
        }
      // And each float32 scalar's own rounding (2 ulps), which the level perturbations do not reach: at tiny ā the
      // rounding of √(1−ā) in x̂0 = (x − √(1−ā)·m)/√ā is amplified by 1/√ā (diffusers' float32 cancellation).
      for (int k = 0; k < 10; ++k)
        for (double sign : {-1.0, 1.0}) {
          const auto [pp, px] = isolated_step(r, rec, input, {}, k, sign * 0x1p-23);
          for (std::size_t e = 0; e < pp.size(); ++e)
            spread = std::max({spread, std::abs(pp[e] - ours_prev[e]), std::abs(px[e] - ours_x0[e])});
        }
      const double scale = std::max({max_abs(input), max_abs(tensor(rec.at("model_output"))), max_abs(ref_prev),
                                     rec.at("pred_original_sample").is_null() ? 0.0
                                                                               : max_abs(tensor(rec.at("pred_original_sample"))),
                                     1.0});
      double dev = 0.0;
      for (std::size_t k = 0; k < ref_prev.size(); ++k) dev = std::max(dev, std::abs(ours_prev[k] - ref_prev[k]));
      if (!rec.at("pred_original_sample").is_null()) {
        const auto ref_x0 = tensor(rec.at("pred_original_sample"));
        for (std::size_t k = 0; k < ref_x0.size(); ++k) dev = std::max(dev, std::abs(ours_x0[k] - ref_x0[k]));
      }
      const double bound = 4.0 * spread + 0x1p-20 * scale;
      t.worst_step = std::max(t.worst_step, dev / bound);
      check(dev <= bound, "isolated step " + std::to_string(i) + " deviates by " + std::to_string(dev) + " > " +
                              std::to_string(bound));
    }

    // 4. Full replays. At each recorded step the trajectory stays within 10× the largest deviation diffusers
    // itself shows between its float32 and its pure-float64 run at any step (max_abs_diff_any_step).
    std::vector<std::vector<double>> trajectory;
    const std::vector<double> ours = replay(r, loaded.get());  // fused kernel (no x̂0 output)
    const std::vector<double> ours_general = replay(r, loaded.get(), &trajectory);  // x̂0 written too
    check(rel_dev(ours_general, ours) <= 1e-13, "fused and general kernels disagree");
    const double any_step = number(c.at("float64_schedule_variant").at("max_abs_diff_any_step"));
    if (!documented_step_bug && std::isfinite(any_step)) {
      for (const json& rec : c.at("steps")) {
        const auto i = rec.at("i").get<std::size_t>();
        if (i < offset || i - offset >= trajectory.size() || (minus_one && cls != "DDIMInverseScheduler" && i + 1 >= c.at("num_steps").get<std::size_t>())) continue;
        if (minus_one && cls == "DDIMInverseScheduler") continue;  // diffusers' first step lands on ā[−1]
        const auto ref_prev = tensor(rec.at("prev_sample"));
        if (!all_finite(ref_prev)) continue;
        double dev = 0.0;
        for (std::size_t k = 0; k < ref_prev.size(); ++k)
          dev = std::max(dev, std::abs(trajectory[i - offset][k] - ref_prev[k]));
        const double bound = 10.0 * any_step + 1e-12 * std::max(1.0, max_abs(ref_prev));
        t.worst_traj = std::max(t.worst_traj, dev / bound);
        check(dev <= bound, "trajectory at step " + std::to_string(i) + " deviates by " + std::to_string(dev));
      }
    }
    check(all_finite(ours), "final sample must be finite");
    const std::vector<double> real = tensor(c.at("final_sample"));
    const bool documented_divergence = minus_one || documented_step_bug || c.value("final_sample_nonfinite", false);
    const std::vector<double> pure = tensor(c.at("float64_schedule_variant").at("final_sample"));
    // A float32 pipeline (model_dtype float32): diffusers' float64 variants change only the schedule's tables, the
    // chain stays float32, so a float64 run is compared with them as with the real output, through the triangle
    // inequality |ours − variant| ≤ |ours − real| + |real − variant| (the real bound below plus the variant's own
    // recorded distance to the real run). Every float64 pipeline keeps the 1e-10 of a float64 implementation.
    const auto variant_bound = [&](const json& variant) {
      if (!r.float32_model) return 1e-10;
      const json& pv = c.at("float64_schedule_variant");
      return std::max(10.0 * number(pv.at("max_abs_diff_final_rel")), 1e-12) + number(variant.at("max_abs_diff_final_rel"));
    };
    if (!documented_divergence && all_finite(pure)) {
      const double d = rel_dev(ours, pure);
      t.worst_pure = std::max(t.worst_pure, d);
      const double bound = variant_bound(c.at("float64_schedule_variant"));
      check(d <= bound, "pure-float64 final deviates by " + std::to_string(d) + " > " + std::to_string(bound));
    }
    // Recorded float32 table, promoted to double (float64_state_variant).
    if (!documented_divergence && tables.is_object()) {
      const json& tab = tables.at("tables").at(c.at("alphas_cumprod_table").get<std::string>());
      load_options on_table = case_options(c);  // the same config on diffusers' float32 ā table
      on_table.alphas_cumprod = tensor(tab.at("alphas_cumprod"));
      const loaded_scheduler state_loaded = load_case(c, on_table);
      const std::vector<double> state = tensor(c.at("float64_state_variant").at("final_sample"));
      if (all_finite(state)) {
        const double d = rel_dev(replay(r, state_loaded.get()), state);
        t.worst_state = std::max(t.worst_state, d);
        const double bound = variant_bound(c.at("float64_state_variant"));
        check(d <= bound, "float64-state final deviates by " + std::to_string(d) + " > " + std::to_string(bound));
      }
    }
    if (!documented_divergence && all_finite(real)) {
      const json& pv = c.at("float64_schedule_variant");
      const json& sv = c.at("float64_state_variant");
      double delta = number(pv.at("max_abs_diff_final_rel"));
      if (!std::isfinite(delta)) delta = number(sv.at("max_abs_diff_final_rel"));
      const double bound = std::max(10.0 * delta, 1e-12);
      const double d = rel_dev(ours, real);
      t.worst_real = std::max(t.worst_real, d);
      t.worst_real_ratio = std::max(t.worst_real_ratio, d / bound);
      check(d <= bound, "real final deviates by " + std::to_string(d) + " > bound " + std::to_string(bound));
    }
    ok ? ++t.passed : ++t.failed;
  }

  int total_checked = 0;
  const auto print = [&](const std::string& label, const tally& t) {
    std::cout << "reference " << label << ": " << t.passed << " passed, " << t.failed << " failed, " << t.skipped
              << " skipped";
    if (t.passed + t.failed > 0)
      std::cout << " | max rel dev: pure-float64 " << t.worst_pure << ", float64-state " << t.worst_state
                << ", diffusers' real output " << t.worst_real
                << " | dev/bound: real final " << t.worst_real_ratio << ", recorded steps " << t.worst_traj
                << ", isolated steps " << t.worst_step;
    std::cout << '\n';
    total_checked += t.passed + t.failed;
  };
  for (const auto& [cls, t] : by_class) print(cls, t);
  print("torch_generator", torch_generator);
  std::cout << "reference: skipped " << skipped_class << " cases of classes the loader does not support, "
            << skipped_torch_rng << " torch_generator cases of such classes\n";
  CHECK(total_checked > 0);
}

TEST_CASE("DDIM single-step sigma: variance and std per eta match diffusers", "[reference][sigma]") {
  const fs::path file = reference_dir() / "ddim_single_step_sigma.json";
  REQUIRE(fs::exists(file));
  const json d = load(file);
  const std::vector<double> sample = tensor(d.at("sample")), model = tensor(d.at("model_output")),
                            noise = tensor(d.at("noise"));
  int entries = 0;
  for (const json& e : d.at("entries")) {
    const json& cfg = d.at("configs").at(e.at("config").get<std::string>());
    INFO("config " << e.at("config") << " N=" << e.at("num_inference_steps") << " step " << e.at("step_index")
                   << " eta " << e.at("eta"));
    json with_class = cfg;
    with_class["_class_name"] = "DDIMScheduler";
    load_options lo;
    lo.num_inference_steps = e.at("num_inference_steps").get<std::size_t>();
    const loaded_scheduler loaded = load_scheduler_config(with_class, lo);
    const auto& schedule = *loaded.schedule;
    const auto& ts = *loaded.timesteps;
    const auto n = ts.size();
    const auto transitions = ddim_transitions(schedule, ts, step_convention::diffusers);
    const step_transition& tr = transitions.at(e.at("step_index").get<std::size_t>());
    CHECK(tr.timestep == e.at("t").get<std::int64_t>());
    CHECK(std::max<std::int64_t>(e.at("prev_timestep").get<std::int64_t>(), -1) == tr.target_timestep);
    // diffusers' values are float32: compare with float32 resolution relative to the quantity's own scale.
    const double variance = ddpm_sigma(tr.alpha_cumprod_from, tr.alpha_cumprod_to);
    const double ref_var = number(e.at("_get_variance(t,prev_t)"));
    CHECK(variance * variance == Approx(ref_var).epsilon(1e-5).margin(1e-7));
    const eta policy{e.at("eta").get<double>()};
    const step_context ctx{tr.alpha_cumprod_from, tr.alpha_cumprod_to, 0, n, tr.timestep, tr.target_timestep};
    CHECK(policy(ctx) == Approx(number(e.at("std_dev_t"))).epsilon(1e-5).margin(1e-7));
    // And the whole step on the recorded sample with diffusers' own levels: same x_prev and x̂0 up to diffusers'
    // float32 scalar arithmetic, bounded as in the replay test by the step's sensitivity to 2-ulp level changes.
    const auto kind = loaded.options.prediction;
    const auto samples = d.at("shape").at(0).get<std::size_t>();
    auto run = [&](std::array<double, 3> p) {
      const double a_t = std::min(1.0, number(e.at("alpha_prod_t")) * (1.0 + p[0]));
      const double a_prev = std::min(1.0, number(e.at("alpha_prod_t_prev")) * (1.0 + p[1]));
      const double sd = std::min(number(e.at("std_dev_t")) * (1.0 + p[2]), std::sqrt(1.0 - a_prev));
      const affine_step c = ddim_step(kind, a_t, a_prev, sigma_choice{sd, sd});
      std::vector<double> x = sample, x0(sample.size());
      if (e.at("noise_used").get<bool>())
        apply_step<double>(c, x, model, x0_processing::none(), samples, given_noise<double>{noise, sample.size() / samples},
                           0, x0);
      else
        apply_step<double>(c, x, model, x0_processing::none(), samples, no_noise{}, 0, x0);
      x.insert(x.end(), x0.begin(), x0.end());
      return x;
    };
    const std::vector<double> ours = run({});
    double spread = 0.0;
    for (std::size_t k = 0; k < 3; ++k)
      for (double sign : {-1.0, 1.0}) {
        std::array<double, 3> p{};
        p[k] = sign * 0x1p-23;
        const auto other = run(p);
        for (std::size_t j = 0; j < other.size(); ++j) spread = std::max(spread, std::abs(other[j] - ours[j]));
      }
    std::vector<double> ref = tensor(e.at("prev_sample"));
    const auto ref_x0 = tensor(e.at("pred_original_sample"));
    ref.insert(ref.end(), ref_x0.begin(), ref_x0.end());
    double dev = 0.0;
    for (std::size_t j = 0; j < ref.size(); ++j) dev = std::max(dev, std::abs(ours[j] - ref[j]));
    CHECK(dev <= 4.0 * spread + 0x1p-20 * std::max(1.0, max_abs(ref)));
    ++entries;
  }
  CHECK(entries > 0);
}
