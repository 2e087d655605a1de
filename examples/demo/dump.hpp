/// @file
/// Files the demo writes besides the figure: every cell's samples as .npy (--dump-npy DIR) and results.json.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "grid.hpp"
#include "metrics.hpp"
#include "nfe.hpp"

namespace skipstep_demo {

/// "<dataset>_<skip>_S<S>_<policy>.npy", policy = policy_tag (eta0, eta0.2, eta0.5, eta1, sigmahat), e.g.
/// ring2d_uniform_S10_eta0.2.npy or aniso16d_quadratic_S1000_sigmahat.npy.
[[nodiscard]] std::string npy_file_name(const std::vector<dataset>& sets, const cell_spec& cell);

/// Writes one cell's samples (N × D, little-endian float64, C order) to dir/npy_file_name(...) with xtensor's
/// npy writer. Throws std::runtime_error if the file cannot be written.
void write_cell_npy(const std::filesystem::path& dir, const std::vector<dataset>& sets, const cell_spec& cell,
                    const sample_tensor& samples);

/// "<dataset>_nfe<budget>_<solver_tag>.npy" of a cell of the NFE table, e.g.
/// aniso16d_nfe10_dpmpp2m_karras.npy.
[[nodiscard]] std::string nfe_npy_file_name(const std::vector<dataset>& sets, const nfe_result& r);

/// Writes one NFE cell's samples to dir/nfe_npy_file_name(...) (as write_cell_npy).
void write_nfe_npy(const std::filesystem::path& dir, const std::vector<dataset>& sets, const nfe_result& r,
                   const sample_tensor& samples);

/// Writes `path` (results.json): the run's parameters, each data set's noise floor, every cell's wsw, time
/// and speed-up, and every NFE-table cell with each solver's NFE to twice the floor (a non-finite wsw is
/// written as null). Throws std::runtime_error on I/O failure.
void write_results_json(const std::filesystem::path& path, const demo_config& config,
                        const std::vector<dataset>& sets, std::span<const noise_floor> floors,
                        std::span<const cell_result> results, std::span<const nfe_result> nfe_results,
                        double total_seconds);

}  // namespace skipstep_demo
