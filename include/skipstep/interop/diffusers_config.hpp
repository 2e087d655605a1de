/// @file
/// Opt-in: a diffusers `scheduler_config.json` (a model folder's `scheduler/scheduler_config.json`, or
/// `scheduler.config` of a Python run) loaded into the configured skipstep sampler, in diffusers' convention, for
/// `num_inference_steps` (and `strength`, `mu` / the image sequence length, or a caller-given timestep / σ list).
/// Every key diffusers defines for a supported class is honoured, or rejected with an error naming the key, the
/// value and what is supported; missing keys take diffusers' defaults for that class (diffusers
/// src/diffusers/schedulers/scheduling_*.py, `__init__`, at the commit the reference data names). The only header of
/// skipstep that needs nlohmann/json (link skipstep::diffusers).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/interop/torch_generator.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/schedule/flow_grid.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/path.hpp"
#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/schedule/timesteps.hpp"
#include "skipstep/solver/consistency.hpp"
#include "skipstep/solver/deis.hpp"
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/dpm_solver_singlestep.hpp"
#include "skipstep/solver/euler.hpp"
#include "skipstep/solver/ipndm.hpp"
#include "skipstep/solver/pndm.hpp"
#include "skipstep/solver/unipc.hpp"

namespace skipstep {

/// What a diffusers pipeline passes to `set_timesteps` and `step` besides the config, and skipstep's batch size.
struct load_options {
  /// set_timesteps(num_inference_steps). Required, except for DDPM (absent: the training chain T−1..0, as when
  /// set_timesteps is never called) and when `timesteps` or `sigmas` are given.
  std::optional<std::size_t> num_inference_steps;
  /// img2img strength in [0, 1]: LCM / TCD pass it to set_timesteps; every other class keeps its N steps and
  /// reports the first step to run (`loaded_scheduler::first_step`, diffusers' pipeline `get_timesteps`).
  std::optional<double> strength;
  /// μ of FlowMatchEulerDiscrete's dynamic shifting (use_dynamic_shifting = true), or ...
  std::optional<double> mu;
  /// ... the image sequence length it is computed from, as Flux's pipeline does (calculate_shift with the config's
  /// base_image_seq_len, max_image_seq_len, base_shift, max_shift).
  std::optional<std::size_t> image_seq_len;
  /// A caller-given list of integer timesteps, decreasing (set_timesteps(timesteps=...)): DDPM, LCM, TCD, Euler and
  /// Heun (σ̃ interpolated at them).
  std::vector<std::int64_t> timesteps;
  /// A caller-given list of unshifted flow levels (FlowMatchEulerDiscrete set_timesteps(sigmas=...)).
  std::vector<double> sigmas;
  /// LCM / TCD set_timesteps(original_inference_steps=...): overrides the config's value.
  std::optional<std::size_t> original_inference_steps;
  /// step(eta=...): DDIM (default 0) and TCD's γ (default 0.3).
  std::optional<double> eta;
  /// DDIM step(use_clipped_model_output=...).
  bool use_clipped_model_output = false;
  /// EulerDiscrete step(s_churn, s_tmin, s_tmax, s_noise).
  euler_churn churn;
  /// Samples in x (the latent batch): thresholding and noise streams run per sample.
  std::size_t num_samples = 1;
  /// The ā table to use instead of the one the config's betas define (e.g. the float32 table diffusers holds).
  std::vector<double> alphas_cumprod;
  /// σ-space, flow and multistep classes: run on exactly this grid (levels and model times) instead of the one
  /// set_timesteps would build (e.g. a grid recorded from a diffusers run). The config still decides everything
  /// else.
  std::optional<sigma_grid> grid;
  /// false: resolve and check every key, but build no sampler (`plan` stays empty and so do the per-row lists), e.g.
  /// to inspect the settings of a configuration whose sampler refuses to build.
  bool build = true;
};

/// A loaded diffusers scheduler: the sampler and its resolved plan.
struct loaded_scheduler {
  std::string class_name;  ///< `_class_name`.
  /// The configured sampler (each solver class adds no data to `sampler` but accessors, so it is held as one).
  std::optional<sampler> plan;
  std::vector<double> model_times;     ///< the model time of each row (evaluation), in evaluation order.
  std::vector<double> alphas_cumprod;  ///< VP classes: ā before each step, then after the last (N + 1 values).
  std::vector<double> sigmas;          ///< grid classes: the N + 1 levels (σ̃ = √((1−ā)/ā), or flow s).
  bool flow = false;                   ///< the levels are a rectified flow's s (FlowMatch, use_flow_sigmas).
  bool sigma_space = false;  ///< diffusers' sample is x̃ = x/α (Euler, Euler ancestral, Heun): see the scales below.
  /// diffusers' `init_noise_sigma` (float32 for Euler, Euler ancestral and Heun, as diffusers computes it).
  double init_noise_sigma = 1.0;
  /// skipstep's state x = diffusers' initial latents × this (α of the first level for σ-space classes, else 1).
  double state_from_diffusers_start = 1.0;
  /// diffusers' final sample = skipstep's × this (1/α of the last level for σ-space classes, else 1).
  double diffusers_from_state_end = 1.0;
  std::size_t first_step = 0;  ///< img2img: run sample(..., first_step) (0 without `strength`).
  /// The steps at which diffusers calls randn_tensor (true) and the noise is stochastic.
  std::vector<bool> draws_noise;
  /// Which dtype diffusers asks randn_tensor for a step's noise.
  enum class noise_dtype_rule {
    model,    ///< the model output's dtype.
    sample,   ///< the sample's dtype.
    float32,  ///< always float32.
    none      ///< no step draws noise.
  };
  noise_dtype_rule noise_rule = noise_dtype_rule::none;  ///< the rule of this class (see noise_dtype_rule).
  std::vector<std::string> defaulted_keys;  ///< diffusers keys absent from the config: diffusers' default used.
  std::vector<std::string> ignored_keys;    ///< metadata (`_...`) and keys with no effect on this class's sampling.
  std::vector<std::string> unknown_keys;    ///< not a key of this class (diffusers ignores them with a warning).
  std::vector<std::string> notes;           ///< values diffusers itself rewrites (e.g. DEIS algorithm_type) and why.

