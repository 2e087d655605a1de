// The step kernel (issue 3, items 4–6): DDIM, DDPM and the shared affine kernel, checked against identities and
// direct computations — the DDIM(η = 1, N = T) ≡ DDPM(fixed_small) identity, exact x̂0 recovery for every prediction
// type, the DDIM step staying on √ā·x0 + √(1−ā)·ε, x̂0 processing written out with sort-based quantiles, and the
// DDPM posterior against Gaussian algebra (precision sums, law of total variance).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

#include "skipstep/sampler.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/timesteps.hpp"
#include "skipstep/step/affine_step.hpp"
#include "skipstep/step/ddim.hpp"
#include "skipstep/step/ddpm.hpp"
#include "skipstep/step/transitions.hpp"

using namespace skipstep;

namespace {

std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A standard normal addressed by (stream, step, element): Box–Muller on two hashed uniforms.
double normal_at(std::uint64_t stream, std::uint64_t step, std::uint64_t element) {
  const std::uint64_t h = splitmix(splitmix(splitmix(stream) ^ step) ^ element);
  const double u1 = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = (static_cast<double>(splitmix(h) >> 11) + 0.5) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// Noise source: deterministic in its address, so two samplers asking for the same (sample, step, element) agree.
struct hashed_noise {
  std::uint64_t stream_offset = 0;
  template <class T>
  void operator()(std::span<T> out, noise_position at) const {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<T>(normal_at(at.sample + stream_offset, at.step, at.first_element + i));
  }
};

// A noise source that only counts its calls.
struct counting_noise {
  std::size_t* calls;
  template <class T>
  void operator()(std::span<T> out, noise_position) const {
    ++*calls;
    std::fill(out.begin(), out.end(), T(0));
  }
};

// A deterministic, nonlinear "network".
struct toy_predictor {
  template <class T>
  std::vector<T> operator()(const std::vector<T>& x, std::int64_t t) const {
    std::vector<T> m(x.size());
    const double tt = static_cast<double>(t) / 1000.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double xi = static_cast<double>(x[i]);
      m[i] = static_cast<T>(0.8 * std::tanh(0.7 * xi) + 0.2 * std::sin(3.0 * tt + 0.1 * static_cast<double>(i)) -
                            0.05 * xi * tt);
    }
    return m;
  }
};

std::vector<double> vec(std::size_t n, double scale, double phase) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * std::sin(phase + 1.3 * static_cast<double>(i) + 0.01 * i * i);
  return v;
}

std::vector<double> normals(std::size_t n, std::uint64_t stream) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = normal_at(stream, 77, i);
  return v;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// A nonlinear "denoiser" predictor in the shape of a trained ε-model: x̂0 = 0.9·tanh(x + 0.1·sin(i + t/100))
// (bounded, so x̂0 stays O(1)), ε̂ = (x − √ā_t·x̂0)/√(1 − ā_t). Keeps a 1000-step chain well conditioned even where
// √ā_t ≈ 5e-5 (cosine, t = 999), unlike an arbitrary function whose x̂0 would be amplified by 1/√ā_t.
struct denoiser_predictor {
  const noise_schedule<double>* schedule;
  std::vector<double> operator()(const std::vector<double>& x, std::int64_t t) const {
    const double a = schedule->alpha_cumprod(static_cast<std::size_t>(t));
    std::vector<double> m(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double x0 = 0.9 * std::tanh(x[i] + 0.1 * std::sin(static_cast<double>(i) + static_cast<double>(t) / 100.0));
      m[i] = (x[i] - std::sqrt(a) * x0) / std::sqrt(1.0 - a);
    }
    return m;
  }
};

// The exact model output for a sample that is √ā·x0 + √(1−ā)·ε with known x0 (the ε is recovered from x).
struct exact_predictor {
  const noise_schedule<double>* schedule;
  const std::vector<double>* x0;
  prediction_type kind;
  std::vector<double> operator()(const std::vector<double>& x, std::int64_t t) const {
    const double a = schedule->alpha_cumprod(static_cast<std::size_t>(t));
    const double sa = std::sqrt(a), sb = std::sqrt(1.0 - a);
    std::vector<double> m(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double eps = (x[i] - sa * (*x0)[i]) / sb;
      m[i] = kind == prediction_type::epsilon ? eps : kind == prediction_type::v ? sa * eps - sb * (*x0)[i] : (*x0)[i];
    }
    return m;
  }
};

}  // namespace

