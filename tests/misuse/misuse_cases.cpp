// The bad-input and misuse program (reliability issue): a table of named cases over the whole public API,
// each run in its own process so that a crash, a sanitizer report or a hang fails that case alone.
//
//   misuse_cases --list       the case names, one per line
//   misuse_cases --run NAME   runs one case in this process (exit 0: passed); the reproducer of a failure
//   misuse_cases --all        runs every case in a child process (this program re-executed with --run NAME),
//                             each under a 20 s alarm; prints one line per failure with its reason, then
//                             "misuse: N cases, P passed, F failed", and exits non-zero if F > 0
//
// Each case states its expectation with one of the helpers below: expect_error (the exception type, and a
// message that starts with the function the caller called and names the argument and the value), or a legal
// call whose output is finite, that writes nothing outside the caller's data (guarded buffers) and leaves
// read-only inputs unchanged, or that is bit-identical to a reference call.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <typeinfo>
#include <vector>

#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/serving/batch.hpp"
#include "skipstep/skipstep.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/testing/gaussian_mixture.hpp"
#include "skipstep/testing/sliced_wasserstein.hpp"

#if defined(SKIPSTEP_HAVE_EIGEN) && __has_include(<Eigen/Core>)
#define MISUSE_EIGEN 1
#include "skipstep/backend/eigen.hpp"
#include "skipstep/backend/eigen_tensor.hpp"
#endif
#if defined(SKIPSTEP_HAVE_XTENSOR) && \
    (__has_include(<xtensor/xarray.hpp>) || __has_include(<xtensor/containers/xarray.hpp>))
#define MISUSE_XTENSOR 1
#include "skipstep/backend/xtensor.hpp"
#endif

extern char** environ;

