// Numerical robustness (issue 7): float32 tensors with the library's double coefficients, against the same run on
// double tensors, across every schedule at T = 1000 and 4000, the cosine schedule's tails (ā near 0 and near 1),
// zero-terminal-SNR schedules with v-prediction, and 1000-step chains (DDIM η = 0 and η = 1, ancestral DDPM, DDIM
// inversion). Every run must stay finite, and the float run must stay within a stated bound of the double run.
//
// The predictor is a smooth, bounded "trained denoiser": x̂0 = 0.8·tanh(x + 0.1·sin k) at every level, expressed in
// the sampler's prediction type (ε = (x − √ā·x̂0)/√(1−ā), v = (√ā·x − x̂0)/√(1−ā), or x̂0 itself). It is evaluated in
// double from the (float or double) sample and its output rounded to the tensor's type, so the comparison measures
// the library's float arithmetic plus one rounding of each model output, not a float model. Both runs start from the
// same float-representable x_T; stochastic runs use philox_normal, whose float draws differ from the double ones by
// <= 2e-6 (random.hpp), which is part of what is measured.
//
// Deviation measure: dev = max_k |x_float[k] − x_double[k]| / max(1, max_k |x_double[k]|), i.e. relative to the
// tensor's max norm (elementwise relative error is meaningless at zero crossings).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "skipstep/skipstep.hpp"

using namespace skipstep;

namespace {

constexpr std::size_t elements_n = 64;

enum class chain { ddim_eta0, ddim_eta1, ddpm, inversion };

const char* chain_name(chain c) {
  switch (c) {
    case chain::ddim_eta0: return "DDIM eta=0";
    case chain::ddim_eta1: return "DDIM eta=1";
    case chain::ddpm: return "DDPM fixed_small";
    case chain::inversion: return "DDIM inversion";
  }
  return "?";
}

const char* prediction_name(prediction_type p) {
  switch (p) {
    case prediction_type::epsilon: return "epsilon";
    case prediction_type::v: return "v";
    case prediction_type::sample: return "sample";
    case prediction_type::flow: return "flow";
  }
  return "?";
}

/// The denoiser, as a writing predictor for tensors of T.
template <class T>
struct smooth_denoiser {
  const noise_schedule<>* schedule;
  prediction_type kind;
  void operator()(const std::vector<T>& x, std::int64_t t, std::span<T> out) const {
    const double a = schedule->alpha_cumprod(static_cast<std::size_t>(t));
    const double sa = std::sqrt(a), sb = std::sqrt(1.0 - a);
    for (std::size_t k = 0; k < x.size(); ++k) {
      const double xv = static_cast<double>(x[k]);
      const double x0 = 0.8 * std::tanh(xv + 0.1 * std::sin(static_cast<double>(k)));
      double m = x0;
      if (kind == prediction_type::epsilon) m = (xv - sa * x0) / sb;
      if (kind == prediction_type::v) m = (sa * xv - x0) / sb;
      out[k] = static_cast<T>(m);
    }
  }
};

/// The starting tensor, float-representable so both runs start from the same values: standard normals for sampling,
/// data-like values in (−0.8, 0.8) for inversion.
std::vector<double> start_values(chain c) {
  std::vector<double> z(elements_n);
  philox_normal(2024).fill(std::span<double>(z), 0, 0);
  for (double& v : z) {
    if (c == chain::inversion) v = 0.8 * std::tanh(v);
    v = static_cast<double>(static_cast<float>(v));
  }
  return z;
}

template <class T>
std::vector<double> run_chain(const noise_schedule<>& schedule, const timestep_schedule& ts, chain c,
                              prediction_type kind) {
  sampler_options opt;
  opt.prediction = kind;
  const auto init = start_values(c);
  std::vector<T> x(init.begin(), init.end());
  const smooth_denoiser<T> model{&schedule, kind};
  const philox_normal rng(77);
  switch (c) {
    case chain::ddim_eta0: ddim_sampler(schedule, ts, eta{0.0}, opt).sample(model, x); break;
    case chain::ddim_eta1: ddim_sampler(schedule, ts, eta{1.0}, opt).sample(model, x, rng); break;
    case chain::ddpm: ddpm_sampler(schedule, ts, variance_type::fixed_small, opt).sample(model, x, rng); break;
    case chain::inversion: ddim_inverse_sampler(schedule, ts, opt).sample(model, x); break;
  }
  return {x.begin(), x.end()};
}

struct comparison {
  double deviation = 0.0;
  double scale = 0.0;
  bool finite = true;
};

comparison compare(const noise_schedule<>& schedule, const timestep_schedule& ts, chain c, prediction_type kind) {
  const auto f = run_chain<float>(schedule, ts, c, kind);
  const auto d = run_chain<double>(schedule, ts, c, kind);
  comparison r;
  double diff = 0.0;
  for (std::size_t k = 0; k < f.size(); ++k) {
    r.finite = r.finite && std::isfinite(f[k]) && std::isfinite(d[k]);
    diff = std::max(diff, std::abs(f[k] - d[k]));
    r.scale = std::max(r.scale, std::abs(d[k]));
  }
  r.deviation = diff / std::max(1.0, r.scale);
  return r;
}

/// SKIPSTEP_NUMERICS_REPORT=1 prints every measured deviation (how the bounds below were measured).
void report(const std::string& name, const comparison& r) {
  if (std::getenv("SKIPSTEP_NUMERICS_REPORT") != nullptr)
    std::printf("numerics: %-75s deviation %.3e  max|x| %.3f\n", name.c_str(), r.deviation, r.scale);
}

struct schedule_case {
  std::string name;
  noise_schedule<> schedule;
  bool zero_snr;
};

std::vector<schedule_case> schedules(std::size_t big_t) {
  return {
      {"linear", noise_schedule<>::linear(big_t), false},
      {"scaled_linear", noise_schedule<>::scaled_linear(big_t), false},
      {"cosine", noise_schedule<>::cosine(big_t), false},
      {"linear+zero-SNR", noise_schedule<>::linear(big_t).rescale_zero_terminal_snr(), true},
      {"scaled_linear+zero-SNR", noise_schedule<>::scaled_linear(big_t).rescale_zero_terminal_snr(), true},
      {"cosine+zero-SNR", noise_schedule<>::cosine(big_t).rescale_zero_terminal_snr(), true},
  };
}

// Bounds: each is the largest deviation measured over the cases of its test (g++ 12 -O2 and clang 14, x86-64;
// SKIPSTEP_NUMERICS_REPORT=1 prints them), times a margin of about 4, stated next to it.
// 1000-step chains: measured 2.39e-5 (cosine T = 4000, v, DDIM inversion, max |x| 38; the non-inversion chains
// measured <= 4.1e-6): bound 1e-4.
constexpr double chain_bound = 1e-4;
// Tails, v and sample prediction: measured 2.4e-5: bound 1e-4.
constexpr double tail_bound = 1e-4;
// Tails, epsilon prediction: the model's own float rounding u·|ε̂| (u = 2^-24) is divided by √ā at the first step,
// x̂0 = (x − √(1−ā)·ε̂)/√ā, so no float implementation can do better than about u/√ā_first; at the cosine schedule's
// end ā_{T−1} = 2.4e-9 (T = 1000) and 1.5e-10 (T = 4000) that is 1.2e-3 and 4.8e-3. Bound: 1e-4 + 2·u/√ā_first;
// measured where that term dominates (ā_first < 1e-6): dev / (u/√ā_first) <= 0.46 (cosine T = 4000, trailing
// N = 5, epsilon, DDIM η = 1), i.e. a margin of ~4.
constexpr double unit_roundoff = 0x1p-24;
double epsilon_tail_bound(double first_alpha_cumprod) {
  return tail_bound + 2.0 * unit_roundoff / std::sqrt(first_alpha_cumprod);
}

}  // namespace

