// Invalid inputs (issue 7's table), the rows test_errors.cpp and test_backends.cpp do not cover: non-contiguous and
// offset xtensor / Eigen views, zero-size Eigen and xtensor tensors, predictors returning ±Inf or a NaN sample under
// check_finite, user sigma policies returning NaN / Inf in either field, and what happens without check_finite where
// a float tensor cannot hold a step's coefficient. The last four test cases reproduce library bugs the fuzzer
// (tests/fuzz) found — silent NaNs from legal inputs, and contiguous xtensor strides rejected — now fixed.
#include <catch2/catch.hpp>

#include "check_error.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "skipstep/backend/eigen.hpp"
#include "skipstep/backend/xtensor.hpp"
#include "skipstep/skipstep.hpp"

using namespace skipstep;
using Catch::Matchers::Contains;

using skipstep_test::inf_v;
using skipstep_test::nan_v;

namespace {

ddim_sampler small_sampler(sampler_options opt = {}) {
  return ddim_sampler(noise_schedule<>::linear(1000), timestep_schedule::leading(1000, 10), eta{0.0}, opt);
}

template <class T>
bool all_finite(const std::vector<T>& v) {
  for (T e : v)
    if (!std::isfinite(e)) return false;
  return true;
}

}  // namespace

TEST_CASE("xtensor adaptors with non-contiguous strides are rejected when their elements are requested",
          "[errors][backend]") {
  std::vector<double> buffer(12, 0.25);
  // A 2x3 view of every other element: dynamic layout, strides (6, 2).
  auto strided = xt::adapt(buffer.data(), 6, xt::no_ownership(), std::vector<std::size_t>{2, 3},
                           std::vector<std::ptrdiff_t>{6, 2});
  static_assert(Tensor<decltype(strided)>);
  CHECK_ERROR(elements(strided), std::invalid_argument, "tensor_traits<xtensor>", "strides", "(got {6,2})");
  const ddim_sampler s = small_sampler();
  auto model = [](const decltype(strided)& x, std::int64_t) { return std::vector<double>(x.size(), 0.1); };
  CHECK_THROWS_AS(s.sample(model, strided), std::invalid_argument);
  // Adaptors without explicit strides are row-major and accepted.
  auto plain = xt::adapt(buffer.data(), 6, xt::no_ownership(), std::vector<std::size_t>{2, 3});
  CHECK(elements(plain).size() == 6);
}

TEST_CASE("views at an offset (not 16/32-byte aligned) are legal and give the same bits", "[errors][backend]") {
  // "Misaligned" here means element-aligned but not SIMD-aligned: Eigen::Map defaults to Unaligned, xt::adapt and
  // std::span carry no alignment promise, and the kernels use unaligned loads. Views must work and match a vector.
  std::vector<double> storage(1 + 24);
  for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = std::sin(0.3 * static_cast<double>(i));
  std::vector<double> reference(storage.begin() + 1, storage.end());
  const auto schedule = noise_schedule<>::linear(1000);
  const ddim_sampler s(schedule, timestep_schedule::leading(1000, 10), eta{0.5});
  auto model_vec = [](const std::vector<double>& x, std::int64_t) {
    std::vector<double> o(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) o[i] = std::tanh(x[i]);
    return o;
  };
  s.sample(model_vec, reference, philox_normal(3));
  Eigen::Map<Eigen::VectorXd> map(storage.data() + 1, 24);
  REQUIRE(reinterpret_cast<std::uintptr_t>(map.data()) % 16 != 0);
  auto model_map = [](const Eigen::Map<Eigen::VectorXd>& x, std::int64_t) -> Eigen::VectorXd {
    return x.array().tanh().matrix();
  };
  s.sample(model_map, map, philox_normal(3));
  for (std::size_t i = 0; i < reference.size(); ++i) REQUIRE(storage[i + 1] == reference[i]);
}

TEST_CASE("zero-size Eigen and xtensor tensors", "[errors][backend]") {
  const ddim_sampler s = small_sampler();
  Eigen::VectorXf empty_eigen(0);
  auto eigen_model = [](const Eigen::VectorXf& x, std::int64_t) -> Eigen::VectorXf { return x; };
  CHECK_ERROR(s.sample(eigen_model, empty_eigen), std::invalid_argument, "sampler::sample", "x.size()", "(got 0)");
  Eigen::MatrixXd empty_matrix(3, 0);
  auto matrix_model = [](const Eigen::MatrixXd& x, std::int64_t) -> Eigen::MatrixXd { return x; };
  CHECK_ERROR(s.sample(matrix_model, empty_matrix), std::invalid_argument, "sampler::sample", "x.size()", "(got 0)");
  xt::xarray<double> empty_xt = xt::xarray<double>::from_shape({4, 0});
  auto xt_model = [](const xt::xarray<double>& x, std::int64_t) { return xt::xarray<double>(x); };
  CHECK_ERROR(s.sample(xt_model, empty_xt), std::invalid_argument, "sampler::sample", "x.size()", "(got 0)");
}

