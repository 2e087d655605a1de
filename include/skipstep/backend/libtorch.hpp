/// @file
/// LibTorch backend (opt-in; the CMake target skipstep::libtorch exists when find_package(Torch) succeeds):
///   - a contiguous CPU float32 `torch::Tensor` is a skipstep tensor (value_type float), and
///     `torch_tensor<float|double>` views a float32 / float64 one with its element type fixed at compile time;
///   - `torch_predictor` turns a TorchScript module (`torch::jit::script::Module`) or any callable
///     `torch::Tensor(const torch::Tensor& x, const torch::Tensor& t)` into a writing predictor `(x, t, out)` over
///     any skipstep tensor: the sampler's x is handed to the module without a copy (torch::from_blob) when its
///     element type is the module's dtype, under `c10::InferenceMode`, with a batch of timesteps (one per sample).
/// Threads are the caller's: this header never calls at::set_num_threads (README, "LibTorch").
/// Including <torch/script.h> costs 20–40 s and ~800 MB per translation unit: keep it in one file of your program.
#pragma once

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/tensor.hpp"

namespace skipstep {

namespace detail {

/// The torch dtype of a skipstep element type (float → kFloat, double → kDouble).
template <TensorElement T>
[[nodiscard]] constexpr c10::ScalarType torch_dtype_of() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return c10::ScalarType::Float;
  else
    return c10::ScalarType::Double;
}

/// "[2, 1, 28, 28]".
[[nodiscard]] inline std::string torch_shape_string(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (std::size_t k = 0; k < sizes.size(); ++k) s += (k ? ", " : "") + std::to_string(sizes[k]);
  return s + "]";
}

/// Checks that `t` can be viewed as contiguous CPU memory of element type T: defined, strided layout, on the CPU,
/// dtype T, and dense (detail::dense_strides, outermost first: the rule of every skipstep backend, so a
/// dimension of extent 1 may have any stride). std::invalid_argument naming `function`, the property and the value.
template <TensorElement T>
void check_torch_view(std::string_view function, const torch::Tensor& t) {
  if (!t.defined())
    throw_invalid(function, "tensor", "must be a defined torch::Tensor", "an undefined tensor");
  if (t.layout() != c10::kStrided)
    throw_invalid(function, "tensor.layout()", "must be torch::kStrided (dense)", c10::toString(t.layout()));
  if (!t.device().is_cpu())
    throw_invalid(function, "tensor.device()", "must be the CPU (move it with .cpu() first)", t.device().str());
  if (t.scalar_type() != torch_dtype_of<T>())
    throw_invalid(function, "tensor.dtype()",
                  std::string("must be ") + c10::toString(torch_dtype_of<T>()) +
                      (std::is_same_v<T, float> ? " (torch.float32; use torch_tensor<double> for float64)"
                                                : " (torch.float64)"),
                  c10::toString(t.scalar_type()));
  if (!dense_strides(t.sizes(), t.strides(), /*innermost_first=*/false))
    throw_invalid(function, "tensor.strides()",
                  "must describe contiguous memory for sizes " + torch_shape_string(t.sizes()) +
                      " (call .contiguous() first; a dimension of extent 1 may have any stride)",
                  torch_shape_string(t.strides()));
}

/// The elements of a checked tensor.
template <TensorElement T>
[[nodiscard]] std::span<T> torch_elements(std::string_view function, const torch::Tensor& t) {
  check_torch_view<T>(function, t);
  return {t.data_ptr<T>(), static_cast<std::size_t>(t.numel())};
}

}  // namespace detail

/// `torch::Tensor` is a float32 skipstep tensor: a defined, dense (contiguous), CPU, torch.float32 tensor views
/// its elements in storage (row-major) order. Anything else throws std::invalid_argument naming
/// tensor_traits<torch::Tensor> and the offending dtype / device / strides. A tensor is a handle: sampling into a
/// copy of the handle updates the same storage.
template <>
struct tensor_traits<torch::Tensor> {
  using value_type = float;  ///< Element type (torch.float32).
  /// The elements, mutable; throws std::invalid_argument unless contiguous CPU float32.
  static std::span<float> elements(torch::Tensor& t) {
    return detail::torch_elements<float>("tensor_traits<torch::Tensor>", t);
  }
  /// The elements, read-only; throws std::invalid_argument unless contiguous CPU float32.
  static std::span<const float> elements(const torch::Tensor& t) {
    return detail::torch_elements<float>("tensor_traits<torch::Tensor>", t);
  }
};

