/// @file
/// Eigen's unsupported Tensor module as a backend: `Eigen::Tensor<T, Rank>` and `Eigen::TensorMap` over it are
/// skipstep tensors (both store their coefficients contiguously, in the tensor's storage order). Opt-in and separate
/// from backend/eigen.hpp because the Tensor module is heavy to compile.
#pragma once

#include <unsupported/Eigen/CXX11/Tensor>

#include <cstddef>
#include <span>
#include <type_traits>

#include "skipstep/tensor.hpp"

namespace skipstep {

/// Eigen::Tensor of any rank and storage order.
template <class Scalar, int Rank, int Options, class Index>
  requires TensorElement<Scalar>
struct tensor_traits<Eigen::Tensor<Scalar, Rank, Options, Index>> {
  using tensor_type = Eigen::Tensor<Scalar, Rank, Options, Index>;  ///< The Tensor type.
  using value_type = Scalar;                                         ///< Element type.
  /// All coefficients in storage order, mutable.
  static std::span<Scalar> elements(tensor_type& t) noexcept { return {t.data(), static_cast<std::size_t>(t.size())}; }
  /// All coefficients in storage order, read-only.
  static std::span<const Scalar> elements(const tensor_type& t) noexcept {
    return {t.data(), static_cast<std::size_t>(t.size())};
  }
};

/// Eigen::TensorMap over contiguous memory; a map of a const Tensor is a readable tensor only.
template <class Plain, int Options, template <class> class MakePointer>
  requires TensorElement<typename std::remove_const_t<Plain>::Scalar>
struct tensor_traits<Eigen::TensorMap<Plain, Options, MakePointer>> {
  using map_type = Eigen::TensorMap<Plain, Options, MakePointer>;  ///< The TensorMap type.
  using value_type = typename std::remove_const_t<Plain>::Scalar;   ///< Element type (without const).
  /// The element type the map gives write access to (const for a map of a const Tensor).
  using element = std::conditional_t<std::is_const_v<Plain>, const value_type, value_type>;
  /// The mapped coefficients.
  static std::span<element> elements(map_type& m) noexcept { return {m.data(), static_cast<std::size_t>(m.size())}; }
  /// The mapped coefficients, read-only.
  static std::span<const value_type> elements(const map_type& m) noexcept {
    return {m.data(), static_cast<std::size_t>(m.size())};
  }
};

}  // namespace skipstep
