/// @file
/// diffusers' noise order on torch CPU generators: x_T first, then each stochastic step's whole-tensor draw,
/// each one `randn_tensor` call (diffusers src/diffusers/utils/torch_utils.py) on a torch_generator or a list
/// of them. With the seeds of a diffusers run this reproduces its x_T and every step's noise bit for bit
/// (torch 1.13 on x86-64, see interop/torch_generator.hpp), so a skipstep sampler can replay a diffusers
/// pipeline's randomness.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/interop/detail/float16.hpp"
#include "skipstep/interop/torch_generator.hpp"
#include "skipstep/step/noise_source.hpp"

namespace skipstep {

/// A NoiseSource (step/noise_source.hpp) that draws in diffusers' order from torch CPU generators.
///
/// `randn_tensor(shape, generator=G, dtype)` rules (diffusers torch_utils.py): one generator (or a list of
/// length 1) is one `torch.randn(shape)` call of prod(shape) numbers; a list is one call
/// `torch.randn((1,) + shape[1:])` per batch item i = 0 .. shape[0]-1 on G[i], concatenated along dim 0
/// (extra generators stay unused; a shorter list is an error). The numel of each call picks torch's scalar
/// (fewer than 16) or vector path, so a list draws differently from one generator even for the same seeds.
///
/// Stateful: the first request of a new step draws that step's whole tensor (in the noise dtype, widened or
/// rounded to T) into a buffer allocated once at construction; every block of that step is then served from
/// it, in any order. Steps must be requested in order, first_step, first_step + 1, ... (a sampler asks only
/// at steps that add noise, which is where diffusers' schedulers call randn_tensor); revisiting an older step
/// or skipping one throws std::invalid_argument. Calls are serialised by a mutex, so the concurrent requests
/// of parallel_apply_step (a sampler with a thread_pool) get the same values as a serial run. Movable, not
/// copyable.
template <class T>
requires std::same_as<T, float> || std::same_as<T, double>
class diffusers_torch_noise {
 public:
  /// Draws from `generators` (moved in; one generator, or one per batch item) for a tensor of `shape`
  /// (shape[0] = batch = skipstep's num_samples, prod(shape[1:]) = elements per sample); each step's noise is
  /// drawn in `noise_dtype` (diffusers: the model output's dtype for DDPM / DDIM / Euler ancestral / LCM,
  /// float32 always for DPM-Solver `sde-dpmsolver++`, the sample's for flow-matching Euler); the first noisy
  /// step is `first_step`. Throws std::invalid_argument for an empty shape, a zero dimension, no generator,
  /// or a list (2 or more) shorter than shape[0] (diffusers raises IndexError there).
  diffusers_torch_noise(std::vector<torch_generator> generators, std::vector<std::size_t> shape,
                        torch_dtype noise_dtype, std::uint64_t first_step = 0)
      : generators_(std::move(generators)),
        shape_(std::move(shape)),
        noise_dtype_(noise_dtype),
        next_step_(first_step) {
    constexpr const char* fn = "diffusers_torch_noise";
    if (shape_.empty())
      detail::throw_invalid(fn, "shape.size()", "must be at least 1 (the batch dimension)", 0);
    for (std::size_t d = 0; d < shape_.size(); ++d)
      if (shape_[d] == 0)
        detail::throw_invalid(fn, "shape[" + std::to_string(d) + "]", "must be >= 1", shape_[d]);
    if (generators_.empty())
      detail::throw_invalid(fn, "generators.size()", "must be at least 1", 0);
    batch_ = shape_[0];
    sample_size_ = 1;
    for (std::size_t d = 1; d < shape_.size(); ++d)
      sample_size_ *= shape_[d];
    if (generators_.size() >= 2 && generators_.size() < batch_)
      detail::throw_invalid(fn, "generators.size()",
                            "must be 1 or at least the batch size shape[0] = " + std::to_string(batch_) +
                                " (randn_tensor takes one generator per batch item)",
                            generators_.size());
    noise_.resize(batch_ * sample_size_);
    allocate_staging(noise_dtype_);
  }

  /// One generator for the whole batch (see the list constructor).
  diffusers_torch_noise(torch_generator generator, std::vector<std::size_t> shape, torch_dtype noise_dtype,
                        std::uint64_t first_step = 0)
      : diffusers_torch_noise(std::vector<torch_generator>{std::move(generator)}, std::move(shape),
                              noise_dtype, first_step) {}