TEST_CASE("check_finite: a predictor returning +Inf or -Inf, and a NaN in the starting sample", "[errors]") {
  sampler_options opt;
  opt.check_finite = true;
  const ddim_sampler s = small_sampler(opt);  // leading N = 10: t = 900, 800, ..., 0
  auto poisoned = [](double bad, std::int64_t at) {
    return [bad, at](const std::vector<double>& x, std::int64_t t) {
      std::vector<double> o(x.size(), 0.1);
      if (t == at) o[2] = bad;
      return o;
    };
  };
  std::vector<double> x(5, 0.3);
  CHECK_ERROR(s.sample(poisoned(inf_v, 700), x), std::domain_error, "sampler::sample",
              "model output at step 2 (t = 700), element 2", "(got inf)");
  x.assign(5, 0.3);
  CHECK_ERROR(s.sample(poisoned(-inf_v, 0), x), std::domain_error, "sampler::sample",
              "model output at step 9 (t = 0), element 2", "(got -inf)");
  // Float tensors: the same check, the value printed as float.
  std::vector<float> xf(5, 0.3f);
  auto poisoned_f = [](const std::vector<float>& in, std::int64_t t) {
    std::vector<float> o(in.size(), 0.1f);
    if (t == 400) o[4] = std::numeric_limits<float>::infinity();
    return o;
  };
  CHECK_ERROR(s.sample(poisoned_f, xf), std::domain_error, "sampler::sample",
              "model output at step 5 (t = 400), element 4", "(got inf)");
  // A NaN already in x_T reaches the sample check after step 0 (the predictor's output is finite here).
  std::vector<double> bad_start(5, 0.3);
  bad_start[1] = nan_v;
  auto finite_model = [](const std::vector<double>& in, std::int64_t) { return std::vector<double>(in.size(), 0.1); };
  CHECK_ERROR(s.sample(finite_model, bad_start), std::domain_error, "sampler::sample",
              "sample at step 0 (t = 900), element 1", "nan");
}

TEST_CASE("a user sigma policy returning NaN or Inf, as a double or in either sigma_choice field", "[errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 10);
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context&) { return nan_v; }), std::domain_error, "sigma policy",
              "ddim_sampler: step 0 (t = 999): sigma policy's sigma", "nan");
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context&) { return inf_v; }), std::domain_error, "sigma policy",
              "sigma", "inf");
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context& c) { return sigma_choice{c.step_index == 3 ? nan_v : 0.0, 0.0}; }),
              std::domain_error, "ddim_sampler: step 3 (t = 666): sigma policy", "sigma", "nan");
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context& c) { return sigma_choice{0.0, c.step_index == 5 ? nan_v : 0.0}; }),
              std::domain_error, "ddim_sampler: step 5 (t = 444): sigma policy", "noise_std", "nan");
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context&) { return sigma_choice{0.0, inf_v}; }), std::domain_error,
              "ddim_sampler: step 0 (t = 999): sigma policy", "noise_std", "inf");
  // sigma_list entries are validated the same way.
  std::vector<double> values(10, 0.0);
  values[6] = nan_v;
  CHECK_ERROR(ddim_sampler(sched, ts, sigma_list{values}), std::domain_error, "ddim_sampler: step 6 (t = 333): sigma policy", "sigma", "nan");
}

TEST_CASE("float tensors where a coefficient overflows float are refused before the first step", "[errors][numerics]") {
  // Legal in double: ā_{T−1} = 1e-301 (43 betas of 1 − 1e-7). Epsilon prediction's x̂0 = (x − √(1−ā)·ε)/√ā has the
  // coefficient 1/√ā ≈ 3e150, which a float tensor cannot hold: sample() refuses the run (it used to return a
  // silent non-finite sample unless check_finite was on). Double tensors are fine here.
  const auto sched = noise_schedule<>::from_betas(std::vector<double>(43, 0.9999999));
  REQUIRE(sched.alpha_cumprod(42) < 1e-300);
  const auto ts = timestep_schedule::trailing(43, 3);
  auto model = [](const std::vector<float>& in, std::int64_t) { return std::vector<float>(in.size(), 0.3f); };
  std::vector<float> x(4, 0.5f);
  CHECK_ERROR(ddim_sampler(sched, ts).sample(model, x), std::domain_error, "ddim_sampler::sample",
              "a coefficient of step 0 (t = 42)", "overflows the tensor's element type");
  CHECK(x == std::vector<float>(4, 0.5f));
  // A noise std finite in double but not in float (a user policy's 1e39) is refused the same way.
  const ddim_sampler noisy(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 4),
                           [](const step_context&) { return sigma_choice{0.0, 1e39}; });
  CHECK_ERROR(noisy.sample(model, x, philox_normal(1)), std::domain_error, "ddim_sampler::sample", "coefficient",
              "1e+39");
  auto model_d = [](const std::vector<double>& in, std::int64_t) { return std::vector<double>(in.size(), 0.3); };
  std::vector<double> z(4, 0.5);
  ddim_sampler(sched, ts).sample(model_d, z);
  CHECK(all_finite(z));
}

