// Findings of the misuse program (tests/misuse): one test per bug it found in the headers outside
// sampler.hpp, parallel.hpp and backend/, each failing before its fix. The misuse program runs the same
// inputs in separate processes under the sanitizers; these tests keep the fixed behaviour in the ordinary
// unit suite.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "check_error.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/testing/gaussian_mixture.hpp"
#include "skipstep/testing/sliced_wasserstein.hpp"

using namespace skipstep;
using ivec = std::vector<std::int64_t>;

namespace {
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
}  // namespace

TEST_CASE("indices past a table's end, T beyond int64 and enum values cast from bad ints are named errors",
          "[misuse][errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 10);
  // Was libstdc++'s "vector::_M_range_check: __n (which is 1000) >= this->size() (which is 1000)".
  CHECK_ERROR(sched.alpha_cumprod(1000), std::out_of_range, "skipstep::noise_schedule::alpha_cumprod",
              "t must be < T = 1000", "(got 1000)");
  CHECK_ERROR(sched.snr(size_max), std::out_of_range, "skipstep::noise_schedule::snr", "t",
              "(got 18446744073709551615)");
  CHECK_ERROR(sched.sqrt_alpha_cumprod(2000), std::out_of_range, "noise_schedule::sqrt_alpha_cumprod", "t",
              "(got 2000)");
  CHECK_ERROR(ts[10], std::out_of_range, "skipstep::timestep_schedule::operator[]", "i must be < N = 10",
              "(got 10)");
  // T > INT64_MAX read as a negative limit: every timestep was rejected as "must be in [0, T =
  // 18446744073709551615)".
  CHECK_ERROR(timestep_schedule::custom(size_max, ivec{5, 3}), std::invalid_argument,
              "timestep_schedule::custom", "num_train_timesteps", "(got 18446744073709551615)");
  CHECK_ERROR(timestep_schedule::linspace(size_max, 1), std::invalid_argument, "timestep_schedule::linspace",
              "num_train_timesteps", "(got 18446744073709551615)");
  CHECK_NOTHROW(timestep_schedule::custom(static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()),
                                          ivec{5, 3}));
  // Enum values cast from outside the enum were silently taken as one of the conventions.
  CHECK_ERROR(ts.with_final_alpha(static_cast<final_alpha>(7)), std::invalid_argument,
              "timestep_schedule::with_final_alpha", "f", "(got 7)");
  CHECK_ERROR(ddim_transitions(sched, ts, static_cast<step_convention>(5)), std::invalid_argument,
              "ddim_transitions", "convention", "(got 5)");
  sampler_options bad;
  bad.convention = static_cast<step_convention>(5);
  CHECK_ERROR(ddpm_sampler(sched, ts, variance_type::fixed_small, bad), std::invalid_argument,
              "skipstep::ddpm_sampler:", "convention", "(got 5)");
  CHECK_ERROR(ddim_sampler(sched, ts, eta{0.0}, bad), std::invalid_argument,
              "skipstep::ddim_sampler:", "convention", "(got 5)");
  CHECK_ERROR(ddim_inverse_sampler(sched, ts, bad), std::invalid_argument,
              "skipstep::ddim_inverse_sampler:", "convention", "(got 5)");
}

TEST_CASE("apply_ddpm_learned_step's errors name apply_ddpm_learned_step, not the functions it calls",
          "[misuse][ddpm]") {
  std::vector<double> x(8, 0.5), m(8, 0.1), v(8, 0.0), wrong(9, 0.1), empty;
  const auto call = [&](double a_t, std::span<double> xs, std::span<const double> ms,
                        std::span<const double> vs, const x0_processing& p, std::size_t samples) {
    apply_ddpm_learned_step<double>(prediction_type::epsilon, a_t, 0.7, variance_type::learned, xs, ms, vs, p,
                                    samples, philox_normal(1), 0);
  };
  // Were "skipstep::apply_step: ..." and "skipstep::ddpm_posterior_at: ...".
  CHECK_ERROR(call(0.5, x, wrong, v, x0_processing::none(), 1), std::invalid_argument,
              "skipstep::apply_ddpm_learned_step:", "model.size()", "(got 9)");
  CHECK_ERROR(call(0.5, empty, empty, empty, x0_processing::none(), 1), std::invalid_argument,
              "skipstep::apply_ddpm_learned_step:", "x.size()", "(got 0)");
  CHECK_ERROR(call(0.5, x, m, v, x0_processing::none(), 0), std::invalid_argument,
              "skipstep::apply_ddpm_learned_step:", "num_samples", "(got 0)");
  CHECK_ERROR(call(1.5, x, m, v, x0_processing::none(), 1), std::invalid_argument,
              "skipstep::apply_ddpm_learned_step:", "alpha_cumprod_t", "(got 1.5)");
  x0_processing bad;
  bad.mode = x0_processing::kind::clip;
  bad.clip_range = skipstep_test::nan_v;
  CHECK_ERROR(call(0.5, x, m, v, bad, 1), std::invalid_argument,
              "skipstep::apply_ddpm_learned_step:", "processing.clip_range", "(got nan)");
  CHECK(x == std::vector<double>(8, 0.5));
}

