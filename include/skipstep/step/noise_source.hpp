/// @file
/// Where a step's fresh Gaussian noise z comes from. A noise source is any callable that fills a block of
/// standard normals addressed by (sample, step, first element): counter-based generators answer such requests in
/// any order, which keeps results independent of batch size, chunking and threads.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "skipstep/detail/error.hpp"

namespace skipstep {

/// The address of a block of noise: elements [first_element, first_element + out.size()) of sample `sample`
/// (the stream) at sampler step `step`.
struct noise_position {
  std::uint64_t sample = 0;         ///< which sample of the batch (the generator's stream).
  std::uint64_t step = 0;           ///< the sampler's step index.
  std::uint64_t first_element = 0;  ///< offset of the block inside the sample.
};

/// A counter-based generator: `g.fill(out, stream, step, first_element)` writes the standard normals of that
/// address range (skipstep::philox_normal is one).
template <class G, class T>
concept CounterBasedNormalGenerator = requires(const G& g, std::span<T> out, std::uint64_t n) { g.fill(out, n, n, n); };

/// Where a step's noise comes from: a callable `source(std::span<T> out, noise_position at)` writing standard
/// normal draws, or a counter-based generator (sample → stream, step → step).
template <class S, class T>
concept NoiseSource = std::invocable<S&, std::span<T>, noise_position> || CounterBasedNormalGenerator<S, T>;

namespace detail {

/// Asks a noise source for the block `at`.
template <class T, class S>
  requires NoiseSource<S, T>
void draw_noise(S& source, std::span<T> out, noise_position at) {
  if constexpr (std::invocable<S&, std::span<T>, noise_position>)
    source(out, at);
  else
    source.fill(out, at.sample, at.step, at.first_element);
}

}  // namespace detail

/// Marker for "this step draws no noise".
struct no_noise {};

/// A counter-based generator that publishes its address limits (static max_steps and max_elements, as
/// philox_normal does): once a sampler has checked a run against them, its draws cannot fail.
template <class S, class T>
concept BoundedCounterBasedGenerator = CounterBasedNormalGenerator<S, T> && requires {
  { S::max_steps } -> std::convertible_to<std::uint64_t>;
  { S::max_elements } -> std::convertible_to<std::uint64_t>;
};

/// True when drawing from S cannot throw (no_noise, a noexcept callable, or a bounded counter-based generator
/// after its limits were checked). A sampler draws such noise inside the fused pass; any other source is drawn
/// into the workspace before the step touches x, so that an exception leaves x at the last completed step.
template <class S, class T>
inline constexpr bool draws_cannot_throw =
    std::is_same_v<S, no_noise> || std::is_nothrow_invocable_v<S&, std::span<T>, noise_position> ||
    BoundedCounterBasedGenerator<S, T>;

namespace detail {

/// Fills `buffer` (num_samples equal samples) with the step's noise, asking `source` for exactly the blocks the
/// step kernels ask for (per sample, blocks of noise_block elements from element 0), so that the values equal
/// those of drawing inside the pass.
template <class T, class S>
void predraw_noise(S& source, std::span<T> buffer, std::size_t num_samples, std::size_t step,
                   std::size_t block) {
  const std::size_t per = buffer.size() / num_samples;
  for (std::size_t s = 0; s < num_samples; ++s)
    for (std::size_t j = 0; j < per; j += block)
      draw_noise<T>(source, buffer.subspan(s * per + j, std::min(block, per - j)), noise_position{s, step, j});
}

/// Serves blocks of noise already drawn into a buffer of num_samples equal samples (see predraw_noise).
template <class T>
struct buffered_noise {
  const T* values = nullptr;   ///< the whole step's noise.
  std::size_t per_sample = 0;  ///< elements per sample.
  void operator()(std::span<T> out, noise_position at) const noexcept {
    std::copy_n(values + static_cast<std::size_t>(at.sample) * per_sample + static_cast<std::size_t>(at.first_element),
                out.size(), out.begin());
  }
};

}  // namespace detail

/// Noise the caller already holds: one tensor of the sample's full size (all samples, row-major by sample) for the
/// current step. Used to replay recorded noise (e.g. diffusers' reference runs) or a caller's own generator.
template <class T>
struct given_noise {
  std::span<const T> values;   ///< the noise of the whole tensor for this step.
  std::size_t sample_size = 0;  ///< elements per sample; 0 = one sample holding everything.

  /// Copies the requested block; throws std::invalid_argument if it lies outside `values`. The block's offset
  /// sample·sample_size + first_element is bounded in checked arithmetic: a huge sample_size cannot wrap it around
  /// to a position before the values.
  void operator()(std::span<T> out, noise_position at) const {
    const std::size_t size = values.size();
    const std::size_t per = sample_size == 0 ? size : sample_size;
    const auto sample = static_cast<std::size_t>(at.sample), first = static_cast<std::size_t>(at.first_element);
    const bool fits = (sample == 0 || per <= size / sample) && first <= size - sample * per &&
                      out.size() <= size - sample * per - first;
    if (!fits)
      detail::throw_invalid("given_noise", "values.size()",
                            "is too small for the requested block of " + std::to_string(out.size()) +
                                " elements at sample " + std::to_string(sample) + ", element " +
                                std::to_string(first) + " (sample_size = " + std::to_string(sample_size) + ")",
                            size);
    std::copy_n(values.begin() + static_cast<std::ptrdiff_t>(sample * per + first), out.size(), out.begin());
  }

  /// Checks up front that `values` hold every block a step over `num_samples` samples of `per_sample` elements asks
  /// for (the last one ends at (num_samples − 1)·sample_size + per_sample), and that samples do not share values
  /// (sample_size 0 or >= per_sample), so that a step fails before it writes anything. Throws
  /// std::invalid_argument naming `function` (the step the caller called), the field and its value.
  void check_covers(std::string_view function, std::size_t num_samples, std::size_t per_sample) const {
    if (num_samples > 1 && sample_size != 0 && sample_size < per_sample)  // sample b + 1 would reuse b's noise
      detail::throw_invalid(function, "noise (given_noise) sample_size",
                            "must be at least the step's " + std::to_string(per_sample) +
                                " elements per sample (smaller, consecutive samples get overlapping noise)",
                            sample_size);
    const std::size_t per = sample_size == 0 ? values.size() : sample_size;
    const bool fits = per_sample <= values.size() &&
                      (num_samples <= 1 || per <= (values.size() - per_sample) / (num_samples - 1));
    if (!fits)
      detail::throw_invalid(function, "noise (given_noise) values.size()",
                            "must cover " + std::to_string(num_samples) + " sample(s) of " +
                                std::to_string(per_sample) + " elements (" +
                                (sample_size == 0 ? std::string("sample_size = 0: one sample of all the values")
                                                  : "sample_size = " + std::to_string(sample_size)) +
                                ")",
                            values.size());
  }
};

namespace detail {

template <class S>
inline constexpr bool is_given_noise = false;
template <class T>
inline constexpr bool is_given_noise<given_noise<T>> = true;

/// A step-level call's up-front check of its noise source: given_noise knows its extent (check_covers); other sources
/// cannot be checked before they are asked.
template <class S>
void check_noise_covers(std::string_view function, const S& source, std::size_t num_samples, std::size_t per_sample) {
  if constexpr (is_given_noise<std::remove_cvref_t<S>>) source.check_covers(function, num_samples, per_sample);
}

}  // namespace detail

}  // namespace skipstep
