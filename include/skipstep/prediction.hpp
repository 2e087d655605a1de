/// @file
/// What a model predicts, and how x̂0 and ε̂ follow linearly from (x_t, model output) for each kind.
#pragma once

#include <cmath>
#include <string_view>

#include "skipstep/detail/error.hpp"

namespace skipstep {

/// The quantity a network outputs at (x_t, t). With ā = ā_t and m the output:
///  - epsilon: m = ε̂ (Ho et al. 2020);
///  - v:       m = v̂ = √ā·ε̂ − √(1−ā)·x̂0 (Salimans & Ho 2022, "v-prediction");
///  - sample:  m = x̂0;
///  - flow:    m = û = ε̂ − x̂0, the rectified-flow velocity (Liu et al. 2023; diffusers "flow_prediction").
enum class prediction_type { epsilon, v, sample, flow };

/// Parses diffusers' names "epsilon", "v_prediction" (or "v"), "sample" and "flow_prediction" (or "flow").
[[nodiscard]] inline prediction_type parse_prediction_type(std::string_view name) {
  if (name == "epsilon") return prediction_type::epsilon;
  if (name == "v_prediction" || name == "v") return prediction_type::v;
  if (name == "sample") return prediction_type::sample;
  if (name == "flow_prediction" || name == "flow") return prediction_type::flow;
  detail::throw_invalid("parse_prediction_type", "name", "must be epsilon, v_prediction, sample or flow_prediction",
                        name);
}

/// The linear maps x̂0 = x0_from_sample·x + x0_from_model·m and ε̂ = eps_from_sample·x + eps_from_model·m.
struct prediction_coefficients {
  double x0_from_sample;   ///< x̂0's coefficient of the sample x.
  double x0_from_model;    ///< x̂0's coefficient of the model output m.
  double eps_from_sample;  ///< ε̂'s coefficient of x.
  double eps_from_model;   ///< ε̂'s coefficient of m.
};

namespace detail {

/// prediction_coefficients_at, with errors naming `function` and `argument` (the caller's names for ā).
[[nodiscard]] inline prediction_coefficients prediction_coefficients_for(std::string_view function,
                                                                         std::string_view argument,
                                                                         prediction_type kind, double alpha_cumprod) {
  const double a = alpha_cumprod;
  if (!(a >= 0.0 && a <= 1.0)) throw_invalid(function, argument, "must be in [0, 1]", a);
  const double sa = std::sqrt(a);
  const double sb = std::sqrt(1.0 - a);
  switch (kind) {
    case prediction_type::epsilon:
      if (a == 0.0)
        throw_domain(function, argument,
                     "is 0 (zero terminal SNR): epsilon prediction cannot recover x0 there; use v or sample "
                     "prediction",
                     a);
      return {1.0 / sa, -sb / sa, 0.0, 1.0};
    case prediction_type::v:
      return {sa, -sb, sb, sa};
    case prediction_type::sample:
      if (a == 1.0)
        throw_domain(function, argument, "is 1 (no noise): sample prediction cannot recover epsilon there", a);
      return {0.0, 1.0, 1.0 / sb, -sa / sb};
    case prediction_type::flow: {
      // x = √ā·x0 + √(1−ā)·ε and u = ε − x0: x0 = (x − √(1−ā)·u)/(√ā + √(1−ā)), ε = (x + √ā·u)/(√ā + √(1−ā)).
      const double n = sa + sb;
      return {1.0 / n, -sb / n, 1.0 / n, sa / n};
    }
  }
  throw_invalid(function, "prediction type", "is not a prediction_type value", static_cast<int>(kind));
}

}  // namespace detail

/// Coefficients of x̂0 and ε̂ at noise level ā (DESIGN.md §1; diffusers DDIMScheduler.step, "3. compute predicted
/// original sample"):
///  - epsilon: x̂0 = (x − √(1−ā)·m)/√ā,  ε̂ = m
///  - v:       x̂0 = √ā·x − √(1−ā)·m,    ε̂ = √ā·m + √(1−ā)·x
///  - sample:  x̂0 = m,                  ε̂ = (x − √ā·m)/√(1−ā)
/// Throws std::domain_error where the map does not exist: epsilon prediction at ā = 0 (zero terminal SNR: x_t
/// carries no signal, x̂0 would be ±inf) and sample prediction at ā = 1 (no noise, ε̂ undefined).
[[nodiscard]] inline prediction_coefficients prediction_coefficients_at(prediction_type kind, double alpha_cumprod) {
  return detail::prediction_coefficients_for("prediction_coefficients_at", "alpha_cumprod", kind, alpha_cumprod);
}

}  // namespace skipstep
