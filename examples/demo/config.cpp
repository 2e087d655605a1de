/// @file
/// Command-line parsing of the demo (see config.hpp).
#include "config.hpp"

#include <charconv>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace skipstep_demo {

namespace {

/// Parses a whole string as an unsigned integer; throws std::invalid_argument naming the flag otherwise.
std::uint64_t parse_unsigned(std::string_view flag, std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    throw std::invalid_argument("skipstep_demo: " + std::string(flag) +
                                " needs a non-negative integer (got '" + std::string(text) + "')");
  return value;
}

/// Parses a positive integer no larger than `max`.
std::uint64_t parse_positive(std::string_view flag, std::string_view text, std::uint64_t max) {
  const std::uint64_t v = parse_unsigned(flag, text);
  if (v == 0 || v > max)
    throw std::invalid_argument("skipstep_demo: " + std::string(flag) + " must be in [1, " +
                                std::to_string(max) + "] (got " + std::string(text) + ")");
  return v;
}

/// Hardware threads, at least 1.
unsigned default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

}  // namespace

std::filesystem::path default_out_dir() {
#ifdef SKIPSTEP_DEMO_DEFAULT_OUT
  return std::filesystem::path(SKIPSTEP_DEMO_DEFAULT_OUT);
#else
  return std::filesystem::path("demo-output");
#endif
}

parsed_command_line parse_command_line(std::span<const std::string_view> args) {
  parsed_command_line result;
  demo_config& c = result.config;
  c.threads = default_threads();
  c.out_dir = default_out_dir();
  bool n_given = false;
  bool out_given = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view flag = args[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= args.size())
        throw std::invalid_argument("skipstep_demo: " + std::string(flag) + " needs a value");
      return args[++i];
    };
    if (flag == "--help" || flag == "-h") {
      result.show_help = true;
    } else if (flag == "--quick") {
      c.quick = true;
    } else if (flag == "--no-figure") {
      c.figure = false;
    } else if (flag == "--n") {
      c.num_points = parse_positive(flag, value(), std::uint64_t{1} << 26);
      n_given = true;
    } else if (flag == "--seed") {
      c.seed = parse_unsigned(flag, value());
    } else if (flag == "--threads") {
      c.threads = static_cast<unsigned>(parse_positive(flag, value(), 1024));
    } else if (flag == "--floor-repeats") {
      c.floor_repeats = parse_positive(flag, value(), 1000);
    } else if (flag == "--out") {
      c.out_dir = std::filesystem::path(std::string(value()));
      out_given = true;
    } else if (flag == "--dump-npy") {
      c.npy_dir = std::filesystem::path(std::string(value()));
    } else {
      throw std::invalid_argument("skipstep_demo: unknown argument '" + std::string(flag) + "' (try --help)");
    }
  }
  if (c.quick && !n_given)
    c.num_points = quick_num_points;
  // One folder with everything unless told otherwise: --dump-npy DIR alone also receives the figure and
  // results.
  if (c.npy_dir && !out_given)
    c.out_dir = *c.npy_dir;
  return result;
}

std::string usage_text(std::string_view program) {
  std::string s;
  s += "usage: " + std::string(program) + " [options]\n\n";
  s += "DDIM's speed/quality trade-off on two Gaussian mixtures with an exact noise predictor (the DDIM "
       "paper's\n";
  s += "Table 1 experiment, Song et al. 2021, \"Denoising Diffusion Implicit Models\").\n";
  s += "Grid: data sets ring2d and aniso16d; skip types uniform and quadratic; S = 10, 20, 50, 100, 1000 "
       "steps;\n";
  s += "policies eta = 0, 0.2, 0.5, 1 and sigma-hat. DDPM linear betas 1e-4..0.02, T = 1000.\n";
  s += "Then, per data set, quality per number of model evaluations (NFE = 4, 6, 8, 10, 15, 20, 50) of DDIM, "
       "Euler,\n";
  s += "Euler ancestral, Heun, DPM-Solver++ 2M and 3M and SDE-DPM-Solver++ 2M (uniform-t and Karras sigma "
       "grids)\n";
  s += "and flow-matching Euler on a rectified-flow path of the same data, with each solver's NFE to twice "
       "the\n";
  s += "metric's noise floor.\n\n";
  s += "options:\n";
  s += "  --quick            CI mode: N = " + std::to_string(quick_num_points) +
       " points per cell (all cells kept)\n";
  s += "  --n N              points per cell (default " + std::to_string(default_num_points) + ")\n";
  s += "  --seed S           master seed (default " + std::to_string(default_seed) + ")\n";
  s += "  --threads K        threads for the exact predictor and the noise generator (default: hardware "
       "threads;\n";
  s += "                     results are bit-identical for every K)\n";
  s += "  --floor-repeats R  sets of true samples the metric's noise floor is averaged over (default " +
       std::to_string(default_floor_repeats) + ")\n";
  s += "  --out DIR          where the figure and results.json go (default: the --dump-npy DIR if given, "
       "else\n";
  s += "                     " + default_out_dir().string() + ")\n";
  s += "  --dump-npy DIR     also write every cell's samples to DIR/<dataset>_<skip>_S<S>_<policy>.npy, "
       "policy =\n";
  s += "                     eta<η> (η printed shortest, e.g. eta0, eta0.2, eta1) or sigmahat; N x D "
       "float64;\n";
  s += "                     the NFE table's cells to DIR/<dataset>_nfe<NFE>_<solver>.npy\n";
  s += "  --no-figure        skip the ring2d figure\n";
  s += "  --help             this text\n\n";
  s += "Randomness: x_T row b = philox_normal(seed) at (stream b, step 4294967295), a step index the sampler "
       "never\n";
  s += "uses; the sampler's step-i noise for sample b = philox_normal(seed) at (stream b, step i). Each "
       "point is one\n";
  s += "sample with its own stream, so results do not depend on batching or threads.\n";
  s += "Output: tables on stdout, progress on stderr; the --out directory gets results.json (always) and\n";
  s += "ring2d_samples.png (made by gnuplot from ring2d_samples.gp and figure/*.dat); the last lines of the "
       "run\n";
  s += "say where each file went.\n";
  return s;
}

}  // namespace skipstep_demo
