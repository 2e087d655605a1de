/// @file
/// The trained networks behind an interface without LibTorch types: model.cpp is the program's only translation
/// unit that includes <torch/script.h> (20–40 s and ~800 MB to compile), so the rest builds like any example.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fashion_mnist {

inline constexpr std::size_t image_side = 28;
inline constexpr std::size_t image_size = image_side * image_side;
inline constexpr std::size_t feature_size = 128;
inline constexpr std::size_t num_train_timesteps = 1000;
/// x_T of sample b = philox_normal(seed) at (stream b, step initial_noise_step), a step index no sampler reaches.
inline constexpr std::uint64_t initial_noise_step = 0xFFFFFFFFull;

enum class skip_type { uniform, quadratic };

/// One cell of the table: skip type, S, and the σ policy (η, or σ̂ when larger_variance).
struct cell_spec {
  skip_type skip = skip_type::uniform;
  std::size_t steps = 10;
  bool larger_variance = false;
  double eta = 0.0;
};

/// Where the time of a cell went, summed over the worker threads (each runs whole batches).
struct cell_timing {
  double wall_s = 0.0;      ///< wall time of the cell (all workers).
  double sample_s = 0.0;    ///< Σ over batches of the time inside sampler::sample.
  double forward_s = 0.0;   ///< ... of which inside the network's forward (the TorchScript call).
  double adaptor_s = 0.0;   ///< ... of which in torch_predictor around it (from_blob, checks, the output copy).
  std::size_t forwards = 0; ///< network calls (batches × steps).
  /// skipstep's own share: sample − forward − adaptor (the steps' fused kernels and the noise draws).
  [[nodiscard]] double skipstep_s() const { return sample_s - forward_s - adaptor_s; }
};

/// The ε-network and the metric's classifier (TorchScript files written by models/fashion_mnist/train.py).
class networks {
 public:
  /// Loads both modules. `workers` std::threads each run whole batches with one intra-op thread
  /// (at::set_num_threads(1) in every worker: with 2 cores under load, OpenMP's busy-waiting makes a 2-thread
  /// forward slower than two 1-thread forwards side by side).
  networks(const std::string& eps_path, const std::string& classifier_path, std::size_t workers);
  ~networks();
  networks(const networks&) = delete;
  networks& operator=(const networks&) = delete;

  /// Samples n images of `cell` into out (n × 784, in [-1, 1] up to the model's error, not clipped), in batches of
  /// `batch` (the last may be smaller): x_T and the step noise of sample k are philox_normal(seed) at stream k, so
  /// the samples do not depend on the batch size or the number of workers.
  cell_timing sample(const cell_spec& cell, std::size_t n, std::size_t batch, std::uint64_t seed,
                     std::span<float> out);

  /// The classifier's penultimate features (n × 128) and its predicted labels of n images.
  void features(std::span<const float> images, std::size_t n, std::span<double> out, std::vector<int>* labels = nullptr);

  /// Forward cost: ms per image of the ε-network at this batch size, with `threads` intra-op threads in one
  /// caller thread (workers = 1) or `workers` threads side by side, each with one intra-op thread (threads = 1).
  /// Median of `reps` timed calls after one warm-up.
  double forward_ms_per_image(std::size_t batch, std::size_t workers, int threads, int reps);

  /// The number of parameters of the ε-network.
  [[nodiscard]] std::size_t parameters() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace fashion_mnist
