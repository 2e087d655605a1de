/// @file
/// The network as a callable: any `f(x, t) -> tensor` or allocation-free `f(x, t, out)` writing into a
/// `std::span<T>` the sampler owns, where t is the integer training timestep. What the output means (epsilon, v or
/// x0) is the sampler's `prediction_type`, not the callable's.
#pragma once

#include <cstdint>
#include <span>
#include <concepts>
#include <type_traits>

#include "skipstep/prediction.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep {

/// `f(x, t, out)` writes the model output for sample x at timestep t into `out`, a `std::span<T>` with as many
/// elements as x in the same order (wrap it with Eigen::Map or xt::adapt to use array syntax). The span points into
/// the sampler's workspace, never into x, so views (spans, Maps, adaptors) are safe inputs.
template <class F, class X>
concept WritingPredictor = Tensor<X> && std::invocable<F&, const X&, std::int64_t, std::span<tensor_value_t<X>>>;

/// `f(x, t)` returns the model output as any readable tensor with x's element type and size.
template <class F, class X>
concept ReturningPredictor =
    Tensor<X> && std::invocable<F&, const X&, std::int64_t> &&
    ReadableTensor<std::invoke_result_t<F&, const X&, std::int64_t>> &&
    std::same_as<tensor_value_t<std::invoke_result_t<F&, const X&, std::int64_t>>, tensor_value_t<X>>;

namespace detail {

/// The type of the second parameter (the time) of a callable's single, non-template call operator; void when it
/// cannot be read (generic lambdas, overload sets), which counts as an integer time.
template <class Signature>
struct second_parameter {
  using type = void;
};
template <class R, class A0, class A1, class... Rest>
struct second_parameter<R (*)(A0, A1, Rest...)> {
  using type = A1;
};
template <class R, class C, class A0, class A1, class... Rest>
struct second_parameter<R (C::*)(A0, A1, Rest...)> {
  using type = A1;
};
template <class R, class C, class A0, class A1, class... Rest>
struct second_parameter<R (C::*)(A0, A1, Rest...) const> {
  using type = A1;
};
template <class R, class C, class A0, class A1, class... Rest>
struct second_parameter<R (C::*)(A0, A1, Rest...) noexcept> {
  using type = A1;
};
template <class R, class C, class A0, class A1, class... Rest>
struct second_parameter<R (C::*)(A0, A1, Rest...) const noexcept> {
  using type = A1;
};

template <class F>
struct time_parameter {
  using type = typename second_parameter<std::decay_t<F>>::type;  // function pointers and references
};
template <class F>
  requires(requires { &F::operator(); } && !requires { typename F::time_type; })
struct time_parameter<F> {
  using type = typename second_parameter<decltype(&F::operator())>::type;
};
template <class F>
  requires requires { typename F::time_type; }
struct time_parameter<F> {
  using type = typename F::time_type;  ///< adaptors (guidance) declare the time type of what they wrap
};

}  // namespace detail

/// True when the predictor takes the model time as a floating-point number (its call operator's second parameter
/// is float or double, or it declares `using time_type = double;`): it then receives the exact, possibly
/// fractional, model time of σ-grid solvers. Any other predictor (an integer parameter, a generic `auto` one)
/// receives the integer training timestep, and a solver whose grid has fractional times refuses it at `sample`.
template <class F>
inline constexpr bool takes_fractional_time =
    std::floating_point<std::remove_cvref_t<typename detail::time_parameter<std::remove_cvref_t<F>>::type>>;

/// The caller's network plugged into a sampler: a U-Net, an MLP, a TorchScript or ONNX session behind a lambda.
/// The output may be ε, v or x0 (see prediction_type); the name is the product's, the concept accepts all three.
template <class F, class X>
concept EpsilonPredictor = WritingPredictor<F, X> || ReturningPredictor<F, X>;

}  // namespace skipstep
