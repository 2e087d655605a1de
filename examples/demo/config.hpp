/// @file
/// The demo's run parameters and its command line (`skipstep_demo --help` prints the usage text below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace skipstep_demo {

/// Points per cell of the default run and of `--quick`.
inline constexpr std::size_t default_num_points = 20000;
inline constexpr std::size_t quick_num_points = 2000;
/// Default master seed of every random draw of the run (x_T, the sampler's noise, the floor's true samples).
inline constexpr std::uint64_t default_seed = 1;
/// Independent sets of true samples the metric's noise floor is averaged over.
inline constexpr std::size_t default_floor_repeats = 5;

/// Everything a run depends on.
struct demo_config {
  std::size_t num_points = default_num_points;  ///< N, samples per cell (and per floor repeat).
  std::uint64_t seed = default_seed;            ///< master seed.
  unsigned threads = 1;  ///< K, threads the predictor's rows and the noise are split over.
  bool quick = false;    ///< CI mode: N = quick_num_points unless --n is given.
  bool figure = true;    ///< write the ring2d figure (needs gnuplot).
  std::size_t floor_repeats = default_floor_repeats;
  std::optional<std::filesystem::path> npy_dir;  ///< --dump-npy DIR.
  /// The figure and results.json: --out DIR, else the --dump-npy DIR, else default_out_dir().
  std::filesystem::path out_dir;
};

/// What the command line asked for.
struct parsed_command_line {
  demo_config config;
  bool show_help = false;
};

/// The default output directory: SKIPSTEP_DEMO_DEFAULT_OUT (the build tree's demo-output/, set by CMake) or
/// ./demo-output when the program was built without it.
[[nodiscard]] std::filesystem::path default_out_dir();

/// Parses the arguments after the program name. Throws std::invalid_argument naming the flag and the value on
/// an unknown flag, a missing value or a malformed number.
[[nodiscard]] parsed_command_line parse_command_line(std::span<const std::string_view> args);

/// The --help text.
[[nodiscard]] std::string usage_text(std::string_view program);

}  // namespace skipstep_demo