  /// The generators `torch.Generator().manual_seed(s)` for s in seeds (one seed: one generator), as a
  /// diffusers user writes `generator=[torch.Generator().manual_seed(s) for s in seeds]`.
  [[nodiscard]] static diffusers_torch_noise from_seeds(std::span<const std::uint64_t> seeds,
                                                        std::vector<std::size_t> shape,
                                                        torch_dtype noise_dtype,
                                                        std::uint64_t first_step = 0) {
    std::vector<torch_generator> generators;
    generators.reserve(seeds.size());
    for (const std::uint64_t s : seeds)
      generators.emplace_back(s);
    return diffusers_torch_noise(std::move(generators), std::move(shape), noise_dtype, first_step);
  }

  /// x_T as a pipeline's `prepare_latents` makes it: latents = randn_tensor(shape, generator=G,
  /// dtype=latent_dtype), then x_T = latents · init_noise_sigma as a tensor product in latent_dtype (float32
  /// / float16: float product of float(latent) and float(init_noise_sigma), rounded to the dtype; float64:
  /// double product), converted to T. Must come before the first step's noise (it is the first randn_tensor
  /// call; calling it again draws again). Throws std::invalid_argument if out.size() != prod(shape) or a step
  /// was already drawn.
  void draw_initial(std::span<T> out, double init_noise_sigma = 1.0,
                    torch_dtype latent_dtype = torch_dtype::float32) {
    constexpr const char* fn = "diffusers_torch_noise::draw_initial";
    const std::lock_guard<std::mutex> lock(*mutex_);
    if (out.size() != noise_.size())
      detail::throw_invalid(fn, "out.size()", "must equal prod(shape) = " + std::to_string(noise_.size()),
                            out.size());
    if (has_step_)
      detail::throw_invalid(fn, "call order",
                            "must precede the step noise (x_T is diffusers' first draw); step already drawn",
                            current_step_);
    allocate_staging(latent_dtype);
    draw(out, latent_dtype);
    switch (latent_dtype) {
      case torch_dtype::float64:
        for (T& v : out)
          v = static_cast<T>(static_cast<double>(v) * init_noise_sigma);
        return;
      case torch_dtype::float32:
        for (T& v : out)
          v = static_cast<T>(static_cast<float>(v) * static_cast<float>(init_noise_sigma));
        return;
      case torch_dtype::float16:
        for (T& v : out)
          v = static_cast<T>(detail::half_bits_to_float(
              detail::float_to_half_bits(static_cast<float>(v) * static_cast<float>(init_noise_sigma))));
        return;
    }
  }

  /// The NoiseSource call: writes elements [at.first_element, at.first_element + out.size()) of sample
  /// at.sample of step at.step's noise. A new step (at.step == the next one in order) first draws that step's
  /// whole tensor. Throws std::invalid_argument for a step out of order, a sample >= shape[0], or a block
  /// past the sample's end.
  void operator()(std::span<T> out, noise_position at) {
    constexpr const char* fn = "diffusers_torch_noise";
    const std::lock_guard<std::mutex> lock(*mutex_);
    if (!has_step_ || at.step != current_step_) {
      if (at.step != next_step_) {
        std::string rule =
            "must be " + std::to_string(next_step_) + " (the next step in diffusers' draw order";
        if (has_step_)
          rule += ", or the step being served " + std::to_string(current_step_);
        rule += "): torch generators are sequential, steps cannot be skipped, revisited or reordered";
        detail::throw_invalid(fn, "at.step", rule, at.step);
      }
      draw(std::span<T>(noise_), noise_dtype_);
      has_step_ = true;
      current_step_ = at.step;
      next_step_ = at.step + 1;
    }
    if (at.sample >= batch_)
      detail::throw_invalid(fn, "at.sample",
                            "must be below the batch size shape[0] = " + std::to_string(batch_), at.sample);
    if (at.first_element > sample_size_ || out.size() > sample_size_ - at.first_element)
      detail::throw_invalid(
          fn, "at.first_element",
          "+ out.size() = " + std::to_string(out.size()) +
              " must not exceed the elements per sample prod(shape[1:]) = " + std::to_string(sample_size_),
          at.first_element);
    const std::size_t begin =
        static_cast<std::size_t>(at.sample) * sample_size_ + static_cast<std::size_t>(at.first_element);
    std::copy_n(noise_.begin() + static_cast<std::ptrdiff_t>(begin), out.size(), out.begin());
  }

