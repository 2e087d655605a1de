/// @file
/// The network as a callable: any `f(x, t) -> tensor` or allocation-free `f(x, t, out)` writing into a
/// `std::span<T>` the sampler owns, where t is the integer training timestep. What the output means (epsilon, v or
/// x0) is the sampler's `prediction_type`, not the callable's.
#pragma once

#include <cstdint>
#include <span>
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

/// The caller's network plugged into a sampler: a U-Net, an MLP, a TorchScript or ONNX session behind a lambda.
/// The output may be ε, v or x0 (see prediction_type); the name is the product's, the concept accepts all three.
template <class F, class X>
concept EpsilonPredictor = WritingPredictor<F, X> || ReturningPredictor<F, X>;

}  // namespace skipstep