TEST_CASE(
    "gaussian_mixture and wsw reject a row count whose n * dim wraps around, and stds whose square is not "
    "normal",
    "[misuse][gaussian_mixture]") {
  const auto g = testing::gaussian_mixture::ring2d();
  std::vector<double> x(2, 0.5), out(2), ws(g.workspace_size());
  const std::size_t n =
      (std::size_t{1} << 63) + 1;  // n * 2 wraps to 2 = x.size(): the loop ran 2^63 rows past x
  CHECK_ERROR(g.epsilon_batch(x, n, 0.5, out, ws), std::invalid_argument,
              "testing::gaussian_mixture::epsilon_batch", "n (rows)", "(got 9223372036854775809)");
  CHECK_ERROR(g.epsilon_batch(x, n, 0.5, out), std::invalid_argument,
              "testing::gaussian_mixture::epsilon_batch", "n (rows)", "(got 9223372036854775809)");
  std::mt19937_64 gen(1);
  CHECK_ERROR(g.sample(gen, n), std::invalid_argument, "testing::gaussian_mixture::sample", "n (rows)",
              "(got 9223372036854775809)");  // returned 1 row silently
  CHECK_ERROR(testing::whitened_sliced_w2(g, x, n), std::invalid_argument, "testing::whitened_sliced_w2",
              "n (rows)", "(got 9223372036854775809)");
  // s = 1e-200 has s² = 0 and s = 1e200 has s² = inf: ε* was NaN (at a = 1, and everywhere for the large
  // one).
  CHECK_ERROR(testing::gaussian_mixture(1, {0.0}, {1e-200}, {1.0}), std::invalid_argument,
              "testing::gaussian_mixture::gaussian_mixture", "stds[0]", "(got 9.9999999999999998e-201)");
  CHECK_ERROR(testing::gaussian_mixture(1, {0.0}, {1e200}, {1.0}), std::invalid_argument,
              "testing::gaussian_mixture::gaussian_mixture", "stds[0]", "(got 9.9999999999999997e+199)");
  // The smallest accepted stds: ε* at a = 1 is the documented 0, not 0·inf.
  const testing::gaussian_mixture tiny(1, {0.0}, {2e-154}, {1.0});
  std::vector<double> row{10.0}, eps(1), ws1(tiny.workspace_size());
  tiny.epsilon_at_alpha(row, 1.0, eps);
  CHECK(eps[0] == 0.0);
  tiny.epsilon_batch(row, 1, 1.0, eps, ws1);
  CHECK(eps[0] == 0.0);
}

TEST_CASE("the guidance rescale of finite outputs whose squares overflow double is finite",
          "[misuse][guidance]") {
  // ±1e200: finite, but the sum of squares in the standard deviations is inf and inf/inf made every output
  // NaN.
  auto cond = [](const std::vector<double>& v, std::int64_t) {
    std::vector<double> m(v.size());
    for (std::size_t i = 0; i < m.size(); ++i)
      m[i] = (i % 2 ? 1e200 : -1e200) * (1.0 + 0.1 * static_cast<double>(i));
    return m;
  };
  auto uncond = [](const std::vector<double>& v, std::int64_t) { return std::vector<double>(v.size(), 0.0); };
  for (double scale : {1.0, 1.5}) {
    classifier_free_guidance g(cond, uncond, scale, 0.7);
    std::vector<double> x(8), out(8);
    g(x, 1, std::span<double>(out));
    // std(cfg) = scale·std(cond): the rescale factor is 0.7/scale + 0.3, so out = cond·(0.7 + 0.3·scale).
    const auto c = cond(x, 1);
    for (std::size_t i = 0; i < out.size(); ++i)
      CHECK(out[i] == Approx(c[i] * (0.7 + 0.3 * scale)).epsilon(1e-12));
  }
}