namespace {

using namespace skipstep;
using dvec = std::vector<double>;
using fvec = std::vector<float>;
using ivec = std::vector<std::int64_t>;

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();
constexpr double denorm_v = std::numeric_limits<double>::denorm_min();
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();

// --- expectations ------------------------------------------------------------------------------------------

/// A case's expectation that did not hold.
struct failure {
  std::string reason;
};
[[noreturn]] void fail(std::string reason) {
  throw failure{std::move(reason)};
}
void expect(bool ok, const std::string& what) {
  if (!ok)
    fail(what);
}

/// f() must throw exactly E, with a message that starts with "skipstep::<function>" (the function the caller
/// called) and contains `argument` and "(got <value>)".
template <class E, class F>
void expect_error(F&& f, std::string_view function, std::string_view argument, std::string_view value) {
  const std::string prefix = "skipstep::" + std::string(function);
  const std::string got = "(got " + std::string(value) + ")";
  try {
    f();
  } catch (const E& e) {
    const std::string what = e.what();
    if (typeid(e) != typeid(E))
      fail("threw a subclass " + std::string(typeid(e).name()) + ": " + what);
    if (!what.starts_with(prefix))
      fail("message does not start with '" + prefix + "': " + what);
    if (what.find(argument) == std::string::npos)
      fail("message does not name '" + std::string(argument) + "': " + what);
    if (what.find(got) == std::string::npos)
      fail("message does not contain '" + got + "': " + what);
    return;
  } catch (const failure&) {
    throw;
  } catch (const std::exception& e) {
    fail(std::string("threw ") + typeid(e).name() + " instead of " + typeid(E).name() + ": " + e.what());
  } catch (...) {
    fail("threw a non-std exception");
  }
  fail(std::string("did not throw ") + typeid(E).name() + " (expected '" + prefix + "... " + got + ")')");
}

template <class T>
void expect_finite(std::span<const T> v, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      fail(std::string(what) + "[" + std::to_string(i) + "] is not finite (" +
           std::to_string(static_cast<double>(v[i])) + ")");
}

template <class T>
bool same_bits(std::span<const T> a, std::span<const T> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
template <class T>
void expect_same_bits(std::span<const T> a, std::span<const T> b, const char* what) {
  expect(same_bits(a, b), std::string(what) + ": not bit-identical to the reference call");
}

/// n elements of the caller's data with guard cells on both sides: check() fails if anything wrote outside.
template <class T>
struct guarded {
  static constexpr std::size_t pad = 64;
  static constexpr T sentinel = static_cast<T>(-7777.25);
  std::vector<T> raw;
  std::size_t n;
  explicit guarded(std::size_t count, std::span<const T> init = {})
      : raw(count + 2 * pad, sentinel), n(count) {
    std::copy(init.begin(), init.end(), raw.begin() + pad);
    if (init.empty())
      std::fill(raw.begin() + pad, raw.begin() + pad + static_cast<std::ptrdiff_t>(n), T(0));
  }
  std::span<T> span() { return {raw.data() + pad, n}; }
  std::span<const T> cspan() const { return {raw.data() + pad, n}; }
  void check(const char* what) const {
    for (std::size_t i = 0; i < pad; ++i)
      if (std::memcmp(&raw[i], &sentinel, sizeof(T)) != 0 ||
          std::memcmp(&raw[pad + n + i], &sentinel, sizeof(T)) != 0)
        fail(std::string("a write outside ") + what + " (guard cell " + std::to_string(i) + " changed)");
  }
};

// --- shared inputs -----------------------------------------------------------------------------------------

template <class T>
std::vector<T> start(std::size_t n, double phase = 0.0) {
  std::vector<T> x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = static_cast<T>(1.3 * std::cos(0.7 * static_cast<double>(i) + phase));
  return x;
}

/// A smooth stand-in network writing m = 0.6·tanh(x) + 0.3·sin(x + 0.002·t) for any tensor type.
template <class T>
struct smooth {
  template <class X>
  void operator()(const X& x, std::int64_t t, std::span<T> out) const {
    const auto xs = skipstep::elements(x);
    for (std::size_t i = 0; i < out.size(); ++i) {
      const double v = static_cast<double>(xs[i % xs.size()]);
      out[i] = static_cast<T>(0.6 * std::tanh(v) + 0.3 * std::sin(v + 0.002 * static_cast<double>(t)));
    }
  }
};

const noise_schedule<>& sched() {
  static const auto s = noise_schedule<>::linear(1000);
  return s;
}
const timestep_schedule& steps10() {
  static const auto t = timestep_schedule::linspace(1000, 10);
  return t;
}

x0_processing edited(void (*edit)(x0_processing&)) {
  x0_processing p;
  edit(p);
  return p;
}

/// The reference run of `s` on a std::vector (x_T = start(n)), then the same run on the tensor `x` (filled
/// with x_T): both must be bit-identical.
template <class T, class X, class Noise>
void expect_like_vector(const sampler& s, X& x, Noise noise) {
  std::vector<T> ref = start<T>(elements(std::as_const(x)).size());
  const std::vector<T> x_T = ref;
  s.sample(smooth<T>{}, ref, noise);
  auto xs = elements(x);
  std::copy(x_T.begin(), x_T.end(), xs.begin());
  s.sample(smooth<T>{}, x, noise);
  expect_same_bits<T>(elements(std::as_const(x)), ref, "sample on this tensor type");
}

/// x after the first k steps of s (via a cancelling callback).
template <class T, class Noise>
std::vector<T> after_steps(const sampler& s, std::vector<T> x, Noise noise, std::size_t k) {
  if (k == 0)
    return x;
  s.sample(smooth<T>{}, x, noise, [k](const step_info& i, auto, auto) { return i.step_index + 1 < k; });
  return x;
}

// --- the cases ---------------------------------------------------------------------------------------------

struct misuse_case {
  const char* name;
  void (*run)();
};

using IA = std::invalid_argument;
using DE = std::domain_error;

const misuse_case cases[] = {
    // noise_schedule
    {"schedule.linear_T0",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::linear(0); }, "noise_schedule::linear",
                        "num_train_timesteps", "0");
     }},
    {"schedule.linear_beta_nan",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::linear(10, nan_v); }, "noise_schedule::linear",
                        "beta_start", "nan");
     }},
    {"schedule.scaled_linear_beta_inf",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::scaled_linear(10, 1e-3, inf_v); },
                        "noise_schedule::scaled_linear", "beta_end", "inf");
     }},
    {"schedule.linear_start_above_end",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::linear(10, 0.5, 0.25); }, "noise_schedule::linear",
                        "beta_start", "0.5");
     }},
    {"schedule.cosine_max_beta_nan",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::cosine(10, nan_v); }, "noise_schedule::cosine",
                        "max_beta", "nan");
     }},
    {"schedule.from_betas_empty",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::from_betas({}); }, "noise_schedule::from_betas",
                        "betas.size()", "0");
     }},
    {"schedule.from_betas_one_before_end",
     [] {
       expect_error<IA>(
           [] {
             (void)noise_schedule<>::from_betas(dvec{0.5, 1.0, 0.5});
           },
           "noise_schedule::from_betas", "betas[1]", "1");
     }},
    {"schedule.from_betas_negative",
     [] {
       expect_error<IA>(
           [] {
             (void)noise_schedule<>::from_betas(dvec{0.1, -0.0});
           },
           "noise_schedule::from_betas", "betas[1]", "-0");
     }},
    {"schedule.float_beta_rounds_to_zero",
     [] {
       expect_error<IA>(
           [] {
             (void)noise_schedule<float>::from_betas(dvec{0.1, 1e-50});
           },
           "noise_schedule::from_betas", "betas[1]", "1e-50");
     }},
    {"schedule.from_alphas_cumprod_nan",
     [] {
       expect_error<IA>(
           [] {
             (void)noise_schedule<>::from_alphas_cumprod(dvec{0.9, nan_v});
           },
           "noise_schedule::from_alphas_cumprod", "alphas_cumprod[1]", "nan");
     }},
    {"schedule.from_alphas_cumprod_increasing",
     [] {
       expect_error<IA>(
           [] {
             (void)noise_schedule<>::from_alphas_cumprod(dvec{0.5, 0.75});
           },
           "noise_schedule::from_alphas_cumprod", "alphas_cumprod[1]", "0.75");
     }},
    {"schedule.from_alphas_cumprod_one",
     [] {
       expect_error<IA>(
           [] {
             (void)noise_schedule<>::from_alphas_cumprod(dvec{1.0, 0.5});
           },
           "noise_schedule::from_alphas_cumprod", "alphas_cumprod[0]", "1");
     }},
    {"schedule.from_alphas_cumprod_empty",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::from_alphas_cumprod({}); },
                        "noise_schedule::from_alphas_cumprod", "alphas_cumprod.size()", "0");
     }},
    {"schedule.rescale_T1",
     [] {
       expect_error<IA>([] { (void)noise_schedule<>::linear(1).rescale_zero_terminal_snr(); },
                        "noise_schedule::rescale_zero_terminal_snr", "num_train_timesteps", "1");
     }},
    {"schedule.alpha_cumprod_index_T",
     [] {
       expect_error<std::out_of_range>([] { (void)sched().alpha_cumprod(1000); },
                                       "noise_schedule::alpha_cumprod", "t", "1000");
     }},
    {"schedule.snr_index_huge",
     [] {
       expect_error<std::out_of_range>([] { (void)sched().snr(size_max); }, "noise_schedule::snr", "t",
                                       "18446744073709551615");
     }},
    {"schedule.denormal_beta_legal",
     [] {
       // β_0 = 5e-324 is in (0, 1]: ā_0 rounds to 1. Sampling over it must stay finite.
       const auto s = noise_schedule<>::from_betas(dvec{denorm_v, 0.01, 0.02, 0.5});
       const ddim_sampler d(s, timestep_schedule::custom(4, ivec{3, 2, 1, 0}), eta{1.0});
       dvec x = start<double>(16);
       d.sample(smooth<double>{}, x, philox_normal(3));
       expect_finite<double>(x, "x");
     }},
    {"schedule.T1_legal",
     [] {
       const auto s = noise_schedule<>::linear(1, 0.3, 0.3);
       const ddpm_sampler d(s, timestep_schedule::linspace(1, 1));
       dvec x = start<double>(5);
       d.sample(smooth<double>{}, x, philox_normal(1));
       expect_finite<double>(x, "x");
     }},

    // timestep_schedule
    {"timesteps.N0",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::trailing(1000, 0); }, "timestep_schedule::trailing",
                        "num_steps", "0");
     }},
    {"timesteps.N_above_T",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::uniform(10, 11); }, "timestep_schedule::uniform",
                        "num_steps", "11");
     }},
    {"timesteps.leading_offset_wraps",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::leading(1000, 10, size_max); },
                        "timestep_schedule::leading", "steps_offset", "18446744073709551615");
     }},
    {"timesteps.leading_offset_reaches_T",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::leading(1000, 10, 100); }, "timestep_schedule::leading",
                        "outside [0, T = 1000)", "100");
     }},
    {"timesteps.quadratic_T_too_big",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::quadratic(2'000'000, 10); },
                        "timestep_schedule::quadratic", "num_train_timesteps", "2000000");
     }},
    {"timesteps.custom_negative",
     [] {
       expect_error<IA>(
           [] {
             (void)timestep_schedule::custom(1000, ivec{10, -1});
           },
           "timestep_schedule::custom", "timesteps[1]", "-1");
     }},
    {"timesteps.custom_duplicate",
     [] {
       expect_error<IA>(
           [] {
             (void)timestep_schedule::custom(1000, ivec{10, 10});
           },
           "timestep_schedule::custom", "timesteps[1]", "10");
     }},
    {"timesteps.custom_increasing",
     [] {
       expect_error<IA>(
           [] {
             (void)timestep_schedule::custom(1000, ivec{10, 20});
           },
           "timestep_schedule::custom", "timesteps[1]", "20");
     }},
    {"timesteps.custom_t_equals_T",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::custom(1000, ivec{1000}); },
                        "timestep_schedule::custom", "timesteps[0]", "1000");
     }},
    {"timesteps.custom_empty",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::custom(1000, {}); }, "timestep_schedule::custom",
                        "timesteps.size()", "0");
     }},
    {"timesteps.custom_T_beyond_int64",
     [] {
       expect_error<IA>(
           [] {
             (void)timestep_schedule::custom(size_max, ivec{5, 3});
           },
           "timestep_schedule::custom", "num_train_timesteps", "18446744073709551615");
     }},
    {"timesteps.linspace_T_beyond_int64",
     [] {
       expect_error<IA>([] { (void)timestep_schedule::linspace(size_max, 1); }, "timestep_schedule::linspace",
                        "num_train_timesteps", "18446744073709551615");
     }},
    {"timesteps.double_spacing_T_above_2p53",
     [] {
       const auto big = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
       expect_error<IA>([&] { (void)timestep_schedule::trailing(big, 1); }, "timestep_schedule::trailing",
                        "num_train_timesteps", "9223372036854775807");
       expect_error<IA>([&] { (void)timestep_schedule::linspace(big, 2); }, "timestep_schedule::linspace",
                        "num_train_timesteps", "9223372036854775807");
     }},
    {"timesteps.index_N",
     [] {
       expect_error<std::out_of_range>([] { (void)steps10()[10]; }, "timestep_schedule::operator[]", "i",
                                       "10");
     }},
    {"timesteps.final_alpha_bad_enum",
     [] {
       expect_error<IA>([] { (void)steps10().with_final_alpha(static_cast<final_alpha>(7)); },
                        "timestep_schedule::with_final_alpha", "f", "7");
     }},
    {"timesteps.every_factory_small_T_legal",
     [] {
       // Every spacing rule, for every N <= T on small T, gives a valid list of exactly N entries.
       for (std::size_t T : {1u, 2u, 3u, 7u, 64u})
         for (std::size_t n = 1; n <= T; ++n) {
           expect(timestep_schedule::leading(T, n).size() == n, "leading size");
           expect(timestep_schedule::trailing(T, n).size() == n, "trailing size");
           expect(timestep_schedule::linspace(T, n).size() == n, "linspace size");
           expect(timestep_schedule::uniform(T, n).size() == n, "uniform size");
           expect(timestep_schedule::quadratic(T, n).size() == n, "quadratic size");
         }
     }},

    // transitions and conventions
    {"transitions.mismatched_T",
     [] {
       expect_error<IA>([] { (void)ddim_transitions(sched(), timestep_schedule::linspace(500, 5)); },
                        "ddim_transitions", "timesteps.num_train_timesteps()", "500");
     }},
    {"transitions.bad_convention_enum",
     [] {
       expect_error<IA>([] { (void)ddim_transitions(sched(), steps10(), static_cast<step_convention>(5)); },
                        "ddim_transitions", "convention", "5");
     }},
    {"transitions.bad_convention_in_sampler",
     [] {
       sampler_options o;
       o.convention = static_cast<step_convention>(5);
       expect_error<IA>([&] { (void)ddpm_sampler(sched(), steps10(), variance_type::fixed_small, o); },
                        "ddpm_sampler", "convention", "5");
       expect_error<IA>([&] { (void)ddim_inverse_sampler(sched(), steps10(), o); }, "ddim_inverse_sampler",
                        "convention", "5");
     }},
    {"transitions.bad_final_alpha_in_sampler",
     [] {
       // A timestep_schedule whose final_alpha was cast from a bad int cannot be made; a sampler never sees
       // one.
       expect_error<IA>(
           [] { (void)ddim_sampler(sched(), steps10().with_final_alpha(static_cast<final_alpha>(-3))); },
           "timestep_schedule::with_final_alpha", "f", "-3");
     }},

    // prediction types
    {"prediction.parse_unknown",
     [] {
       expect_error<IA>([] { (void)parse_prediction_type("eps"); }, "parse_prediction_type", "name", "eps");
     }},
    {"prediction.coefficients_bad_enum",
     [] {
       expect_error<IA>([] { (void)prediction_coefficients_at(static_cast<prediction_type>(9), 0.5); },
                        "prediction_coefficients_at", "prediction type", "9");
     }},
    {"prediction.coefficients_alpha_nan",
     [] {
       expect_error<IA>([] { (void)prediction_coefficients_at(prediction_type::v, nan_v); },
                        "prediction_coefficients_at", "alpha_cumprod", "nan");
     }},
    {"prediction.bad_enum_in_ddim_sampler",
     [] {
       sampler_options o;
       o.prediction = static_cast<prediction_type>(-1);
       expect_error<IA>([&] { (void)ddim_sampler(sched(), steps10(), eta{0.0}, o); },
                        "ddim_sampler: step 0 (t = 999)", "prediction type", "-1");
     }},
    {"prediction.bad_enum_ddpm_identity_step",
     [] {
       // Between equal levels DDPM skips x̂0's map for sample prediction; a bad enum must not slip through
       // there.
       expect_error<IA>(
           [] { (void)ddpm_step(static_cast<prediction_type>(9), 0.5, 0.5, variance_type::fixed_small); },
           "ddpm_step", "prediction type", "9");
     }},

    // sigma policies
    {"sigma.eta_negative", [] { expect_error<IA>([] { (void)eta{-0.5}; }, "eta", "value", "-0.5"); }},
    {"sigma.eta_inf", [] { expect_error<IA>([] { (void)eta{inf_v}; }, "eta", "value", "inf"); }},
    {"sigma.policy_nan",
     [] {
       expect_error<DE>(
           [] { (void)ddim_sampler(sched(), steps10(), [](const step_context&) { return nan_v; }); },
           "ddim_sampler: step 0 (t = 999)", "sigma", "nan");
     }},
    {"sigma.policy_negative",
     [] {
       expect_error<DE>(
           [] { (void)ddim_sampler(sched(), steps10(), [](const step_context&) { return -1e-3; }); },
           "ddim_sampler: step 0 (t = 999)", "sigma", "-0.001");
     }},
    {"sigma.policy_too_large",
     [] {
       expect_error<DE>(
           [] { (void)ddim_sampler(sched(), steps10(), [](const step_context&) { return 2.0; }); },
           "ddim_sampler: step 0 (t = 999)", "sigma^2 <= 1 - alpha_cumprod_prev", "2");
     }},
    {"sigma.policy_noise_std_inf",
     [] {
       expect_error<DE>(
           [] {
             (void)ddim_sampler(sched(), steps10(), [](const step_context&) {
               return sigma_choice{0.0, inf_v};
             });
           },
           "ddim_sampler: step 0 (t = 999)", "noise_std", "inf");
     }},
    {"sigma.policy_nan_late_step",
     [] {
       expect_error<DE>(
           [] {
             (void)ddim_sampler(sched(), steps10(),
                                [](const step_context& c) { return c.step_index == 7 ? nan_v : 0.0; });
           },
           "ddim_sampler: step 7", "sigma", "nan");
     }},
    {"sigma.policy_throws_own_exception",
     [] {
       // A policy's own exception type passes through unchanged.
       try {
         (void)ddim_sampler(sched(), steps10(),
                            [](const step_context&) -> double { throw std::runtime_error("policy failed"); });
         fail("did not throw");
       } catch (const std::runtime_error& e) {
         expect(typeid(e) == typeid(std::runtime_error) && std::string(e.what()) == "policy failed",
                std::string("changed: ") + e.what());
       }
     }},
    {"sigma.policy_returns_int_legal",
     [] {
       const ddim_sampler a(sched(), steps10(), [](const step_context&) { return 0; });
       const ddim_sampler b(sched(), steps10(), eta{0.0});
       dvec x = start<double>(12), y = x;
       a.sample(smooth<double>{}, x);
       b.sample(smooth<double>{}, y);
       expect_same_bits<double>(x, y, "an int 0 policy vs eta{0}");
     }},
    {"sigma.policy_denormal_legal",
     [] {
       const ddim_sampler s(sched(), steps10(), [](const step_context&) { return denorm_v; });
       fvec x = start<float>(12);
       s.sample(smooth<float>{}, x, philox_normal(2));
       expect_finite<float>(x, "x");
     }},
    {"sigma.eta_field_set_negative",
     [] {
       // eta's field is public: a value set past the constructor's check is caught where the sigma is used.
       eta e{0.5};
       e.value = -1.0;
       const double sigma0 = -ddpm_sigma(sched().alpha_cumprod(999), sched().alpha_cumprod(888));  // step 0
       expect_error<DE>([&] { (void)ddim_sampler(sched(), steps10(), e); }, "ddim_sampler: step 0 (t = 999)",
                        "sigma", detail::format_value(sigma0));
     }},
    {"sigma.list_values_edited_after_construction",
     [] {
       sigma_list l{dvec(10, 0.0)};
       l.values.push_back(0.0);
       expect_error<IA>([&] { (void)ddim_sampler(sched(), steps10(), l); }, "ddim_sampler: step 0 (t = 999)",
                        "sigma_list.values.size()", "11");
     }},
    {"sigma.list_short",
     [] {
       expect_error<IA>([] { (void)ddim_sampler(sched(), steps10(), sigma_list{dvec(9, 0.0)}); },
                        "ddim_sampler: step 0 (t = 999)", "sigma_list.values.size()", "9");
     }},
    {"sigma.list_long",
     [] {
       expect_error<IA>([] { (void)ddim_sampler(sched(), steps10(), sigma_list{dvec(11, 0.0)}); },
                        "ddim_sampler: step 0 (t = 999)", "sigma_list.values.size()", "11");
     }},
    {"sigma.list_nan",
     [] {
       dvec v(10, 0.0);
       v[4] = nan_v;
       expect_error<DE>([&] { (void)ddim_sampler(sched(), steps10(), sigma_list{v}); },
                        "ddim_sampler: step 4", "sigma", "nan");
     }},

    // ddim_step
    {"ddim_step.prev_nan",
     [] {
       expect_error<IA>([] { (void)ddim_step(prediction_type::epsilon, 0.5, nan_v); }, "ddim_step",
                        "alpha_cumprod_prev", "nan");
     }},
    {"ddim_step.prev_above_one",
     [] {
       expect_error<IA>([] { (void)ddim_step(prediction_type::epsilon, 0.5, 1.0000001); }, "ddim_step",
                        "alpha_cumprod_prev", "1.0000001");
     }},
    {"ddim_step.t_negative",
     [] {
       expect_error<IA>([] { (void)ddim_step(prediction_type::v, -0.1, 0.5); }, "ddim_step",
                        "alpha_cumprod_t", "-0.1");
     }},
    {"ddim_step.t_inf",
     [] {
       expect_error<IA>([] { (void)ddim_step(prediction_type::sample, inf_v, 0.5); }, "ddim_step",
                        "alpha_cumprod_t", "inf");
     }},
    {"ddim_step.sigma_inf",
     [] {
       expect_error<DE>(
           [] {
             (void)ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{inf_v, 0.0});
           },
           "ddim_step", "sigma.sigma", "inf");
     }},
    {"ddim_step.noise_std_nan",
     [] {
       expect_error<DE>(
           [] {
             (void)ddim_step(prediction_type::epsilon, 0.5, 0.8, sigma_choice{0.1, nan_v});
           },
           "ddim_step", "sigma.noise_std", "nan");
     }},
    {"ddim_step.epsilon_at_zero_snr",
     [] {
       expect_error<DE>([] { (void)ddim_step(prediction_type::epsilon, 0.0, 0.5); }, "ddim_step",
                        "alpha_cumprod_t", "0");
     }},
    {"ddim_step.sample_at_one",
     [] {
       expect_error<DE>([] { (void)ddim_step(prediction_type::sample, 1.0, 1.0); }, "ddim_step",
                        "alpha_cumprod_t", "1");
     }},
    {"ddim_step.denormal_levels_legal",
     [] {
       for (prediction_type k : {prediction_type::v, prediction_type::sample}) {
         const affine_step c = ddim_step(k, denorm_v, 1.0);
         dvec x = start<double>(8), m = start<double>(8, 1.0);
         apply_step<double>(c, x, m, x0_processing::none());
         expect_finite<double>(x, "x");
       }
     }},

    // DDPM posterior, step, learned variance
    {"ddpm.posterior_prev_below_t",
     [] {
       expect_error<IA>([] { (void)ddpm_posterior_at(0.5, 0.4); }, "ddpm_posterior_at", "alpha_cumprod_prev",
                        "0.4");
     }},
    {"ddpm.posterior_t_nan",
     [] {
       expect_error<IA>([] { (void)ddpm_posterior_at(nan_v, 0.4); }, "ddpm_posterior_at", "alpha_cumprod_t",
                        "nan");
     }},
    {"ddpm.posterior_t_one",
     [] {
       expect_error<IA>([] { (void)ddpm_posterior_at(1.0, 1.5); }, "ddpm_posterior_at", "alpha_cumprod_prev",
                        "1.5");
     }},
    {"ddpm.step_names_itself",
     [] {
       expect_error<IA>(
           [] { (void)ddpm_step(prediction_type::epsilon, 0.5, 0.2, variance_type::fixed_small); },
           "ddpm_step", "alpha_cumprod_prev", "0.2");
     }},
    {"ddpm.step_bad_variance_enum",
     [] {
       expect_error<IA>(
           [] { (void)ddpm_step(prediction_type::epsilon, 0.5, 0.7, static_cast<variance_type>(-2)); },
           "ddpm_step", "type", "variance_type(-2)");
     }},
    {"ddpm.noise_std_of_learned",
     [] {
       expect_error<IA>([] { (void)ddpm_posterior_at(0.5, 0.7).noise_std(variance_type::learned); },
                        "ddpm_posterior::noise_std", "type", "learned");
     }},
    {"ddpm.parse_variance_unknown",
     [] {
       expect_error<IA>([] { (void)parse_variance_type("fixed"); }, "parse_variance_type", "name", "fixed");
     }},
    {"ddpm.identity_step_is_deterministic",
     [] {
       for (variance_type v :
            {variance_type::fixed_small, variance_type::fixed_large_log, variance_type::learned_range}) {
         const affine_step c = ddpm_step(prediction_type::epsilon, 0.3, 0.3, v);
         expect(c.noise_std == 0.0 && c.sample_coeff() == 1.0 && c.model_coeff() == 0.0, "not the identity");
       }
     }},
    {"learned.type_not_learned",
     [] {
       dvec x = start<double>(8), m(8, 0.1), v(8, 0.0);
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::fixed_small,
                                             x, m, v, x0_processing::none(), 1, no_noise{}, 0);
           },
           "apply_ddpm_learned_step", "type", "fixed_small");
     }},
    {"learned.variance_size",
     [] {
       dvec x = start<double>(8), m(8, 0.1), v(7, 0.0);
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned, x, m,
                                             v, x0_processing::none(), 1, philox_normal(1), 0);
           },
           "apply_ddpm_learned_step", "model_variance.size()", "7");
     }},
    {"learned.model_size",
     [] {
       dvec x = start<double>(8), m(9, 0.1), v(8, 0.0);
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned, x, m,
                                             v, x0_processing::none(), 1, philox_normal(1), 0);
           },
           "apply_ddpm_learned_step", "model.size()", "9");
     }},
    {"learned.empty_x",
     [] {
       dvec x, m, v;
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned_range,
                                             x, m, v, x0_processing::none(), 1, philox_normal(1), 0);
           },
           "apply_ddpm_learned_step", "x.size()", "0");
     }},
    {"learned.bad_level",
     [] {
       dvec x = start<double>(8), m(8, 0.1), v(8, 0.0);
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 1.5, 0.7, variance_type::learned, x, m,
                                             v, x0_processing::none(), 1, philox_normal(1), 0);
           },
           "apply_ddpm_learned_step", "alpha_cumprod_t", "1.5");
     }},
    {"learned.num_samples_zero",
     [] {
       dvec x = start<double>(8), m(8, 0.1), v(8, 0.0);
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned, x, m,
                                             v, x0_processing::none(), 0, philox_normal(1), 0);
           },
           "apply_ddpm_learned_step", "num_samples", "0");
     }},
    {"learned.processing_field",
     [] {
       dvec x = start<double>(8), m(8, 0.1), v(8, 0.0);
       const auto p = edited([](x0_processing& q) {
         q.mode = x0_processing::kind::clip;
         q.clip_range = nan_v;
       });
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned, x, m,
                                             v, p, 1, philox_normal(1), 0);
           },
           "apply_ddpm_learned_step", "processing.clip_range", "nan");
     }},
    {"learned.guards_legal",
     [] {
       // Two samples of 300: the kernel addresses model_variance per block; nothing outside the buffers is
       // touched.
       const std::size_t n = 600;
       guarded<float> x(n, start<float>(n)), m(n, start<float>(n, 0.5)), v(n), x0(n), scratch(300);
       for (std::size_t i = 0; i < n; ++i)
         v.span()[i] = static_cast<float>(std::sin(static_cast<double>(i)));
       const fvec m_in(m.cspan().begin(), m.cspan().end()), v_in(v.cspan().begin(), v.cspan().end());
       apply_ddpm_learned_step<float>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned_range,
                                      x.span(), m.cspan(), v.cspan(),
                                      x0_processing::dynamic_threshold(0.9, 2.0), 2, philox_normal(4), 3,
                                      true, x0.span(), scratch.span());
       for (auto* g : {&x, &m, &v, &x0, &scratch})
         g->check("the step's buffers");
       expect_same_bits<float>(m.cspan(), m_in, "model (read-only)");
       expect_same_bits<float>(v.cspan(), v_in, "model_variance (read-only)");
       expect_finite<float>(x.cspan(), "x");
     }},

    // apply_step
    {"apply_step.empty_x",
     [] {
       dvec x, m;
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, x0_processing::none());
           },
           "apply_step", "x.size()", "0");
     }},
    {"apply_step.model_size",
     [] {
       dvec x(8), m(16);
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, x0_processing::none());
           },
           "apply_step", "model.size()", "16");
     }},
    {"apply_step.x0_out_size",
     [] {
       dvec x(8), m(8), x0(7);
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, x0_processing::none(), 1,
                                no_noise{}, 0, x0);
           },
           "apply_step", "x0_out.size()", "7");
     }},
    {"apply_step.num_samples_zero",
     [] {
       dvec x(8), m(8);
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, x0_processing::none(),
                                0);
           },
           "apply_step", "num_samples", "0");
     }},
    {"apply_step.num_samples_not_dividing",
     [] {
       dvec x(8), m(8);
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, x0_processing::none(),
                                3);
           },
           "apply_step", "num_samples", "3");
     }},
    {"apply_step.scratch_too_small",
     [] {
       dvec x(8), m(8), scratch(3);
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m,
                                x0_processing::dynamic_threshold(), 2, no_noise{}, 0, {}, scratch);
           },
           "apply_step", "scratch.size()", "3");
     }},
    {"apply_step.ratio_field_nan",
     [] {
       dvec x(8), m(8), scratch(8);
       const auto p = edited([](x0_processing& q) {
         q.mode = x0_processing::kind::dynamic_threshold;
         q.dynamic_thresholding_ratio = nan_v;
       });
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, p, 1, no_noise{}, 0, {},
                                scratch);
           },
           "apply_step", "processing.dynamic_thresholding_ratio", "nan");
     }},
    {"apply_step.ratio_field_zero",
     [] {
       dvec x(8), m(8), scratch(8);
       const auto p = edited([](x0_processing& q) {
         q.mode = x0_processing::kind::dynamic_threshold;
         q.dynamic_thresholding_ratio = 0.0;
       });
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, p, 1, no_noise{}, 0, {},
                                scratch);
           },
           "apply_step", "processing.dynamic_thresholding_ratio", "0");
     }},
    {"apply_step.clip_field_inf",
     [] {
       dvec x(8), m(8);
       const auto p = edited([](x0_processing& q) {
         q.mode = x0_processing::kind::clip;
         q.clip_range = inf_v;
       });
       expect_error<IA>([&] { apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, p); },
                        "apply_step", "processing.clip_range", "inf");
     }},
    {"apply_step.max_value_field_zero",
     [] {
       dvec x(8), m(8), scratch(8);
       const auto p = edited([](x0_processing& q) {
         q.mode = x0_processing::kind::dynamic_threshold;
         q.sample_max_value = 0.0;
       });
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, p, 1, no_noise{}, 0, {},
                                scratch);
           },
           "apply_step", "processing.sample_max_value", "0");
     }},
    {"apply_step.mode_field_bad_enum",
     [] {
       dvec x(8), m(8);
       const auto p = edited([](x0_processing& q) { q.mode = static_cast<x0_processing::kind>(-1); });
       expect_error<IA>([&] { apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, p); },
                        "apply_step", "processing.mode", "-1");
     }},
    {"apply_step.processing_factories",
     [] {
       expect_error<IA>([] { (void)x0_processing::clip(-0.0); }, "x0_processing::clip", "range", "-0");
       expect_error<IA>([] { (void)x0_processing::dynamic_threshold(1.0 + 1e-16 * 4); },
                        "x0_processing::dynamic_threshold", "ratio", "1.0000000000000004");
       expect_error<IA>([] { (void)x0_processing::dynamic_threshold(0.9, inf_v); },
                        "x0_processing::dynamic_threshold", "max_value", "inf");
     }},
    {"apply_step.guards_fused_legal",
     [] {
       const std::size_t n = 2 * 300;
       guarded<double> x(n, start<double>(n)), m(n, start<double>(n, 0.3)), x0(n);
       const dvec m_in(m.cspan().begin(), m.cspan().end());
       apply_step<double>(ddim_step(prediction_type::v, 0.4, 0.6, sigma_choice{0.3, 0.3}), x.span(),
                          m.cspan(), x0_processing::none(), 2, philox_normal(8), 5, x0.span());
       for (auto* g : {&x, &m, &x0})
         g->check("the step's buffers");
       expect_same_bits<double>(m.cspan(), m_in, "model (read-only)");
       expect_finite<double>(x.cspan(), "x");
     }},
    {"apply_step.guards_threshold_legal",
     [] {
       // Thresholding with a scratch of exactly one sample and a ratio of 1 (the largest rank).
       const std::size_t per = 257;
       guarded<float> x(3 * per, start<float>(3 * per)), m(3 * per, start<float>(3 * per, 2.0)), scratch(per),
           x0(3 * per);
       apply_step<float>(ddim_step(prediction_type::epsilon, 0.2, 0.5), x.span(), m.cspan(),
                         x0_processing::dynamic_threshold(1.0, 1.5).with_clipped_model_output(), 3,
                         no_noise{}, 0, x0.span(), scratch.span());
       for (auto* g : {&x, &m, &scratch, &x0})
         g->check("the step's buffers");
       expect_finite<float>(x.cspan(), "x");
     }},
    {"apply_step.threshold_below_float_min_legal",
     [] {
       // max_value = 1e-300 is a legal double but 0 as a float threshold: no 0/0.
       guarded<float> x(40, start<float>(40)), scratch(20);
       const fvec m = start<float>(40, 0.4);
       apply_step<float>(ddim_step(prediction_type::epsilon, 0.3, 0.6), x.span(), m,
                         x0_processing::dynamic_threshold(0.9, 1e-300), 2, no_noise{}, 0, {}, scratch.span());
       x.check("x");
       scratch.check("scratch");
       expect_finite<float>(x.cspan(), "x");
     }},
    {"apply_step.x0_out_does_not_change_x",
     [] {
       const auto c = ddim_step(prediction_type::sample, 0.3, 0.6, sigma_choice{0.2, 0.2});
       for (const x0_processing& p : {x0_processing::none(), x0_processing::clip(0.5)}) {
         fvec x = start<float>(700), y = x, m = start<float>(700, 1.0), x0(700);
         apply_step<float>(c, x, m, p, 1, philox_normal(2), 1);
         apply_step<float>(c, y, m, p, 1, philox_normal(2), 1, x0);
         expect_same_bits<float>(x, y, "x with x0_out");
       }
     }},
    {"apply_step.given_noise_too_small",
     [] {
       guarded<double> x(600, start<double>(600));
       const dvec m(600, 0.1), z(599, 0.5);
       const dvec x_T(x.cspan().begin(), x.cspan().end());
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.1, 0.1}),
                                x.span(), m, x0_processing::none(), 1, given_noise<double>{z}, 0);
           },
           "apply_step", "given_noise", "599");
       x.check("x");
       expect_same_bits<double>(x.cspan(), x_T, "x after a step that threw (half-stepped)");
     }},
    {"apply_step.given_noise_overlapping_samples",
     [] {
       dvec x = start<double>(600);
       const dvec x_T = x, m(600, 0.1), z(1000, 0.5);
       expect_error<IA>(
           [&] {
             apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.1, 0.1}), x, m,
                                x0_processing::none(), 2, given_noise<double>{z, 100}, 0);
           },
           "apply_step", "sample_size", "100");
       expect_same_bits<double>(x, x_T, "x after a step that threw");
     }},
    {"learned.given_noise_too_small",
     [] {
       dvec x = start<double>(600);
       const dvec x_T = x, m(600, 0.1), v(600, 0.0), z(300, 0.5);
       // sample_size 0: one sample of all 300 values, but the step has 2 samples of 300.
       expect_error<IA>(
           [&] {
             apply_ddpm_learned_step<double>(prediction_type::epsilon, 0.5, 0.7, variance_type::learned, x, m,
                                             v, x0_processing::none(), 2, given_noise<double>{z, 0}, 0);
           },
           "apply_ddpm_learned_step", "given_noise", "300");
       expect_same_bits<double>(x, x_T, "x after a step that threw");
     }},
    {"apply_step.noise_throws",
     [] {
       guarded<double> x(600, start<double>(600));
       const dvec m(600, 0.1);
       auto bad = [](std::span<double>, noise_position at) {
         if (at.first_element > 0)
           throw std::runtime_error("noise failed");
       };
       try {
         apply_step<double>(ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.1, 0.1}), x.span(),
                            m, x0_processing::clip(), 1, bad, 0);
         fail("did not throw");
       } catch (const std::runtime_error& e) {
         expect(std::string(e.what()) == "noise failed", e.what());
       }
       x.check("x");
     }},
    {"apply_step.denormal_and_huge_inputs_legal",
     [] {
       const auto c = ddim_step(prediction_type::epsilon, 0.5, 0.7);
       dvec x = {denorm_v, -denorm_v, 1e300, -1e300, 0.0, -0.0},
            m = {denorm_v, 1e-310, 1e300, -1e300, -denorm_v, 0.0}, scratch(3);
       apply_step<double>(c, x, m, x0_processing::dynamic_threshold(0.5, 3.0), 2, no_noise{}, 0, {}, scratch);
       expect_finite<double>(x, "x");
     }},

    // parallel_apply_step
    {"parallel.model_size",
     [] {
       thread_pool pool(2);
       dvec x(8), m(9);
       expect_error<IA>(
           [&] {
             parallel_apply_step<double>(pool, ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m,
                                         x0_processing::none());
           },
           "parallel_apply_step", "model.size()", "9");
     }},
    {"parallel.processing_field",
     [] {
       thread_pool pool(2);
       dvec x(8), m(8);
       const auto p = edited([](x0_processing& q) {
         q.mode = x0_processing::kind::clip;
         q.clip_range = -2.0;
       });
       expect_error<IA>(
           [&] { parallel_apply_step<double>(pool, ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m, p); },
           "parallel_apply_step", "processing.clip_range", "-2");
     }},
    {"parallel.scratch_one_sample_per_thread",
     [] {
       thread_pool pool(2);
       const std::size_t per = 40000;
       dvec x(2 * per, 0.5), m(2 * per, 0.1), scratch(per);
       expect_error<IA>(
           [&] {
             parallel_apply_step<double>(pool, ddim_step(prediction_type::epsilon, 0.5, 0.7), x, m,
                                         x0_processing::dynamic_threshold(), 2, no_noise{}, 0, {}, scratch);
           },
           "parallel_apply_step", "scratch.size()", "40000");
     }},
    {"parallel.bit_identical_and_guarded",
     [] {
       thread_pool pool(2);
       const std::size_t n = 70001;  // one sample split in chunks, with a ragged tail
       guarded<float> x(n, start<float>(n)), x0(n);
       const fvec m = start<float>(n, 0.7);
       fvec ref = start<float>(n), ref_x0(n);
       const auto c = ddim_step(prediction_type::v, 0.3, 0.5, sigma_choice{0.2, 0.25});
       apply_step<float>(c, ref, m, x0_processing::clip(1.1), 1, philox_normal(5), 2, ref_x0);
       parallel_apply_step<float>(pool, c, x.span(), m, x0_processing::clip(1.1), 1, philox_normal(5), 2,
                                  x0.span());
       x.check("x");
       x0.check("x0_out");
       expect_same_bits<float>(x.cspan(), ref, "x over the pool");
       expect_same_bits<float>(x0.cspan(), ref_x0, "x0 over the pool");
     }},
    {"parallel.noise_throws_pool_reusable",
     [] {
       thread_pool pool(2);
       const std::size_t n = 1 << 17;
       dvec x(n, 0.5), m(n, 0.1);
       auto bad = [](std::span<double> out, noise_position at) {
         if (at.first_element >= 70000)
           throw std::runtime_error("noise failed");
         std::fill(out.begin(), out.end(), 0.0);
       };
       const auto c = ddim_step(prediction_type::epsilon, 0.5, 0.7, sigma_choice{0.1, 0.1});
       try {
         parallel_apply_step<double>(pool, c, x, m, x0_processing::none(), 1, bad, 0);
         fail("did not throw");
       } catch (const std::runtime_error&) {
       }
       dvec y(n, 0.5), ref(n, 0.5);
       parallel_apply_step<double>(pool, c, y, m, x0_processing::none(), 1, philox_normal(1), 0);
       apply_step<double>(c, ref, m, x0_processing::none(), 1, philox_normal(1), 0);
       expect_same_bits<double>(y, ref, "the pool after a failed step");
     }},

    // thread_pool
    {"pool.zero_threads", [] { expect_error<IA>([] { thread_pool p(0); }, "thread_pool", "threads", "0"); }},
    {"pool.task_throws_rethrown_and_reusable",
     [] {
       thread_pool pool(2);
       auto bad = [](std::size_t i, std::size_t) {
         if (i == 3)
           throw std::logic_error("task 3");
       };
       try {
         pool.run(8, bad);
         fail("did not rethrow");
       } catch (const std::logic_error& e) {
         expect(std::string(e.what()) == "task 3", e.what());
       }
       std::vector<int> hit(16, 0);
       auto good = [&](std::size_t i, std::size_t) { hit[i] = 1; };
       pool.run(16, good);
       expect(std::count(hit.begin(), hit.end(), 1) == 16, "not every task ran after a failed job");
     }},
    {"pool.zero_tasks_and_one_thread_legal",
     [] {
       thread_pool one(1);
       int calls = 0;
       auto task = [&](std::size_t, std::size_t participant) {
         expect(participant == 0, "participant of a 1-thread pool");
         ++calls;
       };
       one.run(0, task);
       one.run(3, task);
       expect(calls == 3, "tasks of a 1-thread pool");
       // parallel_apply_step over a 1-thread pool is apply_step.
       const std::size_t n = 1 << 17;
       fvec x = start<float>(n), y = x;
       const fvec m = start<float>(n, 0.2);
       const auto c = ddim_step(prediction_type::epsilon, 0.4, 0.6, sigma_choice{0.1, 0.1});
       parallel_apply_step<float>(one, c, x, m, x0_processing::none(), 1, philox_normal(3), 1);
       apply_step<float>(c, y, m, x0_processing::none(), 1, philox_normal(3), 1);
       expect_same_bits<float>(x, y, "a 1-thread pool");
     }},
    {"pool.create_destroy_loop",
     [] {
       for (int k = 0; k < 50; ++k) {
         thread_pool pool(3);
         std::size_t sum = 0;
         std::mutex mu;
         auto task = [&](std::size_t i, std::size_t) {
           std::lock_guard lock(mu);
           sum += i;
         };
         if (k % 2 == 0)
           pool.run(10, task);
         expect(k % 2 == 1 || sum == 45, "tasks lost");
       }
     }},

    // serving::batch (continuous batching)
    {"serving.admit_full",
     [] {
       const ddim_sampler s(sched(), steps10());
       const dvec x = start<double>(8);
       serving::batch<double> b(1, 8);
       b.admit({&s, x, 1, 0, 1});
       expect_error<IA>([&] { (void)b.admit({&s, x, 2, 0, 2}); }, "serving::batch::admit", "size()", "1");
     }},
    {"serving.admit_size_mismatch",
     [] {
       const ddim_sampler s(sched(), steps10());
       const dvec x = start<double>(9);
       serving::batch<double> b(2, 8);
       expect_error<IA>([&] { (void)b.admit({&s, x, 1, 0, 1}); }, "serving::batch::admit",
                        "request.initial.size()", "9");
     }},
    {"serving.admit_null_solver",
     [] {
       const dvec x = start<double>(8);
       serving::batch<double> b(2, 8);
       expect_error<IA>([&] { (void)b.admit({nullptr, x, 1, 0, 1}); }, "serving::batch::admit", "request.solver",
                        "nullptr");
     }},
    {"serving.retire_unknown_and_empty",
     [] {
       serving::batch<double> b(2, 8);
       expect_error<std::out_of_range>([&] { b.retire(2); }, "serving::batch::retire", "slot", "2");
       expect_error<IA>([&] { b.retire(1); }, "serving::batch::retire", "slot", "1");
     }},
    {"serving.step_empty",
     [] {
       serving::batch<double> b(2, 8);
       auto net = [](std::span<const double>, std::span<const double>, std::span<double>) {};
       expect_error<IA>([&] { (void)b.step(net); }, "serving::batch::step", "size()", "0");
     }},
    {"serving.model_nan_untouched",
     [] {
       const ddim_sampler s(sched(), steps10());
       const dvec x = start<double>(8);
       serving::batch<double> b(2, 8);
       b.admit({&s, x, 1, 0, 7});
       auto net = [](std::span<const double>, std::span<const double>, std::span<double> out) {
         std::fill(out.begin(), out.end(), 0.25);
         out[3] = std::numeric_limits<double>::quiet_NaN();
       };
       expect_error<DE>([&] { (void)b.step(net); }, "serving::batch::step", "slot 0 (request id 7", "nan");
       expect_same_bits<double>(b.sample(0), x, "a slot after a rejected step");
     }},
    {"serving.bit_identical_and_guarded",
     [] {
       const dpm_solver_sampler dpm(make_multistep_grid(sched(), 10));
       const ddpm_sampler ddpm(sched(), steps10());
       const dvec x1 = start<double>(8), x2 = start<double>(8, 1.0);
       dvec r1 = x1, r2 = x2;
       auto one = [](const dvec& v, double t, std::span<double> out) { smooth<double>{}(v, static_cast<std::int64_t>(t), out); };
       dpm.sample(one, r1);
       ddpm.sample(one, r2, philox_normal(3));
       serving::batch<double> b(3, 8);
       b.admit({&ddpm, x2, 3, 0, 2});
       b.admit({&dpm, x1, 0, 0, 1});
       auto net = serving::per_sample([](std::span<const double> v, double t, std::span<double> out) {
         smooth<double>{}(v, static_cast<std::int64_t>(t), out);
       });
       while (b.unfinished() > 0) (void)b.step(net);
       expect_same_bits<double>(b.sample(0), r2, "ddpm in a batch");
       expect_same_bits<double>(b.sample(1), r1, "dpm-solver++ in a batch");
     }},
    {"serving.apply_row_bad_buffers",
     [] {
       const dpm_solver_sampler dpm(make_multistep_grid(sched(), 10));
       dvec x = start<double>(8), m(8, 0.0);
       sampler_workspace<double> ws(8);
       expect_error<IA>([&] { dpm.apply_row(0, std::span<double>(x), std::span<const double>(m), no_noise{}, ws); },
                        "dpm_solver_sampler::apply_row", "workspace.history.size()", "0");
       expect_error<std::out_of_range>(
           [&] { dpm.apply_row(10, std::span<double>(x), std::span<const double>(m), no_noise{}, ws); },
           "dpm_solver_sampler::apply_row", "r", "10");
     }},

    // samplers
    {"sampler.empty_x",
     [] {
       dvec x;
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, x); },
                        "ddim_sampler::sample", "x.size()", "0");
     }},
    {"sampler.x_not_multiple_of_num_samples",
     [] {
       sampler_options o;
       o.num_samples = 3;
       dvec x(10);
       expect_error<IA>(
           [&] {
             ddpm_sampler(sched(), steps10(), variance_type::fixed_small, o)
                 .sample(smooth<double>{}, x, philox_normal(1));
           },
           "ddpm_sampler::sample", "x.size()", "10");
     }},
    {"sampler.num_samples_zero",
     [] {
       sampler_options o;
       o.num_samples = 0;
       expect_error<IA>([&] { (void)ddim_sampler(sched(), steps10(), eta{0.0}, o); }, "ddim_sampler",
                        "options.num_samples", "0");
     }},
    {"sampler.workspace_wrong_size",
     [] {
       const ddim_sampler s(sched(), steps10());
       dvec x(8);
       sampler_workspace<double> ws(9);
       expect_error<IA>([&] { s.sample(smooth<double>{}, x, no_noise{}, ws); }, "ddim_sampler::sample",
                        "workspace.x0.size()", "9");
     }},
    {"sampler.workspace_x0_resized",
     [] {
       const ddim_sampler s(sched(), steps10());
       dvec x(8);
       auto ws = s.make_workspace(x);
       ws.x0.resize(3);
       expect_error<IA>([&] { s.sample(smooth<double>{}, x, no_noise{}, ws); }, "ddim_sampler::sample",
                        "workspace.x0.size()", "3");
     }},
    {"sampler.workspace_noise_resized_legal",
     [] {
       // The noise buffer is sized by the sampler on use: one the caller shrank is re-sized, with the same
       // result.
       const ddim_sampler s(sched(), steps10(), eta{0.8});
       auto throwing_capable = [](std::span<double> out, noise_position at) {
         philox_normal(6).fill(out, at.sample, at.step, at.first_element);
       };
       dvec x = start<double>(40), y = x;
       auto ws = s.make_workspace(x);
       ws.noise.assign(3, 1.0);
       s.sample(smooth<double>{}, x, throwing_capable, ws);
       s.sample(smooth<double>{}, y, philox_normal(6));
       expect_same_bits<double>(x, y, "a resized noise buffer");
     }},
    {"sampler.learned_workspace_from_size",
     [] {
       const ddpm_sampler s(sched(), steps10(), variance_type::learned);
       dvec x(8);
       sampler_workspace<double> ws(8);
       expect_error<IA>([&] { s.sample(smooth<double>{}, x, philox_normal(1), ws); }, "ddpm_sampler::sample",
                        "workspace.model_output.size()", "8");
     }},
    {"sampler.first_step_beyond_N",
     [] {
       dvec x(8);
       expect_error<IA>(
           [&] {
             ddim_sampler(sched(), steps10()).sample(smooth<double>{}, x, no_noise{}, no_callback{}, 11);
           },
           "ddim_sampler::sample", "first_step", "11");
     }},
    {"sampler.first_step_N_legal",
     [] {
       dvec x = start<double>(8);
       const auto r =
           ddim_sampler(sched(), steps10()).sample(smooth<double>{}, x, no_noise{}, no_callback{}, 10);
       expect(r.steps_run == 0 && x == start<double>(8), "first_step = N changed x");
     }},
    {"sampler.model_output_too_small",
     [] {
       dvec x(8, 0.2);
       expect_error<IA>(
           [&] {
             ddim_sampler(sched(), steps10())
                 .sample([](const dvec& v, std::int64_t) { return dvec(v.size() - 1); }, x);
           },
           "ddim_sampler::sample", "step 0 (t = 999)", "7");
     }},
    {"sampler.model_output_too_large",
     [] {
       dvec x(8, 0.2);
       expect_error<IA>(
           [&] {
             ddim_inverse_sampler(sched(), steps10())
                 .sample([](const dvec& v, std::int64_t) { return dvec(2 * v.size()); }, x);
           },
           "ddim_inverse_sampler::sample", "model output size", "16");
     }},
    {"sampler.learned_output_too_small",
     [] {
       dvec x(8, 0.2);
       expect_error<IA>(
           [&] {
             ddpm_sampler(sched(), steps10(), variance_type::learned_range)
                 .sample([](const dvec& v, std::int64_t) { return dvec(v.size()); }, x, philox_normal(1));
           },
           "ddpm_sampler::sample", "2 * x.size() = 16", "8");
     }},
    {"sampler.no_noise_when_stochastic",
     [] {
       dvec x(8);
       expect_error<IA>([&] { ddim_sampler(sched(), steps10(), eta{0.5}).sample(smooth<double>{}, x); },
                        "ddim_sampler::sample", "noise", "no_noise");
     }},
    {"sampler.inverse_threshold",
     [] {
       sampler_options o;
       o.processing = x0_processing::dynamic_threshold();
       expect_error<IA>([&] { (void)ddim_inverse_sampler(sched(), steps10(), o); }, "ddim_inverse_sampler",
                        "options.processing", "dynamic_threshold");
     }},
    {"sampler.inverse_sample_prediction_from_clean",
     [] {
       sampler_options o;
       o.prediction = prediction_type::sample;
       expect_error<DE>([&] { (void)ddim_inverse_sampler(sched(), steps10(), o); },
                        "ddim_inverse_sampler: step 0", "alpha_cumprod_t", "1");
     }},
    {"sampler.zero_snr_epsilon",
     [] {
       const auto z = noise_schedule<>::linear(1000).rescale_zero_terminal_snr();
       expect_error<DE>([&] { (void)ddim_sampler(z, timestep_schedule::trailing(1000, 5)); },
                        "ddim_sampler: step 0 (t = 999)", "zero terminal SNR", "0");
     }},
    {"sampler.check_finite_nan_model",
     [] {
       sampler_options o;
       o.check_finite = true;
       const ddim_sampler s(sched(), steps10(), eta{0.0}, o);
       dvec x = start<double>(8);
       auto model = [](const dvec& v, std::int64_t t) {
         dvec m(v.size(), 0.1);
         if (t < 500)
           m[5] = nan_v;
         return m;
       };
       expect_error<DE>([&] { s.sample(model, x); }, "ddim_sampler::sample",
                        "model output at step 5 (t = 444), element 5", "nan");
     }},
    {"sampler.check_finite_inf_start",
     [] {
       sampler_options o;
       o.check_finite = true;
       dvec x = start<double>(8);
       x[2] = -inf_v;
       auto constant = [](const dvec& v, std::int64_t) {
         return dvec(v.size(), 0.1);
       };  // finite whatever x is
       expect_error<DE>([&] { ddim_sampler(sched(), steps10(), eta{0.0}, o).sample(constant, x); },
                        "ddim_sampler::sample", "sample at step 0 (t = 999), element 2", "-inf");
     }},
    {"sampler.predictor_throws_resumable",
     [] {
       const ddim_sampler s(sched(), steps10(), eta{1.0});
       const dvec x_T = start<double>(300);
       dvec x = x_T;
       auto ws = s.make_workspace(x);
       auto failing = [](const dvec& v, std::int64_t t, std::span<double> out) {
         if (t == 666)
           throw std::runtime_error("model failed");
         smooth<double>{}(v, t, out);
       };
       try {
         s.sample(failing, x, philox_normal(9), ws);
         fail("did not throw");
       } catch (const std::runtime_error&) {
       }
       expect_same_bits<double>(x, after_steps(s, x_T, philox_normal(9), 3),
                                "x after a failing model at step 3");
       dvec full = x_T;
       s.sample(smooth<double>{}, full, philox_normal(9));
       s.sample(smooth<double>{}, x, philox_normal(9), ws, no_callback{}, 3);
       expect_same_bits<double>(x, full, "resumed run");
     }},
    {"sampler.callback_throws",
     [] {
       const ddpm_sampler s(sched(), steps10(), variance_type::fixed_large);
       const dvec x_T = start<double>(30);
       dvec x = x_T;
       try {
         s.sample(smooth<double>{}, x, philox_normal(3), [](const step_info& i, auto, auto) {
           if (i.step_index == 4)
             throw std::out_of_range("callback failed");
         });
         fail("did not throw");
       } catch (const std::out_of_range& e) {
         expect(std::string(e.what()) == "callback failed", e.what());
       }
       expect_same_bits<double>(x, after_steps(s, x_T, philox_normal(3), 5),
                                "x after a failing callback at step 4");
     }},
    {"sampler.given_noise_too_small_untouched",
     [] {
       sampler_options o;
       o.num_samples = 2;
       const ddim_sampler s(sched(), timestep_schedule::linspace(1000, 3), eta{1.0}, o);
       guarded<double> x(20, start<double>(20));
       const dvec x_T(x.cspan().begin(), x.cspan().end()), z(20, 0.3);
       auto view = x.span();
       // sample_size 0: one sample holding everything, so sample 1's block lies beyond the values.
       expect_error<IA>(
           [&] {
             s.sample(smooth<double>{}, view, given_noise<double>{z, 0});
           },
           "ddim_sampler::sample", "given_noise", "20");
       x.check("x");
       expect_same_bits<double>(x.cspan(), x_T, "x after a failed first step");
     }},
    {"sampler.cancel_at_first_step",
     [] {
       dvec x = start<double>(8);
       const auto r =
           ddim_sampler(sched(), steps10())
               .sample(smooth<double>{}, x, no_noise{}, [](const step_info&, auto, auto) { return false; });
       expect(r.steps_run == 1 && r.cancelled, "cancel after step 0");
     }},
    {"sampler.predictor_returns_view_of_x",
     [] {
       // A returning predictor may hand back a view of its input (an identity model): the result must be that
       // of a copy.
       const ddim_sampler s(sched(), steps10(), eta{0.5});
       dvec x = start<double>(600), y = x;
       s.sample([](const dvec& v, std::int64_t) { return std::span<const double>(v); }, x, philox_normal(2));
       s.sample([](const dvec& v, std::int64_t) { return v; }, y, philox_normal(2));
       expect_same_bits<double>(x, y, "identity model returning a view");
     }},
    {"sampler.span_view_guards",
     [] {
       const ddim_sampler s(
           sched(), steps10(), eta{0.3},
           sampler_options{prediction_type::v, x0_processing::clip(), step_convention::consistent, 2, false});
       guarded<double> g(64);
       auto view = g.span();
       expect_like_vector<double>(s, view, philox_normal(4));
       g.check("the viewed data");
     }},
    {"sampler.offset_view_legal",
     [] {
       // A view at an odd offset (not 16/32-byte aligned) gives the same bits as a std::vector.
       const ddim_sampler s(sched(), steps10(), eta{0.6});
       guarded<float> g(301);
       auto view = g.span().subspan(1);
       expect_like_vector<float>(s, view, philox_normal(9));
       g.check("the viewed data");
     }},
    {"sampler.float_coefficient_overflow_rejected",
     [] {
       // Epsilon prediction at abar = 1e-301 has a coefficient 1/sqrt(abar) that float cannot hold: sample()
       // refuses it before the first step (it was a silent non-finite result), naming the step.
       const auto s43 = noise_schedule<>::from_betas(dvec(43, 0.9999999));
       auto constant = [](const fvec& v, std::int64_t) { return fvec(v.size(), 0.3f); };
       fvec x(4, 0.5f);
       const fvec before = x;
       expect_error<std::domain_error>(
           [&] { ddim_sampler(s43, timestep_schedule::trailing(43, 3), eta{0.0}).sample(constant, x); },
           "ddim_sampler::sample", "a coefficient of step 0 (t = 42)", "1.0000000036844908e+49");
       expect_same_bits<float>(x, before, "x after the refused run");
     }},
    {"sampler.std_array_tensor",
     [] {
       const ddpm_sampler s(sched(), steps10(), variance_type::fixed_small_log);
       std::array<float, 24> a{};
       expect_like_vector<float>(s, a, philox_normal(4));
     }},
    {"sampler.pool_bit_identical",
     [] {
       thread_pool pool(2);
       sampler_options o;
       o.num_samples = 2;
       o.processing = x0_processing::dynamic_threshold(0.95, 1.5);
       const ddim_sampler s(sched(), timestep_schedule::trailing(1000, 4), eta{1.0}, o);
       const std::size_t n = 2 * 40000;
       fvec x = start<float>(n), y = x;
       auto ws = s.make_workspace(x, &pool);
       s.sample(smooth<float>{}, x, philox_normal(12), ws);
       s.sample(smooth<float>{}, y, philox_normal(12));
       expect_same_bits<float>(x, y, "a run over the pool");
     }},
    {"sampler.repeat_bit_identical",
     [] {
       const ddpm_sampler s(sched(), timestep_schedule::leading(1000, 25, 1), variance_type::learned_range);
       auto model = [](const fvec& v, std::int64_t t, std::span<float> out) {
         smooth<float>{}(v, t, out.first(v.size()));
         for (std::size_t i = 0; i < v.size(); ++i)
           out[v.size() + i] = std::tanh(v[i]);
       };
       fvec x = start<float>(50), y = x;
       s.sample(model, x, philox_normal(77));
       s.sample(model, y, philox_normal(77));
       expect_same_bits<float>(x, y, "the same run twice");
       expect_finite<float>(x, "x");
     }},

    // classifier-free guidance
    {"guidance.scale_nan",
     [] {
       expect_error<IA>([] { classifier_free_guidance g(smooth<double>{}, smooth<double>{}, nan_v); },
                        "classifier_free_guidance", "scale", "nan");
     }},
    {"guidance.rescale_above_one",
     [] {
       expect_error<IA>([] { batched_classifier_free_guidance g(smooth<double>{}, 2.0, 1.5); },
                        "batched_classifier_free_guidance", "rescale", "1.5");
     }},
    {"guidance.num_samples_zero",
     [] {
       expect_error<IA>([] { classifier_free_guidance g(smooth<double>{}, smooth<double>{}, 2.0, 0.0, 0); },
                        "classifier_free_guidance", "num_samples", "0");
     }},
    {"guidance.out_size",
     [] {
       classifier_free_guidance g(smooth<double>{}, smooth<double>{}, 2.0);
       dvec x(8), out(12);
       expect_error<IA>([&] { g(x, 10, std::span<double>(out)); }, "classifier_free_guidance", "out.size()",
                        "12");
     }},
    {"guidance.inner_output_size",
     [] {
       classifier_free_guidance g(
           smooth<double>{}, [](const dvec& v, std::int64_t) { return dvec(v.size() + 2); }, 2.0);
       dvec x(8), out(8);
       expect_error<IA>([&] { g(x, 10, std::span<double>(out)); }, "classifier_free_guidance",
                        "model output size", "10");
     }},
    {"guidance.batched_float_scale_overflow",
     [] {
       batched_classifier_free_guidance g(smooth<float>{}, 1e39);
       fvec x(8), out(8);
       expect_error<IA>([&] { g(x, 10, std::span<float>(out)); }, "batched_classifier_free_guidance", "scale",
                        "1e+39");
     }},
    {"guidance.rescale_one_element_per_sample",
     [] {
       classifier_free_guidance g(smooth<double>{}, smooth<double>{}, 2.0, 0.5, 8);
       dvec x(8), out(8);
       expect_error<IA>([&] { g(x, 10, std::span<double>(out)); }, "classifier_free_guidance", "num_samples",
                        "8");
     }},
    {"guidance.batched_guards_legal",
     [] {
       // The network sees exactly [x; x] and writes exactly 2 * out.size(); the caller's buffers are
       // untouched outside.
       std::size_t seen_in = 0, seen_out = 0;
       batched_classifier_free_guidance g(
           [&](std::span<const double> x2, std::int64_t t, std::span<double> out2) {
             seen_in = x2.size();
             seen_out = out2.size();
             smooth<double>{}(x2, t, out2);
           },
           5.0, 0.7, 2);
       guarded<double> out(16);
       const dvec x = start<double>(8);
       g(x, 100, out.span());
       out.check("out");
       expect(seen_in == 16 && seen_out == 32, "the network's buffers have the wrong sizes");
       expect_finite<double>(out.cspan(), "out");
     }},
    {"guidance.rescale_constant_output_legal",
     [] {
       auto constant = [](const dvec& v, std::int64_t) { return dvec(v.size(), 0.25); };
       classifier_free_guidance g(constant, constant, 3.0, 1.0);
       dvec x(8), out(8);
       g(x, 1, std::span<double>(out));
       expect_finite<double>(out, "out");
     }},
    {"guidance.rescale_huge_outputs_finite",
     [] {
       // Finite outputs whose squares overflow double: the rescale's standard deviations must not turn them
       // into NaN.
       auto cond = [](const dvec& v, std::int64_t) {
         dvec m(v.size());
         for (std::size_t i = 0; i < m.size(); ++i)
           m[i] = (i % 2 ? 1e200 : -1e200);
         return m;
       };
       auto uncond = [](const dvec& v, std::int64_t) { return dvec(v.size(), 0.0); };
       classifier_free_guidance g(cond, uncond, 1.5, 0.7);
       dvec x(8), out(8);
       g(x, 1, std::span<double>(out));
       expect_finite<double>(out, "out");
     }},

    // add_noise, first_step_for_strength
    {"add_noise.t_negative",
     [] {
       dvec a(4), b(4), o(4);
       expect_error<IA>([&] { add_noise<double, double>(sched(), a, b, -1, o); }, "add_noise", "t", "-1");
     }},
    {"add_noise.t_equals_T",
     [] {
       dvec a(4), b(4), o(4);
       expect_error<IA>([&] { add_noise<double, double>(sched(), a, b, 1000, o); }, "add_noise", "t", "1000");
     }},
    {"add_noise.noise_size",
     [] {
       dvec a(4), b(3), o(4);
       expect_error<IA>([&] { add_noise<double, double>(sched(), a, b, 10, o); }, "add_noise", "noise.size()",
                        "3");
     }},
    {"add_noise.guards_legal",
     [] {
       guarded<float> out(33);
       const fvec x0 = start<float>(33), z = start<float>(33, 1.0);
       add_noise<double, float>(sched(), x0, z, 999, out.span());
       out.check("out");
       expect(x0 == start<float>(33) && z == start<float>(33, 1.0), "inputs changed");
       expect_finite<float>(out.cspan(), "out");
     }},
    {"strength.nan",
     [] {
       expect_error<IA>([] { (void)first_step_for_strength(10, nan_v); }, "first_step_for_strength",
                        "strength", "nan");
     }},
    {"strength.above_one",
     [] {
       expect_error<IA>([] { (void)first_step_for_strength(10, 1.5); }, "first_step_for_strength", "strength",
                        "1.5");
     }},

    // philox_normal, given_noise
    {"philox.fill_step_limit",
     [] {
       fvec out(4);
       expect_error<IA>([&] { philox_normal(1).fill(out, 0, philox_normal::max_steps); },
                        "philox_normal::fill", "step", "4294967296");
     }},
    {"philox.fill_element_limit",
     [] {
       dvec out(8);
       expect_error<IA>([&] { philox_normal(1).fill(out, 0, 0, philox_normal::max_elements - 4); },
                        "philox_normal::fill", "first_element + out.size()", "17179869180 + 8");
     }},
    {"philox.fill_first_element_wraps",
     [] {
       dvec out(8);
       expect_error<IA>(
           [&] { philox_normal(1).fill(out, 0, 0, std::numeric_limits<std::uint64_t>::max() - 2); },
           "philox_normal::fill", "first_element + out.size()", "18446744073709551613 + 8");
     }},
    {"philox.normal_at_element_limit",
     [] {
       expect_error<IA>([] { (void)philox_normal(1).normal_at(0, 0, philox_normal::max_elements); },
                        "philox_normal::normal_at", "element", "17179869184");
     }},
    {"philox.block_bits_step_limit",
     [] {
       expect_error<IA>([] { (void)philox_normal(1).block_bits(0, size_max, 0); },
                        "philox_normal::block_bits", "step", "18446744073709551615");
     }},
    {"philox.fill_to_exact_limit_legal",
     [] {
       guarded<double> out(7);
       philox_normal(3).fill(out.span(), size_max, philox_normal::max_steps - 1,
                             philox_normal::max_elements - 7);
       out.check("out");
       expect_finite<double>(out.cspan(), "out");
       expect(out.cspan()[6] == philox_normal(3).normal_at(size_max, philox_normal::max_steps - 1,
                                                           philox_normal::max_elements - 1),
              "fill != normal_at");
     }},
    {"philox.chunk_invariance",
     [] {
       fvec whole(1001), parts(1001);
       philox_normal(5).fill(whole, 2, 3, 13);
       philox_normal(5).fill(std::span<float>(parts).first(333), 2, 3, 13);
       philox_normal(5).fill(std::span<float>(parts).subspan(333), 2, 3, 13 + 333);
       expect_same_bits<float>(whole, parts, "a fill in two chunks");
     }},
    {"given_noise.block_beyond",
     [] {
       const dvec z(10, 0.0);
       dvec out(4);
       expect_error<IA>(
           [&] {
             given_noise<double>{z, 5}(out, noise_position{1, 0, 2});
           },
           "given_noise", "values.size()", "10");
     }},

    {"given_noise.huge_sample_size",
     [] {
       // sample 1 at a stride of SIZE_MAX must not wrap around to a block before the values.
       const dvec z(8, 0.5);
       guarded<double> out(4);
       expect_error<IA>(
           [&] {
             given_noise<double>{z, size_max}(out.span(), noise_position{1, 0, 0});
           },
           "given_noise", "values.size()", "8");
       out.check("out");
       sampler_options o;
       o.num_samples = 2;
       guarded<double> x(8, dvec(8, 0.1));
       auto view = x.span();
       expect_error<IA>(
           [&] {
             ddim_sampler(sched(), timestep_schedule::linspace(1000, 2), eta{1.0}, o)
                 .sample(smooth<double>{}, view, given_noise<double>{z, size_max});
           },
           "ddim_sampler::sample", "values.size()", "8");
       x.check("x");
     }},

