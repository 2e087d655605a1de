/// @file
/// Quality per network evaluation: every solver of skipstep (DDIM, Euler, Euler ancestral, Heun, DPM-Solver++
/// 2M and 3M, SDE-DPM-Solver++ 2M, flow-matching Euler) at a fixed budget of model evaluations (NFE), driven
/// by the exact Gaussian-mixture oracle (skipstep::testing::mixture_predictor on σ and flow grids, the ā form
/// for DDIM). Each cell builds its sampler with the library's public API, exactly as a user would, and
/// reports the wsw of its N samples; the table adds, per solver, the smallest NFE that reaches twice the
/// metric's noise floor.
#pragma once

#include <skipstep/testing/gaussian_mixture.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "grid.hpp"
#include "metrics.hpp"
#include "row_pool.hpp"

namespace skipstep_demo {

/// The NFE budgets of the table's columns.
inline constexpr std::array<std::size_t, 7> nfe_budgets{4, 6, 8, 10, 15, 20, 50};

/// Which solver a row runs (the sampler class and its options).
enum class solver_kind {
  ddim,             ///< skipstep::ddim_sampler, η = 0 (Song et al. 2021).
  euler,            ///< skipstep::euler_sampler (Karras et al. 2022, Alg. 2 without churn).
  euler_ancestral,  ///< skipstep::euler_ancestral_sampler, η = 1 (k-diffusion sample_euler_ancestral).
  heun,          ///< skipstep::heun_sampler (Karras et al. 2022, Alg. 1): 2N − 1 evaluations for N steps.
  dpmpp_2m,      ///< skipstep::dpm_solver_sampler, DPM-Solver++ order 2 multistep (Lu et al. 2022b).
  dpmpp_3m,      ///< the same, order 3.
  sde_dpmpp_2m,  ///< the same, algorithm sde_dpmsolver_pp, order 2 (stochastic).
  flow_euler,    ///< skipstep::flow_euler_sampler on a rectified-flow path of the same data.
  unipc_bh1,     ///< skipstep::unipc_sampler, variant bh1, order 2 with corrector (Zhao et al. 2023).
  unipc_bh2,     ///< the same, variant bh2 (diffusers' default).
  deis,          ///< skipstep::deis_sampler, order 2 (Zhang & Chen 2023), default options.
  dpm_single,    ///< skipstep::dpm_solver_singlestep_sampler, DPM-Solver++ order 2 (midpoint), default options.
  pndm,          ///< skipstep::pndm_sampler, PLMS (skip_prk): N + 1 evaluations for N steps.
  ipndm,         ///< skipstep::ipndm_sampler on make_ipndm_grid(N) (v prediction).
};

/// Where a row's levels come from.
enum class level_grid {
  uniform_skip,    ///< DDIM: timestep_schedule::uniform(T, S), integer timesteps, final step onto ā = 1.
  quadratic_skip,  ///< DDIM: timestep_schedule::quadratic(T, S).
  uniform_t,  ///< make_sigma_grid(schedule, N): model times linspace(0, T − 1, N), σ̃ interpolated, last 0.
  karras,     ///< the same with sigma_spacing::karras (ρ = 7, σ̃ from the table's max to its min), last 0.
  flow,       ///< make_flow_grid(N): s = linspace(1, 1/T, N) (shift 1), last 0; α = 1 − s, σ = s.
  multistep,  ///< make_multistep_grid(schedule, N): diffusers' multistep linspace model times, last 0.
  multistep_karras,  ///< the same with sigma_spacing::karras, last 0.
  pndm_times,        ///< pndm_timesteps(T, N) (leading spacing), integer model times, final ā = 1.
  ipndm_levels,      ///< make_ipndm_grid(N): σ = sin²(sπ/2) on s = linspace(1, 0, N + 1), α = √(1 − σ²).
};

/// One row of the table.
struct solver_spec {
  solver_kind kind;
  level_grid grid;
};

/// The table's rows, in order.
[[nodiscard]] std::vector<solver_spec> nfe_solvers();

/// "DPM-Solver++ 2M" and so on.
[[nodiscard]] std::string solver_label(const solver_spec& s);
/// "uniform-t", "Karras", ...
[[nodiscard]] std::string grid_label(const solver_spec& s);
/// ASCII tag used in progress lines, JSON and file names: "dpmpp2m_karras".
[[nodiscard]] std::string solver_tag(const solver_spec& s);

/// The step count a budget of `nfe` model evaluations buys: N = nfe, except Heun (2N − 1 evaluations for N
/// steps), which gets N = ⌊(nfe + 1)/2⌋, the most steps within the budget (odd budgets exactly, even ones one
/// evaluation under), and PNDM's PLMS (N + 1 evaluations for N steps), which gets N = nfe − 1.
[[nodiscard]] std::size_t steps_for_budget(const solver_spec& s, std::size_t nfe);

/// One cell of the table.
struct nfe_result {
  std::size_t dataset_index = 0;
  std::size_t solver_index = 0;
  std::size_t budget = 0;  ///< the column's NFE.
  std::size_t nfe = 0;     ///< model evaluations the sampler actually made (its plan's rows).
  std::size_t steps = 0;   ///< the sampler's steps.
  double wsw = 0.0;        ///< +∞ if a sample was non-finite.
  std::size_t empty_components = 0;
  double seconds = 0.0;  ///< wall time of sampler::sample.
};

/// Samples every (solver, budget) cell of one data set from the same x_T (draw_initial_noise(seed)) and
/// measures them; the stochastic solvers draw philox_normal(seed) at (stream b, step i) as the DDIM cells do.
/// Progress goes to stderr (one line per cell). Results are appended to `results`; with `npy_dir` each cell's
/// samples are written to <dataset>_nfe<budget>_<solver_tag>.npy there.
void run_nfe_table(const std::vector<dataset>& sets, std::size_t dataset_index,
                   const skipstep::noise_schedule<double>& schedule, std::size_t num_points,
                   std::uint64_t seed, row_pool& pool, const std::optional<std::filesystem::path>& npy_dir,
                   std::vector<nfe_result>& results);

/// The smallest budget (in column order) whose cell has wsw ≤ 2·floor, or nullptr when none has.
[[nodiscard]] const nfe_result* first_below_twice_floor(std::span<const nfe_result> results,
                                                        std::size_t dataset_index, std::size_t solver_index,
                                                        const noise_floor& floor);

/// Prints one data set's table: rows the solvers, columns the budgets, and the NFE that reaches 2× the floor.
void print_nfe_table(std::ostream& os, const dataset& set, std::size_t dataset_index,
                     std::span<const nfe_result> results, const noise_floor& floor);

}  // namespace skipstep_demo
