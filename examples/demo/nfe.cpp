/// @file
/// The quality-per-NFE table (see nfe.hpp).
#include "nfe.hpp"

#include <skipstep/schedule/flow_grid.hpp>
#include <skipstep/solver/deis.hpp>
#include <skipstep/solver/dpm_solver.hpp>
#include <skipstep/solver/dpm_solver_singlestep.hpp>
#include <skipstep/solver/euler.hpp>
#include <skipstep/solver/ipndm.hpp>
#include <skipstep/solver/pndm.hpp>
#include <skipstep/solver/unipc.hpp>
#include <skipstep/testing/sliced_wasserstein.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numbers>
#include <ostream>
#include <stdexcept>
#include <string_view>

#include <unistd.h>

#include "dump.hpp"

namespace skipstep_demo {

std::vector<solver_spec> nfe_solvers() {
  using k = solver_kind;
  using g = level_grid;
  return {{k::ddim, g::uniform_skip},
          {k::ddim, g::quadratic_skip},
          {k::euler, g::uniform_t},
          {k::euler, g::karras},
          {k::euler_ancestral, g::uniform_t},
          {k::euler_ancestral, g::karras},
          {k::heun, g::uniform_t},
          {k::heun, g::karras},
          {k::dpmpp_2m, g::uniform_t},
          {k::dpmpp_2m, g::karras},
          {k::dpmpp_3m, g::uniform_t},
          {k::dpmpp_3m, g::karras},
          {k::sde_dpmpp_2m, g::uniform_t},
          {k::sde_dpmpp_2m, g::karras},
          {k::flow_euler, g::flow},
          {k::unipc_bh1, g::multistep},
          {k::unipc_bh1, g::multistep_karras},
          {k::unipc_bh2, g::multistep},
          {k::unipc_bh2, g::multistep_karras},
          {k::deis, g::uniform_t},
          {k::deis, g::karras},
          {k::dpm_single, g::uniform_t},
          {k::dpm_single, g::karras},
          {k::pndm, g::pndm_times},
          {k::ipndm, g::ipndm_levels}};
}

std::string solver_label(const solver_spec& s) {
  switch (s.kind) {
    case solver_kind::ddim:
      return "DDIM (η=0)";
    case solver_kind::euler:
      return "Euler";
    case solver_kind::euler_ancestral:
      return "Euler ancestral (η=1)";
    case solver_kind::heun:
      return "Heun";
    case solver_kind::dpmpp_2m:
      return "DPM-Solver++ 2M";
    case solver_kind::dpmpp_3m:
      return "DPM-Solver++ 3M";
    case solver_kind::sde_dpmpp_2m:
      return "SDE-DPM-Solver++ 2M";
    case solver_kind::flow_euler:
      return "flow-matching Euler";
    case solver_kind::unipc_bh1:
      return "UniPC bh1";
    case solver_kind::unipc_bh2:
      return "UniPC bh2";
    case solver_kind::deis:
      return "DEIS (order 2)";
    case solver_kind::dpm_single:
      return "DPM-Solver++ 2S";
    case solver_kind::pndm:
      return "PNDM (PLMS)";
    case solver_kind::ipndm:
      return "iPNDM";
  }
  return "?";
}

std::string grid_label(const solver_spec& s) {
  switch (s.grid) {
    case level_grid::uniform_skip:
      return "uniform skip";
    case level_grid::quadratic_skip:
      return "quadratic skip";
    case level_grid::uniform_t:
      return "uniform-t";
    case level_grid::karras:
      return "Karras";
    case level_grid::flow:
      return "flow path";
    case level_grid::multistep:
      return "multistep";
    case level_grid::multistep_karras:
      return "Karras ms";
    case level_grid::pndm_times:
      return "PNDM leading";
    case level_grid::ipndm_levels:
      return "iPNDM sin²";
  }
  return "?";
}

std::string solver_tag(const solver_spec& s) {
  std::string kind;
  switch (s.kind) {
    case solver_kind::ddim:
      kind = "ddim";
      break;
    case solver_kind::euler:
      kind = "euler";
      break;
    case solver_kind::euler_ancestral:
      kind = "euler_a";
      break;
    case solver_kind::heun:
      kind = "heun";
      break;
    case solver_kind::dpmpp_2m:
      kind = "dpmpp2m";
      break;
    case solver_kind::dpmpp_3m:
      kind = "dpmpp3m";
      break;
    case solver_kind::sde_dpmpp_2m:
      kind = "sde_dpmpp2m";
      break;
    case solver_kind::flow_euler:
      kind = "flow_euler";
      break;
    case solver_kind::unipc_bh1:
      kind = "unipc_bh1";
      break;
    case solver_kind::unipc_bh2:
      kind = "unipc_bh2";
      break;
    case solver_kind::deis:
      kind = "deis";
      break;
    case solver_kind::dpm_single:
      kind = "dpmpp2s";
      break;
    case solver_kind::pndm:
      kind = "pndm";
      break;
    case solver_kind::ipndm:
      kind = "ipndm";
      break;
  }
  switch (s.grid) {
    case level_grid::uniform_skip:
      return kind + "_uniform";
    case level_grid::quadratic_skip:
      return kind + "_quadratic";
    case level_grid::uniform_t:
      return kind + "_uniform_t";
    case level_grid::karras:
      return kind + "_karras";
    case level_grid::flow:
    case level_grid::pndm_times:
    case level_grid::ipndm_levels:
      return kind;
    case level_grid::multistep:
      return kind + "_multistep";
    case level_grid::multistep_karras:
      return kind + "_multistep_karras";
  }
  return kind;
}

std::size_t steps_for_budget(const solver_spec& s, std::size_t nfe) {
  if (s.kind == solver_kind::heun)
    return (nfe + 1) / 2;
  if (s.kind == solver_kind::pndm)
    return nfe - 1;
  return nfe;
}

namespace {

/// The exact oracle on a σ or flow grid as the sampler's predictor, its rows split over the pool: each part
/// calls mixture_predictor::evaluate with its own workspace (allocated once here), so the output does not
/// depend on the number of threads. Declares a double time (skipstep::takes_fractional_time), as
/// mixture_predictor does.
template <class LevelOf = skipstep::testing::grid_levels>
class pooled_oracle {
 public:
  using time_type = double;

