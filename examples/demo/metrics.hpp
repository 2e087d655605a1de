/// @file
/// Quality numbers of the demo: each cell's wsw (skipstep::testing::whitened_sliced_w2), the metric's noise
/// floor (true samples at the same N), speed-ups, and the printed tables.
#pragma once

#include <skipstep/testing/gaussian_mixture.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

#include "grid.hpp"
#include "row_pool.hpp"

namespace skipstep_demo {

/// What one cell measured.
struct cell_result {
  cell_spec cell;
  double wsw = 0.0;      ///< +∞ if any sample was non-finite.
  double seconds = 0.0;  ///< wall time of sampler::sample.
  double speedup = 0.0;  ///< seconds of the S = 1000 cell of the same (dataset, skip, policy) / seconds.
  std::size_t empty_components = 0;  ///< components no sample was assigned to (dropped modes).
};

/// The metric's noise floor at N points: wsw of `repeats` independent sets of true samples.
struct noise_floor {
  std::vector<std::uint64_t> seeds;  ///< std::mt19937_64 seeds, one per repeat.
  std::vector<double> values;        ///< wsw of each set.
  double mean = 0.0;
  double stddev = 0.0;  ///< sample standard deviation over the repeats (0 for one repeat).
};

/// Seed of the r-th set of true samples: seed·1000 + r + 1 (so floors of different --seed values differ).
[[nodiscard]] std::uint64_t floor_seed(std::uint64_t seed, std::size_t r);

/// Draws `repeats` sets of n true samples (gaussian_mixture::sample with std::mt19937_64(floor_seed(seed,
/// r))) and measures their wsw, in parallel over the sets.
[[nodiscard]] noise_floor measure_floor(const skipstep::testing::gaussian_mixture& mixture, std::size_t n,
                                        std::uint64_t seed, std::size_t repeats, row_pool& pool);

/// Fills wsw and empty_components of results[i] from samples[i] (each N × D), in parallel over the cells.
void measure_cells(const skipstep::testing::gaussian_mixture& mixture, std::span<const sample_tensor> samples,
                   std::span<cell_result> results, row_pool& pool);

/// Sets every result's speed-up against the S = reference_steps cell of its (dataset, skip, policy).
void compute_speedups(std::span<cell_result> results);

/// Prints, for one (dataset, skip), the wsw table (rows S, columns the policies) and the time / speed-up
/// table.
void print_tables(std::ostream& os, const dataset& set, std::size_t dataset_index, skip_type skip,
                  std::span<const cell_result> results, const noise_floor& floor);

/// Points per cell of the independent float64 implementation's aniso16d/uniform table.
inline constexpr std::size_t reference_num_points = 20000;

/// The tolerance of the comparison with that table at this run's N. At N = reference_num_points it is the
/// reference's seed spread (0.02). wsw has an N-dependent floor: true samples score about c/√N, not 0. So at
/// another N the spread is scaled like the floor, r = √(N_ref/N), and the floor's shift is added:
/// spread·r + |floor(N) − floor(N)/r|, with floor(N) measured by this run (measuring it at N_ref too would
/// cost more than the whole --quick run).
[[nodiscard]] double reference_tolerance(std::size_t num_points, const noise_floor& floor_n);

/// Prints our aniso16d/uniform wsw beside the independent float64 implementation's table (N = 20000), the
/// largest difference and the verdict against reference_tolerance (`floor_n`: aniso16d's floor at this N).
void print_reference_comparison(std::ostream& os, std::size_t dataset_index, std::size_t num_points,
                                std::span<const cell_result> results, const noise_floor& floor_n);

}  // namespace skipstep_demo
