// The reliability issue's findings, one test each (they failed, crashed under ASan or hung before their fixes):
// guidance on learned-variance outputs, public x0_processing fields, guidance scales that overflow float, ddim_step's
// σ checks, DDPM's identity step, transactional steps when a noise source throws, callbacks that must not change the
// numbers, and error messages that name what the caller called.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <stdexcept>
#include <vector>

#include "check_error.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/solver/dpm_solver_singlestep.hpp"
#include "skipstep/solver/euler.hpp"

using namespace skipstep;
using Catch::Matchers::Contains;
using skipstep_test::nan_v;

namespace {

/// A smooth stand-in network: m = 0.6·tanh(x) + 0.3·sin(x + 0.002·t).
template <class T>
void smooth_model(std::span<const T> x, std::int64_t t, std::span<T> out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double v = static_cast<double>(x[i % x.size()]);
    out[i] = static_cast<T>(0.6 * std::tanh(v) + 0.3 * std::sin(v + 0.002 * static_cast<double>(t)));
  }
}

template <class T>
std::vector<T> start(std::size_t n) {
  std::vector<T> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(std::cos(0.7 * static_cast<double>(i)) * 1.3);
  return x;
}

/// A learned-variance output [m_b; v_b] per sample: means from smooth_model, interpolation values in [−1, 1].
struct learned_model {
  double offset = 0.0;
  std::size_t samples = 2;
  void operator()(const std::vector<double>& x, std::int64_t t, std::span<double> out) const {
    const std::size_t per = x.size() / samples;
    for (std::size_t b = 0; b < samples; ++b)
      for (std::size_t i = 0; i < per; ++i) {
        const double v = x[b * per + i];
        out[2 * b * per + i] = 0.6 * std::tanh(v) + 0.3 * std::sin(v + 0.002 * static_cast<double>(t)) + offset;
        out[2 * b * per + per + i] = std::tanh(v + offset);  // in (−1, 1)
      }
  }
};

}  // namespace

TEST_CASE("guidance on a learned-variance output guides the means only and stays inside its buffers",
          "[reliability][guidance]") {
  const std::vector<double> x = start<double>(8);  // 2 samples of 4
  const learned_model cond{0.3}, uncond{-0.2};
  std::vector<double> c(16), u(16);
  cond(x, 500, c);
  uncond(x, 500, u);
  const double scale = 7.5;
  auto check = [&](const std::vector<double>& out) {
    for (std::size_t b = 0; b < 2; ++b)
      for (std::size_t i = 0; i < 4; ++i) {
        const std::size_t mean = 2 * b * 4 + i, var = 2 * b * 4 + 4 + i;
        CHECK(out[mean] == Approx(u[mean] + scale * (c[mean] - u[mean])).epsilon(1e-14));
        CHECK(out[var] == c[var]);  // the conditional variance, not extrapolated
        CHECK(std::abs(out[var]) <= 1.0);
      }
  };
  SECTION("two predictors") {
    classifier_free_guidance cfg(cond, uncond, scale, 0.0, 2);
    std::vector<double> out(16);
    cfg(x, 500, std::span<double>(out));
    check(out);
  }
  SECTION("one batched network on [x; x] writing [uncond; cond] (2 x 16 values)") {
    auto network = [&](std::span<const double> x2, std::int64_t t, std::span<double> out2) {
      REQUIRE(x2.size() == 16);
      REQUIRE(out2.size() == 32);
      const std::vector<double> half(x2.begin(), x2.begin() + 8);
      uncond(half, t, out2.first(16));
      cond(half, t, out2.subspan(16));
    };
    batched_classifier_free_guidance cfg(network, scale, 0.0, 2);
    std::vector<double> out(16);
    cfg(x, 500, std::span<double>(out));
    check(out);
  }
  SECTION("inside a learned-variance DDPM sampler, which sizes the output 2 * x.size()") {
    sampler_options opt;
    opt.num_samples = 2;
    const auto sched = noise_schedule<>::linear(1000);
    const ddpm_sampler s(sched, timestep_schedule::linspace(1000, 8), variance_type::learned_range, opt);
    classifier_free_guidance cfg(cond, uncond, scale, 0.5, 2);
    std::vector<double> xs = x;
    s.sample(cfg, xs, philox_normal(7));
    for (double e : xs) CHECK(std::isfinite(e));
  }
}

