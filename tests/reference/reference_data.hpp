// Reading the diffusers reference data (tests/data/diffusers, or $SKIPSTEP_REFERENCE_DIR): the folder, case files,
// numbers (with "nan"/"inf" strings), tensors and the noise schedule a case's config describes. Shared by the
// reference test files.
#pragma once

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "skipstep/interop/diffusers_config.hpp"
#include "skipstep/interop/diffusers_torch_noise.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/step/affine_step.hpp"

namespace skipstep_reference {

namespace fs = std::filesystem;
using json = nlohmann::json;

#ifndef SKIPSTEP_DEFAULT_REFERENCE_DIR
#define SKIPSTEP_DEFAULT_REFERENCE_DIR "tests/data/diffusers"
#endif

inline fs::path reference_dir() {
  if (const char* env = std::getenv("SKIPSTEP_REFERENCE_DIR"); env && *env) return env;
  return SKIPSTEP_DEFAULT_REFERENCE_DIR;
}

/// The scheduler classes this runner replays: those the loader supports (supported_scheduler_classes()); cases of
/// other classes are skipped and counted.
inline const std::set<std::string>& implemented_classes() {
  static const std::set<std::string> classes = [] {
    const auto list = skipstep::supported_scheduler_classes();
    return std::set<std::string>(list.begin(), list.end());
  }();
  return classes;
}

inline json load(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return json::parse(in);
}

inline double number(const json& v) {
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "nan") return std::nan("");
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    FAIL("unexpected string number " << s);
  }
  return v.get<double>();
}

inline std::vector<double> tensor(const json& v) {
  std::vector<double> out;
  out.reserve(v.size());
  for (const auto& e : v) out.push_back(number(e));
  return out;
}

/// The case files under reference_dir()/cases, sorted by name.
inline std::vector<fs::path> case_files() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(reference_dir() / "cases"))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

/// The README's portable generator "splitmix64-irwinhall12/1".
inline std::vector<double> portable_draw(std::uint64_t seed, std::uint32_t draw, std::size_t n) {
  std::uint64_t state = (seed << 32) | draw;
  std::vector<double> out(n);
  for (std::size_t e = 0; e < n; ++e) {
    double s = 0.0;
    for (int j = 0; j < 12; ++j) {
      state += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      s += static_cast<double>(z >> 11) * 0x1p-53;
    }
    out[e] = s - 6.0;
  }
  return out;
}

/// A case's config as a scheduler_config.json holds it: the recorded `config` with its `_class_name`.
inline json config_of(const json& c) {
  json cfg = c.at("config");
  cfg["_class_name"] = c.at("scheduler_class");
  return cfg;
}

/// What the case's pipeline passed to set_timesteps and step, as load_options.
inline skipstep::load_options case_options(const json& c) {
  skipstep::load_options o;
  const json& st = c.at("set_timesteps_kwargs");
  const auto given = [](const json& obj, const char* key) { return obj.contains(key) && !obj.at(key).is_null(); };
  if (st.is_object()) {
    if (given(st, "num_inference_steps")) o.num_inference_steps = st.at("num_inference_steps").get<std::size_t>();
    if (given(st, "timesteps")) o.timesteps = st.at("timesteps").get<std::vector<std::int64_t>>();
    if (given(st, "sigmas")) o.sigmas = tensor(st.at("sigmas"));
    if (given(st, "mu")) o.mu = st.at("mu").get<double>();
    if (given(st, "strength")) o.strength = st.at("strength").get<double>();
    if (given(st, "original_inference_steps"))
      o.original_inference_steps = st.at("original_inference_steps").get<std::size_t>();
  }
  const json& sk = c.at("step_kwargs");
  if (sk.is_object()) {
    if (given(sk, "eta")) o.eta = number(sk.at("eta"));
    o.use_clipped_model_output = sk.value("use_clipped_model_output", false);
    if (given(sk, "s_churn")) o.churn.s_churn = number(sk.at("s_churn"));
    if (given(sk, "s_tmin")) o.churn.s_tmin = number(sk.at("s_tmin"));
    if (given(sk, "s_tmax")) o.churn.s_tmax = number(sk.at("s_tmax"));
    if (given(sk, "s_noise")) o.churn.s_noise = number(sk.at("s_noise"));
  }
  o.num_samples = c.at("shape").at(0).get<std::size_t>();
  return o;
}