TEST_CASE("DDIM with eta = 1 and N = T equals the DDPM fixed_small chain on the same noise", "[steps]") {
  for (const auto& sched : {noise_schedule<>::linear(1000), noise_schedule<>::cosine(1000)}) {
    const auto ts = timestep_schedule::leading(1000, 1000);  // 999, 998, ..., 0
    REQUIRE(ts[0] == 999);
    const ddim_sampler ddim(sched, ts, eta{1.0});
    const ddpm_sampler ddpm(sched, ts, variance_type::fixed_small);
    // Step by step, the fused coefficients agree.
    for (std::size_t i = 0; i < 1000; ++i) {
      INFO("step " << i);
      REQUIRE(ddim.coefficients()[i].sample_coeff() == Approx(ddpm.coefficients()[i].sample_coeff()).epsilon(1e-12));
      REQUIRE(ddim.coefficients()[i].model_coeff() ==
              Approx(ddpm.coefficients()[i].model_coeff()).epsilon(1e-10).margin(1e-14));
      REQUIRE(ddim.coefficients()[i].noise_std ==
              Approx(ddpm.coefficients()[i].noise_std).epsilon(1e-10).margin(1e-14));
    }
    std::vector<double> a = normals(48, 5), b = a;
    ddim.sample(denoiser_predictor{&sched}, a, hashed_noise{});
    ddpm.sample(denoiser_predictor{&sched}, b, hashed_noise{});
    const double diff = max_abs_diff(a, b);
    INFO("max |DDIM - DDPM| = " << diff);
    CHECK(diff <= 1e-12);
    // The comparison is not vacuous: without noise the result differs.
    std::vector<double> c = normals(48, 5);
    ddim_sampler(sched, ts, eta{0.0}).sample(denoiser_predictor{&sched}, c);
    CHECK(max_abs_diff(a, c) > 1e-3);
  }
  SECTION("the identity also holds for respaced DDPM (any timestep list)") {
    const auto sched = noise_schedule<>::scaled_linear(1000);
    const auto ts = timestep_schedule::linspace(1000, 37);
    std::vector<double> a = normals(40, 9), b = a;
    ddim_sampler(sched, ts, eta{1.0}).sample(denoiser_predictor{&sched}, a, hashed_noise{});
    ddpm_sampler(sched, ts, variance_type::fixed_small).sample(denoiser_predictor{&sched}, b, hashed_noise{});
    CHECK(max_abs_diff(a, b) <= 1e-12);
  }
}

TEST_CASE("eta = 0 draws no noise", "[steps]") {
  const auto sched = noise_schedule<>::linear(1000);
  for (const auto& ts : {timestep_schedule::linspace(1000, 20),
                         timestep_schedule::leading(1000, 20).with_final_alpha(final_alpha::alpha_cumprod_0)}) {
    for (auto conv : {step_convention::consistent, step_convention::diffusers}) {
      sampler_options opt;
      opt.convention = conv;
      const ddim_sampler det(sched, ts, eta{0.0}, opt);
      CHECK_FALSE(det.is_stochastic());
      for (const auto& c : det.coefficients()) CHECK(c.noise_std == 0.0);
      std::size_t calls = 0;
      std::vector<double> x = normals(300, 1);
      det.sample(toy_predictor{}, x, counting_noise{&calls});
      CHECK(calls == 0);
      // The counter does count: η = 1 asks for noise.
      const ddim_sampler sto(sched, ts, eta{1.0}, opt);
      CHECK(sto.is_stochastic());
      std::vector<double> y = normals(300, 1);
      sto.sample(toy_predictor{}, y, counting_noise{&calls});
      CHECK(calls > 0);
    }
  }
}

TEST_CASE("consistent convention: each step lands on the next listed timestep", "[steps]") {
  const auto sched = noise_schedule<>::scaled_linear(1000);
  for (const auto& base : {timestep_schedule::linspace(1000, 7), timestep_schedule::trailing(1000, 61),
                           timestep_schedule::quadratic(1000, 20),
                           timestep_schedule::custom(1000, std::vector<std::int64_t>{950, 700, 3, 1})}) {
    for (auto f : {final_alpha::one, final_alpha::alpha_cumprod_0}) {
      const auto ts = base.with_final_alpha(f);
      const double final_level = f == final_alpha::one ? 1.0 : sched.alpha_cumprod(0);
      const std::size_t n = ts.size();
      for (const auto& tr : {ddim_transitions(sched, ts), ddpm_transitions(sched, ts)}) {
        REQUIRE(tr.size() == n);
        for (std::size_t i = 0; i < n; ++i) {
          INFO("step " << i);
          CHECK(tr[i].timestep == ts[i]);
          CHECK(tr[i].source_timestep == ts[i]);
          CHECK(tr[i].alpha_cumprod_from == sched.alpha_cumprod(static_cast<std::size_t>(ts[i])));
          if (i + 1 < n) {
            CHECK(tr[i].target_timestep == ts[i + 1]);
            CHECK(tr[i].alpha_cumprod_to == sched.alpha_cumprod(static_cast<std::size_t>(ts[i + 1])));
            CHECK(tr[i].noise_allowed);
          } else {
            CHECK(tr[i].target_timestep == -1);
            CHECK(tr[i].alpha_cumprod_to == final_level);
            CHECK(tr[i].noise_allowed == (f != final_alpha::one));
          }
        }
      }
      // Inversion walks the same levels back up, evaluating the model at the target.
      const auto inv = inversion_transitions(sched, ts);
      REQUIRE(inv.size() == n);
      for (std::size_t j = 0; j < n; ++j) {
        CHECK(inv[j].timestep == ts[n - 1 - j]);
        CHECK(inv[j].target_timestep == ts[n - 1 - j]);
        CHECK(inv[j].alpha_cumprod_to == sched.alpha_cumprod(static_cast<std::size_t>(ts[n - 1 - j])));
        CHECK(inv[j].alpha_cumprod_from ==
              (j == 0 ? final_level : sched.alpha_cumprod(static_cast<std::size_t>(ts[n - j]))));
        CHECK_FALSE(inv[j].noise_allowed);
      }
    }
  }
}

