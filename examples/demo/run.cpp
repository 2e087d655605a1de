/// @file
/// The demo's driver (see run.hpp).
#include "run.hpp"

#include <skipstep/skipstep.hpp>
#include <skipstep/version.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "dump.hpp"
#include "figure.hpp"
#include "grid.hpp"
#include "metrics.hpp"
#include "nfe.hpp"
#include "row_pool.hpp"

namespace skipstep_demo {

namespace {

/// Everything the run accumulates.
struct run_state {
  const demo_config& config;
  std::vector<dataset> sets = demo_datasets();
  std::vector<policy_spec> policies = demo_policies();
  skipstep::noise_schedule<double> schedule = skipstep::noise_schedule<double>::linear(num_train_timesteps);
  row_pool pool;
  std::vector<noise_floor> floors;
  std::vector<cell_result> results;
  std::vector<nfe_result> nfe_results;
  figure_builder figure;
  std::size_t cells_done = 0;
  std::size_t cells_total = 0;
  bool progress_on_tty = isatty(STDERR_FILENO) != 0;

  explicit run_state(const demo_config& c) : config(c), pool(c.threads) {
    cells_total = sets.size() * skip_types.size() * policies.size() * step_counts.size();
  }
};

/// Progress line on stderr: "[12/100] aniso16d quadratic S=50 eta=0.5 ... 0.84 s" (rewritten in place on a
/// tty).
void report_progress(run_state& st, const cell_spec& cell, double seconds) {
  ++st.cells_done;
  const policy_spec& p = st.policies[cell.policy_index];
  const std::string policy = p.larger_variance ? "sigmahat" : "eta=" + policy_tag(p).substr(3);
  char line[160];
  std::snprintf(line, sizeof line, "[%zu/%zu] %s %s S=%zu %s ... %.3f s", st.cells_done, st.cells_total,
                st.sets[cell.dataset_index].name.c_str(), std::string(skip_name(cell.skip)).c_str(),
                cell.steps, policy.c_str(), seconds);
  if (st.progress_on_tty)
    std::cerr << '\r' << line << "\x1b[K" << (st.cells_done == st.cells_total ? "\n" : "") << std::flush;
  else
    std::cerr << line << '\n';
}

/// Samples the five step counts of one (dataset, skip, policy), then measures them (in parallel) and hands
/// the samples to the npy writer and the figure.
void run_series(run_state& st, std::size_t d, skip_type skip, std::size_t policy_index,
                exact_predictor& predictor, parallel_step_noise& noise) {
  const dataset& set = st.sets[d];
  std::vector<sample_tensor> samples;
  std::vector<cell_result> results;
  for (std::size_t steps : step_counts) {
    const cell_spec cell{d, skip, policy_index, steps};
    sample_tensor x(std::array<std::size_t, 2>{st.config.num_points, set.mixture.dim()});
    draw_initial_noise(x, st.config.seed);
    const double seconds = sample_cell(st.schedule, cell, st.policies[policy_index], predictor, noise, x);
    report_progress(st, cell, seconds);
    samples.push_back(std::move(x));
    results.push_back(cell_result{cell, 0.0, seconds, 0.0, 0});
  }
  measure_cells(set.mixture, samples, results, st.pool);
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (st.config.npy_dir)
      write_cell_npy(*st.config.npy_dir, st.sets, results[i].cell, samples[i]);
    if (st.config.figure && is_figure_cell(st.sets, results[i].cell))
      st.figure.add_cell(results[i], samples[i]);
    st.results.push_back(results[i]);
  }
}

/// The true-distribution panel of the figure: the first floor set of ring2d (same seed, same draws).
void add_truth_panel(run_state& st, const dataset& set) {
  std::mt19937_64 gen(floor_seed(st.config.seed, 0));
  st.figure.set_truth(set.mixture.sample(gen, std::min(st.config.num_points, figure_builder::max_points)));
}

/// All cells of one data set, then its tables.
void run_dataset(run_state& st, std::size_t d) {
  const dataset& set = st.sets[d];
  st.floors.push_back(
      measure_floor(set.mixture, st.config.num_points, st.config.seed, st.config.floor_repeats, st.pool));
  if (st.config.figure && set.name == "ring2d")
    add_truth_panel(st, set);
  exact_predictor predictor(set.mixture, st.schedule, st.pool);
  parallel_step_noise noise(st.config.seed, st.config.num_points, set.mixture.dim(), st.pool);
  for (skip_type skip : skip_types)
    for (std::size_t p = 0; p < st.policies.size(); ++p)
      run_series(st, d, skip, p, predictor, noise);
  compute_speedups(st.results);
  for (skip_type skip : skip_types)
    print_tables(std::cout, set, d, skip, st.results, st.floors.back());
  std::cout << std::flush;
  run_nfe_table(st.sets, d, st.schedule, st.config.num_points, st.config.seed, st.pool, st.config.npy_dir,
                st.nfe_results);
  print_nfe_table(std::cout, set, d, st.nfe_results, st.floors.back());
  std::cout << std::flush;
}

/// The run's parameters, printed first.
void print_header(const demo_config& c) {
  std::cout << "skipstep " << skipstep::version_string
            << " demo: DDIM's speed/quality trade-off with an exact noise"
            << " predictor, and every solver's quality per model evaluation\n"
            << "  schedule: DDPM linear betas 1e-4..0.02, T = " << num_train_timesteps
            << "; final step onto abar = 1 (x0-hat, no noise)\n"
            << "  N = " << c.num_points << " points per cell" << (c.quick ? " (--quick)" : "") << ", seed "
            << c.seed << ", " << c.threads << " thread(s) for the predictor and the noise\n"
            << "  x_T row b = philox_normal(seed) at (stream b, step " << initial_noise_step
            << "); the sampler's noise: philox_normal(seed) at (stream b, step i)\n"
            << "  metric: wsw (skipstep::testing::whitened_sliced_w2); noise floor = mean ± sd over "
            << c.floor_repeats << " sets of N true samples (std::mt19937_64 seeds seed*1000 + 1..)\n"
            << "  time: wall time of sampler::sample only (std::chrono::steady_clock)\n"
            << "  NFE table: DDIM, Euler, Euler ancestral, Heun, DPM-Solver++ 2M/3M, SDE-DPM-Solver++ 2M on "
               "uniform-t and\n"
            << "    Karras sigma grids (exact oracle: skipstep::testing::mixture_predictor), flow-matching "
               "Euler on the\n"
            << "    rectified-flow path of the same data (exact velocity); same x_T, same noise streams\n"
            << "  output directory: " << std::filesystem::absolute(c.out_dir).string() << "\n";
  if (c.npy_dir)
    std::cout << "  npy directory: " << std::filesystem::absolute(*c.npy_dir).string() << "\n";
}

/// True when some cell produced non-finite samples.
bool any_diverged(const std::vector<cell_result>& results, const std::vector<nfe_result>& nfe_results) {
  for (const auto& r : results)
    if (!std::isfinite(r.wsw))
      return true;
  for (const auto& r : nfe_results)
    if (!std::isfinite(r.wsw))
      return true;
  return false;
}

}  // namespace