TEST_CASE("float32 tensors stay finite and within a stated bound of double: 1000-step chains, all schedules",
          "[numerics]") {
  double worst = 0.0;
  std::string worst_case;
  for (std::size_t big_t : {std::size_t{1000}, std::size_t{4000}}) {
    // 1000 steps whatever T: trailing spacing starts at T − 1 (the noisiest level, ā = 0 for zero-SNR schedules).
    const auto ts = timestep_schedule::trailing(big_t, 1000);
    for (const auto& sc : schedules(big_t)) {
      for (prediction_type kind : {prediction_type::epsilon, prediction_type::v}) {
        if (sc.zero_snr && kind == prediction_type::epsilon) continue;  // a domain_error, see test_errors.cpp
        for (chain c : {chain::ddim_eta0, chain::ddim_eta1, chain::ddpm, chain::inversion}) {
          const std::string name = sc.name + " T=" + std::to_string(big_t) + " " + prediction_name(kind) + " " +
                                   chain_name(c);
          const comparison r = compare(sc.schedule, ts, c, kind);
          report(name, r);
          INFO(name << ": deviation " << r.deviation << " (max |x| " << r.scale << ")");
          REQUIRE(r.finite);
          CHECK(r.deviation <= chain_bound);
          if (r.deviation > worst) {
            worst = r.deviation;
            worst_case = name;
          }
        }
      }
    }
  }
  WARN("float32 vs double, 1000-step chains: worst deviation " << worst << " (" << worst_case << "), bound "
                                                               << chain_bound);
}

