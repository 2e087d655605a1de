/// @file
/// Timestep skipping: which N of the T training timesteps a sampler evaluates the model at, and what comes after
/// the last one. The result is always a validated, strictly decreasing list inside [0, T).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"

namespace skipstep {

/// What the step after the last listed timestep goes to.
enum class final_alpha {
  one,              ///< ā = 1: the last step lands on the clean sample x̂0 (diffusers `set_alpha_to_one=True`).
  alpha_cumprod_0,  ///< ā = ā_0: the last step lands on training level 0 (diffusers `set_alpha_to_one=False`).
};

/// A strictly decreasing list of training timesteps t_0 > t_1 > ... > t_{N−1}, each in [0, T), plus the choice of
/// what follows t_{N−1}. Build one with a spacing rule (leading, trailing, linspace, quadratic, uniform) or from a
/// custom list; every factory validates its input and throws std::invalid_argument naming the value.
class timestep_schedule {
 public:
  /// "leading" spacing (diffusers; Lin et al. 2024, Table 2): t_i = i·⌊T/N⌋ + offset for i = 0..N−1, reversed.
  /// Throws if the largest entry (N−1)·⌊T/N⌋ + offset is not below T (diffusers raises IndexError there).
  [[nodiscard]] static timestep_schedule leading(std::size_t num_train_timesteps, std::size_t num_steps,
                                                 std::size_t steps_offset = 0) {
    constexpr const char* fn = "timestep_schedule::leading";
    check_counts(fn, num_train_timesteps, num_steps);
    if (steps_offset >= num_train_timesteps)  // also keeps the sum below from wrapping around
      detail::throw_invalid(fn, "steps_offset", "must be < T = " + std::to_string(num_train_timesteps),
                            steps_offset);
    const std::size_t ratio = num_train_timesteps / num_steps;
    const std::size_t top = (num_steps - 1) * ratio + steps_offset;
    if (top >= num_train_timesteps)
      detail::throw_invalid(fn, "steps_offset",
                            "puts the first timestep (N-1)*(T/N)+offset = " + std::to_string(top) +
                                " outside [0, T = " + std::to_string(num_train_timesteps) + ")",
                            steps_offset);
    std::vector<std::int64_t> ts(num_steps);
    for (std::size_t i = 0; i < num_steps; ++i)
      ts[num_steps - 1 - i] = static_cast<std::int64_t>(i * ratio + steps_offset);
    return timestep_schedule(fn, num_train_timesteps, std::move(ts));
  }

  /// "trailing" spacing (Lin et al. 2024, Table 2): t_i = round_half_even(T − i·T/N) − 1 for i = 0..N−1, so the
  /// first step is always T−1. Exactly N entries: diffusers evaluates `np.arange(T, 0, -T/N)`, which for some N
  /// (T = 1000: N = 61, 103, ...) has an extra element and ends the list at −1; skipstep never does.
  [[nodiscard]] static timestep_schedule trailing(std::size_t num_train_timesteps, std::size_t num_steps) {
    constexpr const char* fn = "timestep_schedule::trailing";
    check_counts(fn, num_train_timesteps, num_steps);
    check_exact_in_double(fn, num_train_timesteps);
    const double start = static_cast<double>(num_train_timesteps);
    const double step = -start / static_cast<double>(num_steps);
    // numpy's arange fills start + i·delta with delta = (start + step) − start.
    const double delta = (start + step) - start;
    std::vector<std::int64_t> ts(num_steps);
    for (std::size_t i = 0; i < num_steps; ++i) {
      const double v = i == 0 ? start : (i == 1 ? start + step : start + static_cast<double>(i) * delta);
      ts[i] = static_cast<std::int64_t>(std::nearbyint(v)) - 1;
    }
    return timestep_schedule(fn, num_train_timesteps, std::move(ts));
  }