/// A torch::Tensor with its skipstep element type fixed: `torch_tensor<double>{t}` samples a float64 tensor in
/// double, `torch_tensor<float>{t}` is the same as `t`. The dtype must match T (checked when viewed).
template <TensorElement T>
struct torch_tensor {
  torch::Tensor tensor;  ///< The viewed tensor (a handle: its storage is shared, not copied).
};

/// tensor_traits of torch_tensor<T>: the rules of tensor_traits<torch::Tensor> with dtype T.
template <TensorElement T>
struct tensor_traits<torch_tensor<T>> {
  using value_type = T;  ///< Element type.
  /// The elements, mutable; throws std::invalid_argument unless contiguous CPU with dtype T.
  static std::span<T> elements(torch_tensor<T>& t) { return detail::torch_elements<T>("tensor_traits<torch_tensor>", t.tensor); }
  /// The elements, read-only; throws std::invalid_argument unless contiguous CPU with dtype T.
  static std::span<const T> elements(const torch_tensor<T>& t) {
    return detail::torch_elements<T>("tensor_traits<torch_tensor>", t.tensor);
  }
};

/// How `torch_predictor` calls the network.
struct torch_predictor_options {
  /// The dtype the module computes in; a sample of another element type is converted (one copy each way).
  c10::ScalarType model_dtype = c10::ScalarType::Float;
  /// The dtype of the timestep batch: int64 (torch.long, the integer training timestep) or a floating type.
  c10::ScalarType time_dtype = c10::ScalarType::Long;
  /// Scan the module's output for NaN / ±inf before the sampler uses it (one read of the output; throws
  /// std::domain_error naming the element and the timestep).
  bool check_finite = true;
};

namespace detail {

template <class M>
concept torch_tensor_callable = std::invocable<M&, const torch::Tensor&, const torch::Tensor&> &&
                                std::convertible_to<std::invoke_result_t<M&, const torch::Tensor&, const torch::Tensor&>,
                                                    torch::Tensor>;

}  // namespace detail

/// The network as a skipstep writing predictor: `p(x, t, out)` evaluates `module(x viewed as sample_shape,
/// timesteps)` with `timesteps = full([sample_shape[0]], t)` and writes the result into `out`.
///   - Module: `torch::jit::script::Module` (its `forward(x, t)`) or any callable on tensors (a lambda around a
///     `torch::nn::Module`, a module wrapped with timing, ...).
///   - x: any skipstep tensor (std::vector<float>, torch::Tensor, Eigen, ...). When its element type is
///     options.model_dtype, the module receives `torch::from_blob` over the sampler's own memory (no copy); the
///     module must not modify its input in place.
///   - out: the sampler's workspace; the module's output is checked (defined, CPU, floating, shape ==
///     sample_shape, finite) and copied into it (one memcpy: a TorchScript module allocates its own result).
/// Runs under `c10::InferenceMode` (no autograd recording). It never changes torch's thread settings: set them
/// (at::set_num_threads / OMP_NUM_THREADS / OMP_WAIT_POLICY) in your program.
/// Errors: std::invalid_argument naming torch_predictor and the argument (x.size(), module output shape / dtype /
/// device), std::domain_error for a non-finite output element; exceptions from the module (c10::Error) pass through.
template <class Module>
  requires std::same_as<Module, torch::jit::script::Module> || detail::torch_tensor_callable<Module>
