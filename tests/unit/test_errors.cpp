// Invalid inputs (issue 7's table, the rows that exist so far): each must throw std::invalid_argument or
// std::domain_error whose message names the function, the argument and the offending value.
#include <catch2/catch.hpp>

#include "check_error.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "skipstep/prediction.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/timesteps.hpp"
#include "skipstep/step/affine_step.hpp"
#include "skipstep/step/ddim.hpp"
#include "skipstep/step/ddpm.hpp"
#include "skipstep/step/sigma.hpp"

using namespace skipstep;
using Catch::Matchers::Contains;
using dvec = std::vector<double>;
using ivec = std::vector<std::int64_t>;

using skipstep_test::inf_v;
using skipstep_test::nan_v;

namespace {

const auto eps_model = [](const dvec& x, std::int64_t) { return dvec(x.size(), 0.1); };

}  // namespace

TEST_CASE("noise schedule factories reject T = 0 and out-of-range betas", "[errors]") {
  CHECK_ERROR(noise_schedule<>::linear(0), std::invalid_argument, "noise_schedule::linear", "num_train_timesteps",
              "(got 0)");
  CHECK_ERROR(noise_schedule<>::scaled_linear(0), std::invalid_argument, "noise_schedule::scaled_linear",
              "num_train_timesteps", "(got 0)");
  CHECK_ERROR(noise_schedule<>::cosine(0), std::invalid_argument, "noise_schedule::cosine", "num_train_timesteps",
              "(got 0)");
  CHECK_ERROR(noise_schedule<float>::linear(0), std::invalid_argument, "noise_schedule::linear", "num_train_timesteps",
              "(got 0)");

  CHECK_ERROR(noise_schedule<>::linear(1000, 0.0, 0.02), std::invalid_argument, "noise_schedule::linear", "beta_start",
              "(got 0)");
  CHECK_ERROR(noise_schedule<>::linear(1000, -0.5, 0.02), std::invalid_argument, "noise_schedule::linear",
              "beta_start", "(got -0.5)");
  CHECK_ERROR(noise_schedule<>::linear(1000, 0.25, 1.5), std::invalid_argument, "noise_schedule::linear", "beta_end",
              "(got 1.5)");
  CHECK_ERROR(noise_schedule<>::linear(1000, nan_v, 0.02), std::invalid_argument, "noise_schedule::linear",
              "beta_start", "nan");
  CHECK_ERROR(noise_schedule<>::linear(1000, 0.25, inf_v), std::invalid_argument, "noise_schedule::linear", "beta_end",
              "inf");
  CHECK_ERROR(noise_schedule<>::linear(1000, 0.5, 0.25), std::invalid_argument, "noise_schedule::linear", "beta_start",
              "(got 0.5)");
  CHECK_ERROR(noise_schedule<>::scaled_linear(1000, 0.5, 0.25), std::invalid_argument,
              "noise_schedule::scaled_linear", "beta_start", "(got 0.5)");
  CHECK_ERROR(noise_schedule<>::scaled_linear(1000, 0.5, nan_v), std::invalid_argument,
              "noise_schedule::scaled_linear", "beta_end", "nan");
  CHECK_ERROR(noise_schedule<>::cosine(1000, 0.0), std::invalid_argument, "noise_schedule::cosine", "max_beta",
              "(got 0)");
  CHECK_ERROR(noise_schedule<>::cosine(1000, 1.5), std::invalid_argument, "noise_schedule::cosine", "max_beta",
              "(got 1.5)");
  CHECK_ERROR(noise_schedule<>::cosine(1000, nan_v), std::invalid_argument, "noise_schedule::cosine", "max_beta",
              "nan");
  // Legal edges: beta_start == beta_end, beta = 1 only as the last entry.
  CHECK_NOTHROW(noise_schedule<>::linear(10, 0.25, 0.25));
  CHECK_NOTHROW(noise_schedule<>::from_betas(dvec{0.5, 1.0}));
}