TEST_CASE("guidance rejects a num_samples that does not divide the output and a scale that overflows the tensor type",
          "[reliability][guidance]") {
  auto cond = [](const std::vector<float>& x, std::int64_t t, std::span<float> out) { smooth_model<float>(x, t, out); };
  auto uncond = [](const std::vector<float>& x, std::int64_t, std::span<float> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = 0.5f * x[i];
  };
  std::vector<float> x = start<float>(10), out(10);
  classifier_free_guidance three(cond, uncond, 2.0, 0.7, 3);
  CHECK_ERROR(three(x, 10, std::span<float>(out)), std::invalid_argument, "classifier_free_guidance", "num_samples",
              "(got 3)");
  // 1e39 is finite in double but not in float: on float tensors the output would be all NaN.
  classifier_free_guidance huge(cond, uncond, 1e39);
  CHECK_ERROR(huge(x, 10, std::span<float>(out)), std::invalid_argument, "classifier_free_guidance", "scale",
              "(got 1e+39)");
  std::vector<double> xd = start<double>(10), outd(10);
  auto cond_d = [](const std::vector<double>& v, std::int64_t t, std::span<double> o) { smooth_model<double>(v, t, o); };
  classifier_free_guidance huge_d(cond_d, cond_d, 1e39);
  CHECK_NOTHROW(huge_d(xd, 10, std::span<double>(outd)));  // finite in double: legal there
  // The batched adaptor names itself, not the two-predictor class.
  auto net = [](std::span<const float> x2, std::int64_t t, std::span<float> o2) { smooth_model<float>(x2, t, o2); };
  batched_classifier_free_guidance batched(net, 1e39);
  CHECK_ERROR(batched(x, 10, std::span<float>(out)), std::invalid_argument, "batched_classifier_free_guidance",
              "scale", "(got 1e+39)");
  std::vector<float> wrong(7);
  CHECK_ERROR(batched(x, 10, std::span<float>(wrong)), std::invalid_argument, "batched_classifier_free_guidance",
              "out.size()", "(got 7)");
}

TEST_CASE("x0_processing set through its public fields is validated where it is used", "[reliability][processing]") {
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 10);
  auto with = [](auto edit) {
    sampler_options opt;
    edit(opt.processing);
    return opt;
  };
  const auto ratio = with([](x0_processing& p) {
    p.mode = x0_processing::kind::dynamic_threshold;
    p.dynamic_thresholding_ratio = 1.5;  // would read past the scratch buffer
  });
  const auto negative_clip = with([](x0_processing& p) {
    p.mode = x0_processing::kind::clip;
    p.clip_range = -1.0;  // std::clamp with lo > hi: undefined behaviour
  });
  const auto nan_clip = with([](x0_processing& p) {
    p.mode = x0_processing::kind::clip;
    p.clip_range = nan_v;  // would silently disable clipping
  });
  const auto bad_max = with([](x0_processing& p) {
    p.mode = x0_processing::kind::dynamic_threshold;
    p.sample_max_value = -2.0;
  });
  const auto bad_mode = with([](x0_processing& p) { p.mode = static_cast<x0_processing::kind>(9); });
  CHECK_ERROR(ddim_sampler(sched, ts, eta{0.0}, ratio), std::invalid_argument, "ddim_sampler",
              "processing.dynamic_thresholding_ratio", "(got 1.5)");
  CHECK_ERROR(ddpm_sampler(sched, ts, variance_type::fixed_small, negative_clip), std::invalid_argument,
              "ddpm_sampler", "processing.clip_range", "(got -1)");
  CHECK_ERROR(ddim_sampler(sched, ts, eta{0.0}, nan_clip), std::invalid_argument, "ddim_sampler",
              "processing.clip_range", "(got nan)");
  CHECK_ERROR(ddim_inverse_sampler(sched, ts, negative_clip), std::invalid_argument, "ddim_inverse_sampler",
              "processing.clip_range", "(got -1)");
  CHECK_ERROR(ddim_sampler(sched, ts, eta{0.0}, bad_max), std::invalid_argument, "ddim_sampler",
              "processing.sample_max_value", "(got -2)");
  CHECK_ERROR(ddim_sampler(sched, ts, eta{0.0}, bad_mode), std::invalid_argument, "ddim_sampler", "processing.mode",
              "(got 9)");
  // The step-level layer checks the same on every call.
  std::vector<double> x = start<double>(8), m = start<double>(8), scratch(8);
  const affine_step c = ddim_step(prediction_type::epsilon, 0.5, 0.7);
  CHECK_ERROR(apply_step<double>(c, x, m, ratio.processing, 1, no_noise{}, 0, {}, scratch), std::invalid_argument,
              "apply_step", "processing.dynamic_thresholding_ratio", "(got 1.5)");
  CHECK_ERROR(apply_step<double>(c, x, m, negative_clip.processing), std::invalid_argument, "apply_step",
              "processing.clip_range", "(got -1)");
  CHECK(x == start<double>(8));  // nothing was written
}

