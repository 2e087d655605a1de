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

#if __has_include(<xtensor/views/xview.hpp>)
#include <xtensor/views/xstrided_view.hpp>
#include <xtensor/views/xview.hpp>
#else
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xview.hpp>
#endif

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

// --- strided views (reliability issue: backend contiguity) -------------------------------------------------
// Every view is either accepted and exactly right (the sampler writes the caller's cells and nothing else) or
// rejected with an exception naming the trait and the strides. A view whose inner dimension has extent 1 (a
// row of a column-major matrix, a column of a row-major one) is the case a check on the inner stride alone
// gets wrong.
namespace {

/// A predictor written once for every view type: reads the sample through its tensor trait.
struct view_model {
  template <class X>
  void operator()(const X& x, std::int64_t t, std::span<float> out) const {
    const auto in = elements(x);
    for (std::size_t i = 0; i < in.size(); ++i)
      out[i] = 0.6f * std::tanh(in[i]) + 1e-4f * static_cast<float>(t);
  }
};

ddim_sampler view_sampler() {
  return ddim_sampler(noise_schedule<>::scaled_linear(1000), timestep_schedule::trailing(1000, 8), eta{0.8});
}

/// The sampler's result on a plain std::vector holding `start`.
std::vector<float> plain_result(std::vector<float> start) {
  view_sampler().sample(view_model{}, start, philox_normal(11));
  return start;
}

/// A column-major 5x4 matrix with distinct cells (its neighbours of any view are checked to stay untouched).
Eigen::MatrixXf distinct_col_major() {
  Eigen::MatrixXf m(5, 4);
  for (Eigen::Index j = 0; j < m.cols(); ++j)
    for (Eigen::Index i = 0; i < m.rows(); ++i)
      m(i, j) = std::sin(0.7f * static_cast<float>(i + 5 * j) + 0.2f);
  return m;
}

using row_major_xf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Samples into `view` and checks: the cells `view` covers equal the plain-vector result bit for bit, every
/// other cell of `m` is unchanged.
template <class View, class Matrix, class Covered>
void check_sampled_exactly(View& view, Matrix& m, Covered covered) {
  const Matrix before = m;
  // elements() is in the view's storage order: check it is the view's cells, then start the plain vector from
  // it.
  const auto e = elements(std::as_const(view));
  REQUIRE(static_cast<Eigen::Index>(e.size()) == view.size());
  for (Eigen::Index k = 0; k < view.size(); ++k) {
    const Eigen::Index inner = k % view.innerSize(), outer = k / view.innerSize();
    REQUIRE(e[static_cast<std::size_t>(k)] == (View::IsRowMajor ? view(outer, inner) : view(inner, outer)));
  }
  const std::vector<float> start(e.begin(), e.end());
  const auto expected = plain_result(start);
  view_sampler().sample(view_model{}, view, philox_normal(11));
  const auto after = elements(std::as_const(view));
  for (std::size_t i = 0; i < expected.size(); ++i)
    REQUIRE(after[i] == expected[i]);
  for (Eigen::Index j = 0; j < m.cols(); ++j)
    for (Eigen::Index i = 0; i < m.rows(); ++i)
      if (!covered(i, j))
        REQUIRE(m(i, j) == before(i, j));
}

/// Samples into a view that must be rejected: it throws invalid_argument naming `trait` and strides, and the
/// matrix is untouched.
template <class View, class Matrix>
void check_rejected(View& view, const Matrix& m, const char* trait) {
  const Matrix before = m;
  REQUIRE_THROWS_AS(elements(view), std::invalid_argument);
  REQUIRE_THROWS_WITH(elements(view), Catch::Contains(trait) && Catch::Contains("strides"));
  REQUIRE_THROWS_AS(view_sampler().sample(view_model{}, view, philox_normal(11)), std::invalid_argument);
  REQUIRE(m == before);
}

}  // namespace