TEST_CASE("a deterministic DDIM run with an exact predictor stays on sqrt(abar)*x0 + sqrt(1-abar)*eps", "[steps]") {
  const auto sched = noise_schedule<>::cosine(1000);
  const auto ts = timestep_schedule::trailing(1000, 12).with_final_alpha(final_alpha::alpha_cumprod_0);
  const std::vector<double> x0 = vec(24, 0.9, 0.3);
  const std::vector<double> eps = normals(24, 3);
  for (auto kind : {prediction_type::epsilon, prediction_type::v, prediction_type::sample}) {
    INFO("prediction type " << static_cast<int>(kind));
    sampler_options opt;
    opt.prediction = kind;
    const ddim_sampler s(sched, ts, eta{0.0}, opt);
    std::vector<double> x(24);
    const double a0 = sched.alpha_cumprod(static_cast<std::size_t>(ts[0]));
    for (std::size_t i = 0; i < 24; ++i) x[i] = std::sqrt(a0) * x0[i] + std::sqrt(1.0 - a0) * eps[i];
    std::size_t steps = 0;
    s.sample(exact_predictor{&sched, &x0, kind}, x, no_noise{},
             [&](const step_info& info, std::span<const double> xs, std::span<const double> x0_hat) {
               ++steps;
               const std::size_t i = info.step_index;
               const double as = i + 1 < ts.size() ? sched.alpha_cumprod(static_cast<std::size_t>(ts[i + 1]))
                                                   : sched.alpha_cumprod(0);
               CHECK(info.alpha_cumprod_to == as);
               for (std::size_t k = 0; k < 24; ++k) {
                 REQUIRE(x0_hat[k] == Approx(x0[k]).margin(1e-12));
                 REQUIRE(xs[k] == Approx(std::sqrt(as) * x0[k] + std::sqrt(1.0 - as) * eps[k]).margin(1e-12));
               }
             });
    CHECK(steps == ts.size());
  }
}

TEST_CASE("diffusers convention: DDIM steps to t - floor(T/N)", "[steps]") {
  const auto sched = noise_schedule<>::linear(1000);
  for (std::size_t n : {7u, 10u, 16u, 61u}) {
    for (const auto& ts : {timestep_schedule::linspace(1000, n), timestep_schedule::trailing(1000, n),
                           timestep_schedule::leading(1000, n, 1)}) {
      const auto tr = ddim_transitions(sched, ts, step_convention::diffusers);
      const auto stride = static_cast<std::int64_t>(1000 / n);
      for (std::size_t i = 0; i < ts.size(); ++i) {
        INFO("N = " << n << ", step " << i);
        const std::int64_t target = ts[i] - stride;
        CHECK(tr[i].timestep == ts[i]);
        CHECK(tr[i].target_timestep == std::max<std::int64_t>(target, -1));
        CHECK(tr[i].alpha_cumprod_to == (target >= 0 ? sched.alpha_cumprod(static_cast<std::size_t>(target)) : 1.0));
      }
    }
  }
  // README, behaviour 1: linspace N = 10 evaluates 999, 888, ... but steps to 899, 788, ...
  const auto tr = ddim_transitions(sched, timestep_schedule::linspace(1000, 10), step_convention::diffusers);
  CHECK(tr[0].target_timestep == 899);
  CHECK(tr[1].target_timestep == 788);
  CHECK(tr[9].target_timestep == -1);
  // set_alpha_to_one = False: the final level is ā_0 (leading, offset 0: the last step goes from ā_0 to ā_0).
  const auto tz = ddim_transitions(sched, timestep_schedule::leading(1000, 10).with_final_alpha(final_alpha::alpha_cumprod_0),
                                   step_convention::diffusers);
  CHECK(tz[9].alpha_cumprod_from == sched.alpha_cumprod(0));
  CHECK(tz[9].alpha_cumprod_to == sched.alpha_cumprod(0));
  // DDIMInverse: source min(t − ⌊T/N⌋, T − 1), the initial level below 0.
  const auto inv = inversion_transitions(sched, timestep_schedule::trailing(1000, 10), step_convention::diffusers);
  CHECK(inv[0].timestep == 99);
  CHECK(inv[0].source_timestep == -1);
  CHECK(inv[0].alpha_cumprod_from == 1.0);
  CHECK(inv[9].timestep == 999);
  CHECK(inv[9].source_timestep == 899);
  // DDPM, diffusers convention: noise only where t > 0.
  const auto dd = ddpm_transitions(sched, timestep_schedule::leading(1000, 10), step_convention::diffusers);
  for (const auto& s : dd) CHECK(s.noise_allowed == (s.timestep > 0));
}