TEST_CASE("from_betas rejects betas <= 0, > 1, NaN/Inf, empty, and abar hitting 0 early", "[errors]") {
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{}), std::invalid_argument, "noise_schedule::from_betas",
              "betas.size()", "(got 0)");
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{0.5, 0.0}), std::invalid_argument, "noise_schedule::from_betas",
              "betas[1]", "(got 0)");
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{0.5, -0.25}), std::invalid_argument, "noise_schedule::from_betas",
              "betas[1]", "(got -0.25)");
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{0.5, 1.5}), std::invalid_argument, "noise_schedule::from_betas",
              "betas[1]", "(got 1.5)");
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{nan_v}), std::invalid_argument, "noise_schedule::from_betas",
              "betas[0]", "nan");
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{0.5, inf_v}), std::invalid_argument, "noise_schedule::from_betas",
              "betas[1]", "inf");
  CHECK_ERROR(noise_schedule<>::from_betas(dvec{0.5, 1.0, 0.5}), std::invalid_argument, "noise_schedule::from_betas",
              "betas[1]", "(got 1)");
}

TEST_CASE("from_alphas_cumprod rejects non-monotone, out-of-range, NaN and empty tables", "[errors]") {
  constexpr const char* fn = "noise_schedule::from_alphas_cumprod";
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{}), std::invalid_argument, fn, "alphas_cumprod.size()",
              "(got 0)");
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{0.5, 0.75}), std::invalid_argument, fn, "alphas_cumprod[1]",
              "(got 0.75)");
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{1.0, 0.5}), std::invalid_argument, fn, "alphas_cumprod[0]",
              "(got 1)");
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{0.5, -0.25}), std::invalid_argument, fn,
              "alphas_cumprod[1]", "(got -0.25)");
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{0.5, nan_v}), std::invalid_argument, fn, "alphas_cumprod[1]",
              "nan");
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{0.5, 0.0, 0.0}), std::invalid_argument, fn,
              "alphas_cumprod[1]", "(got 0)");
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{0.5, 1.5}), std::invalid_argument, fn, "alphas_cumprod[1]",
              "(got 1.5)");
}

TEST_CASE("from_alphas_cumprod rejects a flat step (beta = 0), like from_betas does", "[errors]") {
  // ā_1 = ā_0 means β_1 = 0, which the class invariant ("every β_t in (0, 1]") and from_betas both forbid;
  // from_alphas_cumprod currently only checks "must not exceed the previous entry" and accepts it.
  constexpr const char* fn = "noise_schedule::from_alphas_cumprod";
  CHECK_THROWS_AS(noise_schedule<>::from_betas(dvec{0.25, 0.0, 0.5}), std::invalid_argument);
  CHECK_ERROR(noise_schedule<>::from_alphas_cumprod(dvec{0.75, 0.75, 0.5}), std::invalid_argument, fn,
              "alphas_cumprod[1]", "(got 0.75)");
}

TEST_CASE("rescale_zero_terminal_snr needs T >= 2", "[errors]") {
  CHECK_ERROR(noise_schedule<>::linear(1, 0.25, 0.25).rescale_zero_terminal_snr(), std::invalid_argument,
              "noise_schedule::rescale_zero_terminal_snr", "num_train_timesteps", "(got 1)");
}

TEST_CASE("timestep schedules reject N = 0, N > T, T = 0", "[errors]") {
  using factory = timestep_schedule (*)(std::size_t, std::size_t);
  const std::pair<const char*, factory> factories[] = {
      {"timestep_schedule::trailing", &timestep_schedule::trailing},
      {"timestep_schedule::linspace", &timestep_schedule::linspace},
      {"timestep_schedule::uniform", &timestep_schedule::uniform},
      {"timestep_schedule::quadratic", &timestep_schedule::quadratic},
      {"timestep_schedule::leading", [](std::size_t T, std::size_t N) { return timestep_schedule::leading(T, N); }},
  };
  for (const auto& [name, make] : factories) {
    INFO(name);
    CHECK_ERROR(make(1000, 0), std::invalid_argument, name, "num_steps", "(got 0)");
    CHECK_ERROR(make(10, 11), std::invalid_argument, name, "num_steps", "(got 11)");
    CHECK_ERROR(make(0, 1), std::invalid_argument, name, "num_train_timesteps", "(got 0)");
    CHECK_NOTHROW(make(10, 10));
    CHECK_NOTHROW(make(1, 1));
  }
}

TEST_CASE("leading spacing rejects an offset that pushes the first timestep to T or beyond", "[errors]") {
  // diffusers raises IndexError here (README behaviour 2, *_err_leading_offset1_*).
  CHECK_ERROR(timestep_schedule::leading(1000, 1000, 1), std::invalid_argument, "timestep_schedule::leading",
              "steps_offset", "(got 1)");
  CHECK_ERROR(timestep_schedule::leading(1000, 10, 100), std::invalid_argument, "timestep_schedule::leading",
              "steps_offset", "(got 100)");
  CHECK(timestep_schedule::leading(1000, 10, 99)[0] == 999);
}