#if defined(MISUSE_EIGEN)
    // Eigen backend
    {"eigen.map_outer_stride_rejected",
     [] {
       dvec d(20);
       Eigen::Map<Eigen::MatrixXd, 0, Eigen::OuterStride<>> m(d.data(), 3, 4, Eigen::OuterStride<>(5));
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, m); },
                        "tensor_traits<Eigen::Map>", "map strides", "row stride 1, column stride 5");
     }},
    {"eigen.map_inner_stride_rejected",
     [] {
       dvec d(20);
       Eigen::Map<Eigen::VectorXd, 0, Eigen::InnerStride<>> m(d.data(), 10, Eigen::InnerStride<>(2));
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, m); },
                        "tensor_traits<Eigen::Map>", "map strides", "row stride 2, column stride 20");
     }},
    {"eigen.map_guards_legal",
     [] {
       guarded<double> g(24);
       Eigen::Map<Eigen::MatrixXd, 0, Eigen::OuterStride<>> m(g.span().data(), 4, 6, Eigen::OuterStride<>(4));
       expect_like_vector<double>(ddim_sampler(sched(), steps10(), eta{0.4}), m, philox_normal(2));
       g.check("the mapped data");
     }},
    {"eigen.rowmajor_matrix_legal",
     [] {
       Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(3, 5);
       expect_like_vector<float>(ddpm_sampler(sched(), steps10()), m, philox_normal(2));
     }},
    {"eigen.empty_matrix",
     [] {
       Eigen::ArrayXXd a(0, 3);
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, a); },
                        "ddim_sampler::sample", "x.size()", "0");
     }},
    {"eigen.tensormap_guards_legal",
     [] {
       guarded<double> g(30);
       Eigen::TensorMap<Eigen::Tensor<double, 3>> t(g.span().data(), 2, 3, 5);
       expect_like_vector<double>(ddim_sampler(sched(), steps10(), larger_variance{}), t, philox_normal(2));
       g.check("the mapped data");
     }},
    {"eigen.tensor_rowmajor_legal",
     [] {
       Eigen::Tensor<float, 2, Eigen::RowMajor> t(4, 7);
       expect_like_vector<float>(ddim_inverse_sampler(sched(), steps10()), t, no_noise{});
     }},