TEST_CASE("cosine schedule tails: a near 0 and near 1 in float32", "[numerics]") {
  double worst = 0.0, worst_ratio = 0.0;
  std::string worst_case, worst_ratio_case;
  for (std::size_t big_t : {std::size_t{1000}, std::size_t{4000}}) {
    const auto cosine = noise_schedule<>::cosine(big_t);
    // The ends of the table: ā_{T−1} is tiny (β is capped at 0.999), ā_0 is within 1e-4 of 1.
    REQUIRE(cosine.alpha_cumprod(big_t - 1) < 1e-7);
    REQUIRE(cosine.alpha_cumprod(0) > 0.9999);
    // Near 0: few steps from t = T−1 (large ā jumps), and single steps out of the tail.
    // Near 1: the last steps of a fine list onto ā = 1 and onto ā_0 (final_alpha::alpha_cumprod_0).
    const std::vector<std::pair<std::string, timestep_schedule>> lists = {
        {"trailing N=5", timestep_schedule::trailing(big_t, 5)},
        {"trailing N=1000", timestep_schedule::trailing(big_t, 1000)},
        {"tail only [T-1, T-2, T-3]",
         timestep_schedule::custom(big_t, std::vector<std::int64_t>{static_cast<std::int64_t>(big_t) - 1,
                                                                   static_cast<std::int64_t>(big_t) - 2,
                                                                   static_cast<std::int64_t>(big_t) - 3})},
        {"head only [3, 2, 1, 0]", timestep_schedule::custom(big_t, std::vector<std::int64_t>{3, 2, 1, 0})},
        {"head only, final a_0", timestep_schedule::custom(big_t, std::vector<std::int64_t>{3, 2, 1, 0})
                                      .with_final_alpha(final_alpha::alpha_cumprod_0)},
    };
    for (const auto& [list_name, ts] : lists) {
      for (prediction_type kind : {prediction_type::epsilon, prediction_type::v, prediction_type::sample}) {
        for (chain c : {chain::ddim_eta0, chain::ddim_eta1, chain::ddpm, chain::inversion}) {
          // Sample prediction at ā = 1 has no ε̂ (a documented domain_error): inversion starts there.
          if (kind == prediction_type::sample && c == chain::inversion &&
              ts.after_last() == final_alpha::one)
            continue;
          const std::string name = "cosine T=" + std::to_string(big_t) + " " + list_name + " " +
                                   prediction_name(kind) + " " + chain_name(c);
          const comparison r = compare(cosine, ts, c, kind);
          report(name, r);
          // ā where the chain starts: the first timestep when sampling, the top of the list for inversion (its
          // first model evaluation is at the lowest timestep, but x̂0 is taken at the level it comes from).
          const double first_level =
              c == chain::inversion ? 1.0 : cosine.alpha_cumprod(static_cast<std::size_t>(ts[0]));
          const bool amplified = kind == prediction_type::epsilon;
          const double bound = amplified ? epsilon_tail_bound(first_level) : tail_bound;
          INFO(name << ": deviation " << r.deviation << " (max |x| " << r.scale << "), bound " << bound);
          REQUIRE(r.finite);
          CHECK(r.deviation <= bound);
          if (amplified && first_level < 1e-6) {  // where the amplification dominates the 1e-4 floor
            const double ratio = r.deviation / (unit_roundoff / std::sqrt(first_level));
            if (ratio > worst_ratio) {
              worst_ratio = ratio;
              worst_ratio_case = name;
            }
          } else if (!amplified && r.deviation > worst) {
            worst = r.deviation;
            worst_case = name;
          }
        }
      }
    }
  }
  WARN("float32 vs double, cosine tails: v/sample worst deviation "
       << worst << " (" << worst_case << "), bound " << tail_bound << "; epsilon worst deviation/(u/sqrt(abar_first)) "
       << worst_ratio << " (" << worst_ratio_case << "), bound ratio 2 + 1e-4 absolute");
}

TEST_CASE("zero-terminal-SNR schedules with v-prediction start exactly at a = 0 and stay finite in float32",
          "[numerics]") {
  for (std::size_t big_t : {std::size_t{1000}, std::size_t{4000}}) {
    for (const auto& sc : schedules(big_t)) {
      if (!sc.zero_snr) continue;
      REQUIRE(sc.schedule.has_zero_terminal_snr());
      sampler_options opt;
      opt.prediction = prediction_type::v;
      opt.check_finite = true;  // every model output and every sample, every step
      const auto ts = timestep_schedule::trailing(big_t, 50);
      REQUIRE(ts[0] == static_cast<std::int64_t>(big_t) - 1);
      std::vector<float> x(elements_n, 0.0f);
      const auto init = start_values(chain::ddim_eta0);
      std::copy(init.begin(), init.end(), x.begin());
      const smooth_denoiser<float> model{&sc.schedule, prediction_type::v};
      // At ā = 0, v = −x̂0 and x̂0 = −v exactly: the first step's x̂0 is the model's, whatever x_T is.
      REQUIRE_NOTHROW(ddim_sampler(sc.schedule, ts, eta{1.0}, opt).sample(model, x, philox_normal(5)));
      for (float v : x) REQUIRE(std::abs(v) <= 0.8f * 1.0001f);  // the last step lands on x̂0 = 0.8·tanh(·)
    }
  }
}
