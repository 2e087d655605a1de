/// @file
/// Fréchet distance between Gaussian fits of two feature sets (FID, Heusel et al. 2017, in the feature space of
/// the Fashion-MNIST classifier's penultimate layer instead of Inception's), with Eigen.
#pragma once

#include <cstddef>
#include <span>

#include <Eigen/Core>

namespace fashion_mnist {

/// Mean and covariance (divided by n − 1) of n feature rows of dimension d.
struct gaussian_fit {
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;
};

/// Fits rows x (n × d, row-major).
[[nodiscard]] gaussian_fit fit(std::span<const double> x, std::size_t n, std::size_t d);

/// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½), through symmetric eigendecompositions (negative eigenvalues of
/// round-off clamped to 0).
[[nodiscard]] double frechet_distance(const gaussian_fit& a, const gaussian_fit& b);

}  // namespace fashion_mnist
