// σ grids against diffusers: for every EulerDiscrete, EulerAncestralDiscrete and HeunDiscrete case found (discovered,
// never named), make_sigma_grid on the case's own float32 ā table (alphas_cumprod_tables.json) must give diffusers'
// recorded `sigmas` and `timesteps`. The bound is float32 error analysis, not a fit: diffusers computes the table's
// σ̃ = √((1 − ā)/ā) in float32 (≤ 1.5 ulp: 1 − ā is exact for ā ≥ ½ and otherwise 0.5 ulp relative to ā/(1−ā)
// ≤ 1, one division, one sqrt), interpolates or ramps in float64 (the ramp keeps relative errors) and rounds the
// result to float32 (0.5 ulp): ≤ 4 ulps; the bound is twice that, 8 float32 ulps relative. Model times derived
// from levels (karras, exponential, beta) add the time's own float32 rounding and what diffusers' float32
// log σ̃ table does to the interpolation weight w = (lo − log σ)/(lo − hi): 3 log values each within 1 ulp of
// max|log| shift w by up to 3·ulp/|lo − hi|, which is 1e-4 of a timestep where the table is flat in log σ.
// Deliberate differences are asserted by rule (README, differences table): trailing's extra −1 time is not ours,
// log_linear ends at 0, Heun's doubled lists are the same grid walked twice per step.
#include <catch2/catch.hpp>

#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "reference_data.hpp"
#include "skipstep/schedule/flow_grid.hpp"
#include "skipstep/schedule/sigma_grid.hpp"

using namespace skipstep;
using namespace skipstep_reference;

namespace {

constexpr double float32_ulp = 0x1p-23;  // relative spacing of float32 values in [1, 2)

/// The spacing of float32 values at |v| (for v = 0, the smallest normal).
double ulp32(double v) {
  const double a = std::abs(v);
  if (a < 0x1p-126) return 0x1p-149;
  return std::ldexp(1.0, std::ilogb(a) - 23);
}

/// How far diffusers' float32 log table can move sigma_to_timestep's result at level σ (see the file comment).
double timestep_sensitivity(const std::vector<double>& table, double sigma) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  std::size_t low = 0;
  for (std::size_t t = 0; t < table.size(); ++t)
    if (std::log(table[t]) <= log_sigma) low = t;
  low = std::min(low, table.size() - 2);
  const double lo = std::log(table[low]), hi = std::log(table[low + 1]);
  const double log_error = 3.0 * ulp32(std::max({std::abs(lo), std::abs(hi), std::abs(log_sigma)}));
  const double weight_shift = log_error / std::abs(lo - hi);
  const double level_shift = std::abs(sigma_to_timestep(table, sigma * (1.0 + 8.0 * float32_ulp)) -
                                      sigma_to_timestep(table, sigma));
  return weight_shift + level_shift;
}

}  // namespace

