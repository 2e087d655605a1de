/// @file
/// The tensor customization point: a type is a tensor for skipstep when `tensor_traits<T>` gives its element type
/// and a contiguous view of its elements. Samplers only ever see flat, contiguous memory (DESIGN.md §3).
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <iterator>
#include <span>
#include <type_traits>
#include <vector>

namespace skipstep {

namespace detail {

/// True when a strided view of `extents` with `strides` (both in elements; innermost dimension first when
/// `innermost_first`, else outermost first) covers exactly its first extents[0]·extents[1]·… elements in
/// storage order, i.e. is dense: every dimension of extent > 1 has a stride equal to the product of the
/// extents inside it. A dimension of extent 1 may have any stride (it is never stepped along), and a view
/// with an extent 0 has no elements. Checking only the innermost stride is not enough: a 1×n row of a
/// column-major matrix has inner stride 1 and its elements an outer stride apart. Every backend's contiguity
/// check is this rule (README, "Your tensor type").
template <class Extents, class Strides>
[[nodiscard]] constexpr bool dense_strides(const Extents& extents, const Strides& strides,
                                           bool innermost_first) {
  const std::size_t rank = std::size(extents);
  for (std::size_t k = 0; k < rank; ++k)
    if (extents[k] == 0)
      return true;
  std::ptrdiff_t expected = 1;
  for (std::size_t k = 0; k < rank; ++k) {
    const std::size_t d = innermost_first ? k : rank - 1 - k;
    const auto extent = static_cast<std::ptrdiff_t>(extents[d]);
    if (extent != 1 && static_cast<std::ptrdiff_t>(strides[d]) != expected)
      return false;
    expected *= extent;
  }
  return true;
}

}  // namespace detail

/// Primary template, deliberately undefined: "T is not a tensor". Specialize it for your own buffer type with
///   `using value_type = float;` and two static functions
///   `std::span<float> elements(T&)` and `std::span<const float> elements(const T&)`.
template <class T>
struct tensor_traits;

/// The element types samplers compute with.
template <class T>
concept TensorElement = std::floating_point<T>;

/// A read-only tensor: a contiguous range of floating-point elements (a model output, a noise tensor).
template <class T>
concept ReadableTensor = requires(const T& ct) {
  typename tensor_traits<std::remove_cvref_t<T>>::value_type;
  requires TensorElement<typename tensor_traits<std::remove_cvref_t<T>>::value_type>;
  {
    tensor_traits<std::remove_cvref_t<T>>::elements(ct)
  } -> std::convertible_to<std::span<const typename tensor_traits<std::remove_cvref_t<T>>::value_type>>;
};

/// A tensor a sampler can update in place.
template <class T>
concept Tensor = ReadableTensor<T> && requires(T& t) {
  {
    tensor_traits<std::remove_cvref_t<T>>::elements(t)
  } -> std::convertible_to<std::span<typename tensor_traits<std::remove_cvref_t<T>>::value_type>>;
};

/// Element type of a tensor.
template <ReadableTensor T>
using tensor_value_t = typename tensor_traits<std::remove_cvref_t<T>>::value_type;

/// Contiguous mutable view of a tensor's elements.
template <Tensor T>
[[nodiscard]] std::span<tensor_value_t<T>> elements(T& t) {
  return tensor_traits<std::remove_cvref_t<T>>::elements(t);
}

/// Contiguous read-only view of a tensor's elements.
template <ReadableTensor T>
[[nodiscard]] std::span<const tensor_value_t<T>> elements(const T& t) {
  return tensor_traits<std::remove_cvref_t<T>>::elements(t);
}

/// `std::vector<float|double>` is a tensor.
template <TensorElement E, class Alloc>
struct tensor_traits<std::vector<E, Alloc>> {
  using value_type = E;  ///< Element type.
  /// All elements, mutable.
  static std::span<E> elements(std::vector<E, Alloc>& v) noexcept { return v; }
  /// All elements, read-only.
  static std::span<const E> elements(const std::vector<E, Alloc>& v) noexcept { return v; }
};

/// `std::array<float|double, N>` is a tensor.
template <TensorElement E, std::size_t N>
struct tensor_traits<std::array<E, N>> {
  using value_type = E;  ///< Element type.
  /// All elements, mutable.
  static std::span<E> elements(std::array<E, N>& a) noexcept { return a; }
  /// All elements, read-only.
  static std::span<const E> elements(const std::array<E, N>& a) noexcept { return a; }
};

/// A span is a view: a `std::span<float>` is a mutable tensor, a `std::span<const float>` a readable one.
template <class E, std::size_t Extent>
  requires TensorElement<std::remove_const_t<E>>
struct tensor_traits<std::span<E, Extent>> {
  using value_type = std::remove_const_t<E>;  ///< Element type (without const).
  /// The viewed elements (mutable unless E is const).
  static std::span<E> elements(const std::span<E, Extent>& s) noexcept { return s; }
};

}  // namespace skipstep