/// The case's scheduler through the loader, from its own config (and `extra` on top of case_options).
inline skipstep::loaded_scheduler load_case(const json& c, const skipstep::load_options& options) {
  return skipstep::load_scheduler_config(config_of(c), options);
}
inline skipstep::loaded_scheduler load_case(const json& c) { return load_case(c, case_options(c)); }

/// True for a case whose x_T and noise come from real torch CPU generators (group torch_generator).
inline bool uses_torch_generator(const json& c) {
  return c.value("group", std::string()) == "torch_generator" ||
         (c.contains("rng") && c.at("rng").is_object() &&
          c.at("rng").value("algorithm", std::string()) == "torch-cpu-generator/1");
}

/// A case's x_T and its noise draws (d = 1, 2, ... in diffusers' call order): the portable generator of `rng.seed`,
/// or, for the torch_generator group, torch's CPU generators of `rng.seeds` drawn by diffusers_torch_noise in
/// diffusers' order (x_T = randn_tensor(shape) · init_noise_sigma, then one whole tensor per step), in the dtype
/// the loaded scheduler says diffusers asks for. No recorded noise is used for the torch cases.
struct case_noise {
  bool torch = false;
  std::uint64_t seed = 0;
  std::size_t n = 0;
  std::vector<double> x_T;                 ///< diffusers' x_T (after init_noise_sigma)
  std::vector<std::vector<double>> draws;  ///< torch: draws[d], d >= 1
  [[nodiscard]] std::vector<double> draw(std::uint32_t d) const {
    if (!torch) return portable_draw(seed, d, n);
    if (d >= draws.size()) FAIL("torch draw " << d << " beyond the " << draws.size() << " drawn");
    return draws[d];
  }
};

inline skipstep::torch_dtype dtype_named(const std::string& name) {
  if (name == "float32") return skipstep::torch_dtype::float32;
  if (name == "float16") return skipstep::torch_dtype::float16;
  return skipstep::torch_dtype::float64;
}

inline case_noise noise_of(const json& c, const skipstep::loaded_scheduler& loaded) {
  case_noise out;
  out.n = c.at("x_T").size();
  out.torch = uses_torch_generator(c);
  if (!out.torch) {
    out.seed = c.at("rng").at("seed").get<std::uint64_t>();
    out.x_T = tensor(c.at("x_T"));
    return out;
  }
  const auto seeds = c.at("rng").at("seeds").get<std::vector<std::uint64_t>>();
  const auto shape = c.at("shape").get<std::vector<std::size_t>>();
  const auto model_dtype = dtype_named(c.value("model_dtype", std::string("float64")));
  auto source = skipstep::diffusers_torch_noise<double>::from_seeds(
      seeds, shape, loaded.noise_dtype(model_dtype, skipstep::torch_dtype::float32));
  out.x_T.resize(out.n);
  source.draw_initial(out.x_T, loaded.init_noise_sigma, skipstep::torch_dtype::float32);
  const std::size_t batch = shape.at(0), per = out.n / batch;
  const std::size_t steps = loaded.plan ? loaded.get().num_steps()
                            : loaded.grid ? loaded.grid->size()
                                          : c.at("num_steps").get<std::size_t>();
  out.draws.assign(1, {});
  for (std::size_t s = 0; s < steps; ++s) {  // one whole tensor per step: diffusers draws at most once per step
    std::vector<double> d(out.n);
    for (std::size_t b = 0; b < batch; ++b)
      source(std::span<double>(d).subspan(b * per, per), skipstep::noise_position{b, s, 0});
    out.draws.push_back(std::move(d));
  }
  return out;
}

/// For the torch cases: the recorded x_T and each recorded draw must equal ours bit for bit (a check only: the
/// replay uses ours).
inline void check_torch_noise(const json& c, const case_noise& noise, const std::function<void(bool, const std::string&)>& check) {
  if (!noise.torch) return;
  check(noise.x_T == tensor(c.at("x_T")), "x_T regenerated from torch's generator differs from diffusers'");
  for (const json& rec : c.at("steps")) {
    if (!rec.contains("noise") || rec.at("noise").is_null()) continue;
    const auto d = rec.at("noise_draw").get<std::uint32_t>();
    check(noise.draw(d) == tensor(rec.at("noise")),
          "torch draw " + std::to_string(d) + " differs from diffusers' (step " + std::to_string(rec.at("i").get<int>()) + ")");
  }
}