TEST_CASE("ddim_step called directly rejects a NaN, negative or too large sigma", "[reliability][steps]") {
  CHECK_ERROR(ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{nan_v, nan_v}), std::domain_error,
              "ddim_step", "sigma.sigma", "(got nan)");
  CHECK_ERROR(ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{-0.1, 0.1}), std::domain_error, "ddim_step",
              "sigma.sigma", "(got -0.1)");
  CHECK_ERROR(ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{0.5, 0.5}), std::domain_error, "ddim_step",
              "sigma^2 <= 1 - alpha_cumprod_prev", "(got 0.5)");
  CHECK_ERROR(ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{0.1, -1.0}), std::domain_error, "ddim_step",
              "sigma.noise_std", "(got -1)");
  CHECK_ERROR(ddim_step(prediction_type::epsilon, 0.0, 0.8), std::domain_error, "ddim_step", "alpha_cumprod_t",
              "(got 0)");
  CHECK_ERROR(ddim_step(prediction_type::v, 1.5, 0.8), std::invalid_argument, "ddim_step", "alpha_cumprod_t",
              "(got 1.5)");
  CHECK_NOTHROW(ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{std::sqrt(0.2), 0.3}));
}

TEST_CASE("a DDPM step between two equal levels is the identity with no noise", "[reliability][ddpm]") {
  for (double a : {0.0, 0.3, 1.0}) {
    for (variance_type v : {variance_type::fixed_small, variance_type::fixed_small_log, variance_type::fixed_large,
                            variance_type::fixed_large_log, variance_type::learned, variance_type::learned_range}) {
      const prediction_type kind = a == 0.0 ? prediction_type::v : prediction_type::epsilon;
      const affine_step c = ddpm_step(kind, a, a, v);
      CHECK(c.noise_std == 0.0);
      CHECK(c.sample_coeff() == 1.0);
      CHECK(c.model_coeff() == 0.0);
    }
  }
  // The last step of a consistent DDPM run onto ā_0 from t = 0 is such a step: it must not make the run stochastic.
  const auto sched = noise_schedule<>::linear(1000);
  const auto to_a0 = timestep_schedule::custom(1000, std::vector<std::int64_t>{0}).with_final_alpha(final_alpha::alpha_cumprod_0);
  const ddpm_sampler one(sched, to_a0, variance_type::fixed_small);
  CHECK_FALSE(one.is_stochastic());
  // A schedule whose first levels round to ā = 1 (β_0 = 1e-17): the step from t = 0 to the clean end is between two
  // ā = 1 levels. The schedule accepts it, so DDPM must too.
  const auto tiny = noise_schedule<>::linear(1000, 1e-17, 0.02);
  REQUIRE(tiny.alpha_cumprod(0) == 1.0);
  const ddpm_sampler s(tiny, timestep_schedule::linspace(1000, 10), variance_type::fixed_small);
  CHECK(s.coefficients().back().noise_std == 0.0);
  CHECK(s.coefficients().back().sample_coeff() == 1.0);
  sampler_options x0_opt;
  x0_opt.prediction = prediction_type::sample;
  CHECK_NOTHROW(ddpm_sampler(tiny, timestep_schedule::linspace(1000, 10), variance_type::fixed_large, x0_opt));
}

