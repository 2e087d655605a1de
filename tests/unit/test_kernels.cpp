// The fast paths against their references (issue 5): every SIMD kernel of the normal generator that this CPU can run
// gives the scalar reference's bits (Philox4x32-10 of philox4x32_10 + box_muller<float>) on edge words and on whole
// block ranges; fill gives normal_at's bits whatever the offset and length; the fused step kernels compute
// a·x + b·m (+ s·z) with the generator's noise.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "skipstep/skipstep.hpp"

using namespace skipstep;

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

/// The words Box–Muller treats specially: ends of the range, the near-one threshold, quadrant boundaries.
std::vector<std::uint32_t> edge_words() {
  std::vector<std::uint32_t> w = {0u,          1u,          2u,          0xFFFFu,     0x10000u,    0x7FFFFFFFu,
                                  0x80000000u, 0x80000001u, 3037000499u, 3037000500u, 3037000501u, 0xFFFFFFFEu,
                                  0xFFFFFFFFu, 0x1FFFFFFFu, 0x20000000u, 0x3FFFFFFFu, 0x40000000u, 0x5FFFFFFFu,
                                  0x60000000u, 0x9FFFFFFFu, 0xA0000000u, 0xDFFFFFFFu, 0xE0000000u, 0xC0000000u};
  std::mt19937 gen(20240611u);
  for (int i = 0; i < 40; ++i) w.push_back(static_cast<std::uint32_t>(gen()));
  return w;
}

/// Scalar reference for the 4 * count normals of blocks first .. first + count - 1: one Philox block at a time.
std::vector<float> reference_blocks(std::uint64_t seed, std::uint32_t first, std::uint32_t c1, std::uint32_t c2,
                                    std::uint32_t c3, std::size_t count) {
  std::vector<float> out(4 * count);
  const std::array<std::uint32_t, 2> key = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
  for (std::size_t i = 0; i < count; ++i) {
    const auto w = detail::philox4x32_10({first + static_cast<std::uint32_t>(i), c1, c2, c3}, key);
    const std::uint32_t words[4] = {w[0], w[1], w[2], w[3]};
    for (unsigned j = 0; j < 4; ++j) out[4 * i + j] = detail::normal_from_block<float>(words, j);
  }
  return out;
}

#if SKIPSTEP_X86_DISPATCH
// The kernels are inlined here, so these wrappers need fp-contract off like the library's own entry points (GCC
// contracts in the function code is inlined into; clang keeps the kernels' own `#pragma clang fp contract(off)`).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
__attribute__((target("avx512f"))) void box_muller_avx512(const std::uint32_t* a, const std::uint32_t* b, float* z0,
                                                          float* z1) {
  __m512 r0, r1;
  detail::simd_avx512::box_muller16(_mm512_loadu_si512(a), _mm512_loadu_si512(b), r0, r1);
  _mm512_storeu_ps(z0, r0);
  _mm512_storeu_ps(z1, r1);
}
__attribute__((target("avx2"))) void box_muller_avx2(const std::uint32_t* a, const std::uint32_t* b, float* z0,
                                                     float* z1) {
  __m256 r0, r1;
  detail::simd_avx2::box_muller8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)),
                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)), r0, r1);
  _mm256_storeu_ps(z0, r0);
  _mm256_storeu_ps(z1, r1);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/// Runs `kernel` (lanes wide) on all pairs (a, b) of edge words and compares with box_muller<float>.
template <std::size_t Lanes, class Kernel>
void check_box_muller(Kernel kernel) {
  const auto w = edge_words();
  std::vector<std::uint32_t> as, bs;
  for (const auto a : w)
    for (const auto b : w) {
      as.push_back(a);
      bs.push_back(b);
    }
  while (as.size() % Lanes != 0) {
    as.push_back(0u);
    bs.push_back(0u);
  }
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < as.size(); i += Lanes) {
    std::array<float, Lanes> z0{}, z1{};
    kernel(as.data() + i, bs.data() + i, z0.data(), z1.data());
    for (std::size_t l = 0; l < Lanes; ++l) {
      float r0, r1;
      detail::box_muller<float>(as[i + l], bs[i + l], r0, r1);
      if (!same_bits(r0, z0[l]) || !same_bits(r1, z1[l])) {
        if (++mismatches < 5) UNSCOPED_INFO("a=" << as[i + l] << " b=" << bs[i + l] << " ref " << r0 << "," << r1
                                                 << " simd " << z0[l] << "," << z1[l]);
      }
    }
  }
  CHECK(mismatches == 0);
}

template <class Blocks>
void check_block_ranges(Blocks blocks) {
  const std::uint64_t seed = 0x0123456789ABCDEFu;
  const std::array<std::uint32_t, 2> key = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
  const auto ks = detail::philox4x32_key_schedule(key[0], key[1]);
  // Counts that are and are not multiples of the lane width; a first block near 2^32 checks the counter wrap.
  for (const std::uint32_t first : {0u, 1u, 12345u, 0xFFFFFFF0u})
    for (const std::size_t count : {1u, 7u, 8u, 15u, 16u, 17u, 64u, 100u}) {
      std::vector<float> out(4 * count, std::numeric_limits<float>::quiet_NaN());
      blocks(ks, first, 7u, 0x13198A2Eu, 0x03707344u, count, out.data());
      const auto ref = reference_blocks(seed, first, 7u, 0x13198A2Eu, 0x03707344u, count);
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < out.size(); ++i) mismatches += same_bits(out[i], ref[i]) ? 0 : 1;
      INFO("first block " << first << ", count " << count);
      CHECK(mismatches == 0);
    }
}
#endif

}  // namespace