class torch_predictor {
 public:
  /// `sample_shape` is the shape the module sees, batch first (e.g. {B, 1, 28, 28}); x must have its product
  /// of elements. Throws std::invalid_argument for an empty shape or a non-positive extent.
  torch_predictor(Module module, std::vector<std::int64_t> sample_shape, torch_predictor_options options = {})
      : module_(std::move(module)), shape_(std::move(sample_shape)), options_(options) {
    constexpr const char* fn = "torch_predictor";
    if (shape_.empty()) detail::throw_invalid(fn, "sample_shape", "must have at least one (batch) dimension", "[]");
    for (std::int64_t e : shape_)
      if (e <= 0)
        detail::throw_invalid(fn, "sample_shape", "must have positive extents",
                              detail::torch_shape_string(shape_));
    if (!c10::isFloatingType(options_.model_dtype))
      detail::throw_invalid(fn, "options.model_dtype", "must be a floating-point dtype",
                            c10::toString(options_.model_dtype));
    if (options_.time_dtype != c10::ScalarType::Long && !c10::isFloatingType(options_.time_dtype))
      detail::throw_invalid(fn, "options.time_dtype", "must be torch.long or a floating-point dtype",
                            c10::toString(options_.time_dtype));
    numel_ = 1;
    for (std::int64_t e : shape_) {
      if (static_cast<std::size_t>(e) > std::numeric_limits<std::size_t>::max() / numel_ ||
          numel_ * static_cast<std::size_t>(e) > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))
        detail::throw_invalid(fn, "sample_shape", "must have a product of extents below 2^63",
                              detail::torch_shape_string(shape_));
      numel_ *= static_cast<std::size_t>(e);
    }
  }

  /// The sampler passes model times as double (fractional on σ grids and flow grids: Euler / Heun / DPM-Solver on
  /// Karras levels, FlowMatchEuler's t = s·T); integer-time samplers pass whole numbers.
  using time_type = double;

  /// m = module(x, t·1): see the class comment. `x` is any readable skipstep tensor with numel(sample_shape)
  /// elements, `out` has as many.
  /// With options.time_dtype = torch.long the time must be a whole number (else std::invalid_argument naming t):
  /// pass a floating time_dtype for networks trained on continuous times.
  template <ReadableTensor X>
  void operator()(const X& x, double t, std::span<tensor_value_t<X>> out) {
    using T = tensor_value_t<X>;
    constexpr const char* fn = "torch_predictor";
    const bool integral_time = options_.time_dtype == c10::ScalarType::Long;
    if (!std::isfinite(t) || (integral_time && (t != std::nearbyint(t) || std::abs(t) >= 0x1p62)))
      detail::throw_invalid(fn, "t",
                            integral_time ? "must be a whole number for options.time_dtype = torch.long (use a "
                                            "floating time_dtype for fractional model times)"
                                          : "must be finite",
                            t);
    const std::span<const T> xs = skipstep::elements(x);
    if (xs.size() != numel_)
      detail::throw_invalid(fn, "x.size()",
                            "must equal the number of elements of sample_shape " +
                                detail::torch_shape_string(shape_) + " = " + std::to_string(numel_),
                            xs.size());
    if (out.size() != numel_)
      detail::throw_invalid(fn, "out.size()", "must equal x.size() = " + std::to_string(numel_), out.size());
    c10::InferenceMode guard;
    // No copy: a tensor over the sampler's memory (read only by contract; from_blob needs a non-const pointer).
    torch::Tensor input = torch::from_blob(const_cast<T*>(xs.data()), shape_,
                                           torch::TensorOptions().dtype(detail::torch_dtype_of<T>()));
    if (input.scalar_type() != options_.model_dtype) input = input.to(options_.model_dtype);
    const c10::Scalar time_value = integral_time ? c10::Scalar(static_cast<std::int64_t>(t)) : c10::Scalar(t);
    const torch::Tensor times = torch::full({shape_[0]}, time_value, torch::TensorOptions().dtype(options_.time_dtype));
    torch::Tensor y = call(input, times);
    if (!y.defined()) detail::throw_invalid(fn, "module output", "must be a defined tensor", "an undefined tensor");
    if (!y.device().is_cpu())
      detail::throw_invalid(fn, "module output device", "must be the CPU", y.device().str());
    if (!c10::isFloatingType(y.scalar_type()))
      detail::throw_invalid(fn, "module output dtype", "must be floating point", c10::toString(y.scalar_type()));
    if (y.sizes() != c10::IntArrayRef(shape_))
      detail::throw_invalid(fn, "module output shape", "must equal the sample's shape " +
                                                           detail::torch_shape_string(shape_),
                            detail::torch_shape_string(y.sizes()));
    if (y.scalar_type() != detail::torch_dtype_of<T>()) y = y.to(detail::torch_dtype_of<T>());
    y = y.contiguous();
    const T* src = y.data_ptr<T>();
    if (src != out.data()) std::copy(src, src + numel_, out.data());
    if (options_.check_finite)
      for (std::size_t j = 0; j < numel_; ++j)
        if (!std::isfinite(out[j]))
          detail::throw_domain(fn, "module output element " + std::to_string(j) + " at t = " + std::to_string(t),
                               "must be finite", out[j]);
  }

  /// The wrapped module or callable.
  [[nodiscard]] Module& module() noexcept { return module_; }
  /// The shape the module sees, batch first.
  [[nodiscard]] const std::vector<std::int64_t>& sample_shape() const noexcept { return shape_; }

 private:
  torch::Tensor call(const torch::Tensor& x, const torch::Tensor& t) {
    if constexpr (std::same_as<Module, torch::jit::script::Module>) {
      c10::IValue r = module_.forward({x, t});
      if (!r.isTensor())
        detail::throw_invalid("torch_predictor", "module output", "must be a tensor", r.tagKind());
      return r.toTensor();
    } else {
      return std::invoke(module_, x, t);
    }
  }

  Module module_;
  std::vector<std::int64_t> shape_;
  torch_predictor_options options_;
  std::size_t numel_ = 0;
};

}  // namespace skipstep
