/// @file
/// .npy and results.json output (see dump.hpp).
#include "dump.hpp"

#if __has_include(<xtensor/io/xnpy.hpp>)
#include <xtensor/io/xnpy.hpp>
#else
#include <xtensor/xnpy.hpp>
#endif

#include <nlohmann/json.hpp>
#include <skipstep/testing/sliced_wasserstein.hpp>
#include <skipstep/version.hpp>

#include <cmath>
#include <fstream>
#include <stdexcept>

namespace skipstep_demo {

std::string npy_file_name(const std::vector<dataset>& sets, const cell_spec& cell) {
  return sets.at(cell.dataset_index).name + "_" + std::string(skip_name(cell.skip)) + "_S" +
         std::to_string(cell.steps) + "_" + policy_tag(demo_policies().at(cell.policy_index)) + ".npy";
}

void write_cell_npy(const std::filesystem::path& dir, const std::vector<dataset>& sets, const cell_spec& cell,
                    const sample_tensor& samples) {
  const std::filesystem::path path = dir / npy_file_name(sets, cell);
  xt::dump_npy(path.string(), samples);
  if (!std::filesystem::exists(path))
    throw std::runtime_error("skipstep_demo: could not write " + path.string());
}

std::string nfe_npy_file_name(const std::vector<dataset>& sets, const nfe_result& r) {
  return sets.at(r.dataset_index).name + "_nfe" + std::to_string(r.budget) + "_" +
         solver_tag(nfe_solvers().at(r.solver_index)) + ".npy";
}

void write_nfe_npy(const std::filesystem::path& dir, const std::vector<dataset>& sets, const nfe_result& r,
                   const sample_tensor& samples) {
  const std::filesystem::path path = dir / nfe_npy_file_name(sets, r);
  xt::dump_npy(path.string(), samples);
  if (!std::filesystem::exists(path))
    throw std::runtime_error("skipstep_demo: could not write " + path.string());
}

namespace {

/// A finite double, or null.
nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

/// The run's parameters.
nlohmann::json parameters_json(const demo_config& c) {
  nlohmann::json policies = nlohmann::json::array();
  for (const auto& p : demo_policies())
    policies.push_back(p.larger_variance ? nlohmann::json{{"name", "sigmahat"}}
                                         : nlohmann::json{{"name", "eta"}, {"eta", p.eta}});
  return {
      {"num_points", c.num_points},
      {"seed", c.seed},
      {"threads", c.threads},
      {"quick", c.quick},
      {"schedule",
       {{"kind", "linear"},
        {"num_train_timesteps", num_train_timesteps},
        {"beta_start", 1e-4},
        {"beta_end", 0.02}}},
      {"step_counts", step_counts},
      {"nfe_budgets", nfe_budgets},
      {"skip_types", {"uniform", "quadratic"}},
      {"policies", policies},
      {"prediction", "epsilon"},
      {"final_alpha", "one"},
      {"step_convention", "consistent"},
      {"initial_noise", "x_T row b = philox_normal(seed).fill(row, stream b, step " +
                            std::to_string(initial_noise_step) + ")"},
      {"sampler_noise", "philox_normal(seed), stream = sample index, step = sampler step index"},
      {"metric",
       {{"name", "whitened_sliced_w2"},
        {"directions_2d", skipstep::testing::wsw_directions_2d},
        {"directions_nd", skipstep::testing::wsw_directions_nd},
        {"direction_seed", skipstep::testing::wsw_default_seed}}},
  };
}

/// One data set's floor.
nlohmann::json floor_json(const noise_floor& f) {
  return {{"mean", f.mean}, {"stddev", f.stddev}, {"values", f.values}, {"mt19937_64_seeds", f.seeds}};
}

/// One cell.
nlohmann::json cell_json(const std::vector<dataset>& sets, const cell_result& r) {
  const policy_spec p = demo_policies().at(r.cell.policy_index);
  return {{"dataset", sets.at(r.cell.dataset_index).name},
          {"skip", std::string(skip_name(r.cell.skip))},
          {"steps", r.cell.steps},
          {"policy", p.larger_variance ? "sigmahat" : "eta"},
          {"eta", p.larger_variance ? nlohmann::json(nullptr) : nlohmann::json(p.eta)},
          {"wsw", number_or_null(r.wsw)},
          {"empty_components", r.empty_components},
          {"seconds", r.seconds},
          {"speedup_vs_S1000", r.speedup},
          {"npy", npy_file_name(sets, r.cell)}};
}

/// One cell of the NFE table.
nlohmann::json nfe_json(const std::vector<dataset>& sets, const nfe_result& r) {
  const solver_spec s = nfe_solvers().at(r.solver_index);
  return {{"dataset", sets.at(r.dataset_index).name},
          {"solver", solver_tag(s)},
          {"label", solver_label(s) + ", " + grid_label(s)},
          {"nfe_budget", r.budget},
          {"nfe", r.nfe},
          {"steps", r.steps},
          {"wsw", number_or_null(r.wsw)},
          {"empty_components", r.empty_components},
          {"seconds", r.seconds},
          {"npy", nfe_npy_file_name(sets, r)}};
}

}  // namespace

void write_results_json(const std::filesystem::path& path, const demo_config& config,
                        const std::vector<dataset>& sets, std::span<const noise_floor> floors,
                        std::span<const cell_result> results, std::span<const nfe_result> nfe_results,
                        double total_seconds) {
  nlohmann::json j;
  j["program"] = "skipstep_demo";
  j["skipstep_version"] = skipstep::version_string;
  j["parameters"] = parameters_json(config);
  for (std::size_t d = 0; d < sets.size(); ++d)
    j["noise_floor"][sets[d].name] = floor_json(floors[d]);
  j["cells"] = nlohmann::json::array();
  for (const auto& r : results)
    j["cells"].push_back(cell_json(sets, r));
  j["nfe_cells"] = nlohmann::json::array();
  for (const auto& r : nfe_results)
    j["nfe_cells"].push_back(nfe_json(sets, r));
  const auto solvers = nfe_solvers();
  for (std::size_t d = 0; d < sets.size(); ++d)
    for (std::size_t si = 0; si < solvers.size(); ++si) {
      const nfe_result* first = first_below_twice_floor(nfe_results, d, si, floors[d]);
      j["nfe_to_twice_floor"][sets[d].name][solver_tag(solvers[si])] =
          first ? nlohmann::json(first->nfe) : nlohmann::json(nullptr);
    }
  j["total_seconds"] = total_seconds;
  std::ofstream out(path);
  out << j.dump(2) << '\n';
  if (!out)
    throw std::runtime_error("skipstep_demo: could not write " + path.string());
}

}  // namespace skipstep_demo
