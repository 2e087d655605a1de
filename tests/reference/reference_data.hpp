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

/// The scheduler classes this runner replays; cases of other classes are skipped and counted.
inline const std::set<std::string>& implemented_classes() {
  static const std::set<std::string> classes{"DDIMScheduler",
                                             "DDPMScheduler",
                                             "DDIMInverseScheduler",
                                             "EulerDiscreteScheduler",
                                             "EulerAncestralDiscreteScheduler",
                                             "HeunDiscreteScheduler",
                                             "FlowMatchEulerDiscreteScheduler",
                                             "DPMSolverMultistepScheduler",
                                             "LCMScheduler",
                                             "TCDScheduler",
                                             "PNDMScheduler",
                                             "IPNDMScheduler",
                                             "DEISMultistepScheduler",
                                             "DPMSolverSinglestepScheduler",
                                             "UniPCMultistepScheduler"};
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

inline skipstep::noise_schedule<double> schedule_from_config(const json& cfg) {
  const auto T = cfg.at("num_train_timesteps").get<std::size_t>();
  skipstep::noise_schedule<double> s = [&] {
    if (cfg.contains("trained_betas") && !cfg.at("trained_betas").is_null())
      return skipstep::noise_schedule<double>::from_betas(tensor(cfg.at("trained_betas")));
    const auto kind = cfg.at("beta_schedule").get<std::string>();
    const double b0 = cfg.at("beta_start").get<double>(), b1 = cfg.at("beta_end").get<double>();
    if (kind == "linear") return skipstep::noise_schedule<double>::linear(T, b0, b1);
    if (kind == "scaled_linear") return skipstep::noise_schedule<double>::scaled_linear(T, b0, b1);
    if (kind == "squaredcos_cap_v2") return skipstep::noise_schedule<double>::cosine(T);
    FAIL("unknown beta_schedule " << kind);
    return skipstep::noise_schedule<double>::linear(T);
  }();
  if (cfg.value("rescale_betas_zero_snr", false)) s = s.rescale_zero_terminal_snr();
  return s;
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