  /// "linspace" spacing (diffusers; Lin et al. 2024, Table 2): t_i = round_half_even(linspace(0, T−1, N))
  /// reversed, so the first step is T−1 and the last 0. Ties round to even like numpy (832.5 → 832).
  [[nodiscard]] static timestep_schedule linspace(std::size_t num_train_timesteps, std::size_t num_steps) {
    constexpr const char* fn = "timestep_schedule::linspace";
    check_counts(fn, num_train_timesteps, num_steps);
    check_exact_in_double(fn, num_train_timesteps);
    std::vector<std::int64_t> ts(num_steps);
    const double stop = static_cast<double>(num_train_timesteps - 1);
    const double step = num_steps > 1 ? stop / static_cast<double>(num_steps - 1) : 0.0;
    for (std::size_t i = 0; i < num_steps; ++i) {
      const double v = (num_steps > 1 && i == num_steps - 1) ? stop : static_cast<double>(i) * step;
      ts[num_steps - 1 - i] = static_cast<std::int64_t>(std::nearbyint(v));
    }
    return timestep_schedule(fn, num_train_timesteps, std::move(ts));
  }

  /// The DDIM paper's "uniform" skip type (Song et al. 2021, §D.2; `range(0, T, T // N)`): t_i = i·⌊T/N⌋ for
  /// i = 0..N−1, reversed. Python's range can give more than N entries when N does not divide T; this gives N.
  [[nodiscard]] static timestep_schedule uniform(std::size_t num_train_timesteps, std::size_t num_steps) {
    constexpr const char* fn = "timestep_schedule::uniform";
    check_counts(fn, num_train_timesteps, num_steps);
    const std::size_t ratio = num_train_timesteps / num_steps;
    std::vector<std::int64_t> ts(num_steps);
    for (std::size_t i = 0; i < num_steps; ++i) ts[num_steps - 1 - i] = static_cast<std::int64_t>(i * ratio);
    return timestep_schedule(fn, num_train_timesteps, std::move(ts));
  }

  /// The DDIM paper's "quadratic" skip type (Song et al. 2021, §D.2): τ_i = ⌊(i·√(0.8·T)/(N−1))²⌋, i = 0..N−1,
  /// evaluated exactly in integers as ⌊4·i²·T / (5·(N−1)²)⌋ (a floating-point floor of this integer-valued
  /// expression is sometimes one too low). The paper's formula repeats small values (for T = 1000, N = 50 only 49
  /// are distinct); skipstep makes the entries distinct by raising each repeat to one above its predecessor,
  /// τ_i = max(τ_i, τ_{i−1} + 1), which only touches the first few (smallest) entries and keeps τ_i ≤ max(0.8·T, i)
  /// < T. Requires T ≤ 10^6 (the exact integer form fits in 64 bits).
  [[nodiscard]] static timestep_schedule quadratic(std::size_t num_train_timesteps, std::size_t num_steps) {
    constexpr const char* fn = "timestep_schedule::quadratic";
    check_counts(fn, num_train_timesteps, num_steps);
    if (num_train_timesteps > 1'000'000)
      detail::throw_invalid(fn, "num_train_timesteps", "must be <= 1000000", num_train_timesteps);
    std::vector<std::int64_t> ts(num_steps);
    const std::uint64_t big_t = num_train_timesteps;
    const std::uint64_t denominator = 5 * static_cast<std::uint64_t>(num_steps - 1) * (num_steps - 1);
    std::int64_t previous = -1;
    for (std::size_t i = 0; i < num_steps; ++i) {
      const std::uint64_t ii = i;
      auto t = num_steps > 1 ? static_cast<std::int64_t>(4 * ii * ii * big_t / denominator) : std::int64_t{0};
      if (t <= previous) t = previous + 1;
      ts[num_steps - 1 - i] = t;
      previous = t;
    }
    return timestep_schedule(fn, num_train_timesteps, std::move(ts));
  }

  /// A caller's own list: must be non-empty, strictly decreasing and inside [0, T).
  [[nodiscard]] static timestep_schedule custom(std::size_t num_train_timesteps,
                                                std::span<const std::int64_t> timesteps) {
    constexpr const char* fn = "timestep_schedule::custom";
    check_train_timesteps(fn, num_train_timesteps);
    if (timesteps.empty()) detail::throw_invalid(fn, "timesteps.size()", "must be >= 1", timesteps.size());
    return timestep_schedule(fn, num_train_timesteps, std::vector<std::int64_t>(timesteps.begin(), timesteps.end()));
  }