TEST_CASE("Eigen::Map with an outer stride whose inner dimension is 1 is rejected, not written around",
          "[backend][errors][strides]") {
  SECTION("a row of a column-major matrix: Map<MatrixXf, 0, OuterStride<>> 1x4, outer stride 5") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> row(m.data() + 2, 1, 4, Eigen::OuterStride<>(5));
    check_rejected(row, m, "tensor_traits<Eigen::Map>");
    REQUIRE_THROWS_WITH(elements(row),
                        Catch::Contains("1x4") && Catch::Contains("(got row stride 1, column stride 5)"));
  }
  SECTION("a column of a row-major matrix: Map<RowMajor, 0, OuterStride<>> 5x1, outer stride 4") {
    row_major_xf m = distinct_col_major();
    Eigen::Map<row_major_xf, 0, Eigen::OuterStride<>> col(m.data() + 1, 5, 1, Eigen::OuterStride<>(4));
    check_rejected(col, m, "tensor_traits<Eigen::Map>");
  }
  SECTION("a 2x4 block of a column-major matrix (outer stride 5)") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> block(m.data(), 2, 4, Eigen::OuterStride<>(5));
    check_rejected(block, m, "tensor_traits<Eigen::Map>");
  }
  SECTION("InnerStride maps: a column vector and a row vector of every other element") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Map<Eigen::VectorXf, 0, Eigen::InnerStride<>> col(m.data(), 10, Eigen::InnerStride<>(2));
    check_rejected(col, m, "tensor_traits<Eigen::Map>");
    Eigen::Map<Eigen::RowVectorXf, 0, Eigen::InnerStride<>> row(m.data() + 1, 4, Eigen::InnerStride<>(5));
    check_rejected(row, m, "tensor_traits<Eigen::Map>");
  }
}

TEST_CASE("Eigen::Map views that are dense in their storage order are accepted and exact",
          "[backend][strides]") {
  SECTION(
      "a column of a column-major matrix with the matrix's outer stride (extent-1 dimension, any stride)") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> col(m.data() + 5, 5, 1, Eigen::OuterStride<>(5));
    check_sampled_exactly(col, m, [](Eigen::Index, Eigen::Index j) { return j == 1; });
  }
  SECTION("a row of a row-major matrix with the matrix's outer stride") {
    row_major_xf m = distinct_col_major();
    Eigen::Map<row_major_xf, 0, Eigen::OuterStride<>> row(m.data() + 8, 1, 4, Eigen::OuterStride<>(4));
    check_sampled_exactly(row, m, [](Eigen::Index i, Eigen::Index) { return i == 2; });
  }
  SECTION("a row-vector Map over a row of a row-major matrix, with an InnerStride of 1") {
    row_major_xf m = distinct_col_major();
    Eigen::Map<Eigen::RowVectorXf, 0, Eigen::InnerStride<>> row(m.data() + 4, 4, Eigen::InnerStride<>(1));
    check_sampled_exactly(row, m, [](Eigen::Index i, Eigen::Index) { return i == 1; });
  }
  SECTION("whole columns 1..2 of a column-major matrix (outer stride = rows)") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> cols12(m.data() + 5, 5, 2, Eigen::OuterStride<>(5));
    check_sampled_exactly(cols12, m, [](Eigen::Index, Eigen::Index j) { return j == 1 || j == 2; });
  }
}