TEST_CASE("sigma grids equal diffusers' Euler, Euler ancestral and Heun sigmas and timesteps", "[reference][grid]") {
  const fs::path dir = reference_dir();
  INFO("reference directory: " << dir);
  const json tables = load(dir / "alphas_cumprod_tables.json").at("tables");
  std::map<std::string, int> checked;
  double worst_level = 0.0, worst_time = 0.0;
  for (const fs::path& file : case_files()) {
    const json c = load(file);
    const auto cls = c.at("scheduler_class").get<std::string>();
    const bool heun = cls == "HeunDiscreteScheduler";
    if (cls != "EulerDiscreteScheduler" && cls != "EulerAncestralDiscreteScheduler" && !heun) continue;
    if (c.at("group") == "error" || c.at("group") == "torch_generator") continue;
    const json& st = c.at("set_timesteps_kwargs");
    if (!st.is_object() || !st.contains("num_inference_steps")) continue;  // caller-given lists: not a grid rule
    const std::string name = c.at("case").get<std::string>();
    INFO("case " << name);
    const json& cfg = c.at("config");
    auto table_values = tensor(tables.at(c.at("alphas_cumprod_table").get<std::string>()).at("alphas_cumprod"));
    // Rule: a zero-SNR table as these classes hold it has ā_{T−1} patched to 2⁻²⁴; the schedule is the unpatched
    // one (ā_{T−1} = 0), and vp_sigmas applies the same patch.
    if (cfg.value("rescale_betas_zero_snr", false) && table_values.back() == 0x1p-24) table_values.back() = 0.0;
    const auto schedule = noise_schedule<double>::from_alphas_cumprod(table_values);
    const auto n = st.at("num_inference_steps").get<std::size_t>();
    // The grid the diffusers config loader builds from the case's config, on diffusers' own float32 ā table.
    load_options lo = case_options(c);
    lo.alphas_cumprod = table_values;
    lo.build = false;
    const loaded_scheduler loaded = load_case(c, lo);
    const sigma_grid_options& opt = loaded.sigma_options;
    const sigma_grid g = *loaded.grid;
    const std::vector<double> table = vp_sigmas(schedule);

    // diffusers' lists, with Heun's doubled entries taken once: t_0, t_1, t_3, ... and σ_0, σ_1, σ_3, ..., σ_{2N−1}.
    std::vector<double> times = tensor(c.at("timesteps")), levels = tensor(c.at("sigmas"));
    if (heun) {
      std::vector<double> t1{times.front()}, s1{levels.front()};
      for (std::size_t k = 1; k < times.size(); k += 2) t1.push_back(times[k]);
      for (std::size_t k = 1; k < levels.size(); k += 2) s1.push_back(levels[k]);
      times = t1;
      levels = s1;
    }
    // Rule: trailing's extra model time −1 (and its level) is diffusers', not ours.
    if (times.size() == n + 1 && times.back() == -1.0) {
      times.pop_back();
      levels.erase(levels.end() - 2);
    }
    // Rule: diffusers' log_linear has N + 2 levels and never reaches the last; ours end at the final level.
    if (opt.levels == sigma_spacing::log_linear && levels.size() == n + 2) levels.erase(levels.end() - 2);
    REQUIRE(times.size() == n);
    REQUIRE(levels.size() == n + 1);
    REQUIRE(g.sigmas.size() == n + 1);
    for (std::size_t i = 0; i <= n; ++i) {
      const double dev = std::abs(g.sigmas[i] - levels[i]);
      const double bound = 8.0 * float32_ulp * levels[i];
      worst_level = std::max(worst_level, bound > 0 ? dev / bound : dev);
      CHECK(dev <= bound);
    }
    for (std::size_t i = 0; i < n; ++i) {
      const bool derived = opt.levels == sigma_spacing::karras || opt.levels == sigma_spacing::exponential ||
                           opt.levels == sigma_spacing::beta;
      double bound = ulp32(times[i]);
      if (opt.continuous_model_time)
        bound += 0.25 * 8.0 * float32_ulp + ulp32(std::log(levels[i]));  // ¼·ln of a level within 8 ulps
      else if (derived)
        bound += timestep_sensitivity(table, g.sigmas[i]);
      const double dev = std::abs(g.timesteps[i] - times[i]);
      worst_time = std::max(worst_time, dev / bound);
      CHECK(dev <= bound);
    }
    ++checked[cls];
  }
  for (const auto& [cls, count] : checked) std::cout << "sigma grid " << cls << ": " << count << " cases\n";
  std::cout << "sigma grid: worst deviation / bound: levels " << worst_level << ", model times " << worst_time << '\n';
  CHECK(!checked.empty());
}

TEST_CASE("sigma grids reject bad options and validate caller-given grids", "[grid][errors]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  sigma_grid_options bad;
  bad.levels = sigma_spacing::karras;
  bad.sigma_min = -1.0;
  CHECK_THROWS_WITH(make_sigma_grid(sched, 10, bad), Catch::Contains("make_sigma_grid") &&
                                                         Catch::Contains("options.sigma_min") && Catch::Contains("(got -1)"));
  bad.sigma_min = 20.0;  // above sigma_max
  CHECK_THROWS_WITH(make_sigma_grid(sched, 10, bad), Catch::Contains("sigma_min") && Catch::Contains("(got 20)"));
  CHECK_THROWS_WITH(make_sigma_grid(sched, 0), Catch::Contains("make_sigma_grid") && Catch::Contains("num_steps"));
  CHECK_THROWS_WITH(make_sigma_grid(sched, 1001), Catch::Contains("num_steps") && Catch::Contains("(got 1001)"));
  sigma_grid g{{10.0, 5.0, 6.0, 0.0}, {999.0, 500.0, 300.0}};
  CHECK_THROWS_WITH(validate_sigma_grid("user grid", g), Catch::Contains("sigmas[2]") && Catch::Contains("(got 6)"));
  g.sigmas = {10.0, 5.0, 0.0, 0.0};
  CHECK_THROWS_WITH(validate_sigma_grid("user grid", g), Catch::Contains("sigmas[2]") && Catch::Contains("> 0"));
  g.sigmas = {10.0, 5.0, std::nan(""), 0.0};
  CHECK_THROWS_WITH(validate_sigma_grid("user grid", g), Catch::Contains("sigmas[2]") && Catch::Contains("nan"));
  g.sigmas = {10.0, 5.0, 1.0};
  CHECK_THROWS_WITH(validate_sigma_grid("user grid", g), Catch::Contains("sigmas.size()") && Catch::Contains("(got 3)"));
  // The Beta(0.6, 0.6) quantile inverts its CDF, and is symmetric: F⁻¹(1 − p) = 1 − F⁻¹(p).
  for (double p : {0.01, 0.2, 0.5, 0.77, 0.999}) {
    const double x = detail::beta_quantile(p, 0.6, 0.6);
    CHECK(detail::incomplete_beta(x, 0.6, 0.6) == Approx(p).epsilon(1e-13));
    CHECK(detail::beta_quantile(1.0 - p, 0.6, 0.6) == Approx(1.0 - x).epsilon(1e-12).margin(1e-15));
  }
  CHECK(detail::incomplete_beta(0.3, 1.0, 1.0) == Approx(0.3).epsilon(1e-14));  // Beta(1, 1) is uniform
}

