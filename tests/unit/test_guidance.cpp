// Classifier-free guidance: the combination formula, the rescale of Lin et al. against a direct computation, the
// batched form equal to the two-call form, and use inside a sampler.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "skipstep/skipstep.hpp"

using namespace skipstep;

namespace {
std::vector<double> cond_model(const std::vector<double>& x, std::int64_t t) {
  std::vector<double> o(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) o[i] = std::sin(x[i] + 0.001 * static_cast<double>(t)) + 0.2;
  return o;
}
void uncond_model(const std::vector<double>& x, std::int64_t, std::span<double> o) {
  for (std::size_t i = 0; i < x.size(); ++i) o[i] = 0.5 * x[i];
}
std::vector<double> input() {
  std::vector<double> x(12);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(1.3 * static_cast<double>(i));
  return x;
}
double unbiased_std(const std::vector<double>& v, std::size_t begin, std::size_t n) {
  double m = 0, ss = 0;
  for (std::size_t i = begin; i < begin + n; ++i) m += v[i];
  m /= static_cast<double>(n);
  for (std::size_t i = begin; i < begin + n; ++i) ss += (v[i] - m) * (v[i] - m);
  return std::sqrt(ss / static_cast<double>(n - 1));
}
}  // namespace

TEST_CASE("guidance combines m_u + s (m_c - m_u)", "[guidance]") {
  const auto x = input();
  classifier_free_guidance cfg(cond_model, uncond_model, 7.5);
  std::vector<double> out(x.size());
  cfg(x, 500, std::span<double>(out));
  const auto c = cond_model(x, 500);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(out[i] == Approx(0.5 * x[i] + 7.5 * (c[i] - 0.5 * x[i])).epsilon(1e-14));
}

TEST_CASE("guidance rescale matches Lin et al. eq. 15-16 per sample", "[guidance]") {
  const auto x = input();
  const double phi = 0.7, s = 5.0;
  classifier_free_guidance cfg(cond_model, uncond_model, s, phi, 2);
  std::vector<double> out(x.size());
  cfg(x, 300, std::span<double>(out));
  const auto c = cond_model(x, 300);
  std::vector<double> plain(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) plain[i] = 0.5 * x[i] + s * (c[i] - 0.5 * x[i]);
  for (std::size_t b = 0; b < 2; ++b) {
    const double ratio = unbiased_std(c, b * 6, 6) / unbiased_std(plain, b * 6, 6);
    for (std::size_t i = b * 6; i < b * 6 + 6; ++i)
      REQUIRE(out[i] == Approx(phi * plain[i] * ratio + (1 - phi) * plain[i]).epsilon(1e-12));
    // The rescaled output's std moves toward the conditional one.
    REQUIRE(std::abs(unbiased_std(out, b * 6, 6) - unbiased_std(c, b * 6, 6)) <
            std::abs(unbiased_std(plain, b * 6, 6) - unbiased_std(c, b * 6, 6)));
  }
}

TEST_CASE("one batched call equals two calls", "[guidance]") {
  const auto x = input();
  auto network = [](std::span<const double> x2, std::int64_t t, std::span<double> out2) {
    const std::size_t n = x2.size() / 2;
    for (std::size_t i = 0; i < n; ++i) out2[i] = 0.5 * x2[i];
    for (std::size_t i = n; i < 2 * n; ++i) out2[i] = std::sin(x2[i] + 0.001 * static_cast<double>(t)) + 0.2;
  };
  batched_classifier_free_guidance batched(network, 3.0, 0.5, 2);
  classifier_free_guidance two(cond_model, uncond_model, 3.0, 0.5, 2);
  std::vector<double> a(x.size()), b(x.size());
  batched(x, 123, std::span<double>(a));
  two(x, 123, std::span<double>(b));
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(a[i] == b[i]);
}

TEST_CASE("a guided predictor runs in a sampler; scale 1 equals the conditional model", "[guidance]") {
  const auto schedule = noise_schedule<>::linear(1000);
  ddim_sampler s(schedule, timestep_schedule::trailing(1000, 20), eta{0.0});
  auto x1 = input(), x2 = input();
  s.sample(classifier_free_guidance(cond_model, uncond_model, 1.0), x1);
  s.sample(cond_model, x2);
  for (std::size_t i = 0; i < x1.size(); ++i) REQUIRE(x1[i] == Approx(x2[i]).epsilon(1e-13));
}

TEST_CASE("guidance rejects bad parameters", "[guidance][errors]") {
  REQUIRE_THROWS_WITH(classifier_free_guidance(cond_model, uncond_model, NAN),
                      Catch::Contains("classifier_free_guidance") && Catch::Contains("scale"));
  REQUIRE_THROWS_WITH(classifier_free_guidance(cond_model, uncond_model, 2.0, 1.5),
                      Catch::Contains("rescale") && Catch::Contains("1.5"));
}