TEST_CASE("a step-level call with a given_noise too small for the step throws before it writes x",
          "[misuse][noise]") {
  const affine_step c = ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.1, 0.1});
  const std::vector<double> x_T(600, 0.25), m(600, 0.1), short_noise(599, 0.5), v(600, 0.0);
  std::vector<double> x = x_T;
  // The first blocks were served and written before the block past the end threw: x was half-stepped.
  CHECK_ERROR(apply_step<double>(c, x, m, x0_processing::none(), 1, given_noise<double>{short_noise}, 0),
              std::invalid_argument, "skipstep::apply_step:", "given_noise", "(got 599)");
  CHECK(x == x_T);
  // Two samples of 300 at a stride of 300 need 600 values; sample_size 0 means one sample of all values.
  CHECK_ERROR(apply_step<double>(c, x, m, x0_processing::none(), 2, given_noise<double>{x_T, 0}, 0),
              std::invalid_argument, "skipstep::apply_step:", "given_noise", "(got 600)");
  CHECK(x == x_T);
  CHECK_ERROR(
      apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned, x, m, v,
                                      x0_processing::none(), 2, given_noise<double>{short_noise, 300}, 0),
      std::invalid_argument, "skipstep::apply_ddpm_learned_step:", "given_noise", "(got 599)");
  CHECK(x == x_T);
  // Enough values: the same bits as the values served one block at a time by a plain callable.
  const std::vector<double> z(600, 0.5);
  std::vector<double> y = x_T;
  apply_step<double>(c, x, m, x0_processing::none(), 2, given_noise<double>{z, 300}, 0);
  apply_step<double>(
      c, y, m, x0_processing::none(), 2,
      [](std::span<double> out, noise_position) { std::fill(out.begin(), out.end(), 0.5); }, 0);
  CHECK(x == y);
}

TEST_CASE("given_noise with a huge sample_size rejects the block instead of reading before its values",
          "[misuse][noise]") {
  // sample 1 at a stride of SIZE_MAX: 1·SIZE_MAX + 0 wrapped around to −1, passed the bounds check, and
  // copy_n read values[−1..2] (a heap-buffer-overflow under ASan).
  const std::vector<double> z(8, 0.5);
  const given_noise<double> huge{z, size_max};
  std::vector<double> out(4);
  CHECK_ERROR(huge(out, noise_position{1, 0, 0}), std::invalid_argument,
              "skipstep::given_noise:", "values.size()", "(got 8)");
  CHECK_ERROR(huge(out, noise_position{0, 0, size_max}), std::invalid_argument,
              "skipstep::given_noise:", "values.size()", "(got 8)");
  sampler_options two;
  two.num_samples = 2;
  const ddim_sampler s(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 2), eta{1.0}, two);
  std::vector<double> x(8, 0.1);
  const auto identity = [](const std::vector<double>& v, std::int64_t) { return v; };
  CHECK_ERROR(s.sample(identity, x, huge), std::invalid_argument, "ddim_sampler::sample", "values.size()",
              "(got 8)");
  CHECK(x == std::vector<double>(8, 0.1));
  // In range: the same values as before.
  const std::vector<double> ramp{0, 1, 2, 3, 4, 5, 6, 7};
  const given_noise<double> fine{ramp, 4};
  fine(std::span<double>(out).first(2), noise_position{1, 0, 1});
  CHECK(out[0] == 5.0);
  CHECK(out[1] == 6.0);
}

TEST_CASE("the spacings computed in double reject T above 2^53 instead of converting 2^63 to int64",
          "[misuse][timesteps]") {
  // double(INT64_MAX) is 2^63: nearbyint(2^63) cast to std::int64_t is undefined behaviour (clang's
  // -fsanitize=float-cast-overflow reports it), and the list came out as INT64_MIN.
  const auto big = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  CHECK_ERROR(timestep_schedule::trailing(big, 1), std::invalid_argument, "timestep_schedule::trailing",
              "num_train_timesteps", "(got 9223372036854775807)");
  CHECK_ERROR(timestep_schedule::linspace(big, 2), std::invalid_argument, "timestep_schedule::linspace",
              "num_train_timesteps", "(got 9223372036854775807)");
  const std::size_t limit = std::size_t{1} << 53;
  CHECK(timestep_schedule::trailing(limit, 1)[0] == static_cast<std::int64_t>(limit) - 1);
  CHECK(timestep_schedule::linspace(limit, 2)[0] == static_cast<std::int64_t>(limit) - 1);
  // The integer spacings have no such limit.
  CHECK(timestep_schedule::leading(big, 1)[0] == 0);
  CHECK(timestep_schedule::uniform(big, 2)[0] == static_cast<std::int64_t>(big / 2));
}

