/// @file
/// Which noise level each step goes from and to. The default ("consistent") convention steps from t_i to the next
/// listed timestep t_{i+1}, and from the last one to the schedule's final level. The `diffusers` convention
/// reproduces HuggingFace diffusers where it differs (stride-based DDIM target t − ⌊T/N⌋, DDIMInverse's source level).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/timesteps.hpp"

namespace skipstep {

/// How step targets are chosen (README, "Compatibility with diffusers").
enum class step_convention {
  consistent,  ///< t_i → t_{i+1} → ... → final level; inversion walks the same levels back up.
  diffusers,   ///< DDIM: t → t − ⌊T/N⌋ (final level below 0); DDIMInverse: source min(t − ⌊T/N⌋, T−1); DDPM:
               ///< noise only when t > 0.
};

/// One step: the model is evaluated at `timestep`; the sample moves from level ā = alpha_cumprod_from to
/// alpha_cumprod_to. `target_timestep` is −1 for the final level (ā = 1 or ā_0).
struct step_transition {
  std::int64_t timestep = 0;  ///< where the model is evaluated.
  std::int64_t source_timestep = 0;  ///< level the sample is at (equals timestep when sampling; −1 = clean end).
  std::int64_t target_timestep = -1;  ///< the level the step lands on, −1 for the final level.
  double alpha_cumprod_from = 0.0;    ///< ā of the source level.
  double alpha_cumprod_to = 1.0;      ///< ā of the target level.
  bool noise_allowed = true;  ///< false where the convention adds no noise (final clean level; DDPM t = 0).
};

namespace detail {

template <class Real>
double final_level(const noise_schedule<Real>& schedule, final_alpha f) {
  return f == final_alpha::one ? 1.0 : schedule.alpha_cumprod(0);
}

/// A step_convention cast from outside the enum is an error, not silently one of the two conventions.
inline void check_convention(const char* fn, step_convention convention) {
  if (convention != step_convention::consistent && convention != step_convention::diffusers)
    throw_invalid(fn, "convention", "is not a step_convention value", static_cast<int>(convention));
}

template <class Real>
void check_compatible(const char* fn, const noise_schedule<Real>& schedule, const timestep_schedule& timesteps) {
  if (schedule.num_train_timesteps() != timesteps.num_train_timesteps())
    throw_invalid(fn, "timesteps.num_train_timesteps()",
                  "must equal the noise schedule's T = " + std::to_string(schedule.num_train_timesteps()),
                  timesteps.num_train_timesteps());
}

}  // namespace detail

/// Sampling transitions (x_T → x_0 direction) for DDIM-type steps.
/// consistent: ā_from = ā[t_i], ā_to = ā[t_{i+1}] (final level after t_{N−1}) — Song et al. 2021, eq. 12 over τ.
/// diffusers: ā_to = ā[t_i − ⌊T/N⌋], or the final level when that is < 0 (DDIMScheduler.step, "1. get previous
/// step value"). Noise is allowed on every step except onto ā = 1 exactly.
template <class Real>
[[nodiscard]] std::vector<step_transition> ddim_transitions(const noise_schedule<Real>& schedule,
                                                            const timestep_schedule& timesteps,
                                                            step_convention convention = step_convention::consistent) {
  detail::check_convention("ddim_transitions", convention);
  detail::check_compatible("ddim_transitions", schedule, timesteps);
  const std::size_t n = timesteps.size();
  const auto stride = static_cast<std::int64_t>(schedule.num_train_timesteps() / n);
  const double final_value = detail::final_level(schedule, timesteps.after_last());
  std::vector<step_transition> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    step_transition& s = out[i];
    s.timestep = s.source_timestep = timesteps[i];
    s.alpha_cumprod_from = schedule.alpha_cumprod(static_cast<std::size_t>(s.timestep));
    if (convention == step_convention::consistent)
      s.target_timestep = i + 1 < n ? timesteps[i + 1] : -1;
    else
      s.target_timestep = std::max<std::int64_t>(s.timestep - stride, -1);
    s.alpha_cumprod_to = s.target_timestep >= 0 ? schedule.alpha_cumprod(static_cast<std::size_t>(s.target_timestep))
                                                : final_value;
    s.noise_allowed = s.alpha_cumprod_to != 1.0;
  }
  return out;
}

/// Sampling transitions for the ancestral DDPM step over the listed timesteps: t_i → t_{i+1}, the last to the
/// final level (diffusers DDPMScheduler.previous_timestep; with no skipping, t → t − 1). Noise: consistent — every
/// step except onto ā = 1 (the DDPM paper shows μθ(x_1, 1) noiselessly); diffusers — every step with t > 0.
template <class Real>
[[nodiscard]] std::vector<step_transition> ddpm_transitions(const noise_schedule<Real>& schedule,
                                                            const timestep_schedule& timesteps,
                                                            step_convention convention = step_convention::consistent) {
  detail::check_convention("ddpm_transitions", convention);
  auto out = ddim_transitions(schedule, timesteps, step_convention::consistent);
  if (convention == step_convention::diffusers)
    for (auto& s : out) s.noise_allowed = s.timestep > 0;
  return out;
}

/// Inversion transitions (x_0 → x_T direction, DDIM inversion; Song et al. 2021 §4.3, Mokady et al. 2023): the
/// levels of `timesteps` walked upwards. Step j moves the sample from a lower level to t = t_{N−1−j}, evaluating
/// the model at that target t (as diffusers does). consistent: the first source is the final level (ā = 1 or ā_0),
/// then each listed timestep. diffusers: source min(t − ⌊T/N⌋, T−1), the initial level when < 0
/// (DDIMInverseScheduler.step).
template <class Real>
[[nodiscard]] std::vector<step_transition> inversion_transitions(
    const noise_schedule<Real>& schedule, const timestep_schedule& timesteps,
    step_convention convention = step_convention::consistent) {
  detail::check_convention("inversion_transitions", convention);
  detail::check_compatible("inversion_transitions", schedule, timesteps);
  const std::size_t n = timesteps.size();
  const auto big_t = static_cast<std::int64_t>(schedule.num_train_timesteps());
  const auto stride = static_cast<std::int64_t>(schedule.num_train_timesteps() / n);
  const double initial = detail::final_level(schedule, timesteps.after_last());
  std::vector<step_transition> out(n);
  for (std::size_t j = 0; j < n; ++j) {
    step_transition& s = out[j];
    s.timestep = s.target_timestep = timesteps[n - 1 - j];
    s.alpha_cumprod_to = schedule.alpha_cumprod(static_cast<std::size_t>(s.target_timestep));
    if (convention == step_convention::consistent)
      s.source_timestep = j == 0 ? -1 : timesteps[n - j];
    else
      s.source_timestep = std::max<std::int64_t>(std::min(s.timestep - stride, big_t - 1), -1);
    s.alpha_cumprod_from = s.source_timestep >= 0
                               ? schedule.alpha_cumprod(static_cast<std::size_t>(s.source_timestep))
                               : initial;
    s.noise_allowed = false;
  }
  return out;
}

}  // namespace skipstep
