/// @file
/// The experiment grid and the sampling of one cell (see grid.hpp).
#include "grid.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace skipstep_demo {

std::vector<dataset> demo_datasets() {
  using skipstep::testing::gaussian_mixture;
  std::vector<dataset> sets;
  sets.push_back({"ring2d", gaussian_mixture::ring2d()});
  sets.push_back({"aniso16d", gaussian_mixture::aniso16d()});
  return sets;
}

std::string_view skip_name(skip_type skip) {
  return skip == skip_type::uniform ? "uniform" : "quadratic";
}

skipstep::timestep_schedule make_timesteps(skip_type skip, std::size_t steps) {
  return skip == skip_type::uniform ? skipstep::timestep_schedule::uniform(num_train_timesteps, steps)
                                    : skipstep::timestep_schedule::quadratic(num_train_timesteps, steps);
}

std::vector<policy_spec> demo_policies() {
  return {{false, 0.0}, {false, 0.2}, {false, 0.5}, {false, 1.0}, {true, 0.0}};
}

namespace {

/// η printed shortest ("0", "0.2", "1").
std::string format_eta(double eta) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", eta);
  return buf;
}

}  // namespace

std::string policy_label(const policy_spec& p) {
  return p.larger_variance ? "σ̂" : "η=" + format_eta(p.eta);
}

std::string policy_tag(const policy_spec& p) {
  return p.larger_variance ? "sigmahat" : "eta" + format_eta(p.eta);
}

exact_predictor::exact_predictor(const skipstep::testing::gaussian_mixture& mixture,
                                 const skipstep::noise_schedule<double>& schedule, row_pool& pool)
    : mixture_(mixture), schedule_(schedule), pool_(pool), workspaces_(pool.size()) {
  for (auto& w : workspaces_)
    w.resize(mixture.workspace_size());
}

void exact_predictor::operator()(const sample_tensor& x, std::int64_t t, std::span<double> out) {
  const double a = schedule_.alpha_cumprod(static_cast<std::size_t>(t));
  const std::size_t dim = mixture_.dim();
  const std::size_t rows = x.shape()[0];
  const std::span<const double> xs(x.data(), x.size());
  pool_.for_rows(rows, [&](unsigned part, std::size_t begin, std::size_t end) {
    const std::size_t n = end - begin;
    mixture_.epsilon_batch(xs.subspan(begin * dim, n * dim), n, a, out.subspan(begin * dim, n * dim),
                           workspaces_[part]);
  });
}

parallel_step_noise::parallel_step_noise(std::uint64_t seed, std::size_t num_samples, std::size_t dim,
                                         row_pool& pool)
    : generator_(seed), num_samples_(num_samples), dim_(dim), pool_(pool), buffer_(num_samples * dim) {}

void parallel_step_noise::fill_step(std::uint64_t step) {
  const std::span<double> all(buffer_);
  pool_.for_rows(num_samples_, [&](unsigned, std::size_t begin, std::size_t end) {
    for (std::size_t b = begin; b < end; ++b)
      generator_.fill(all.subspan(b * dim_, dim_), b, step);
  });
  cached_step_ = step;
}

void parallel_step_noise::operator()(std::span<double> out, skipstep::noise_position at) {
  if (at.sample >= num_samples_ || at.first_element > dim_ || out.size() > dim_ - at.first_element)
    throw std::invalid_argument("skipstep_demo::parallel_step_noise: block (sample " +
                                std::to_string(at.sample) + ", elements " + std::to_string(at.first_element) +
                                " + " + std::to_string(out.size()) + ") is outside " +
                                std::to_string(num_samples_) + " x " + std::to_string(dim_));
  if (at.step != cached_step_)
    fill_step(at.step);
  const double* src = buffer_.data() + at.sample * dim_ + at.first_element;
  std::copy(src, src + out.size(), out.begin());
}

void draw_initial_noise(sample_tensor& x, std::uint64_t seed) {
  const skipstep::philox_normal gen(seed);
  const std::size_t rows = x.shape()[0], dim = x.shape()[1];
  const std::span<double> xs(x.data(), x.size());
  for (std::size_t b = 0; b < rows; ++b)
    gen.fill(xs.subspan(b * dim, dim), b, initial_noise_step);
}

namespace {

/// The sampler of a cell: DDIM over the cell's timesteps with the cell's sigma policy.
skipstep::ddim_sampler make_sampler(const skipstep::noise_schedule<double>& schedule, const cell_spec& cell,
                                    const policy_spec& policy, std::size_t num_samples) {
  skipstep::sampler_options options;
  options.prediction = skipstep::prediction_type::epsilon;
  options.num_samples = num_samples;
  const auto timesteps = make_timesteps(cell.skip, cell.steps);
  if (policy.larger_variance)
    return skipstep::ddim_sampler(schedule, timesteps, skipstep::larger_variance{}, options);
  return skipstep::ddim_sampler(schedule, timesteps, skipstep::eta{policy.eta}, options);
}

}  // namespace

double sample_cell(const skipstep::noise_schedule<double>& schedule, const cell_spec& cell,
                   const policy_spec& policy, exact_predictor& predictor, parallel_step_noise& noise,
                   sample_tensor& x) {
  const std::size_t rows = x.shape()[0];
  const skipstep::ddim_sampler sampler = make_sampler(schedule, cell, policy, rows);
  skipstep::sampler_workspace<double> workspace(x.size());
  noise.reset();
  const auto start = std::chrono::steady_clock::now();
  const auto result = sampler.sample(predictor, x, noise, workspace);
  const auto stop = std::chrono::steady_clock::now();
  if (result.steps_run != cell.steps)
    throw std::logic_error("skipstep_demo::sample_cell: ran " + std::to_string(result.steps_run) +
                           " steps, expected " + std::to_string(cell.steps));
  return std::chrono::duration<double>(stop - start).count();
}

}  // namespace skipstep_demo