#endif

#if defined(MISUSE_XTENSOR)
    // xtensor backend
    {"xtensor.adapt_strided_rejected",
     [] {
       dvec d(12);
       std::vector<std::size_t> shape = {2, 3};
       std::vector<std::ptrdiff_t> strides = {6, 2};
       auto a = xt::adapt(d.data(), std::size_t{6}, xt::no_ownership(), shape, strides);
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, a); },
                        "tensor_traits<xtensor>", "strides", "{6,2}");
     }},
    {"xtensor.adapt_zero_stride_rejected",
     [] {
       dvec d(4);
       std::vector<std::size_t> shape = {4};
       std::vector<std::ptrdiff_t> strides = {0};
       auto a = xt::adapt(d.data(), std::size_t{4}, xt::no_ownership(), shape, strides);
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, a); },
                        "tensor_traits<xtensor>", "strides", "{0}");
     }},
    {"xtensor.adapt_dense_explicit_strides_legal",
     [] {
       guarded<double> g(6);
       std::vector<std::size_t> shape = {2, 3};
       std::vector<std::ptrdiff_t> strides = {3, 1};
       auto a = xt::adapt(g.span().data(), std::size_t{6}, xt::no_ownership(), shape, strides);
       expect_like_vector<double>(ddim_sampler(sched(), steps10()), a, no_noise{});
       g.check("the adapted data");
     }},
    {"xtensor.adapt_guards_legal",
     [] {
       guarded<float> g(24);
       std::vector<std::size_t> shape = {4, 6};
       auto a = xt::adapt(g.span().data(), std::size_t{24}, xt::no_ownership(), shape);
       expect_like_vector<float>(ddim_sampler(sched(), steps10(), eta{1.0}), a, philox_normal(2));
       g.check("the adapted data");
     }},
    {"xtensor.xarray_legal",
     [] {
       xt::xarray<double> a = xt::xarray<double>::from_shape({3, 4});
       expect_like_vector<double>(ddpm_sampler(sched(), steps10(), variance_type::fixed_large), a,
                                  philox_normal(2));
     }},
    {"xtensor.empty_xtensor",
     [] {
       xt::xtensor<double, 2> a = xt::xtensor<double, 2>::from_shape({0, 4});
       expect_error<IA>([&] { ddim_sampler(sched(), steps10()).sample(smooth<double>{}, a); },
                        "ddim_sampler::sample", "x.size()", "0");
     }},
