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

/// Accepted when the strides are those of a dense row-major or column-major array of the shape
/// (detail::dense_strides: extent-1 dimensions may have any stride, xtensor gives them 0). Containers and
/// adaptors with a static layout always are; an adaptor with explicit strides (dynamic layout) is checked
/// like any other, so a view whose inner dimension has extent 1 and whose other stride is not the extent is
/// rejected.
template <class X>
void check_contiguous_xtensor(const X& x) {
  if (dense_strides(x.shape(), x.strides(), /*innermost_first=*/false) ||
      dense_strides(x.shape(), x.strides(), /*innermost_first=*/true))
    return;
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
