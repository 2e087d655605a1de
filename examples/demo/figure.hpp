/// @file
/// The ring2d figure: samples of a few (S, policy) cells beside true samples, drawn by Debian's gnuplot
/// (pngcairo terminal). The demo writes one data file per panel and a gnuplot script into the output
/// directory, then runs gnuplot on it; without gnuplot the figure is skipped with a message.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "grid.hpp"
#include "metrics.hpp"

namespace skipstep_demo {

/// The figure shows ring2d, uniform skip, S ∈ {10, 50, 1000} × {η = 0, η = 1, σ̂}.
[[nodiscard]] bool is_figure_cell(const std::vector<dataset>& sets, const cell_spec& cell);

/// Collects the panels, then writes data, script and PNG.
class figure_builder {
 public:
  /// Points drawn per panel (the first rows of each cell; all cells use the same noise streams).
  static constexpr std::size_t max_points = 4000;

  /// The true-distribution panel: rows of `samples` (N × 2 row-major), drawn with gaussian_mixture::sample.
  void set_truth(std::span<const double> samples);
  /// A sampled cell's panel (its wsw goes into the title).
  void add_cell(const cell_result& result, const sample_tensor& samples);

  /// Writes dir/figure/*.dat, dir/ring2d_samples.gp and runs gnuplot to make dir/ring2d_samples.png.
  /// Returns the PNG's path, or std::nullopt after printing to stderr why the figure was skipped.
  std::optional<std::filesystem::path> write(const std::filesystem::path& dir) const;

 private:
  struct panel {
    std::size_t steps = 0;  ///< 0 for the truth panel.
    std::size_t policy_index = 0;
    std::string title;
    std::string file_stem;
    std::vector<double> points;  ///< x, y pairs.
  };
  std::optional<panel> truth_;
  std::vector<panel> cells_;
};

}  // namespace skipstep_demo