TEST_CASE("SIMD Box-Muller gives the scalar reference bits on edge words", "[kernels][random]") {
#if SKIPSTEP_X86_DISPATCH
  if (detail::detected_simd_level() >= detail::simd_level::avx2) {
    check_box_muller<8>(box_muller_avx2);
  } else {
    WARN("AVX2 not available: AVX2 kernel not tested on this CPU");
  }
  if (detail::detected_simd_level() >= detail::simd_level::avx512) {
    check_box_muller<16>(box_muller_avx512);
  } else {
    WARN("AVX-512F not available: AVX-512 kernel not tested on this CPU");
  }
#else
  WARN("no runtime-dispatched kernels on this platform");
#endif
}

TEST_CASE("SIMD block kernels give the scalar reference bits", "[kernels][random]") {
#if SKIPSTEP_X86_DISPATCH
  if (detail::detected_simd_level() >= detail::simd_level::avx2) check_block_ranges(detail::simd_avx2::normal_blocks_f32);
  if (detail::detected_simd_level() >= detail::simd_level::avx512)
    check_block_ranges(detail::simd_avx512::normal_blocks_f32);
#endif
  // The portable batched loops, in batches of at most normal_batch_blocks, against the same reference.
  const std::uint64_t seed = 99u;
  const auto ks = detail::philox4x32_key_schedule(99u, 0u);
  std::vector<float> out(4 * 64);
  detail::normal_blocks<float>(ks, 0xFFFFFFE0u, 1u, 2u, 3u, 64, out.data());
  const auto ref = reference_blocks(seed, 0xFFFFFFE0u, 1u, 2u, 3u, 64);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < out.size(); ++i) mismatches += same_bits(out[i], ref[i]) ? 0 : 1;
  CHECK(mismatches == 0);
}

TEST_CASE("fill (dispatched) equals normal_at bit for bit at any offset and length", "[kernels][random]") {
  const philox_normal g{0x5EED5EED1234ABCDu};
  for (const std::uint64_t first : {0u, 1u, 2u, 3u, 5u, 1000003u})
    for (const std::size_t n : {1u, 3u, 4u, 63u, 64u, 65u, 257u, 1000u}) {
      std::vector<float> out(n);
      g.fill(out, 3, 41, first);
      std::size_t mismatches = 0;
      for (std::size_t k = 0; k < n; ++k) mismatches += same_bits(out[k], g.normal_at<float>(3, 41, first + k)) ? 0 : 1;
      INFO("first " << first << ", n " << n);
      CHECK(mismatches == 0);
    }
  // The top of the addressable range (block counter 2^32 - 1).
  std::vector<float> top(40);
  g.fill(top, 0, 0, philox_normal::max_elements - top.size());
  for (std::size_t k = 0; k < top.size(); ++k)
    CHECK(same_bits(top[k], g.normal_at<float>(0, 0, philox_normal::max_elements - top.size() + k)));
}

TEST_CASE("fused step kernels: a·x + b·m (+ s·z) with the generator's noise", "[kernels][step]") {
  const std::size_t per_sample = 1000, samples = 3, n = per_sample * samples;  // not a multiple of the noise block
  std::vector<float> x(n), m(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(static_cast<int>(i % 13) - 6) * 0.25f;
    m[i] = static_cast<float>(static_cast<int>(i % 7) - 3) * 0.5f;
  }
  const affine_step c = ddim_step(prediction_type::epsilon, 0.3, 0.5, sigma_choice{0.2, 0.2});
  const philox_normal g{77u};
  std::vector<float> y = x;
  apply_step(c, std::span<float>(y), std::span<const float>(m), x0_processing::none(), samples, g, 9);
  // Independent evaluation in double from the step's definition: x_s = √ā_prev·x̂0 + √(1 − ā_prev − σ²)·ε̂ + σ·z.
  const double a_t = 0.3, a_prev = 0.5, sigma = 0.2;
  double max_err = 0.0;
  for (std::size_t s = 0; s < samples; ++s)
    for (std::size_t j = 0; j < per_sample; ++j) {
      const std::size_t i = s * per_sample + j;
      const double x0 = (x[i] - std::sqrt(1 - a_t) * m[i]) / std::sqrt(a_t);
      const double expect = std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev - sigma * sigma) * m[i] +
                            sigma * static_cast<double>(g.normal_at<float>(s, 9, j));
      max_err = std::max(max_err, std::abs(expect - static_cast<double>(y[i])));
    }
  CHECK(max_err < 1e-5);
  // Deterministic kernel: η = 0 through the same entry point.
  const affine_step d = ddim_step(prediction_type::epsilon, a_t, a_prev);
  std::vector<float> w = x;
  apply_step(d, std::span<float>(w), std::span<const float>(m), x0_processing::none());
  max_err = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double x0 = (x[i] - std::sqrt(1 - a_t) * m[i]) / std::sqrt(a_t);
    max_err = std::max(max_err, std::abs(std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev) * m[i] - w[i]));
  }
  CHECK(max_err < 1e-5);
}
