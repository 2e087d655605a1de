// libFuzzer target (issue 7): builds a noise schedule, a timestep list, a sigma policy, sampler options and a small
// tensor from the fuzzer's bytes, and runs a few sampler steps with a predictor whose outputs also come from the bytes.
//
// What counts as a finding (the process aborts, libFuzzer saves the input):
//  1. any exception other than std::invalid_argument / std::domain_error (or a derived type), a crash, a sanitizer
//     report, a hang (libFuzzer -timeout);
//  2. check_finite = true and a non-finite predictor output (or sample) that did not make the run throw, or a normal
//     return whose sample holds a non-finite value;
//  3. check_finite = true and a "sample ... must be finite" domain_error although the step was provably finite (3.);
//  4. the finiteness guarantee, with or without check_finite: when the initial sample and every predictor output are
//     finite, and the step's worst-case magnitude (below) stays under max<T>/16, every element of the new sample
//     (and of x̂0 handed to a callback) must be finite and within that worst case. The worst case is the triangle
//     inequality over the step's affine form, term by term, with the coefficients the sampler reports:
//       x̂0 bound  R0 = |px|·X + |pm|·M              (X = max|x|, M = max|m| of this step)
//       P(x̂0)     R0 (none), min(R0, clip range) (clip), 1 (dynamic thresholding)
//       ε̂ bound   |ex|·X + |em|·M, or |rx|·X + |r0|·P  (use_clipped_model_output)
//       x_s bound |w0|·P + |we|·E + |wx|·X + |σz|·6.77 (|z| <= 6.764 for philox_normal, detail/normal_transform.hpp)
//     and, without processing, also the fused form |a|·X + |b|·M + |σz|·6.77 (the larger of the two is used, so the
//     check does not depend on which kernel the library picks). A coefficient above max<T>/16 makes the bound
//     infinite. Where the bound exceeds max<T>/16 the library promises nothing beyond check 2 (e.g. epsilon
//     prediction at ā ≈ 1e-300, whose x̂0 = (x − √(1−ā)·ε)/√ā overflows float): those runs are only counted.
// Set SKIPSTEP_FUZZ_STATS=1 to print counters at exit.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/skipstep.hpp"

using namespace skipstep;

namespace {

// --- statistics ---------------------------------------------------------------------------------------------------
struct stats_t {
  unsigned long long inputs = 0, built = 0, sampled = 0, invalid = 0, domain = 0, checked_throw = 0, bounded_steps = 0,
                     unbounded_steps = 0, unbounded_nonfinite = 0, poisoned = 0;
  ~stats_t() {
    if (std::getenv("SKIPSTEP_FUZZ_STATS") == nullptr) return;
    std::fprintf(stderr,
                 "skipstep fuzz stats: inputs %llu, samplers built %llu, runs completed %llu, invalid_argument %llu, "
                 "domain_error %llu (of which check_finite %llu), steps with a finite bound %llu, steps beyond the "
                 "bound %llu (non-finite elements there: %llu), poisoned predictor runs %llu\n",
                 inputs, built, sampled, invalid, domain, checked_throw, bounded_steps, unbounded_steps,
                 unbounded_nonfinite, poisoned);
  }
};
stats_t stats;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "skipstep fuzz FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// --- bytes → values -----------------------------------------------------------------------------------------------
class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  std::uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint64_t bits(int nbytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < nbytes; ++i) v = (v << 8) | byte();
    return v;
  }
  /// An integer in [lo, hi].
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t span = hi - lo;
    if (span == 0) return lo;
    int nbytes = 0;
    for (std::uint64_t s = span; s != 0; s >>= 8) ++nbytes;
    const std::uint64_t v = bits(nbytes);
    return span == std::numeric_limits<std::uint64_t>::max() ? v : lo + v % (span + 1);
  }
  bool flag() { return (byte() & 1) != 0; }
  /// A double in [0, 1].
  double unit() { return static_cast<double>(bits(4)) / 4294967295.0; }
  /// Any double, biased to the edges that matter (0, 1, tiny, NaN, ±inf, raw bit patterns).
  double any() {
    static constexpr double specials[] = {0.0,
                                          -0.0,
                                          1.0,
                                          0.5,
                                          2.0,
                                          -1.0,
                                          1e-300,
                                          std::numeric_limits<double>::denorm_min(),
                                          0.9999999999999999,
                                          1.0000000000000002,
                                          std::numeric_limits<double>::quiet_NaN(),
                                          std::numeric_limits<double>::infinity(),
                                          -std::numeric_limits<double>::infinity(),
                                          1e-8,
                                          0.999,
                                          1e300,
                                          0.02,
                                          1e-4,
                                          0.012,
                                          0.00085,
                                          std::numeric_limits<double>::max(),
                                          std::numeric_limits<double>::min()};
    switch (byte() % 8) {
      case 0: return std::bit_cast<double>(bits(8));
      case 1:
      case 2: return specials[byte() % std::size(specials)];
      case 3:
      case 4: return unit();
      case 5: return unit() * unit() * 0.1;
      case 6: return -unit();
      default: return std::exp(-unit() * 745.0);
    }
  }
  bool empty() const { return n_ == 0; }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

