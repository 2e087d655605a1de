/// @file
/// wsw per cell, the noise floor, speed-ups and the tables (see metrics.hpp).
#include "metrics.hpp"

#include <skipstep/testing/sliced_wasserstein.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <ostream>
#include <random>
#include <string_view>

namespace skipstep_demo {

std::uint64_t floor_seed(std::uint64_t seed, std::size_t r) {
  return seed * 1000 + r + 1;
}

noise_floor measure_floor(const skipstep::testing::gaussian_mixture& mixture, std::size_t n,
                          std::uint64_t seed, std::size_t repeats, row_pool& pool) {
  noise_floor f;
  f.values.assign(repeats, 0.0);
  for (std::size_t r = 0; r < repeats; ++r)
    f.seeds.push_back(floor_seed(seed, r));
  pool.for_each_index(repeats, [&](std::size_t r) {
    std::mt19937_64 gen(f.seeds[r]);
    const std::vector<double> truth = mixture.sample(gen, n);
    f.values[r] = skipstep::testing::whitened_sliced_w2(mixture, truth, n);
  });
  double sum = 0.0;
  for (double v : f.values)
    sum += v;
  f.mean = sum / static_cast<double>(repeats);
  double ss = 0.0;
  for (double v : f.values)
    ss += (v - f.mean) * (v - f.mean);
  f.stddev = repeats > 1 ? std::sqrt(ss / static_cast<double>(repeats - 1)) : 0.0;
  return f;
}

void measure_cells(const skipstep::testing::gaussian_mixture& mixture, std::span<const sample_tensor> samples,
                   std::span<cell_result> results, row_pool& pool) {
  pool.for_each_index(results.size(), [&](std::size_t i) {
    const sample_tensor& x = samples[i];
    const auto report = skipstep::testing::whitened_sliced_w2_report(
        mixture, std::span<const double>(x.data(), x.size()), x.shape()[0]);
    results[i].wsw = report.wsw;
    results[i].empty_components = report.empty_components;
  });
}

namespace {

/// True when a and b are the same (dataset, skip, policy) row of the grid.
bool same_series(const cell_spec& a, const cell_spec& b) {
  return a.dataset_index == b.dataset_index && a.skip == b.skip && a.policy_index == b.policy_index;
}

/// The result of one cell, if it was run.
const cell_result* find_cell(std::span<const cell_result> results, std::size_t dataset_index, skip_type skip,
                             std::size_t policy_index, std::size_t steps) {
  for (const auto& r : results)
    if (r.cell.dataset_index == dataset_index && r.cell.skip == skip && r.cell.policy_index == policy_index &&
        r.cell.steps == steps)
      return &r;
  return nullptr;
}

/// Display width of UTF-8 text: code points, not counting continuation bytes or combining marks
/// U+0300..U+036F (the hat of σ̂).
std::size_t display_width(std::string_view s) {
  std::size_t w = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) == 0x80)
      continue;
    const bool combining =
        (c == 0xCC) || (c == 0xCD && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xB0);
    if (!combining)
      ++w;
  }
  return w;
}

/// s right-aligned in `width` columns.
std::string pad_left(const std::string& s, std::size_t width) {
  const std::size_t w = display_width(s);
  return w >= width ? s : std::string(width - w, ' ') + s;
}

/// printf-style formatting into a std::string.
template <class... Args>
std::string format(const char* fmt, Args... args) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

/// wsw for a table cell ("inf" for a diverged cell, "*" appended when a mode was dropped).
std::string format_wsw(const cell_result& r) {
  if (!std::isfinite(r.wsw))
    return "inf";
  return format(r.wsw < 10 ? "%.3f" : "%.1f", r.wsw) + (r.empty_components > 0 ? "*" : "");
}

/// "0.123s (8.1x)".
std::string format_time(const cell_result& r) {
  const std::string t = r.seconds < 10 ? format("%.3fs", r.seconds) : format("%.1fs", r.seconds);
  return t + format(r.speedup < 100 ? " (%.1fx)" : " (%.0fx)", r.speedup);
}

/// One table: a header of policy labels, then one row per S, each cell formatted by `cell_text`.
template <class CellText>
void print_grid(std::ostream& os, std::size_t dataset_index, skip_type skip,
                std::span<const cell_result> results, std::size_t width, CellText cell_text) {
  const auto policies = demo_policies();
  os << pad_left("S", 6);
  for (const auto& p : policies)
    os << pad_left(policy_label(p), width);
  os << '\n';
  for (std::size_t steps : step_counts) {
    os << pad_left(std::to_string(steps), 6);
    for (std::size_t p = 0; p < policies.size(); ++p) {
      const cell_result* r = find_cell(results, dataset_index, skip, p, steps);
      os << pad_left(r ? cell_text(*r) : std::string("-"), width);
    }
    os << '\n';
  }
}