TEST_CASE("custom timestep lists: empty, not strictly decreasing, duplicates, out of range", "[errors]") {
  constexpr const char* fn = "timestep_schedule::custom";
  CHECK_ERROR(timestep_schedule::custom(1000, ivec{}), std::invalid_argument, fn, "timesteps.size()", "(got 0)");
  CHECK_ERROR(timestep_schedule::custom(1000, ivec{500, 500}), std::invalid_argument, fn, "timesteps[1]", "(got 500)");
  CHECK_ERROR(timestep_schedule::custom(1000, ivec{100, 300}), std::invalid_argument, fn, "timesteps[1]", "(got 300)");
  CHECK_ERROR(timestep_schedule::custom(1000, ivec{900, 200, 200, 100}), std::invalid_argument, fn, "timesteps[2]",
              "(got 200)");
  CHECK_ERROR(timestep_schedule::custom(1000, ivec{1000, 5}), std::invalid_argument, fn, "timesteps[0]", "(got 1000)");
  CHECK_ERROR(timestep_schedule::custom(1000, ivec{5, -1}), std::invalid_argument, fn, "timesteps[1]", "(got -1)");
  CHECK_ERROR(timestep_schedule::custom(0, ivec{0}), std::invalid_argument, fn, "num_train_timesteps", "(got 0)");
}

TEST_CASE("eta rejects negative, NaN and infinite values", "[errors]") {
  CHECK_ERROR(eta{-0.5}, std::invalid_argument, "eta", "value", "(got -0.5)");
  CHECK_ERROR(eta{nan_v}, std::invalid_argument, "eta", "value", "nan");
  CHECK_ERROR(eta{inf_v}, std::invalid_argument, "eta", "value", "inf");
  CHECK_NOTHROW(eta{0.0});
}

TEST_CASE("a sigma policy returning sigma^2 > 1 - abar_s, a negative or a NaN sigma", "[errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 10);
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context&) { return 2.0; }), std::domain_error, "sigma policy",
              "step 0", "(got 2)");
  CHECK_THROWS_WITH(ddim_sampler(sched, ts, [](const step_context&) { return 2.0; }),
                    Contains("sigma") && Contains("t = 999"));
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context& c) { return c.step_index == 4 ? -1.0 : 0.0; }),
              std::domain_error, "sigma policy", "step 4", "(got -1)");
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context& c) { return c.step_index == 7 ? nan_v : 0.0; }),
              std::domain_error, "sigma policy", "step 7", "nan");
  CHECK_ERROR(ddim_sampler(sched, ts, [](const step_context&) { return sigma_choice{0.0, -0.5}; }), std::domain_error,
              "sigma policy", "noise_std", "(got -0.5)");
  // η = 2 with N = T: σ² = 4β̃ exceeds 1 − ā_s on the early steps.
  CHECK_THROWS_AS(ddim_sampler(sched, timestep_schedule::leading(1000, 1000), eta{2.0}), std::domain_error);
  // A sigma_list shorter than the schedule.
  CHECK_ERROR(ddim_sampler(sched, ts, sigma_list{{0.0, 0.0}}), std::invalid_argument, "sigma_list", "N = 10",
              "(got 2)");
}

TEST_CASE("model output size different from the sample size", "[errors]") {
  const auto c = ddim_step(prediction_type::epsilon, 0.5, 0.7);
  dvec x(4, 0.5), m3(3, 0.1), m4(4, 0.1), x0(5);
  CHECK_ERROR(apply_step(c, std::span<double>(x), std::span<const double>(m3), x0_processing::none()),
              std::invalid_argument, "apply_step", "model.size()", "(got 3)");
  CHECK_ERROR(apply_step(c, std::span<double>(x), std::span<const double>(m4), x0_processing::none(), 1, no_noise{}, 0,
                         std::span<double>(x0)),
              std::invalid_argument, "apply_step", "x0_out.size()", "(got 5)");

  const ddim_sampler s(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 5));
  const auto wrong = [](const dvec&, std::int64_t) { return dvec(3, 0.0); };
  dvec y(4, 0.5);
  CHECK_ERROR(s.sample(wrong, y), std::invalid_argument, "sampler::sample", "model output size", "(got 3)");
  // A workspace made for another shape.
  dvec other(6, 0.0);
  sampler_workspace<double> ws(other);
  CHECK_ERROR(s.sample(eps_model, y, no_noise{}, ws), std::invalid_argument, "sampler::sample", "workspace", "(got 6)");
}