#endif

    // testing::gaussian_mixture and the wsw metric
    {"mixture.dim_zero",
     [] {
       expect_error<IA>([] { testing::gaussian_mixture g(0, {}, {}, {1.0}); },
                        "testing::gaussian_mixture::gaussian_mixture", "dim", "0");
     }},
    {"mixture.std_zero",
     [] {
       expect_error<IA>([] { testing::gaussian_mixture g(1, {0.0}, {0.0}, {1.0}); },
                        "testing::gaussian_mixture::gaussian_mixture", "stds[0]", "0");
     }},
    {"mixture.std_square_underflows",
     [] {
       expect_error<IA>([] { testing::gaussian_mixture g(1, {0.0}, {1e-200}, {1.0}); },
                        "testing::gaussian_mixture::gaussian_mixture", "stds[0]", "9.9999999999999998e-201");
     }},
    {"mixture.std_square_overflows",
     [] {
       expect_error<IA>([] { testing::gaussian_mixture g(1, {0.0}, {1e200}, {1.0}); },
                        "testing::gaussian_mixture::gaussian_mixture", "stds[0]", "9.9999999999999997e+199");
     }},
    {"mixture.weight_negative",
     [] {
       expect_error<IA>(
           [] {
             testing::gaussian_mixture g(1, {0.0, 1.0}, {1.0, 1.0}, {1.0, -1.0});
           },
           "testing::gaussian_mixture::gaussian_mixture", "weights[1]", "-1");
     }},
    {"mixture.weights_sum_overflows",
     [] {
       expect_error<IA>(
           [] {
             testing::gaussian_mixture g(1, {0.0, 1.0}, {1.0, 1.0}, {1e308, 1e308});
           },
           "testing::gaussian_mixture::gaussian_mixture", "sum of weights", "inf");
     }},
    {"mixture.mean_nan",
     [] {
       expect_error<IA>(
           [] {
             testing::gaussian_mixture g(2, {0.0, nan_v}, {1.0, 1.0}, {1.0});
           },
           "testing::gaussian_mixture::gaussian_mixture", "means[1]", "nan");
     }},
    {"mixture.too_many_components",
     [] {
       expect_error<IA>([] { testing::gaussian_mixture g(1, dvec(65, 0.0), dvec(65, 1.0), dvec(65, 1.0)); },
                        "testing::gaussian_mixture::gaussian_mixture", "max_components", "65");
     }},
    {"mixture.sizes_mismatch",
     [] {
       expect_error<IA>(
           [] {
             testing::gaussian_mixture g(2, {0.0, 0.0, 1.0}, {1.0, 1.0}, {1.0});
           },
           "testing::gaussian_mixture::gaussian_mixture", "means", "3");
     }},
    {"mixture.dim_times_components_wraps",
     [] {
       expect_error<IA>([] { testing::gaussian_mixture g(std::size_t{1} << 58, {}, {}, dvec(64, 1.0)); },
                        "testing::gaussian_mixture::gaussian_mixture", "dim", "288230376151711744");
     }},
    {"mixture.nested_ragged",
     [] {
       expect_error<IA>(
           [] {
             testing::gaussian_mixture g({{0.0, 0.0}, {1.0}}, {{1.0, 1.0}, {1.0, 1.0}}, {1.0, 1.0});
           },
           "testing::gaussian_mixture::gaussian_mixture", "means[1]", "1");
     }},
    {"mixture.alpha_nan",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       dvec x(2), out(2);
       expect_error<IA>([&] { g.epsilon_at_alpha(x, nan_v, out); },
                        "testing::gaussian_mixture::epsilon_at_alpha", "alpha_bar", "nan");
     }},
    {"mixture.workspace_small",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       dvec x(4), out(4), ws(g.workspace_size() - 1);
       expect_error<IA>([&] { g.epsilon_batch(x, 2, 0.5, out, ws); },
                        "testing::gaussian_mixture::epsilon_batch", "workspace",
                        std::to_string(g.workspace_size() - 1));
     }},
    {"mixture.batch_rows_overflow",
     [] {
       // n·dim wraps around to x.size(): the batch must be rejected, not run over 2^63 rows.
       const auto g = testing::gaussian_mixture::ring2d();
       dvec x(2), out(2), ws(g.workspace_size());
       const std::size_t n = (std::size_t{1} << 63) + 1;
       expect_error<IA>([&] { g.epsilon_batch(x, n, 0.5, out, ws); },
                        "testing::gaussian_mixture::epsilon_batch", "n", "9223372036854775809");
       expect_error<IA>([&] { g.epsilon_batch(x, n, 0.5, out); }, "testing::gaussian_mixture::epsilon_batch",
                        "n", "9223372036854775809");
     }},
    {"mixture.sample_rows_overflow",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       std::mt19937_64 gen(1);
       expect_error<IA>([&] { (void)g.sample(gen, (std::size_t{1} << 63) + 1); },
                        "testing::gaussian_mixture::sample", "n", "9223372036854775809");
     }},
    {"mixture.sample_out_not_multiple",
     [] {
       const auto g = testing::gaussian_mixture::aniso16d();
       std::mt19937_64 gen(1);
       dvec out(17);
       expect_error<IA>([&] { g.sample(gen, out); }, "testing::gaussian_mixture::sample", "out.size()", "17");
     }},
    {"mixture.labels_size",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       std::mt19937_64 gen(1);
       dvec out(6);
       std::vector<std::size_t> labels(2);
       expect_error<IA>([&] { g.sample(gen, out, labels); }, "testing::gaussian_mixture::sample", "labels",
                        "2");
     }},
    {"mixture.component_index",
     [] {
       expect_error<IA>([] { (void)testing::gaussian_mixture::ring2d().mean(8); },
                        "testing::gaussian_mixture::mean", "k", "8");
     }},
    {"mixture.in_place_legal",
     [] {
       const auto g = testing::gaussian_mixture::aniso16d();
       const dvec x = start<double>(3 * 16);
       dvec ws(g.workspace_size()), out(x.size()), in_place = x;
       g.epsilon_batch(x, 3, 0.37, out, ws);
       g.epsilon_batch(in_place, 3, 0.37, in_place, ws);
       expect_same_bits<double>(in_place, out, "epsilon_batch in place");
       expect_finite<double>(out, "out");
     }},
    {"mixture.extreme_alpha_legal",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       for (double a : {0.0, denorm_v, 1e-300, 1.0 - 1e-16, 1.0}) {
         dvec x = {0.3, -2.0}, out(2);
         g.epsilon_at_alpha(x, a, out);
         expect_finite<double>(out, "out");
       }
     }},
    {"wsw.n_zero",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       expect_error<IA>([&] { (void)testing::whitened_sliced_w2(g, {}, 0); }, "testing::whitened_sliced_w2",
                        "n", "0");
     }},
    {"wsw.size_mismatch",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       const dvec s(5);
       expect_error<IA>([&] { (void)testing::whitened_sliced_w2(g, s, 2); }, "testing::whitened_sliced_w2",
                        "samples", "5");
     }},
    {"wsw.rows_overflow",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       const dvec s(2);
       expect_error<IA>([&] { (void)testing::whitened_sliced_w2(g, s, (std::size_t{1} << 63) + 1); },
                        "testing::whitened_sliced_w2", "n", "9223372036854775809");
     }},
    {"wsw.directions_dim_wraps",
     [] {
       expect_error<IA>([] { (void)testing::wsw_directions((std::size_t{1} << 57) + 1); },
                        "testing::wsw_directions", "dim", "144115188075855873");
     }},
    {"wsw.nonfinite_sample_legal",
     [] {
       const auto g = testing::gaussian_mixture::ring2d();
       const dvec s = {0.1, 0.2, nan_v, 0.0};
       expect(testing::whitened_sliced_w2(g, s, 2) == inf_v, "a NaN sample does not score +inf");
     }},
    {"wsw.inverse_cdf_nan",
     [] {
       expect_error<DE>([] { (void)testing::inverse_normal_cdf(nan_v); }, "testing::inverse_normal_cdf", "p",
                        "nan");
     }},
    {"wsw.directions_dim_zero",
     [] {
       expect_error<IA>([] { (void)testing::wsw_directions(0); }, "testing::wsw_directions", "dim", "0");
     }},
};