  // The resolved settings (what was built; also what a caller needs to rebuild a variant).
  std::optional<noise_schedule<double>> schedule;  ///< VP classes' training schedule.
  std::optional<timestep_schedule> timesteps;      ///< DDIM, DDPM, DDIM inverse.
  std::vector<std::int64_t> integer_timesteps;     ///< LCM, TCD, PNDM (evaluation order).
  std::optional<sigma_grid> grid;                  ///< σ, flow and multistep classes.
  sigma_grid_options sigma_options;          ///< Euler, Euler ancestral, Heun: how `grid` was built.
  flow_grid_options flow_options;            ///< FlowMatchEulerDiscrete: how `grid` was built.
  multistep_grid_options multistep_options;  ///< multistep VP classes: how `grid` was built.
  std::optional<ipndm_grid> ipndm;                 ///< IPNDM.
  sampler_options options;                         ///< prediction, processing, diffusers convention, batch.
  double eta = 0.0;                                ///< DDIM's η / TCD's γ.
  variance_type variance = variance_type::fixed_small;  ///< DDPM.
  euler_churn churn;                                    ///< Euler.
  bool stochastic = false;                              ///< FlowMatch stochastic_sampling.
  double timestep_scaling = 10.0;                       ///< LCM.
  bool skip_prk_steps = false;                          ///< PNDM.
  timestep_spacing spacing = timestep_spacing::leading;  ///< PNDM.
  std::size_t steps_offset = 0;                          ///< PNDM.
  final_alpha after_last = final_alpha::one;             ///< PNDM.
  dpm_solver_options dpm;                                ///< DPMSolverMultistep.
  dpm_singlestep_options singlestep;                     ///< DPMSolverSinglestep.
  deis_options deis;                                     ///< DEISMultistep.
  unipc_options unipc;                                   ///< UniPCMultistep.

  /// The sampler (throws std::logic_error if none was built, which load_scheduler_config never returns).
  [[nodiscard]] const sampler& get() const {
    if (!plan) throw std::logic_error("skipstep::loaded_scheduler::get: no sampler");
    return *plan;
  }
  /// The dtype diffusers' randn_tensor draws a step's noise in, given the pipeline's model-output and sample dtypes.
  [[nodiscard]] torch_dtype noise_dtype(torch_dtype model_dtype, torch_dtype sample_dtype = torch_dtype::float32) const {
    switch (noise_rule) {
      case noise_dtype_rule::sample: return sample_dtype;
      case noise_dtype_rule::float32: return torch_dtype::float32;
      default: return model_dtype;
    }
  }
};

namespace detail::diffusers_config {

using json = nlohmann::json;

/// The classes and diffusers' `__init__` parameters with their defaults.
inline const std::map<std::string, json>& class_defaults() {
  static const std::map<std::string, json> table = [] {
    const json vp = {{"num_train_timesteps", 1000}, {"beta_start", 0.0001}, {"beta_end", 0.02},
                     {"beta_schedule", "linear"},  {"trained_betas", nullptr}};
    const json thresh = {{"thresholding", false}, {"dynamic_thresholding_ratio", 0.995}, {"sample_max_value", 1.0}};
    const json sigma_types = {{"use_karras_sigmas", false}, {"use_exponential_sigmas", false}, {"use_beta_sigmas", false}};
    const json multistep_flow = {{"use_flow_sigmas", false}, {"flow_shift", 1.0}, {"use_dynamic_shifting", false},
                                 {"time_shift_type", "exponential"}};
    auto merge = [](std::initializer_list<json> parts) {
      json out = json::object();
      for (const json& p : parts) out.update(p);
      return out;
    };
    const json sd_betas = {{"beta_start", 0.00085}, {"beta_end", 0.012}};
    std::map<std::string, json> t;
    t["DDIMScheduler"] = merge({vp, thresh,
                                {{"clip_sample", true}, {"set_alpha_to_one", true}, {"steps_offset", 0},
                                 {"prediction_type", "epsilon"}, {"clip_sample_range", 1.0},
                                 {"timestep_spacing", "leading"}, {"rescale_betas_zero_snr", false}}});
    t["DDIMInverseScheduler"] = merge({vp,
                                       {{"clip_sample", true}, {"set_alpha_to_one", true}, {"steps_offset", 0},
                                        {"prediction_type", "epsilon"}, {"clip_sample_range", 1.0},
                                        {"timestep_spacing", "leading"}, {"rescale_betas_zero_snr", false}}});
    t["DDPMScheduler"] = merge({vp, thresh,
                                {{"variance_type", "fixed_small"}, {"clip_sample", true}, {"prediction_type", "epsilon"},
                                 {"clip_sample_range", 1.0}, {"timestep_spacing", "leading"}, {"steps_offset", 0},
                                 {"rescale_betas_zero_snr", false}}});
    t["EulerDiscreteScheduler"] = merge({vp, sigma_types,
                                         {{"prediction_type", "epsilon"}, {"interpolation_type", "linear"},
                                          {"sigma_min", nullptr}, {"sigma_max", nullptr},
                                          {"timestep_spacing", "linspace"}, {"timestep_type", "discrete"},
                                          {"steps_offset", 0}, {"rescale_betas_zero_snr", false},
                                          {"final_sigmas_type", "zero"}}});
    t["EulerAncestralDiscreteScheduler"] = merge({vp,
                                                  {{"prediction_type", "epsilon"}, {"timestep_spacing", "linspace"},
                                                   {"steps_offset", 0}, {"rescale_betas_zero_snr", false}}});
    t["HeunDiscreteScheduler"] = merge({vp, sd_betas, sigma_types,
                                        {{"prediction_type", "epsilon"}, {"clip_sample", false},
                                         {"clip_sample_range", 1.0}, {"timestep_spacing", "linspace"},
                                         {"steps_offset", 0}}});
    t["FlowMatchEulerDiscreteScheduler"] = merge({sigma_types,
                                                  {{"num_train_timesteps", 1000}, {"shift", 1.0},
                                                   {"use_dynamic_shifting", false}, {"base_shift", 0.5},
                                                   {"max_shift", 1.15}, {"base_image_seq_len", 256},
                                                   {"max_image_seq_len", 4096}, {"invert_sigmas", false},
                                                   {"shift_terminal", nullptr}, {"time_shift_type", "exponential"},
                                                   {"stochastic_sampling", false}}});
    t["DPMSolverMultistepScheduler"] = merge({vp, thresh, sigma_types, multistep_flow,
                                              {{"solver_order", 2}, {"prediction_type", "epsilon"},
                                               {"algorithm_type", "dpmsolver++"}, {"solver_type", "midpoint"},
                                               {"lower_order_final", true}, {"euler_at_final", false},
                                               {"use_lu_lambdas", false}, {"final_sigmas_type", "zero"},
                                               {"lambda_min_clipped", "-inf"}, {"variance_type", nullptr},
                                               {"timestep_spacing", "linspace"}, {"steps_offset", 0},
                                               {"rescale_betas_zero_snr", false}}});
    t["DPMSolverSinglestepScheduler"] = merge({vp, thresh, sigma_types, multistep_flow,
                                               {{"solver_order", 2}, {"prediction_type", "epsilon"},
                                                {"algorithm_type", "dpmsolver++"}, {"solver_type", "midpoint"},
                                                {"lower_order_final", false}, {"final_sigmas_type", "zero"},
                                                {"lambda_min_clipped", "-inf"}, {"variance_type", nullptr}}});
    t["DEISMultistepScheduler"] = merge({vp, thresh, sigma_types, multistep_flow,
                                         {{"solver_order", 2}, {"prediction_type", "epsilon"},
                                          {"algorithm_type", "deis"}, {"solver_type", "logrho"},
                                          {"lower_order_final", true}, {"timestep_spacing", "linspace"},
                                          {"steps_offset", 0}}});
    t["UniPCMultistepScheduler"] = merge({vp, thresh, sigma_types, multistep_flow,
                                          {{"solver_order", 2}, {"prediction_type", "epsilon"}, {"predict_x0", true},
                                           {"solver_type", "bh2"}, {"lower_order_final", true},
                                           {"disable_corrector", json::array()}, {"solver_p", nullptr},
                                           {"timestep_spacing", "linspace"}, {"steps_offset", 0},
                                           {"final_sigmas_type", "zero"}, {"rescale_betas_zero_snr", false},
                                           {"sigma_min", nullptr}, {"sigma_max", nullptr},
                                           {"shift_terminal", nullptr}}});
    t["PNDMScheduler"] = merge({vp,
                                {{"skip_prk_steps", false}, {"set_alpha_to_one", false},
                                 {"prediction_type", "epsilon"}, {"timestep_spacing", "leading"},
                                 {"steps_offset", 0}}});
    t["IPNDMScheduler"] = {{"num_train_timesteps", 1000}, {"trained_betas", nullptr}};
    const json consistency = merge({vp, sd_betas, thresh,
                                    {{"beta_schedule", "scaled_linear"}, {"original_inference_steps", 50},
                                     {"clip_sample", false}, {"clip_sample_range", 1.0}, {"set_alpha_to_one", true},
                                     {"steps_offset", 0}, {"prediction_type", "epsilon"},
                                     {"timestep_spacing", "leading"}, {"timestep_scaling", 10.0},
                                     {"rescale_betas_zero_snr", false}}});
    t["LCMScheduler"] = consistency;
    t["TCDScheduler"] = consistency;
    return t;
  }();
  return table;
}

/// Keys of a class that do not change its sampling in diffusers (still type-checked).
inline const std::set<std::string>& no_effect_keys(const std::string& cls) {
  static const std::map<std::string, std::set<std::string>> table{
      {"LCMScheduler", {"timestep_spacing", "steps_offset", "set_alpha_to_one"}},
      {"TCDScheduler", {"timestep_spacing", "steps_offset", "set_alpha_to_one", "timestep_scaling"}},
      {"IPNDMScheduler", {}},
  };
  static const std::set<std::string> none;
  const auto it = table.find(cls);
  return it == table.end() ? none : it->second;
}

/// Reads one class's keys: type checks, defaults, and the record of what was defaulted.
class reader {
 public:
  reader(std::string function, std::string cls, const json& config, loaded_scheduler& out)
      : fn_(std::move(function)), cls_(std::move(cls)), cfg_(config), defaults_(class_defaults().at(cls_)), out_(out) {
    for (const auto& [key, value] : cfg_.items()) {
      (void)value;
      if (key == "_class_name") continue;  // read by the dispatch
      if (key.starts_with("_"))
        out_.ignored_keys.push_back(key);
      else if (!defaults_.contains(key))
        out_.unknown_keys.push_back(key);
      else if (no_effect_keys(cls_).contains(key))
        out_.ignored_keys.push_back(key);
    }
    for (const auto& [key, value] : defaults_.items()) {
      (void)value;
      if (!cfg_.contains(key)) out_.defaulted_keys.push_back(key);
    }
  }