TEST_CASE("zero-size tensors", "[errors]") {
  const ddim_sampler s(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 5));
  dvec empty;
  CHECK_ERROR(s.sample(eps_model, empty), std::invalid_argument, "sampler::sample", "x.size()", "(got 0)");
  std::vector<float> empty_f;
  const auto eps_model_f = [](const std::vector<float>& x, std::int64_t) { return std::vector<float>(x.size()); };
  CHECK_ERROR(s.sample(eps_model_f, empty_f), std::invalid_argument, "sampler::sample", "x.size()", "(got 0)");
}

TEST_CASE("num_samples must be >= 1 and divide the element count", "[errors]") {
  const auto c = ddim_step(prediction_type::epsilon, 0.5, 0.7);
  dvec x(4, 0.5), m(4, 0.1);
  CHECK_ERROR(apply_step(c, std::span<double>(x), std::span<const double>(m), x0_processing::none(), 3),
              std::invalid_argument, "apply_step", "num_samples", "(got 3)");
  CHECK_ERROR(apply_step(c, std::span<double>(x), std::span<const double>(m), x0_processing::none(), 0),
              std::invalid_argument, "apply_step", "num_samples", "(got 0)");
  sampler_options opt;
  opt.num_samples = 3;
  const ddim_sampler s3(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 5), eta{0.0}, opt);
  CHECK_ERROR(s3.sample(eps_model, x), std::invalid_argument, "sampler::sample", "x.size()", "(got 4)");
  opt.num_samples = 0;
  CHECK_ERROR(ddim_sampler(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 5), eta{0.0}, opt),
              std::invalid_argument, "sampler", "options.num_samples", "(got 0)");
  // Thresholding needs one sample's scratch.
  dvec scratch(1);
  CHECK_ERROR(apply_step(c, std::span<double>(x), std::span<const double>(m), x0_processing::dynamic_threshold(), 2,
                         no_noise{}, 0, {}, std::span<double>(scratch)),
              std::invalid_argument, "apply_step", "scratch.size()", "(got 1)");
}

TEST_CASE("zero terminal SNR with epsilon prediction is a domain error at construction", "[errors]") {
  const auto z = noise_schedule<>::linear(1000).rescale_zero_terminal_snr();
  const auto ts = timestep_schedule::trailing(1000, 10);  // starts at t = 999, where ā = 0
  sampler_options opt;
  opt.prediction = prediction_type::epsilon;
  CHECK_ERROR(ddim_sampler(z, ts, eta{0.0}, opt), std::domain_error, "ddim_sampler: step 0 (t = 999)", "alpha_cumprod",
              "(got 0)");
  CHECK_ERROR(ddpm_sampler(z, ts, variance_type::fixed_small, opt), std::domain_error, "ddpm_sampler: step 0 (t = 999)",
              "alpha_cumprod", "(got 0)");
  // v and sample prediction are fine there.
  opt.prediction = prediction_type::v;
  CHECK_NOTHROW(ddim_sampler(z, ts, eta{0.0}, opt));
  opt.prediction = prediction_type::sample;
  CHECK_NOTHROW(ddim_sampler(z, ts, eta{1.0}, opt));
  // Sample prediction at ā = 1 (DDIM inversion's first source with set_alpha_to_one, README #9).
  CHECK_ERROR(ddim_inverse_sampler(noise_schedule<>::linear(1000), ts, opt), std::domain_error,
              "ddim_inverse_sampler: step 0", "alpha_cumprod", "(got 1)");
  CHECK_ERROR(prediction_coefficients_at(prediction_type::v, 1.5), std::invalid_argument, "prediction_coefficients_at",
              "alpha_cumprod", "(got 1.5)");
  CHECK_ERROR(prediction_coefficients_at(prediction_type::v, nan_v), std::invalid_argument,
              "prediction_coefficients_at", "alpha_cumprod", "nan");
}