TEST_CASE("flow grids equal diffusers' FlowMatchEulerDiscrete sigmas and timesteps", "[reference][grid]") {
  // diffusers computes the levels in float64 from float32 ends (s_min = float32(shift(1/T))) and rounds them to
  // float32: each level within 2 float32 ulps of its own value (the second shift keeps relative errors: its
  // derivative k/(1 + (k−1)s)² times s over s' is at most 1); inverted levels 1 − s carry s's absolute error. The
  // bound is 4× that: 8 ulps of s (of 1 for inverted grids); model times s·T add their own rounding.
  int checked = 0;
  double worst = 0.0;
  for (const fs::path& file : case_files()) {
    const json c = load(file);
    if (c.at("scheduler_class") != "FlowMatchEulerDiscreteScheduler" || c.at("group") == "error" ||
        c.at("group") == "torch_generator")
      continue;
    INFO("case " << c.at("case").get<std::string>());
    const json& st = c.at("set_timesteps_kwargs");
    if (!st.is_object() || st.contains("timesteps")) continue;  // caller-given model times: not a grid rule
    load_options lo = case_options(c);  // the loader's grid from the case's config (and sigmas / mu)
    lo.build = false;
    const loaded_scheduler loaded = load_case(c, lo);
    const flow_grid_options& o = loaded.flow_options;
    const sigma_grid g = *loaded.grid;
    const auto levels = tensor(c.at("sigmas")), times = tensor(c.at("timesteps"));
    REQUIRE(g.sigmas.size() == levels.size());
    REQUIRE(g.timesteps.size() == times.size());
    const double big_t = static_cast<double>(o.num_train_timesteps);
    for (std::size_t i = 0; i < levels.size(); ++i) {
      const double bound = 8.0 * float32_ulp * (o.invert ? 1.0 : levels[i]) + 1e-300;
      worst = std::max(worst, std::abs(g.sigmas[i] - levels[i]) / bound);
      CHECK(std::abs(g.sigmas[i] - levels[i]) <= bound);
      if (i < times.size()) {
        const double tb = bound * big_t + ulp32(times[i]);
        worst = std::max(worst, std::abs(g.timesteps[i] - times[i]) / tb);
        CHECK(std::abs(g.timesteps[i] - times[i]) <= tb);
      }
    }
    ++checked;
  }
  std::cout << "flow grid FlowMatchEulerDiscreteScheduler: " << checked << " cases, worst deviation / bound " << worst
            << '\n';
  CHECK(checked > 0);
}

TEST_CASE("flow grids reject bad options", "[grid][errors]") {
  flow_grid_options o;
  o.shift = 0.0;
  CHECK_THROWS_WITH(make_flow_grid(10, o), Catch::Contains("make_flow_grid") && Catch::Contains("options.shift") &&
                                               Catch::Contains("(got 0)"));
  o = {};
  o.use_dynamic_shifting = true;
  CHECK_THROWS_WITH(make_flow_grid(10, o), Catch::Contains("options.mu") && Catch::Contains("use_dynamic_shifting"));
  o.mu = std::nan("");
  CHECK_THROWS_WITH(make_flow_grid(10, o), Catch::Contains("options.mu") && Catch::Contains("nan"));
  o = {};
  o.shift_terminal = 1.5;
  CHECK_THROWS_WITH(make_flow_grid(10, o), Catch::Contains("shift_terminal") && Catch::Contains("(got 1.5)"));
  const std::vector<double> rising{0.5, 0.7};
  CHECK_THROWS_WITH(flow_grid_from_levels(rising), Catch::Contains("flow_grid_from_levels") &&
                                                       Catch::Contains("levels[1]") && Catch::Contains("(got 0.7)"));
  CHECK_THROWS_WITH(make_flow_grid(0), Catch::Contains("num_steps"));
  // Shift identities: k = 1 is the identity, and the shift maps (0, 1) into (0, 1) monotonically.
  CHECK(shift_level(0.37, 1.0) == Approx(0.37).epsilon(1e-15));
  CHECK(shift_level(0.2, 3.0) < shift_level(0.3, 3.0));
  CHECK(dynamic_shift_level(0.5, 0.0, time_shift::exponential) == Approx(0.5).epsilon(1e-15));
}

