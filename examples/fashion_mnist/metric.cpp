/// @file
/// FID and KID in the classifier's feature space (see metric.hpp).
#include "metric.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <Eigen/Eigenvalues>

namespace fashion_mnist {

namespace {

using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Eigen::Map<const row_major> rows_of(std::span<const double> x, std::size_t n, std::size_t d, const char* function) {
  if (n < 2 || d == 0 || x.size() != n * d)
    throw std::invalid_argument(std::string("fashion_mnist::") + function + ": needs n >= 2 rows of d > 0 features (n = " +
                                std::to_string(n) + ", d = " + std::to_string(d) +
                                ", elements = " + std::to_string(x.size()) + ")");
  return {x.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d)};
}

Eigen::MatrixXd sqrt_psd(const Eigen::MatrixXd& a) {
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(a);
  const Eigen::VectorXd l = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return es.eigenvectors() * l.asDiagonal() * es.eigenvectors().transpose();
}

/// Σ_{i,j} k(a_i, b_j) over all pairs, in blocks of rows of a (a block's Gram matrix is block × n_b doubles).
double kernel_sum(const Eigen::Map<const row_major>& a, const Eigen::Map<const row_major>& b, double gamma) {
  constexpr Eigen::Index block = 512;
  double sum = 0.0;
  for (Eigen::Index i = 0; i < a.rows(); i += block) {
    const Eigen::Index rows = std::min(block, a.rows() - i);
    const Eigen::MatrixXd gram = a.middleRows(i, rows) * b.transpose();
    sum += (gram.array() * gamma + 1.0).cube().sum();
  }
  return sum;
}

/// Σ_{i≠j} k(a_i, a_j) / (n (n − 1)): the full sum minus the diagonal.
double mean_within(const Eigen::Map<const row_major>& a, double gamma) {
  const double diagonal = (a.rowwise().squaredNorm().array() * gamma + 1.0).cube().sum();
  const double n = static_cast<double>(a.rows());
  return (kernel_sum(a, a, gamma) - diagonal) / (n * (n - 1.0));
}

}  // namespace

gaussian_fit fit(std::span<const double> x, std::size_t n, std::size_t d) {
  const auto m = rows_of(x, n, d, "fit");
  gaussian_fit g;
  g.mean = m.colwise().mean().transpose();
  const Eigen::MatrixXd centered = m.rowwise() - g.mean.transpose();
  g.cov = (centered.transpose() * centered) / static_cast<double>(n - 1);
  return g;
}

double frechet_distance(const gaussian_fit& a, const gaussian_fit& b) {
  const Eigen::MatrixXd s1 = sqrt_psd(a.cov);
  const Eigen::MatrixXd m = s1 * b.cov * s1;
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(0.5 * (m + m.transpose()));
  const double tr_sqrt = es.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  return (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt;
}

double kid_kernel(std::span<const double> x, std::span<const double> y, double gamma) {
  if (x.size() != y.size() || x.empty())
    throw std::invalid_argument("fashion_mnist::kid_kernel: x and y need the same nonzero size (" +
                                std::to_string(x.size()) + " and " + std::to_string(y.size()) + ")");
  if (!(gamma > 0.0) || !std::isfinite(gamma))
    throw std::invalid_argument("fashion_mnist::kid_kernel: gamma must be finite and > 0 (gamma = " +
                                std::to_string(gamma) + ")");
  double dot = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) dot += x[i] * y[i];
  const double u = gamma * dot + 1.0;
  return u * u * u;
}

kid_reference make_kid_reference(std::span<const double> y, std::size_t n, std::size_t d) {
  const auto b = rows_of(y, n, d, "make_kid_reference");
  const double mean_square_norm = b.rowwise().squaredNorm().mean();
  if (!(mean_square_norm > 0.0) || !std::isfinite(mean_square_norm))
    throw std::invalid_argument("fashion_mnist::make_kid_reference: the rows' mean squared norm must be finite and "
                                "> 0 (mean squared norm = " + std::to_string(mean_square_norm) + ")");
  const double gamma = 1.0 / mean_square_norm;
  return {y, n, d, gamma, mean_within(b, gamma)};
}

double kernel_inception_distance(std::span<const double> x, std::size_t m, const kid_reference& ref) {
  const auto a = rows_of(x, m, ref.d, "kernel_inception_distance");
  const auto b = rows_of(ref.rows, ref.n, ref.d, "kernel_inception_distance (reference)");
  const double cross = kernel_sum(a, b, ref.gamma) / (static_cast<double>(m) * static_cast<double>(ref.n));
  return mean_within(a, ref.gamma) + ref.mean_within - 2.0 * cross;
}

}  // namespace fashion_mnist
