// Reading the diffusers reference data (tests/data/diffusers, or $SKIPSTEP_REFERENCE_DIR): the folder, case files,
// numbers (with "nan"/"inf" strings), tensors and the noise schedule a case's config describes. Shared by the
// reference test files.
#pragma once

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "skipstep/schedule/noise_schedule.hpp"

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
  static const std::set<std::string> classes{"DDIMScheduler", "DDPMScheduler", "DDIMInverseScheduler"};
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

}  // namespace skipstep_reference
