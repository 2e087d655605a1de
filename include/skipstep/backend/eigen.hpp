/// @file
/// Eigen backend: dense Matrix/Array objects and dense Eigen::Map and Eigen::Ref views are skipstep tensors.
/// An unevaluated expression or block (`a + b`, `x * 0.5`, `m.col(2)`) deliberately is not: a static_assert
/// asks for an Eigen::Ref (to update it in place) or `.eval()` (for an input).
#pragma once

#include <Eigen/Core>

#include <array>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
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
inline constexpr bool is_eigen_ref = false;
template <class Plain, int Options, class Stride>
inline constexpr bool is_eigen_ref<Eigen::Ref<Plain, Options, Stride>> = true;

template <class T>
concept eigen_expression = std::derived_from<T, Eigen::EigenBase<T>> && !eigen_plain_object<T> &&
                           !is_eigen_map<T> && !is_eigen_ref<T>;

template <class T>
inline constexpr bool always_false = false;

/// The one contiguity rule for Eigen views (Map, Ref): the view must be dense in its own storage order
/// (detail::dense_strides). Column-major: row stride 1 (unless rows = 1) and column stride = rows (unless
/// cols = 1); row-major: column stride 1 (unless cols = 1) and row stride = cols (unless rows = 1). Eigen's
/// row/column strides are used, not "inner stride 1" alone, so that a 1×n row of a column-major matrix (inner
/// stride 1, outer stride = the matrix's rows) is rejected: its elements are not next to each other. `trait`
/// names the view type in the message.
template <class View>
void check_dense_eigen_view(const View& v, std::string_view trait) {
  const std::array<Eigen::Index, 2> extents =
      View::IsRowMajor ? std::array{v.cols(), v.rows()} : std::array{v.rows(), v.cols()};
  const std::array<Eigen::Index, 2> strides =
      View::IsRowMajor ? std::array{v.colStride(), v.rowStride()} : std::array{v.rowStride(), v.colStride()};
  if (dense_strides(extents, strides, /*innermost_first=*/true))
    return;
  const std::string shape = std::to_string(v.rows()) + "x" + std::to_string(v.cols());
  const std::string expected = View::IsRowMajor
                                   ? "row stride " + std::to_string(v.cols()) + ", column stride 1"
                                   : "row stride 1, column stride " + std::to_string(v.rows());
  throw_invalid(
      std::string(trait), "map strides",
      std::string("must describe contiguous memory: a dense ") +
          (View::IsRowMajor ? "row-major " : "column-major ") + shape + " view has " + expected +
          " (a dimension of extent 1 may have any stride)",
      "row stride " + std::to_string(v.rowStride()) + ", column stride " + std::to_string(v.colStride()));
}

/// tensor_traits for an Eigen view type (Map or Ref) over `Plain`; a view of a const type is readable only.
template <class View, class Plain, const char* Trait>
struct eigen_view_traits {
  using value_type = typename std::remove_const_t<Plain>::Scalar;  ///< Element type (without const).
  /// The element type the view gives write access to (const for a view of a const type).
  using element = std::conditional_t<std::is_const_v<Plain>, const value_type, value_type>;
  /// The viewed elements in storage order; throws std::invalid_argument unless the view is dense.
  static std::span<element> elements(View& v) {
    check_dense_eigen_view(v, Trait);
    return {v.data(), static_cast<std::size_t>(v.size())};
  }
  /// The viewed elements in storage order, read-only; throws std::invalid_argument unless the view is dense.
  static std::span<const value_type> elements(const View& v) {
    check_dense_eigen_view(v, Trait);
    return {v.data(), static_cast<std::size_t>(v.size())};
  }
};

inline constexpr char eigen_map_trait[] = "tensor_traits<Eigen::Map>";
inline constexpr char eigen_ref_trait[] = "tensor_traits<Eigen::Ref>";

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

/// Eigen::Map over dense memory; a Map of a const type is a readable tensor only. A Map whose strides are not
/// those of a dense view in its storage order (detail::check_dense_eigen_view: a strided Map, a block, a row
/// of a column-major matrix) throws std::invalid_argument when the elements are requested.
template <class Plain, int Options, class Stride>
  requires TensorElement<typename std::remove_const_t<Plain>::Scalar>
struct tensor_traits<Eigen::Map<Plain, Options, Stride>>
    : detail::eigen_view_traits<Eigen::Map<Plain, Options, Stride>, Plain, detail::eigen_map_trait> {};

/// Eigen::Ref, the way Eigen code passes writable blocks (`Eigen::Ref<Eigen::VectorXf> x = m.col(2)`): a
/// sample updated through it updates the referenced matrix in place. `Eigen::Ref<const T>` is a readable
/// tensor only. The Map rule applies at run time (detail::check_dense_eigen_view): a Ref<MatrixXf> bound to a
/// block that is not whole columns (inner stride 1 but an outer stride beyond the block's rows, e.g. a 1×n
/// piece of a row) throws std::invalid_argument when the elements are requested.
template <class Plain, int Options, class Stride>
  requires TensorElement<typename std::remove_const_t<Plain>::Scalar>
struct tensor_traits<Eigen::Ref<Plain, Options, Stride>>
    : detail::eigen_view_traits<Eigen::Ref<Plain, Options, Stride>, Plain, detail::eigen_ref_trait> {};

/// Any other Eigen expression or block (`a + b`, `m.col(2)`): not a tensor.
template <class T>
  requires detail::eigen_expression<T>
struct tensor_traits<T> {
  static_assert(
      detail::always_false<T>,
      "skipstep: an unevaluated Eigen expression or block is not a tensor (it has no memory of its own). "
      "For a sample to be updated in place, pass an Eigen::Ref to it "
      "(Eigen::Ref<Eigen::VectorXf> x = m.col(2);) or an Eigen::Map; for a model output or another "
      "input, call .eval() on it or return a Matrix/Array from your predictor");
  using value_type = typename T::Scalar;  ///< Present only so that the static_assert above is the one error.
};

}  // namespace skipstep