TEST_CASE("every prediction type recovers x0 exactly through apply_step's x0_out", "[steps]") {
  const std::vector<double> x0 = vec(33, 1.2, 0.1);
  const std::vector<double> eps = normals(33, 11);
  for (double ak : {0.001, 0.05, 0.3, 0.7, 0.9999}) {
    for (double as : {ak, 0.5 * (1.0 + ak), 1.0}) {
      std::vector<double> xt(33);
      for (std::size_t i = 0; i < 33; ++i) xt[i] = std::sqrt(ak) * x0[i] + std::sqrt(1.0 - ak) * eps[i];
      for (auto kind : {prediction_type::epsilon, prediction_type::v, prediction_type::sample}) {
        INFO("ak = " << ak << ", as = " << as << ", kind = " << static_cast<int>(kind));
        std::vector<double> m(33);
        for (std::size_t i = 0; i < 33; ++i)
          m[i] = kind == prediction_type::epsilon ? eps[i]
                 : kind == prediction_type::v     ? std::sqrt(ak) * eps[i] - std::sqrt(1.0 - ak) * x0[i]
                                                  : x0[i];
        std::vector<double> x = xt, x0_hat(33);
        const affine_step c = ddim_step(kind, ak, as);
        apply_step(c, std::span<double>(x), std::span<const double>(m), x0_processing::none(), 1, no_noise{}, 0,
                   std::span<double>(x0_hat));
        for (std::size_t i = 0; i < 33; ++i) {
          // ε-prediction divides by √ā: its error is ~1e-16/√ā_k.
          REQUIRE(x0_hat[i] == Approx(x0[i]).margin(1e-12 / std::sqrt(std::min(ak, 0.01) * 100.0)));
          // The η = 0 DDIM step maps x_t to √ā_s·x0 + √(1−ā_s)·ε.
          REQUIRE(x[i] == Approx(std::sqrt(as) * x0[i] + std::sqrt(1.0 - as) * eps[i]).margin(1e-12));
        }
      }
    }
  }
  SECTION("v-prediction at zero terminal SNR (abar_k = 0): x0_hat = -v") {
    std::vector<double> x = eps, m(33), x0_hat(33);
    for (std::size_t i = 0; i < 33; ++i) m[i] = -x0[i];  // v = √0·ε − √1·x0
    apply_step(ddim_step(prediction_type::v, 0.0, 0.4), std::span<double>(x), std::span<const double>(m),
               x0_processing::none(), 1, no_noise{}, 0, std::span<double>(x0_hat));
    for (std::size_t i = 0; i < 33; ++i) {
      REQUIRE(x0_hat[i] == x0[i]);
      REQUIRE(x[i] == Approx(std::sqrt(0.4) * x0[i] + std::sqrt(0.6) * eps[i]).margin(1e-14));
    }
  }
}

