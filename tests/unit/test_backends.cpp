// Every backend reaches the same kernel: the same sampler runs on std::vector, std::span, Eigen (Vector, Array,
// Matrix, Map), xtensor (xarray, xtensor, adapt) and a user's own buffer type give bit-identical results.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "skipstep/backend/eigen.hpp"
#include "skipstep/backend/eigen_tensor.hpp"
#include "skipstep/backend/xtensor.hpp"
#include "skipstep/skipstep.hpp"

using namespace skipstep;

namespace user {
/// A user's own buffer type: owns memory, knows nothing of skipstep.
struct buffer {
  std::unique_ptr<double[]> data;
  std::size_t size = 0;
  explicit buffer(std::size_t n) : data(new double[n]()), size(n) {}
  buffer(const buffer& o) : data(new double[o.size]), size(o.size) { std::copy_n(o.data.get(), size, data.get()); }
};
}  // namespace user

/// The one specialization a user writes.
template <>
struct skipstep::tensor_traits<user::buffer> {
  using value_type = double;
  static std::span<double> elements(user::buffer& b) noexcept { return {b.data.get(), b.size}; }
  static std::span<const double> elements(const user::buffer& b) noexcept { return {b.data.get(), b.size}; }
};

namespace {

constexpr std::size_t rows = 4, cols = 6, count = rows * cols;

template <class X>
X make();
template <>
std::vector<double> make() { return std::vector<double>(count); }
template <>
Eigen::VectorXd make() { return Eigen::VectorXd(count); }
template <>
Eigen::ArrayXXd make() { return Eigen::ArrayXXd(rows, cols); }
template <>
Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> make() {
  return Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>(rows, cols);
}
template <>
xt::xarray<double> make() { return xt::xarray<double>::from_shape({rows, cols}); }
template <>
xt::xtensor<double, 2> make() { return xt::xtensor<double, 2>::from_shape({rows, cols}); }
template <>
user::buffer make() { return user::buffer(count); }
template <>
Eigen::Tensor<double, 3> make() { return Eigen::Tensor<double, 3>(2, 3, 4); }
template <>
Eigen::Tensor<double, 2, Eigen::RowMajor> make() { return Eigen::Tensor<double, 2, Eigen::RowMajor>(4, 6); }

/// The initial sample and a nonlinear predictor, written once for all backends through the tensor trait.
template <class X>
X initial() {
  X x = make<X>();
  auto e = elements(x);
  for (std::size_t i = 0; i < e.size(); ++i) e[i] = std::sin(1.7 * static_cast<double>(i) + 0.3) * 1.5;
  return x;
}

template <class X>
void model(const X& x, std::int64_t t, std::span<double> o) {
  const auto in = elements(x);
  for (std::size_t i = 0; i < in.size(); ++i) o[i] = 0.6 * std::tanh(in[i]) + 0.3 * std::sin(in[i] + 0.002 * t);
}

template <class X>
std::vector<double> run_all(X x) {
  const auto schedule = noise_schedule<>::scaled_linear(1000);
  const auto ts = timestep_schedule::trailing(1000, 12);
  sampler_options opt;
  opt.num_samples = 2;
  opt.processing = x0_processing::dynamic_threshold(0.9, 1.5);
  const philox_normal rng(42);
  auto predictor = [](const X& in, std::int64_t t, std::span<double> out) { model(in, t, out); };
  std::vector<double> out;
  ddim_sampler(schedule, ts, eta{0.7}, opt).sample(predictor, x, rng);
  const auto a = elements(std::as_const(x));
  out.insert(out.end(), a.begin(), a.end());
  opt.processing = x0_processing::clip(2.0);
  ddpm_sampler(schedule, ts, variance_type::fixed_large, opt).sample(predictor, x, rng);
  const auto b = elements(std::as_const(x));
  out.insert(out.end(), b.begin(), b.end());
  opt.processing = x0_processing::none();
  ddim_inverse_sampler(schedule, ts, opt).sample(predictor, x);
  const auto c = elements(std::as_const(x));
  out.insert(out.end(), c.begin(), c.end());
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("every backend gives bit-identical sampler results", "[backend]", std::vector<double>,
                   Eigen::VectorXd, Eigen::ArrayXXd,
                   (Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>), xt::xarray<double>,
                   (xt::xtensor<double, 2>), user::buffer, (Eigen::Tensor<double, 3>),
                   (Eigen::Tensor<double, 2, Eigen::RowMajor>)) {
  static_assert(Tensor<TestType>);
  const auto reference = run_all(initial<std::vector<double>>());
  const auto ours = run_all(initial<TestType>());
  REQUIRE(ours.size() == reference.size());
  for (std::size_t i = 0; i < ours.size(); ++i) REQUIRE(ours[i] == reference[i]);
  for (double v : ours) REQUIRE(std::isfinite(v));
}

TEST_CASE("views over existing memory: std::span, Eigen::Map and xt::adapt", "[backend]") {
  const auto reference = run_all(initial<std::vector<double>>());
  std::vector<double> storage = [] {
    auto v = initial<std::vector<double>>();
    return v;
  }();
  SECTION("Eigen::Map") {
    Eigen::Map<Eigen::VectorXd> map(storage.data(), static_cast<Eigen::Index>(storage.size()));
    static_assert(Tensor<decltype(map)>);
    // A Map cannot own a workspace copy: run the steps on a Map through a writing predictor into a Map.
    const auto schedule = noise_schedule<>::scaled_linear(1000);
    const auto ts = timestep_schedule::trailing(1000, 12);
    sampler_options opt;
    opt.num_samples = 2;
    opt.processing = x0_processing::dynamic_threshold(0.9, 1.5);
    std::vector<double> out_storage(storage.size());
    Eigen::Map<Eigen::VectorXd> out(out_storage.data(), static_cast<Eigen::Index>(out_storage.size()));
    auto predictor = [&](const Eigen::Map<Eigen::VectorXd>& in, std::int64_t t) {
      Eigen::VectorXd o(in.size());
      model(in, t, std::span<double>(o.data(), static_cast<std::size_t>(o.size())));
      return o;
    };
    ddim_sampler(schedule, ts, eta{0.7}, opt).sample(predictor, map, philox_normal(42));
    for (std::size_t i = 0; i < count; ++i) REQUIRE(storage[i] == reference[i]);
  }
  SECTION("Eigen::TensorMap") {
    Eigen::TensorMap<Eigen::Tensor<double, 2>> map(storage.data(), 4, 6);
    static_assert(Tensor<decltype(map)>);
    static_assert(ReadableTensor<Eigen::TensorMap<const Eigen::Tensor<double, 2>>> &&
                  !Tensor<Eigen::TensorMap<const Eigen::Tensor<double, 2>>>);
    const auto schedule = noise_schedule<>::scaled_linear(1000);
    sampler_options opt;
    opt.num_samples = 2;
    opt.processing = x0_processing::dynamic_threshold(0.9, 1.5);
    auto predictor = [&](const decltype(map)& in, std::int64_t t, std::span<double> out) { model(in, t, out); };
    ddim_sampler(schedule, timestep_schedule::trailing(1000, 12), eta{0.7}, opt)
        .sample(predictor, map, philox_normal(42));
    for (std::size_t i = 0; i < count; ++i) REQUIRE(storage[i] == reference[i]);
  }
  SECTION("xt::adapt") {
    auto adapted = xt::adapt(storage, std::vector<std::size_t>{rows, cols});
    static_assert(Tensor<decltype(adapted)>);
    const auto schedule = noise_schedule<>::scaled_linear(1000);
    sampler_options opt;
    opt.num_samples = 2;
    opt.processing = x0_processing::dynamic_threshold(0.9, 1.5);
    auto predictor = [&](const decltype(adapted)& in, std::int64_t t) {
      std::vector<double> o(in.size());
      const auto e = elements(in);
      for (std::size_t i = 0; i < e.size(); ++i) o[i] = 0.6 * std::tanh(e[i]) + 0.3 * std::sin(e[i] + 0.002 * t);
      return o;
    };
    ddim_sampler(schedule, timestep_schedule::trailing(1000, 12), eta{0.7}, opt)
        .sample(predictor, adapted, philox_normal(42));
    for (std::size_t i = 0; i < count; ++i) REQUIRE(storage[i] == reference[i]);
  }
  SECTION("std::span") {
    std::span<double> view(storage);
    static_assert(Tensor<decltype(view)>);
    static_assert(ReadableTensor<std::span<const double>> && !Tensor<std::span<const double>>);
    const auto schedule = noise_schedule<>::scaled_linear(1000);
    sampler_options opt;
    opt.num_samples = 2;
    opt.processing = x0_processing::dynamic_threshold(0.9, 1.5);
    auto predictor = [&](const std::span<double>& in, std::int64_t t) {
      std::vector<double> o(in.size());
      for (std::size_t i = 0; i < in.size(); ++i) o[i] = 0.6 * std::tanh(in[i]) + 0.3 * std::sin(in[i] + 0.002 * t);
      return o;
    };
    ddim_sampler(schedule, timestep_schedule::trailing(1000, 12), eta{0.7}, opt)
        .sample(predictor, view, philox_normal(42));
    for (std::size_t i = 0; i < count; ++i) REQUIRE(storage[i] == reference[i]);
  }
}

TEST_CASE("non-contiguous views are rejected with a clear error", "[backend][errors]") {
  Eigen::MatrixXd m = Eigen::MatrixXd::Zero(4, 4);
  Eigen::Map<Eigen::MatrixXd, 0, Eigen::OuterStride<>> strided(m.data(), 2, 4, Eigen::OuterStride<>(4));
  REQUIRE_THROWS_WITH(elements(strided), Catch::Contains("tensor_traits<Eigen::Map>") && Catch::Contains("strides"));
  Eigen::Map<Eigen::VectorXd, 0, Eigen::InnerStride<2>> every_other(m.data(), 8);
  REQUIRE_THROWS_AS(elements(every_other), std::invalid_argument);
}

TEST_CASE("float tensors run the same kernels", "[backend]") {
  const auto schedule = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::leading(1000, 20);
  Eigen::VectorXf xf(64);
  std::vector<double> xd(64);
  for (int i = 0; i < 64; ++i) xd[static_cast<std::size_t>(i)] = xf[i] = static_cast<float>(std::cos(0.37 * i));
  auto pf = [](const Eigen::VectorXf& x, std::int64_t) -> Eigen::VectorXf { return (0.5f * x.array().tanh()).matrix(); };
  auto pd = [](const std::vector<double>& x, std::int64_t) {
    std::vector<double> o(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) o[i] = 0.5 * std::tanh(x[i]);
    return o;
  };
  ddim_sampler s(schedule, ts, eta{1.0});
  s.sample(pf, xf, philox_normal(7));
  s.sample(pd, xd, philox_normal(7));
  for (int i = 0; i < 64; ++i) REQUIRE(std::abs(xf[i] - xd[static_cast<std::size_t>(i)]) <= 1e-4 * (1 + std::abs(xd[static_cast<std::size_t>(i)])));
}