  [[nodiscard]] const std::string& function() const noexcept { return fn_; }
  [[nodiscard]] const std::string& class_name() const noexcept { return cls_; }

  /// The key's JSON value, or diffusers' default.
  [[nodiscard]] const json& raw(const std::string& key) const {
    if (cfg_.contains(key)) return cfg_.at(key);
    return defaults_.at(key);
  }
  [[nodiscard]] bool is_null(const std::string& key) const { return raw(key).is_null(); }

  [[noreturn]] void bad_type(const std::string& key, const char* expected) const {
    throw std::invalid_argument("skipstep::" + fn_ + ": " + cls_ + " key \"" + key + "\" must be " + expected +
                                " (got " + raw(key).dump() + ")");
  }
  [[noreturn]] void unsupported(const std::string& key, const std::string& supported) const {
    throw std::invalid_argument("skipstep::" + fn_ + ": " + cls_ + " key \"" + key + "\" = " + raw(key).dump() +
                                " is not supported by skipstep; supported: " + supported);
  }

  [[nodiscard]] bool boolean(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_boolean()) bad_type(key, "a boolean");
    return v.get<bool>();
  }
  [[nodiscard]] double number(const std::string& key) const {
    const json& v = raw(key);
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {  // Python's json writes -Infinity; configs written by hand use "-inf"
      const auto s = v.get<std::string>();
      if (s == "inf" || s == "Infinity") return std::numeric_limits<double>::infinity();
      if (s == "-inf" || s == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (s == "NaN" || s == "nan") bad_type(key, "a number, not NaN");
    }
    bad_type(key, "a number");
  }
  [[nodiscard]] double finite(const std::string& key) const {
    const double v = number(key);
    if (!std::isfinite(v)) bad_type(key, "a finite number");
    return v;
  }
  [[nodiscard]] std::optional<double> optional_number(const std::string& key) const {
    if (is_null(key)) return std::nullopt;
    return finite(key);
  }
  [[nodiscard]] std::size_t count(const std::string& key) const {
    const json& v = raw(key);
    if (v.is_number_unsigned()) return v.get<std::size_t>();
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::size_t>(v.get<std::int64_t>());
    if (v.is_number_float() && v.get<double>() >= 0.0 && v.get<double>() == std::floor(v.get<double>()) &&
        v.get<double>() < 9.0e15)
      return static_cast<std::size_t>(v.get<double>());
    bad_type(key, "a non-negative integer");
  }
  [[nodiscard]] std::string string(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_string()) bad_type(key, "a string");
    return v.get<std::string>();
  }
  /// A string key that must be one of `allowed` (its position returned).
  std::size_t choice(const std::string& key, std::initializer_list<const char*> allowed) const {
    const std::string v = string(key);
    std::size_t i = 0;
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return i;
      list += (i ? ", " : "") + std::string("\"") + a + "\"";
      ++i;
    }
    unsupported(key, list);
  }
  /// A key whose only supported value is its default (null / false / a fixed value).
  void require_default(const std::string& key, const std::string& supported) const {
    if (raw(key) != defaults_.at(key)) {
      // A type error first: a boolean key given "yes" is a type error, not an unsupported value.
      if (defaults_.at(key).is_boolean() && !raw(key).is_boolean()) bad_type(key, "a boolean");
      unsupported(key, supported);
    }
  }
  std::vector<double> numbers(const std::string& key) const {
    const json& v = raw(key);
    if (!v.is_array()) bad_type(key, "a list of numbers");
    std::vector<double> out;
    for (const json& e : v) {
      if (!e.is_number()) bad_type(key, "a list of numbers");
      out.push_back(e.get<double>());
    }
    return out;
  }