  /// A copy whose step after the last entry goes to `f` (default final_alpha::one). A value cast from outside the
  /// enum throws std::invalid_argument.
  [[nodiscard]] timestep_schedule with_final_alpha(final_alpha f) const {
    if (f != final_alpha::one && f != final_alpha::alpha_cumprod_0)
      detail::throw_invalid("timestep_schedule::with_final_alpha", "f", "is not a final_alpha value",
                            static_cast<int>(f));
    timestep_schedule copy = *this;
    copy.final_ = f;
    return copy;
  }

  /// N, the number of model evaluations.
  [[nodiscard]] std::size_t size() const noexcept { return timesteps_.size(); }
  /// T of the schedule the list indexes.
  [[nodiscard]] std::size_t num_train_timesteps() const noexcept { return num_train_timesteps_; }
  /// t_i, i = 0..N−1 (decreasing); std::out_of_range naming i and N otherwise.
  [[nodiscard]] std::int64_t operator[](std::size_t i) const {
    detail::check_index("timestep_schedule::operator[]", "i", i, timesteps_.size(), "N");
    return timesteps_[i];
  }
  /// The whole list t_0 > ... > t_{N−1}.
  [[nodiscard]] std::span<const std::int64_t> timesteps() const noexcept { return timesteps_; }
  /// What follows t_{N−1}.
  [[nodiscard]] final_alpha after_last() const noexcept { return final_; }

 private:
  timestep_schedule(const char* fn, std::size_t num_train_timesteps, std::vector<std::int64_t> ts)
      : num_train_timesteps_(num_train_timesteps), timesteps_(std::move(ts)) {
    const auto limit = static_cast<std::int64_t>(num_train_timesteps);
    for (std::size_t i = 0; i < timesteps_.size(); ++i) {
      const std::int64_t t = timesteps_[i];
      if (t < 0 || t >= limit)
        detail::throw_invalid(fn, "timesteps[" + std::to_string(i) + "]",
                              "must be in [0, T = " + std::to_string(num_train_timesteps) + ")", t);
      if (i > 0 && t >= timesteps_[i - 1])
        detail::throw_invalid(fn, "timesteps[" + std::to_string(i) + "]",
                              "must be strictly below timesteps[" + std::to_string(i - 1) +
                                  "] = " + std::to_string(timesteps_[i - 1]),
                              t);
    }
  }

  /// 1 <= T <= INT64_MAX: timesteps are std::int64_t, so a larger T could not be indexed (and would read as < 0).
  static void check_train_timesteps(const char* fn, std::size_t num_train_timesteps) {
    if (num_train_timesteps == 0)
      detail::throw_invalid(fn, "num_train_timesteps", "must be >= 1", num_train_timesteps);
    if (num_train_timesteps > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))
      detail::throw_invalid(fn, "num_train_timesteps", "must be <= 9223372036854775807 (timesteps are int64)",
                            num_train_timesteps);
  }

  /// The spacings computed in double (trailing, linspace, as numpy does) need T <= 2^53, where every integer is a
  /// double: above it T rounds (up to 2^63 for T near INT64_MAX, whose conversion back to int64 is undefined).
  static void check_exact_in_double(const char* fn, std::size_t num_train_timesteps) {
    if (num_train_timesteps > (std::size_t{1} << 53))
      detail::throw_invalid(fn, "num_train_timesteps",
                            "must be <= 2^53 = 9007199254740992 (this spacing is computed in double, like numpy)",
                            num_train_timesteps);
  }

  static void check_counts(const char* fn, std::size_t num_train_timesteps, std::size_t num_steps) {
    check_train_timesteps(fn, num_train_timesteps);
    if (num_steps == 0) detail::throw_invalid(fn, "num_steps", "must be >= 1", num_steps);
    if (num_steps > num_train_timesteps)
      detail::throw_invalid(fn, "num_steps", "must not exceed num_train_timesteps = " + std::to_string(num_train_timesteps),
                            num_steps);
  }

  std::size_t num_train_timesteps_ = 0;
  std::vector<std::int64_t> timesteps_;
  final_alpha final_ = final_alpha::one;
};

}  // namespace skipstep