// --- schedule, timesteps, policy ------------------------------------------------------------------------------------
template <class Real>
noise_schedule<Real> make_schedule(reader& r) {
  const std::size_t big_t = r.flag() ? r.range(0, 1100) : r.range(1, 64);
  std::optional<noise_schedule<Real>> s;
  switch (r.byte() % 6) {
    case 0:
      s.emplace(r.flag() ? noise_schedule<Real>::linear(big_t) : noise_schedule<Real>::linear(big_t, r.any(), r.any()));
      break;
    case 1:
      s.emplace(r.flag() ? noise_schedule<Real>::scaled_linear(big_t)
                         : noise_schedule<Real>::scaled_linear(big_t, r.any(), r.any()));
      break;
    case 2: s.emplace(r.flag() ? noise_schedule<Real>::cosine(big_t) : noise_schedule<Real>::cosine(big_t, r.any())); break;
    case 3: {  // explicit betas
      std::vector<double> betas(r.range(0, 48));
      const bool wild = r.flag();
      for (double& b : betas) b = wild ? r.any() : 1e-6 + r.unit() * (r.flag() ? 0.05 : 0.999);
      if (!betas.empty() && r.flag()) betas.back() = 1.0;
      s.emplace(noise_schedule<Real>::from_betas(betas));
      break;
    }
    case 4: {  // generated betas between two fuzzed ends (long schedules, possibly tiny ā)
      const std::size_t n = r.range(0, 4096);
      const double b0 = r.flag() ? r.any() : r.unit(), b1 = r.flag() ? r.any() : r.unit();
      std::vector<double> betas(n);
      for (std::size_t i = 0; i < n; ++i)
        betas[i] = n == 1 ? b0 : b0 + (b1 - b0) * static_cast<double>(i) / static_cast<double>(n - 1);
      s.emplace(noise_schedule<Real>::from_betas(betas));
      break;
    }
    default: {  // explicit ā table
      std::vector<double> ab(r.range(0, 48));
      const bool wild = r.flag();
      double a = 1.0;
      for (double& v : ab) {
        a *= r.unit();
        v = wild ? r.any() : a;
      }
      s.emplace(noise_schedule<Real>::from_alphas_cumprod(ab));
      break;
    }
  }
  if (r.byte() % 4 == 0) return s->rescale_zero_terminal_snr();
  return *s;
}

timestep_schedule make_timesteps(reader& r, std::size_t schedule_t) {
  const std::size_t big_t = r.byte() % 16 == 0 ? r.range(0, 1200) : schedule_t;
  const std::size_t n = r.flag() ? r.range(1, std::max<std::size_t>(1, std::min<std::size_t>(big_t, 24)))
                                 : r.range(0, big_t + 1);
  std::optional<timestep_schedule> ts;
  switch (r.byte() % 6) {
    case 0: ts.emplace(timestep_schedule::leading(big_t, n, r.flag() ? r.range(0, 2) : r.range(0, 2000))); break;
    case 1: ts.emplace(timestep_schedule::trailing(big_t, n)); break;
    case 2: ts.emplace(timestep_schedule::linspace(big_t, n)); break;
    case 3: ts.emplace(timestep_schedule::uniform(big_t, n)); break;
    case 4: ts.emplace(timestep_schedule::quadratic(big_t, n)); break;
    default: {
      std::vector<std::int64_t> list(r.range(0, 24));
      switch (r.byte() % 3) {
        case 0:  // sorted, in range: mostly valid (duplicates possible)
          for (auto& t : list) t = static_cast<std::int64_t>(r.range(0, big_t > 0 ? big_t - 1 : 0));
          std::sort(list.begin(), list.end(), std::greater<>());
          break;
        case 1:
          for (auto& t : list) t = static_cast<std::int64_t>(r.range(0, big_t + 2)) - 1;
          break;
        default:
          for (auto& t : list) t = std::bit_cast<std::int64_t>(r.bits(8));
      }
      ts.emplace(timestep_schedule::custom(big_t, list));
    }
  }
  return r.flag() ? ts->with_final_alpha(final_alpha::alpha_cumprod_0) : *ts;
}

