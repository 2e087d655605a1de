/// @file
/// xtensor backend: xt::xarray, xt::xtensor and the xt::adapt adaptors over contiguous memory are skipstep tensors.
/// Works with Debian's xtensor 0.24 (<xtensor/xarray.hpp>) and xtensor >= 0.26 (<xtensor/containers/xarray.hpp>).
#pragma once

#if __has_include(<xtensor/containers/xarray.hpp>)
#include <xtensor/containers/xadapt.hpp>
#include <xtensor/containers/xarray.hpp>
#include <xtensor/containers/xtensor.hpp>
#else
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#endif

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "skipstep/detail/error.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep {

namespace detail {

/// xtensor containers and adaptors with a row- or column-major layout own (or view) contiguous memory.
/// True when `strides` are those of a dense row-major (or, with column_major, column-major) array of `shape`;
/// extent-1 dimensions may have any stride (xtensor gives them 0).
template <class Shape, class Strides>
bool dense_strides(const Shape& shape, const Strides& strides, bool column_major) {
  const std::size_t rank = shape.size();
  std::ptrdiff_t expected = 1;
  for (std::size_t k = 0; k < rank; ++k) {
    const std::size_t d = column_major ? k : rank - 1 - k;
    if (shape[d] != 1 && static_cast<std::ptrdiff_t>(strides[d]) != expected) return false;
    expected *= static_cast<std::ptrdiff_t>(shape[d]);
  }
  return true;
}

/// xtensor containers are dense; an adaptor with a dynamic layout is accepted when its strides are dense.
template <class X>
void check_contiguous_xtensor(const X& x) {
  if (x.layout() == xt::layout_type::row_major || x.layout() == xt::layout_type::column_major) return;
  if (dense_strides(x.shape(), x.strides(), false) || dense_strides(x.shape(), x.strides(), true)) return;
  std::string strides;
  for (std::size_t k = 0; k < x.strides().size(); ++k) {
    if (k > 0) strides.push_back(',');
    strides.append(std::to_string(x.strides()[k]));
  }
  throw_invalid("tensor_traits<xtensor>", "strides", "must describe contiguous memory (row- or column-major)",
                "{" + strides + "}");
}

template <class X>
struct xtensor_traits_base {
  using value_type = std::remove_const_t<typename X::value_type>;
  static std::span<value_type> elements(X& x) {
    check_contiguous_xtensor(x);
    return {x.data(), x.size()};
  }
  static std::span<const value_type> elements(const X& x) {
    check_contiguous_xtensor(x);
    return {x.data(), x.size()};
  }
};

}  // namespace detail

/// xt::xarray (dynamic rank).
template <class EC, xt::layout_type L, class SC, class Tag>
  requires TensorElement<typename EC::value_type>
struct tensor_traits<xt::xarray_container<EC, L, SC, Tag>>
    : detail::xtensor_traits_base<xt::xarray_container<EC, L, SC, Tag>> {};

/// xt::xtensor (static rank).
template <class EC, std::size_t N, xt::layout_type L, class Tag>
  requires TensorElement<typename EC::value_type>
struct tensor_traits<xt::xtensor_container<EC, N, L, Tag>>
    : detail::xtensor_traits_base<xt::xtensor_container<EC, N, L, Tag>> {};

/// xt::adapt(...) with a dynamic shape.
template <class EC, xt::layout_type L, class SC, class Tag>
  requires TensorElement<std::remove_const_t<typename std::remove_reference_t<EC>::value_type>>
struct tensor_traits<xt::xarray_adaptor<EC, L, SC, Tag>>
    : detail::xtensor_traits_base<xt::xarray_adaptor<EC, L, SC, Tag>> {};

/// xt::adapt(...) with a static rank.
template <class EC, std::size_t N, xt::layout_type L, class Tag>
  requires TensorElement<std::remove_const_t<typename std::remove_reference_t<EC>::value_type>>
struct tensor_traits<xt::xtensor_adaptor<EC, N, L, Tag>>
    : detail::xtensor_traits_base<xt::xtensor_adaptor<EC, N, L, Tag>> {};

}  // namespace skipstep