TEST_CASE("x0 processing parameters: thresholding ratio outside (0, 1], bad max value, bad clip range", "[errors]") {
  constexpr const char* dt = "x0_processing::dynamic_threshold";
  CHECK_ERROR(x0_processing::dynamic_threshold(0.0), std::invalid_argument, dt, "ratio", "(got 0)");
  CHECK_ERROR(x0_processing::dynamic_threshold(-0.5), std::invalid_argument, dt, "ratio", "(got -0.5)");
  CHECK_ERROR(x0_processing::dynamic_threshold(1.5), std::invalid_argument, dt, "ratio", "(got 1.5)");
  CHECK_ERROR(x0_processing::dynamic_threshold(nan_v), std::invalid_argument, dt, "ratio", "nan");
  CHECK_NOTHROW(x0_processing::dynamic_threshold(1.0));
  CHECK_ERROR(x0_processing::dynamic_threshold(0.995, 0.0), std::invalid_argument, dt, "max_value", "(got 0)");
  CHECK_ERROR(x0_processing::dynamic_threshold(0.995, inf_v), std::invalid_argument, dt, "max_value", "inf");
  CHECK_ERROR(x0_processing::clip(0.0), std::invalid_argument, "x0_processing::clip", "range", "(got 0)");
  CHECK_ERROR(x0_processing::clip(-1.0), std::invalid_argument, "x0_processing::clip", "range", "(got -1)");
  CHECK_ERROR(x0_processing::clip(nan_v), std::invalid_argument, "x0_processing::clip", "range", "nan");
  CHECK_ERROR(x0_processing::clip(inf_v), std::invalid_argument, "x0_processing::clip", "range", "inf");
  sampler_options opt;
  opt.processing = x0_processing::dynamic_threshold();
  CHECK_ERROR(ddim_inverse_sampler(noise_schedule<>::linear(1000), timestep_schedule::linspace(1000, 5), opt),
              std::invalid_argument, "ddim_inverse_sampler", "options.processing", "dynamic_threshold");
}

TEST_CASE("no_noise passed to a stochastic sampler", "[errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  const auto ts = timestep_schedule::linspace(1000, 5);
  dvec x(8, 0.5);
  CHECK_ERROR(ddim_sampler(sched, ts, eta{1.0}).sample(eps_model, x), std::invalid_argument, "sampler::sample",
              "noise", "no_noise");
  CHECK_ERROR(ddpm_sampler(sched, ts).sample(eps_model, x), std::invalid_argument, "sampler::sample", "noise",
              "no_noise");
  CHECK_NOTHROW(ddim_sampler(sched, ts, eta{0.0}).sample(eps_model, x));
}