TEST_CASE(
    "xtensor: strided adaptors whose inner dimension is 1 are rejected, dense ones accepted and exact; views "
    "are "
    "not tensors",
    "[backend][errors][strides]") {
  std::vector<float> buffer(20);
  for (std::size_t i = 0; i < buffer.size(); ++i)
    buffer[i] = std::sin(0.7f * static_cast<float>(i) + 0.2f);
  const auto before = buffer;
  // buffer as a column-major 5x4 matrix: row 2 is {2, 7, 12, 17}: shape {1, 4}, strides {1, 5}.
  auto row = xt::adapt(buffer.data() + 2, 4, xt::no_ownership(), std::vector<std::size_t>{1, 4},
                       std::vector<std::ptrdiff_t>{1, 5});
  REQUIRE_THROWS_WITH(elements(row), Catch::Contains("tensor_traits<xtensor>") && Catch::Contains("strides"));
  REQUIRE_THROWS_AS(view_sampler().sample(view_model{}, row, philox_normal(11)), std::invalid_argument);
  // buffer as a row-major 5x4 matrix: column 1 is {1, 5, 9, 13, 17}: shape {5, 1}, strides {4, 1}.
  auto col = xt::adapt(buffer.data() + 1, 5, xt::no_ownership(), std::vector<std::size_t>{5, 1},
                       std::vector<std::ptrdiff_t>{4, 1});
  REQUIRE_THROWS_AS(elements(col), std::invalid_argument);
  REQUIRE_THROWS_AS(view_sampler().sample(view_model{}, col, philox_normal(11)), std::invalid_argument);
  REQUIRE(buffer == before);
  // A row of the row-major matrix: shape {1, 4}, any stride on the extent-1 dimension.
  auto dense_row = xt::adapt(buffer.data() + 8, 4, xt::no_ownership(), std::vector<std::size_t>{1, 4},
                             std::vector<std::ptrdiff_t>{99, 1});
  const auto expected = plain_result(std::vector<float>(buffer.begin() + 8, buffer.begin() + 12));
  view_sampler().sample(view_model{}, dense_row, philox_normal(11));
  for (std::size_t i = 0; i < buffer.size(); ++i)
    REQUIRE(buffer[i] == (i >= 8 && i < 12 ? expected[i - 8] : before[i]));
  // xt::view / xt::strided_view are expressions, not tensors: they do not satisfy the concept at all.
  auto matrix = xt::adapt(buffer, std::vector<std::size_t>{5, 4});
  static_assert(!ReadableTensor<decltype(xt::view(matrix, 1, xt::all()))>);
  static_assert(!ReadableTensor<decltype(xt::strided_view(matrix, {xt::all(), 1}))>);
}

TEST_CASE("Eigen::TensorMap over part of a buffer is accepted and exact; a tensor slice is not a tensor",
          "[backend][strides]") {
  std::vector<float> buffer(24);
  for (std::size_t i = 0; i < buffer.size(); ++i)
    buffer[i] = std::cos(0.3f * static_cast<float>(i));
  const auto before = buffer;
  Eigen::TensorMap<Eigen::Tensor<float, 2>> map(buffer.data() + 6, 3, 4);
  const auto expected = plain_result(std::vector<float>(buffer.begin() + 6, buffer.begin() + 18));
  view_sampler().sample(view_model{}, map, philox_normal(11));
  for (std::size_t i = 0; i < buffer.size(); ++i)
    REQUIRE(buffer[i] == (i >= 6 && i < 18 ? expected[i - 6] : before[i]));
  const Eigen::array<Eigen::Index, 2> offsets{1, 1}, extents{2, 2};
  static_assert(!ReadableTensor<decltype(map.slice(offsets, extents))>);
}

// --- Eigen::Ref (reliability issue: API gap) ---------------------------------------------------------------
// Ref is how Eigen code passes writable blocks; sampling into one must update the referenced matrix in place.
namespace {

/// A function an Eigen user writes: takes a Ref and samples into it.
void denoise_in_place(Eigen::Ref<Eigen::VectorXf> x) {
  view_sampler().sample(view_model{}, x, philox_normal(11));
}

}  // namespace