namespace {

// torch.quantile(values, q) with linear interpolation, written from its definition: sort, rank q·(n−1).
double torch_quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double rank = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (rank - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// The processed DDIM step written directly (diffusers DDIMScheduler.step with thresholding/clip_sample).
std::vector<double> direct_ddim(double ak, double as, double sigma, const std::vector<double>& x,
                                const std::vector<double>& eps_model, std::size_t num_samples, int mode, double range,
                                double ratio, double max_value, bool reeps, std::vector<double>* x0_out) {
  const std::size_t n = x.size(), per = n / num_samples;
  std::vector<double> out(n), x0(n);
  for (std::size_t i = 0; i < n; ++i) x0[i] = (x[i] - std::sqrt(1.0 - ak) * eps_model[i]) / std::sqrt(ak);
  for (std::size_t s = 0; s < num_samples; ++s) {
    if (mode == 1) {
      for (std::size_t i = s * per; i < (s + 1) * per; ++i) x0[i] = std::min(std::max(x0[i], -range), range);
    } else if (mode == 2) {
      std::vector<double> a;
      for (std::size_t i = s * per; i < (s + 1) * per; ++i) a.push_back(std::abs(x0[i]));
      const double th = std::min(std::max(torch_quantile(a, ratio), 1.0), max_value);
      for (std::size_t i = s * per; i < (s + 1) * per; ++i) x0[i] = std::min(std::max(x0[i], -th), th) / th;
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    const double e = reeps ? (x[i] - std::sqrt(ak) * x0[i]) / std::sqrt(1.0 - ak) : eps_model[i];
    out[i] = std::sqrt(as) * x0[i] + std::sqrt(1.0 - as - sigma * sigma) * e;
  }
  if (x0_out) *x0_out = x0;
  return out;
}

}  // namespace

TEST_CASE("clip_sample and dynamic thresholding against a direct computation", "[steps]") {
  const double ak = 0.2, as = 0.45;
  const std::size_t num_samples = 3, per = 101;
  // Three samples of very different scale: per-sample thresholds s = 1 (clamped up), ~2.x, and max_value.
  std::vector<double> x(num_samples * per), m(num_samples * per);
  const double scales[3] = {0.3, 1.0, 8.0};
  for (std::size_t s = 0; s < num_samples; ++s)
    for (std::size_t i = 0; i < per; ++i) {
      x[s * per + i] = scales[s] * std::sin(0.37 * static_cast<double>(i) + static_cast<double>(s)) * 1.4;
      m[s * per + i] = std::cos(0.11 * static_cast<double>(i * i) + static_cast<double>(s));
    }
  struct variant {
    x0_processing p;
    int mode;
  };
  const variant variants[] = {
      {x0_processing::clip(1.0), 1},
      {x0_processing::clip(2.5), 1},
      {x0_processing::dynamic_threshold(0.995, 1.0), 2},
      {x0_processing::dynamic_threshold(0.995, 5.0), 2},
      {x0_processing::dynamic_threshold(0.9, 3.0), 2},
      {x0_processing::dynamic_threshold(1.0, 5.0), 2},
      {x0_processing::dynamic_threshold(0.5, 5.0), 2},
  };
  for (const auto& v : variants) {
    for (bool reeps : {false, true}) {
      INFO("mode " << v.mode << ", range " << v.p.clip_range << ", ratio " << v.p.dynamic_thresholding_ratio
                   << ", max " << v.p.sample_max_value << ", use_clipped_model_output " << reeps);
      const x0_processing p = v.p.with_clipped_model_output(reeps);
      const double sigma = 0.1;
      std::vector<double> expected_x0;
      const auto expected = direct_ddim(ak, as, sigma, x, m, num_samples, v.mode, v.p.clip_range,
                                        v.p.dynamic_thresholding_ratio, v.p.sample_max_value, reeps, &expected_x0);
      std::vector<double> got = x, got_x0(x.size()), scratch(per);
      apply_step(ddim_step(prediction_type::epsilon, ak, as, sigma_choice{sigma, 0.0}), std::span<double>(got),
                 std::span<const double>(m), p, num_samples, no_noise{}, 0, std::span<double>(got_x0),
                 std::span<double>(scratch));
      for (std::size_t i = 0; i < x.size(); ++i) {
        REQUIRE(got_x0[i] == Approx(expected_x0[i]).margin(1e-13));
        REQUIRE(got[i] == Approx(expected[i]).margin(1e-13));
      }
    }
  }
  SECTION("the processing really changes the result (the checks above are not vacuous)") {
    std::vector<double> plain = x, thr = x, scratch(per);
    const auto c = ddim_step(prediction_type::epsilon, ak, as);
    apply_step(c, std::span<double>(plain), std::span<const double>(m), x0_processing::none());
    apply_step(c, std::span<double>(thr), std::span<const double>(m), x0_processing::dynamic_threshold(0.995, 5.0),
               num_samples, no_noise{}, 0, {}, std::span<double>(scratch));
    CHECK(max_abs_diff(plain, thr) > 0.1);
  }
  SECTION("thresholding is per sample: three samples at once = each sample alone") {
    const auto p = x0_processing::dynamic_threshold(0.995, 5.0);
    const auto c = ddim_step(prediction_type::epsilon, ak, as, sigma_choice{0.1, 0.1});
    std::vector<double> together = x, scratch(per);
    apply_step(c, std::span<double>(together), std::span<const double>(m), p, num_samples, hashed_noise{}, 4, {},
               std::span<double>(scratch));
    for (std::size_t s = 0; s < num_samples; ++s) {
      std::vector<double> alone(x.begin() + static_cast<std::ptrdiff_t>(s * per),
                                x.begin() + static_cast<std::ptrdiff_t>((s + 1) * per));
      const std::vector<double> ms(m.begin() + static_cast<std::ptrdiff_t>(s * per),
                                   m.begin() + static_cast<std::ptrdiff_t>((s + 1) * per));
      apply_step(c, std::span<double>(alone), std::span<const double>(ms), p, 1, hashed_noise{s}, 4, {},
                 std::span<double>(scratch));
      for (std::size_t i = 0; i < per; ++i) REQUIRE(together[s * per + i] == alone[i]);
    }
    // ... and differs from thresholding all samples as one (s would be shared).
    std::vector<double> one = x, big(x.size());
    apply_step(c, std::span<double>(one), std::span<const double>(m), p, 1, hashed_noise{}, 4, {},
               std::span<double>(big));
    CHECK(max_abs_diff(one, together) > 1e-3);
  }
}

TEST_CASE("noise is addressed by (sample, step, element) in blocks", "[steps]") {
  struct recorder {
    std::vector<noise_position>* seen;
    std::vector<std::size_t>* sizes;
    void operator()(std::span<double> out, noise_position at) const {
      seen->push_back(at);
      sizes->push_back(out.size());
      std::fill(out.begin(), out.end(), 1.0);
    }
  };
  std::vector<noise_position> seen;
  std::vector<std::size_t> sizes;
  const std::size_t per = 300;
  std::vector<double> x(2 * per, 0.5), m(2 * per, 0.25);
  const auto c = ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.2, 0.3});
  std::vector<double> before = x;
  apply_step(c, std::span<double>(x), std::span<const double>(m), x0_processing::none(), 2, recorder{&seen, &sizes}, 9);
  // Every element got exactly one draw: blocks cover [0, per) of each sample.
  std::vector<std::size_t> covered(2 * per, 0);
  for (std::size_t k = 0; k < seen.size(); ++k) {
    CHECK(seen[k].step == 9);
    for (std::size_t i = 0; i < sizes[k]; ++i) ++covered[seen[k].sample * per + seen[k].first_element + i];
  }
  for (std::size_t v : covered) REQUIRE(v == 1);
  // noise 1 everywhere: x_s − (noise-free x_s) = noise_std.
  std::vector<double> quiet = before;
  apply_step(c, std::span<double>(quiet), std::span<const double>(m), x0_processing::none());
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(x[i] - quiet[i] == Approx(0.3).epsilon(1e-12));
}