TEST_CASE("wsw_directions and the gaussian_mixture constructor reject a dim whose product wraps size_t",
          "[misuse][gaussian_mixture]") {
  // dim · 128 wrapped to 128 elements and the direction loop wrote 2^57 + 1 of them (heap-buffer-overflow).
  CHECK_ERROR(
      testing::wsw_directions((std::size_t{1} << 57) + 1), std::invalid_argument, "testing::wsw_directions",
      "dim must be <= SIZE_MAX / wsw_directions_nd (128) = 144115188075855871", "(got 144115188075855873)");
  // K · dim wrapped to 0, which empty means and stds matched: a mixture with no means whose mean(1) read
  // null.
  CHECK_ERROR(testing::gaussian_mixture(std::size_t{1} << 58, {}, {}, std::vector<double>(64, 1.0)),
              std::invalid_argument, "testing::gaussian_mixture::gaussian_mixture",
              "dim must be <= SIZE_MAX / the number of components", "(got 288230376151711744)");
}

TEST_CASE("a guidance rescale over one element per sample is an error, not a silent no-op",
          "[misuse][guidance]") {
  // The unbiased std of one value is undefined (torch: NaN); sample_std returned 0 and the rescale was
  // skipped.
  auto cond = [](const std::vector<double>& v, std::int64_t) { return std::vector<double>(v.size(), 0.7); };
  auto uncond = [](const std::vector<double>& v, std::int64_t) {
    return std::vector<double>(v.size(), -0.2);
  };
  std::vector<double> x(4), out(4);
  classifier_free_guidance per_element(cond, uncond, 3.0, 0.5, 4);
  CHECK_ERROR(per_element(x, 1, std::span<double>(out)), std::invalid_argument, "classifier_free_guidance",
              "num_samples", "(got 4)");
  std::vector<double> one(1), out1(1);
  batched_classifier_free_guidance batched(
      [](std::span<const double> x2, std::int64_t, std::span<double> o2) {
        std::fill(o2.begin(), o2.end(), x2.empty() ? 0.0 : 0.1);
      },
      3.0, 0.5);
  CHECK_ERROR(batched(one, 1, std::span<double>(out1)), std::invalid_argument,
              "batched_classifier_free_guidance", "num_samples", "(got 1)");
  // Without a rescale, one element per sample is fine; with 2 elements per sample the rescale runs.
  classifier_free_guidance plain(cond, uncond, 3.0, 0.0, 4);
  CHECK_NOTHROW(plain(x, 1, std::span<double>(out)));
  classifier_free_guidance two(cond, uncond, 3.0, 0.5, 2);
  CHECK_NOTHROW(two(x, 1, std::span<double>(out)));
}

TEST_CASE("a step-level given_noise whose sample_size is below the samples' size is rejected",
          "[misuse][noise]") {
  // sample_size 100 with 2 samples of 300: sample 1 read values[100, 400), 200 of them sample 0's: correlated
  // noise.
  const affine_step c = ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.1, 0.1});
  const std::vector<double> m(600, 0.1), z(1000, 0.5);
  std::vector<double> x(600, 0.25);
  CHECK_ERROR(apply_step<double>(c, x, m, x0_processing::none(), 2, given_noise<double>{z, 100}, 0),
              std::invalid_argument, "skipstep::apply_step:", "sample_size", "(got 100)");
  CHECK(x == std::vector<double>(600, 0.25));
  // A larger stride (padding between samples) and one sample of a shorter stride are fine.
  CHECK_NOTHROW(apply_step<double>(c, x, m, x0_processing::none(), 2, given_noise<double>{z, 400}, 0));
  CHECK_NOTHROW(apply_step<double>(c, x, m, x0_processing::none(), 1, given_noise<double>{z, 100}, 0));
}