TEST_CASE("Eigen::Ref: sampling into a Ref of a column block updates the matrix in place, bit for bit",
          "[backend][ref]") {
  static_assert(Tensor<Eigen::Ref<Eigen::VectorXf>> && Tensor<Eigen::Ref<Eigen::MatrixXf>> &&
                Tensor<Eigen::Ref<Eigen::ArrayXf>> && Tensor<Eigen::Ref<Eigen::ArrayXXf>>);
  static_assert(ReadableTensor<Eigen::Ref<const Eigen::VectorXf>> &&
                !Tensor<Eigen::Ref<const Eigen::VectorXf>>);
  SECTION("Ref<VectorXf> of m.col(2), through a function taking a Ref") {
    Eigen::MatrixXf m = distinct_col_major();
    const Eigen::MatrixXf before = m;
    const Eigen::VectorXf column = m.col(2);
    const auto expected = plain_result(std::vector<float>(column.data(), column.data() + column.size()));
    denoise_in_place(m.col(2));
    for (Eigen::Index i = 0; i < m.rows(); ++i)
      REQUIRE(m(i, 2) == expected[static_cast<std::size_t>(i)]);
    REQUIRE(m.leftCols(2) == before.leftCols(2));
    REQUIRE(m.rightCols(1) == before.rightCols(1));
  }
  SECTION("Ref<MatrixXf> of whole columns, Ref<ArrayXf> of an array column") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Ref<Eigen::MatrixXf> cols12 = m.middleCols(1, 2);
    check_sampled_exactly(cols12, m, [](Eigen::Index, Eigen::Index j) { return j == 1 || j == 2; });
    Eigen::ArrayXXf a = distinct_col_major().array();
    Eigen::Ref<Eigen::ArrayXf> col3 = a.col(3);
    check_sampled_exactly(col3, a, [](Eigen::Index, Eigen::Index j) { return j == 3; });
  }
  SECTION("Ref<RowVectorXf> of a row of a row-major matrix") {
    row_major_xf m = distinct_col_major();
    Eigen::Ref<Eigen::RowVectorXf> row = m.row(3);
    check_sampled_exactly(row, m, [](Eigen::Index i, Eigen::Index) { return i == 3; });
  }
  SECTION("const Ref as an input: a returning predictor's output read through Ref<const VectorXf>") {
    Eigen::VectorXf x = distinct_col_major().col(0), y = x;
    Eigen::VectorXf buffer(x.size());
    auto through_ref = [&](const Eigen::VectorXf& in, std::int64_t t) {
      view_model{}(in, t, std::span<float>(buffer.data(), static_cast<std::size_t>(buffer.size())));
      return Eigen::Ref<const Eigen::VectorXf>(buffer);
    };
    static_assert(ReadableTensor<decltype(through_ref(x, 0))>);
    view_sampler().sample(through_ref, x, philox_normal(11));
    view_sampler().sample(view_model{}, y, philox_normal(11));
    REQUIRE(x == y);
  }
}

TEST_CASE("Eigen::Ref bound to a block that is not dense is rejected, and the matrix is untouched",
          "[backend][ref][errors][strides]") {
  SECTION("Ref<MatrixXf> of a 1x3 piece of a row of a column-major matrix (inner stride 1, outer stride 5)") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Ref<Eigen::MatrixXf> piece = m.block(1, 0, 1, 3);
    check_rejected(piece, m, "tensor_traits<Eigen::Ref>");
    REQUIRE_THROWS_WITH(elements(piece), Catch::Contains("1x3") && Catch::Contains("column stride 5"));
  }
  SECTION("Ref<MatrixXf> of a 2x3 block") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Ref<Eigen::MatrixXf> block = m.block(1, 1, 2, 3);
    check_rejected(block, m, "tensor_traits<Eigen::Ref>");
  }
  SECTION("Ref<VectorXf, 0, InnerStride<>> of a row of a column-major matrix") {
    Eigen::MatrixXf m = distinct_col_major();
    Eigen::Ref<Eigen::VectorXf, 0, Eigen::InnerStride<>> row = m.row(2).transpose();
    check_rejected(row, m, "tensor_traits<Eigen::Ref>");
  }
}