TEST_CASE("DDPM posterior against Gaussian algebra", "[steps]") {
  const std::pair<double, double> pairs[] = {{0.5, 0.6}, {0.01, 0.9}, {0.0047, 0.0049}, {1e-4, 0.9999},
                                             {0.9, 0.9999}, {0.0, 0.3}, {0.2, 1.0}};
  for (auto [ak, as] : pairs) {
    INFO("ak = " << ak << ", as = " << as);
    const ddpm_posterior p = ddpm_posterior_at(ak, as);
    const long double alpha = static_cast<long double>(ak) / as;  // one-step α between the levels
    // q(x_s | x0) = N(√ā_s x0, 1 − ā_s), q(x_k | x_s) = N(√α x_s, 1 − α): posterior precision is the sum.
    if (as < 1.0) {
      const long double var = 1.0L / (1.0L / (1.0L - as) + alpha / (1.0L - alpha));
      const long double c0 = var * std::sqrt(static_cast<long double>(as)) / (1.0L - as);
      const long double ck = var * std::sqrt(alpha) / (1.0L - alpha);
      CHECK(p.posterior_variance == Approx(static_cast<double>(var)).epsilon(1e-10));
      CHECK(p.x0_coeff == Approx(static_cast<double>(c0)).epsilon(1e-10));
      CHECK(p.sample_coeff == Approx(static_cast<double>(ck)).epsilon(1e-10).margin(1e-15));
    } else {  // onto the clean end: x_s = x0 exactly
      CHECK(p.x0_coeff == Approx(1.0).epsilon(1e-15));
      CHECK(p.sample_coeff == 0.0);
    }
    CHECK(p.beta == Approx(static_cast<double>(1.0L - alpha)).epsilon(1e-12));
    // Two-level consistency, ā_k = ā_s·α: E[x_s | x0] = x0_coeff·x0 + sample_coeff·√ā_k·x0 = √ā_s·x0, and the law
    // of total variance: 1 − ā_s = β̃ + sample_coeff²·(1 − ā_k).
    CHECK(p.x0_coeff + p.sample_coeff * std::sqrt(ak) == Approx(std::sqrt(as)).epsilon(1e-12));
    CHECK(p.posterior_variance + p.sample_coeff * p.sample_coeff * (1.0 - ak) ==
          Approx(1.0 - as).epsilon(1e-10).margin(1e-19));
    // Variance types.
    CHECK(p.noise_std(variance_type::fixed_small) == Approx(std::sqrt(p.posterior_variance)).epsilon(1e-15));
    CHECK(p.noise_std(variance_type::fixed_small_log) == Approx(std::sqrt(p.posterior_variance)).epsilon(1e-12));
    CHECK(p.noise_std(variance_type::fixed_large) == Approx(std::sqrt(1.0 - ak / as)).epsilon(1e-12));
    const double fll = p.noise_std(variance_type::fixed_large_log);  // diffusers gives NaN here (README #6)
    CHECK(std::isfinite(fll));
    CHECK(fll == Approx(std::sqrt(1.0 - ak / as)).epsilon(1e-12));
    CHECK(p.learned_noise_std(variance_type::learned, 0.04) == Approx(0.2).epsilon(1e-15));
    CHECK(p.learned_noise_std(variance_type::learned_range, 1.0) == Approx(std::sqrt(p.beta)).epsilon(1e-12));
    CHECK(p.learned_noise_std(variance_type::learned_range, -1.0) ==
          Approx(std::sqrt(p.posterior_variance)).epsilon(1e-12));
    CHECK(p.learned_noise_std(variance_type::learned_range, 0.0) ==
          Approx(std::pow(std::max(p.beta, 1e-20) * p.posterior_variance, 0.25)).epsilon(1e-12));
    CHECK_THROWS_AS(p.noise_std(variance_type::learned), std::invalid_argument);
  }
  // diffusers' 1e-20 floor when the two levels coincide.
  CHECK(ddpm_posterior_at(0.5, 0.5).posterior_variance == 1e-20);
  CHECK(ddpm_posterior_at(0.5, 0.5).sample_coeff == 1.0);

  SECTION("the ancestral step: x_s = x0_coeff*x0_hat + sample_coeff*x + std*z") {
    const double ak = 0.3, as = 0.55;
    const ddpm_posterior p = ddpm_posterior_at(ak, as);
    const std::vector<double> x = vec(20, 1.0, 0.5), m = vec(20, 0.8, 2.0);
    std::vector<double> z(20);
    hashed_noise{}(std::span<double>(z), noise_position{0, 3, 0});
    for (auto kind : {prediction_type::epsilon, prediction_type::v, prediction_type::sample}) {
      for (auto vt : {variance_type::fixed_small, variance_type::fixed_large, variance_type::fixed_large_log}) {
        std::vector<double> got = x;
        apply_step(ddpm_step(kind, ak, as, vt), std::span<double>(got), std::span<const double>(m),
                   x0_processing::none(), 1, hashed_noise{}, 3);
        for (std::size_t i = 0; i < 20; ++i) {
          const double sa = std::sqrt(ak), sb = std::sqrt(1.0 - ak);
          const double x0h = kind == prediction_type::epsilon ? (x[i] - sb * m[i]) / sa
                             : kind == prediction_type::v     ? sa * x[i] - sb * m[i]
                                                              : m[i];
          REQUIRE(got[i] == Approx(p.x0_coeff * x0h + p.sample_coeff * x[i] + p.noise_std(vt) * z[i]).margin(1e-13));
        }
      }
    }
  }
  SECTION("learned variance: per-element std from the model's variance output") {
    const double ak = 0.3, as = 0.55;
    const ddpm_posterior p = ddpm_posterior_at(ak, as);
    const std::vector<double> x = vec(10, 1.0, 0.5), m = vec(10, 0.8, 2.0);
    std::vector<double> v(10);
    for (std::size_t i = 0; i < 10; ++i) v[i] = -1.0 + 0.2 * static_cast<double>(i);  // learned_range values
    const auto ones = [](std::span<double> out, noise_position) { std::fill(out.begin(), out.end(), 1.0); };
    std::vector<double> noisy = x, quiet = x;
    apply_ddpm_learned_step(prediction_type::epsilon, ak, as, variance_type::learned_range, std::span<double>(noisy),
                            std::span<const double>(m), std::span<const double>(v), x0_processing::none(), 1, ones, 0);
    apply_ddpm_learned_step(prediction_type::epsilon, ak, as, variance_type::learned_range, std::span<double>(quiet),
                            std::span<const double>(m), std::span<const double>(v), x0_processing::none(), 1, ones, 0,
                            false);
    for (std::size_t i = 0; i < 10; ++i) {
      const double frac = (v[i] + 1.0) / 2.0;
      const double expected = std::exp(0.5 * (frac * std::log(p.beta) + (1.0 - frac) * std::log(p.posterior_variance)));
      REQUIRE(noisy[i] - quiet[i] == Approx(expected).epsilon(1e-12));
    }
  }
}