TEST_CASE("multistep grids equal diffusers' DPMSolverMultistep, DEIS, DPMSolverSinglestep and UniPC sigmas and timesteps",
          "[reference][grid]") {
  // Bounds as for the σ grids; integer model times must be equal, except that a time diffusers rounds from a
  // level's fractional time (karras, exponential, beta, lu) may differ by 1 where that time lies within the float32
  // sensitivity (timestep_sensitivity) of a half-integer. DEIS's set_timesteps is the same grid with a final level
  // σ̃_min (a repeat of the last level for karras / exponential / beta: reference README, surprise 24).
  const json tables = load(reference_dir() / "alphas_cumprod_tables.json").at("tables");
  for (const std::string cls :
       {"DPMSolverMultistepScheduler", "DEISMultistepScheduler", "DPMSolverSinglestepScheduler",
        "UniPCMultistepScheduler"}) {
    int checked = 0;
    double worst = 0.0;
    for (const fs::path& file : case_files()) {
      const json c = load(file);
      if (c.at("scheduler_class") != cls || c.at("group") != "curated") continue;
      const json& st = c.at("set_timesteps_kwargs");
      if (!st.is_object() || !st.contains("num_inference_steps")) continue;
      INFO("case " << c.at("case").get<std::string>());
      const json& cfg = c.at("config");
      const auto n = st.at("num_inference_steps").get<std::size_t>();
      std::vector<double> times = tensor(c.at("timesteps")), levels = tensor(c.at("sigmas"));
      if (times.size() == n + 1 && times.back() == -1.0) {  // rule: trailing's extra −1 is not ours
        times.pop_back();
        levels.erase(levels.end() - 2);
      }
      // The grid the diffusers config loader builds from the case's config, on diffusers' float32 ā table.
      std::vector<double> table;
      load_options lo = case_options(c);
      lo.build = false;
      if (!cfg.value("use_flow_sigmas", false)) {
        auto values = tensor(tables.at(c.at("alphas_cumprod_table").get<std::string>()).at("alphas_cumprod"));
        if (cfg.value("rescale_betas_zero_snr", false) && values.back() == 0x1p-24) values.back() = 0.0;
        table = vp_sigmas(noise_schedule<double>::from_alphas_cumprod(values));
        lo.alphas_cumprod = values;
      }
      const sigma_grid g = *load_case(c, lo).grid;
      REQUIRE(times.size() == n);
      REQUIRE(g.sigmas.size() == levels.size());
      for (std::size_t i = 0; i < levels.size(); ++i) {
        const double bound = 8.0 * float32_ulp * levels[i] + 1e-300;
        worst = std::max(worst, std::abs(g.sigmas[i] - levels[i]) / bound);
        CHECK(std::abs(g.sigmas[i] - levels[i]) <= bound);
      }
      for (std::size_t i = 0; i < n; ++i) {
        if (g.timesteps[i] == times[i]) continue;
        // A level's time made integer: may differ by one only next to the rounding point (a half-integer when
        // rounded, an integer when truncated), within the float32 sensitivity.
        const bool one_off = !table.empty() && std::abs(g.timesteps[i] - times[i]) == 1.0;
        const double raw = one_off ? sigma_to_timestep(table, g.sigmas[i]) : 0.0;
        const double frac = raw - std::floor(raw);
        const double edge = std::min({std::abs(frac - 0.5), frac, 1.0 - frac});
        CHECK((one_off && edge <= timestep_sensitivity(table, g.sigmas[i])));
      }
      ++checked;
    }
    std::cout << "multistep grid " << cls << ": " << checked << " cases, worst level deviation / bound " << worst
              << '\n';
    CHECK(checked > 0);
  }
}