TEST_CASE("a noise source that throws mid-step leaves x at the last completed step; resuming reproduces the run",
          "[reliability][sampler]") {
  const auto sched = noise_schedule<>::linear(1000);
  sampler_options opt;
  opt.num_samples = 2;
  const ddim_sampler s(sched, timestep_schedule::linspace(1000, 8), eta{1.0}, opt);
  const philox_normal rng(99);
  auto model = [](const std::vector<double>& x, std::int64_t t, std::span<double> out) {
    smooth_model<double>(x, t, out);
  };
  const std::vector<double> x_T = start<double>(600);  // 300 per sample: two noise blocks each
  // A source that fails on sample 1 of step 3 (after sample 0's blocks were served).
  auto failing = [&](std::span<double> out, noise_position at) {
    if (at.step == 3 && at.sample == 1) throw std::runtime_error("noise source failed");
    rng.fill(out, at.sample, at.step, at.first_element);
  };
  std::vector<double> x = x_T;
  sampler_workspace<double> ws(x.size());
  std::size_t completed = 0;
  auto count = [&](const step_info& info, std::span<const double>, std::span<const double>) {
    completed = info.step_index + 1;
  };
  CHECK_THROWS_AS(s.sample(model, x, failing, ws, count), std::runtime_error);
  REQUIRE(completed == 3);
  // x holds exactly the state after 3 steps of the same run.
  std::vector<double> three = x_T;
  s.sample(model, three, rng, ws, [](const step_info& info, auto, auto) { return info.step_index + 1 < 3; });
  CHECK(x == three);
  // Resuming from there with a working source gives the uninterrupted run, bit for bit.
  std::vector<double> full = x_T;
  s.sample(model, full, rng, ws);
  s.sample(model, x, rng, ws, no_callback{}, completed);
  CHECK(x == full);

  // given_noise running out mid-step (values for sample 0 only) behaves the same: x is untouched by that step.
  const ddim_sampler one(sched, timestep_schedule::linspace(1000, 2), eta{1.0}, opt);
  std::vector<double> short_noise(300, 0.5), y = x_T;
  CHECK_THROWS_AS(one.sample(model, y, given_noise<double>{short_noise, 300}, ws), std::invalid_argument);
  CHECK(y == x_T);
}

TEST_CASE("attaching a callback never changes the numbers", "[reliability][sampler]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  for (prediction_type kind : {prediction_type::epsilon, prediction_type::v, prediction_type::sample}) {
    for (double e : {0.0, 0.7}) {
      sampler_options opt;
      opt.prediction = kind;
      opt.num_samples = 3;
      const ddim_sampler s(sched, timestep_schedule::trailing(1000, 13), eta{e}, opt);
      auto model_f = [](const std::vector<float>& x, std::int64_t t, std::span<float> out) {
        smooth_model<float>(x, t, out);
      };
      std::vector<float> plain = start<float>(3 * 517), observed = plain;
      s.sample(model_f, plain, philox_normal(5));
      std::size_t seen = 0;
      s.sample(model_f, observed, philox_normal(5), [&](const step_info&, auto, auto) { ++seen; });
      CHECK(seen == 13);
      CHECK(plain == observed);
    }
  }
}

TEST_CASE("errors name what the caller called, with the value it passed", "[reliability][errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  std::vector<double> x0(8, 0.1), noise(8, 0.2), out(5);
  // add_noise reports the size that is wrong, not the expected one.
  CHECK_ERROR((add_noise<double, double>(sched, x0, noise, 10, out)), std::invalid_argument, "add_noise", "out.size()",
              "(got 5)");
  // A steps_offset of size_t(-1) is reported as itself, not as a wrapped-around timestep.
  CHECK_ERROR(timestep_schedule::leading(1000, 10, static_cast<std::size_t>(-1)), std::invalid_argument,
              "timestep_schedule::leading", "steps_offset", "(got 18446744073709551615)");
  // A variance_type value outside the enum is printed as its number.
  CHECK_ERROR(ddpm_step(prediction_type::epsilon, 0.5, 0.7, static_cast<variance_type>(17)), std::invalid_argument,
              "ddpm_step", "type", "variance_type(17)");
  CHECK_ERROR(ddpm_posterior_at(0.5, 0.7).noise_std(static_cast<variance_type>(17)), std::invalid_argument,
              "noise_std", "type", "variance_type(17)");
  // A wrong model-output size names the step and the timestep.
  const ddim_sampler s(sched, timestep_schedule::linspace(1000, 5));
  std::vector<double> x(4, 0.3);
  auto grows = [](const std::vector<double>& v, std::int64_t t) {
    return std::vector<double>(t < 300 ? v.size() + 1 : v.size(), 0.1);
  };
  CHECK_ERROR(s.sample(grows, x), std::invalid_argument, "ddim_sampler::sample", "step 3 (t = 250)", "(got 5)");
  // Errors of DDPM construction name ddpm_sampler (not ddim_transitions or ddpm_step).
  CHECK_ERROR(ddpm_sampler(sched, timestep_schedule::linspace(500, 5)), std::invalid_argument, "ddpm_sampler",
              "num_train_timesteps", "(got 500)");
  const auto zsnr = noise_schedule<>::linear(1000).rescale_zero_terminal_snr();
  try {
    (void)ddpm_sampler(zsnr, timestep_schedule::trailing(1000, 4));
    FAIL("expected a domain_error");
  } catch (const std::domain_error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Contains("skipstep::ddpm_sampler: step 0 (t = 999)"));
    CHECK_THAT(what, !Contains("prediction_coefficients_at") && !Contains("ddpm_step"));
  }
}