/// aniso16d/uniform wsw of an independent float64 implementation of the same experiment (N = 20000), rows S,
/// columns η = 0, 0.2, 0.5, 1, σ̂; its spread over seeds is ≤ reference_spread.
constexpr double reference_wsw[5][5] = {{0.566, 0.566, 0.582, 0.632, 3.88},
                                        {0.392, 0.393, 0.406, 0.483, 1.78},
                                        {0.227, 0.228, 0.246, 0.331, 0.537},
                                        {0.137, 0.141, 0.156, 0.228, 0.214},
                                        {0.037, 0.037, 0.042, 0.057, 0.026}};
constexpr double reference_spread = 0.02;

}  // namespace

void compute_speedups(std::span<cell_result> results) {
  for (auto& r : results) {
    const cell_result* ref = nullptr;
    for (const auto& c : results)
      if (same_series(c.cell, r.cell) && c.cell.steps == reference_steps)
        ref = &c;
    r.speedup = ref && r.seconds > 0 ? ref->seconds / r.seconds : 0.0;
  }
}

void print_tables(std::ostream& os, const dataset& set, std::size_t dataset_index, skip_type skip,
                  std::span<const cell_result> results, const noise_floor& floor) {
  os << "\n"
     << set.name << ", " << skip_name(skip) << " skip: wsw (lower is better; noise floor "
     << format("%.4f", floor.mean) << " ± " << format("%.4f", floor.stddev) << ")\n";
  print_grid(os, dataset_index, skip, results, 9, format_wsw);
  os << "\n"
     << set.name << ", " << skip_name(skip)
     << " skip: sampling wall time (speed-up vs S = " << reference_steps << ")\n";
  print_grid(os, dataset_index, skip, results, 17, format_time);
}

namespace {

/// r = √(N_ref/N): how much larger the floor (and the seed spread) is at N than at the reference's N.
double floor_ratio(std::size_t num_points) {
  return std::sqrt(static_cast<double>(reference_num_points) / static_cast<double>(num_points));
}

}  // namespace

double reference_tolerance(std::size_t num_points, const noise_floor& floor_n) {
  if (num_points == reference_num_points)
    return reference_spread;
  const double r = floor_ratio(num_points);
  return reference_spread * r + std::abs(floor_n.mean - floor_n.mean / r);
}

void print_reference_comparison(std::ostream& os, std::size_t dataset_index, std::size_t num_points,
                                std::span<const cell_result> results, const noise_floor& floor_n) {
  const double tolerance = reference_tolerance(num_points, floor_n);
  const double r = floor_ratio(num_points);
  os << "\naniso16d, uniform skip: ours / an independent float64 implementation's (N = "
     << reference_num_points << ")\n";
  if (num_points != reference_num_points)
    os << "(this run has N = " << num_points << ": the metric's noise floor is "
       << format("%.4f", floor_n.mean) << " here and falls like 1/sqrt(N), about "
       << format("%.4f", floor_n.mean / r) << " at\n N = " << reference_num_points << "; tolerance "
       << format("%.2f", reference_spread) << " (seed spread) x " << format("%.2f", r) << " + "
       << format("%.3f", std::abs(floor_n.mean - floor_n.mean / r))
       << " (floor shift) = " << format("%.3f", tolerance) << ")\n";
  const auto policies = demo_policies();
  os << pad_left("S", 6);
  for (const auto& p : policies)
    os << pad_left(policy_label(p), 15);
  os << '\n';
  double worst = 0.0;
  for (std::size_t s = 0; s < step_counts.size(); ++s) {
    os << pad_left(std::to_string(step_counts[s]), 6);
    for (std::size_t p = 0; p < policies.size(); ++p) {
      const cell_result* r = find_cell(results, dataset_index, skip_type::uniform, p, step_counts[s]);
      if (!r) {
        os << pad_left("-", 15);
        continue;
      }
      worst = std::max(worst, std::abs(r->wsw - reference_wsw[s][p]));
      os << pad_left(format("%.3f/%.3f", r->wsw, reference_wsw[s][p]), 15);
    }
    os << '\n';
  }
  os << "largest |ours - reference| = " << format("%.3f", worst) << " (tolerance "
     << format("%.3f", tolerance)
     << (num_points == reference_num_points ? ", the reference's seed spread" : "")
     << "): " << (worst <= tolerance ? "agree" : "DIFFERENT") << "\n";
}

}  // namespace skipstep_demo