TEST_CASE("fused and general kernel paths agree", "[steps]") {
  const std::vector<double> x = vec(700, 1.5, 0.2), m = vec(700, 0.9, 1.7);
  for (auto kind : {prediction_type::epsilon, prediction_type::v, prediction_type::sample}) {
    for (const affine_step& c : {ddim_step(kind, 0.35, 0.6, sigma_choice{0.3, 0.3}), ddim_step(kind, 0.6, 0.35),
                                 ddpm_step(kind, 0.2, 0.9, variance_type::fixed_small)}) {
      std::vector<double> fused = x, general = x, x0(700), huge_clip = x;
      // Fused: no processing, no x0_out. General: x0_out requested, or a clip that never bites.
      apply_step(c, std::span<double>(fused), std::span<const double>(m), x0_processing::none(), 2, hashed_noise{}, 1);
      apply_step(c, std::span<double>(general), std::span<const double>(m), x0_processing::none(), 2, hashed_noise{},
                 1, std::span<double>(x0));
      apply_step(c, std::span<double>(huge_clip), std::span<const double>(m), x0_processing::clip(1e300), 2,
                 hashed_noise{}, 1);
      for (std::size_t i = 0; i < 700; ++i) {
        REQUIRE(general[i] == Approx(fused[i]).margin(1e-13));
        REQUIRE(huge_clip[i] == Approx(fused[i]).margin(1e-13));
      }
    }
  }
}