// --- the driver --------------------------------------------------------------------------------------------

constexpr unsigned timeout_seconds = 20;

const misuse_case* find_case(std::string_view name) {
  for (const misuse_case& c : cases)
    if (name == c.name)
      return &c;
  return nullptr;
}

/// Runs one case here; prints "FAIL: <reason>" on stdout and returns 1 if its expectation does not hold.
int run_one(const misuse_case& c) {
  alarm(timeout_seconds);  // a hang or a deadlock ends the process with SIGALRM
  try {
    c.run();
  } catch (const failure& f) {
    std::printf("FAIL: %s\n", f.reason.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::printf("FAIL: unexpected exception %s: %s\n", typeid(e).name(), e.what());
    return 1;
  } catch (...) {
    std::printf("FAIL: unexpected non-std exception\n");
    return 1;
  }
  return 0;
}

/// Re-executes this program with --run NAME; returns the empty string if the case passed, else the reason.
std::string run_child(const char* self, const misuse_case& c) {
  int fds[2];
  if (pipe(fds) != 0)
    return "pipe() failed";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  char run_flag[] = "--run";
  std::string name = c.name;
  char* argv[] = {const_cast<char*>(self), run_flag, name.data(), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, self, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string out;
  if (spawned == 0) {
    char buffer[4096];
    for (ssize_t got; (got = read(fds[0], buffer, sizeof buffer)) > 0;)
      out.append(buffer, static_cast<std::size_t>(got));
  }
  close(fds[0]);
  if (spawned != 0)
    return std::string("posix_spawn failed: ") + std::strerror(spawned);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return "waitpid failed";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return "";
  if (const auto at = out.find("FAIL: "); at != std::string::npos) {
    std::string reason = out.substr(at + 6);
    while (!reason.empty() && reason.back() == '\n')
      reason.pop_back();
    return reason;
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (sig == SIGALRM)
      return "timed out after " + std::to_string(timeout_seconds) + " s (a hang or a deadlock)";
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) +
           "; a crash or a sanitizer abort, see stderr)";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status)) +
         " (a sanitizer report or std::terminate, see stderr)";
}

int run_all(const char* self) {
  std::size_t passed = 0, failed = 0;
  for (const misuse_case& c : cases) {
    const std::string reason = run_child(self, c);
    if (reason.empty()) {
      ++passed;
    } else {
      ++failed;
      std::printf("FAILED %s: %s\n", c.name, reason.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("misuse: %zu cases, %zu passed, %zu failed\n", passed + failed, passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (mode == "--list" && argc == 2) {
    for (const misuse_case& c : cases)
      std::printf("%s\n", c.name);
    return 0;
  }
  if (mode == "--run" && argc == 3) {
    const misuse_case* c = find_case(argv[2]);
    if (c == nullptr) {
      std::fprintf(stderr, "misuse_cases: no case named '%s' (see --list)\n", argv[2]);
      return 2;
    }
    return run_one(*c);
  }
  if (mode == "--all" && argc == 2) {
    // /proc/self/exe re-executes this very binary whatever the working directory; argv[0] elsewhere.
    const char* self = access("/proc/self/exe", X_OK) == 0 ? "/proc/self/exe" : argv[0];
    return run_all(self);
  }
  std::fprintf(stderr, "usage: %s --list | --run NAME | --all\n", argc > 0 ? argv[0] : "misuse_cases");
  return 2;
}