TEST_CASE("dynamic thresholding of a NaN model output stays defined: NaN stays NaN, nothing is read out of range",
          "[reliability][processing]") {
  // std::nth_element requires a strict weak order; NaN among the |x̂0| values broke it (undefined behaviour: the
  // unguarded partition can scan past the scratch buffer; ASan's stage runs this test). NaN now ranks as +inf.
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 5);
  sampler_options opt;
  opt.processing = x0_processing::dynamic_threshold(0.9, 2.0);
  const ddim_sampler s(sched, ts, eta{0.0}, opt);
  const std::size_t n = 4099;
  auto nan_model = [](const std::vector<double>& x, std::int64_t, std::span<double> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = (i % 3 == 0) ? nan_v : 0.5 * x[i];
  };
  std::vector<double> x = start<double>(n);
  s.sample(nan_model, x);
  std::size_t nans = 0;
  for (std::size_t i = 0; i < n; ++i) nans += std::isnan(x[i]) ? 1 : 0;
  CHECK(nans >= (n + 2) / 3);  // the NaN elements are not masked
  // The opt-in check reports it instead.
  sampler_options checked = opt;
  checked.check_finite = true;
  std::vector<double> y = start<double>(n);
  CHECK_THROWS_AS(ddim_sampler(sched, ts, eta{0.0}, checked).sample(nan_model, y), std::domain_error);
}

TEST_CASE("a derived sampler owned through a pointer to sampler is destroyed whole", "[reliability][sampler]") {
  // sampler has a virtual destructor: dpm_solver_singlestep_sampler's order list is freed through unique_ptr<sampler>
  // (without it, LeakSanitizer in the ASan stage reports the vector as leaked).
  static_assert(std::has_virtual_destructor_v<sampler>);
  const auto sched = noise_schedule<>::linear(1000);
  std::unique_ptr<sampler> owned =
      std::make_unique<dpm_solver_singlestep_sampler>(make_multistep_grid(sched, 10));
  CHECK(owned->num_steps() == 10);
  owned.reset();
  CHECK(owned == nullptr);
}

TEST_CASE("a reused workspace does not carry a NaN saved state into the next run", "[reliability][sampler]") {
  // Heun's first row of a pair saves S (weight 0 in that row). With x̂0 processing the general loop ran; it read
  // 0·S from the previous run's S, so a run that ended in NaN poisoned the next one through the same workspace.
  const auto sched = noise_schedule<>::linear(1000);
  sampler_options opt;
  opt.processing = x0_processing::clip(1.0);
  opt.prediction = prediction_type::epsilon;
  const heun_sampler s(make_sigma_grid(sched, 6), opt);
  auto nan_model = [](const std::vector<double>&, double, std::span<double> out) {
    for (double& v : out) v = nan_v;
  };
  auto good_model = [](const std::vector<double>& x, double, std::span<double> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = 0.3 * std::tanh(x[i]);
  };
  std::vector<double> poisoned = start<double>(64);
  auto ws = s.make_workspace(poisoned);
  s.sample(nan_model, poisoned, no_noise{}, ws);
  REQUIRE(std::isnan(poisoned[0]));
  std::vector<double> reused = start<double>(64), fresh = start<double>(64);
  s.sample(good_model, reused, no_noise{}, ws);
  s.sample(good_model, fresh);
  CHECK(reused == fresh);
}