 private:
  std::string fn_, cls_;
  const json& cfg_;
  const json& defaults_;
  loaded_scheduler& out_;
};

[[noreturn]] inline void option_error(const std::string& fn, const std::string& cls, const std::string& what,
                                      const std::string& rule) {
  throw std::invalid_argument("skipstep::" + fn + ": " + cls + ": " + what + " " + rule);
}

/// The largest num_train_timesteps the loader accepts (models use 1000; the bound keeps the tables in memory).
inline constexpr std::size_t max_train_timesteps = 10'000'000;

/// steps_offset, which must stay below num_train_timesteps (else every timestep would be shifted past the table
/// or, for huge values, wrap around to negative model times).
inline std::size_t read_steps_offset(const reader& r, std::size_t big_t) {
  const std::size_t offset = r.count("steps_offset");
  if (offset >= big_t)
    r.unsupported("steps_offset", "an integer below num_train_timesteps = " + std::to_string(big_t));
  return offset;
}

/// num_train_timesteps, betas (or trained_betas), rescale_betas_zero_snr; or the caller's ā table.
inline noise_schedule<double> read_schedule(const reader& r, const load_options& o, bool has_zero_snr_key) {
  if (!o.alphas_cumprod.empty()) return noise_schedule<double>::from_alphas_cumprod(o.alphas_cumprod);
  const std::size_t big_t = r.count("num_train_timesteps");
  // The tables are built in memory (several arrays of T doubles): a bound keeps a typo from asking for terabytes.
  if (big_t < 1 || big_t > max_train_timesteps)
    r.unsupported("num_train_timesteps", "an integer in [1, " + std::to_string(max_train_timesteps) + "]");
  noise_schedule<double> s = [&] {
    if (!r.is_null("trained_betas")) {
      const auto betas = r.numbers("trained_betas");
      // diffusers spaces the timesteps by num_train_timesteps and indexes the betas' table with them.
      if (betas.size() != big_t)
        r.unsupported("trained_betas", "a list of num_train_timesteps = " + std::to_string(big_t) + " betas (got " +
                                           std::to_string(betas.size()) + ")");
      return noise_schedule<double>::from_betas(betas);
    }
    const double b0 = r.finite("beta_start"), b1 = r.finite("beta_end");
    switch (r.choice("beta_schedule", {"linear", "scaled_linear", "squaredcos_cap_v2"})) {
      case 0: return noise_schedule<double>::linear(big_t, b0, b1);
      case 1: return noise_schedule<double>::scaled_linear(big_t, b0, b1);
      default: return noise_schedule<double>::cosine(big_t);
    }
  }();
  if (has_zero_snr_key && r.boolean("rescale_betas_zero_snr")) s = s.rescale_zero_terminal_snr();
  return s;
}

inline prediction_type read_prediction(const reader& r, bool allow_sample, bool allow_flow) {
  const std::string p = r.string("prediction_type");
  std::string supported = "\"epsilon\", \"v_prediction\"";
  if (allow_sample) supported += ", \"sample\"";
  if (allow_flow) supported += ", \"flow_prediction\"";
  if (p == "epsilon") return prediction_type::epsilon;
  if (p == "v_prediction") return prediction_type::v;
  if (p == "sample" && allow_sample) return prediction_type::sample;
  if (p == "flow_prediction" && allow_flow) return prediction_type::flow;
  r.unsupported("prediction_type", supported);
}

/// thresholding (dynamic_thresholding_ratio, sample_max_value) before clip_sample (clip_sample_range), as
/// diffusers' step() tests them.
inline x0_processing read_processing(const reader& r, bool has_threshold, bool has_clip) {
  if (has_threshold && r.boolean("thresholding"))
    return x0_processing::dynamic_threshold(r.finite("dynamic_thresholding_ratio"), r.finite("sample_max_value"));
  if (has_threshold) {  // type-check the unused values too
    (void)r.finite("dynamic_thresholding_ratio");
    (void)r.finite("sample_max_value");
  }
  if (has_clip && r.boolean("clip_sample")) return x0_processing::clip(r.finite("clip_sample_range"));
  if (has_clip) (void)r.finite("clip_sample_range");
  return x0_processing::none();
}

inline timestep_spacing read_spacing(const reader& r) {
  switch (r.choice("timestep_spacing", {"leading", "trailing", "linspace"})) {
    case 0: return timestep_spacing::leading;
    case 1: return timestep_spacing::trailing;
    default: return timestep_spacing::linspace;
  }
}

/// use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas (at most one, as diffusers requires).
inline sigma_spacing read_level_spacing(const reader& r, sigma_spacing otherwise) {
  const bool k = r.boolean("use_karras_sigmas"), e = r.boolean("use_exponential_sigmas"), b = r.boolean("use_beta_sigmas");
  if (int(k) + int(e) + int(b) > 1)
    r.unsupported(k ? "use_karras_sigmas" : "use_exponential_sigmas",
                  "at most one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas set (diffusers raises "
                  "ValueError too)");
  if (k) return sigma_spacing::karras;
  if (e) return sigma_spacing::exponential;
  if (b) return sigma_spacing::beta;
  return otherwise;
}

inline std::size_t steps_or_throw(const reader& r, const load_options& o) {
  if (!o.num_inference_steps)
    option_error(r.function(), r.class_name(), "options.num_inference_steps", "must be given (got none)");
  return *o.num_inference_steps;
}

inline void no_caller_lists(const reader& r, const load_options& o, bool timesteps_ok, bool sigmas_ok) {
  if (!timesteps_ok && !o.timesteps.empty())
    option_error(r.function(), r.class_name(), "options.timesteps",
                 "is not accepted by this class's set_timesteps (got " + std::to_string(o.timesteps.size()) +
                     " values); classes that take one: DDPM, LCM, TCD, Euler, Heun");
  if (!sigmas_ok && !o.sigmas.empty())
    option_error(r.function(), r.class_name(), "options.sigmas",
                 "is not accepted by this class (got " + std::to_string(o.sigmas.size()) +
                     " values); FlowMatchEulerDiscrete takes one (or pass options.grid)");
}

/// Flow levels of the multistep classes (use_flow_sigmas with a static flow_shift).
inline bool read_multistep_flow(const reader& r, bool supported_here) {
  r.require_default("use_dynamic_shifting", "false (dynamic shifting of the multistep classes' flow sigmas)");
  (void)r.choice("time_shift_type", {"exponential", "linear"});
  const bool flow = r.boolean("use_flow_sigmas");
  (void)r.finite("flow_shift");
  if (flow && !supported_here) r.unsupported("use_flow_sigmas", "false for this class");
  return flow;
}