// --- the sampler, and the run -----------------------------------------------------------------------------------
constexpr double max_abs_z = 6.77;  // |z| <= sqrt(-2 ln 2^-33) = 6.764 for philox_normal

template <class T>
struct monitor {
  const sampler* s = nullptr;
  x0_processing processing;
  std::size_t first_step = 0;
  double limit = static_cast<double>(std::numeric_limits<T>::max()) / 16.0;
  bool inputs_finite = true;  // x at the start and every predictor output so far
  bool poisoned = false;      // the predictor has returned a non-finite value
  std::vector<double> bound, x0_bound;
  std::size_t current = 0;  // the step the last predictor call was for

  double term(double c, double v) const {
    if (!std::isfinite(c) || std::abs(c) > limit) return std::numeric_limits<double>::infinity();
    return v == 0.0 ? 0.0 : std::abs(c) * v;
  }

  /// Records the bound of step i given max|x| and max|m|.
  void plan_step(std::size_t i, double big_x, double big_m, double noise_scale = 1.0) {
    const affine_step& c = s->coefficients().at(i);
    const double r0 = term(c.pred.x0_from_sample, big_x) + term(c.pred.x0_from_model, big_m);
    double p = r0;
    if (processing.mode == x0_processing::kind::clip) p = std::min(r0, processing.clip_range * (1 + 1e-6));
    if (processing.mode == x0_processing::kind::dynamic_threshold) p = 1.0;
    const double e = processing.use_clipped_model_output
                         ? std::max(term(c.reeps_from_sample, big_x) + term(c.reeps_from_x0, p),
                                    term(c.pred.eps_from_sample, big_x) + term(c.pred.eps_from_model, big_m))
                         : term(c.pred.eps_from_sample, big_x) + term(c.pred.eps_from_model, big_m);
    const double z_term = c.noise_std == 0.0 ? 0.0 : term(c.noise_std, max_abs_z) * noise_scale;
    double out = term(c.x0_weight, p) + term(c.eps_weight, e) + term(c.sample_weight, big_x) + z_term;
    if (processing.is_identity())
      out = std::max(out, term(c.sample_coeff(), big_x) + term(c.model_coeff(), big_m) + z_term);
    if (r0 > limit) out = std::numeric_limits<double>::infinity();  // x̂0 itself may overflow before processing
    bound.at(i) = out;
    x0_bound.at(i) = p;
    if (out <= limit)
      ++stats.bounded_steps;
    else
      ++stats.unbounded_steps;
  }

  /// The guarantee (4.) for the sample after step i.
  void check_after(std::size_t i, std::span<const T> x, const char* where) const {
    const bool valid = inputs_finite && bound.at(i) <= limit;
    for (std::size_t k = 0; k < x.size(); ++k) {
      const double v = static_cast<double>(x[k]);
      if (valid && !(std::abs(v) <= bound[i] * (1 + 1e-4) + 1e-37))
        finding(std::string(where) + ": step " + std::to_string(i) + " element " + std::to_string(k) + " = " +
                std::to_string(v) + " outside the finite bound " + std::to_string(bound[i]));
      if (!valid && inputs_finite && !std::isfinite(v)) ++stats.unbounded_nonfinite;
    }
  }
};

template <class T>
double max_abs(std::span<const T> v) {
  double m = 0.0;
  for (T e : v) m = std::max(m, std::abs(static_cast<double>(e)));
  return m;
}

template <class T>
bool all_finite(std::span<const T> v) {
  return std::all_of(v.begin(), v.end(), [](T e) { return std::isfinite(e); });
}