TEST_CASE("float and double tensors agree to float precision", "[steps]") {
  SECTION("one step") {
    const std::vector<double> x = vec(257, 1.5, 0.2), m = vec(257, 0.9, 1.7);
    for (const affine_step& c : {ddim_step(prediction_type::epsilon, 0.35, 0.6, sigma_choice{0.3, 0.3}),
                                 ddpm_step(prediction_type::v, 0.2, 0.9, variance_type::fixed_large)}) {
      for (const auto& p : {x0_processing::none(), x0_processing::clip(1.0), x0_processing::dynamic_threshold(0.9, 2.0)}) {
        std::vector<double> xd = x, sd(257);
        std::vector<float> xf(x.begin(), x.end()), mf(m.begin(), m.end()), sf(257);
        apply_step(c, std::span<double>(xd), std::span<const double>(m), p, 1, hashed_noise{}, 0, {},
                   std::span<double>(sd));
        apply_step(c, std::span<float>(xf), std::span<const float>(mf), p, 1, hashed_noise{}, 0, {},
                   std::span<float>(sf));
        for (std::size_t i = 0; i < 257; ++i) REQUIRE(static_cast<double>(xf[i]) == Approx(xd[i]).margin(2e-6));
      }
    }
  }
  SECTION("a 50-step eta = 0.5 DDIM chain") {
    const auto sched = noise_schedule<>::scaled_linear(1000);
    const ddim_sampler s(sched, timestep_schedule::trailing(1000, 50), eta{0.5});
    std::vector<double> xd = normals(64, 21);
    std::vector<float> xf(xd.begin(), xd.end());
    s.sample(toy_predictor{}, xd, hashed_noise{});
    s.sample(toy_predictor{}, xf, hashed_noise{});
    double worst = 0.0;
    for (std::size_t i = 0; i < 64; ++i) {
      REQUIRE(std::isfinite(xf[i]));
      worst = std::max(worst, std::abs(static_cast<double>(xf[i]) - xd[i]));
    }
    INFO("max |float - double| = " << worst);
    CHECK(worst < 1e-4);
  }
}

TEST_CASE("zero terminal SNR with v-prediction and eta = 1 stays finite (README #7)", "[steps]") {
  const auto sched = noise_schedule<>::linear(1000).rescale_zero_terminal_snr();
  sampler_options opt;
  opt.prediction = prediction_type::v;
  const ddim_sampler s(sched, timestep_schedule::trailing(1000, 7), eta{1.0}, opt);
  // First step: ā_k = 0, so σ² = 1 − ā_s and the direction term is exactly 0 (clamped radicand, not NaN).
  CHECK(s.coefficients()[0].eps_weight == 0.0);
  std::vector<float> x(128);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(normal_at(3, 0, i));
  s.sample(toy_predictor{}, x, hashed_noise{});
  for (float v : x) REQUIRE(std::isfinite(v));
}