/// The grid of the multistep classes: flow or VP (make_multistep_grid).
inline sigma_grid multistep_grid(const reader& r, const load_options& o, const noise_schedule<double>* schedule,
                                 bool flow, bool sigma_min_final, bool has_spacing, bool has_lambda,
                                 multistep_grid_options& used) {
  const std::size_t n = steps_or_throw(r, o);
  if (flow) {
    if (o.grid) return *o.grid;
    if (read_level_spacing(r, sigma_spacing::interpolated) != sigma_spacing::interpolated)
      r.unsupported("use_flow_sigmas", "false when use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas is set");
    sigma_grid g = detail::with_context("skipstep::" + r.function(), [&] {
      const std::size_t big_t = r.count("num_train_timesteps");
      if (big_t < 1 || big_t > max_train_timesteps)
        r.unsupported("num_train_timesteps", "an integer in [1, " + std::to_string(max_train_timesteps) + "]");
      return make_multistep_flow_grid(n, r.finite("flow_shift"), big_t);
    });
    if (sigma_min_final) g.sigmas.back() = g.sigmas[n - 1];
    return g;
  }
  multistep_grid_options g;
  if (has_spacing) {
    g.spacing = read_spacing(r);
    g.steps_offset = read_steps_offset(r, schedule != nullptr ? schedule->num_train_timesteps()
                                                               : r.count("num_train_timesteps"));
  }
  g.levels = read_level_spacing(r, sigma_spacing::interpolated);
  if (r.class_name() == "DPMSolverMultistepScheduler" && r.boolean("use_lu_lambdas")) {
    if (g.levels != sigma_spacing::interpolated)
      r.unsupported("use_lu_lambdas", "false when another sigma spacing is set");
    g.levels = sigma_spacing::lu_lambdas;
  }
  if (sigma_min_final) g.final_level = final_sigma::sigma_min;
  if (has_lambda) g.lambda_min_clipped = r.number("lambda_min_clipped");
  used = g;
  if (o.grid) return *o.grid;
  return detail::with_context("skipstep::" + r.function(), [&] { return make_multistep_grid(*schedule, n, g); });
}

/// diffusers' σ̃ at integer model times (np.interp over the training table), final level 0: Euler / Heun with
/// set_timesteps(timesteps=...).
inline sigma_grid grid_at_times(const reader& r, const noise_schedule<double>& schedule,
                                const std::vector<std::int64_t>& times) {
  const std::vector<double> table = vp_sigmas(schedule);
  sigma_grid g;
  for (std::size_t i = 0; i < times.size(); ++i) {
    if (times[i] < 0 || static_cast<std::size_t>(times[i]) >= table.size() || (i > 0 && times[i] >= times[i - 1]))
      option_error(r.function(), r.class_name(), "options.timesteps[" + std::to_string(i) + "]",
                   "must be in [0, T) and strictly decreasing (got " + std::to_string(times[i]) + ")");
    g.timesteps.push_back(static_cast<double>(times[i]));
    g.sigmas.push_back(table[static_cast<std::size_t>(times[i])]);
  }
  g.sigmas.push_back(0.0);
  return g;
}

inline void finish_vp(loaded_scheduler& out, const timestep_schedule* ts) {
  if (!out.plan) return;
  const sampler& s = out.get();
  out.alphas_cumprod.clear();
  for (const step_transition& tr : s.transitions()) out.alphas_cumprod.push_back(tr.alpha_cumprod_from);
  if (!s.transitions().empty()) out.alphas_cumprod.push_back(s.transitions().back().alpha_cumprod_to);
  (void)ts;
}