template <class T, class Real>
void run_with(reader& r, const noise_schedule<Real>& schedule) {
  const timestep_schedule ts = make_timesteps(r, schedule.num_train_timesteps());

  sampler_options opt;
  opt.prediction = static_cast<prediction_type>(r.byte() % 3);
  switch (r.byte() % 3) {
    case 0: opt.processing = x0_processing::none(); break;
    case 1: opt.processing = x0_processing::clip(r.flag() ? r.any() : 0.1 + 4 * r.unit()); break;
    default:
      opt.processing = r.flag() ? x0_processing::dynamic_threshold(r.any(), r.any())
                                : x0_processing::dynamic_threshold(0.5 + 0.5 * r.unit(), 0.5 + 3 * r.unit());
  }
  opt.processing = opt.processing.with_clipped_model_output(r.flag());
  opt.convention = r.flag() ? step_convention::diffusers : step_convention::consistent;
  opt.num_samples = r.range(0, 4);
  opt.check_finite = r.flag();

  // The sigma policy's values are drawn before the sampler is built (a policy is called once per step).
  std::array<double, 8> pool{};
  for (double& v : pool) v = r.flag() ? r.any() : r.unit() * 0.5;
  const std::size_t pool_n = r.range(1, pool.size());
  auto lambda_sigma = [&](const step_context& c) { return pool[c.step_index % pool_n]; };
  auto lambda_choice = [&](const step_context& c) {
    return sigma_choice{pool[c.step_index % pool_n], pool[(c.step_index + 1) % pool_n]};
  };

  std::optional<sampler> s;
  const int kind = r.byte() % 3;
  variance_type ddpm_variance = variance_type::fixed_small;
  if (kind == 0) {
    switch (r.byte() % 6) {
      case 0: s.emplace(ddim_sampler(schedule, ts, eta{r.flag() ? r.any() : 2 * r.unit()}, opt)); break;
      case 1: s.emplace(ddim_sampler(schedule, ts, larger_variance{}, opt)); break;
      case 2: {
        std::vector<double> values(r.flag() ? ts.size() : r.range(0, 32));
        for (double& v : values) v = r.flag() ? r.any() : r.unit() * 0.1;
        s.emplace(ddim_sampler(schedule, ts, sigma_list{values}, opt));
        break;
      }
      case 3: s.emplace(ddim_sampler(schedule, ts, lambda_sigma, opt)); break;
      case 4: s.emplace(ddim_sampler(schedule, ts, lambda_choice, opt)); break;
      default: s.emplace(ddim_sampler(schedule, ts, eta{0.0}, opt)); break;
    }
  } else if (kind == 1) {
    ddpm_variance = static_cast<variance_type>(r.byte() % 6);
    s.emplace(ddpm_sampler(schedule, ts, ddpm_variance, opt));
  } else {
    s.emplace(ddim_inverse_sampler(schedule, ts, opt));
  }
  ++stats.built;
  if (std::getenv("SKIPSTEP_FUZZ_VERBOSE") != nullptr)
    std::fprintf(stderr,
                 "config: schedule<%s> T=%zu abar[0]=%g abar[T-1]=%g, timesteps T=%zu N=%zu t0=%lld, sampler %d, "
                 "prediction %d, processing %d, num_samples %zu, check_finite %d, tensor<%s>\n",
                 sizeof(Real) == 4 ? "float" : "double", schedule.num_train_timesteps(), schedule.alpha_cumprod(0),
                 schedule.alpha_cumprod(schedule.num_train_timesteps() - 1), ts.num_train_timesteps(), ts.size(),
                 static_cast<long long>(ts[0]), kind, static_cast<int>(opt.prediction),
                 static_cast<int>(opt.processing.mode), opt.num_samples, opt.check_finite ? 1 : 0,
                 sizeof(T) == 4 ? "float" : "double");
  if (s->coefficients().size() != s->num_steps() || s->transitions().size() != s->num_steps())
    finding("coefficients/transitions size differs from num_steps");
  // A sampler that was built has finite coefficients (they are computed in double from a validated schedule).
  for (std::size_t i = 0; i < s->num_steps(); ++i) {
    const affine_step& c = s->coefficients()[i];
    const double all[] = {c.pred.x0_from_sample, c.pred.x0_from_model, c.pred.eps_from_sample, c.pred.eps_from_model,
                          c.x0_weight, c.eps_weight, c.sample_weight, c.noise_std, c.reeps_from_sample,
                          c.reeps_from_x0};
    for (double v : all) {
      if (std::isfinite(v)) continue;
      finding("non-finite coefficient at step " + std::to_string(i) + " (t = " +
                std::to_string(s->transitions()[i].timestep) + ", abar " +
                detail::format_value(s->transitions()[i].alpha_cumprod_from) + " -> " +
                detail::format_value(s->transitions()[i].alpha_cumprod_to) + ")");
    }
  }

  // The sample and the predictor's outputs.
  const std::size_t n = r.range(0, 64);
  static constexpr double scales[] = {0.5, 1.0, 4.0, 100.0, 1e4, 1e6};
  const double x_scale = scales[r.byte() % std::size(scales)];
  const double m_scale = scales[r.byte() % std::size(scales)];
  std::vector<T> x(n);
  for (T& v : x) v = static_cast<T>((2 * r.unit() - 1) * x_scale);
  std::vector<T> model_pool(r.range(1, 64));
  for (T& v : model_pool) v = static_cast<T>((2 * r.unit() - 1) * m_scale);
  const double tanh_gain = r.flag() ? r.unit() : 0.0;
  // Poison: a non-finite value at one (step, element) of the predictor's output.
  const bool poison = r.byte() % 8 == 0;
  const std::size_t poison_step = r.range(0, 16), poison_elem = r.range(0, 63);
  const T poison_value = std::array<T, 3>{std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                                          -std::numeric_limits<T>::infinity()}[r.byte() % 3];

  const std::size_t steps_cap = r.range(1, 16);
  const bool use_callback = r.flag();
  const bool writing = r.flag();
  const bool pass_noise = r.byte() % 8 != 0;
  const std::size_t nsteps = s->num_steps();
  const std::size_t first_step = r.byte() % 16 == 0
                                     ? r.range(0, nsteps + 1)
                                     : (use_callback ? r.range(0, nsteps) : nsteps - std::min(nsteps, steps_cap));
  const std::uint64_t seed = r.bits(8);

  monitor<T> mon;
  mon.s = &*s;
  mon.processing = opt.processing;
  mon.first_step = first_step;
  mon.bound.assign(nsteps, 0.0);
  mon.x0_bound.assign(nsteps, 0.0);
  mon.inputs_finite = all_finite(std::span<const T>(x));
  std::size_t calls = 0;

  auto fill_output = [&](const std::vector<T>& in, std::int64_t t, std::span<T> out) {
    const std::size_t i = first_step + calls;
    if (i >= nsteps) finding("predictor called more often than the steps left");
    if (s->transitions()[i].timestep != t) finding("predictor called with an unexpected timestep");
    if (calls > 0) mon.check_after(i - 1, std::span<const T>(in), "sample");
    ++calls;
    for (std::size_t k = 0; k < out.size(); ++k) {
      const double base = static_cast<double>(model_pool[(k + 7 * i) % model_pool.size()]);
      // A learned-variance DDPM model writes [m_b; v_b] per sample: twice x's size.
      out[k] = static_cast<T>(base + tanh_gain * std::tanh(static_cast<double>(in[k % in.size()])));
    }
    if (poison && i == first_step + poison_step && poison_elem < out.size()) {
      out[poison_elem] = poison_value;
      mon.poisoned = true;
      ++stats.poisoned;
    }
    if (!all_finite(std::span<const T>(out.data(), out.size()))) mon.inputs_finite = false;
    mon.current = i;
    // Learned variance: the added noise's std is per element, learned_noise_std(type, v), v the second half of
    // each sample's output; the bound uses its largest value (infinite if it overflows).
    double noise_scale = 1.0;
    if (s->output_factor() == 2 && out.size() == 2 * in.size()) {  // else the sampler rejects the size
      const step_transition& tr = s->transitions()[i];
      const ddpm_posterior post = ddpm_posterior_at(tr.alpha_cumprod_from, tr.alpha_cumprod_to);
      const std::size_t per = in.size() / opt.num_samples;
      noise_scale = 0.0;
      for (std::size_t b = 0; b < opt.num_samples; ++b)
        for (std::size_t k = 0; k < per; ++k) {
          const double sd = post.learned_noise_std(ddpm_variance, static_cast<double>(out[2 * b * per + per + k]));
          noise_scale = std::isfinite(sd) ? std::max(noise_scale, sd) : std::numeric_limits<double>::infinity();
        }
    }
    mon.plan_step(i, max_abs(std::span<const T>(in)), max_abs(std::span<const T>(out.data(), out.size())),
                  noise_scale);
  };
  auto writing_predictor = [&](const std::vector<T>& in, std::int64_t t, std::span<T> out) { fill_output(in, t, out); };
  auto returning_predictor = [&](const std::vector<T>& in, std::int64_t t) {
    std::vector<T> out(in.size());
    fill_output(in, t, out);
    return out;
  };
  std::size_t callback_steps = 0;
  auto callback = [&](const step_info& info, std::span<const T> xs, std::span<const T> x0) {
    if (info.step_index != mon.current) finding("callback step index differs from the predictor's");
    mon.check_after(info.step_index, xs, "sample (callback)");
    if (mon.inputs_finite && mon.bound[info.step_index] <= mon.limit)
      for (T v : x0)
        if (!(std::abs(static_cast<double>(v)) <= mon.x0_bound[info.step_index] * (1 + 1e-4) + 1e-37))
          finding("x0 outside its bound at step " + std::to_string(info.step_index));
    return ++callback_steps < steps_cap;
  };

  auto run = [&](auto& predictor) -> sample_result {
    const philox_normal rng(seed);
    if (pass_noise) {
      if (use_callback) return s->sample(predictor, x, rng, callback, first_step);
      return s->sample(predictor, x, rng, no_callback{}, first_step);
    }
    if (use_callback) return s->sample(predictor, x, no_noise{}, callback, first_step);
    return s->sample(predictor, x, no_noise{}, no_callback{}, first_step);
  };

  sample_result result;
  try {
    result = writing ? run(writing_predictor) : run(returning_predictor);
  } catch (const std::domain_error& e) {
    const std::string msg = e.what();
    if (msg.find("must be finite") != std::string::npos) {
      ++stats.checked_throw;
      if (!opt.check_finite) finding("finite-check error without check_finite: " + msg);
      if (msg.find("model output at step") != std::string::npos && !mon.poisoned)
        finding("model output reported non-finite but the predictor's was finite: " + msg);
      if (msg.find("sample at step") != std::string::npos && mon.inputs_finite &&
          mon.bound.at(mon.current) <= mon.limit)
        finding("sample reported non-finite although its step was provably finite: " + msg);
    }
    throw;
  }
  ++stats.sampled;
  if (mon.poisoned && opt.check_finite) finding("a non-finite predictor output did not make check_finite throw");
  const std::size_t expected = nsteps - first_step;
  if (!result.cancelled && result.steps_run != expected) finding("steps_run differs from N - first_step");
  if (result.cancelled && !(use_callback && result.steps_run == steps_cap)) finding("unexpected cancellation");
  if (result.steps_run > 0) mon.check_after(first_step + result.steps_run - 1, std::span<const T>(x), "final sample");
  if (opt.check_finite && !all_finite(std::span<const T>(x)))
    finding("check_finite run returned a non-finite sample");
}