  pooled_oracle(const skipstep::testing::gaussian_mixture& mixture, LevelOf levels,
                skipstep::prediction_type target, row_pool& pool)
      : oracle_(mixture, std::move(levels), target), pool_(pool), workspaces_(pool.size()) {
    for (auto& w : workspaces_)
      w.resize(mixture.workspace_size());
  }

  void operator()(const sample_tensor& x, double t, std::span<double> out) {
    const std::size_t dim = oracle_.mixture().dim(), rows = x.shape()[0];
    const std::span<const double> xs(x.data(), x.size());
    pool_.for_rows(rows, [&](unsigned part, std::size_t begin, std::size_t end) {
      oracle_.evaluate(xs.subspan(begin * dim, (end - begin) * dim), t,
                       out.subspan(begin * dim, (end - begin) * dim), workspaces_[part]);
    });
  }

 private:
  skipstep::testing::mixture_predictor<LevelOf> oracle_;
  row_pool& pool_;
  std::vector<std::vector<double>> workspaces_;
};

/// The σ grid of a row at N steps (VP grids from the schedule; the flow grid with diffusers' defaults, T =
/// 1000).
skipstep::sigma_grid make_grid(const skipstep::noise_schedule<double>& schedule, const solver_spec& s,
                               std::size_t steps) {
  if (s.grid == level_grid::flow) {
    skipstep::flow_grid_options o;
    o.num_train_timesteps = num_train_timesteps;
    return skipstep::make_flow_grid(steps, o);
  }
  skipstep::sigma_grid_options o;
  if (s.grid == level_grid::multistep || s.grid == level_grid::multistep_karras) {
    skipstep::multistep_grid_options m;
    if (s.grid == level_grid::multistep_karras)
      m.levels = skipstep::sigma_spacing::karras;
    return skipstep::make_multistep_grid(schedule, steps, m);
  }
  if (s.grid == level_grid::karras)
    o.levels = skipstep::sigma_spacing::karras;
  return skipstep::make_sigma_grid(schedule, steps, o);
}

/// The DPM-Solver++ options of a row.
skipstep::dpm_solver_options dpm_options(solver_kind kind) {
  skipstep::dpm_solver_options o;
  o.order = kind == solver_kind::dpmpp_3m ? 3 : 2;
  if (kind == solver_kind::sde_dpmpp_2m)
    o.algorithm = skipstep::dpm_algorithm::sde_dpmsolver_pp;
  return o;
}

/// Times one run of `sampler` from x (x_T on entry) and checks that it made `expected_steps` steps.
template <class Predictor>
double timed_sample(const skipstep::sampler& sampler, Predictor& predictor, parallel_step_noise& noise,
                    sample_tensor& x) {
  auto workspace = sampler.make_workspace(x);
  noise.reset();
  const auto start = std::chrono::steady_clock::now();
  const auto result = sampler.sample(predictor, x, noise, workspace);
  const auto stop = std::chrono::steady_clock::now();
  if (result.steps_run != sampler.num_steps())
    throw std::logic_error("skipstep_demo::run_nfe_table: ran " + std::to_string(result.steps_run) +
                           " steps, expected " + std::to_string(sampler.num_steps()));
  return std::chrono::duration<double>(stop - start).count();
}

/// Builds the row's sampler for N steps and runs it on x; returns {model evaluations, seconds}.
std::pair<std::size_t, double> sample_nfe_cell(const skipstep::noise_schedule<double>& schedule,
                                               const skipstep::testing::gaussian_mixture& mixture,
                                               const solver_spec& s, std::size_t steps, row_pool& pool,
                                               exact_predictor& abar_oracle, parallel_step_noise& noise,
                                               sample_tensor& x) {
  skipstep::sampler_options options;
  options.num_samples = x.shape()[0];
  options.prediction = skipstep::prediction_type::epsilon;
  if (s.kind == solver_kind::ddim) {
    const skipstep::ddim_sampler ddim(
        schedule,
        make_timesteps(s.grid == level_grid::quadratic_skip ? skip_type::quadratic : skip_type::uniform,
                       steps),
        skipstep::eta{0.0}, options);
    return {ddim.rows().size(), timed_sample(ddim, abar_oracle, noise, x)};
  }
  if (s.kind == solver_kind::pndm) {
    const skipstep::pndm_sampler pndm(schedule, steps, true /*skip_prk*/, skipstep::timestep_spacing::leading, 0,
                                      skipstep::final_alpha::one, options);
    return {pndm.rows().size(), timed_sample(pndm, abar_oracle, noise, x)};
  }
  if (s.kind == solver_kind::ipndm) {
    // iPNDM's own (DanceDiffusion) schedule: model time t = atan2(σ, α)·2/π, so the level at t is
    // (α, σ) = (cos(tπ/2), sin(tπ/2)); the oracle answers with the v the sampler is built for.
    const skipstep::ipndm_grid grid = skipstep::make_ipndm_grid(steps);
    const auto level_of = [](double t) {
      return skipstep::level{std::cos(t * std::numbers::pi / 2.0), std::sin(t * std::numbers::pi / 2.0)};
    };
    options.prediction = skipstep::prediction_type::v;
    pooled_oracle<decltype(level_of)> v(mixture, level_of, options.prediction, pool);
    const skipstep::ipndm_sampler ip(grid, options);
    return {ip.rows().size(), timed_sample(ip, v, noise, x)};
  }
  const skipstep::sigma_grid grid = make_grid(schedule, s, steps);
  if (s.kind == solver_kind::flow_euler) {
    options.prediction = skipstep::prediction_type::flow;
    pooled_oracle velocity(mixture, skipstep::testing::grid_levels::flow(grid), options.prediction, pool);
    const skipstep::flow_euler_sampler flow(grid, options);
    return {flow.rows().size(), timed_sample(flow, velocity, noise, x)};
  }
  pooled_oracle eps(mixture, skipstep::testing::grid_levels::vp(grid), options.prediction, pool);
  switch (s.kind) {
    case solver_kind::euler: {
      const skipstep::euler_sampler e(grid, options);
      return {e.rows().size(), timed_sample(e, eps, noise, x)};
    }
    case solver_kind::euler_ancestral: {
      const skipstep::euler_ancestral_sampler e(grid, 1.0, options);
      return {e.rows().size(), timed_sample(e, eps, noise, x)};
    }
    case solver_kind::heun: {
      const skipstep::heun_sampler h(grid, options);
      return {h.rows().size(), timed_sample(h, eps, noise, x)};
    }
    case solver_kind::unipc_bh1:
    case solver_kind::unipc_bh2: {
      const skipstep::unipc_sampler u(
          grid,
          skipstep::unipc_options{.variant = s.kind == solver_kind::unipc_bh1 ? skipstep::unipc_variant::bh1
                                                                              : skipstep::unipc_variant::bh2},
          options);
      return {u.rows().size(), timed_sample(u, eps, noise, x)};
    }
    case solver_kind::deis: {
      const skipstep::deis_sampler d(grid, skipstep::deis_options{}, options);
      return {d.rows().size(), timed_sample(d, eps, noise, x)};
    }
    case solver_kind::dpm_single: {
      const skipstep::dpm_solver_singlestep_sampler d(grid, skipstep::dpm_singlestep_options{}, options);
      return {d.rows().size(), timed_sample(d, eps, noise, x)};
    }
    default: {
      const skipstep::dpm_solver_sampler d(grid, dpm_options(s.kind), options);
      return {d.rows().size(), timed_sample(d, eps, noise, x)};
    }
  }
}

/// printf-style formatting into a std::string.
template <class... Args>
std::string format(const char* fmt, Args... args) {
  char buf[96];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

/// Display width of UTF-8 text (code points; η is one column).
std::size_t display_width(std::string_view s) {
  std::size_t w = 0;
  for (const char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80)
      ++w;
  return w;
}

std::string pad_left(const std::string& s, std::size_t width) {
  const std::size_t w = display_width(s);
  return w >= width ? s : std::string(width - w, ' ') + s;
}

std::string pad_right(const std::string& s, std::size_t width) {
  const std::size_t w = display_width(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

const nfe_result* find_nfe(std::span<const nfe_result> results, std::size_t d, std::size_t solver,
                           std::size_t budget) {
  for (const auto& r : results)
    if (r.dataset_index == d && r.solver_index == solver && r.budget == budget)
      return &r;
  return nullptr;
}

}  // namespace

void run_nfe_table(const std::vector<dataset>& sets, std::size_t dataset_index,
                   const skipstep::noise_schedule<double>& schedule, std::size_t num_points,
                   std::uint64_t seed, row_pool& pool, const std::optional<std::filesystem::path>& npy_dir,
                   std::vector<nfe_result>& results) {
  const dataset& set = sets.at(dataset_index);
  const auto solvers = nfe_solvers();
  exact_predictor abar_oracle(set.mixture, schedule, pool);
  parallel_step_noise noise(seed, num_points, set.mixture.dim(), pool);
  const bool tty = isatty(STDERR_FILENO) != 0;
  const std::size_t total = solvers.size() * nfe_budgets.size();
  std::size_t done = 0;
  for (std::size_t si = 0; si < solvers.size(); ++si) {
    std::vector<sample_tensor> samples;
    std::vector<nfe_result> row;
    for (std::size_t budget : nfe_budgets) {
      const std::size_t steps = steps_for_budget(solvers[si], budget);
      sample_tensor x(std::array<std::size_t, 2>{num_points, set.mixture.dim()});
      draw_initial_noise(x, seed);
      const auto [nfe, seconds] =
          sample_nfe_cell(schedule, set.mixture, solvers[si], steps, pool, abar_oracle, noise, x);
      ++done;
      const std::string line = format("[nfe %zu/%zu] %s %s NFE=%zu (%zu steps) ... %.3f s", done, total,
                                      set.name.c_str(), solver_tag(solvers[si]).c_str(), nfe, steps, seconds);
      if (tty)
        std::cerr << '\r' << line << "\x1b[K" << (done == total ? "\n" : "") << std::flush;
      else
        std::cerr << line << '\n';
      nfe_result r;
      r.dataset_index = dataset_index;
      r.solver_index = si;
      r.budget = budget;
      r.nfe = nfe;
      r.steps = steps;
      r.seconds = seconds;
      row.push_back(r);
      samples.push_back(std::move(x));
    }
    pool.for_each_index(row.size(), [&](std::size_t i) {
      const sample_tensor& x = samples[i];
      const auto report = skipstep::testing::whitened_sliced_w2_report(
          set.mixture, std::span<const double>(x.data(), x.size()), x.shape()[0]);
      row[i].wsw = report.wsw;
      row[i].empty_components = report.empty_components;
    });
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (npy_dir)
        write_nfe_npy(*npy_dir, sets, row[i], samples[i]);
      results.push_back(row[i]);
    }
  }
}

const nfe_result* first_below_twice_floor(std::span<const nfe_result> results, std::size_t dataset_index,
                                          std::size_t solver_index, const noise_floor& floor) {
  for (std::size_t budget : nfe_budgets) {
    const nfe_result* r = find_nfe(results, dataset_index, solver_index, budget);
    if (r && std::isfinite(r->wsw) && r->wsw <= 2.0 * floor.mean)
      return r;
  }
  return nullptr;
}

void print_nfe_table(std::ostream& os, const dataset& set, std::size_t dataset_index,
                     std::span<const nfe_result> results, const noise_floor& floor) {
  const auto solvers = nfe_solvers();
  os << "\n"
     << set.name << ": wsw per number of model evaluations (NFE; lower is better; noise floor "
     << format("%.4f", floor.mean) << " ± " << format("%.4f", floor.stddev)
     << ", 2 × floor = " << format("%.4f", 2.0 * floor.mean) << ")\n";
  os << pad_right("solver", 22) << pad_right("grid", 16);
  for (std::size_t b : nfe_budgets)
    os << pad_left(std::to_string(b), 8);
  os << pad_left("NFE to 2×floor", 16) << '\n';
  for (std::size_t si = 0; si < solvers.size(); ++si) {
    os << pad_right(solver_label(solvers[si]), 22) << pad_right(grid_label(solvers[si]), 16);
    for (std::size_t b : nfe_budgets) {
      const nfe_result* r = find_nfe(results, dataset_index, si, b);
      std::string cell = "-";
      if (r)
        cell = !std::isfinite(r->wsw)
                   ? "inf"
                   : format(r->wsw < 10 ? "%.3f" : "%.1f", r->wsw) + (r->empty_components > 0 ? "*" : "");
      os << pad_left(cell, 8);
    }
    const nfe_result* first = first_below_twice_floor(results, dataset_index, si, floor);
    const std::string reach = first ? std::to_string(first->nfe) : "> " + std::to_string(nfe_budgets.back());
    os << pad_left(reach, 16) << '\n';
  }
  std::string heun;
  for (std::size_t b : nfe_budgets) {
    const std::size_t n = steps_for_budget({solver_kind::heun, level_grid::uniform_t}, b);
    heun += (heun.empty() ? "" : ", ") + std::to_string(2 * n - 1);
  }
  os << "Heun makes 2N − 1 model evaluations for N steps: its columns run N = ⌊(NFE + 1)/2⌋ steps, i.e. "
     << heun
     << "\nevaluations (odd budgets exactly, even ones one under). Every other solver makes one evaluation "
        "per step, except PNDM (PLMS: N + 1 evaluations for N steps, run at N = NFE − 1).\n"
        "LCM and TCD are not in the table: they need a distilled (consistency) model, which the oracle is not.\n"
        "\"NFE to 2×floor\": the evaluations of the first column at or below twice the floor; * = a "
        "component got no\n"
        "samples.\n";
}

}  // namespace skipstep_demo
