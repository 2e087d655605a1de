/// @file
/// The experiment grid (the DDIM paper's Table 1 design, Song et al. 2021, on Gaussian mixtures): data sets ×
/// skip types × policies × step counts, the exact Gaussian-mixture noise predictor plugged into
/// skipstep::ddim_sampler, and the timed sampling of one cell.
#pragma once

#include <skipstep/backend/xtensor.hpp>
#include <skipstep/skipstep.hpp>
#include <skipstep/testing/gaussian_mixture.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "row_pool.hpp"

namespace skipstep_demo {

/// One cell's samples: N × D, row-major (an xtensor container, a skipstep tensor via the xtensor backend).
using sample_tensor = xt::xtensor<double, 2>;

/// T, the number of training timesteps of the DDPM linear schedule (β = 1e-4 .. 0.02).
inline constexpr std::size_t num_train_timesteps = 1000;
/// S, the step counts of the grid.
inline constexpr std::array<std::size_t, 5> step_counts{10, 20, 50, 100, 1000};
/// The step count the speed-up is measured against.
inline constexpr std::size_t reference_steps = 1000;
/// The philox_normal step index x_T is drawn at. The sampler draws step i's noise at step index i < S ≤ 1000,
/// so this index (the largest philox_normal allows) is never used by it: x_T is independent of all step noise.
inline constexpr std::uint64_t initial_noise_step = 0xFFFFFFFFu;

/// A named data set with its exact mixture.
struct dataset {
  std::string name;
  skipstep::testing::gaussian_mixture mixture;
};

/// ring2d and aniso16d (skipstep::testing::gaussian_mixture::ring2d / aniso16d).
[[nodiscard]] std::vector<dataset> demo_datasets();

/// The DDIM paper's skip types (Song et al. 2021, §D.2).
enum class skip_type { uniform, quadratic };
inline constexpr std::array<skip_type, 2> skip_types{skip_type::uniform, skip_type::quadratic};

/// "uniform" or "quadratic".
[[nodiscard]] std::string_view skip_name(skip_type skip);

/// The timestep list of a skip type: timestep_schedule::uniform / quadratic(T, S), final step onto ā = 1.
[[nodiscard]] skipstep::timestep_schedule make_timesteps(skip_type skip, std::size_t steps);

/// A sigma policy of the grid: skipstep::eta{η}, or the DDIM paper's σ̂ row (skipstep::larger_variance).
struct policy_spec {
  bool larger_variance = false;
  double eta = 0.0;  ///< used when !larger_variance.
};

/// η = 0, 0.2, 0.5, 1 and σ̂, in the table's column order.
[[nodiscard]] std::vector<policy_spec> demo_policies();

/// Column header: "η=0.2" or "σ̂".
[[nodiscard]] std::string policy_label(const policy_spec& p);
/// ASCII form used in file names and progress lines: "eta0.2" or "sigmahat".
[[nodiscard]] std::string policy_tag(const policy_spec& p);

/// One cell of the grid.
struct cell_spec {
  std::size_t dataset_index = 0;
  skip_type skip = skip_type::uniform;
  std::size_t policy_index = 0;
  std::size_t steps = 0;
};

/// The exact ε*(x, t) of a Gaussian mixture as a skipstep WritingPredictor `f(x, t, out)`: looks up a = ā_t
/// and evaluates gaussian_mixture::epsilon_batch on K contiguous row ranges in parallel, each with its own
/// workspace (allocated once here). Every row is computed independently, so the output does not depend on K.
class exact_predictor {
 public:
  exact_predictor(const skipstep::testing::gaussian_mixture& mixture,
                  const skipstep::noise_schedule<double>& schedule, row_pool& pool);

  /// out = ε*(x, ā_t) for all N rows of x.
  void operator()(const sample_tensor& x, std::int64_t t, std::span<double> out);

 private:
  const skipstep::testing::gaussian_mixture& mixture_;
  const skipstep::noise_schedule<double>& schedule_;
  row_pool& pool_;
  std::vector<std::vector<double>> workspaces_;  ///< one per participant of the pool.
};

/// A skipstep noise source that serves exactly philox_normal(seed)'s values — element j of sample b at step i
/// is philox_normal(seed) at (stream b, step i, element j), as when philox_normal is passed to
/// sampler::sample directly — but computes a whole step (all N samples) at once, split over the pool's
/// threads, on the first request for that step. The sampler's loop draws noise on one thread; this moves the
/// generator's cost (as large as the predictor's here) onto all K. The buffer (N × D doubles) is allocated
/// once, in the constructor.
class parallel_step_noise {
 public:
  parallel_step_noise(std::uint64_t seed, std::size_t num_samples, std::size_t dim, row_pool& pool);

  /// The NoiseSource call: out = z(at.sample, at.step, at.first_element + k), k < out.size().
  void operator()(std::span<double> out, skipstep::noise_position at);
  /// Forgets the cached step (each timed run then generates all its own noise).
  void reset() noexcept { cached_step_ = no_step; }

 private:
  static constexpr std::uint64_t no_step = ~std::uint64_t{0};
  void fill_step(std::uint64_t step);

  skipstep::philox_normal generator_;
  std::size_t num_samples_;
  std::size_t dim_;
  row_pool& pool_;
  std::vector<double> buffer_;
  std::uint64_t cached_step_ = no_step;
};

/// x_T ~ N(0, I): row b of `x` is filled by philox_normal(seed) at (stream b, step initial_noise_step), the
/// same generator the sampler draws its per-step noise from (stream b, step i).
void draw_initial_noise(sample_tensor& x, std::uint64_t seed);

/// Runs one cell in place on x (which must hold x_T on entry): ddim_sampler(schedule, timesteps, policy,
/// {epsilon prediction, num_samples = N}) driven by `predictor`, with the noise of philox_normal(seed)
/// (served by `noise`) and a sampler workspace made once before the loop. Returns the wall time of
/// sampler::sample in seconds.
double sample_cell(const skipstep::noise_schedule<double>& schedule, const cell_spec& cell,
                   const policy_spec& policy, exact_predictor& predictor, parallel_step_noise& noise,
                   sample_tensor& x);

}  // namespace skipstep_demo