template <class Real>
void run_schedule(reader& r) {
  const noise_schedule<Real> schedule = make_schedule<Real>(r);
  // The class invariants noise_schedule documents: β_t in (0, 1], ā in (0, 1) except ā_{T−1} = 0 allowed, ā
  // non-increasing. ā = 1 is tolerated (β below 2^-53 rounds 1 − β to 1 even in double). noise_schedule<float>
  // must reject tables whose β or ā round to 0 in float, so the invariants hold for both value types.
  const auto ab = schedule.alphas_cumprod();
  const std::size_t big_t = ab.size();
  for (std::size_t t = 0; t < big_t; ++t) {
    const double a = static_cast<double>(ab[t]);
    const double b = static_cast<double>(schedule.betas()[t]);
    const bool ok = (b > 0.0 && b <= 1.0) && (a > 0.0 || (a == 0.0 && t + 1 == big_t)) && a <= 1.0 &&
                    (t == 0 || a <= static_cast<double>(ab[t - 1]));
    if (!ok)
      finding("schedule invariant broken at t = " + std::to_string(t) + ": abar = " + detail::format_value(a) +
              ", beta = " + detail::format_value(b));
  }
  if (r.flag())
    run_with<float>(r, schedule);
  else
    run_with<double>(r, schedule);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ++stats.inputs;
  reader r(data, size);
  try {
    if (r.flag())
      run_schedule<float>(r);
    else
      run_schedule<double>(r);
  } catch (const std::invalid_argument& e) {
    if (std::getenv("SKIPSTEP_FUZZ_VERBOSE") != nullptr) std::fprintf(stderr, "invalid_argument: %s\n", e.what());
    ++stats.invalid;
    if (std::strncmp(e.what(), "skipstep::", 10) != 0) finding(std::string("message not prefixed: ") + e.what());
  } catch (const std::domain_error& e) {
    if (std::getenv("SKIPSTEP_FUZZ_VERBOSE") != nullptr) std::fprintf(stderr, "domain_error: %s\n", e.what());
    ++stats.domain;
    if (std::strncmp(e.what(), "skipstep::", 10) != 0) finding(std::string("message not prefixed: ") + e.what());
  } catch (const std::exception& e) {
    finding(std::string("unexpected exception type: ") + e.what());
  } catch (...) {
    finding("unexpected non-std exception");
  }
  return 0;
}
