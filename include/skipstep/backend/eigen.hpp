/// @file
/// Eigen backend: dense Matrix/Array objects and contiguous Eigen::Map views are skipstep tensors. An unevaluated
/// expression (`a + b`, `x * 0.5`) deliberately is not: a static_assert asks for `.eval()`.
#pragma once

#include <Eigen/Core>

#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "skipstep/detail/error.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep {

namespace detail {

template <class T>
concept eigen_plain_object = std::derived_from<T, Eigen::PlainObjectBase<T>>;

template <class T>
inline constexpr bool is_eigen_map = false;
template <class Plain, int Options, class Stride>
inline constexpr bool is_eigen_map<Eigen::Map<Plain, Options, Stride>> = true;

template <class T>
concept eigen_expression = std::derived_from<T, Eigen::EigenBase<T>> && !eigen_plain_object<T> && !is_eigen_map<T>;

template <class T>
inline constexpr bool always_false = false;

/// A Map is contiguous when its inner stride is 1 and its outer stride equals its inner size (or it is a vector).
template <class MapType>
void check_contiguous_map(const MapType& m) {
  const bool vector_like = m.rows() == 1 || m.cols() == 1;
  if (m.innerStride() != 1 || (!vector_like && m.outerStride() != m.innerSize()))
    throw_invalid("tensor_traits<Eigen::Map>", "map strides",
                  "must describe contiguous memory (inner stride 1, outer stride " + std::to_string(m.innerSize()) + ")",
                  std::to_string(m.innerStride()) + "/" + std::to_string(m.outerStride()));
}

}  // namespace detail

/// Eigen::Matrix / Eigen::Array (any shape, fixed or dynamic size, either storage order).
template <class T>
  requires detail::eigen_plain_object<T> && TensorElement<typename T::Scalar>
struct tensor_traits<T> {
  using value_type = typename T::Scalar;  ///< Element type.
  /// All coefficients in storage order, mutable.
  static std::span<value_type> elements(T& t) noexcept { return {t.data(), static_cast<std::size_t>(t.size())}; }
  /// All coefficients in storage order, read-only.
  static std::span<const value_type> elements(const T& t) noexcept {
    return {t.data(), static_cast<std::size_t>(t.size())};
  }
};

/// Eigen::Map over contiguous memory; a Map of a const type is a readable tensor only. Non-contiguous strides
/// throw std::invalid_argument when the elements are requested.
template <class Plain, int Options, class Stride>
  requires TensorElement<typename std::remove_const_t<Plain>::Scalar>
struct tensor_traits<Eigen::Map<Plain, Options, Stride>> {
  using map_type = Eigen::Map<Plain, Options, Stride>;  ///< The Map type.
  using value_type = typename std::remove_const_t<Plain>::Scalar;  ///< Element type (without const).
  /// The element type the Map gives write access to (const for a Map of a const type).
  using element = std::conditional_t<std::is_const_v<Plain>, const value_type, value_type>;
  /// The mapped elements; throws std::invalid_argument for non-contiguous strides.
  static std::span<element> elements(map_type& m) {
    detail::check_contiguous_map(m);
    return {m.data(), static_cast<std::size_t>(m.size())};
  }
  /// The mapped elements, read-only; throws std::invalid_argument for non-contiguous strides.
  static std::span<const value_type> elements(const map_type& m) {
    detail::check_contiguous_map(m);
    return {m.data(), static_cast<std::size_t>(m.size())};
  }
};

/// Any other Eigen expression: not a tensor. Evaluate it first.
template <class T>
  requires detail::eigen_expression<T>
struct tensor_traits<T> {
  static_assert(detail::always_false<T>,
                "skipstep: an unevaluated Eigen expression is not a tensor (it has no memory of its own); "
                "call .eval() on it, or return a Matrix/Array from your predictor");
  using value_type = typename T::Scalar;  ///< Present only so that the static_assert above is the one error.
};

}  // namespace skipstep