// --- library bugs found by the fuzzer: each is a legal input that returns NaN silently ---------------------------

TEST_CASE("noise_schedule<float> keeps its invariants after narrowing the double tables", "[errors]") {
  // ā_t = 1e-7^(t+1) in double: legal (every β < 1, ā > 0). As float, ā_6 = 1e-49 and ā_7 = 1e-56 underflow to 0
  // (invariant: only ā_{T−1} may be 0), and a DDPM step between the two zero levels computes 0/0: NaN coefficients.
  // Expected: std::invalid_argument naming the first entry that underflows (or a table that keeps ā > 0).
  const std::vector<double> betas(8, 0.9999999);
  REQUIRE_NOTHROW(noise_schedule<double>::from_betas(betas));
  CHECK_THROWS_AS(noise_schedule<float>::from_betas(betas), std::invalid_argument);
  CHECK_THROWS_WITH(noise_schedule<float>::from_betas(betas),
                    Contains("noise_schedule::from_betas") && Contains("[6]"));
  // β = 1e-50 is legal in double and 0 as float: betas() must stay in (0, 1].
  CHECK_THROWS_AS(noise_schedule<float>::from_betas(std::vector<double>{1e-50, 0.5}), std::invalid_argument);
}

TEST_CASE("a DDPM step between two levels with abar = 0 is finite or rejected", "[errors]") {
  // T = 1 with β_0 = 1 (legal: ā_{T−1} = 0 is zero terminal SNR) and final_alpha::alpha_cumprod_0: the only step goes
  // from ā = 0 to ā_0 = 0. ddpm_posterior_at computes ā_t/ā_prev = 0/0: every coefficient is NaN, no error.
  // Expected: an identity step (x0_coeff 0, sample_coeff 1) or a std::invalid_argument / std::domain_error.
  const auto sched = noise_schedule<>::from_betas(std::vector<double>{1.0});
  const auto ts = timestep_schedule::custom(1, std::vector<std::int64_t>{0}).with_final_alpha(final_alpha::alpha_cumprod_0);
  sampler_options opt;
  opt.prediction = prediction_type::v;
  bool threw = false;
  try {
    const ddpm_sampler s(sched, ts, variance_type::fixed_small, opt);
    const affine_step& c = s.coefficients().at(0);
    CHECK(std::isfinite(c.x0_weight));
    CHECK(std::isfinite(c.sample_weight));
    CHECK(std::isfinite(c.noise_std));
    std::vector<double> x(4, 0.5);
    auto model = [](const std::vector<double>& in, std::int64_t) { return std::vector<double>(in.size(), 0.1); };
    s.sample(model, x, philox_normal(1));
    CHECK(all_finite(x));
  } catch (const std::invalid_argument&) {
    threw = true;
  } catch (const std::domain_error&) {
    threw = true;
  }
  INFO("threw a documented error: " << threw);
  SUCCEED();
}

TEST_CASE("dynamic thresholding with a max value below the tensor type's range stays finite", "[errors]") {
  // dynamic_threshold(ratio, max_value) accepts any finite max_value > 0. With float tensors and max_value = 1e-300
  // the threshold s = clamp(q, 1, max_value) = 1e-300 is cast to float: 0, and clamp(x̂0, −0, 0)/0 = NaN. By the
  // definition x̂0 ← clamp(x̂0, −s, s)/s, every processed value is in [−1, 1]: the result must be finite.
  sampler_options opt;
  opt.processing = x0_processing::dynamic_threshold(0.9, 1e-300);
  const ddim_sampler s(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 5), eta{0.0}, opt);
  auto model = [](const std::vector<float>& in, std::int64_t) { return std::vector<float>(in.size(), 0.1f); };
  std::vector<float> x(8, 0.5f);
  s.sample(model, x);
  CHECK(all_finite(x));
  // Double tensors hold 1e-300: finite there.
  auto model_d = [](const std::vector<double>& in, std::int64_t) { return std::vector<double>(in.size(), 0.1); };
  std::vector<double> y(8, 0.5);
  s.sample(model_d, y);
  CHECK(all_finite(y));
}

TEST_CASE("an xtensor adaptor with explicit but contiguous strides is accepted", "[errors][backend]") {
  // xt::adapt(ptr, n, no_ownership(), shape, strides) has layout_type::dynamic whatever the strides, so
  // check_contiguous_xtensor rejects strides (3, 1) over a 2x3 shape although they describe row-major memory, and
  // its message prints the layout as a number: "layout must be row_major or column_major (contiguous) (got 0)".
  // Expected: contiguous strides accepted (compare x.strides() with the row-/column-major strides of x.shape()).
  std::vector<double> buffer(6, 0.25);
  auto contiguous = xt::adapt(buffer.data(), 6, xt::no_ownership(), std::vector<std::size_t>{2, 3},
                              std::vector<std::ptrdiff_t>{3, 1});
  CHECK_NOTHROW(elements(contiguous));
}