/// Builds the loaded scheduler from a parsed config (fn: the public function the caller called).
inline loaded_scheduler load(const std::string& fn, const json& cfg, const load_options& o) {
  if (!cfg.is_object())
    throw std::invalid_argument("skipstep::" + fn + ": the config must be a JSON object (got " +
                                std::string(cfg.type_name()) + ")");
  std::string supported;
  for (const auto& [name, keys] : class_defaults()) {
    (void)keys;
    supported += (supported.empty() ? "" : ", ") + name;
  }
  if (!cfg.contains("_class_name") || !cfg.at("_class_name").is_string())
    throw std::invalid_argument("skipstep::" + fn + ": key \"_class_name\" must name the scheduler class (got " +
                                (cfg.contains("_class_name") ? cfg.at("_class_name").dump() : std::string("none")) +
                                "); supported classes: " + supported);
  const std::string cls = cfg.at("_class_name").get<std::string>();
  if (!class_defaults().contains(cls))
    throw std::invalid_argument("skipstep::" + fn + ": _class_name \"" + cls +
                                "\" is not a supported scheduler class; supported classes: " + supported);
  if (o.num_samples == 0) option_error(fn, cls, "options.num_samples", "must be >= 1 (got 0)");
  if (o.strength && !(*o.strength >= 0.0 && *o.strength <= 1.0))
    option_error(fn, cls, "options.strength", "must be in [0, 1] (got " + detail::format_value(*o.strength) + ")");

  loaded_scheduler out;
  out.class_name = cls;
  reader r(fn, cls, cfg, out);
  out.options.convention = step_convention::diffusers;
  out.options.num_samples = o.num_samples;
  const std::string ctx = "skipstep::" + fn;
  auto build = [&](auto&& make) {
    if (o.build) out.plan.emplace(detail::with_context(ctx, make));
  };
  bool strength_in_timesteps = false;

  if (cls == "DDIMScheduler" || cls == "DDPMScheduler" || cls == "DDIMInverseScheduler") {
    const bool ddpm = cls == "DDPMScheduler", inverse = cls == "DDIMInverseScheduler";
    no_caller_lists(r, o, ddpm, false);
    const auto schedule = detail::with_context(ctx, [&] { return read_schedule(r, o, true); });
    out.options.prediction = read_prediction(r, true, false);
    out.options.processing = read_processing(r, !inverse, true);
    if (!ddpm) out.options.processing = out.options.processing.with_clipped_model_output(o.use_clipped_model_output);
    const std::size_t big_t = schedule.num_train_timesteps();
    const timestep_spacing spacing = read_spacing(r);
    const std::size_t offset = read_steps_offset(r, big_t);
    timestep_schedule ts = detail::with_context(ctx, [&] {
      if (!o.timesteps.empty()) return timestep_schedule::custom(big_t, o.timesteps);
      if (ddpm && !o.num_inference_steps) return timestep_schedule::leading(big_t, big_t, 0);
      const std::size_t n = steps_or_throw(r, o);
      switch (spacing) {
        case timestep_spacing::leading: return timestep_schedule::leading(big_t, n, offset);
        case timestep_spacing::trailing: return timestep_schedule::trailing(big_t, n);
        default: return timestep_schedule::linspace(big_t, n);
      }
    });
    const bool alpha_one = ddpm ? true : r.boolean("set_alpha_to_one");
    ts = ts.with_final_alpha(alpha_one ? final_alpha::one : final_alpha::alpha_cumprod_0);
    if (ddpm) {
      const std::size_t v = r.choice("variance_type", {"fixed_small", "fixed_small_log", "fixed_large",
                                                       "fixed_large_log", "learned", "learned_range"});
      out.variance = parse_variance_type(r.string("variance_type"));
      (void)v;
      build([&] { return sampler(ddpm_sampler(schedule, ts, out.variance, out.options)); });
      out.noise_rule = loaded_scheduler::noise_dtype_rule::model;
    } else if (inverse) {
      build([&] { return sampler(ddim_inverse_sampler(schedule, ts, out.options)); });
    } else {
      out.eta = o.eta.value_or(0.0);
      build([&] { return sampler(ddim_sampler(schedule, ts, eta{out.eta}, out.options)); });
      out.noise_rule = loaded_scheduler::noise_dtype_rule::model;
    }
    out.schedule = schedule;
    out.timesteps = ts;
    finish_vp(out, &ts);
  } else if (cls == "LCMScheduler" || cls == "TCDScheduler" || cls == "PNDMScheduler") {
    const bool pndm = cls == "PNDMScheduler", tcd = cls == "TCDScheduler";
    no_caller_lists(r, o, !pndm, false);
    const auto schedule = detail::with_context(ctx, [&] { return read_schedule(r, o, !pndm); });
    out.options.prediction = read_prediction(r, !pndm, false);
    const std::size_t big_t = schedule.num_train_timesteps();
    if (pndm) {
      out.skip_prk_steps = r.boolean("skip_prk_steps");
      out.spacing = read_spacing(r);
      out.steps_offset = read_steps_offset(r, big_t);
      out.after_last = r.boolean("set_alpha_to_one") ? final_alpha::one : final_alpha::alpha_cumprod_0;
      const std::size_t n = steps_or_throw(r, o);
      out.integer_timesteps = detail::with_context(
          ctx, [&] { return pndm_timesteps(big_t, n, out.skip_prk_steps, out.spacing, out.steps_offset); });
      build([&] {
        return sampler(pndm_sampler(schedule, n, out.skip_prk_steps, out.spacing, out.steps_offset, out.after_last,
                                    out.options));
      });
    } else {
      out.options.processing = read_processing(r, true, true);
      (void)read_spacing(r);
      (void)r.count("steps_offset");
      (void)r.boolean("set_alpha_to_one");
      out.timestep_scaling = r.finite("timestep_scaling");
      const std::size_t original = o.original_inference_steps.value_or(r.count("original_inference_steps"));
      strength_in_timesteps = true;
      out.integer_timesteps = detail::with_context(ctx, [&] {
        if (!o.timesteps.empty()) return o.timesteps;
        return consistency_timesteps(big_t, steps_or_throw(r, o), original, o.strength.value_or(1.0));
      });
      if (tcd) {
        out.eta = o.eta.value_or(0.3);
        build([&] { return sampler(tcd_sampler(schedule, out.integer_timesteps, out.eta, out.options)); });
      } else {
        build([&] { return sampler(lcm_sampler(schedule, out.integer_timesteps, out.timestep_scaling, out.options)); });
      }
      out.noise_rule = loaded_scheduler::noise_dtype_rule::model;
    }
    out.schedule = schedule;
    finish_vp(out, nullptr);
  } else if (cls == "IPNDMScheduler") {
    no_caller_lists(r, o, false, false);
    const std::size_t big_t = r.count("num_train_timesteps");
    out.options.prediction = prediction_type::v;
    out.ipndm = detail::with_context(ctx, [&] {
      if (!r.is_null("trained_betas")) return ipndm_grid_from_sigmas(r.numbers("trained_betas"));
      return make_ipndm_grid(o.num_inference_steps.value_or(big_t));
    });
    build([&] { return sampler(ipndm_sampler(*out.ipndm, out.options)); });
    for (const level& l : out.ipndm->levels) out.sigmas.push_back(l.sigma);
  } else if (cls == "EulerDiscreteScheduler" || cls == "EulerAncestralDiscreteScheduler" ||
             cls == "HeunDiscreteScheduler") {
    const bool euler = cls == "EulerDiscreteScheduler", heun = cls == "HeunDiscreteScheduler";
    no_caller_lists(r, o, !(cls == "EulerAncestralDiscreteScheduler"), false);
    const auto schedule = detail::with_context(ctx, [&] { return read_schedule(r, o, !heun); });
    out.options.prediction = read_prediction(r, true, false);
    if (heun) out.options.processing = read_processing(r, false, true);
    sigma_grid_options g;
    g.spacing = read_spacing(r);
    g.steps_offset = r.count("steps_offset");
    if (!(cls == "EulerAncestralDiscreteScheduler")) g.levels = read_level_spacing(r, sigma_spacing::interpolated);
    if (euler) {
      if (r.choice("interpolation_type", {"linear", "log_linear"}) == 1) {
        if (g.levels != sigma_spacing::interpolated)
          r.unsupported("interpolation_type", "\"linear\" when use_karras / exponential / beta sigmas is set");
        g.levels = sigma_spacing::log_linear;
      }
      g.sigma_min = r.optional_number("sigma_min");
      g.sigma_max = r.optional_number("sigma_max");
      if (r.choice("final_sigmas_type", {"zero", "sigma_min"}) == 1) g.final_level = final_sigma::sigma_min;
      g.continuous_model_time = r.choice("timestep_type", {"discrete", "continuous"}) == 1 &&
                                out.options.prediction == prediction_type::v;
      out.churn = o.churn;
    }
    out.sigma_options = g;
    out.grid = detail::with_context(ctx, [&] {
      if (o.grid) return *o.grid;
      if (!o.timesteps.empty()) return grid_at_times(r, schedule, o.timesteps);
      return make_sigma_grid(schedule, steps_or_throw(r, o), g);
    });
    if (heun) {
      build([&] { return sampler(heun_sampler(*out.grid, out.options)); });
    } else if (euler) {
      build([&] { return sampler(euler_sampler(*out.grid, out.options, out.churn)); });
      out.noise_rule = loaded_scheduler::noise_dtype_rule::model;
    } else {
      build([&] { return sampler(euler_ancestral_sampler(*out.grid, 1.0, out.options)); });
      out.noise_rule = loaded_scheduler::noise_dtype_rule::model;
    }
    out.schedule = schedule;
    out.sigma_space = true;
    // init_noise_sigma: max σ̃ (linspace, trailing) or √(max σ̃² + 1) (leading), in float32 as diffusers has it.
    float max_sigma = 0.0f;
    for (double s : out.grid->sigmas) max_sigma = std::max(max_sigma, static_cast<float>(s));
    out.init_noise_sigma = g.spacing == timestep_spacing::leading
                               ? static_cast<double>(std::sqrt(max_sigma * max_sigma + 1.0f))
                               : static_cast<double>(max_sigma);
    out.state_from_diffusers_start = level::from_sigma_tilde(out.grid->sigmas.front()).alpha;
    out.diffusers_from_state_end = 1.0 / level::from_sigma_tilde(out.grid->sigmas.back()).alpha;
  } else if (cls == "FlowMatchEulerDiscreteScheduler") {
    no_caller_lists(r, o, false, true);
    out.options.prediction = prediction_type::flow;
    flow_grid_options g;
    g.num_train_timesteps = r.count("num_train_timesteps");
    g.shift = r.finite("shift");
    g.use_dynamic_shifting = r.boolean("use_dynamic_shifting");
    const double base_shift = r.finite("base_shift"), max_shift = r.finite("max_shift");
    const double base_len = static_cast<double>(r.count("base_image_seq_len"));
    const double max_len = static_cast<double>(r.count("max_image_seq_len"));
    if (o.mu) {
      g.mu = *o.mu;
    } else if (o.image_seq_len) {  // diffusers pipelines' calculate_shift
      const double m = (max_shift - base_shift) / (max_len - base_len);
      g.mu = static_cast<double>(*o.image_seq_len) * m + (base_shift - m * base_len);
    }
    if (g.use_dynamic_shifting && !g.mu && !o.grid)
      option_error(fn, cls, "options.mu", "(or options.image_seq_len) must be given with use_dynamic_shifting = true (got none)");
    g.shift_type = r.choice("time_shift_type", {"exponential", "linear"}) == 1 ? time_shift::linear : time_shift::exponential;
    g.shift_terminal = r.optional_number("shift_terminal");
    g.levels = read_level_spacing(r, sigma_spacing::interpolated);
    g.invert = r.boolean("invert_sigmas");
    out.stochastic = r.boolean("stochastic_sampling");
    out.flow_options = g;
    out.grid = detail::with_context(ctx, [&] {
      if (o.grid) return *o.grid;
      if (!o.sigmas.empty()) return flow_grid_from_levels(o.sigmas, g);
      return make_flow_grid(steps_or_throw(r, o), g);
    });
    build([&] { return sampler(flow_euler_sampler(*out.grid, out.options, out.stochastic)); });
    out.flow = true;
    if (out.stochastic) out.noise_rule = loaded_scheduler::noise_dtype_rule::sample;
  } else if (cls == "DPMSolverMultistepScheduler" || cls == "DPMSolverSinglestepScheduler" ||
             cls == "DEISMultistepScheduler" || cls == "UniPCMultistepScheduler") {
    const bool multi = cls == "DPMSolverMultistepScheduler", single = cls == "DPMSolverSinglestepScheduler";
    const bool deis = cls == "DEISMultistepScheduler", unipc = cls == "UniPCMultistepScheduler";
    no_caller_lists(r, o, false, false);
    const bool flow = read_multistep_flow(r, multi || unipc);
    const auto schedule = detail::with_context(ctx, [&] { return read_schedule(r, o, multi || unipc); });
    out.options.prediction = read_prediction(r, true, flow);
    if (flow && out.options.prediction != prediction_type::flow)
      r.unsupported("prediction_type", "\"flow_prediction\" with use_flow_sigmas = true");
    const x0_processing processing = read_processing(r, true, false);
    const std::size_t order_count = r.count("solver_order");
    if (order_count < 1 || order_count > 3) r.unsupported("solver_order", "1, 2 or 3");
    const int order = static_cast<int>(order_count);
    bool sigma_min_final = false;
    if (!deis) sigma_min_final = r.choice("final_sigmas_type", {"zero", "sigma_min"}) == 1;
    if (multi || single) r.require_default("variance_type", "null (learned-variance outputs are not supported)");
    if (unipc) {
      r.require_default("solver_p", "null (a custom predictor solver is not supported)");
      r.require_default("sigma_min", "null");
      r.require_default("sigma_max", "null");
      r.require_default("shift_terminal", "null");
    }
    out.grid = multistep_grid(r, o, &schedule, flow, sigma_min_final || deis, !single, multi || single,
                              out.multistep_options);
    out.options.processing = processing;
    if (multi || single) {
      dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;
      const std::string a = r.string("algorithm_type");
      if (a == "dpmsolver++" || a == "deis") {
        algorithm = dpm_algorithm::dpmsolver_pp;
        if (a == "deis") out.notes.push_back("algorithm_type \"deis\" is run as \"dpmsolver++\", as diffusers does");
      } else if (a == "dpmsolver") {
        algorithm = dpm_algorithm::dpmsolver;
      } else if (a == "sde-dpmsolver++") {
        algorithm = dpm_algorithm::sde_dpmsolver_pp;
      } else if (a == "sde-dpmsolver" && multi) {
        algorithm = dpm_algorithm::sde_dpmsolver;
      } else {
        r.unsupported("algorithm_type", multi ? "\"dpmsolver++\", \"dpmsolver\", \"sde-dpmsolver++\", \"sde-dpmsolver\""
                                              : "\"dpmsolver++\", \"dpmsolver\", \"sde-dpmsolver++\"");
      }
      const std::string st = r.string("solver_type");
      dpm_solver_type type = dpm_solver_type::midpoint;
      if (st == "heun") {
        type = dpm_solver_type::heun;
      } else if (st == "logrho" || st == "bh1" || st == "bh2") {
        out.notes.push_back("solver_type \"" + st + "\" is run as \"midpoint\", as diffusers does");
      } else if (st != "midpoint") {
        r.unsupported("solver_type", "\"midpoint\", \"heun\" (diffusers maps logrho, bh1, bh2 to midpoint)");
      }
      if (multi) {
        out.dpm.algorithm = algorithm;
        out.dpm.order = order;
        out.dpm.solver_type = type;
        out.dpm.lower_order_final = r.boolean("lower_order_final");
        out.dpm.euler_at_final = r.boolean("euler_at_final");
        out.dpm.path = flow ? grid_path::flow : grid_path::vp;
        build([&] { return sampler(dpm_solver_sampler(*out.grid, out.dpm, out.options)); });
        if (detail::dpm_stochastic(algorithm)) out.noise_rule = loaded_scheduler::noise_dtype_rule::float32;
      } else {
        out.singlestep.algorithm = algorithm;
        out.singlestep.order = order;
        out.singlestep.solver_type = type;
        out.singlestep.lower_order_final = r.boolean("lower_order_final");
        build([&] { return sampler(dpm_solver_singlestep_sampler(*out.grid, out.singlestep, out.options)); });
        if (detail::dpm_stochastic(algorithm)) out.noise_rule = loaded_scheduler::noise_dtype_rule::model;
      }
    } else if (deis) {
      const std::string a = r.string("algorithm_type");
      if (a == "dpmsolver" || a == "dpmsolver++")
        out.notes.push_back("algorithm_type \"" + a + "\" is run as \"deis\", as diffusers does");
      else if (a != "deis")
        r.unsupported("algorithm_type", "\"deis\" (diffusers maps dpmsolver, dpmsolver++ to deis)");
      const std::string st = r.string("solver_type");
      if (st == "midpoint" || st == "heun" || st == "bh1" || st == "bh2")
        out.notes.push_back("solver_type \"" + st + "\" is run as \"logrho\", as diffusers does");
      else if (st != "logrho")
        r.unsupported("solver_type", "\"logrho\" (diffusers maps midpoint, heun, bh1, bh2 to logrho)");
      out.deis.order = order;
      out.deis.lower_order_final = r.boolean("lower_order_final");
      build([&] { return sampler(deis_sampler(*out.grid, out.deis, out.options)); });
    } else {
      out.unipc.order = order;
      const std::string st = r.string("solver_type");
      if (st == "bh1") {
        out.unipc.variant = unipc_variant::bh1;
      } else if (st == "bh2" || st == "midpoint" || st == "heun" || st == "logrho") {
        out.unipc.variant = unipc_variant::bh2;
        if (st != "bh2") out.notes.push_back("solver_type \"" + st + "\" is run as \"bh2\", as diffusers does");
      } else {
        r.unsupported("solver_type", "\"bh1\", \"bh2\" (diffusers maps midpoint, heun, logrho to bh2)");
      }
      out.unipc.predict_x0 = r.boolean("predict_x0");
      out.unipc.lower_order_final = r.boolean("lower_order_final");
      out.unipc.path = flow ? grid_path::flow : grid_path::vp;
      // diffusers thresholds x̂0 only in its predict_x0 branch.
      if (!out.unipc.predict_x0) out.options.processing = x0_processing::none();
      const json& dc = r.raw("disable_corrector");
      if (!dc.is_array()) r.bad_type("disable_corrector", "a list of step indices");
      const std::size_t n = out.grid->size();
      for (const json& e : dc) {
        if (!e.is_number_integer()) r.bad_type("disable_corrector", "a list of step indices");
        const auto j = e.get<std::int64_t>();
        // diffusers tests `step_index - 1 in disable_corrector`: indices with no corrector (< 0 or >= N − 1) do
        // nothing there.
        if (j >= 0 && static_cast<std::size_t>(j) + 1 < n) out.unipc.disable_corrector.push_back(static_cast<std::size_t>(j));
      }
      build([&] { return sampler(unipc_sampler(*out.grid, out.unipc, out.options)); });
    }
    out.flow = flow;
    out.schedule = schedule;
  }

  if (out.grid) out.sigmas = out.grid->sigmas;
  if (!out.plan) return out;
  const sampler& s = out.get();
  for (const solver_row& row : s.rows()) out.model_times.push_back(row.model_time);
  out.draws_noise.assign(s.num_steps(), false);
  for (std::size_t i = 0; i < s.num_steps(); ++i)
    for (std::size_t k = s.row_of_step(i); k < s.row_of_step(i + 1); ++k)
      if (s.coefficients()[k].noise_std != 0.0) out.draws_noise[i] = true;
  if (o.strength && !strength_in_timesteps) {
    // Starting mid-plan needs a solver without history (sampler::sample refuses first_step > 0 otherwise):
    // refuse here, naming the option, rather than hand back a first_step that sample() rejects.
    bool carries_history = s.history_slots() > 0;
    for (const solver_row& row : s.rows()) carries_history = carries_history || row.extras.uses_state();
    if (carries_history && *o.strength < 1.0)
      throw std::invalid_argument("skipstep::" + fn + ": options.strength = " + std::to_string(*o.strength) + " (img2img) is not supported for " +
                                  r.class_name() + " (a multistep or multi-stage solver starts from its first step); "
                                  "supported: strength = 1, or a single-step class (DDIM, DDPM, Euler, Euler ancestral, "
                                  "FlowMatchEuler, LCM, TCD)");
    out.first_step = first_step_for_strength(s.num_steps(), *o.strength);
  }
  return out;
}