/// The noise a recorded step used: the case's own draw (the recorded one only when the case is portable, where
/// both are the same bits).
inline std::vector<double> step_noise(const json& rec, const case_noise& noise, std::size_t n) {
  if (!rec.contains("noise") || rec.at("noise").is_null()) return std::vector<double>(n, 0.0);
  if (!noise.torch) return tensor(rec.at("noise"));
  return noise.draw(rec.at("noise_draw").get<std::uint32_t>());
}

/// The README's deterministic model: out = 0.6·tanh(x) + 0.3·sin(x + 0.002·t), left to right.
inline std::vector<double> reference_model(const std::vector<double>& x, double t) {
  std::vector<double> out(x.size());
  const double tt = 0.002 * t;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double a = 0.6 * std::tanh(x[i]);
    const double b = 0.3 * std::sin(x[i] + tt);
    out[i] = a + b;
  }
  return out;
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

/// max|a − b| / max|b| (b the reference), +inf if either is non-finite where the other is not.
inline double rel_dev(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    d = std::max(d, std::abs(a[i] - b[i]));
  }
  const double scale = max_abs(b);
  return scale > 0.0 ? d / scale : d;
}

inline bool all_finite(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double e) { return std::isfinite(e); });
}

/// The scalars of an affine step that diffusers rounds to float32 (each of √ā's and √(1−ā)'s uses in the x̂0 and ε̂
/// maps, the step's weights, the noise std): `perturbed_scalar(c, k, rel)` moves scalar k by `rel` relative, so that
/// an isolated-step bound can measure the step's sensitivity to each rounding (at tiny ā, x̂0's float32 cancellation
/// is amplified by 1/√ā, which moving the levels alone does not reach).
inline constexpr int affine_scalar_count = 10;
inline skipstep::affine_step perturbed_scalar(skipstep::affine_step c, int k, double rel) {
  double* const scalars[] = {&c.pred.x0_from_sample, &c.pred.x0_from_model, &c.pred.eps_from_sample,
                             &c.pred.eps_from_model, &c.x0_weight,         &c.eps_weight,
                             &c.sample_weight,       &c.noise_std,         &c.reeps_from_sample,
                             &c.reeps_from_x0};
  if (k >= 0 && k < affine_scalar_count) *scalars[k] *= 1.0 + rel;
  return c;
}

/// Per-class results of the runner (printed as one line per class).
struct tally {
  int passed = 0, failed = 0, skipped = 0;
  double worst_pure = 0.0, worst_state = 0.0, worst_real = 0.0, worst_real_ratio = 0.0, worst_step = 0.0, worst_traj = 0.0;
};

/// Records one check of a case (the runner counts the case as failed if any check fails).
using check_fn = std::function<void(bool, const std::string&)>;

/// An expected-error case (group "error"): loading its configuration, options to sampler, must throw
/// std::invalid_argument; `check` records whether it did.
inline void check_refused(const json& c, const check_fn& check) {
  bool threw = false;
  try {
    (void)load_case(c);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "expected an invalid_argument for " + c.at("expected_error").dump());
}

/// True for the σ-space and flow classes replayed by replay_sigma_case (replay_sigma.cpp).
bool is_sigma_class(const std::string& scheduler_class);
/// Replays one case of EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete, FlowMatchEulerDiscrete or
/// DPMSolverMultistep.
void replay_sigma_case(const json& c, tally& t, const check_fn& check);
/// True for DEISMultistep and DPMSolverSinglestep, replayed by replay_deis_singlestep_case
/// (replay_deis_singlestep.cpp).
bool is_deis_singlestep_class(const std::string& scheduler_class);
/// Replays one DEISMultistep or DPMSolverSinglestep case.
void replay_deis_singlestep_case(const json& c, tally& t, const check_fn& check);

/// True for LCMScheduler and TCDScheduler (replay_consistency.cpp).
bool is_consistency_class(const std::string& scheduler_class);
/// Replays one LCM or TCD case (error cases included); `tables` is alphas_cumprod_tables.json's "tables".
void replay_consistency_case(const json& c, const json& tables, tally& t, const check_fn& check);

/// True for UniPCMultistepScheduler (replay_unipc.cpp).
bool is_unipc_class(const std::string& scheduler_class);
/// Replays one UniPC case (error cases included).
void replay_unipc_case(const json& c, tally& t, const check_fn& check);

}  // namespace skipstep_reference