  /// The whole noise tensor of the step being served (row-major, shape), empty before the first step.
  [[nodiscard]] std::span<const T> current_noise() const noexcept {
    return has_step_ ? std::span<const T>(noise_) : std::span<const T>();
  }
  /// The step whose noise is being served; meaningful only when has_step().
  [[nodiscard]] std::uint64_t current_step() const noexcept { return current_step_; }
  /// True once a step's noise was drawn.
  [[nodiscard]] bool has_step() const noexcept { return has_step_; }
  /// The step the next new draw must be for.
  [[nodiscard]] std::uint64_t next_step() const noexcept { return next_step_; }
  /// Generator i (its state after the draws so far: words used, cached normal).
  [[nodiscard]] const torch_generator& generator(std::size_t i) const { return generators_.at(i); }
  /// Number of generators held (1, or the list's length).
  [[nodiscard]] std::size_t num_generators() const noexcept { return generators_.size(); }
  /// shape[0].
  [[nodiscard]] std::size_t batch_size() const noexcept { return batch_; }
  /// prod(shape[1:]): elements per sample.
  [[nodiscard]] std::size_t sample_size() const noexcept { return sample_size_; }

 private:
  /// One randn_tensor call into out (prod(shape) values): one randn of everything, or one per batch item.
  void draw(std::span<T> out, torch_dtype dtype) {
    if (generators_.size() == 1) {
      draw_call(generators_[0], out, 0, dtype);
      return;
    }
    for (std::size_t i = 0; i < batch_; ++i)
      draw_call(generators_[i], out.subspan(i * sample_size_, sample_size_), i * sample_size_, dtype);
  }

  /// One torch.randn call of out.size() numbers in dtype; `offset` locates out in the staging buffers.
  void draw_call(torch_generator& g, std::span<T> out, std::size_t offset, torch_dtype dtype) {
    const std::size_t n = out.size();
    switch (dtype) {
      case torch_dtype::float32:
        if constexpr (std::same_as<T, float>) {
          g.randn(out);
        } else {
          const std::span<float> drawn(staging_f32_.data() + offset, n);
          g.randn(drawn);
          std::copy(drawn.begin(), drawn.end(), out.begin());
        }
        return;
      case torch_dtype::float64:
        if constexpr (std::same_as<T, double>) {
          g.randn(out);
        } else {
          const std::span<double> drawn(staging_f64_.data() + offset, n);
          g.randn(drawn);
          for (std::size_t k = 0; k < n; ++k)
            out[k] = static_cast<T>(drawn[k]);
        }
        return;
      case torch_dtype::float16: {
        const std::span<std::uint16_t> drawn(staging_f16_.data() + offset, n);
        g.randn_float16(drawn);
        for (std::size_t k = 0; k < n; ++k)
          out[k] = static_cast<T>(detail::half_bits_to_float(drawn[k]));
        return;
      }
    }
  }

  /// Sizes the staging buffer a dtype other than T's own needs (once; no-op afterwards).
  void allocate_staging(torch_dtype dtype) {
    const std::size_t n = noise_.size();
    if (dtype == torch_dtype::float32 && !std::same_as<T, float>)
      staging_f32_.resize(n);
    if (dtype == torch_dtype::float64 && !std::same_as<T, double>)
      staging_f64_.resize(n);
    if (dtype == torch_dtype::float16)
      staging_f16_.resize(n);
  }

  std::vector<torch_generator> generators_;
  std::vector<std::size_t> shape_;
  torch_dtype noise_dtype_;
  std::size_t batch_ = 0;
  std::size_t sample_size_ = 0;
  std::vector<T> noise_;
  std::vector<float> staging_f32_;
  std::vector<double> staging_f64_;
  std::vector<std::uint16_t> staging_f16_;
  std::uint64_t next_step_ = 0;
  std::uint64_t current_step_ = 0;
  bool has_step_ = false;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // a pointer keeps the source movable
};

}  // namespace skipstep