TEST_CASE("other argument checks name function, argument and value", "[errors]") {
  const auto sched = noise_schedule<>::linear(1000);
  CHECK_ERROR(parse_prediction_type("eps"), std::invalid_argument, "parse_prediction_type", "name", "(got eps)");
  CHECK_ERROR(parse_variance_type("huge"), std::invalid_argument, "parse_variance_type", "name", "(got huge)");
  CHECK_ERROR(ddpm_posterior_at(1.0, 0.999), std::invalid_argument, "ddpm_posterior_at", "alpha_cumprod_prev",
              "(got 0.999)");
  CHECK_ERROR(ddpm_posterior_at(1.5, 1.5), std::invalid_argument, "ddpm_posterior_at", "alpha_cumprod_t", "(got 1.5)");
  CHECK_ERROR(ddpm_posterior_at(0.5, 0.25), std::invalid_argument, "ddpm_posterior_at", "alpha_cumprod_prev",
              "(got 0.25)");
  CHECK_ERROR(ddim_step(prediction_type::epsilon, 0.5, 1.5), std::invalid_argument, "ddim_step", "alpha_cumprod_prev",
              "(got 1.5)");
  // A learned-variance DDPM model must output [m; v] per sample: 2 * x.size() elements.
  const ddpm_sampler learned(sched, timestep_schedule::linspace(1000, 5), variance_type::learned);
  REQUIRE(learned.output_factor() == 2);
  dvec x4(4, 0.1);
  CHECK_ERROR(learned.sample(eps_model, x4, given_noise<double>{x4}), std::invalid_argument, "sampler::sample",
              "model output size", "2 * x.size() = 8");
  CHECK_THROWS_AS(ddpm_posterior_at(0.25, 0.5).noise_std(variance_type::learned_range), std::invalid_argument);
  // Schedule and timestep list built for different T.
  CHECK_ERROR(ddim_sampler(sched, timestep_schedule::linspace(500, 5)), std::invalid_argument, "ddim_sampler",
              "timesteps.num_train_timesteps()", "(got 500)");
  CHECK_ERROR(ddim_inverse_sampler(sched, timestep_schedule::linspace(500, 5)), std::invalid_argument,
              "ddim_inverse_sampler", "timesteps.num_train_timesteps()", "(got 500)");
  CHECK_ERROR(ddpm_sampler(sched, timestep_schedule::linspace(500, 5)), std::invalid_argument, "ddpm_sampler",
              "timesteps.num_train_timesteps()", "(got 500)");
  // first_step beyond N, strength outside [0, 1].
  const ddim_sampler s(sched, timestep_schedule::linspace(1000, 5));
  dvec x(4, 0.5);
  CHECK_ERROR(s.sample(eps_model, x, no_noise{}, no_callback{}, 6), std::invalid_argument, "sampler::sample",
              "first_step", "(got 6)");
  CHECK_ERROR(first_step_for_strength(10, 1.5), std::invalid_argument, "first_step_for_strength", "strength",
              "(got 1.5)");
  CHECK_ERROR(first_step_for_strength(10, nan_v), std::invalid_argument, "first_step_for_strength", "strength", "nan");
  // add_noise: t outside [0, T), mismatched sizes.
  dvec x0(4, 0.5), n4(4, 0.1), n3(3, 0.1), out(4);
  CHECK_ERROR(add_noise(sched, std::span<const double>(x0), std::span<const double>(n4), 1000, std::span<double>(out)),
              std::invalid_argument, "add_noise", "t", "(got 1000)");
  CHECK_ERROR(add_noise(sched, std::span<const double>(x0), std::span<const double>(n4), -1, std::span<double>(out)),
              std::invalid_argument, "add_noise", "t", "(got -1)");
  CHECK_ERROR(add_noise(sched, std::span<const double>(x0), std::span<const double>(n3), 5, std::span<double>(out)),
              std::invalid_argument, "add_noise", "noise.size()", "(got 3)");
  // given_noise smaller than the sample.
  const dvec few(2, 0.0);
  const ddim_sampler sto(sched, timestep_schedule::linspace(1000, 5), eta{1.0});
  CHECK_ERROR(sto.sample(eps_model, x, given_noise<double>{few}), std::invalid_argument, "given_noise",
              "values.size()", "(got 2)");
  // Learned-variance step with a fixed type or a wrong-size variance tensor.
  dvec m(4, 0.1), v3(3, 0.0), v4(4, 0.0);
  const auto zeros = [](std::span<double> o, noise_position) { std::fill(o.begin(), o.end(), 0.0); };
  CHECK_ERROR(apply_ddpm_learned_step(prediction_type::epsilon, 0.25, 0.5, variance_type::fixed_small,
                                      std::span<double>(x), std::span<const double>(m), std::span<const double>(v4),
                                      x0_processing::none(), 1, zeros, 0),
              std::invalid_argument, "apply_ddpm_learned_step", "type", "(got fixed_small)");
  CHECK_ERROR(apply_ddpm_learned_step(prediction_type::epsilon, 0.25, 0.5, variance_type::learned,
                                      std::span<double>(x), std::span<const double>(m), std::span<const double>(v3),
                                      x0_processing::none(), 1, zeros, 0),
              std::invalid_argument, "apply_ddpm_learned_step", "model_variance.size()", "(got 3)");
}

// Kept last: before the fix this reads out of bounds (ASan: SEGV in detail::quantile_in_place), which ends the run.
TEST_CASE("apply_step with a zero-size sample and dynamic thresholding is rejected, not an out-of-bounds read",
          "[errors]") {
  // quantile_in_place computes rank = q·(n − 1) with n = 0, i.e. q·SIZE_MAX, and indexes the empty scratch there.
  const auto c = ddim_step(prediction_type::epsilon, 0.5, 0.7);
  dvec x, m, scratch;
  CHECK_ERROR(apply_step(c, std::span<double>(x), std::span<const double>(m), x0_processing::dynamic_threshold(), 1,
                         no_noise{}, 0, {}, std::span<double>(scratch)),
              std::invalid_argument, "apply_step", "x.size()", "(got 0)");
}