int run_demo(const demo_config& config) {
  const auto start = std::chrono::steady_clock::now();
  std::filesystem::create_directories(config.out_dir);
  if (config.npy_dir)
    std::filesystem::create_directories(*config.npy_dir);
  print_header(config);
  run_state st(config);
  for (std::size_t d = 0; d < st.sets.size(); ++d)
    run_dataset(st, d);
  for (std::size_t d = 0; d < st.sets.size(); ++d)
    if (st.sets[d].name == "aniso16d")
      print_reference_comparison(std::cout, d, config.num_points, st.results, st.floors[d]);
  std::optional<std::filesystem::path> png;
  if (config.figure)
    png = st.figure.write(config.out_dir);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::filesystem::path json = config.out_dir / "results.json";
  write_results_json(json, config, st.sets, st.floors, st.results, st.nfe_results, total);
  // Where each file went, with absolute paths (the default --out directory is inside the build tree).
  std::cout << "\nwrote " << std::filesystem::absolute(json).string() << "\n";
  if (png)
    std::cout << "wrote " << std::filesystem::absolute(*png).string()
              << " (the figure; its gnuplot script and data are beside it)\n";
  if (config.npy_dir)
    std::cout << "wrote " << st.results.size() + st.nfe_results.size() << " .npy files (one per cell) to "
              << std::filesystem::absolute(*config.npy_dir).string() << "\n";
  std::printf("total wall time %.1f s\n", total);
  if (any_diverged(st.results, st.nfe_results)) {
    std::cerr << "skipstep_demo: some cells produced non-finite samples (wsw = inf)\n";
    return 1;
  }
  return 0;
}

}  // namespace skipstep_demo