/// Python's json module writes non-finite floats as the bare tokens Infinity, -Infinity and NaN (diffusers saves
/// `"lambda_min_clipped": -Infinity` this way), which JSON and nlohmann reject. Outside string literals they are
/// quoted, so reader::number reads them by name (and refuses "NaN"); everything else is left as it is.
inline std::string quote_python_tokens(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (const std::string_view token : {std::string_view("-Infinity"), std::string_view("Infinity"),
                                         std::string_view("NaN")}) {
      if (text.substr(i, token.size()) == token) {
        out += '"';
        out += token;
        out += '"';
        i += token.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

inline json parse_text(const std::string& fn, std::string_view text, const std::string& where) {
  const std::string quoted = quote_python_tokens(text);
  try {
    return json::parse(quoted.begin(), quoted.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers beyond double (1e400)
    throw std::invalid_argument("skipstep::" + fn + ": " + where + " is not valid JSON: " + e.what());
  }
}

}  // namespace detail::diffusers_config

/// Loads a diffusers scheduler config from a parsed JSON object (`scheduler.config` of a Python run, or
/// scheduler_config.json parsed by the caller) and builds its sampler in diffusers' convention (diffusers
/// src/diffusers/schedulers/scheduling_*.py: `__init__` for the keys and defaults, `set_timesteps` for the plan).
/// Throws std::invalid_argument naming the key, the value and what is supported, for an unknown `_class_name`, an
/// unsupported value or a bad type.
template <class Json>
  requires std::same_as<Json, nlohmann::json>
[[nodiscard]] loaded_scheduler load_scheduler_config(const Json& config, const load_options& options = {}) {
  return detail::diffusers_config::load("load_scheduler_config", config, options);
}

/// Loads a config file (a model folder's scheduler/scheduler_config.json); as the JSON overload, plus
/// std::runtime_error naming the path for a missing or unreadable file and std::invalid_argument naming the path
/// and the position for malformed JSON.
[[nodiscard]] inline loaded_scheduler load_scheduler_config(const std::filesystem::path& path,
                                                            const load_options& options = {}) {
  constexpr const char* fn = "load_scheduler_config";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(std::string("skipstep::") + fn + ": cannot open \"" + path.string() + "\"");
  std::ostringstream text;
  text << in.rdbuf();
  const auto cfg = detail::diffusers_config::parse_text(fn, text.str(), "\"" + path.string() + "\"");
  return detail::diffusers_config::load(fn, cfg, options);
}

/// Loads a config from its JSON text; as the JSON overload, plus std::invalid_argument naming the position for
/// malformed JSON.
[[nodiscard]] inline loaded_scheduler parse_scheduler_config(std::string_view text, const load_options& options = {}) {
  constexpr const char* fn = "parse_scheduler_config";
  const auto cfg = detail::diffusers_config::parse_text(fn, text, "the config text");
  return detail::diffusers_config::load(fn, cfg, options);
}

/// The classes load_scheduler_config supports (`_class_name` values), sorted.
[[nodiscard]] inline std::vector<std::string> supported_scheduler_classes() {
  std::vector<std::string> out;
  for (const auto& [name, keys] : detail::diffusers_config::class_defaults()) {
    (void)keys;
    out.push_back(name);
  }
  return out;
}

}  // namespace skipstep
