/// @file
/// FID in the classifier's feature space (see metric.hpp).
#include "metric.hpp"

#include <Eigen/Eigenvalues>

namespace fashion_mnist {

gaussian_fit fit(std::span<const double> x, std::size_t n, std::size_t d) {
  const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(
      x.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
  gaussian_fit g;
  g.mean = m.colwise().mean().transpose();
  const Eigen::MatrixXd centered = m.rowwise() - g.mean.transpose();
  g.cov = (centered.transpose() * centered) / static_cast<double>(n - 1);
  return g;
}

namespace {

Eigen::MatrixXd sqrt_psd(const Eigen::MatrixXd& a) {
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(a);
  const Eigen::VectorXd l = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return es.eigenvectors() * l.asDiagonal() * es.eigenvectors().transpose();
}

}  // namespace

double frechet_distance(const gaussian_fit& a, const gaussian_fit& b) {
  const Eigen::MatrixXd s1 = sqrt_psd(a.cov);
  const Eigen::MatrixXd m = s1 * b.cov * s1;
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(0.5 * (m + m.transpose()));
  const double tr_sqrt = es.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  return (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt;
}

}  // namespace fashion_mnist
