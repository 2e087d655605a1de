/// @file
/// Two distances between feature sets in the Fashion-MNIST classifier's penultimate feature space (instead of
/// Inception's), with Eigen: FID (Heusel et al. 2017), the Fréchet distance between Gaussian fits, biased upwards
/// by O(d / N) at N samples; and KID (Bińkowski et al. 2018), an unbiased estimate of the squared MMD, which compares
/// cells of different N and whose real-vs-real value has expectation 0.
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

/// Fits rows x (n × d, row-major). Needs n ≥ 2.
[[nodiscard]] gaussian_fit fit(std::span<const double> x, std::size_t n, std::size_t d);

/// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½), through symmetric eigendecompositions (negative eigenvalues of
/// round-off clamped to 0).
[[nodiscard]] double frechet_distance(const gaussian_fit& a, const gaussian_fit& b);

/// KID's kernel, the cubic polynomial k(x, y) = (γ xᵀy + 1)³. Bińkowski et al. (2018, §4) use γ = 1 / d on
/// Inception features, whose xᵀy / d is O(1); this classifier's ReLU features are unnormalised (‖y‖² / d in the
/// hundreds), where 1 / d would make k a pure cubic of huge, noisy values, so the reference fixes
/// γ = 1 / mean_i ‖y_i‖²: one scalar, the geometry of the feature space unchanged, the reference's mean γ yᵀy = 1.
[[nodiscard]] double kid_kernel(std::span<const double> x, std::span<const double> y, double gamma);

/// The reference side of KID, computed once: its rows, γ and the mean of k over its distinct pairs,
/// Σ_{i≠j} k(y_i, y_j) / (n (n − 1)).
struct kid_reference {
  std::span<const double> rows;  ///< n × d, row-major; must outlive this object
  std::size_t n = 0, d = 0;
  double gamma = 0.0;            ///< 1 / mean_i ‖y_i‖²
  double mean_within = 0.0;
};

/// Prepares rows y (n × d, row-major; n ≥ 2, not all zero) as a KID reference (O(n² d): blocked matrix products).
[[nodiscard]] kid_reference make_kid_reference(std::span<const double> y, std::size_t n, std::size_t d);

/// The unbiased estimate of MMD²(P_x, P_y) with kid_kernel at the reference's γ, between rows x (m × d; m ≥ 2) and the reference:
/// Σ_{i≠j} k(x_i, x_j) / (m (m − 1)) + Σ_{i≠j} k(y_i, y_j) / (n (n − 1)) − 2 Σ_{i,j} k(x_i, y_j) / (m n)
/// (Gretton et al. 2012, eq. 3). Its expectation is 0 when P_x = P_y, so it can be negative.
[[nodiscard]] double kernel_inception_distance(std::span<const double> x, std::size_t m, const kid_reference& ref);

}  // namespace fashion_mnist
